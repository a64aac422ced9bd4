package link

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/repl"
)

// Defaults for Config fields left zero.
const (
	// DefaultConnectMin: the first retry comes quickly, so that two nodes
	// started a moment apart connect at once.
	DefaultConnectMin = 100 * time.Millisecond
	// DefaultConnectInterval is DRBD's connect-int: attempts back off to
	// one every 10 s while the peer stays away.
	DefaultConnectInterval = 10 * time.Second
	// DefaultHandshakeTimeout bounds a dial plus the handshake.
	DefaultHandshakeTimeout = 5 * time.Second
	// DefaultKeepAlive: a silent dead peer is noticed by TCP within 10 s
	// even if the core's own pings are slower (DRBD's ping-timeout is
	// shorter; the core's pings normally win).
	DefaultKeepAlive = 10 * time.Second
	// DefaultQueueFrames and DefaultQueueBytes bound one connection's send
	// queue; the core's own flow control keeps far less in flight.
	DefaultQueueFrames = 4096
	DefaultQueueBytes  = 32 << 20
)

// ErrQueueFull: Send found the connection's queue at its bound; nothing was
// queued. ErrNotConnected: the connection is not (or no longer) open.
// ErrClosed: Close was called for the connection. ErrShutdown: the manager
// is shut down.
var (
	ErrQueueFull    = errors.New("send queue full")
	ErrNotConnected = errors.New("not connected")
	ErrClosed       = errors.New("connection closed by this node")
	ErrShutdown     = errors.New("link manager shut down")
	errReplaced     = errors.New("replaced by a newer connection to the same peer")
)

// Config configures a Manager.
type Config struct {
	// Self and Peer are the two nodes' names (1 to MaxNameLen bytes,
	// different). When both nodes connect at once, the node whose name
	// sorts first decides which connection stays (DRBD breaks the same tie
	// by address).
	Self, Peer string
	// ListenAddr is the host:port this node accepts the peer on.
	ListenAddr string
	// PeerAddr is the host:port the peer accepts on.
	PeerAddr string
	// Key is the shared secret (Heartbeat's authkeys); required.
	Key []byte
	// ConnectMin is the first delay between connection attempts, doubled
	// after each failure up to ConnectInterval. Defaults:
	// DefaultConnectMin, DefaultConnectInterval.
	ConnectMin, ConnectInterval time.Duration
	// HandshakeTimeout bounds a dial plus the handshake; default
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxPayload is the largest payload (and Bitmap) in bytes a frame may
	// carry, either way; default DefaultMaxPayload. Both nodes should agree.
	MaxPayload int
	// QueueFrames and QueueBytes bound each connection's send queue;
	// defaults DefaultQueueFrames, DefaultQueueBytes.
	QueueFrames, QueueBytes int
	// KeepAlive is how long TCP lets a dead, silent peer go unnoticed:
	// probes start after KeepAlive/2 of silence, every KeepAlive/10, five of
	// them; unacknowledged data times out after KeepAlive
	// (TCP_USER_TIMEOUT). Default DefaultKeepAlive; negative turns both off.
	KeepAlive time.Duration
	// SendBuffer and RecvBuffer set SO_SNDBUF and SO_RCVBUF in bytes; 0
	// leaves them to the kernel's autotuning, as DRBD's sndbuf-size 0 does
	// (usually the fastest: a fixed size caps the window).
	SendBuffer, RecvBuffer int
	// Logger receives connection changes and bad frames; nil: slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	switch {
	case c.Self == "" || c.Peer == "":
		return errors.New("link: Self and Peer names are required")
	case len(c.Self) > MaxNameLen || len(c.Peer) > MaxNameLen:
		return fmt.Errorf("link: node names %q, %q: at most %d bytes", c.Self, c.Peer, MaxNameLen)
	case c.Self == c.Peer:
		return fmt.Errorf("link: Self and Peer are both %q", c.Self)
	case len(c.Key) == 0:
		return errors.New("link: Key is required (the shared authkeys secret)")
	case c.ListenAddr == "" || c.PeerAddr == "":
		return errors.New("link: ListenAddr and PeerAddr are required")
	case c.MaxPayload < 0 || c.MaxPayload > 1<<30:
		return fmt.Errorf("link: MaxPayload %d out of range (0 to 1 GiB)", c.MaxPayload)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.ConnectMin, DefaultConnectMin)
	def(&c.ConnectInterval, DefaultConnectInterval)
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	c.ConnectInterval = max(c.ConnectInterval, c.ConnectMin)
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.QueueFrames <= 0 {
		c.QueueFrames = DefaultQueueFrames
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = DefaultQueueBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// Up: connection Conn is established and authenticated (repl.LinkUp).
	Up EventKind = iota + 1
	// Msg: message Msg, with Payload, arrived on Conn (repl.Receive).
	Msg
	// Down: Conn is gone; Err says why (repl.LinkDown).
	Down
)

