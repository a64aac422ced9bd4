package vmtests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"tandem/vmtests/vm"
)

// failoverConfig is the tutorial's cluster (daemon/config/testdata/
// tutorial.toml) adapted to the VMs: timings for a test, STONITH through the
// harness's QMP fence devices, the serial cable on ttyS1 (ttyS0 is the
// console), and an exec service standing in for sendmail.
const failoverConfig = `# written by vmtests TestTutorialFailover
[cluster]
name = "mail"
keepalive = "200ms"
deadtime = "2s"
initdead = "10s"
auto_failback = false
preferred = "server1"
fencing = "stonith"
# The non-holder waits this long before fencing (default 5s); short for a test.
fence_delay = "1s"
authkey = "vmtest-failover-not-a-secret-key"

[[node]]
name = "server1"
address = "192.168.1.1:7788"
disk = "/dev/vda"
meta_disk = "internal"
nbd_device = "/dev/nbd0"

[[node]]
name = "server2"
address = "192.168.1.2:7788"
disk = "/dev/vda"
meta_disk = "internal"
nbd_device = "/dev/nbd0"

[[heartbeat]]
kind = "ucast"
interface = "eth0"

[[heartbeat]]
kind = "serial"
device = "/dev/ttyS1"
baud = 115200

[[fence]]
kind = "qemu"
qmp = "/run/tandem/qmp-{target}.sock"
action = "off"

[replication]
protocol = "C"
size = "%dM"

[[resource]]
kind = "fs"
mountpoint = "/replicated"
fstype = "ext4"
options = "noatime"
fsck = true

[[resource]]
kind = "ip"
address = "192.168.1.5/24"
interface = "eth0"
monitor_interval = "2s"

[[resource]]
kind = "exec"
name = "spool"
# A stand-in for sendmail: a loop that keeps a stamp on the replicated disk.
start = "setsid sh -c 'while :; do date > /replicated/alive.$TANDEM_NODE; sleep 1; done' </dev/null >/dev/null 2>&1 & echo $! > /run/spool.pid"
stop = "test -f /run/spool.pid && kill $(cat /run/spool.pid) 2>/dev/null; rm -f /run/spool.pid; true"
monitor = "test -f /run/spool.pid && kill -0 $(cat /run/spool.pid) || exit 7"
monitor_interval = "2s"
`

// replMiB is the replicated size: small, so that the initial full sync
// under TCG takes seconds, not minutes.
const replMiB = 64

// status is the part of `tandem status --json` the test reads.
type status struct {
	State       string `json:"state"`
	PeerAlive   bool   `json:"peer_alive"`
	Replication *struct {
		Role     string `json:"role"`
		Disk     string `json:"disk"`
		PeerDisk string `json:"peer_disk"`
		Conn     string `json:"conn"`
	} `json:"replication"`
	Group []struct {
		Name  string `json:"name"`
		State string `json:"state"`
		Error string `json:"error"`
	} `json:"group"`
	KernelDevice string `json:"kernel_device"`
	KernelError  string `json:"kernel_error"`
}

func (s *status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "state %s peer-alive %v", s.State, s.PeerAlive)
	if r := s.Replication; r != nil {
		fmt.Fprintf(&b, " role %s disk %s/%s conn %s", r.Role, r.Disk, r.PeerDisk, r.Conn)
	}
	for _, g := range s.Group {
		fmt.Fprintf(&b, " %s[%s]", g.Name, g.State)
		if g.Error != "" {
			fmt.Fprintf(&b, "(%s)", g.Error)
		}
	}
	if s.KernelError != "" {
		fmt.Fprintf(&b, " kernel-error %q", s.KernelError)
	}
	return b.String()
}

func (s *status) groupRunning() bool {
	if len(s.Group) == 0 {
		return false
	}
	for _, g := range s.Group {
		// The disk member's running state is its role.
		if g.State != "running" && !(g.Name == "disk" && g.State == "primary") {
			return false
		}
	}
	return true
}

func getStatus(ctx context.Context, v *vm.VM) (*status, error) {
	r, err := v.Run(ctx, "tandem", "status", "--json")
	if err != nil {
		return nil, err
	}
	var s status
	if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
		return nil, fmt.Errorf("%s: tandem status --json: %v in %q", v.Name, err, r.Stdout)
	}
	return &s, nil
}

