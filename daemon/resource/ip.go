package resource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// IPSpec is a virtual IP address, Heartbeat's IPaddr/IPaddr2.
type IPSpec struct {
	// Address is the address with its prefix length, "192.168.1.5/24" or
	// "2001:db8::5/64". The prefix may be left out when Interface is empty:
	// it is then taken from the interface's own address in that network.
	Address string
	// Interface carries the address, e.g. "eth0". Empty: the interface
	// that already has an address in the same network (Heartbeat's
	// findif), looked up at every Start.
	Interface string
	// Label (IPv4 only) names the address like an alias interface,
	// "eth0:0", as Heartbeat did. It must start with the interface's name.
	// Optional.
	Label string
	// ARPCount is how many gratuitous ARPs (IPv4) or unsolicited neighbour
	// advertisements (IPv6) announce the address after Start, so that
	// switches and neighbours learn its new home at once rather than when
	// their caches expire. Default 5; negative: none.
	ARPCount int
	// ARPInterval is the time between announcements. Default 200 ms.
	ARPInterval time.Duration
	// DAD (IPv6 only): run duplicate address detection before using the
	// address, and fail the Start if another host answers. Off by default,
	// because it delays every takeover by about a second and the peer that
	// held the address has been fenced or has stopped.
	DAD bool
	// Namespace is the network namespace to work in, as a path
	// (/run/netns/NAME or /proc/PID/ns/net). Empty: the daemon's own.
	// Tests set it to a namespace of their own.
	Namespace string
}

// IP is a virtual IP address. Start adds it to the interface and announces
// it; the first announcement is sent before Start returns (a failure to
// send it fails the Start), the others in the background until they are
// done or Stop is called. Stop removes it. Monitor reports Running while the
// address is on an interface that is up, Stopped when the address is
// nowhere, Failed when its interface is down or missing.
type IP struct {
	spec     IPSpec
	addr     netip.Addr
	bits     int // prefix length; -1 until found on an interface
	log      *slog.Logger
	mu       sync.Mutex
	announce *announcement
}

// NewIP checks spec and returns its agent. log receives failures of the
// background announcements; nil means slog.Default().
func NewIP(spec IPSpec, log *slog.Logger) (*IP, error) {
	ip := &IP{spec: spec, bits: -1, log: log}
	if ip.log == nil {
		ip.log = slog.Default()
	}
	if p, err := netip.ParsePrefix(spec.Address); err == nil {
		ip.addr, ip.bits = p.Addr(), p.Bits()
	} else if a, err2 := netip.ParseAddr(spec.Address); err2 == nil && spec.Interface == "" {
		ip.addr = a
	} else if err2 == nil {
		return nil, fmt.Errorf("ip resource %q: give the prefix length (e.g. %s/24), or leave Interface empty to take it from the interface in that network", spec.Address, spec.Address)
	} else {
		return nil, fmt.Errorf("ip resource: Address %q is not an IP address with a prefix length: %w", spec.Address, err)
	}
	if ip.addr.Zone() != "" || !ip.addr.IsGlobalUnicast() && !ip.addr.IsPrivate() {
		return nil, fmt.Errorf("ip resource %s: not a unicast address a service can live on", spec.Address)
	}
	ip.addr = ip.addr.Unmap()
	if spec.Label != "" {
		switch {
		case ip.addr.Is6():
			return nil, fmt.Errorf("ip resource %s: Label is for IPv4 addresses only", spec.Address)
		case spec.Interface == "" || !strings.HasPrefix(spec.Label, spec.Interface):
			return nil, fmt.Errorf("ip resource %s: Label %q must start with the Interface name (%q), e.g. %s:0", spec.Address, spec.Label, spec.Interface, spec.Interface)
		case len(spec.Label) > unix.IFNAMSIZ-1:
			return nil, fmt.Errorf("ip resource %s: Label %q is longer than %d characters", spec.Address, spec.Label, unix.IFNAMSIZ-1)
		}
	}
	if spec.DAD && ip.addr.Is4() {
		return nil, fmt.Errorf("ip resource %s: DAD is for IPv6 addresses only", spec.Address)
	}
	if ip.spec.ARPCount == 0 {
		ip.spec.ARPCount = 5
	}
	if ip.spec.ARPInterval <= 0 {
		ip.spec.ARPInterval = 200 * time.Millisecond
	}
	return ip, nil
}