func (k EventKind) String() string {
	switch k {
	case Up:
		return "up"
	case Msg:
		return "msg"
	case Down:
		return "down"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is what the Manager tells the daemon's main loop.
type Event struct {
	Kind EventKind
	Conn uint64
	Msg  repl.Msg
	// Payload is the message's data (nil if none), allocated for this
	// event alone: the receiver owns it and may hand it to the disk as is.
	// Msg.Bitmap is likewise the receiver's.
	Payload []byte
	// Err: why the connection went Down.
	Err error
}

// Counters are a Manager's totals since New. Each is read atomically; a
// snapshot is not one atomic whole.
type Counters struct {
	// FramesIn/BytesIn: intact, authentic frames received; FramesOut/BytesOut:
	// frames written to sockets (bytes on the wire, headers and MACs included).
	FramesIn, BytesIn, FramesOut, BytesOut uint64
	// BadMAC: frames or handshake proofs that failed authentication.
	BadMAC uint64
	// BadCRC: payloads that failed their CRC32C.
	BadCRC uint64
	// Malformed: frames with a bad header, authentic frames whose message
	// does not decode, and unreadable hellos.
	Malformed uint64
	// Oversized: frames announcing a message or payload over the maximum,
	// refused before reading (or allocating) them.
	Oversized uint64
	// Replayed: authentic frames out of sequence.
	Replayed uint64
	// HandshakeFailed: connections that did not complete the handshake for
	// any other reason (timeout, wrong node names, closed early).
	HandshakeFailed uint64
	// Refused: authenticated connections not taken: a duplicate of the one
	// in use, or arriving while no link is wanted.
	Refused uint64
	// Dials and DialFailures: outgoing attempts and those that did not
	// reach the peer's port.
	Dials, DialFailures uint64
	// Established: connections that went Up; Reconnects: those after the
	// first.
	Established, Reconnects uint64
	// QueueFull: Sends refused with ErrQueueFull.
	QueueFull uint64
}

type stats struct {
	framesIn, bytesIn, framesOut, bytesOut         atomic.Uint64
	badMAC, badCRC, malformed, oversized, replayed atomic.Uint64
	handshakeFailed, refused, dials, dialFailures  atomic.Uint64
	established, reconnects, queueFull             atomic.Uint64
}

// Manager keeps the replication link to one peer: it listens and dials,
// authenticates, keeps one connection, and carries repl.Msg both ways.
//
// Events go to the channel given to New, from the Manager's goroutines.
// Per connection they come in order: one Up, its Msgs as they arrived, one
// Down; a connection's Down comes before the next connection's Up. A
// connection's reader waits for room in the channel, so a slow main loop
// slows the peer through TCP flow control instead of losing messages; Close
// and Shutdown still work while it waits. After Shutdown returns nothing is
// sent on the channel (the Down of a connection open then may be lost).
//
// SetWanted, Send, Close, Counters and Shutdown are safe for concurrent use.
//
// Which connection stays when both nodes connect at once: the node whose
// name sorts first decides (the leader), the other follows. A node dials
// only while it has no connection, and drops its own dial if it takes one
// meanwhile. The follower has at most one connection in its handshake at a
// time (its own dial, from the moment it reaches the leader's port, or one
// it accepted) and closes any other at once. So a connection from the
// follower that completes its handshake at the leader was made while the
// follower had no other: the leader takes it, replacing the one it had
// (which the follower has lost: it restarted, or saw it break first), and
// confirms it with an accept frame. The follower goes Up only on that
// frame, so both keep the same connection and neither reports one the
// other did not take.
type Manager struct {
	cfg    Config
	events chan<- Event
	log    *slog.Logger
	ln     net.Listener
	leader bool
	st     stats

	mu       sync.Mutex
	wanted   bool
	closed   bool
	cur      *conn // the connection in use, nil if none
	last     *conn // the newest connection that went Up (cur, or ended)
	nextID   uint64
	pending  map[net.Conn]struct{} // connections in their handshake
	everUp   bool
	live     atomic.Pointer[conn] // cur, for Send without the lock
	wake     chan struct{}
	done     chan struct{}
	ctx      context.Context
	cancel   context.CancelFunc
	shutOnce sync.Once
	wg       sync.WaitGroup
}

// maxPending bounds the leader's concurrent handshakes, so that a flood
// of connections to the port cannot tie up goroutines and memory (the
// follower allows one).
const maxPending = 4

// New starts listening on cfg.ListenAddr and returns a Manager. It dials
// nobody until SetWanted(true). Events go to events (see Manager).
func New(cfg Config, events chan<- Event) (*Manager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, events: events, log: cfg.Logger.With("link", cfg.Peer),
		leader: cfg.Self < cfg.Peer, pending: map[net.Conn]struct{}{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	lc := net.ListenConfig{Control: m.control}
	lc.KeepAlive, lc.KeepAliveConfig = m.keepAlive()
	ln, err := lc.Listen(context.Background(), "tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("link: listen on %s for %s: %w", cfg.ListenAddr, cfg.Peer, err)
	}
	m.ln = ln
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(2)
	go m.acceptLoop()
	go m.dialLoop()
	return m, nil
}

// Addr is the address the Manager listens on.
func (m *Manager) Addr() net.Addr { return m.ln.Addr() }

// SetWanted says whether the link should exist (the core's WantLink
// Connect, from a WantLink without Conn). true: dial (and accept) until connected, and again whenever the
// connection ends. false: close the connection and stop dialing; incoming
// connections are closed unanswered.
func (m *Manager) SetWanted(want bool) {
	m.mu.Lock()
	changed := m.wanted != want
	m.wanted = want
	cur := m.cur
	m.mu.Unlock()
	if !want && cur != nil {
		cur.fail(ErrClosed)
	}
	if changed {
		m.kick()
	}
}

// Close closes connection conn (the core's WantLink with Conn set; it
// does not change what SetWanted said); a Down follows. Unknown or already closed connections are
// ignored. If the link is still wanted, the Manager connects again.
func (m *Manager) Close(conn uint64) {
	m.mu.Lock()
	cur := m.cur
	m.mu.Unlock()
	if cur != nil && cur.id == conn {
		cur.fail(ErrClosed)
	}
}

// Send queues m with payload on connection conn and returns at once; a
// writer goroutine sends it. It fails with ErrNotConnected if conn is not
// the open connection (expected between a connection's end and the core
// hearing of it: the Down event is on its way), ErrQueueFull if the queue is at its bound (nothing is
// dropped silently: the caller decides), ErrOversized for a payload or
// bitmap over MaxPayload, or CheckMsg's error. The payload is not copied:
// it must not change until the frame is written (a change is caught by the
// peer's CRC check, which closes the connection).
func (m *Manager) Send(conn uint64, msg *repl.Msg, payload []byte) error {
	c := m.live.Load()
	if c == nil || c.id != conn || c.isClosing() {
		return fmt.Errorf("link: send %s on connection %d: %w", msg.Kind, conn, ErrNotConnected)
	}
	if err := CheckMsg(msg, len(payload)); err != nil {
		return err
	}
	if len(payload) > m.cfg.MaxPayload || len(msg.Bitmap) > m.cfg.MaxPayload {
		return fmt.Errorf("link: send %s: %d-byte payload, %d-byte bitmap: %w (maximum %d)",
			msg.Kind, len(payload), len(msg.Bitmap), ErrOversized, m.cfg.MaxPayload)
	}
	f := newFrame(typeMsg, msg, payload)
	size := int64(f.size())
	if q := c.queued.Add(size); q > int64(m.cfg.QueueBytes) && q != size {
		c.queued.Add(-size)
		f.free()
		m.st.queueFull.Add(1)
		return fmt.Errorf("link: send %s on connection %d: %w (%d bytes queued)", msg.Kind, conn, ErrQueueFull, q-size)
	}
	select {
	case c.sendq <- f:
		return nil
	case <-c.closing:
		c.queued.Add(-size)
		f.free()
		return fmt.Errorf("link: send %s on connection %d: %w", msg.Kind, conn, ErrNotConnected)
	default:
		c.queued.Add(-size)
		f.free()
		m.st.queueFull.Add(1)
		return fmt.Errorf("link: send %s on connection %d: %w (%d frames queued)", msg.Kind, conn, ErrQueueFull, len(c.sendq))
	}
}

// Counters returns the totals so far.
func (m *Manager) Counters() Counters {
	s := &m.st
	return Counters{
		FramesIn: s.framesIn.Load(), BytesIn: s.bytesIn.Load(),
		FramesOut: s.framesOut.Load(), BytesOut: s.bytesOut.Load(),
		BadMAC: s.badMAC.Load(), BadCRC: s.badCRC.Load(), Malformed: s.malformed.Load(),
		Oversized: s.oversized.Load(), Replayed: s.replayed.Load(),
		HandshakeFailed: s.handshakeFailed.Load(), Refused: s.refused.Load(),
		Dials: s.dials.Load(), DialFailures: s.dialFailures.Load(),
		Established: s.established.Load(), Reconnects: s.reconnects.Load(),
		QueueFull: s.queueFull.Load(),
	}
}

// Shutdown closes the listener and every connection and waits for the
// Manager's goroutines. Nothing is sent on the events channel after it
// returns. It may be called more than once.
func (m *Manager) Shutdown() {
	m.shutOnce.Do(func() {
		close(m.done)
		m.cancel()
		m.ln.Close()
		m.mu.Lock()
		m.closed = true
		for nc := range m.pending {
			nc.Close()
		}
		cur := m.cur
		m.mu.Unlock()
		if cur != nil {
			cur.fail(ErrShutdown)
		}
		m.wg.Wait()
	})
}

func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// emit delivers ev unless the Manager shuts down (or, when abandon is not
// nil, until abandon is closed); it reports whether ev was delivered.
func (m *Manager) emit(ev Event, abandon <-chan struct{}) bool {
	select {
	case m.events <- ev:
		return true
	case <-m.done:
		return false
	case <-abandon:
		return false
	}
}

// count adds a bad frame or failed handshake to its counter and logs the
// first one of each kind and then every power of two of the count, so a
// flood cannot fill the log.
func (m *Manager) count(err error, what string) {
	var n uint64
	switch {
	case errors.Is(err, ErrBadMAC):
		n = m.st.badMAC.Add(1)
	case errors.Is(err, ErrBadCRC):
		n = m.st.badCRC.Add(1)
	case errors.Is(err, ErrOversized):
		n = m.st.oversized.Add(1)
	case errors.Is(err, ErrReplayed):
		n = m.st.replayed.Add(1)
	case errors.Is(err, ErrMalformed):
		n = m.st.malformed.Add(1)
	default:
		return
	}
	if n&(n-1) == 0 {
		m.log.Warn("link: "+what, "peer", m.cfg.Peer, "err", err, "count", n)
	}
}

// --- establishing connections ---

// keepAlive is the (Dialer/ListenConfig).KeepAlive and KeepAliveConfig for
// Config.KeepAlive; a negative KeepAlive with Enable false turns probes off.
func (m *Manager) keepAlive() (time.Duration, net.KeepAliveConfig) {
	k := m.cfg.KeepAlive
	if k < 0 {
		return -1, net.KeepAliveConfig{}
	}
	return 0, net.KeepAliveConfig{Enable: true, Idle: max(k/2, time.Second),
		Interval: max(k/10, time.Second), Count: 5}
}

// control sets the socket buffers before connect or listen: the receive
// buffer must be set before the SYN for the window scale to match it.
func (m *Manager) control(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		if m.cfg.SendBuffer > 0 {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, m.cfg.SendBuffer)
		}
		if serr == nil && m.cfg.RecvBuffer > 0 {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, m.cfg.RecvBuffer)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// tune sets what every connection needs after connect or accept.
func (m *Manager) tune(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return
	}
	// Small messages (acks, barriers) must not wait for Nagle: protocol C
	// latency is their round trip.
	tc.SetNoDelay(true)
	if m.cfg.KeepAlive > 0 {
		// Keepalive probes only run on an idle socket; with data unacknowledged
		// (a peer that died mid-write) the user timeout is what notices.
		if rc, err := tc.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(m.cfg.KeepAlive/time.Millisecond))
			})
		}
	}
}

