package vm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultModules are loaded by the guest's init, with their dependencies, in
// this order: the virtio devices first (disks, network, the agent's port),
// then what Tandem and the tests use.
var DefaultModules = []string{
	"virtio_pci", "virtio_blk", "virtio_net", "virtio_console",
	"nbd", "ext4", "dm-mod", "dm-flakey", "dm-delay", "loop",
}

// hostTools are the dynamically linked host programs copied into the
// initramfs with their shared libraries (busybox has weaker versions of
// some). Each maps the guest path to the Debian package that provides it.
var hostTools = []struct{ guest, pkg string }{
	{"/usr/sbin/mke2fs", "e2fsprogs"},
	{"/usr/sbin/e2fsck", "e2fsprogs"},
	{"/usr/sbin/tune2fs", "e2fsprogs"},
	{"/usr/sbin/dumpe2fs", "e2fsprogs"},
	{"/usr/sbin/dmsetup", "dmsetup"},
}

var toolLinks = map[string]string{ // guest symlink -> target
	"/usr/sbin/mkfs.ext4": "mke2fs",
	"/usr/sbin/mkfs.ext2": "mke2fs",
	"/usr/sbin/fsck.ext4": "e2fsck",
	"/usr/sbin/fsck.ext2": "e2fsck",
}

// ImageOptions choose what goes into the initramfs besides the defaults.
type ImageOptions struct {
	// Modules are extra kernel modules to load at boot (with their
	// dependencies), e.g. "drbd" for a baseline.
	Modules []string
	// Files are extra host files to copy in: guest path -> host path.
	Files map[string]string
	// Programs are extra Go programs built static and copied in: guest
	// path -> package path relative to the module root, e.g.
	// "/bin/spool": "./vmtests/spool".
	Programs map[string]string
}

func (o ImageOptions) key() string {
	var files []string
	for g, h := range o.Files {
		files = append(files, g+"="+h)
	}
	for g, p := range o.Programs {
		files = append(files, g+"=go:"+p)
	}
	sort.Strings(files)
	return strings.Join(o.Modules, ",") + "|" + strings.Join(files, ",")
}

// Image is what a VM boots: the kernel and an initramfs.
type Image struct {
	Kernel  *Kernel
	Initrd  string   // path of the newc cpio archive
	Modules []string // guest paths of the .ko files, in insmod order
	Size    int64    // bytes of the initramfs
}

var images struct {
	sync.Mutex
	m map[string]*Image
}

// BuildImage returns the boot image for opts, building what is missing. It
// is built at most once per test binary; across runs the kernel is cached by
// package version and the initramfs by a hash of its contents (so a changed
// tandem binary gives a new image and an unchanged one reuses the file).
func BuildImage(ctx context.Context, opts ImageOptions, logf func(string, ...any)) (*Image, error) {
	images.Lock()
	defer images.Unlock()
	if img, ok := images.m[opts.key()]; ok {
		return img, nil
	}
	img, err := buildImage(ctx, opts, logf)
	if err != nil {
		return nil, err
	}
	if images.m == nil {
		images.m = map[string]*Image{}
	}
	images.m[opts.key()] = img
	return img, nil
}

