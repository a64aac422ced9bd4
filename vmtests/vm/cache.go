package vm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CacheDir is where the kernel, the built binaries and the initramfs images
// are kept between runs: $TANDEM_VMTEST_CACHE if set, else vmtests/.cache in
// the module (ignored by git). Delete it to start from scratch.
func CacheDir() (string, error) {
	if d := os.Getenv("TANDEM_VMTEST_CACHE"); d != "" {
		return filepath.Abs(d)
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "vmtests", ".cache"), nil
}

// ModuleRoot finds the directory of tandem's go.mod by walking up from the
// working directory (go test runs in the package's directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module tandem")) {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("vm: no go.mod of module tandem above %s", dir)
		}
	}
}

// command runs name with args and returns its stdout; the error carries the
// command line and its stderr so a failed tool says why.
func command(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, lookTool(name), args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// lookTool finds a host program in PATH or, for a user whose PATH lacks
// them, in /usr/sbin and /sbin (depmod, modprobe, mke2fs live there).
func lookTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return name
}