func (m *Manager) acceptLoop() {
	defer m.wg.Done()
	for {
		nc, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			m.log.Warn("link: accept", "err", err)
			select {
			case <-time.After(100 * time.Millisecond):
			case <-m.done:
				return
			}
			continue
		}
		if !m.claim(nc, false) {
			m.st.refused.Add(1)
			nc.Close()
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.establish(nc, false)
		}()
	}
}

func (m *Manager) dialLoop() {
	defer m.wg.Done()
	backoff := m.cfg.ConnectMin
	for {
		m.mu.Lock()
		ready := m.wanted && m.cur == nil && !m.closed
		m.mu.Unlock()
		if !ready {
			select {
			case <-m.wake:
				backoff = m.cfg.ConnectMin
				continue
			case <-m.done:
				return
			}
		}
		if m.dialOnce() {
			backoff = m.cfg.ConnectMin
			continue
		}
		select {
		case <-time.After(backoff):
		case <-m.wake:
		case <-m.done:
			return
		}
		backoff = min(2*backoff, m.cfg.ConnectInterval)
	}
}

// dialOnce dials the peer and runs the handshake; it reports whether the
// connection was taken.
func (m *Manager) dialOnce() bool {
	m.st.dials.Add(1)
	d := net.Dialer{Timeout: m.cfg.HandshakeTimeout, Control: m.control}
	d.KeepAlive, d.KeepAliveConfig = m.keepAlive()
	nc, err := d.DialContext(m.ctx, "tcp", m.cfg.PeerAddr)
	if err != nil {
		if n := m.st.dialFailures.Add(1); n&(n-1) == 0 {
			m.log.Info("link: cannot reach peer", "peer", m.cfg.Peer, "addr", m.cfg.PeerAddr, "err", err, "failures", n)
		}
		return false
	}
	if !m.claim(nc, true) {
		// In a handshake with an inbound connection, or one was taken.
		nc.Close()
		return false
	}
	return m.establish(nc, true)
}

