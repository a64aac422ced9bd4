package resource

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
	"golang.org/x/sys/unix"
)

// garp sends gratuitous ARPs: ARP requests in which the sender and the
// target protocol address are both the virtual IP (an "ARP announcement",
// RFC 5227 section 2.3, what `arping -U` and Heartbeat's send_arp send),
// broadcast on the link, so that every neighbour and switch updates its
// entry for the address to our MAC.
type garp struct {
	fd    int
	frame []byte
	to    unix.SockaddrLinklayer
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openGARP opens a raw packet socket on interface ifindex. It must run in
// the interface's network namespace.
func openGARP(ifindex int, mac net.HardwareAddr, ip netip.Addr) (*garp, error) {
	// Protocol 0: this socket only sends, so it should receive nothing.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening a packet socket for gratuitous ARP: %w", err)
	}
	g := &garp{fd: fd, frame: garpFrame(mac, ip)}
	g.to = unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex, Halen: 6}
	copy(g.to.Addr[:], broadcastMAC)
	return g, nil
}

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// garpFrame builds the Ethernet frame of an ARP announcement, padded to the
// 60-byte Ethernet minimum.
func garpFrame(mac net.HardwareAddr, ip netip.Addr) []byte {
	f := make([]byte, 60)
	copy(f[0:6], broadcastMAC)
	copy(f[6:12], mac)
	binary.BigEndian.PutUint16(f[12:14], unix.ETH_P_ARP)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:2], 1)             // hardware: Ethernet
	binary.BigEndian.PutUint16(a[2:4], unix.ETH_P_IP) // protocol: IPv4
	a[4], a[5] = 6, 4                                 // address lengths
	binary.BigEndian.PutUint16(a[6:8], 1)             // operation: request
	copy(a[8:14], mac)                                // sender hardware address
	ip4 := ip.As4()
	copy(a[14:18], ip4[:]) // sender protocol address
	// a[18:24], the target hardware address, stays zero (RFC 5227).
	copy(a[24:28], ip4[:]) // target protocol address
	return f
}

func (g *garp) send() error {
	if err := unix.Sendto(g.fd, g.frame, 0, &g.to); err != nil {
		return fmt.Errorf("sending gratuitous ARP: %w", err)
	}
	return nil
}

func (g *garp) close() { unix.Close(g.fd) }

// na sends unsolicited neighbour advertisements (RFC 4861 section 7.2.6):
// from the virtual IP itself to all nodes, with the Override flag and our
// MAC as the target link-layer address, so that neighbours replace what
// they cached for the address.
type na struct {
	c   *ndp.Conn
	msg *ndp.NeighborAdvertisement
}

// openNA opens an ICMPv6 socket bound to ip on interface ifindex. It must
// run in the interface's network namespace.
func openNA(ifindex int, mac net.HardwareAddr, ip netip.Addr) (*na, error) {
	ifi, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("interface #%d: %w", ifindex, err)
	}
	c, _, err := ndp.Listen(ifi, ndp.Addr(ip.String()))
	if err != nil {
		return nil, fmt.Errorf("opening an ICMPv6 socket on %s for neighbour advertisements: %w", ifi.Name, err)
	}
	return &na{c: c, msg: &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}}, nil
}

func (n *na) send() error {
	if err := n.c.WriteTo(n.msg, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("sending unsolicited neighbour advertisement: %w", err)
	}
	return nil
}

func (n *na) close() { n.c.Close() }
