package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"tandem/internal/proto"
	"tandem/internal/wire"
)

// DefaultPort is Heartbeat's UDP port (udpport 694), used by every UDP
// medium unless configured otherwise.
const DefaultPort = 694

// DefaultWriteTimeout bounds one write on a medium unless configured: a
// heartbeat that cannot leave in half a second is better replaced by the
// next one.
const DefaultWriteTimeout = 500 * time.Millisecond

// DefaultDeliverWait is how long a reader waits for room in the core's
// channel before dropping a heartbeat as an Overrun.
const DefaultDeliverWait = 50 * time.Millisecond

// Received is one authentic, fresh heartbeat, as delivered to the core.
type Received struct {
	// Medium is the id of the medium it arrived on.
	Medium proto.MediumID
	// Msg is the decoded heartbeat; Msg.From is one of the medium's peers.
	Msg proto.Heartbeat
	// At is when the reader got it (with Go's monotonic reading): the daemon
	// converts it to the core's proto.Time.
	At time.Time
	// From is where it came from: a *net.UDPAddr, or a SerialAddr.
	From net.Addr
}

// Counters are one medium's totals since it started. Each is read
// atomically, but a snapshot is not one atomic whole.
type Counters struct {
	// Received: heartbeats delivered to the core.
	Received uint64
	// Sent: packets written to the socket or line.
	Sent uint64
	// SendErrors: writes that failed or timed out (see Medium.LastError).
	SendErrors uint64
	// Superseded: heartbeats replaced by a newer one before the writer could
	// send them (the medium is slower than the heartbeat rate).
	Superseded uint64
	// Malformed: packets that are not intact heartbeats (short, bad magic,
	// version, length, CRC or field), and on a serial line also garbage
	// frames (noise, bad escapes, over-long frames, a frame cut by start-up).
	Malformed uint64
	// BadAuth: intact packets whose HMAC does not match the shared key, or
	// authenticated differently (CRC where a MAC is expected).
	BadAuth uint64
	// Replayed: authentic heartbeats that are not fresh (see ReplayFilter).
	Replayed uint64
	// Oversized: datagrams longer than wire.MaxPacket.
	Oversized uint64
	// WrongSender: authentic heartbeats from a node that is not a peer of
	// this medium.
	WrongSender uint64
	// Self: our own heartbeats come back (broadcast, multicast loopback).
	Self uint64
	// Overrun: fresh heartbeats dropped because the core's channel stayed
	// full for DeliverWait (and, on a serial line, input the deframer had to
	// discard).
	Overrun uint64
}

// stats are a medium's live counters.
type stats struct {
	received, sent, sendErrors, superseded  atomic.Uint64
	malformed, badAuth, replayed, oversized atomic.Uint64
	wrongSender, self, overrun              atomic.Uint64
}

// Snapshot reads every counter.
func (s *stats) Snapshot() Counters {
	return Counters{
		Received: s.received.Load(), Sent: s.sent.Load(),
		SendErrors: s.sendErrors.Load(), Superseded: s.superseded.Load(),
		Malformed: s.malformed.Load(), BadAuth: s.badAuth.Load(),
		Replayed: s.replayed.Load(), Oversized: s.oversized.Load(),
		WrongSender: s.wrongSender.Load(), Self: s.self.Load(),
		Overrun: s.overrun.Load(),
	}
}

// Medium is one heartbeat medium of this node.
type Medium interface {
	// ID is the medium's id in the core's config.
	ID() proto.MediumID
	// Kind is proto.Network or proto.Serial.
	Kind() proto.MediumKind
	// Name is how logs and errors name it, e.g. "bcast eth0".
	Name() string
	// Send queues hb for peer to and returns at once (see the package
	// comment). On a broadcast, multicast or serial medium one packet
	// reaches every peer, so the same heartbeat sent to several peers goes
	// out once. The error is only for what is wrong now: an invalid
	// heartbeat, a peer this medium does not reach, a closed medium. Write
	// failures happen later, on the writer: see LastError and Counters.
	Send(to proto.NodeID, hb *proto.Heartbeat) error
	// Counters reads the medium's counters.
	Counters() Counters
	// LastError is the latest write failure and when it happened, or nil
	// if no write has failed. It stays after later writes succeed: a line
	// that fails every so often should still show why, and when.
	LastError() (error, time.Time)
	// Close stops the medium and waits for its goroutines. It is safe to
	// call more than once.
	Close() error
}

