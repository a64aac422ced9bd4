package vmtests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/vmtests/vm"
)

// needVMs skips the test unless TANDEM_VMTEST=1, and checks after every
// cleanup of the test that no QEMU process of it is left behind.
func needVMs(t *testing.T) {
	t.Helper()
	if os.Getenv("TANDEM_VMTEST") != "1" {
		t.Skip("set TANDEM_VMTEST=1 (make vmtest) to boot QEMU VMs")
	}
}

// noStrays registers (first, so it runs last) a check that no QEMU process
// of the cluster outlives the test.
func noStrays(t *testing.T, c func() *vm.Cluster) {
	t.Cleanup(func() {
		cl := c()
		if cl == nil {
			return
		}
		if s := cl.Strays(); len(s) > 0 {
			t.Errorf("stray QEMU processes after cleanup:\n%s", strings.Join(s, "\n"))
		}
	})
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// run runs a command in the guest, fails the test if it fails, and returns
// its trimmed stdout.
func run(t *testing.T, ctx context.Context, v *vm.VM, args ...string) string {
	t.Helper()
	r, err := v.Run(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(r.Stdout)
}

// sh is run with sh -c script.
func sh(t *testing.T, ctx context.Context, v *vm.VM, script string) string {
	t.Helper()
	return run(t, ctx, v, "sh", "-c", script)
}

func TestBootPair(t *testing.T) {
	needVMs(t)
	var c *vm.Cluster
	noStrays(t, func() *vm.Cluster { return c })
	t0 := time.Now()
	c = vm.Pair(t)
	t.Logf("timing: pair booted in %v (server1 %v, server2 %v), kernel %s",
		time.Since(t0).Round(time.Millisecond), c.Node("server1").BootTime().Round(time.Millisecond),
		c.Node("server2").BootTime().Round(time.Millisecond), c.Image.Kernel.Release)
	a, b := c.Node("server1"), c.Node("server2")
	ctx := ctxT(t, 5*time.Minute)
	if s := c.Strays(); len(s) != 2 { // the check noStrays relies on sees them
		t.Fatalf("QEMU processes found while running: %d, want 2:\n%s", len(s), strings.Join(s, "\n"))
	}

	// Command round trips: the agent's own, and a process spawned.
	var pings, runs time.Duration
	const n = 20
	for range n {
		d, err := a.Ping(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pings += d
		r, err := a.Run(ctx, "true")
		if err != nil {
			t.Fatal(err)
		}
		runs += r.Elapsed
	}
	t.Logf("timing: agent ping round trip %v, `true` round trip %v (mean of %d)", pings/n, runs/n, n)

	for _, v := range []*vm.VM{a, b} {
		if got := run(t, ctx, v, "uname", "-r"); got != c.Image.Kernel.Release {
			t.Errorf("%s: uname -r = %q, want %q", v.Name, got, c.Image.Kernel.Release)
		}
		if got := run(t, ctx, v, "hostname"); got != v.Name {
			t.Errorf("%s: hostname = %q", v.Name, got)
		}
		sh(t, ctx, v, "test -d /sys/module/nbd && test -b /dev/nbd0 && test -e /dev/mapper/control && test -b /dev/vda")
		run(t, ctx, v, "modprobe", "dm-flakey") // already in: modprobe says yes
		run(t, ctx, v, "tandem", "help")
	}

	// The network: A pings B, and B can reach A by name.
	out := run(t, ctx, a, "ping", "-c", "3", "-W", "5", "192.168.1.2")
	t.Logf("server1 -> server2 ping:\n%s", out)
	run(t, ctx, b, "ping", "-c", "1", "-W", "5", "server1")

	// The serial cable: a line from A's ttyS1 arrives on B's.
	pid, err := b.Spawn(ctx, "/tmp/serial.in", "sh", "-c", "exec head -n 1 /dev/ttyS1")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // let head open the port
	sh(t, ctx, a, "echo hello-over-serial > /dev/ttyS1")
	var line string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		got, _ := b.Get(ctx, "/tmp/serial.in")
		if line = strings.TrimSpace(string(got)); line != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if line != "hello-over-serial" {
		t.Fatalf("server2 read %q from ttyS1 (reader pid %d), want hello-over-serial", line, pid)
	}

	// The disk, through dm-flakey as the disk-error tests will use it:
	// ext4 made, mounted, written, synced, checked.
	const table = `"0 $(blockdev --getsz /dev/vda) flakey /dev/vda 0 %s"`
	sh(t, ctx, a, "dmsetup create flaky --table "+fmt.Sprintf(table, "3600 0"))
	t1 := time.Now()
	run(t, ctx, a, "mkfs.ext4", "-q", "-F", "/dev/mapper/flaky")
	mkfs := time.Since(t1)
	sh(t, ctx, a, "mkdir -p /replicated && mount -t ext4 /dev/mapper/flaky /replicated && echo data > /replicated/f && sync")
	if got := run(t, ctx, a, "cat", "/replicated/f"); got != "data" {
		t.Fatalf("read back %q", got)
	}
	sh(t, ctx, a, "umount /replicated && fsck.ext4 -n /dev/mapper/flaky")
	t.Logf("timing: mkfs.ext4 of 256 MiB took %v", mkfs.Round(time.Millisecond))
	// Writes fail once the table says so; reads still work.
	sh(t, ctx, a, "dmsetup suspend flaky && dmsetup reload flaky --table "+fmt.Sprintf(table, "0 3600 1 error_writes")+" && dmsetup resume flaky")
	if _, err := a.Run(ctx, "dd", "if=/dev/zero", "of=/dev/mapper/flaky", "bs=4096", "count=1", "seek=60000", "oflag=direct"); err == nil {
		t.Fatal("a write through dm-flakey error_writes succeeded")
	}
	run(t, ctx, a, "dd", "if=/dev/mapper/flaky", "of=/dev/null", "bs=4096", "count=1", "iflag=direct")
	run(t, ctx, a, "dmsetup", "remove", "flaky")

	// A file through the agent, both ways.
	if err := a.Put(ctx, "/tmp/x/put", []byte("put\x00bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Get(ctx, "/tmp/x/put"); err != nil || string(got) != "put\x00bytes" {
		t.Fatalf("get after put = %q, %v", got, err)
	}

	// Exit status and timeouts are reported as such.
	_, err = a.Run(ctx, "sh", "-c", "echo oops >&2; exit 3")
	var ee *vm.ExitError
	if !errors.As(err, &ee) || ee.Result.Exit != 3 || strings.TrimSpace(ee.Result.Stderr) != "oops" {
		t.Fatalf("exit 3: got %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = a.Run(sctx, "sleep", "30")
	cancel()
	if err == nil {
		t.Fatal("sleep 30 with a 2s deadline returned no error")
	}

	// Power cut A: B still answers, A's QEMU is gone.
	apid := a.Pid()
	if err := a.PowerCut(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(apid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("server1's QEMU pid %d still exists after the power cut (kill -0: %v)", apid, err)
	}
	if _, err := a.Run(ctx, "true"); !errors.Is(err, vm.ErrDown) {
		t.Fatalf("run on a powered-off VM: got %v, want ErrDown", err)
	}
	if got := run(t, ctx, b, "hostname"); got != "server2" {
		t.Fatalf("server2 answers %q", got)
	}
	_, err = b.Run(ctx, "ping", "-c", "1", "-W", "2", "192.168.1.1")
	if err == nil {
		t.Fatal("server2 can still ping server1 after its power cut")
	}

	// Power it back on: same disk, the file is there.
	t2 := time.Now()
	if err := a.PowerOn(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: server1 powered on again in %v", time.Since(t2).Round(time.Millisecond))
	sh(t, ctx, a, "mount -t ext4 /dev/vda /mnt && grep -qx data /mnt/f") // the same blocks as /dev/mapper/flaky
	run(t, ctx, b, "ping", "-c", "1", "-W", "5", "192.168.1.1")
}

func TestFreezeThaw(t *testing.T) {
	needVMs(t)
	var c *vm.Cluster
	noStrays(t, func() *vm.Cluster { return c })
	c = vm.Pair(t)
	a, b := c.Node("server1"), c.Node("server2")
	ctx := ctxT(t, 5*time.Minute)

	if err := a.Freeze(ctx); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := a.Run(sctx, "true")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("frozen server1 answered (err %v)", err)
	}
	// The frozen node is silent on the network too.
	if _, err := b.Run(ctx, "ping", "-c", "1", "-W", "2", "192.168.1.1"); err == nil {
		t.Fatal("frozen server1 answered a ping")
	}
	if err := a.Thaw(ctx); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if got := run(t, ctx, a, "hostname"); got != "server1" {
		t.Fatalf("after thaw: %q", got)
	}
	t.Logf("timing: first answer %v after thaw", time.Since(t0).Round(time.Millisecond))
	run(t, ctx, b, "ping", "-c", "1", "-W", "5", "192.168.1.1")

	// Link down/up on the NIC, and a silent cut in the switch.
	if err := a.LinkDown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(ctx, "ping", "-c", "1", "-W", "2", "192.168.1.1"); err == nil {
		t.Fatal("ping crossed a downed link")
	}
	if err := a.LinkUp(ctx); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, b, "ping", "-c", "1", "-W", "5", "192.168.1.1")
	c.Switch.Partition("server1", "server2")
	if _, err := b.Run(ctx, "ping", "-c", "1", "-W", "2", "192.168.1.1"); err == nil {
		t.Fatal("ping crossed a partition")
	}
	c.Switch.Heal()
	run(t, ctx, b, "ping", "-c", "1", "-W", "5", "192.168.1.1")

	// Reset: a new boot, and the agent is back.
	old := run(t, ctx, a, "cat", "/proc/sys/kernel/random/boot_id")
	if err := a.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if now := run(t, ctx, a, "cat", "/proc/sys/kernel/random/boot_id"); now == old {
		t.Fatal("boot id unchanged after reset")
	}
	t.Logf("timing: reset to agent answering %v", a.BootTime().Round(time.Millisecond))
}

// TestFenceQMP drives server1's fence device from server2 the way the
// daemon's qemu fencing agent will: plain QMP on /run/tandem/qmp-server1.sock.
func TestFenceQMP(t *testing.T) {
	needVMs(t)
	var c *vm.Cluster
	noStrays(t, func() *vm.Cluster { return c })
	c = vm.Pair(t)
	a, b := c.Node("server1"), c.Node("server2")
	ctx := ctxT(t, 5*time.Minute)
	const sock = "/run/tandem/qmp-server1.sock"

	if got := run(t, ctx, b, "tandem-agent", "qmp", sock, "query-status"); !strings.Contains(got, `"running":true`) {
		t.Fatalf("query-status of running server1: %s", got)
	}
	// A broken device: the fence does not happen and the agent says so.
	c.SetFenceMode("server1", vm.FenceFails)
	if _, err := b.Run(ctx, "tandem-agent", "qmp", sock, "quit"); err == nil || !a.Running() {
		t.Fatalf("fence through a failing device: err %v, server1 running %v", err, a.Running())
	}
	c.SetFenceMode("server1", vm.FenceHangs)
	r, err := b.Run(ctx, "tandem-agent", "qmp", "-timeout", "2s", sock, "quit")
	var ee *vm.ExitError
	if !errors.As(err, &ee) || r.Exit != 2 || !a.Running() {
		t.Fatalf("fence through a hanging device: %v (exit %d), server1 running %v", err, r.Exit, a.Running())
	}
	c.SetFenceMode("server1", vm.FenceWorks)

	t0 := time.Now()
	run(t, ctx, b, "tandem-agent", "qmp", sock, "quit")
	t.Logf("timing: fence (QMP quit from server2) took %v", time.Since(t0).Round(time.Millisecond))
	if a.Running() {
		t.Fatal("server1 still running after server2 fenced it")
	}
	// The device still answers with server1 off, and fencing it again is done.
	if got := run(t, ctx, b, "tandem-agent", "qmp", sock, "query-status"); !strings.Contains(got, `"status":"shutdown"`) {
		t.Fatalf("query-status of fenced server1: %s", got)
	}
	run(t, ctx, b, "tandem-agent", "qmp", sock, "quit")
	var done []string
	for _, f := range c.Fences() {
		if f.Err == "" {
			done = append(done, f.By+">"+f.Target+":"+f.Command)
		}
	}
	if got := strings.Join(done, " "); got != "server2>server1:quit server2>server1:quit" {
		t.Fatalf("fence events: %s", got)
	}
}

// TestThreeNodes boots two data nodes and a client on one network and
// cuts the client off one way.
func TestThreeNodes(t *testing.T) {
	needVMs(t)
	var c *vm.Cluster
	noStrays(t, func() *vm.Cluster { return c })
	cfg := vm.PairConfig()
	cfg.Nodes = append(cfg.Nodes, vm.NodeConfig{Name: "client", IP: "192.168.1.10/24", MemMB: 256})
	t0 := time.Now()
	c = vm.New(t, cfg)
	t.Logf("timing: three VMs booted in %v", time.Since(t0).Round(time.Millisecond))
	ctx := ctxT(t, 5*time.Minute)
	cl := c.Node("client")
	run(t, ctx, cl, "ping", "-c", "1", "-W", "5", "server1")
	run(t, ctx, cl, "ping", "-c", "1", "-W", "5", "server2")
	run(t, ctx, c.Node("server1"), "ping", "-c", "1", "-W", "5", "server2")
	// One way: the client's frames do not reach server1; server2 is fine.
	c.Switch.Block("client", "server1")
	if _, err := cl.Run(ctx, "ping", "-c", "1", "-W", "2", "server1"); err == nil {
		t.Fatal("ping crossed a one-way cut")
	}
	run(t, ctx, cl, "ping", "-c", "1", "-W", "5", "server2")
	c.Switch.Heal()
	run(t, ctx, cl, "ping", "-c", "1", "-W", "5", "server1")
}
