package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/bits"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// MinBlockSize is the alignment of every request the server accepts and of
// the exported size: the kernel's sector. It is advertised as the minimum
// block size (NBD_INFO_BLOCK_SIZE).
const MinBlockSize = 512

// PreferredBlockSize is advertised as the preferred block size: the
// replication bitmap tracks 4 KiB blocks, so smaller writes cost as much.
const PreferredBlockSize = 4096

// request is one transmission request, from its header to its reply.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	offset uint64
	length uint32
	buf    *[]byte // the request's one data buffer (READ, WRITE), pooled
}

func (r *request) fua() bool { return r.flags&cmdFlagFUA != 0 }

// writes reports whether the command changes the device.
func (r *request) writes() bool {
	return r.typ == cmdWrite || r.typ == cmdTrim || r.typ == cmdWriteZeroes
}

// carriesData reports whether the request needs a data buffer: READ's reply
// and WRITE's payload. Only these count against MaxInFlightBytes.
func (r *request) carriesData() bool { return r.typ == cmdRead || r.typ == cmdWrite }

// conn is one client connection, from accept (or ServeTransmission) to close.
//
// The goroutine that calls transmit reads requests one after another, checks
// each, reads a WRITE's payload straight into the request's pooled buffer
// and hands the request to a goroutine of its own, which calls the backend
// and writes the reply. Replies therefore go out in completion order, each
// written whole under writeMu. The reader stops taking requests while
// MaxInFlight of them, or MaxInFlightBytes of data buffers, are out: the
// socket then fills up and the client waits, which is the backpressure.
type conn struct {
	s        *Server
	rw       io.ReadWriteCloser
	log      *slog.Logger
	flags    Flags
	stopping atomic.Bool // Shutdown asked the reader to stop
	limit    limiter
	inflight sync.WaitGroup

	writeMu  sync.Mutex
	writeErr error // first failed reply write; later replies are dropped
}

// errStopped ends the read loop when Shutdown interrupted it.
var errStopped = errors.New("nbd: server shutting down")

// transmit runs the transmission phase until NBD_CMD_DISC, Shutdown, a
// broken stream or the client's hang-up; it drains the requests in flight,
// then closes the connection. It returns nil after NBD_CMD_DISC or Shutdown.
func (c *conn) transmit(flags Flags) error {
	c.flags = flags | FlagHasFlags
	c.limit.init(c.s.maxInFlight, c.s.maxInFlightBytes)
	c.s.counters.connections.Add(1)
	c.s.counters.active.Add(1)
	defer c.s.counters.active.Add(^uint64(0))

	err := c.readLoop()
	// On DISC, Shutdown or a bad request the spec wants the requests in
	// flight answered before the connection goes; on a hang-up their
	// replies fail quietly.
	c.inflight.Wait()
	c.rw.Close()
	c.writeMu.Lock()
	writeErr := c.writeErr
	c.writeMu.Unlock()
	switch {
	case errors.Is(err, errStopped):
		return nil
	case writeErr != nil:
		return fmt.Errorf("nbd: write reply: %w", writeErr)
	}
	return err
}

// readLoop reads and dispatches requests; it returns nil on NBD_CMD_DISC.
func (c *conn) readLoop() error {
	var hdr [requestHeaderLength]byte
	for {
		if _, err := io.ReadFull(c.rw, hdr[:]); err != nil {
			return c.readFailed(err, "request header")
		}
		if magic := binary.BigEndian.Uint32(hdr[0:]); magic != magicRequest {
			c.s.counters.malformed.Add(1)
			return fmt.Errorf("nbd: request magic %#08x is not %#08x: stream out of sync, connection closed", magic, magicRequest)
		}
		req := request{
			flags:  binary.BigEndian.Uint16(hdr[4:]),
			typ:    binary.BigEndian.Uint16(hdr[6:]),
			cookie: binary.BigEndian.Uint64(hdr[8:]),
			offset: binary.BigEndian.Uint64(hdr[16:]),
			length: binary.BigEndian.Uint32(hdr[24:]),
		}
		c.s.counters.received(req.typ)
		if req.typ == cmdDisc {
			return nil
		}
		if err := c.dispatch(req); err != nil {
			return err
		}
	}
}

