package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/proto"
	"tandem/internal/wire"
)

// UDPMode is how a UDP medium reaches its peers.
type UDPMode uint8

const (
	// Unicast sends to each peer's address (Heartbeat's `ucast eth0 10.0.0.2`).
	Unicast UDPMode = iota + 1
	// Broadcast sends to the interface's IPv4 broadcast address
	// (`bcast eth0`); every peer on the segment hears one packet.
	Broadcast
	// Multicast sends to a group (`mcast eth0 239.0.0.1 694 1 0`).
	Multicast
)

var modeNames = [...]string{"?", "ucast", "bcast", "mcast"}

func (m UDPMode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("udpmode(%d)", uint8(m))
}

// UDPConfig configures one UDP medium.
type UDPConfig struct {
	Common
	Mode UDPMode
	// Interface is the network interface: required for Broadcast and
	// Multicast; for Unicast optional, and when set the socket only uses
	// that interface (SO_BINDTODEVICE).
	Interface string
	// Port is the UDP port this medium listens on and, for Broadcast and
	// Multicast, sends to. Default DefaultPort (694). Unicast peers whose
	// Addr has no port are sent to it too.
	Port int
	// Bind is the local IP a Unicast medium listens on; default every
	// address. Ignored by Broadcast (which binds to the interface) and
	// Multicast (which binds to the group).
	Bind string
	// Group is the Multicast group, an IPv4 multicast address.
	Group string
	// TTL is the Multicast time to live in hops; 0 means 1 (stay on the
	// segment, as Heartbeat's examples do).
	TTL int
	// Loop: Multicast packets also come back to this host (counted as Self
	// here). Heartbeat's default is off.
	Loop bool
}

// UDP is a UDP heartbeat medium. It implements Medium.
type UDP struct {
	*base
	conn    *net.UDPConn
	dests   [proto.MaxNodes]*net.UDPAddr // per peer for unicast; [0] otherwise
	timeout time.Duration
}

var _ Medium = (*UDP)(nil)

// ListenUDP opens a UDP medium and starts its reader and writer; received
// heartbeats go to out. The caller must Close it.
func ListenUDP(cfg UDPConfig, out chan<- Received) (*UDP, error) {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("udp: port %d out of range", cfg.Port)
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	name := ""
	switch cfg.Mode {
	case Unicast:
		name = "ucast"
		if cfg.Interface != "" {
			name += " " + cfg.Interface
		}
		for _, p := range cfg.Peers {
			name += " " + p.Addr
		}
	case Broadcast:
		name = fmt.Sprintf("bcast %s:%d", cfg.Interface, cfg.Port)
	case Multicast:
		name = fmt.Sprintf("mcast %s %s:%d", cfg.Interface, cfg.Group, cfg.Port)
	default:
		return nil, fmt.Errorf("udp: unknown mode %d (want ucast, bcast or mcast)", cfg.Mode)
	}
	b, err := newBase(&cfg.Common, proto.Network, name, cfg.Mode == Unicast, out)
	if err != nil {
		return nil, err
	}
	u := &UDP{base: b, timeout: cfg.WriteTimeout}
	switch cfg.Mode {
	case Unicast:
		err = u.openUnicast(&cfg)
	case Broadcast:
		err = u.openBroadcast(&cfg)
	case Multicast:
		err = u.openMulticast(&cfg)
	}
	if err != nil {
		return nil, err
	}
	u.wg.Add(2)
	go u.reader()
	go u.writer(u.write)
	return u, nil
}

func (u *UDP) openUnicast(cfg *UDPConfig) error {
	for _, p := range cfg.Peers {
		addr := p.Addr
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(addr, strconv.Itoa(cfg.Port))
		}
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return fmt.Errorf("%s: peer %d address %q: %w", u.name, p.Node, p.Addr, err)
		}
		u.dests[p.Node] = ua
	}
	lc := net.ListenConfig{Control: sockopts(cfg.Interface, cfg.Interface != "", false)}
	c, err := lc.ListenPacket(context.Background(), "udp", net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("%s: listen: %w", u.name, err)
	}
	u.conn = c.(*net.UDPConn)
	return nil
}

func (u *UDP) openBroadcast(cfg *UDPConfig) error {
	ifi, err := iface(u.name, cfg.Interface, net.FlagBroadcast, "BROADCAST")
	if err != nil {
		return err
	}
	bcast, err := broadcastAddr(ifi)
	if err != nil {
		return fmt.Errorf("%s: %w", u.name, err)
	}
	u.dests[0] = &net.UDPAddr{IP: bcast, Port: cfg.Port}
	lc := net.ListenConfig{Control: sockopts(cfg.Interface, true, true)}
	c, err := lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(cfg.Port)))
	if err != nil {
		return fmt.Errorf("%s: listen: %w", u.name, err)
	}
	u.conn = c.(*net.UDPConn)
	return nil
}