// Common is the part of a medium's config every kind shares.
type Common struct {
	// ID is the medium's id in the core's config (below MaxMedia).
	ID proto.MediumID
	// Name names the medium in logs and errors; default from its kind and
	// address, e.g. "ucast 10.0.0.2:694", "bcast eth0", "serial /dev/ttyS1".
	Name string
	// Self is this node; heartbeats from it are our own, come back.
	Self proto.NodeID
	// Peers are the nodes this medium reaches and the only senders it
	// accepts. Addr is the peer's "host" or "host:port" for unicast UDP
	// (port default UDPConfig.Port) and empty for the other kinds.
	Peers []Peer
	// Key is the shared authentication key (HMAC-SHA256-128). Required
	// unless CRCOnly.
	Key []byte
	// CRCOnly sends and accepts unauthenticated CRC32C packets. For tests
	// only: anybody can forge them.
	CRCOnly bool
	// Replay is the node's replay filter, shared by all its media so a
	// heartbeat recorded on one cannot be replayed on another. nil gives
	// this medium a filter of its own, which is only right when it is the
	// node's only medium.
	Replay *ReplayFilter
	// WriteTimeout bounds one write. Default DefaultWriteTimeout (500 ms).
	WriteTimeout time.Duration
	// DeliverWait bounds how long the reader waits for room in the core's
	// channel. Default DefaultDeliverWait (50 ms).
	DeliverWait time.Duration
	// Logger receives drop and write-failure messages; nil discards them.
	Logger *slog.Logger
}

// Peer is one node a medium reaches.
type Peer struct {
	Node proto.NodeID
	// Addr is the peer's address on a unicast UDP medium, else empty.
	Addr string
}

// base is what every medium shares: config, counters, the receive checks
// and the writer's mailbox.
type base struct {
	id          proto.MediumID
	kind        proto.MediumKind
	name        string
	self        proto.NodeID
	peers       [proto.MaxNodes]bool
	key         []byte
	replay      *ReplayFilter
	deliverWait time.Duration
	log         *slog.Logger
	out         chan<- Received
	stats       stats

	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	// The mailbox: mu guards pending and last; wake has room for one signal.
	mu      sync.Mutex
	pending [proto.MaxNodes][]byte
	shared  bool // one packet reaches every peer: use pending[0], send once per heartbeat
	last    struct {
		set              bool
		incarnation, seq uint64
	}
	wake chan struct{}

	errMu      sync.Mutex
	writeErr   error
	writeErrAt time.Time
}

