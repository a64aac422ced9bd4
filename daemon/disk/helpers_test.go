package disk

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sparseFile makes a sparse regular file of size bytes in a fresh temporary
// directory.
func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	return sparseFileIn(t, t.TempDir(), size)
}

func sparseFileIn(t *testing.T, dir string, size int64) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "disk-*.img")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root for %s", what)
	}
}

// run runs a command, failing the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loopDevice attaches a loop device to a new sparse file of size bytes (or
// to file, if given) and detaches it at cleanup. Open Disks on it must be
// closed by cleanups registered later (they run first).
func loopDevice(t *testing.T, size int64, file string) string {
	t.Helper()
	needRoot(t, "loop devices")
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("needs losetup (util-linux) for loop devices")
	}
	if file == "" {
		file = sparseFile(t, size)
	}
	var dev string
	// Another test binary may grab the free device between find and
	// attach: retry a few times.
	for i := 0; ; i++ {
		out, err := exec.Command("losetup", "--find", "--show", file).CombinedOutput()
		if err == nil {
			dev = strings.TrimSpace(string(out))
			break
		}
		if i == 5 {
			t.Fatalf("losetup --find --show %s: %v\n%s", file, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v\n%s", dev, err, out)
		}
	})
	return dev
}

// mountFS mounts a fresh filesystem of type fstype (tmpfs, ramfs) with
// options on a temporary directory and unmounts it at cleanup.
func mountFS(t *testing.T, fstype, options string) string {
	t.Helper()
	needRoot(t, "mounting a "+fstype)
	dir := filepath.Join(t.TempDir(), fstype)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	args := []string{"-t", fstype}
	if options != "" {
		args = append(args, "-o", options)
	}
	run(t, "mount", append(args, fstype, dir)...)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	return dir
}

// openT opens a disk and closes it at cleanup.
func openT(t *testing.T, path string, opts Options) *Disk {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	d, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s, %+v): %v", path, opts, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// testWriter sends log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// logBuffer collects log lines, for tests that assert a fallback was
// logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// pattern fills a buffer of blocks blocks with bytes that name the block
// and the seed, so that a block read from the wrong place shows.
func pattern(buf []byte, block uint64, seed byte) {
	for i := range buf {
		b := block + uint64(i/BlockSize)
		buf[i] = byte(b) ^ byte(b>>8) ^ byte(i) ^ seed
	}
	for i := 0; i < len(buf); i += BlockSize {
		buf[i] = seed | 1 // never an all-zero block
	}
}