// claim admits nc to the handshake unless the link is not wanted, the
// handshake slots are taken (the follower has one; see Manager), or nc is
// our own dial and a connection was taken while it connected.
func (m *Manager) claim(nc net.Conn, dialer bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	limit := 1
	if m.leader {
		limit = maxPending
	}
	if !m.wanted || m.closed || len(m.pending) >= limit || (dialer && m.cur != nil) {
		return false
	}
	m.pending[nc] = struct{}{}
	return true
}

// establish authenticates nc and, if it is to be the connection, starts it.
// It reports whether it did.
func (m *Manager) establish(nc net.Conn, dialer bool) (taken bool) {
	defer func() {
		m.mu.Lock()
		delete(m.pending, nc)
		m.mu.Unlock()
		if !taken {
			nc.Close()
		}
	}()
	m.tune(nc)
	nc.SetDeadline(time.Now().Add(m.cfg.HandshakeTimeout))
	br := bufio.NewReaderSize(nc, 64<<10)
	mine := hello{from: m.cfg.Self, to: m.cfg.Peer, nonce: newNonce()}
	s, err := handshake(nc, br, m.cfg.Key, mine, m.cfg.Peer, dialer)
	if err != nil {
		m.handshakeFailed(nc, err)
		return false
	}
	c := &conn{m: m, nc: nc,
		sendq: make(chan *frame, m.cfg.QueueFrames), closing: make(chan struct{}),
		done: make(chan struct{}), writerDone: make(chan struct{}),
		rd: newFrameReader(br, s.recvKey, m.cfg.MaxPayload), sendKey: s.sendKey}
	if m.leader {
		if why := m.adopt(c, dialer); why != "" {
			m.refuse(nc, why)
			return false
		}
		// Accept is frame 1 of this direction; the writer goes on from 2.
		f := newFrame(typeAccept, nil, nil)
		f.seal(1, hmac.New(sha256.New, c.sendKey))
		_, err := nc.Write(f.buf)
		f.free()
		if err != nil {
			c.fail(fmt.Errorf("send accept: %w", err))
		}
	} else {
		in, err := c.rd.read()
		if err == nil && in.typ != typeAccept {
			err = fmt.Errorf("%w: frame %d of type %d before the accept", ErrMalformed, in.seq, in.typ)
		}
		if err != nil {
			// EOF here is the deciding node refusing a duplicate.
			if errors.Is(err, io.EOF) {
				m.log.Debug("link: connection not taken by the peer", "peer", m.cfg.Peer, "dialer", dialer)
			} else {
				m.handshakeFailed(nc, err)
			}
			return false
		}
		if why := m.adopt(c, false); why != "" {
			m.refuse(nc, why)
			return false
		}
	}
	nc.SetDeadline(time.Time{})
	m.wg.Add(2)
	go c.readLoop()
	go c.writeLoop()
	return true
}

