package resource

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"tandem/daemon/resource/proc"
)

// FSSpec is a filesystem to mount, Heartbeat's Filesystem resource.
type FSSpec struct {
	// Device is what to mount, e.g. "/dev/nbd0" (the replicated device).
	Device string
	// Mountpoint is where, an absolute path; created if missing.
	Mountpoint string
	// FSType is the filesystem type, e.g. "ext4". Required.
	FSType string
	// Options are mount options as in fstab, comma-separated, e.g.
	// "noatime,data=ordered". Flags (ro, nosuid, nodev, noexec, noatime,
	// sync, ...) become mount flags; the rest is passed to the filesystem.
	// fstab-only words (defaults, auto, noauto, nofail, _netdev, user,
	// nouser, x-*) are ignored.
	Options string
	// Fsck runs `fsck.FSTYPE -p DEVICE` before mounting. Exit 0 (clean)
	// and 1 (errors corrected) mount; 2 (reboot needed) and anything from
	// 4 up (errors left, operational error) fail the Start.
	Fsck bool
	// ForceUnmount: when the filesystem is busy at Stop, send SIGTERM to
	// the processes holding it, then SIGKILL to those still there after
	// KillAfter (Heartbeat's force_unmount). Without it Stop only retries
	// and, failing, names the holders.
	ForceUnmount bool
}

// KillAfter is how long a forced unmount waits after SIGTERM before SIGKILL.
const KillAfter = 2 * time.Second

// unmountRetry is the pause between unmount attempts on a busy filesystem.
const unmountRetry = 500 * time.Millisecond

// FS is a filesystem of the group.
//
// Start refuses to mount (and to fsck) unless Writable says yes: the device
// is replicated and only the Primary may write it. Mounting what is mounted
// already succeeds; a different filesystem on the mountpoint fails the
// Start. Stop unmounts, retrying while the filesystem is busy until shortly
// before its deadline, and then fails naming the processes that hold it
// (found by scanning /proc/*/cwd, root, exe, fd and maps), killing them
// first if ForceUnmount is set. Monitor reads /proc/self/mountinfo: Running
// if the device is mounted on the mountpoint, Stopped if nothing is, Failed
// if another filesystem is mounted there.
type FS struct {
	spec     FSSpec
	flags    uintptr
	data     string
	writable func() bool
}

// NewFS checks spec and returns its agent. writable is required: it gates
// every mount (use func() bool { return true } for a device that is not
// replicated).
func NewFS(spec FSSpec, writable func() bool) (*FS, error) {
	switch {
	case spec.Device == "":
		return nil, errors.New("fs resource: Device is empty")
	case !filepath.IsAbs(spec.Mountpoint):
		return nil, fmt.Errorf("fs resource %s: Mountpoint %q is not an absolute path", spec.Device, spec.Mountpoint)
	case filepath.Clean(spec.Mountpoint) == "/":
		return nil, fmt.Errorf("fs resource %s: refusing to mount on /", spec.Device)
	case spec.FSType == "":
		return nil, fmt.Errorf("fs resource %s: FSType is empty (e.g. ext4)", spec.Device)
	case writable == nil:
		return nil, fmt.Errorf("fs resource %s: no Writable callback: mounting must be gated on the device being Primary", spec.Device)
	}
	spec.Mountpoint = filepath.Clean(spec.Mountpoint)
	flags, data, err := parseMountOptions(spec.Options)
	if err != nil {
		return nil, fmt.Errorf("fs resource %s: Options: %w", spec.Device, err)
	}
	return &FS{spec: spec, flags: flags, data: data, writable: writable}, nil
}

func (f *FS) String() string { return fmt.Sprintf("fs %s on %s", f.spec.Device, f.spec.Mountpoint) }

var mountFlags = map[string]struct {
	set   bool
	value uintptr
}{
	"ro": {true, unix.MS_RDONLY}, "rw": {false, unix.MS_RDONLY},
	"nosuid": {true, unix.MS_NOSUID}, "suid": {false, unix.MS_NOSUID},
	"nodev": {true, unix.MS_NODEV}, "dev": {false, unix.MS_NODEV},
	"noexec": {true, unix.MS_NOEXEC}, "exec": {false, unix.MS_NOEXEC},
	"sync": {true, unix.MS_SYNCHRONOUS}, "async": {false, unix.MS_SYNCHRONOUS},
	"dirsync": {true, unix.MS_DIRSYNC},
	"noatime": {true, unix.MS_NOATIME}, "atime": {false, unix.MS_NOATIME},
	"nodiratime": {true, unix.MS_NODIRATIME}, "diratime": {false, unix.MS_NODIRATIME},
	"relatime": {true, unix.MS_RELATIME}, "norelatime": {false, unix.MS_RELATIME},
	"strictatime": {true, unix.MS_STRICTATIME},
	"lazytime":    {true, unix.MS_LAZYTIME}, "nolazytime": {false, unix.MS_LAZYTIME},
}

