package vm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Config describes a cluster of VMs.
type Config struct {
	Nodes []NodeConfig
	// Cable names the two nodes whose ttyS1 are joined by the null-modem
	// cable; leave empty for none.
	Cable [2]string
	// Fence lists, per node, the nodes it may fence through its fence
	// device sockets (/run/tandem/qmp-TARGET.sock in the guest; see
	// fence.go).
	Fence map[string][]string
	Image ImageOptions
	// BootTimeout bounds each VM's boot (QEMU start to agent answer); 0
	// means 120s (a TCG boot takes a few seconds; the margin is for a
	// loaded machine).
	BootTimeout time.Duration
}

// Cluster is a set of VMs on one Ethernet (the Switch), optionally with a
// serial cable between two of them, owned by one test: everything it starts
// is stopped in t.Cleanup, and on failure the consoles are dumped into the
// test's log.
type Cluster struct {
	T      testing.TB
	Image  *Image
	Switch *Switch
	Cable  *Cable // nil without one

	cfg   Config
	dir   string // sockets and logs (short path: unix socket names are limited to 108 bytes)
	order []*VM
	by    map[string]*VM
	start time.Time

	fence fencing

	logMu  sync.Mutex
	closed bool
}

// PairNames are the two data nodes of Pair.
var PairNames = [2]string{"server1", "server2"}

// PairConfig is two data nodes, server1 (192.168.1.1) and server2
// (192.168.1.2) on 192.168.1.0/24, each with one 256 MiB disk (/dev/vda),
// joined by the serial cable, each allowed to fence the other.
func PairConfig() Config {
	return Config{
		Nodes: []NodeConfig{
			{Name: "server1", IP: "192.168.1.1/24", Disks: []int64{256 << 20}},
			{Name: "server2", IP: "192.168.1.2/24", Disks: []int64{256 << 20}},
		},
		Cable: PairNames,
		Fence: map[string][]string{"server1": {"server2"}, "server2": {"server1"}},
	}
}

// Pair boots PairConfig.
func Pair(t testing.TB) *Cluster { return New(t, PairConfig()) }

// New builds (or reuses) the boot image, boots every node of cfg and waits
// until each guest agent answers. It fails the test if any of that fails.
func New(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 120 * time.Second
	}
	dir, err := os.MkdirTemp("", "tvm-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{T: t, cfg: cfg, dir: dir, by: map[string]*VM{}, start: time.Now()}
	c.Switch = newSwitch(dir, c.logf)
	t.Cleanup(c.cleanup)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	t0 := time.Now()
	c.Image, err = BuildImage(ctx, cfg.Image, c.logf)
	if err != nil {
		t.Fatalf("vm: building the boot image: %v", err)
	}
	c.logf("image: kernel %s (%s %s), initramfs %s (%d KiB), ready in %v",
		c.Image.Kernel.Release, c.Image.Kernel.Package, c.Image.Kernel.PkgVersion,
		filepath.Base(c.Image.Initrd), c.Image.Size>>10, time.Since(t0).Round(time.Millisecond))

	if cfg.Cable[0] != "" {
		c.Cable = newCable(cfg.Cable[0], cfg.Cable[1])
	}
	disks := t.TempDir()
	for _, n := range cfg.Nodes {
		if n.Name == "" || c.by[n.Name] != nil {
			t.Fatalf("vm: node names must be unique and non-empty: %q", n.Name)
		}
		v := &VM{Name: n.Name, cfg: n, c: c,
			console: filepath.Join(dir, n.Name+".console"),
			qemuLog: filepath.Join(dir, n.Name+".qemu.log"),
			events:  filepath.Join(dir, n.Name+".events")}
		for i, size := range n.Disks {
			p := filepath.Join(disks, fmt.Sprintf("%s.disk%d.img", n.Name, i))
			f, err := os.Create(p)
			if err == nil {
				err = f.Truncate(size)
				f.Close()
			}
			if err != nil {
				t.Fatalf("vm: creating %s's disk %d: %v", n.Name, i, err)
			}
			v.disks = append(v.disks, p)
		}
		if v.netSock, err = c.Switch.addPort(n.Name); err != nil {
			t.Fatal(err)
		}
		c.order = append(c.order, v)
		c.by[n.Name] = v
	}
	for by, targets := range cfg.Fence {
		for _, name := range append([]string{by}, targets...) {
			if c.by[name] == nil {
				t.Fatalf("vm: Config.Fence names %q, which is not a node", name)
			}
		}
	}
	for _, name := range cfg.Cable {
		if name != "" && c.by[name] == nil {
			t.Fatalf("vm: the cable's end %q is not a node", name)
		}
	}

	// Start every QEMU, then wait for all: the boots overlap.
	bctx, bcancel := context.WithTimeout(context.Background(), cfg.BootTimeout)
	defer bcancel()
	for _, v := range c.order {
		if err := v.start(bctx); err != nil {
			t.Fatalf("vm: %v", err)
		}
	}
	errs := make([]error, len(c.order))
	var wg sync.WaitGroup
	for i, v := range c.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = v.waitBoot(bctx)
		}()
	}
	wg.Wait()
	var times []string
	for i, v := range c.order {
		if errs[i] != nil {
			t.Fatalf("vm: %v", errs[i])
		}
		times = append(times, fmt.Sprintf("%s %v", v.Name, v.BootTime().Round(time.Millisecond)))
	}
	c.logf("booted: %s", strings.Join(times, ", "))
	return c
}