func (m *Manager) handshakeFailed(nc net.Conn, err error) {
	if errors.Is(err, ErrBadMAC) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrOversized) ||
		errors.Is(err, ErrBadCRC) || errors.Is(err, ErrReplayed) {
		m.count(err, "handshake refused")
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	if n := m.st.handshakeFailed.Add(1); n&(n-1) == 0 {
		level := slog.LevelWarn
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
			// The usual end of the losing half of a simultaneous connect:
			// the peer closed its duplicate.
			level = slog.LevelInfo
		}
		m.log.Log(context.Background(), level, "link: handshake failed", "peer", m.cfg.Peer, "remote", nc.RemoteAddr().String(), "err", err, "count", n)
	}
}

func (m *Manager) refuse(nc net.Conn, why string) {
	m.st.refused.Add(1)
	m.log.Debug("link: connection refused", "peer", m.cfg.Peer, "remote", nc.RemoteAddr().String(), "why", why)
}

// adopt makes c the connection in use, replacing the one before, unless
// the link is no longer wanted or c is the leader's own dial and it took a
// connection from the follower meanwhile (the reason is returned).
func (m *Manager) adopt(c *conn, ownDial bool) (refused string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return "shutting down"
	case !m.wanted:
		return "link not wanted"
	case ownDial && m.cur != nil:
		return "a connection from the peer was taken while dialing"
	}
	delete(m.pending, c.nc) // from handshake to in use in one step
	old := m.cur
	m.nextID++
	c.id = m.nextID
	c.prev = m.last
	m.cur, m.last = c, c
	m.live.Store(c)
	m.st.established.Add(1)
	if m.everUp {
		m.st.reconnects.Add(1)
	}
	m.everUp = true
	if old != nil {
		old.fail(errReplaced)
	}
	return ""
}