var fstabOnly = []string{"defaults", "auto", "noauto", "nofail", "_netdev", "user", "nouser", "users", "owner", "group"}

// parseMountOptions splits fstab-style options into mount flags and the
// filesystem's own options.
func parseMountOptions(opts string) (uintptr, string, error) {
	var flags uintptr
	var data []string
	for _, o := range strings.Split(opts, ",") {
		o = strings.TrimSpace(o)
		switch {
		case o == "" || slices.Contains(fstabOnly, o) || strings.HasPrefix(o, "x-"):
		case o == "remount" || o == "bind" || o == "rbind" || o == "move":
			return 0, "", fmt.Errorf("%q is not an option for a resource's mount", o)
		default:
			if f, ok := mountFlags[o]; ok {
				if f.set {
					flags |= f.value
				} else {
					flags &^= f.value
				}
				continue
			}
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ","), nil
}

// Start checks, optionally fscks and mounts the filesystem.
func (f *FS) Start(ctx context.Context) error {
	if !f.writable() {
		return fmt.Errorf("refusing to mount %s: the device is not writable here (not Primary)", f.spec.Device)
	}
	st, err := f.state()
	if err != nil {
		return err
	}
	switch {
	case st.ours:
		return nil
	case st.other != nil:
		return fmt.Errorf("%s is already mounted on %s; refusing to mount %s over it", st.other.source, f.spec.Mountpoint, f.spec.Device)
	}
	if err := os.MkdirAll(f.spec.Mountpoint, 0o755); err != nil {
		return fmt.Errorf("creating mountpoint: %w", err)
	}
	if f.spec.Fsck {
		if err := f.fsck(ctx); err != nil {
			return err
		}
		if !f.writable() {
			return fmt.Errorf("refusing to mount %s: the device stopped being writable here during fsck", f.spec.Device)
		}
	}
	if err := unix.Mount(f.spec.Device, f.spec.Mountpoint, f.spec.FSType, f.flags, f.data); err != nil {
		return fmt.Errorf("mount -t %s %s %s (options %q): %w", f.spec.FSType, f.spec.Device, f.spec.Mountpoint, f.spec.Options, err)
	}
	return nil
}

// fsck runs the filesystem's checker in preen mode.
func (f *FS) fsck(ctx context.Context) error {
	checker, err := exec.LookPath("fsck." + f.spec.FSType)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} { // a daemon's PATH may lack sbin
			if p := filepath.Join(dir, "fsck."+f.spec.FSType); isExecutable(p) {
				checker, err = p, nil
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("fsck requested but fsck.%s is not installed", f.spec.FSType)
	}
	res, err := proc.Run(ctx, proc.Command{Path: checker, Args: []string{"-p", f.spec.Device}})
	if err != nil {
		return fmt.Errorf("fsck: %w", err)
	}
	switch {
	case res.Code == 0 || res.Code == 1:
		return nil
	case res.Code&2 != 0 && res.Code < 4:
		return fmt.Errorf("fsck %s: %s", f.spec.Device, res.Describe("the system should be rebooted; not mounting"))
	}
	return fmt.Errorf("fsck %s: %s", f.spec.Device, res.Describe("errors left uncorrected or fsck failed; run fsck by hand"))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Stop unmounts the filesystem (every time it is mounted there).
func (f *FS) Stop(ctx context.Context) error {
	// Leave time to report who holds the filesystem before the core's own
	// timeout fires and the report is lost.
	stopBy := time.Now().Add(24 * time.Hour)
	if dl, ok := ctx.Deadline(); ok {
		stopBy = dl.Add(-min(time.Until(dl)/10, time.Second))
	}
	var termAt time.Time
	for {
		st, err := f.state()
		if err != nil {
			return err
		}
		if !st.ours {
			return nil
		}
		err = unix.Unmount(f.spec.Mountpoint, 0)
		if err == nil || errors.Is(err, unix.EINVAL) { // EINVAL: not mounted (any more)
			continue
		}
		if !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("umount %s: %w", f.spec.Mountpoint, err)
		}
		holders := findHolders(st.dev)
		if f.spec.ForceUnmount {
			switch {
			case termAt.IsZero():
				termAt = time.Now()
				signalHolders(holders, unix.SIGTERM)
			case time.Since(termAt) >= KillAfter:
				signalHolders(holders, unix.SIGKILL)
			}
		}
		if time.Now().Add(unmountRetry).After(stopBy) || ctx.Err() != nil {
			return fmt.Errorf("umount %s: %w; %s", f.spec.Mountpoint, err, describeHolders(holders, f.spec.Mountpoint))
		}
		select {
		case <-ctx.Done():
		case <-time.After(unmountRetry):
		}
	}
}

// Monitor checks the mount table.
func (f *FS) Monitor(ctx context.Context) (Status, error) {
	st, err := f.state()
	switch {
	case err != nil:
		return Failed, err
	case st.ours:
		return Running, nil
	case st.other != nil:
		return Failed, fmt.Errorf("%s is mounted on %s instead of %s", st.other.source, f.spec.Mountpoint, f.spec.Device)
	}
	return Stopped, nil
}

// ---- the mount table ----

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	dev        uint64 // st_dev of the mounted filesystem
	mountpoint string
	fstype     string
	source     string
}