// Node returns the VM named name; it fails the test if there is none.
func (c *Cluster) Node(name string) *VM {
	v := c.by[name]
	if v == nil {
		c.T.Fatalf("vm: no node named %q", name)
	}
	return v
}

// Nodes returns the VMs in configuration order.
func (c *Cluster) Nodes() []*VM { return append([]*VM(nil), c.order...) }

// Run runs a command on the node named name (see VM.Run).
func (c *Cluster) Run(ctx context.Context, name string, args ...string) (Result, error) {
	return c.Node(name).Run(ctx, args...)
}

// Dir holds the cluster's sockets, console logs (NAME.console), QEMU's
// stderr (NAME.qemu.log) and QMP events (NAME.events) while it runs.
func (c *Cluster) Dir() string { return c.dir }

// Logf logs to the test like t.Logf, stamped with the time since the
// cluster started, as the harness's own lines are.
func (c *Cluster) Logf(format string, args ...any) { c.logf(format, args...) }

// logf logs to the test with the time since the cluster started, and not
// at all once the test is over (goroutines may outlive it briefly).
func (c *Cluster) logf(format string, args ...any) {
	c.logMu.Lock()
	defer c.logMu.Unlock()
	if c.closed {
		return
	}
	c.T.Logf("[%6.2fs] %s", time.Since(c.start).Seconds(), fmt.Sprintf(format, args...))
}

func (c *Cluster) cleanup() {
	var wg sync.WaitGroup
	for _, v := range c.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.shutdown()
		}()
	}
	wg.Wait()
	c.Switch.close()
	if c.Cable != nil {
		c.Cable.close()
	}
	if c.T.Failed() {
		for _, v := range c.order {
			for _, f := range []struct{ what, path string }{
				{"console", v.console}, {"QEMU stderr", v.qemuLog}, {"QMP events", v.events},
			} {
				b, err := os.ReadFile(f.path)
				if err != nil || len(strings.TrimSpace(string(b))) == 0 {
					continue
				}
				c.T.Logf("----- %s %s (%s) -----\n%s", v.Name, f.what, f.path, tail(string(b), 48<<10))
			}
		}
	}
	if keep := os.Getenv("TANDEM_VMTEST_LOGS"); keep != "" {
		dst := filepath.Join(keep, strings.ReplaceAll(c.T.Name(), "/", "_"))
		if err := copyLogs(c.dir, dst); err != nil {
			c.T.Logf("vm: keeping logs in %s: %v", dst, err)
		} else {
			c.T.Logf("vm: logs kept in %s", dst)
		}
	}
	os.RemoveAll(c.dir)
	c.logMu.Lock()
	c.closed = true
	c.logMu.Unlock()
}

func copyLogs(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) index(name string) int {
	for i, v := range c.order {
		if v.Name == name {
			return i
		}
	}
	return 0
}

// Strays lists the processes still running whose command line names the
// cluster's directory: its QEMUs. After the cluster's cleanup it must be
// empty (the same check as pgrep -f DIR, without needing procps).
func (c *Cluster) Strays() []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), c.dir) {
			continue
		}
		pid := filepath.Base(filepath.Dir(p))
		if st, err := os.ReadFile(filepath.Join("/proc", pid, "stat")); err == nil {
			// A zombie (state Z) is already dead, waiting to be reaped.
			if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		found = append(found, pid+": "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return found
}
