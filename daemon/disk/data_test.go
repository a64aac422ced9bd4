package disk

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"tandem/internal/repl"
)

const testBytes = 64 << 20 // 64 MiB backing files: 16379 data blocks with internal metadata

// backings are the kinds of backing store every data test runs on.
func backings(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"file": func(t *testing.T) string { return sparseFile(t, testBytes) },
		"loop": func(t *testing.T) string { return loopDevice(t, testBytes, "") },
	}
}

func TestDataRoundTrip(t *testing.T) {
	for _, kind := range []string{"file", "loop"} {
		for _, direct := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/direct=%t", kind, direct), func(t *testing.T) {
				path := backings(t)[kind](t)
				d := openT(t, path, Options{Direct: direct})
				if d.Direct() != direct {
					t.Fatalf("Direct() = %t, want %t (ext4 and loop devices accept O_DIRECT)", d.Direct(), direct)
				}
				last := d.Blocks() - 1
				writes := []struct {
					block  uint64
					blocks int
					fua    bool
				}{{0, 1, false}, {1, 7, true}, {100, 64, false}, {last - 4, 4, true}, {last, 1, false}}
				for i, w := range writes {
					buf := GetBuf(w.blocks)
					pattern(buf, w.block, byte(i+1))
					if err := d.WriteAt(buf, w.block, w.fua); err != nil {
						t.Fatalf("WriteAt(%d blocks at %d, fua=%t): %v", w.blocks, w.block, w.fua, err)
					}
					PutBuf(buf)
				}
				if err := d.Flush(); err != nil {
					t.Fatal(err)
				}
				check := func(d *Disk) {
					t.Helper()
					for i, w := range writes {
						got, want := GetBuf(w.blocks), make([]byte, w.blocks*BlockSize)
						pattern(want, w.block, byte(i+1))
						if err := d.ReadAt(got, w.block); err != nil {
							t.Fatalf("ReadAt(%d): %v", w.block, err)
						}
						if !bytes.Equal(got, want) {
							t.Fatalf("blocks %d+%d read back differently", w.block, w.blocks)
						}
						PutBuf(got)
					}
					// A block never written reads as zeroes.
					z := GetBuf(1)
					if err := d.ReadAt(z, 50); err != nil || !bytes.Equal(z, make([]byte, BlockSize)) {
						t.Fatalf("unwritten block 50: err %v, zero %t", err, bytes.Equal(z, make([]byte, BlockSize)))
					}
				}
				check(d)
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				// Closed: the core hears DeviceFailed, never OK.
				if err := d.ReadAt(GetBuf(1), 0); Classify(err) != repl.DeviceFailed {
					t.Fatalf("ReadAt after Close: %v (%v), want device-failed", err, Classify(err))
				}
				check(openT(t, path, Options{Direct: !direct}))
			})
		}
	}
}

func TestRequestChecks(t *testing.T) {
	d := openT(t, sparseFile(t, testBytes), Options{Direct: true})
	n := d.Blocks()
	cases := []struct {
		name  string
		err   error
		do    func() error
		after string
	}{
		{"past the end", ErrRange, func() error { return d.WriteAt(GetBuf(2), n-1, false) }, "blocks 16378+2"},
		{"block past the end", ErrRange, func() error { return d.ReadAt(GetBuf(1), n) }, "the data area has 16379"},
		{"huge block wraps", ErrRange, func() error { return d.ReadAt(GetBuf(1), ^uint64(0)) }, ""},
		{"partial block", ErrRange, func() error { return d.WriteAt(GetBuf(1)[:100], 0, false) }, "100 bytes"},
		{"empty", ErrRange, func() error { return d.ReadAt(nil, 0) }, ""},
		{"trim past the end", ErrRange, func() error { return d.Trim(n-2, 3) }, ""},
		{"trim nothing", ErrRange, func() error { return d.Trim(0, 0) }, ""},
		{"misaligned", ErrAlignment, func() error { return d.WriteAt(AlignedBuffer(2 * BlockSize)[512:512+BlockSize], 0, false) }, "aligned"},
	}
	for _, c := range cases {
		err := c.do()
		if !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", c.name, err, c.err)
			continue
		}
		if !strings.Contains(err.Error(), c.after) || !strings.Contains(err.Error(), d.Path()) {
			t.Errorf("%s: %q does not name the path and %q", c.name, err, c.after)
		}
		if Classify(err) != repl.EIO {
			t.Errorf("%s: classified %v, want EIO", c.name, Classify(err))
		}
	}
}