// fsState is what the mount table says about our mountpoint.
type fsState struct {
	ours  bool        // our device is mounted there
	dev   uint64      // its device number, if so
	other *mountEntry // the topmost other filesystem mounted there
}

func (f *FS) state() (fsState, error) {
	entries, err := readMountinfo("/proc/self/mountinfo")
	if err != nil {
		return fsState{}, err
	}
	mp := f.spec.Mountpoint
	if real, err := filepath.EvalSymlinks(mp); err == nil {
		mp = real // the kernel reports resolved paths
	}
	var want uint64
	isBlock := false
	var fi unix.Stat_t
	if err := unix.Stat(f.spec.Device, &fi); err == nil && fi.Mode&unix.S_IFMT == unix.S_IFBLK {
		want, isBlock = fi.Rdev, true
	}
	var st fsState
	for i := range entries {
		e := &entries[i]
		if e.mountpoint != mp {
			continue
		}
		if isBlock && e.dev == want || !isBlock && e.source == f.spec.Device {
			st.ours, st.dev = true, e.dev
		} else {
			st.other = e
		}
	}
	return st, nil
}

func readMountinfo(path string) ([]mountEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	var out []mountEntry
	for n, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		e, err := parseMountinfoLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, n+1, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// parseMountinfoLine reads "36 35 98:0 /root /mnt rw,noatime master:1 -
// ext3 /dev/root rw,errors=continue" (proc(5)).
func parseMountinfoLine(line string) (mountEntry, error) {
	fields := strings.Fields(line)
	sep := slices.Index(fields, "-")
	if len(fields) < 6 || sep < 6 || sep+2 >= len(fields) {
		return mountEntry{}, fmt.Errorf("malformed mountinfo line %q", line)
	}
	majS, minS, ok := strings.Cut(fields[2], ":")
	major, err1 := strconv.ParseUint(majS, 10, 32)
	minor, err2 := strconv.ParseUint(minS, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return mountEntry{}, fmt.Errorf("malformed device %q in mountinfo line %q", fields[2], line)
	}
	return mountEntry{
		dev:        unix.Mkdev(uint32(major), uint32(minor)),
		mountpoint: unescapeMount(fields[4]),
		fstype:     fields[sep+1],
		source:     unescapeMount(fields[sep+2]),
	}, nil
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ---- who holds a filesystem ----

// holder is a process using a filesystem.
type holder struct {
	pid  int
	comm string
	how  string // "cwd", "fd 3 (/mnt/x)", "maps", ...
}

// findHolders scans /proc for processes with their working directory,
// root, executable, open files or mapped files on device dev (what
// `fuser -m` does). Processes that vanish or cannot be read are skipped.
func findHolders(dev uint64) []holder {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []holder
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if how := holds(pid, dev); how != "" {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			out = append(out, holder{pid: pid, comm: strings.TrimSpace(string(comm)), how: how})
		}
	}
	return out
}

// holds says how process pid uses device dev, or "" if it does not.
func holds(pid int, dev uint64) string {
	base := fmt.Sprintf("/proc/%d/", pid)
	onDev := func(path string) bool {
		var st unix.Stat_t
		return unix.Stat(path, &st) == nil && st.Dev == dev
	}
	for _, l := range []string{"cwd", "root", "exe"} {
		if onDev(base + l) {
			return l
		}
	}
	fds, _ := os.ReadDir(base + "fd")
	for _, fd := range fds {
		if onDev(base + "fd/" + fd.Name()) {
			target, _ := os.Readlink(base + "fd/" + fd.Name())
			return fmt.Sprintf("fd %s (%s)", fd.Name(), target)
		}
	}
	if maps, err := os.ReadFile(base + "maps"); err == nil {
		want := fmt.Sprintf(" %02x:%02x ", unix.Major(dev), unix.Minor(dev))
		sc := bufio.NewScanner(bytes.NewReader(maps))
		for sc.Scan() {
			if strings.Contains(sc.Text(), want) {
				return "a mapped file"
			}
		}
	}
	return ""
}

func signalHolders(hs []holder, sig unix.Signal) {
	for _, h := range hs {
		unix.Kill(h.pid, sig) // it may be gone already: nothing to do then
	}
}

func describeHolders(hs []holder, mountpoint string) string {
	if len(hs) == 0 {
		return "no process holds files there; is something mounted below " + mountpoint + "?"
	}
	parts := make([]string, 0, len(hs))
	for i, h := range hs {
		if i == 10 {
			parts = append(parts, fmt.Sprintf("and %d more", len(hs)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("pid %d (%s) by its %s", h.pid, h.comm, h.how))
	}
	return "held by " + strings.Join(parts, ", ")
}