func (ip *IP) String() string {
	s := "ip " + ip.spec.Address
	if ip.spec.Interface != "" {
		s += " on " + ip.spec.Interface
	}
	return s
}

func (ip *IP) family() int {
	if ip.addr.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// handle opens a netlink handle in the configured namespace. One per
// action: actions are rare and a handle holds sockets.
func (ip *IP) handle() (*netlink.Handle, error) {
	if ip.spec.Namespace == "" {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	ns, err := netns.GetFromPath(ip.spec.Namespace)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", ip.spec.Namespace, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %s: %w", ip.spec.Namespace, err)
	}
	return h, nil
}

// find returns the address as configured on the system (and its link), or
// nil if it is on no interface.
func (ip *IP) find(h *netlink.Handle) (*netlink.Addr, netlink.Link, error) {
	var link netlink.Link
	if ip.spec.Interface != "" {
		l, err := h.LinkByName(ip.spec.Interface)
		if err != nil {
			return nil, nil, fmt.Errorf("interface %s: %w", ip.spec.Interface, err)
		}
		link = l
	}
	addrs, err := h.AddrList(link, ip.family())
	if err != nil {
		return nil, nil, fmt.Errorf("listing addresses: %w", err)
	}
	for i := range addrs {
		if a, ok := netip.AddrFromSlice(addrs[i].IP); ok && a.Unmap() == ip.addr {
			if link == nil {
				if link, err = h.LinkByIndex(addrs[i].LinkIndex); err != nil {
					return nil, nil, fmt.Errorf("interface #%d: %w", addrs[i].LinkIndex, err)
				}
			}
			return &addrs[i], link, nil
		}
	}
	return nil, link, nil
}

// findif picks the interface for the address when none is configured: the
// one with an address of its own in the same network.
func (ip *IP) findif(h *netlink.Handle) (netlink.Link, int, error) {
	addrs, err := h.AddrList(nil, ip.family())
	if err != nil {
		return nil, 0, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if ip.bits >= 0 && ones != ip.bits || !a.Contains(ip.addr.AsSlice()) {
			continue
		}
		link, err := h.LinkByIndex(a.LinkIndex)
		if err != nil {
			return nil, 0, fmt.Errorf("interface #%d: %w", a.LinkIndex, err)
		}
		return link, ones, nil
	}
	return nil, 0, fmt.Errorf("no interface has an address in the network of %s: set Interface", ip.spec.Address)
}