// TestFUA: both FUA paths write the data through; on ext4 the pwritev2
// RWF_DSYNC path is taken, and the write + fdatasync fallback works too.
// (That the data survives a power cut is the VM suite's to show.)
func TestFUA(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(fmt.Sprintf("direct=%t", direct), func(t *testing.T) {
			var log logBuffer
			d := openT(t, sparseFile(t, testBytes), Options{Direct: direct, Logger: log.logger()})
			buf := GetBuf(8)
			pattern(buf, 10, 7)
			if err := d.WriteAt(buf, 10, true); err != nil {
				t.Fatal(err)
			}
			if d.noDSync.Load() {
				t.Fatalf("RWF_DSYNC refused on this kernel and filesystem: %s", log.String())
			}
			d.noDSync.Store(true) // the path kernels before 4.7 take
			pattern(buf, 20, 8)
			if err := d.WriteAt(buf, 20, true); err != nil {
				t.Fatal(err)
			}
			for _, w := range []struct {
				block uint64
				seed  byte
			}{{10, 7}, {20, 8}} {
				got, want := GetBuf(8), make([]byte, 8*BlockSize)
				pattern(want, w.block, w.seed)
				if err := d.ReadAt(got, w.block); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("block %d: err %v, equal %t", w.block, err, bytes.Equal(got, want))
				}
			}
		})
	}
}

func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestTrim(t *testing.T) {
	for kind, make := range backings(t) {
		for _, way := range []string{"fallocate", "zeroes"} {
			t.Run(kind+"/"+way, func(t *testing.T) {
				path := make(t)
				d := openT(t, path, Options{Direct: true})
				if way == "zeroes" {
					d.trimModeBad[0].Store(true)
					d.trimModeBad[1].Store(true)
				}
				buf := GetBuf(256)
				pattern(buf, 1000, 3)
				if err := d.WriteAt(buf, 1000, false); err != nil {
					t.Fatal(err)
				}
				if err := d.Flush(); err != nil {
					t.Fatal(err)
				}
				before := allocatedBytes(t, path)
				if err := d.Trim(1010, 200); err != nil {
					t.Fatalf("Trim: %v", err)
				}
				got := GetBuf(256)
				if err := d.ReadAt(got, 1000); err != nil {
					t.Fatal(err)
				}
				for i := range 256 {
					blk := got[i*BlockSize : (i+1)*BlockSize]
					trimmed := i >= 10 && i < 210
					if zero := bytes.Equal(blk, make1(BlockSize)); zero != trimmed {
						t.Fatalf("block %d: zero %t, trimmed %t", 1000+i, zero, trimmed)
					}
					if !trimmed && !bytes.Equal(blk, buf[i*BlockSize:(i+1)*BlockSize]) {
						t.Fatalf("block %d next to the trim changed", 1000+i)
					}
				}
				if kind == "file" && way == "fallocate" {
					if after := allocatedBytes(t, path); before-after < 200*BlockSize {
						t.Fatalf("trim freed %d bytes of the file, want a hole of %d", before-after, 200*BlockSize)
					}
				}
			})
		}
	}
}

func make1(n int) []byte { return make([]byte, n) }

// TestDirectFallback: ramfs refuses O_DIRECT; Open falls back to buffered
// I/O and says so.
func TestDirectFallback(t *testing.T) {
	dir := mountFS(t, "ramfs", "")
	path := sparseFileIn(t, dir, 8<<20)
	var log logBuffer
	d := openT(t, path, Options{Direct: true, Logger: log.logger()})
	if d.Direct() {
		t.Fatal("Direct() on ramfs: want the buffered fallback")
	}
	if !strings.Contains(log.String(), "O_DIRECT") || !strings.Contains(log.String(), path) {
		t.Fatalf("fallback not logged with its reason: %q", log.String())
	}
	buf := make([]byte, 2*BlockSize) // unaligned is fine without O_DIRECT
	pattern(buf, 3, 9)
	if err := d.WriteAt(buf, 3, true); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2*BlockSize)
	if err := d.ReadAt(got, 3); err != nil || !bytes.Equal(got, buf) {
		t.Fatalf("round trip on ramfs: %v", err)
	}
}

