package transport

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/proto"
)

// Broadcast and multicast need an interface with the BROADCAST or MULTICAST
// flag, which lo lacks, and these tests must not send on the machine's real
// networks. So they build their own: two fresh network namespaces joined by
// a veth pair (veth0 10.201.0.1/24 in one, veth1 10.201.0.2/24 in the
// other), and open each medium's socket inside its namespace. Nothing they
// send can leave the pair. Building it needs root and the ip command; the
// tests skip, saying so, without them.

// vethPair is the test's private network.
type vethPair struct {
	ns [2]string // namespace names, as under /run/netns
}

var netnsSeq atomic.Int64

func newVethPair(t *testing.T) *vethPair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("broadcast and multicast need an interface with BROADCAST/MULTICAST flags; lo has none, and building a veth pair in private network namespaces needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("broadcast and multicast are tested on a veth pair in private network namespaces, which needs the ip command (iproute2): not found")
	}
	n := netnsSeq.Add(1)
	v := &vethPair{ns: [2]string{
		fmt.Sprintf("tandem-test-%d-%d-a", os.Getpid(), n),
		fmt.Sprintf("tandem-test-%d-%d-b", os.Getpid(), n),
	}}
	for _, ns := range v.ns {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("cannot create a network namespace to test broadcast and multicast in (ip netns add: %v: %s)", err, strings.TrimSpace(string(out)))
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	// Every command runs inside the new namespaces (ip -n): the host's
	// network is never touched.
	for _, cmd := range [][]string{
		{"-n", v.ns[0], "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", v.ns[1]},
		{"-n", v.ns[0], "addr", "add", "10.201.0.1/24", "broadcast", "10.201.0.255", "dev", "veth0"},
		{"-n", v.ns[1], "addr", "add", "10.201.0.2/24", "broadcast", "10.201.0.255", "dev", "veth1"},
		{"-n", v.ns[0], "link", "set", "veth0", "up"},
		{"-n", v.ns[1], "link", "set", "veth1", "up"},
	} {
		if out, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
			t.Skipf("cannot build the test's veth pair (ip %s: %v: %s)", strings.Join(cmd, " "), err, strings.TrimSpace(string(out)))
		}
	}
	linkUp(t, v.ns[0], "veth0")
	linkUp(t, v.ns[1], "veth1")
	return v
}

// listenIn opens a UDP medium inside namespace ns. Sockets belong to the
// namespace of the thread that creates them, so this switches one locked
// OS thread into ns, opens the medium there and lets the thread die with
// its goroutine (a goroutine that exits locked takes its thread with it),
// so no other goroutine ever runs in the test's namespace by accident.
func listenIn(t *testing.T, ns string, cfg UDPConfig, out chan<- Received) *UDP {
	t.Helper()
	type result struct {
		m   *UDP
		err error
	}
	done := make(chan result)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		m, err := ListenUDP(cfg, out)
		done <- result{m, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	closeOnCleanup(t, r.m)
	return r.m
}

// exchange checks that heartbeats sent by a reach b and the other way
// round. UDP may lose a packet (the first ones, while the fresh veth link
// is still coming up, are the likely ones), so each side keeps sending, as
// the core does every keepalive, until one arrives.
func exchange(t *testing.T, a, b *UDP, toA, toB <-chan Received) {
	t.Helper()
	r := sendUntilReceived(t, a, 1, toB)
	if r.Msg.From != 0 || r.From.(*net.UDPAddr).IP.String() != "10.201.0.1" {
		t.Errorf("b received %+v from %v, want node 0's from 10.201.0.1", r.Msg, r.From)
	}
	r = sendUntilReceived(t, b, 0, toA)
	if r.Msg.From != 1 || r.From.(*net.UDPAddr).IP.String() != "10.201.0.2" {
		t.Errorf("a received %+v from %v, want node 1's from 10.201.0.2", r.Msg, r.From)
	}
}

func sendUntilReceived(t *testing.T, m *UDP, to proto.NodeID, ch <-chan Received) Received {
	t.Helper()
	deadline := time.Now().Add(patience)
	for seq := uint64(1); time.Now().Before(deadline); seq++ {
		if err := m.Send(to, beat(1-to, 1, seq)); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-ch:
			return r
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("%s: nothing arrived within %v (%+v)", m.Name(), patience, m.Counters())
	return Received{}
}

// linkUp waits until the kernel reports dev in ns operationally up, so the
// tests do not spend their first packets on a link still coming up.
func linkUp(t *testing.T, ns, dev string) {
	t.Helper()
	eventually(t, dev+" up", func() bool {
		out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "dev", dev).Output()
		return err == nil && strings.Contains(string(out), "state UP")
	})
}

func TestBroadcast(t *testing.T) {
	v := newVethPair(t)
	toA, toB := make(chan Received, 16), make(chan Received, 16)
	cfg := func(self, peer proto.NodeID, ifname string) UDPConfig {
		return UDPConfig{Common: Common{Self: self, Key: testKey, Peers: []Peer{{Node: peer}}},
			Mode: Broadcast, Interface: ifname}
	}
	a := listenIn(t, v.ns[0], cfg(0, 1, "veth0"), toA)
	b := listenIn(t, v.ns[1], cfg(1, 0, "veth1"), toB)
	if a.Name() != "bcast veth0:694" {
		t.Errorf("name %q", a.Name())
	}
	exchange(t, a, b, toA, toB)
	// A broadcast comes back to its sender too: counted as Self, not
	// delivered.
	eventually(t, "own broadcasts counted", func() bool { return a.Counters().Self >= 1 && b.Counters().Self >= 1 })
	nothingMore(t, toA)
	nothingMore(t, toB)
}

func TestMulticast(t *testing.T) {
	v := newVethPair(t)
	toA, toB := make(chan Received, 16), make(chan Received, 16)
	cfg := func(self, peer proto.NodeID, ifname string, loop bool) UDPConfig {
		return UDPConfig{Common: Common{Self: self, Key: testKey, Peers: []Peer{{Node: peer}}},
			Mode: Multicast, Interface: ifname, Group: "239.0.0.1", TTL: 1, Loop: loop}
	}
	a := listenIn(t, v.ns[0], cfg(0, 1, "veth0", true), toA)
	b := listenIn(t, v.ns[1], cfg(1, 0, "veth1", false), toB)
	if a.Name() != "mcast veth0 239.0.0.1:694" {
		t.Errorf("name %q", a.Name())
	}
	exchange(t, a, b, toA, toB)
	// a loops its packets back (loop 1) and drops them as its own; b
	// does not (loop 0).
	eventually(t, "a's looped-back packets counted", func() bool { return a.Counters().Self >= 1 })
	if c := b.Counters(); c.Self != 0 {
		t.Errorf("b has loop off but saw its own packets: %+v", c)
	}
	nothingMore(t, toA)
	nothingMore(t, toB)
}