// ended forgets c if it is still the connection in use.
func (m *Manager) ended(c *conn) {
	m.mu.Lock()
	if m.cur == c {
		m.cur = nil
		m.live.Store(nil)
	}
	m.mu.Unlock()
	m.kick()
}

// --- one connection ---

// conn is one established connection: a reader goroutine (which also emits
// the connection's events) and a writer goroutine.
type conn struct {
	m       *Manager
	nc      net.Conn
	id      uint64
	prev    *conn // its Down must be out before our Up
	rd      *frameReader
	sendKey []byte

	sendq      chan *frame
	queued     atomic.Int64
	closing    chan struct{} // closed by fail
	failOnce   sync.Once
	err        error // the first failure, set before closing is closed
	writerDone chan struct{}
	done       chan struct{} // closed after Down went out (or was dropped)
}

// fail records why the connection ends (the first reason wins) and closes
// the socket, which stops both goroutines.
func (c *conn) fail(err error) {
	c.failOnce.Do(func() {
		c.err = err
		close(c.closing)
		c.nc.Close()
	})
}

func (c *conn) isClosing() bool {
	select {
	case <-c.closing:
		return true
	default:
		return false
	}
}

func (c *conn) readLoop() {
	m := c.m
	defer m.wg.Done()
	defer close(c.done)
	if p := c.prev; p != nil && p != c {
		select {
		case <-p.done:
		case <-m.done:
		}
	}
	c.prev = nil
	up := m.emit(Event{Kind: Up, Conn: c.id}, nil)
	if up {
		m.log.Info("link: connected", "peer", m.cfg.Peer, "conn", c.id,
			"local", c.nc.LocalAddr().String(), "remote", c.nc.RemoteAddr().String())
	}
	for up {
		in, err := c.rd.read()
		if err == nil {
			var msg repl.Msg
			n := 0
			msg, n, err = decodeMsg(in.msg, m.cfg.MaxPayload)
			switch {
			case err != nil:
				err = fmt.Errorf("frame %d: %w", in.seq, err)
			case in.typ != typeMsg:
				err = fmt.Errorf("%w: frame %d: unexpected frame type %d", ErrMalformed, in.seq, in.typ)
			case n != len(in.payload):
				err = fmt.Errorf("%w: frame %d: message announces %d payload bytes, frame carries %d",
					ErrMalformed, in.seq, n, len(in.payload))
			}
			if err == nil {
				m.st.framesIn.Add(1)
				m.st.bytesIn.Add(uint64(in.size))
				// The bitmap aliases the reader's buffer: give the receiver its own.
				if msg.Bitmap != nil {
					msg.Bitmap = append([]byte(nil), msg.Bitmap...)
				}
				if !m.emit(Event{Kind: Msg, Conn: c.id, Msg: msg, Payload: in.payload}, c.closing) {
					break
				}
				continue
			}
		}
		m.count(err, fmt.Sprintf("bad frame on connection %d, closing it", c.id))
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%s closed the connection: %w", m.cfg.Peer, err)
		}
		c.fail(err)
		break
	}
	c.fail(ErrShutdown) // no-op unless the events were abandoned at shutdown
	<-c.writerDone
	m.ended(c)
	if up && m.emit(Event{Kind: Down, Conn: c.id, Err: c.err}, nil) {
		m.log.Info("link: disconnected", "peer", m.cfg.Peer, "conn", c.id, "err", c.err)
	}
}

