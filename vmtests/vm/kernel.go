package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Kernel is a Debian kernel package unpacked in the cache: the ELF vmlinux
// QEMU boots directly (PVH), and the module tree the initramfs draws from.
type Kernel struct {
	Package    string // e.g. linux-image-6.1.0-56-amd64
	PkgVersion string // e.g. 6.1.192-2
	Release    string // uname -r, e.g. 6.1.0-56-amd64
	Root       string // the package unpacked (boot/, lib/modules/RELEASE/)
	Vmlinux    string // the ELF kernel extracted from boot/vmlinuz-RELEASE
}

// kernelPackage resolves the kernel image package to use: $TANDEM_VMTEST_KERNEL_PKG
// if set (a package name, e.g. linux-image-6.12.38+deb12-amd64), else what the
// candidate version of the linux-image-amd64 metapackage depends on.
func kernelPackage(ctx context.Context) (pkg, version string, err error) {
	meta := "linux-image-amd64"
	if p := os.Getenv("TANDEM_VMTEST_KERNEL_PKG"); p != "" {
		out, err := command(ctx, "", nil, "apt-cache", "show", "--no-all-versions", p)
		if err != nil {
			return "", "", err
		}
		v := field(out, "Version")
		if v == "" {
			return "", "", fmt.Errorf("apt-cache show %s: no Version field", p)
		}
		return p, v, nil
	}
	out, err := command(ctx, "", nil, "apt-cache", "show", "--no-all-versions", meta)
	if err != nil {
		return "", "", err
	}
	dep := field(out, "Depends")
	m := regexp.MustCompile(`(linux-image-[^\s,(]+)\s*\(=\s*([^)\s]+)\)`).FindStringSubmatch(dep)
	if m == nil {
		return "", "", fmt.Errorf("apt-cache show %s: cannot find the image package in Depends: %q", meta, dep)
	}
	return m[1], m[2], nil
}

func field(control []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(control))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// EnsureKernel returns the cached kernel, downloading and unpacking it first
// if needed. The cache entry is keyed by package name and version, so a new
// Debian kernel is fetched when linux-image-amd64 moves on. Without apt (or
// offline) the newest kernel already in the cache is used.
func EnsureKernel(ctx context.Context, cache string, logf func(string, ...any)) (*Kernel, error) {
	base := filepath.Join(cache, "kernel")
	pkg, ver, err := kernelPackage(ctx)
	if err != nil {
		if k := newestCachedKernel(base); k != nil {
			logf("kernel: cannot resolve the package (%v); using the cached %s %s", err, k.Package, k.PkgVersion)
			return k, nil
		}
		return nil, fmt.Errorf("resolving the Debian kernel package (run `make vmtest-deps`, needs apt): %w", err)
	}
	dir := filepath.Join(base, pkg+"_"+ver)
	if k, err := loadKernel(dir); err == nil {
		return k, nil
	}
	logf("kernel: fetching %s %s into %s", pkg, ver, dir)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(base, ".fetch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	// _apt cannot write into a private temp dir; let it (apt falls back to
	// root with a warning otherwise).
	os.Chmod(tmp, 0o777)
	if _, err := command(ctx, tmp, nil, "apt-get", "download", "-q", pkg+"="+ver); err != nil {
		return nil, fmt.Errorf("downloading the kernel: %w", err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s=%s left %d .deb files in %s", pkg, ver, len(debs), tmp)
	}
	root := filepath.Join(tmp, "root")
	if _, err := command(ctx, "", nil, "dpkg-deb", "-x", debs[0], root); err != nil {
		return nil, err
	}
	os.Remove(debs[0])
	rels, _ := filepath.Glob(filepath.Join(root, "lib", "modules", "*"))
	if len(rels) != 1 {
		return nil, fmt.Errorf("%s: expected one lib/modules/RELEASE directory, found %v", pkg, rels)
	}
	release := filepath.Base(rels[0])
	if _, err := command(ctx, "", nil, "depmod", "-b", root, release); err != nil {
		return nil, err
	}
	vmlinuz := filepath.Join(root, "boot", "vmlinuz-"+release)
	if err := extractVmlinux(ctx, vmlinuz, filepath.Join(tmp, "vmlinux")); err != nil {
		return nil, err
	}
	meta := fmt.Sprintf("package=%s\nversion=%s\nrelease=%s\n", pkg, ver, release)
	if err := os.WriteFile(filepath.Join(tmp, "kernel.info"), []byte(meta), 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(dir) // a half-written entry from an interrupted run
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	return loadKernel(dir)
}

func loadKernel(dir string) (*Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kernel.info"))
	if err != nil {
		return nil, err
	}
	k := &Kernel{Root: filepath.Join(dir, "root"), Vmlinux: filepath.Join(dir, "vmlinux")}
	for _, line := range strings.Split(string(b), "\n") {
		key, v, _ := strings.Cut(line, "=")
		switch key {
		case "package":
			k.Package = v
		case "version":
			k.PkgVersion = v
		case "release":
			k.Release = v
		}
	}
	if k.Release == "" {
		return nil, fmt.Errorf("%s: kernel.info has no release", dir)
	}
	if _, err := os.Stat(k.Vmlinux); err != nil {
		return nil, err
	}
	return k, nil
}

func newestCachedKernel(base string) *Kernel {
	dirs, _ := filepath.Glob(filepath.Join(base, "linux-image-*"))
	sort.Slice(dirs, func(i, j int) bool {
		a, _ := os.Stat(dirs[i])
		b, _ := os.Stat(dirs[j])
		return a != nil && b != nil && a.ModTime().After(b.ModTime())
	})
	for _, d := range dirs {
		if k, err := loadKernel(d); err == nil {
			return k
		}
	}
	return nil
}

// xzMagic starts the xz stream holding the kernel inside a bzImage built
// with CONFIG_KERNEL_XZ, as Debian's are.
var xzMagic = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}

// extractVmlinux decompresses the ELF kernel out of a bzImage. Booting the
// ELF directly (PVH entry) skips the in-guest decompression, which costs
// seconds under TCG.
func extractVmlinux(ctx context.Context, vmlinuz, out string) error {
	img, err := os.ReadFile(vmlinuz)
	if err != nil {
		return err
	}
	off := bytes.Index(img, xzMagic)
	if off < 0 {
		return fmt.Errorf("%s: no xz stream (bytes FD 37 7A 58 5A 00) found; is the kernel not xz-compressed?", vmlinuz)
	}
	if _, err := exec.LookPath("xz"); err != nil {
		return errors.New("xz not found: run `make vmtest-deps` (apt-get install xz-utils)")
	}
	cmd := exec.CommandContext(ctx, "xz", "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(img[off:])
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	elf, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("xz -d of %s at offset %d: %v: %s", vmlinuz, off, err, stderr.String())
	}
	if !bytes.HasPrefix(elf, []byte("\x7fELF")) {
		return fmt.Errorf("%s: the xz stream at offset %d is not an ELF kernel", vmlinuz, off)
	}
	return os.WriteFile(out, elf, 0o644)
}
