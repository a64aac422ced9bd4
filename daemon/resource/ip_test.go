package resource

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The IP agent is tested on a network of the test's own: two fresh network
// namespaces joined by a veth pair, tvip0 (in "a", where the agent works)
// and tvip1 (in "b", where the test listens like a switch or a neighbour
// would). Nothing the agent sends can leave the pair, and the host's own
// interfaces are never touched.

var testMAC = net.HardwareAddr{0x02, 0x54, 0x41, 0x4e, 0x44, 0x01}

type vethNet struct{ a, b string } // namespace names, under /run/netns

var netnsSeq atomic.Int64

func newVethNet(t *testing.T) *vethNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the virtual IP is tested in private network namespaces, which needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("building the test's network namespaces needs the ip command (iproute2): not found")
	}
	n := netnsSeq.Add(1)
	v := &vethNet{a: fmt.Sprintf("tandem-res-%d-%d-a", os.Getpid(), n), b: fmt.Sprintf("tandem-res-%d-%d-b", os.Getpid(), n)}
	for _, ns := range []string{v.a, v.b} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("cannot create a network namespace (ip netns add: %v: %s)", err, strings.TrimSpace(string(out)))
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	for _, cmd := range [][]string{
		{"-n", v.a, "link", "add", "tvip0", "address", testMAC.String(), "type", "veth", "peer", "name", "tvip1", "netns", v.b},
		{"-n", v.a, "addr", "add", "10.202.0.1/24", "dev", "tvip0"},
		{"-n", v.a, "link", "set", "tvip0", "up"},
		{"-n", v.b, "link", "set", "tvip1", "up"},
	} {
		if out, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(cmd, " "), err, out)
		}
	}
	return v
}

func (v *vethNet) path(ns string) string { return "/run/netns/" + ns }

// inNS runs fn on an OS thread inside namespace ns; the thread is discarded
// afterwards.
func inNS(t *testing.T, ns string, fn func() error) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromName(ns)
		if err != nil {
			done <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			done <- err
			return
		}
		done <- fn()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// capture opens a packet socket for ethertype proto on tvip1 in namespace
// b.
func (v *vethNet) capture(t *testing.T, proto uint16) int {
	t.Helper()
	var fd int
	inNS(t, v.b, func() error {
		ifi, err := net.InterfaceByName("tvip1")
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(proto)))
		if err != nil {
			return err
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifi.Index})
	})
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// collect reads frames from fd for up to d, keeping those match accepts,
// with their arrival times; it stops early once it has max.
func collect(fd int, d time.Duration, max int, match func([]byte) bool) []time.Time {
	var at []time.Time
	buf := make([]byte, 2048)
	end := time.Now().Add(d)
	for time.Now().Before(end) && len(at) < max {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // the receive timeout: look at the clock again
		}
		if match(buf[:n]) {
			at = append(at, time.Now())
		}
	}
	return at
}

// isGARP accepts an ARP announcement of ip from testMAC, broadcast.
func isGARP(ip netip.Addr) func([]byte) bool {
	want := ip.As4()
	return func(f []byte) bool {
		if len(f) < 42 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_ARP {
			return false
		}
		a := f[14:]
		return bytes.Equal(f[0:6], broadcastMAC) && bytes.Equal(f[6:12], testMAC) &&
			binary.BigEndian.Uint16(a[0:2]) == 1 && binary.BigEndian.Uint16(a[2:4]) == unix.ETH_P_IP &&
			binary.BigEndian.Uint16(a[6:8]) == 1 && // request
			bytes.Equal(a[8:14], testMAC) && bytes.Equal(a[14:18], want[:]) && bytes.Equal(a[24:28], want[:])
	}
}

// isNA accepts an unsolicited neighbour advertisement of ip from testMAC to
// all nodes, with Override set and Solicited clear.
func isNA(ip netip.Addr) func([]byte) bool {
	want := ip.As16()
	allNodes := netip.IPv6LinkLocalAllNodes().As16()
	return func(f []byte) bool {
		if len(f) < 14+40+24+8 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IPV6 {
			return false
		}
		ip6 := f[14:]
		icmp := ip6[40:]
		return ip6[6] == 58 && ip6[7] == 255 && // ICMPv6, hop limit 255
			bytes.Equal(ip6[8:24], want[:]) && bytes.Equal(ip6[24:40], allNodes[:]) &&
			icmp[0] == 136 && icmp[4]&0x40 == 0 && icmp[4]&0x20 != 0 && // NA: not solicited, override
			bytes.Equal(icmp[8:24], want[:]) &&
			icmp[24] == 2 && icmp[25] == 1 && bytes.Equal(icmp[26:32], testMAC) // target link-layer address
	}
}