// readFailed explains why a read from the client failed.
func (c *conn) readFailed(err error, what string) error {
	if c.stopping.Load() {
		return errStopped
	}
	c.writeMu.Lock()
	writeErr := c.writeErr
	c.writeMu.Unlock()
	if writeErr != nil {
		return writeErr // we closed the connection ourselves
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("nbd: client closed the connection without NBD_CMD_DISC: %w", io.EOF)
	}
	return fmt.Errorf("nbd: read %s: %w", what, err)
}

// dispatch refuses a bad request at once or starts serving a good one. It
// returns an error only when the stream itself failed.
func (c *conn) dispatch(req request) error {
	if code := c.check(&req); code != 0 {
		c.s.counters.rejected.Add(1)
		c.s.counters.errors.Add(1)
		if req.typ == cmdWrite {
			// The payload follows whatever we think of the request, and
			// reading it into io.Discard allocates nothing however large
			// the length claims to be.
			if _, err := io.CopyN(io.Discard, c.rw, int64(req.length)); err != nil {
				return c.readFailed(err, "refused write payload")
			}
		}
		c.reply(req.cookie, code, nil)
		return nil
	}
	var dataBytes uint64
	if req.carriesData() {
		dataBytes = uint64(req.length)
	}
	c.limit.acquire(dataBytes)
	c.s.counters.inFlight.Add(1)
	if dataBytes > 0 {
		req.buf = getBuffer(req.length)
	}
	if req.typ == cmdWrite && req.length > 0 {
		if _, err := io.ReadFull(c.rw, *req.buf); err != nil {
			c.release(&req, dataBytes)
			return c.readFailed(err, "write payload")
		}
	}
	c.inflight.Add(1)
	go c.serve(req, dataBytes)
	return nil
}

// check validates a request against the negotiated flags, the block size
// and the device size. It returns the NBD error to refuse it with, or 0.
func (c *conn) check(req *request) uint32 {
	allowed := uint16(0)
	if c.flags&FlagSendFUA != 0 {
		allowed |= cmdFlagFUA
	}
	switch req.typ {
	case cmdRead, cmdWrite:
	case cmdFlush:
		if c.flags&FlagSendFlush == 0 {
			return errInval
		}
	case cmdTrim:
		if c.flags&FlagSendTrim == 0 {
			return errInval
		}
	case cmdWriteZeroes:
		if c.flags&FlagSendWriteZeroes == 0 {
			return errInval
		}
		allowed |= cmdFlagNoHole
	default:
		return errInval // CACHE, BLOCK_STATUS, RESIZE and anything newer
	}
	if req.flags&^allowed != 0 {
		return errInval
	}
	if req.typ == cmdFlush {
		return 0 // offset and length are reserved; nothing to check
	}
	if req.writes() && (c.flags&FlagReadOnly != 0 || c.s.Backend.ReadOnly()) {
		return errPerm
	}
	if req.offset%MinBlockSize != 0 || req.length%MinBlockSize != 0 {
		return errInval
	}
	if req.carriesData() && req.length > c.s.maxPayload {
		return errInval
	}
	size := c.s.exportSize()
	if req.offset > size || uint64(req.length) > size-req.offset {
		if req.typ == cmdWrite || req.typ == cmdWriteZeroes {
			return errNoSpc // as the spec asks of writes past the end
		}
		return errInval
	}
	return 0
}

// serve runs one accepted request on its own goroutine and replies.
func (c *conn) serve(req request, dataBytes uint64) {
	defer c.inflight.Done()
	err := c.execute(&req)
	code := errorValue(err)
	var data []byte
	if code == 0 {
		c.s.counters.succeeded(req.typ, req.length)
		if req.typ == cmdRead && req.buf != nil { // nil for an empty read
			data = *req.buf
		}
	} else if n := c.s.counters.errors.Add(1); n&(n-1) == 0 {
		// The first failure and then every power of two: a failed disk
		// fails every request, and the log must not drown in them.
		c.log.Warn("nbd request failed", "command", commandName(req.typ),
			"offset", req.offset, "length", req.length, "err", err, "errors", n)
	}
	c.reply(req.cookie, code, data)
	c.release(&req, dataBytes)
}

func (c *conn) release(req *request, dataBytes uint64) {
	putBuffer(req.buf)
	req.buf = nil
	c.s.counters.inFlight.Add(-1)
	c.limit.release(dataBytes)
}