// maxBatch bounds the frames (and bytes) of one writev.
const (
	maxBatch      = 64
	maxBatchBytes = 1 << 20
)

func (c *conn) writeLoop() {
	m := c.m
	defer m.wg.Done()
	defer close(c.writerDone)
	mac := hmac.New(sha256.New, c.sendKey)
	seq := uint64(1) // the accept, if we sent it, was 1
	if m.leader {
		seq = 2
	}
	batch := make([]*frame, 0, maxBatch)
	iov := make([][]byte, 0, 3*maxBatch)
	for {
		select {
		case f := <-c.sendq:
			batch = append(batch, f)
		case <-c.closing:
			c.drop()
			return
		}
		bytes := batch[0].size()
	more:
		for len(batch) < maxBatch && bytes < maxBatchBytes {
			select {
			case f := <-c.sendq:
				batch = append(batch, f)
				bytes += f.size()
			default:
				break more
			}
		}
		iov = iov[:0]
		for _, f := range batch {
			f.seal(seq, mac)
			seq++
			iov = append(iov, f.buf[:f.n])
			if len(f.payload) > 0 {
				iov = append(iov, f.payload)
			}
			iov = append(iov, f.buf[f.n:])
		}
		bufs := net.Buffers(iov)
		_, err := bufs.WriteTo(c.nc) // writev: the payloads are not copied
		frames := len(batch)
		for i, f := range batch {
			f.free()
			batch[i] = nil
		}
		batch = batch[:0]
		c.queued.Add(-int64(bytes))
		if err != nil {
			c.fail(fmt.Errorf("write: %w", err))
			c.drop()
			return
		}
		m.st.framesOut.Add(uint64(frames))
		m.st.bytesOut.Add(uint64(bytes))
	}
}

// drop empties the queue of a closed connection.
func (c *conn) drop() {
	for {
		select {
		case f := <-c.sendq:
			c.queued.Add(-int64(f.size()))
			f.free()
		default:
			return
		}
	}
}