// newBase checks c and fills in defaults. kind and defaultName come from
// the medium; addrs says whether peers carry addresses (unicast).
func newBase(c *Common, kind proto.MediumKind, defaultName string, addrs bool, out chan<- Received) (*base, error) {
	b := &base{
		id: c.ID, kind: kind, name: c.Name, self: c.Self, replay: c.Replay,
		deliverWait: c.DeliverWait, log: c.Logger, out: out, shared: !addrs,
		closed: make(chan struct{}), wake: make(chan struct{}, 1),
	}
	if b.name == "" {
		b.name = defaultName
	}
	if out == nil {
		return nil, fmt.Errorf("%s: no channel to deliver heartbeats to (a daemon bug)", b.name)
	}
	if int(c.ID) >= MaxMedia {
		return nil, fmt.Errorf("%s: medium id %d is too large (at most %d)", b.name, c.ID, MaxMedia-1)
	}
	if c.Self >= proto.MaxNodes {
		return nil, fmt.Errorf("%s: own node id %d is not a node (0..%d)", b.name, c.Self, proto.MaxNodes-1)
	}
	switch {
	case c.CRCOnly && len(c.Key) > 0:
		return nil, fmt.Errorf("%s: both a key and CRC-only are configured; drop CRC-only", b.name)
	case c.CRCOnly:
		b.key = nil
	case len(c.Key) == 0:
		return nil, fmt.Errorf("%s: refusing to start without an authentication key: configure the shared key (authkeys); unauthenticated heartbeats could be forged by anyone on the medium", b.name)
	default:
		b.key = append([]byte(nil), c.Key...)
	}
	if len(c.Peers) == 0 {
		return nil, fmt.Errorf("%s: no peers: name the nodes this medium reaches", b.name)
	}
	for _, p := range c.Peers {
		switch {
		case p.Node >= proto.MaxNodes:
			return nil, fmt.Errorf("%s: peer %d is not a node (0..%d)", b.name, p.Node, proto.MaxNodes-1)
		case p.Node == c.Self:
			return nil, fmt.Errorf("%s: peer %d is this node itself", b.name, p.Node)
		case b.peers[p.Node]:
			return nil, fmt.Errorf("%s: peer %d is listed twice", b.name, p.Node)
		case addrs && p.Addr == "":
			return nil, fmt.Errorf("%s: peer %d has no address", b.name, p.Node)
		case !addrs && p.Addr != "":
			return nil, fmt.Errorf("%s: peer %d has an address (%s), but only unicast media send to addresses", b.name, p.Node, p.Addr)
		}
		b.peers[p.Node] = true
	}
	if b.replay == nil {
		b.replay = NewReplayFilter(0)
	}
	if b.deliverWait <= 0 {
		b.deliverWait = DefaultDeliverWait
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.log = b.log.With("medium", b.name)
	return b, nil
}

// ID is the medium's id in the core's config.
func (b *base) ID() proto.MediumID { return b.id }

// Kind is proto.Network or proto.Serial.
func (b *base) Kind() proto.MediumKind { return b.kind }

// Name is how logs and errors name the medium.
func (b *base) Name() string { return b.name }

// Counters reads the medium's counters.
func (b *base) Counters() Counters { return b.stats.Snapshot() }

func (b *base) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

// LastError is the latest write failure and when it happened; see Medium.
func (b *base) LastError() (error, time.Time) {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.writeErr, b.writeErrAt
}

func (b *base) setErr(err error) {
	b.errMu.Lock()
	b.writeErr, b.writeErrAt = err, time.Now()
	b.errMu.Unlock()
}

// drop counts a dropped packet and logs it at the first occurrence and at
// every power of two after that.
func (b *base) drop(c *atomic.Uint64, reason string, from net.Addr, level slog.Level) {
	n := c.Add(1)
	if n&(n-1) == 0 {
		b.log.Log(context.Background(), level, "heartbeat dropped", "reason", reason, "from", addrString(from), "count", n)
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// accept runs every check on one received packet and delivers it if it
// passes. pkt may be reused by the caller afterwards.
func (b *base) accept(pkt []byte, from net.Addr, at time.Time) {
	if len(pkt) > wire.MaxPacket {
		b.drop(&b.stats.oversized, fmt.Sprintf("oversized (more than %d bytes)", wire.MaxPacket), from, slog.LevelWarn)
		return
	}
	var hb proto.Heartbeat
	if err := wire.DecodeHeartbeat(pkt, &hb, b.key); err != nil {
		if errors.Is(err, wire.ErrAuth) {
			b.drop(&b.stats.badAuth, "authentication failed (is the shared key the same on both nodes?)", from, slog.LevelWarn)
		} else {
			b.drop(&b.stats.malformed, "malformed: "+err.Error(), from, slog.LevelWarn)
		}
		return
	}
	if hb.From == b.self {
		b.stats.self.Add(1) // our own broadcast or multicast loopback: expected
		return
	}
	if !b.peers[hb.From] {
		b.drop(&b.stats.wrongSender, fmt.Sprintf("from node %d, which is not a peer of this medium", hb.From), from, slog.LevelWarn)
		return
	}
	if !b.replay.Accept(b.id, &hb, at) {
		b.drop(&b.stats.replayed, fmt.Sprintf("replayed or stale (node %d incarnation %d seq %d)", hb.From, hb.Incarnation, hb.Seq), from, slog.LevelInfo)
		return
	}
	b.deliver(Received{Medium: b.id, Msg: hb, At: at, From: from})
}

// deliver hands r to the core, waiting at most deliverWait for room.
func (b *base) deliver(r Received) {
	select {
	case b.out <- r:
		b.stats.received.Add(1)
		return
	default:
	}
	t := time.NewTimer(b.deliverWait)
	defer t.Stop()
	select {
	case b.out <- r:
		b.stats.received.Add(1)
	case <-t.C:
		b.drop(&b.stats.overrun, fmt.Sprintf("the daemon did not take it within %v (overloaded?)", b.deliverWait), r.From, slog.LevelWarn)
	case <-b.closed:
	}
}

// Send queues hb for peer to; see Medium.Send. frame turns the encoded
// packet into what goes on the medium (SLIP for serial).
func (b *base) send(to proto.NodeID, hb *proto.Heartbeat, frame func([]byte) []byte) error {
	if b.isClosed() {
		return fmt.Errorf("%s: send on a closed medium", b.name)
	}
	if to >= proto.MaxNodes || !b.peers[to] {
		return fmt.Errorf("%s: node %d is not a peer of this medium", b.name, to)
	}
	if hb.From != b.self {
		return fmt.Errorf("%s: refusing to send a heartbeat from node %d as node %d", b.name, hb.From, b.self)
	}
	if err := wire.Validate(hb); err != nil {
		return fmt.Errorf("%s: refusing to send an invalid heartbeat: %w", b.name, err)
	}
	slot := int(to)
	b.mu.Lock()
	if b.shared {
		if b.last.set && b.last.incarnation == hb.Incarnation && b.last.seq == hb.Seq {
			b.mu.Unlock()
			return nil // already queued or sent: one packet reaches every peer
		}
		b.last.set, b.last.incarnation, b.last.seq = true, hb.Incarnation, hb.Seq
		slot = 0
	}
	pkt := wire.AppendHeartbeat(make([]byte, 0, wire.PacketSizeMAC), hb, b.key)
	if frame != nil {
		pkt = frame(pkt)
	}
	if b.pending[slot] != nil {
		b.stats.superseded.Add(1)
	}
	b.pending[slot] = pkt
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return nil
}

// writer sends what Send queues until the medium closes. write sends one
// packet to the peer of a slot (slot 0 on shared media) and returns an error
// worded for the operator.
func (b *base) writer(write func(slot int, pkt []byte) error) {
	defer b.wg.Done()
	for {
		select {
		case <-b.closed:
			return
		case <-b.wake:
		}
		var batch [proto.MaxNodes][]byte
		b.mu.Lock()
		batch, b.pending = b.pending, [proto.MaxNodes][]byte{}
		b.mu.Unlock()
		for slot, pkt := range batch {
			if pkt == nil {
				continue
			}
			err := write(slot, pkt)
			if b.isClosed() {
				return
			}
			if err != nil {
				// The counter goes up last, so whoever sees it has LastError
				// and the log to go with it. (This goroutine is the only
				// one that writes it.)
				n := b.stats.sendErrors.Load() + 1
				b.setErr(err)
				if n&(n-1) == 0 {
					b.log.Warn("heartbeat not sent", "err", err, "count", n)
				}
				b.stats.sendErrors.Add(1)
				continue
			}
			b.stats.sent.Add(1)
		}
	}
}

// shutdown stops the goroutines: closing the socket or line (closeIO)
// unblocks them, then it waits.
func (b *base) shutdown(closeIO func() error) error {
	var err error
	b.closeOnce.Do(func() {
		close(b.closed)
		err = closeIO()
		b.wg.Wait()
	})
	return err
}