// waitStatus polls v's status until ok says yes, failing the test with the
// last status seen after d.
func waitStatus(t *testing.T, ctx context.Context, v *vm.VM, what string, d time.Duration, ok func(*status) bool) *status {
	t.Helper()
	deadline := time.Now().Add(d)
	var last *status
	var lastErr error
	for time.Now().Before(deadline) {
		s, err := getStatus(ctx, v)
		if err == nil && ok(s) {
			return s
		}
		last, lastErr = s, err
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: waited %v for %s; last status: %v (err %v)", v.Name, d, what, last, lastErr)
	return nil
}

// TestTutorialFailover is the seed's tutorial on real kernels: server1 runs
// the group (replicated /dev/nbd0 with ext4 on /replicated, 192.168.1.5, a
// service), writes acknowledged files, loses power; server2 fences it
// through QMP, promotes, fscks, mounts, takes the address, and every
// acknowledged file is there. A third VM, the client, checks that the
// virtual address answers from server2 afterwards.
func TestTutorialFailover(t *testing.T) {
	needVMs(t)
	var c *vm.Cluster
	noStrays(t, func() *vm.Cluster { return c })
	cfg := vm.PairConfig()
	cfg.Nodes = append(cfg.Nodes, vm.NodeConfig{Name: "client", IP: "192.168.1.10/24", MemMB: 256})
	t0 := time.Now()
	c = vm.New(t, cfg)
	c.Logf("three VMs booted in %v", time.Since(t0).Round(time.Millisecond))
	ctx := ctxT(t, 15*time.Minute)
	s1, s2, cl := c.Node("server1"), c.Node("server2"), c.Node("client")
	nodes := []*vm.VM{s1, s2}

	// On failure, the daemons' logs (the powered-off server1's is lost; its
	// tail was saved before the cut).
	var s1Log string
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if s1Log != "" {
			t.Logf("server1 daemon log before the power cut:\n%s", s1Log)
		}
		for _, v := range nodes {
			if !v.Running() {
				continue
			}
			lctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if b, err := v.Get(lctx, "/tmp/tandem.log"); err == nil {
				t.Logf("%s daemon log:\n%s", v.Name, tail(string(b), 80))
			}
			if r, err := v.Sh(lctx, "dmesg | tail -40"); err == nil {
				t.Logf("%s dmesg:\n%s", v.Name, r.Stdout)
			}
			cancel()
		}
	})

	conf := []byte(fmt.Sprintf(failoverConfig, replMiB))
	for i, v := range nodes {
		if err := v.Put(ctx, "/etc/tandem/tandem.toml", conf, 0o600); err != nil {
			t.Fatal(err)
		}
		run(t, ctx, v, "tandem", "check")
		// Fresh metadata for the replicated area only.
		run(t, ctx, v, "tandem", "create-md", "--disk", "/dev/vda", "--node", fmt.Sprint(i),
			"--blocks", fmt.Sprint(replMiB<<20/4096))
	}
	// The filesystem is made on server1's backing disk, inside the data
	// area, before the first primary --force: the full initial sync then
	// carries it to server2, and the group's fs member finds a filesystem
	// the first time it starts (mkfs on /dev/nbd0 would race the group's
	// own start, which mounts as soon as server1 is primary).
	run(t, ctx, s1, "mkfs.ext4", "-q", "-F", "-E", "nodiscard", "-b", "4096", "/dev/vda", fmt.Sprint(replMiB<<20/4096))
	c.Logf("config in place, metadata created, ext4 made on server1's data area")

	for _, v := range nodes {
		if _, err := v.Spawn(ctx, "/tmp/tandem.log", "tandem", "daemon", "--log-level", "debug"); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(t, ctx, s1, "the fresh pair to connect", 60*time.Second, func(s *status) bool {
		return s.Replication != nil && s.Replication.Conn == "Connected"
	})
	run(t, ctx, s1, "tandem", "primary", "--force")
	tsync := time.Now()
	c.Logf("server1: primary --force; full initial sync of %d MiB", replMiB)
	waitStatus(t, ctx, s1, "UpToDate/UpToDate", 5*time.Minute, func(s *status) bool {
		r := s.Replication
		return r != nil && r.Disk == "UpToDate" && r.PeerDisk == "UpToDate"
	})
	c.Logf("initial sync done in %v", time.Since(tsync).Round(time.Millisecond))
	st := waitStatus(t, ctx, s1, "the group running", 2*time.Minute, func(s *status) bool {
		return s.Replication != nil && s.Replication.Role == "Primary" && s.groupRunning()
	})
	c.Logf("server1: %v", st)
	st2, err := getStatus(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	c.Logf("server2: %v", st2)
	if st.KernelDevice == "" || st2.KernelDevice == "" {
		t.Fatalf("kernel device not attached: server1 %q, server2 %q", st.KernelError, st2.KernelError)
	}
	sh(t, ctx, s1, "grep -q ' /replicated ext4 ' /proc/mounts && ip -4 addr show dev eth0 | grep -q 192.168.1.5/24")
	run(t, ctx, cl, "ping", "-c", "1", "-W", "5", "192.168.1.5")

	// The acknowledged messages: each file written and fsynced (dd
	// conv=fsync) before its number is printed.
	const n = 200
	r, err := s1.Sh(ctx, fmt.Sprintf(`i=1; while [ $i -le %d ]; do
		echo "message $i from server1" | dd of=/replicated/msg.$i conv=fsync 2>/dev/null || exit 1
		echo $i; i=$((i+1)); done`, n))
	if err != nil {
		t.Fatalf("writing messages on server1: %v", err)
	}
	acked := strings.Fields(r.Stdout)
	c.Logf("server1: %d messages written and fsynced in %v", len(acked), r.Elapsed.Round(time.Millisecond))
	if len(acked) != n {
		t.Fatalf("%d of %d messages acknowledged", len(acked), n)
	}
	if b, err := s1.Get(ctx, "/tmp/tandem.log"); err == nil {
		s1Log = tail(string(b), 60)
		logNotable(c, "server1 daemon", string(b), "level=WARN", "level=ERROR")
	}
	if r, err := s1.Sh(ctx, "dmesg"); err == nil {
		logNotable(c, "server1 dmesg", r.Stdout, "nbd", "EXT4", "I/O error", "blk_update")
	}

	// Messages in flight at the power cut: a writer keeps writing and
	// fsyncing files and acknowledges each to the client over TCP only once
	// it is written, so the client's record is exactly what was
	// acknowledged before the power went.
	if _, err := cl.Spawn(ctx, "/tmp/acklistener.log", "sh", "-c", "sleep 100000 | nc -l -p 9000 > /tmp/acks"); err != nil {
		t.Fatal(err)
	}
	// (busybox nc quits when its stdin ends, hence the sleep feeding it.)
	time.Sleep(500 * time.Millisecond) // let nc listen
	if _, err := s1.Spawn(ctx, "/tmp/writer.log", "sh", "-c", `i=1; while :; do
		echo "live $i from server1" | dd of=/replicated/live.$i conv=fsync 2>/dev/null || exit 1
		echo $i; i=$((i+1)); done | nc 192.168.1.10 9000`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "client: 20 in-flight messages acknowledged", func() bool {
		b, _ := cl.Get(ctx, "/tmp/acks")
		return len(strings.Fields(string(b))) >= 20
	})

	// The power cut.
	fences0 := len(c.Fences())
	cut := time.Now()
	if err := s1.PowerCut(); err != nil {
		t.Fatal(err)
	}
	c.Logf("server1: power cut")

	// Poll server2 for the last acknowledged file.
	last := fmt.Sprintf("/replicated/msg.%d", n)
	var readable time.Duration
	for {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := s2.Run(pctx, "cat", last)
		cancel()
		if err == nil && strings.TrimSpace(r.Stdout) == fmt.Sprintf("message %d from server1", n) {
			readable = time.Since(cut)
			break
		}
		if time.Since(cut) > 3*time.Minute {
			st2, _ := getStatus(ctx, s2)
			t.Fatalf("server2: %s not readable 3 min after the power cut; status %v", last, st2)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.Logf("timing: power cut -> acknowledged files readable on server2: %v", readable.Round(time.Millisecond))
	st2 = waitStatus(t, ctx, s2, "the group running on server2", time.Minute, func(s *status) bool {
		return s.Replication != nil && s.Replication.Role == "Primary" && s.groupRunning()
	})
	c.Logf("server2: %v (%v after the cut)", st2, time.Since(cut).Round(time.Millisecond))

	var fenced []string
	for _, f := range c.Fences()[fences0:] {
		fenced = append(fenced, fmt.Sprintf("%s>%s:%s(%s)", f.By, f.Target, f.Command, f.Err))
		if f.By == "server2" && f.Target == "server1" && f.Command == "quit" && f.Err == "" {
			c.Logf("timing: fence %v after the cut", f.At.Sub(cut).Round(time.Millisecond))
		}
	}
	if !strings.Contains(strings.Join(fenced, " "), "server2>server1:quit()") {
		t.Errorf("server2 did not fence server1 through QMP before taking over; fence events %v", fenced)
	}

	// Every acknowledged message, with its content.
	r, err = s2.Sh(ctx, fmt.Sprintf(`i=1; while [ $i -le %d ]; do
		test "$(cat /replicated/msg.$i 2>/dev/null)" = "message $i from server1" || echo $i; i=$((i+1)); done`, n))
	if err != nil {
		t.Fatal(err)
	}
	if bad := strings.Fields(r.Stdout); len(bad) > 0 {
		t.Errorf("server2: %d of %d acknowledged messages missing or wrong: %v", len(bad), n, bad)
	} else {
		c.Logf("server2: all %d acknowledged messages present", n)
	}
	b, err := cl.Get(ctx, "/tmp/acks")
	if err != nil {
		t.Fatal(err)
	}
	live := strings.Fields(string(b))
	r, err = s2.Sh(ctx, fmt.Sprintf(`for i in %s; do
		test "$(cat /replicated/live.$i 2>/dev/null)" = "live $i from server1" || echo $i; done; ls /replicated | grep -c '^live\.'`,
		strings.Join(live, " ")))
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Fields(r.Stdout)
	if bad := out[:len(out)-1]; len(bad) > 0 {
		t.Errorf("server2: %d of %d messages acknowledged in flight missing or wrong: %v", len(bad), len(live), bad)
	} else {
		c.Logf("server2: all %d messages acknowledged in flight present (%s live files on disk: unacknowledged ones may survive too)",
			len(live), out[len(out)-1])
	}
	sh(t, ctx, s2, "ip -4 addr show dev eth0 | grep -q 192.168.1.5/24")
	c.Logf("timing: power cut -> client's ping of 192.168.1.5 answered: %v (first try after the files were read)",
		func() time.Duration {
			run(t, ctx, cl, "ping", "-c", "1", "-W", "5", "192.168.1.5")
			return time.Since(cut)
		}().Round(time.Millisecond))
	if b, err := s2.Get(ctx, "/tmp/tandem.log"); err == nil {
		logNotable(c, "server2 daemon", string(b), "level=WARN", "level=ERROR", "fsck", "fence", "takeover")
	}
	if r, err := s2.Sh(ctx, "dmesg"); err == nil {
		logNotable(c, "server2 dmesg", r.Stdout, "nbd", "EXT4", "I/O error", "blk_update")
	}
	sh(t, ctx, s2, "test -f /run/spool.pid && kill -0 $(cat /run/spool.pid)")

	// The client reaches 192.168.1.5, now on server2's NIC.
	run(t, ctx, cl, "ping", "-c", "1", "-W", "5", "192.168.1.5")
	mac2 := sh(t, ctx, s2, "cat /sys/class/net/eth0/address")
	if neigh := sh(t, ctx, cl, "ip neigh show 192.168.1.5"); !strings.Contains(neigh, mac2) {
		t.Errorf("client: 192.168.1.5 resolves to %q, not server2's %s", neigh, mac2)
	}

	// The filesystem is clean: unmounted behind the daemon's back (the test
	// is over for it), checked read-only through the replicated device.
	sh(t, ctx, s2, "kill $(cat /run/spool.pid); sleep 1; sync && umount /replicated")
	if r, err := s2.Run(ctx, "fsck.ext4", "-n", "-f", "/dev/nbd0"); err != nil {
		t.Errorf("fsck.ext4 -n on server2 after failover: %v\n%s%s", err, r.Stdout, r.Stderr)
	}
}

// logNotable logs the lines of text that contain any of words: what a
// passing run still shows of warnings and kernel complaints.
func logNotable(c *vm.Cluster, what, text string, words ...string) {
	var got []string
	for _, l := range strings.Split(text, "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				got = append(got, "  "+l)
				break
			}
		}
	}
	if len(got) > 40 {
		got = append(got[:20], append([]string{"  ..."}, got[len(got)-20:]...)...)
	}
	c.Logf("%s: %d notable lines\n%s", what, len(got), strings.Join(got, "\n"))
}

// waitFor polls ok every 200ms until it says yes, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