// Start adds the address (unless it is there already) and announces it.
func (ip *IP) Start(ctx context.Context) error {
	h, err := ip.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	have, link, err := ip.find(h)
	if err != nil {
		return err
	}
	bits := ip.bits
	if have != nil {
		bits, _ = have.Mask.Size()
	} else {
		if link == nil {
			if link, bits, err = ip.findif(h); err != nil {
				return err
			}
		}
		if err := ip.add(h, link, bits); err != nil {
			return err
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("interface %s is down (the address is on it but unreachable)", link.Attrs().Name)
	}
	if ip.spec.DAD {
		if err := ip.waitDAD(ctx, h, link); err != nil {
			return err
		}
	}
	return ip.startAnnouncing(ctx, link)
}

func (ip *IP) add(h *netlink.Handle, link netlink.Link, bits int) error {
	a := &netlink.Addr{
		IPNet: &net.IPNet{IP: ip.addr.AsSlice(), Mask: net.CIDRMask(bits, ip.addr.BitLen())},
		Label: ip.spec.Label,
	}
	if ip.addr.Is6() && !ip.spec.DAD {
		// Usable at once, not "tentative" for a second of DAD.
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(link, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding %s/%d to %s: %w", ip.addr, bits, link.Attrs().Name, err)
	}
	return nil
}

// waitDAD waits until the kernel's duplicate address detection finished.
func (ip *IP) waitDAD(ctx context.Context, h *netlink.Handle, link netlink.Link) error {
	for {
		a, _, err := ip.find(h)
		switch {
		case err != nil:
			return err
		case a == nil:
			return fmt.Errorf("%s vanished from %s during duplicate address detection", ip.addr, link.Attrs().Name)
		case a.Flags&unix.IFA_F_DADFAILED != 0:
			if err := h.AddrDel(link, a); err != nil {
				ip.log.Warn("removing a duplicate address", "resource", ip.String(), "err", err)
			}
			return fmt.Errorf("another host on %s already uses %s (duplicate address detection failed)", link.Attrs().Name, ip.addr)
		case a.Flags&unix.IFA_F_TENTATIVE == 0:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("duplicate address detection of %s: %w", ip.addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops announcing and removes the address wherever it is.
func (ip *IP) Stop(ctx context.Context) error {
	ip.stopAnnouncing()
	h, err := ip.handle()
	if err != nil {
		return err
	}
	defer h.Close()
	have, link, err := ip.find(h)
	if err != nil {
		if ip.spec.Interface != "" && isNotFound(err) {
			return nil // the interface is gone, and the address with it
		}
		return err
	}
	if have == nil {
		return nil
	}
	if err := h.AddrDel(link, have); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("removing %s from %s: %w", have.IPNet, link.Attrs().Name, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// Monitor checks the address is on an interface that is up.
func (ip *IP) Monitor(ctx context.Context) (Status, error) {
	h, err := ip.handle()
	if err != nil {
		return Failed, err
	}
	defer h.Close()
	have, link, err := ip.find(h)
	switch {
	case err != nil:
		return Failed, err
	case have == nil:
		return Stopped, nil
	case link.Attrs().Flags&net.FlagUp == 0:
		return Failed, fmt.Errorf("interface %s is down", link.Attrs().Name)
	}
	return Running, nil
}

// ---- announcements ----

// announcement is a running series of gratuitous ARPs or neighbour
// advertisements.
type announcement struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (ip *IP) stopAnnouncing() {
	ip.mu.Lock()
	a := ip.announce
	ip.announce = nil
	ip.mu.Unlock()
	if a != nil {
		a.cancel()
		<-a.done
	}
}

// startAnnouncing sends the first announcement and leaves the rest to a
// goroutine. The goroutine runs on an OS thread of its own inside the
// namespace, because raw sockets belong to the namespace of the thread
// that opens them and a multicast destination's zone is resolved there.
func (ip *IP) startAnnouncing(ctx context.Context, link netlink.Link) error {
	ip.stopAnnouncing()
	attrs := link.Attrs()
	if ip.spec.ARPCount < 0 || attrs.RawFlags&(unix.IFF_NOARP|unix.IFF_LOOPBACK) != 0 || len(attrs.HardwareAddr) != 6 {
		return nil // nobody to tell: no neighbour resolution on this link
	}
	bg, cancel := context.WithCancel(context.Background())
	a := &announcement{cancel: cancel, done: make(chan struct{})}
	first := make(chan error, 1)
	go func() {
		defer close(a.done)
		if err := enterNamespace(ip.spec.Namespace); err != nil {
			first <- err
			return
		}
		var s announcer
		var err error
		if ip.addr.Is4() {
			s, err = openGARP(attrs.Index, attrs.HardwareAddr, ip.addr)
		} else {
			s, err = openNA(attrs.Index, attrs.HardwareAddr, ip.addr)
		}
		if err != nil {
			first <- err
			return
		}
		defer s.close()
		if err := s.send(); err != nil {
			first <- err
			return
		}
		first <- nil
		for i := 1; i < ip.spec.ARPCount; i++ {
			select {
			case <-bg.Done():
				return
			case <-time.After(ip.spec.ARPInterval):
			}
			if err := s.send(); err != nil {
				ip.log.Warn("announcing a virtual IP", "resource", ip.String(), "packet", i+1, "err", err)
			}
		}
	}()
	select {
	case err := <-first:
		if err != nil {
			cancel()
			return fmt.Errorf("announcing %s on %s: %w", ip.addr, attrs.Name, err)
		}
	case <-ctx.Done():
		cancel()
		<-a.done
		return fmt.Errorf("announcing %s on %s: %w", ip.addr, attrs.Name, ctx.Err())
	}
	ip.mu.Lock()
	ip.announce = a
	ip.mu.Unlock()
	return nil
}

// enterNamespace locks the calling goroutine to its OS thread and, if path
// is set, moves the thread into that network namespace. The thread is
// never unlocked: when the goroutine ends, the runtime discards a locked
// thread, so no other goroutine can ever run in the wrong namespace.
func enterNamespace(path string) error {
	runtime.LockOSThread()
	if path == "" {
		return nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	defer ns.Close()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("entering network namespace %s: %w", path, err)
	}
	return nil
}

type announcer interface {
	send() error
	close()
}