// execute calls the backend for one checked request.
func (c *conn) execute(req *request) error {
	b := c.s.Backend
	if req.length == 0 && req.typ != cmdFlush {
		return nil // the spec leaves empty requests unspecified; do nothing
	}
	switch req.typ {
	case cmdRead:
		return b.ReadAt(*req.buf, req.offset)
	case cmdWrite:
		return b.WriteAt(*req.buf, req.offset, req.fua())
	case cmdFlush:
		return b.Flush()
	case cmdTrim:
		// Trim has no FUA of its own; a flush after it makes the
		// discard as durable as FUA asks.
		if err := b.Trim(req.offset, uint64(req.length)); err != nil || !req.fua() {
			return err
		}
		return b.Flush()
	case cmdWriteZeroes:
		// NO_HOLE needs nothing: WriteZeroes always allocates.
		return b.WriteZeroes(req.offset, uint64(req.length), req.fua())
	}
	panic(fmt.Sprintf("nbd: unchecked command %d reached execute", req.typ))
}

// reply writes one simple reply, with a READ's data after the header in the
// same write. After a failed write the connection is closed (which stops the
// reader) and later replies are dropped.
func (c *conn) reply(cookie uint64, code uint32, data []byte) {
	var hdr [replyHeaderLength]byte
	binary.BigEndian.PutUint32(hdr[0:], magicSimpleReply)
	binary.BigEndian.PutUint32(hdr[4:], code)
	binary.BigEndian.PutUint64(hdr[8:], cookie)

	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.writeErr != nil {
		return
	}
	var err error
	if len(data) > 0 {
		buffers := net.Buffers{hdr[:], data}
		_, err = buffers.WriteTo(c.rw)
	} else {
		_, err = c.rw.Write(hdr[:])
	}
	if err != nil {
		c.writeErr = err
		c.rw.Close()
	}
}

// stop makes the reader stop taking requests; those in flight still get
// their replies. A read deadline interrupts a blocked read without closing
// the connection; where there is none, closing is the only way.
func (c *conn) stop() {
	c.stopping.Store(true)
	if d, ok := c.rw.(interface{ SetReadDeadline(time.Time) error }); ok {
		if d.SetReadDeadline(time.Now()) == nil {
			return
		}
	}
	c.rw.Close()
}

func commandName(typ uint16) string {
	switch typ {
	case cmdRead:
		return "read"
	case cmdWrite:
		return "write"
	case cmdDisc:
		return "disc"
	case cmdFlush:
		return "flush"
	case cmdTrim:
		return "trim"
	case cmdWriteZeroes:
		return "write-zeroes"
	}
	return fmt.Sprintf("command-%d", typ)
}

// limiter bounds one connection's requests in flight and the bytes of their
// data buffers. Only the reader acquires; request goroutines release.
type limiter struct {
	mu                    sync.Mutex
	freed                 sync.Cond
	requests, maxRequests int
	bytes, maxBytes       uint64
}

func (l *limiter) init(maxRequests int, maxBytes uint64) {
	l.freed.L = &l.mu
	l.maxRequests, l.maxBytes = maxRequests, maxBytes
}

func (l *limiter) acquire(n uint64) {
	l.mu.Lock()
	// A request larger than the byte budget may still run alone.
	for l.requests >= l.maxRequests || (l.bytes > 0 && l.bytes+n > l.maxBytes) {
		l.freed.Wait()
	}
	l.requests++
	l.bytes += n
	l.mu.Unlock()
}

func (l *limiter) release(n uint64) {
	l.mu.Lock()
	l.requests--
	l.bytes -= n
	l.mu.Unlock()
	l.freed.Signal()
}

// Data buffers are pooled by power-of-two capacity, from 4 KiB up: one pool
// per class keeps a 4 KiB write from pinning a 32 MiB buffer.
const minBufferClass = 12

var bufferPools [33]sync.Pool

// getBuffer returns a buffer of length n > 0.
func getBuffer(n uint32) *[]byte {
	class := max(bits.Len32(n-1), minBufferClass)
	if p, ok := bufferPools[class].Get().(*[]byte); ok {
		*p = (*p)[:n]
		return p
	}
	b := make([]byte, n, 1<<class)
	return &b
}

func putBuffer(p *[]byte) {
	if p == nil {
		return
	}
	bufferPools[bits.Len(uint(cap(*p)))-1].Put(p)
}
