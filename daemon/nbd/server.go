package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Defaults of the Server's limits.
const (
	// DefaultMaxInFlight: requests served at once per connection. The
	// kernel queues up to 128 per connection; 64 keeps a replication link
	// busy without letting one client hog the backend.
	DefaultMaxInFlight = 64
	// DefaultMaxPayload: the largest READ or WRITE, 32 MiB, advertised as
	// the maximum block size. It is also the kernel's largest request and
	// the spec's "never a denial of service" bound.
	DefaultMaxPayload = 32 << 20
	// DefaultMaxInFlightBytes: data buffers held per connection, two
	// maximum-size requests' worth.
	DefaultMaxInFlightBytes = 2 * DefaultMaxPayload
	// DefaultHandshakeTimeout: how long a client may take to negotiate.
	DefaultHandshakeTimeout = 10 * time.Second
)

// maxOptionLength bounds an option's data: an export name (at most 4096
// bytes by the spec) and a short list of information requests fit easily.
// A client that claims more is closed on rather than drained.
const maxOptionLength = 16 << 10

// ErrServerClosed is returned by Serve and ServeTransmission once Shutdown
// has been called.
var ErrServerClosed = errors.New("nbd: server closed")

// Server exports one Backend over NBD: to userspace clients (qemu, nbd-client)
// through Serve with the fixed-newstyle handshake, and to the kernel through
// ServeTransmission on a socket given to AttachKernel. The fields are read
// when the server starts and must not change afterwards.
//
// Structured replies are not offered (NBD_OPT_STRUCTURED_REPLY is answered
// NBD_REP_ERR_UNSUP): the kernel never uses them, and simple replies carry
// every command served here.
type Server struct {
	// Backend is the device. Required.
	Backend Backend
	// ExportName is the name clients ask for; the empty name (the spec's
	// default export) is always accepted as well. Default "".
	ExportName string
	// MaxInFlight bounds the requests served at once per connection.
	// Default DefaultMaxInFlight.
	MaxInFlight int
	// MaxPayload is the largest READ or WRITE in bytes, a multiple of
	// MinBlockSize from PreferredBlockSize up; larger ones fail with EINVAL
	// without allocating. The kernel sends up to 32 MiB and knows no other
	// limit, so a server that feeds /dev/nbdN keeps the default.
	// Default DefaultMaxPayload.
	MaxPayload uint32
	// MaxInFlightBytes bounds the data buffers of one connection's requests
	// in flight. Default DefaultMaxInFlightBytes (at least MaxPayload).
	MaxInFlightBytes uint64
	// MultiConn advertises NBD_FLAG_CAN_MULTI_CONN to handshake clients.
	// Set it only if the Backend's Flush covers writes acknowledged on
	// every connection, not just the caller's. Default false.
	MultiConn bool
	// HandshakeTimeout bounds the negotiation of a connection accepted by
	// Serve. Default DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// Logger receives connection and error events. Default: discarded.
	Logger *slog.Logger

	setupOnce sync.Once
	setupErr  error
	// Effective limits, defaults applied.
	maxInFlight      int
	maxPayload       uint32
	maxInFlightBytes uint64
	handshakeTimeout time.Duration
	log              *slog.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	serving   sync.WaitGroup // one per connection goroutine
	counters  counters
}

// setup checks the configuration and applies defaults, once.
func (s *Server) setup() error {
	s.setupOnce.Do(func() { s.setupErr = s.applyDefaults() })
	return s.setupErr
}