func TestLock(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		path := sparseFile(t, testBytes)
		meta := sparseFile(t, 1<<20)
		d, err := Open(path, Options{MetaPath: meta})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []Options{{}, {ReadOnly: true}, {MetaPath: meta}} {
			if _, err := Open(path, o); !errors.Is(err, ErrLocked) {
				t.Fatalf("second Open(%+v): %v, want ErrLocked", o, err)
			}
		}
		// The metadata file alone is locked too.
		other := sparseFile(t, testBytes)
		if _, err := Open(other, Options{MetaPath: meta}); !errors.Is(err, ErrLocked) {
			t.Fatalf("Open with a held metadata file: %v, want ErrLocked", err)
		}
		if _, err := Open(path, Options{MetaPath: path}); err == nil {
			t.Fatal("metadata path = data path accepted")
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		// Readers share; a writer then waits for them.
		r1 := openT(t, path, Options{ReadOnly: true})
		openT(t, path, Options{ReadOnly: true})
		if _, err := Open(path, Options{}); !errors.Is(err, ErrLocked) {
			t.Fatalf("Open for writing beside readers: %v, want ErrLocked", err)
		}
		if err := r1.WriteAt(GetBuf(1), 0, false); Classify(err) != repl.DeviceFailed || !errors.Is(err, syscall.EROFS) {
			t.Fatalf("write on a read-only disk: %v", err)
		}
	})
	t.Run("loop", func(t *testing.T) {
		dev := loopDevice(t, testBytes, "")
		d := openT(t, dev, Options{Direct: true})
		_ = d
		if _, err := Open(dev, Options{Direct: true}); !errors.Is(err, ErrLocked) {
			t.Fatalf("second Open of %s: %v, want ErrLocked", dev, err)
		}
	})
	t.Run("mounted", func(t *testing.T) {
		needRoot(t, "mounting")
		if _, err := exec.LookPath("mkfs.ext4"); err != nil {
			t.Skip("needs mkfs.ext4 (e2fsprogs) to make a filesystem to mount")
		}
		img := sparseFile(t, testBytes)
		run(t, "mkfs.ext4", "-q", "-F", img)
		dev := loopDevice(t, 0, img)
		dir := filepath.Join(t.TempDir(), "mnt")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		run(t, "mount", dev, dir)
		defer run(t, "umount", dir)
		_, err := Open(dev, Options{})
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "mounted") {
			t.Fatalf("Open of a mounted device: %v, want ErrLocked saying it is mounted", err)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		path string
		opts Options
		want string
	}{
		"missing":        {filepath.Join(dir, "nope"), Options{}, "no such file"},
		"directory":      {dir, Options{}, "neither a block device nor a regular file"},
		"char device":    {"/dev/null", Options{}, "neither a block device nor a regular file"},
		"too small":      {sparseFile(t, 16<<10), Options{}, "too small"},
		"bad AL slots":   {sparseFile(t, testBytes), Options{ALSlots: 70000}, "activity-log slots"},
		"blocks too big": {sparseFile(t, testBytes), Options{Blocks: 16380}, "do not fit"},
	}
	for name, c := range cases {
		_, err := Open(c.path, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("%s: %v, want an error naming %s and saying %q", name, err, c.path, c.want)
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err  error
		want repl.IOError
	}{
		{nil, repl.OK},
		{syscall.EIO, repl.EIO},
		{syscall.ENOSPC, repl.NoSpace},
		{syscall.EDQUOT, repl.NoSpace},
		{syscall.EILSEQ, repl.BadChecksum},
		{syscall.EROFS, repl.DeviceFailed},
		{syscall.ENODEV, repl.DeviceFailed},
		{syscall.ENXIO, repl.DeviceFailed},
		{os.ErrClosed, repl.DeviceFailed},
		{syscall.ETIMEDOUT, repl.EIO},
		{errors.New("something odd"), repl.EIO},
		{fmt.Errorf("write x: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), repl.NoSpace},
		{fmt.Errorf("flush: %w", syscall.EIO), repl.EIO},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// TestNoSpace: a file-backed disk on a full filesystem reports ENOSPC, which
// the core hears as NoSpace.
func TestNoSpace(t *testing.T) {
	dir := mountFS(t, "tmpfs", "size=512k")
	d := openT(t, sparseFileIn(t, dir, 8<<20), Options{Direct: true})
	buf := GetBuf(16)
	var err error
	for b := uint64(0); b+16 <= d.Blocks() && err == nil; b += 16 {
		err = d.WriteAt(buf, b, false)
	}
	if Classify(err) != repl.NoSpace || !strings.Contains(err.Error(), d.Path()) {
		t.Fatalf("filling a 512 KiB tmpfs: %v (%v), want ENOSPC naming the file", err, Classify(err))
	}
}

// TestIOError: a device-mapper error target fails every I/O with EIO.
func TestIOError(t *testing.T) {
	needRoot(t, "device-mapper")
	if _, err := exec.LookPath("dmsetup"); err != nil {
		t.Skip("needs dmsetup to make a device-mapper error target")
	}
	name := fmt.Sprintf("tandem-disk-test-%d", os.Getpid())
	out, err := exec.Command("dmsetup", "create", name, "--table", "0 131072 error").CombinedOutput()
	if err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		t.Skipf("needs a device-mapper error target; the kernel has no dm driver here (dmsetup create: %v: %s)", err, first)
	}
	t.Cleanup(func() { exec.Command("dmsetup", "remove", name).Run() })
	d := openT(t, "/dev/mapper/"+name, Options{MetaPath: sparseFile(t, 1<<20), Direct: true})
	if err := d.ReadAt(GetBuf(1), 0); Classify(err) != repl.EIO {
		t.Fatalf("read of an error target: %v (%v), want EIO", err, Classify(err))
	}
	if err := d.WriteAt(GetBuf(1), 0, true); Classify(err) != repl.EIO {
		t.Fatalf("write of an error target: %v (%v), want EIO", err, Classify(err))
	}
}

func TestBuffers(t *testing.T) {
	for _, n := range []int{1, 100, 4096, 4097, 1 << 20} {
		if b := AlignedBuffer(n); len(b) != n || cap(b) != n || !aligned(b) {
			t.Errorf("AlignedBuffer(%d): len %d cap %d aligned %t", n, len(b), cap(b), aligned(b))
		}
	}
	for _, blocks := range []int{1, 3, 256, 300} {
		b := GetBuf(blocks)
		if len(b) != blocks*BlockSize || !aligned(b) {
			t.Fatalf("GetBuf(%d): len %d aligned %t", blocks, len(b), aligned(b))
		}
		PutBuf(b)
	}
	// A returned buffer is reused for the same size class, whole.
	b := GetBuf(3)
	b[0] = 42
	PutBuf(b)
	c := GetBuf(4)
	if &c[0] != &b[0] || len(c) != 4*BlockSize {
		t.Fatal("GetBuf(4) after PutBuf of a 3-block buffer (class 4) did not reuse it")
	}
	PutBuf(c)
	// Foreign buffers are not taken in.
	for _, f := range [][]byte{make([]byte, BlockSize+1), AlignedBuffer(3 * BlockSize), AlignedBuffer(2 * BlockSize)[BlockSize:]} {
		PutBuf(f)
	}
	for range 4 {
		g := GetBuf(1)
		if cap(g) != BlockSize || !aligned(g) {
			t.Fatalf("GetBuf(1) handed out a foreign buffer: cap %d", cap(g))
		}
	}
}

// TestConcurrent: writes, trims, flushes and a metadata persist from many
// goroutines at once (as the daemon issues independent DiskIO outputs) all
// land; run with -race.
func TestConcurrent(t *testing.T) {
	path := sparseFile(t, testBytes)
	if err := CreateMD(path, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := openT(t, path, Options{Direct: true})
	rec, err := d.LoadMeta()
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 32
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2+1) // room for every send: drained after Wait
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				block := uint64(w*each+i) * 2
				buf := GetBuf(2)
				pattern(buf, block, byte(w+1))
				errs <- d.WriteAt(buf, block, i%4 == 0)
				PutBuf(buf)
				if i%8 == 7 {
					errs <- d.Flush()
					errs <- d.Trim(block+1, 1)
				}
			}
		})
	}
	wg.Go(func() {
		rec.Seq++
		rec.Bitmap.SetRange(0, 100)
		errs <- d.PersistMeta(rec, false)
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for w := range workers {
		for i := range each {
			block := uint64(w*each+i) * 2
			want, got := make([]byte, 2*BlockSize), GetBuf(2)
			pattern(want, block, byte(w+1))
			if i%8 == 7 {
				clear(want[BlockSize:])
			}
			if err := d.ReadAt(got, block); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("blocks %d+2 (worker %d): err %v, equal %t", block, w, err, bytes.Equal(got, want))
			}
		}
	}
	if got, _ := onDisk(t, d); got.Seq != 1 || got.Bitmap.Count() != 100 {
		t.Fatalf("metadata persisted beside the data I/O: Seq %d, %d bits", got.Seq, got.Bitmap.Count())
	}
}
