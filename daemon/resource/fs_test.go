package resource

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// loopExt4 makes an ext4 filesystem in a file and attaches it to a loop
// device, which it returns with an empty mountpoint.
func loopExt4(t *testing.T) (dev, mountpoint string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a loop device needs root")
	}
	for _, tool := range []string{"mkfs.ext4", "losetup", "fsck.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the filesystem agent is tested on an ext4 loop device, which needs %s (e2fsprogs/util-linux): not found", tool)
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device to test the filesystem agent on (losetup: %v: %s)", err, strings.TrimSpace(string(out)))
	}
	dev = strings.TrimSpace(string(out))
	mountpoint = filepath.Join(dir, "mnt")
	t.Cleanup(func() {
		unix.Unmount(mountpoint, unix.MNT_DETACH) // in case a test failed half-way
		exec.Command("losetup", "-d", dev).Run()
	})
	return dev, mountpoint
}

func TestFSMountUnmount(t *testing.T) {
	dev, mp := loopExt4(t)
	var primary atomic.Bool
	fs, err := NewFS(FSSpec{Device: dev, Mountpoint: mp, FSType: "ext4", Options: "noatime,nodev,data=ordered", Fsck: true}, primary.Load)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if st, err := fs.Monitor(ctx); st != Stopped || err != nil {
		t.Fatalf("monitor before start: %v, %v", st, err)
	}
	// Not Primary: no fsck, no mount.
	err = fs.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("start while not writable: %v", err)
	}
	if st, _ := fs.Monitor(ctx); st != Stopped {
		t.Fatalf("mounted although not writable")
	}
	primary.Store(true)
	if err := fs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := fs.Monitor(ctx); st != Running || err != nil {
		t.Fatalf("monitor after start: %v, %v", st, err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if !strings.Contains(string(mi), " "+mp+" ") || !strings.Contains(string(mi), "noatime") {
		t.Errorf("mountinfo lacks %s with noatime", mp)
	}
	if err := os.WriteFile(filepath.Join(mp, "data"), []byte("hello"), 0o644); err != nil {
		t.Fatalf("the filesystem is not writable: %v", err)
	}
	if err := fs.Start(ctx); err != nil {
		t.Errorf("second start: %v (a mounted filesystem is started)", err)
	}
	if err := fs.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := fs.Monitor(ctx); st != Stopped || err != nil {
		t.Errorf("monitor after stop: %v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(mp, "data")); !os.IsNotExist(err) {
		t.Errorf("the file is still visible after stop: %v", err)
	}
	if err := fs.Stop(ctx); err != nil {
		t.Errorf("second stop: %v (stop must be idempotent)", err)
	}
	// The data survived: mount again.
	if err := fs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(mp, "data")); string(b) != "hello" {
		t.Errorf("after remount: %q, %v", b, err)
	}
	if err := fs.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// startHolder runs a process with its working directory in dir and returns
// it; ignoreTERM makes it survive SIGTERM.
func startHolder(t *testing.T, dir string, ignoreTERM bool) *exec.Cmd {
	t.Helper()
	script := "exec sleep 60"
	if ignoreTERM {
		script = `trap "" TERM; exec sleep 60` // SIG_IGN survives exec
	}
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait for the exec so that the process is "sleep" when /proc is read.
	for i := 0; i < 100; i++ {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm"); strings.TrimSpace(string(b)) == "sleep" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd
}

func TestFSBusy(t *testing.T) {
	dev, mp := loopExt4(t)
	yes := func() bool { return true }
	fs, _ := NewFS(FSSpec{Device: dev, Mountpoint: mp, FSType: "ext4"}, yes)
	ctx := ctxT(t)
	if err := fs.Start(ctx); err != nil {
		t.Fatal(err)
	}
	holder := startHolder(t, mp, false)

	// Without force: retries, then names the holder.
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	err := fs.Stop(short)
	want := "pid " + strconv.Itoa(holder.Process.Pid) + " (sleep) by its cwd"
	if err == nil || !strings.Contains(err.Error(), "busy") || !strings.Contains(err.Error(), want) {
		t.Fatalf("stop of a busy filesystem: %v; want busy, %q", err, want)
	}
	if short.Err() != nil {
		t.Error("stop used up its whole time: the core would time out before hearing who holds it")
	}
	if st, _ := fs.Monitor(ctx); st != Running {
		t.Errorf("monitor after the failed stop: %v, want running", st)
	}

	// With force: SIGTERM, then SIGKILL for one that ignores it.
	stubborn := startHolder(t, mp, true)
	forced, _ := NewFS(FSSpec{Device: dev, Mountpoint: mp, FSType: "ext4", ForceUnmount: true}, yes)
	start := time.Now()
	if err := forced.Stop(ctx); err != nil {
		t.Fatalf("forced stop: %v", err)
	}
	if took := time.Since(start); took < KillAfter {
		t.Errorf("forced stop took %v; the stubborn holder should have needed SIGKILL after %v", took, KillAfter)
	}
	for _, c := range []struct {
		cmd *exec.Cmd
		sig string
	}{{holder, "terminated"}, {stubborn, "killed"}} {
		if err := c.cmd.Wait(); err == nil || !strings.Contains(err.Error(), c.sig) {
			t.Errorf("holder %d: %v, want %s", c.cmd.Process.Pid, err, c.sig)
		}
	}
	if st, _ := fs.Monitor(ctx); st != Stopped {
		t.Errorf("monitor after forced stop: %v", st)
	}
}

func TestFSOtherMountAndFsck(t *testing.T) {
	dev, mp := loopExt4(t)
	yes := func() bool { return true }
	ctx := ctxT(t)
	fs, _ := NewFS(FSSpec{Device: dev, Mountpoint: mp, FSType: "ext4", Fsck: true}, yes)

	// Something else on the mountpoint: refuse, and monitor says failed.
	os.MkdirAll(mp, 0o755)
	if err := unix.Mount("tandemtest", mp, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Start(ctx); err == nil || !strings.Contains(err.Error(), "already mounted") {
		t.Errorf("start over another filesystem: %v", err)
	}
	if st, err := fs.Monitor(ctx); st != Failed || err == nil {
		t.Errorf("monitor with tmpfs on the mountpoint: %v, %v", st, err)
	}
	if err := fs.Stop(ctx); err != nil {
		t.Errorf("stop must leave a filesystem that is not ours alone and succeed: %v", err)
	}
	if err := unix.Unmount(mp, 0); err != nil {
		t.Fatalf("the tmpfs was unmounted by our stop? %v", err)
	}

	// Errors fsck can fix (exit 1) do not stop the mount.
	if out, err := exec.Command("debugfs", "-w", "-R", "ssv free_blocks_count 1", dev).CombinedOutput(); err != nil {
		t.Skipf("debugfs cannot damage the test filesystem: %v: %s", err, out)
	}
	if out, err := exec.Command("tune2fs", "-E", "force_fsck", dev).CombinedOutput(); err != nil {
		t.Skipf("tune2fs cannot flag the test filesystem for checking: %v: %s", err, out)
	}
	if err := fs.Start(ctx); err != nil {
		t.Fatalf("start after fixable damage: %v", err)
	}
	if err := fs.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// A destroyed superblock: fsck exits 8 and nothing is mounted.
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 1024), 1024)
	f.Sync()
	f.Close()
	err = fs.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "exit status 8") || !strings.Contains(err.Error(), "uncorrected or fsck failed") {
		t.Errorf("start after destroying the superblock: %v", err)
	}
	if st, _ := fs.Monitor(ctx); st != Stopped {
		t.Errorf("monitor: %v, want stopped", st)
	}
}

func TestParseMountinfo(t *testing.T) {
	e, err := parseMountinfoLine(`36 35 7:3 / /mnt/my\040data rw,noatime shared:1 master:2 - ext4 /dev/loop3 rw,errors=continue`)
	if err != nil {
		t.Fatal(err)
	}
	if e.dev != unix.Mkdev(7, 3) || e.mountpoint != "/mnt/my data" || e.fstype != "ext4" || e.source != "/dev/loop3" {
		t.Errorf("parsed %+v", e)
	}
	for _, bad := range []string{"", "36 35 7:3 / /mnt rw", "36 35 x:3 / /mnt rw - ext4 /dev/loop3 rw"} {
		if _, err := parseMountinfoLine(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestParseMountOptions(t *testing.T) {
	flags, data, err := parseMountOptions("defaults,ro,noatime,nosuid,data=ordered,x-systemd.foo,_netdev,errors=remount-ro")
	if err != nil {
		t.Fatal(err)
	}
	if flags != unix.MS_RDONLY|unix.MS_NOATIME|unix.MS_NOSUID || data != "data=ordered,errors=remount-ro" {
		t.Errorf("flags %#x data %q", flags, data)
	}
	if f, _, _ := parseMountOptions("ro,rw"); f != 0 {
		t.Errorf("rw after ro: flags %#x, want 0", f)
	}
	if _, _, err := parseMountOptions("bind"); err == nil {
		t.Error("bind accepted")
	}
}

func TestFSSpecErrors(t *testing.T) {
	yes := func() bool { return true }
	for _, s := range []FSSpec{
		{Mountpoint: "/mnt", FSType: "ext4"},
		{Device: "/dev/x", Mountpoint: "mnt", FSType: "ext4"},
		{Device: "/dev/x", Mountpoint: "/", FSType: "ext4"},
		{Device: "/dev/x", Mountpoint: "/mnt"},
		{Device: "/dev/x", Mountpoint: "/mnt", FSType: "ext4", Options: "remount"},
	} {
		if _, err := NewFS(s, yes); err == nil {
			t.Errorf("NewFS(%+v) accepted it", s)
		}
	}
}