func (s *Server) applyDefaults() error {
	if s.Backend == nil {
		return errors.New("nbd: Server.Backend is nil")
	}
	if len(s.ExportName) > 4096 {
		return fmt.Errorf("nbd: Server.ExportName is %d bytes long; the protocol allows at most 4096", len(s.ExportName))
	}
	s.maxInFlight = s.MaxInFlight
	if s.maxInFlight == 0 {
		s.maxInFlight = DefaultMaxInFlight
	} else if s.maxInFlight < 0 {
		return fmt.Errorf("nbd: Server.MaxInFlight is %d; it must be positive", s.MaxInFlight)
	}
	s.maxPayload = s.MaxPayload
	if s.maxPayload == 0 {
		s.maxPayload = DefaultMaxPayload
	} else if s.maxPayload%MinBlockSize != 0 || s.maxPayload < PreferredBlockSize || s.maxPayload > 1<<31 {
		return fmt.Errorf("nbd: Server.MaxPayload is %d; it must be a multiple of %d from %d to 2 GiB", s.MaxPayload, MinBlockSize, PreferredBlockSize)
	}
	s.maxInFlightBytes = s.MaxInFlightBytes
	if s.maxInFlightBytes == 0 {
		s.maxInFlightBytes = max(DefaultMaxInFlightBytes, uint64(s.maxPayload))
	} else if s.maxInFlightBytes < uint64(s.maxPayload) {
		return fmt.Errorf("nbd: Server.MaxInFlightBytes is %d, less than MaxPayload %d", s.MaxInFlightBytes, s.maxPayload)
	}
	s.handshakeTimeout = s.HandshakeTimeout
	if s.handshakeTimeout == 0 {
		s.handshakeTimeout = DefaultHandshakeTimeout
	} else if s.handshakeTimeout < 0 {
		return fmt.Errorf("nbd: Server.HandshakeTimeout is %v; it must be positive", s.HandshakeTimeout)
	}
	s.log = s.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Counters returns a snapshot of the server's counters.
func (s *Server) Counters() Counters { return s.counters.snapshot() }

// exportSize is the size clients see: whole minimum blocks only.
func (s *Server) exportSize() uint64 { return s.Backend.Size() &^ (MinBlockSize - 1) }

// exportFlags are the transmission flags offered in a handshake.
func (s *Server) exportFlags() Flags {
	f := ExportFlags(s.Backend)
	if s.MultiConn {
		f |= FlagCanMultiConn
	}
	return f
}

// Serve accepts connections on l (a unix socket in the daemon) and serves
// each, handshake then transmission, on its own goroutine. It returns
// ErrServerClosed after Shutdown, or the listener's error. l is closed
// when Serve returns.
func (s *Server) Serve(l net.Listener) error {
	defer l.Close()
	if err := s.setup(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if !temporaryAcceptError(err) {
				return fmt.Errorf("nbd: accept on %s: %w", l.Addr(), err)
			}
			// Out of descriptors or memory: wait and retry, like net/http.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("nbd accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		// The deadline is set before the connection is tracked, so that
		// Shutdown's own deadline always comes after it.
		nc.SetDeadline(time.Now().Add(s.handshakeTimeout))
		c, ok := s.track(nc)
		if !ok {
			nc.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.untrack(c)
			s.serveClient(c)
		}()
	}
}

func temporaryAcceptError(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// ServeTransmission serves the transmission phase on rw with the given
// transmission flags, without a handshake: rw is the daemon's end of the
// socket pair whose other end went to AttachKernel, and flags must be
// those given to it. It returns nil after NBD_CMD_DISC or Shutdown, once
// the requests in flight are answered; otherwise the error that ended it
// (io.EOF if the peer closed without NBD_CMD_DISC). rw is closed on return.
//
// Shutdown interrupts it through SetReadDeadline when rw has one (net.Conn
// has; see KernelSocketPair), otherwise by closing rw.
func (s *Server) ServeTransmission(rw io.ReadWriteCloser, flags Flags) error {
	if err := s.setup(); err != nil {
		rw.Close()
		return err
	}
	c, ok := s.track(rw)
	if !ok {
		rw.Close()
		return ErrServerClosed
	}
	defer s.untrack(c)
	err := c.transmit(flags)
	s.logEnd(err)
	return err
}

// ServeTransmission serves b on rw as Server.ServeTransmission does, with
// the default limits and its own counters.
func ServeTransmission(rw io.ReadWriteCloser, b Backend, flags Flags) error {
	return (&Server{Backend: b}).ServeTransmission(rw, flags)
}

// serveClient runs one accepted connection: handshake, then transmission.
func (s *Server) serveClient(c *conn) {
	nc := c.rw.(net.Conn)
	flags, err := s.handshake(nc)
	if err != nil {
		// Count before closing: the close is what the client sees, so a
		// counter read after it must already include this failure.
		switch {
		case errors.Is(err, errAborted):
			s.log.Debug("nbd client aborted the handshake")
		case c.stopping.Load():
		default:
			s.counters.handshakeFailures.Add(1)
			s.log.Info("nbd handshake failed", "err", err)
		}
		nc.Close()
		return
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		s.counters.handshakeFailures.Add(1)
		nc.Close()
		s.log.Info("nbd handshake failed", "err", err)
		return
	}
	if c.stopping.Load() {
		c.stop() // Shutdown came during the handshake: its deadline was just cleared
	}
	s.logEnd(c.transmit(flags))
}

func (s *Server) logEnd(err error) {
	if err != nil && !errors.Is(err, io.EOF) {
		s.log.Warn("nbd connection ended", "err", err)
	} else {
		s.log.Debug("nbd connection ended", "err", err)
	}
}

// track registers a connection, unless the server is shut down.
func (s *Server) track(rw io.ReadWriteCloser) (*conn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	c := &conn{s: s, rw: rw, log: s.log}
	s.conns[c] = struct{}{}
	s.serving.Add(1)
	return c, true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.serving.Done()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Shutdown stops the server: listeners close, handshakes are cut off,
// connections stop taking requests, and those in flight are answered before
// their connections close. It returns nil once every connection is closed.
// If ctx ends first, the remaining connections are closed at once (their
// replies are lost) and ctx's error is returned; goroutines blocked in the
// Backend finish when the Backend returns (it should return ErrShutdown
// when the daemon stops).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.stop()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.rw.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}