func (u *UDP) openMulticast(cfg *UDPConfig) error {
	ifi, err := iface(u.name, cfg.Interface, net.FlagMulticast, "MULTICAST")
	if err != nil {
		return err
	}
	group := net.ParseIP(cfg.Group).To4()
	if group == nil || !group.IsMulticast() {
		return fmt.Errorf("%s: group %q is not an IPv4 multicast address (224.0.0.0/4, e.g. 239.0.0.1)", u.name, cfg.Group)
	}
	ttl := cfg.TTL
	if ttl == 0 {
		ttl = 1
	}
	if ttl < 0 || ttl > 255 {
		return fmt.Errorf("%s: ttl %d out of range (1..255)", u.name, cfg.TTL)
	}
	u.dests[0] = &net.UDPAddr{IP: group, Port: cfg.Port}
	// ListenMulticastUDP binds to group:port with SO_REUSEADDR and joins the
	// group on ifi; the rest is set on the socket it made.
	c, err := net.ListenMulticastUDP("udp4", ifi, u.dests[0])
	if err != nil {
		return fmt.Errorf("%s: listen: %w", u.name, err)
	}
	loop := 0
	if cfg.Loop {
		loop = 1
	}
	err = control(c, func(fd int) error {
		if err := unix.SetsockoptIPMreqn(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)}); err != nil {
			return fmt.Errorf("IP_MULTICAST_IF: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, ttl); err != nil {
			return fmt.Errorf("IP_MULTICAST_TTL: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, loop); err != nil {
			return fmt.Errorf("IP_MULTICAST_LOOP: %w", err)
		}
		return nil
	})
	if err != nil {
		c.Close()
		return fmt.Errorf("%s: %w", u.name, err)
	}
	u.conn = c
	return nil
}

// iface finds a network interface and checks it can do what the medium
// needs.
func iface(medium, name string, need net.Flags, flagName string) (*net.Interface, error) {
	if name == "" {
		return nil, fmt.Errorf("%s: no interface configured", medium)
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: interface %s: %w", medium, name, err)
	}
	if ifi.Flags&need == 0 {
		return nil, fmt.Errorf("%s: interface %s has no %s flag; use another interface or a ucast medium", medium, name, flagName)
	}
	return ifi, nil
}

// broadcastAddr is the directed broadcast address of the interface's first
// IPv4 subnet, as Heartbeat's bcast uses.
func broadcastAddr(ifi *net.Interface) (net.IP, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip := n.IP.To4()
		if ip == nil || len(n.Mask) != net.IPv4len {
			continue
		}
		b := make(net.IP, net.IPv4len)
		for i := range b {
			b[i] = ip[i] | ^n.Mask[i]
		}
		return b, nil
	}
	return nil, fmt.Errorf("interface %s has no IPv4 address to broadcast from; configure one before starting", ifi.Name)
}

// sockopts sets options before bind: SO_BINDTODEVICE (so a medium only
// hears and speaks on its interface) with SO_REUSEADDR (so media on
// different interfaces can share the port), and SO_BROADCAST.
func sockopts(device string, bindDevice, broadcast bool) func(string, string, syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var err error
		cerr := rc.Control(func(fd uintptr) {
			s := int(fd)
			if bindDevice {
				if err = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
					err = fmt.Errorf("SO_REUSEADDR: %w", err)
					return
				}
				if err = unix.SetsockoptString(s, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, device); err != nil {
					err = fmt.Errorf("bind to interface %s (SO_BINDTODEVICE needs CAP_NET_RAW): %w", device, err)
					return
				}
			}
			if broadcast {
				if err = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
					err = fmt.Errorf("SO_BROADCAST: %w", err)
				}
			}
		})
		if cerr != nil {
			return cerr
		}
		return err
	}
}

// control runs f on c's file descriptor.
func control(c *net.UDPConn, f func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// LocalAddr is the address the medium listens on.
func (u *UDP) LocalAddr() net.Addr { return u.conn.LocalAddr() }

// Send queues hb for peer to; see Medium.Send.
func (u *UDP) Send(to proto.NodeID, hb *proto.Heartbeat) error { return u.send(to, hb, nil) }

// Close stops the medium; see Medium.Close.
func (u *UDP) Close() error { return u.shutdown(u.conn.Close) }

func (u *UDP) write(slot int, pkt []byte) error {
	dst := u.dests[slot]
	if err := u.conn.SetWriteDeadline(time.Now().Add(u.timeout)); err != nil {
		return fmt.Errorf("%s: %w", u.name, err)
	}
	if _, err := u.conn.WriteToUDP(pkt, dst); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%s: send to %s timed out after %v (socket buffer full?)", u.name, dst, u.timeout)
		}
		return fmt.Errorf("%s: send to %s: %w", u.name, dst, err)
	}
	return nil
}

// reader receives until the medium closes. The buffer is one byte longer
// than the largest acceptable packet, so a longer datagram (which the
// kernel truncates to the buffer) is recognised as oversized.
func (u *UDP) reader() {
	defer u.wg.Done()
	buf := make([]byte, wire.MaxPacket+1)
	for {
		n, from, err := u.conn.ReadFromUDP(buf)
		at := time.Now()
		if err != nil {
			if u.isClosed() {
				return
			}
			// Not expected on a UDP socket; do not spin if it persists.
			u.log.Warn("receive failed", "err", err)
			select {
			case <-u.closed:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		u.accept(buf[:n], from, at)
	}
}