// addrsOf lists the addresses on tvip0 in namespace a, as "ip/len label".
func (v *vethNet) addrsOf(t *testing.T) string {
	t.Helper()
	h, err := netns.GetFromName(v.a)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	link, err := nl.LinkByName("tvip0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := nl.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, a := range addrs {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}

func TestIPv4GratuitousARP(t *testing.T) {
	v := newVethNet(t)
	vip := netip.MustParseAddr("10.202.0.5")
	ip, err := NewIP(IPSpec{Address: "10.202.0.5/24", Interface: "tvip0", Label: "tvip0:vip", Namespace: v.path(v.a)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if st, err := ip.Monitor(ctx); st != Stopped || err != nil {
		t.Fatalf("monitor before start: %v, %v", st, err)
	}
	fd := v.capture(t, unix.ETH_P_ARP)
	if err := ip.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := v.addrsOf(t); !strings.Contains(got, "10.202.0.5/24 tvip0:vip") {
		t.Errorf("tvip0 has %s; want 10.202.0.5/24 labelled tvip0:vip", got)
	}
	if st, err := ip.Monitor(ctx); st != Running || err != nil {
		t.Errorf("monitor after start: %v, %v", st, err)
	}
	at := collect(fd, 5*time.Second, 5, isGARP(vip))
	if len(at) != 5 {
		t.Fatalf("captured %d gratuitous ARPs for %s from %s, want 5", len(at), vip, testMAC)
	}
	if span := at[4].Sub(at[0]); span < 600*time.Millisecond {
		t.Errorf("5 announcements within %v; want them 200 ms apart", span)
	}
	if more := collect(fd, 500*time.Millisecond, 1, isGARP(vip)); len(more) != 0 {
		t.Error("a sixth gratuitous ARP was sent")
	}

	// Start again (already there) succeeds and announces again.
	if err := ip.Start(ctx); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if err := ip.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := v.addrsOf(t); strings.Contains(got, "10.202.0.5") {
		t.Errorf("after stop tvip0 still has %s", got)
	}
	// Stop cut the second series short.
	if n := len(collect(fd, 2*time.Second, 6, isGARP(vip))); n >= 5 {
		t.Errorf("%d announcements after the second start, although Stop came first", n)
	}
	if st, err := ip.Monitor(ctx); st != Stopped || err != nil {
		t.Errorf("monitor after stop: %v, %v", st, err)
	}
	if err := ip.Stop(ctx); err != nil {
		t.Errorf("second stop: %v (stop must be idempotent)", err)
	}
}

func TestIPv6NeighbourAdvertisement(t *testing.T) {
	v := newVethNet(t)
	vip := netip.MustParseAddr("fd00:202::5")
	ip, err := NewIP(IPSpec{Address: "fd00:202::5/64", Interface: "tvip0", ARPCount: 3, ARPInterval: 100 * time.Millisecond, Namespace: v.path(v.a)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	fd := v.capture(t, unix.ETH_P_IPV6)
	if err := ip.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := v.addrsOf(t); !strings.Contains(got, "fd00:202::5/64") {
		t.Errorf("tvip0 has %s", got)
	}
	if at := collect(fd, 5*time.Second, 3, isNA(vip)); len(at) != 3 {
		t.Fatalf("captured %d unsolicited neighbour advertisements for %s, want 3", len(at), vip)
	}
	if st, err := ip.Monitor(ctx); st != Running || err != nil {
		t.Errorf("monitor: %v, %v", st, err)
	}
	if err := ip.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := ip.Monitor(ctx); st != Stopped {
		t.Errorf("monitor after stop: %v", st)
	}
}

// Without an interface or a prefix the agent finds the interface with an
// address in the same network and takes its prefix (Heartbeat's findif).
func TestIPFindInterface(t *testing.T) {
	v := newVethNet(t)
	ip, err := NewIP(IPSpec{Address: "10.202.0.7", ARPCount: 1, Namespace: v.path(v.a)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := ip.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := v.addrsOf(t); !strings.Contains(got, "10.202.0.7/24") {
		t.Errorf("tvip0 has %s; want 10.202.0.7/24", got)
	}
	if st, err := ip.Monitor(ctx); st != Running || err != nil {
		t.Errorf("monitor: %v, %v", st, err)
	}
	if err := ip.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := v.addrsOf(t); strings.Contains(got, "10.202.0.7") {
		t.Errorf("after stop tvip0 has %s", got)
	}

	none, _ := NewIP(IPSpec{Address: "10.99.0.7", Namespace: v.path(v.a)}, nil)
	if err := none.Start(ctx); err == nil || !strings.Contains(err.Error(), "set Interface") {
		t.Errorf("start with no matching interface: %v", err)
	}
}

// A link that goes down makes the monitor fail.
func TestIPMonitorLinkDown(t *testing.T) {
	v := newVethNet(t)
	ip, _ := NewIP(IPSpec{Address: "10.202.0.8/24", Interface: "tvip0", ARPCount: -1, Namespace: v.path(v.a)}, nil)
	ctx := ctxT(t)
	if err := ip.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "-n", v.a, "link", "set", "tvip0", "down").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if st, err := ip.Monitor(ctx); st != Failed || err == nil || !strings.Contains(err.Error(), "down") {
		t.Errorf("monitor with the link down: %v, %v", st, err)
	}
	if err := ip.Stop(ctx); err != nil {
		t.Error(err)
	}
}

func TestIPSpecErrors(t *testing.T) {
	for _, s := range []IPSpec{
		{Address: "300.1.1.1/24", Interface: "eth0"},
		{Address: "10.0.0.1", Interface: "eth0"}, // no prefix with an interface
		{Address: "224.0.0.1/4", Interface: "eth0"},
		{Address: "127.0.0.2/8", Interface: "lo"},
		{Address: "fd00::1/64", Interface: "eth0", Label: "eth0:0"},
		{Address: "10.0.0.1/24", Interface: "eth0", Label: "eth1:0"},
		{Address: "10.0.0.1/24", Interface: "eth0", Label: "eth0:waytoolonglabel"},
		{Address: "10.0.0.1/24", Interface: "eth0", DAD: true},
	} {
		if _, err := NewIP(s, nil); err == nil {
			t.Errorf("NewIP(%+v) accepted it", s)
		}
	}
}

func TestGARPFrame(t *testing.T) {
	f := garpFrame(testMAC, netip.MustParseAddr("192.168.1.5"))
	if len(f) != 60 || !isGARP(netip.MustParseAddr("192.168.1.5"))(f) {
		t.Fatalf("frame % x is not an ARP announcement of 192.168.1.5", f)
	}
	if !bytes.Equal(f[32:38], make([]byte, 6)) {
		t.Errorf("target hardware address % x, want zeros", f[32:38])
	}
}