func buildImage(ctx context.Context, opts ImageOptions, logf func(string, ...any)) (*Image, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	// Other test binaries (another checkout's make vmtest, go test run
	// twice) may fill the same cache: one at a time.
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("locking the cache %s: %w", cache, err)
	}
	k, err := EnsureKernel(ctx, cache, logf)
	if err != nil {
		return nil, err
	}
	a := newArchive()
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/root", "/mnt", "/var/log", "/etc/tandem", "/bin", "/sbin", "/usr/bin", "/usr/sbin"} {
		a.dir(d, 0o755)
	}
	a.dir("/tmp", 0o1777)
	// The kernel opens /dev/console for init before anything mounts devtmpfs.
	a.chardev("/dev/console", 0o600, 5, 1)
	a.chardev("/dev/null", 0o666, 1, 3)

	// Go programs: the product and the harness's agent, static.
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	progs := []struct{ pkg, guest string }{
		{"./cmd/tandem", "/bin/tandem"},
		{"./vmtests/agent", "/bin/tandem-agent"},
	}
	for g, p := range opts.Programs {
		progs = append(progs, struct{ pkg, guest string }{p, g})
	}
	for _, p := range progs {
		b, err := goBuild(ctx, root, cache, p.pkg)
		if err != nil {
			return nil, err
		}
		a.file(p.guest, b, 0o755)
	}

	if err := addBusybox(ctx, a); err != nil {
		return nil, err
	}
	for _, t := range hostTools {
		if err := addDynamic(ctx, a, t.guest, t.pkg); err != nil {
			return nil, err
		}
	}
	for l, t := range toolLinks {
		a.symlink(l, t)
	}
	if b, err := os.ReadFile("/etc/mke2fs.conf"); err == nil {
		a.file("/etc/mke2fs.conf", b, 0o644)
	}
	for g, h := range opts.Files {
		b, err := os.ReadFile(h)
		if err != nil {
			return nil, fmt.Errorf("image: extra file %s: %w", g, err)
		}
		st, _ := os.Stat(h)
		a.file(g, b, uint32(st.Mode().Perm()))
	}

	mods, err := addModules(ctx, a, k, append(append([]string{}, DefaultModules...), opts.Modules...))
	if err != nil {
		return nil, err
	}
	a.file("/etc/tandem/modules", []byte(strings.Join(mods, "\n")+"\n"), 0o644)
	a.file("/etc/inittab", []byte(inittab), 0o644)
	a.file("/etc/rc", []byte(rcScript), 0o755)
	a.file("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	a.file("/etc/group", []byte("root:x:0:\n"), 0o644)
	// busybox init runs as /init: the kernel starts /init from an initramfs.
	a.symlink("/init", "/bin/busybox")

	h := sha256.New()
	if err := a.writeTo(h); err != nil {
		return nil, err
	}
	sum := hex.EncodeToString(h.Sum(nil))[:16]
	dir := filepath.Join(cache, "initrd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, k.Release+"-"+sum+".cpio")
	if _, err := os.Stat(out); err != nil {
		var buf bytes.Buffer
		if err := a.writeTo(&buf); err != nil {
			return nil, err
		}
		tmp := out + ".tmp"
		if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, out); err != nil {
			return nil, err
		}
		logf("initramfs: built %s (%d KiB)", out, buf.Len()>>10)
		pruneOld(dir, 6)
	} else {
		now := time.Now()
		os.Chtimes(out, now, now) // most recently used: pruned last
	}
	st, err := os.Stat(out)
	if err != nil {
		return nil, err
	}
	return &Image{Kernel: k, Initrd: out, Modules: mods, Size: st.Size()}, nil
}

// goBuild builds a static binary of pkg (a path relative to the module root)
// and returns its bytes.
func goBuild(ctx context.Context, root, cache, pkg string) ([]byte, error) {
	goBin := "go"
	if p, err := exec.LookPath("go"); err == nil {
		goBin = p
	} else if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		goBin = p
	}
	bin := filepath.Join(cache, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(bin, strings.Trim(strings.ReplaceAll(pkg, "/", "_"), "._"))
	if _, err := command(ctx, root, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"},
		goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg); err != nil {
		return nil, fmt.Errorf("building %s for the VMs: %w", pkg, err)
	}
	return os.ReadFile(out)
}

func addBusybox(ctx context.Context, a *archive) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox not found: run `make vmtest-deps` (apt-get install busybox-static)")
	}
	if dynamic(bb) {
		return fmt.Errorf("%s is dynamically linked: install busybox-static (make vmtest-deps)", bb)
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	a.file("/bin/busybox", b, 0o755)
	list, err := command(ctx, "", nil, bb, "--list-full")
	if err != nil {
		return err
	}
	real := map[string]bool{}
	for _, t := range hostTools {
		real[path.Base(t.guest)] = true
	}
	for l := range toolLinks {
		real[path.Base(l)] = true
	}
	for _, p := range strings.Fields(string(list)) {
		if real[path.Base(p)] || p == "linuxrc" || path.Base(p) == "busybox" {
			continue
		}
		a.symlink("/"+p, "/bin/busybox")
	}
	// Every applet also under /bin, so scripts that hard-code /bin/x work.
	for _, p := range strings.Fields(string(list)) {
		if !real[path.Base(p)] && path.Base(p) != "busybox" && !a.has("/bin/"+path.Base(p)) {
			a.symlink("/bin/"+path.Base(p), "/bin/busybox")
		}
	}
	return nil
}

func dynamic(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, ph := range f.Progs {
		if ph.Type == elf.PT_INTERP {
			return true
		}
	}
	return false
}

var lddLine = regexp.MustCompile(`^\s*(?:\S+\s+=>\s+)?(/\S+)\s+\(0x`)

// addDynamic copies the host program named like guest (looked up in PATH)
// to guest, with every shared library ldd lists, each at the path ldd names
// (the loader's default search path finds them there).
func addDynamic(ctx context.Context, a *archive, guest, pkg string) error {
	host := lookTool(path.Base(guest))
	if !filepath.IsAbs(host) {
		return fmt.Errorf("%s not found on the host: run `make vmtest-deps` (apt-get install %s)", path.Base(guest), pkg)
	}
	b, err := os.ReadFile(host)
	if err != nil {
		return err
	}
	a.file(guest, b, 0o755)
	out, err := command(ctx, "", nil, "ldd", host)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := lddLine.FindStringSubmatch(sc.Text())
		if m == nil || a.has(m[1]) {
			continue
		}
		lib, err := os.ReadFile(m[1]) // follows symlinks: the real file's bytes
		if err != nil {
			return fmt.Errorf("%s needs %s: %w", host, m[1], err)
		}
		a.file(m[1], lib, 0o755)
	}
	return nil
}

// addModules adds each module in names and its dependencies under
// /lib/modules/RELEASE (with a modules.dep for busybox modprobe) and returns
// their guest paths in insmod order.
func addModules(ctx context.Context, a *archive, k *Kernel, names []string) ([]string, error) {
	modRoot := filepath.Join(k.Root, "lib", "modules", k.Release)
	var order []string
	seen := map[string]bool{}
	for _, n := range names {
		out, err := command(ctx, "", nil, "modprobe", "-d", k.Root, "-S", k.Release, "--show-depends", n)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w (is kmod installed? make vmtest-deps)", n, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "insmod" {
				continue // "builtin X": nothing to load
			}
			rel, err := filepath.Rel(k.Root, f[1])
			if err != nil || strings.HasPrefix(rel, "..") {
				return nil, fmt.Errorf("module %s: %s is outside %s", n, f[1], k.Root)
			}
			if seen[rel] {
				continue
			}
			seen[rel] = true
			order = append(order, "/"+filepath.ToSlash(rel))
		}
	}
	// depmod over just these modules, in a scratch tree, for modprobe.
	stage, err := os.MkdirTemp("", "tandem-depmod-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	for _, g := range order {
		b, err := os.ReadFile(filepath.Join(k.Root, g))
		if err != nil {
			return nil, err
		}
		a.file(g, b, 0o644)
		dst := filepath.Join(stage, g)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return nil, err
		}
	}
	stageMods := filepath.Join(stage, "lib", "modules", k.Release)
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if b, err := os.ReadFile(filepath.Join(modRoot, f)); err == nil {
			os.WriteFile(filepath.Join(stageMods, f), b, 0o644)
		}
	}
	if _, err := command(ctx, "", nil, "depmod", "-b", stage, k.Release); err != nil {
		return nil, err
	}
	files, _ := filepath.Glob(filepath.Join(stageMods, "modules.*"))
	for _, f := range files {
		if strings.HasSuffix(f, ".bin") {
			continue // busybox modprobe reads the text forms
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		a.file(path.Join("/lib/modules", k.Release, filepath.Base(f)), b, 0o644)
	}
	return order, nil
}

// pruneOld keeps the keep most recently used files in dir.
func pruneOld(dir string, keep int) {
	ents, _ := os.ReadDir(dir)
	type f struct {
		p string
		t int64
	}
	var fs []f
	for _, e := range ents {
		if info, err := e.Info(); err == nil && !e.IsDir() {
			fs = append(fs, f{filepath.Join(dir, e.Name()), info.ModTime().UnixNano()})
		}
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].t > fs[j].t })
	for i := keep; i < len(fs); i++ {
		os.Remove(fs[i].p)
	}
}

// inittab: busybox init runs /etc/rc once, then keeps the agent running.
const inittab = `::sysinit:/etc/rc
::respawn:/bin/tandem-agent
::ctrlaltdel:/bin/poweroff -f
::shutdown:/bin/sync
`

// rcScript brings the guest up from the kernel command line:
// tandem.name=NAME (hostname), tandem.ip=ADDR/LEN[,ADDR/LEN] (on eth0),
// tandem.hosts=NAME=IP[,NAME=IP] (/etc/hosts).
const rcScript = `#!/bin/sh
# /etc/rc: run once by busybox init before the agent starts (vmtests/vm/image.go).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
name=vm ips= hosts=
for w in $(cat /proc/cmdline); do
	case $w in
	tandem.name=*) name=${w#*=} ;;
	tandem.ip=*) ips=${w#*=} ;;
	tandem.hosts=*) hosts=${w#*=} ;;
	esac
done
hostname "$name"
echo "127.0.0.1 localhost" > /etc/hosts
for h in $(echo "$hosts" | tr , ' '); do echo "${h#*=} ${h%%=*}" >> /etc/hosts; done
while read -r m; do insmod "$m" || echo "rc: insmod $m failed"; done < /etc/tandem/modules
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
if [ -e /sys/class/net/eth0 ]; then
	for a in $(echo "$ips" | tr , ' '); do ip addr add "$a" dev eth0; done
	ip link set eth0 up
else
	echo "rc: no eth0 after 10s"
fi
[ -e /dev/ttyS1 ] && stty -F /dev/ttyS1 raw -echo 115200 2>/dev/null
echo "rc: $name up, eth0 $ips, $(cut -d' ' -f1 /proc/uptime)s after boot"
`
