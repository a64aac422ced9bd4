package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// patience bounds every wait in these tests; nothing is asserted about
// speed, it only keeps a broken test from hanging.
const patience = 10 * time.Second

// call is one backend call, as recorded by memBackend.
type call struct {
	op          string
	off, length uint64
	fua         bool
}

// memBackend is a device in memory that records what it is asked to do.
type memBackend struct {
	mu       sync.Mutex
	data     []byte
	calls    []call
	readOnly atomic.Bool
}

func newMemBackend(size int) *memBackend {
	b := &memBackend{data: make([]byte, size)}
	for i := range b.data {
		b.data[i] = byte(i*7 + i>>9) // not zero, so that zeroing shows
	}
	return b
}

func (b *memBackend) record(c call) {
	b.mu.Lock()
	b.calls = append(b.calls, c)
	b.mu.Unlock()
}

func (b *memBackend) Size() uint64   { return uint64(len(b.data)) }
func (b *memBackend) ReadOnly() bool { return b.readOnly.Load() }

func (b *memBackend) ReadAt(p []byte, off uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	copy(p, b.data[off:])
	return nil
}

func (b *memBackend) WriteAt(p []byte, off uint64, fua bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	copy(b.data[off:], p)
	b.calls = append(b.calls, call{"write", off, uint64(len(p)), fua})
	return nil
}

func (b *memBackend) Flush() error {
	b.record(call{op: "flush"})
	return nil
}

func (b *memBackend) Trim(off, length uint64) error {
	b.record(call{"trim", off, length, false})
	return nil
}

func (b *memBackend) WriteZeroes(off, length uint64, fua bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.data[off : off+length])
	b.calls = append(b.calls, call{"zero", off, length, fua})
	return nil
}

func (b *memBackend) snapshot(off, length int) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.data[off : off+length])
}

func (b *memBackend) recorded() []call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]call(nil), b.calls...)
}

// gate is one backend call held until the test releases it.
type gate struct {
	op      string
	off     uint64
	release chan struct{}
}

// gatedBackend holds every read and write until the test releases it, so
// that a test decides when and in which order requests complete.
type gatedBackend struct {
	*memBackend
	arrived chan *gate
}

func newGatedBackend(size int) *gatedBackend {
	return &gatedBackend{memBackend: newMemBackend(size), arrived: make(chan *gate, 1024)}
}

func (g *gatedBackend) hold(op string, off uint64) {
	gt := &gate{op: op, off: off, release: make(chan struct{})}
	g.arrived <- gt
	<-gt.release
}

func (g *gatedBackend) ReadAt(p []byte, off uint64) error {
	g.hold("read", off)
	return g.memBackend.ReadAt(p, off)
}

func (g *gatedBackend) WriteAt(p []byte, off uint64, fua bool) error {
	g.hold("write", off)
	return g.memBackend.WriteAt(p, off, fua)
}

// next waits for the next held call.
func (g *gatedBackend) next(t *testing.T) *gate {
	t.Helper()
	select {
	case gt := <-g.arrived:
		return gt
	case <-time.After(patience):
		t.Fatalf("no backend call arrived within %v", patience)
		return nil
	}
}

// noMore checks that no further call arrives for a while. The wait is what
// makes it meaningful: an unbounded server would have passed the request
// on long before.
func (g *gatedBackend) noMore(t *testing.T) {
	t.Helper()
	select {
	case gt := <-g.arrived:
		t.Fatalf("unexpected backend call: %s at %d", gt.op, gt.off)
	case <-time.After(200 * time.Millisecond):
	}
}

// startServer serves s on a fresh unix socket and shuts it down at the end
// of the test.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return path
}

// client is a minimal NBD client written from the spec, for tests.
type client struct {
	t    testing.TB
	conn net.Conn
}

// dial connects and checks the server's greeting.
func dial(t testing.TB, path string) *client {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(patience))
	c := &client{t: t, conn: conn}
	var greeting [18]byte
	c.readFull(greeting[:])
	if got := binary.BigEndian.Uint64(greeting[0:]); got != 0x4e42444d41474943 {
		t.Fatalf("greeting magic %#x, want NBDMAGIC", got)
	}
	if got := binary.BigEndian.Uint64(greeting[8:]); got != 0x49484156454F5054 {
		t.Fatalf("greeting second magic %#x, want IHAVEOPT", got)
	}
	if got := binary.BigEndian.Uint16(greeting[16:]); got != 3 {
		t.Fatalf("handshake flags %#x, want FIXED_NEWSTYLE|NO_ZEROES", got)
	}
	return c
}

// wrap makes a client of an established transmission connection.
func wrap(t *testing.T, conn net.Conn) *client {
	conn.SetDeadline(time.Now().Add(patience))
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn}
}

func (c *client) readFull(p []byte) {
	c.t.Helper()
	if _, err := io.ReadFull(c.conn, p); err != nil {
		c.t.Fatalf("read from server: %v", err)
	}
}

func (c *client) write(p []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(p); err != nil {
		c.t.Fatalf("write to server: %v", err)
	}
}

// expectClosed checks the server closed the connection (after sending
// nothing more).
func (c *client) expectClosed() {
	c.t.Helper()
	var b [1]byte
	n, err := c.conn.Read(b[:])
	if n != 0 || !errors.Is(err, io.EOF) {
		c.t.Fatalf("read after expected close: %d bytes, %v; want EOF", n, err)
	}
}

func (c *client) sendFlags(flags uint32) {
	c.t.Helper()
	c.write(binary.BigEndian.AppendUint32(nil, flags))
}

func (c *client) sendOption(opt uint32, data []byte) {
	c.t.Helper()
	msg := binary.BigEndian.AppendUint64(nil, 0x49484156454F5054)
	msg = binary.BigEndian.AppendUint32(msg, opt)
	msg = binary.BigEndian.AppendUint32(msg, uint32(len(data)))
	c.write(append(msg, data...))
}

type optionReply struct {
	opt, typ uint32
	data     []byte
}

func (c *client) readOptionReply(opt uint32) optionReply {
	c.t.Helper()
	var hdr [20]byte
	c.readFull(hdr[:])
	if got := binary.BigEndian.Uint64(hdr[0:]); got != 0x3e889045565a9 {
		c.t.Fatalf("option reply magic %#x", got)
	}
	r := optionReply{opt: binary.BigEndian.Uint32(hdr[8:]), typ: binary.BigEndian.Uint32(hdr[12:])}
	if r.opt != opt {
		c.t.Fatalf("reply for option %d, want %d", r.opt, opt)
	}
	r.data = make([]byte, binary.BigEndian.Uint32(hdr[16:]))
	c.readFull(r.data)
	return r
}

// infoData encodes NBD_OPT_INFO / NBD_OPT_GO data.
func infoData(name string, infos ...uint16) []byte {
	d := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	d = append(d, name...)
	d = binary.BigEndian.AppendUint16(d, uint16(len(infos)))
	for _, i := range infos {
		d = binary.BigEndian.AppendUint16(d, i)
	}
	return d
}

// export is what NBD_OPT_INFO / NBD_OPT_GO told about the export.
type export struct {
	size                     uint64
	flags                    Flags
	minimum, preferred, most uint32
	name                     string
	hasName                  bool
}

// info sends NBD_OPT_INFO or NBD_OPT_GO and collects the replies up to the
// final one, whose type it returns.
func (c *client) info(opt uint32, name string, infos ...uint16) (export, uint32) {
	c.t.Helper()
	c.sendOption(opt, infoData(name, infos...))
	var e export
	for {
		r := c.readOptionReply(opt)
		if r.typ != 3 { // not NBD_REP_INFO: the final reply
			return e, r.typ
		}
		switch binary.BigEndian.Uint16(r.data) {
		case 0:
			if len(r.data) != 12 {
				c.t.Fatalf("NBD_INFO_EXPORT is %d bytes, want 12", len(r.data))
			}
			e.size = binary.BigEndian.Uint64(r.data[2:])
			e.flags = Flags(binary.BigEndian.Uint16(r.data[10:]))
		case 1:
			e.name, e.hasName = string(r.data[2:]), true
		case 3:
			if len(r.data) != 14 {
				c.t.Fatalf("NBD_INFO_BLOCK_SIZE is %d bytes, want 14", len(r.data))
			}
			e.minimum = binary.BigEndian.Uint32(r.data[2:])
			e.preferred = binary.BigEndian.Uint32(r.data[6:])
			e.most = binary.BigEndian.Uint32(r.data[10:])
		}
	}
}

// connect dials and enters transmission with NBD_OPT_GO.
func connect(t testing.TB, path, name string) (*client, export) {
	t.Helper()
	c := dial(t, path)
	c.sendFlags(3)
	e, final := c.info(7, name, 3)
	if final != 1 {
		t.Fatalf("NBD_OPT_GO ended with reply type %#x, want NBD_REP_ACK", final)
	}
	return c, e
}

// Transmission.

func (c *client) send(typ, flags uint16, cookie, off uint64, length uint32, payload []byte) {
	c.t.Helper()
	c.write(requestBytes(typ, flags, cookie, off, length))
	if len(payload) > 0 {
		c.write(payload)
	}
}

// requestBytes encodes a request header.
func requestBytes(typ, flags uint16, cookie, off uint64, length uint32) []byte {
	msg := make([]byte, 28)
	binary.BigEndian.PutUint32(msg[0:], 0x25609513)
	binary.BigEndian.PutUint16(msg[4:], flags)
	binary.BigEndian.PutUint16(msg[6:], typ)
	binary.BigEndian.PutUint64(msg[8:], cookie)
	binary.BigEndian.PutUint64(msg[16:], off)
	binary.BigEndian.PutUint32(msg[24:], length)
	return msg
}

// reply reads one simple reply; readLength gives the data length of each
// READ cookie (a simple reply carries data only for a successful READ).
func (c *client) reply(readLength map[uint64]uint32) (cookie uint64, code uint32, data []byte) {
	c.t.Helper()
	var hdr [16]byte
	c.readFull(hdr[:])
	if got := binary.BigEndian.Uint32(hdr[0:]); got != 0x67446698 {
		c.t.Fatalf("reply magic %#x, want simple reply", got)
	}
	code = binary.BigEndian.Uint32(hdr[4:])
	cookie = binary.BigEndian.Uint64(hdr[8:])
	if n, ok := readLength[cookie]; ok && code == 0 {
		data = make([]byte, n)
		c.readFull(data)
	}
	return cookie, code, data
}

// do sends one request and waits for its reply; it returns the error value
// and a READ's data.
func (c *client) do(typ, flags uint16, off uint64, length uint32, payload []byte) (uint32, []byte) {
	c.t.Helper()
	const cookie = 0xc0ffee
	c.send(typ, flags, cookie, off, length, payload)
	lengths := map[uint64]uint32{}
	if typ == cmdRead {
		lengths[cookie] = length
	}
	got, code, data := c.reply(lengths)
	if got != cookie {
		c.t.Fatalf("reply cookie %#x, want %#x", got, cookie)
	}
	return code, data
}

func (c *client) read(off uint64, length uint32) []byte {
	c.t.Helper()
	code, data := c.do(cmdRead, 0, off, length, nil)
	if code != 0 {
		c.t.Fatalf("read %d@%d: error %d", length, off, code)
	}
	return data
}

func (c *client) disconnect() {
	c.t.Helper()
	c.send(cmdDisc, 0, 0, 0, 0, nil)
}

// pattern is length bytes that differ from memBackend's initial contents.
func pattern(length int, seed byte) []byte {
	p := make([]byte, length)
	for i := range p {
		p[i] = seed ^ byte(i*13)
	}
	return p
}

// socketPairConn is a KernelSocketPair with both ends as net.Conns: the
// first plays the kernel, the second goes to ServeTransmission.
func socketPairConn(t *testing.T) (kernel, server net.Conn) {
	t.Helper()
	kernelEnd, serverEnd, err := KernelSocketPair()
	if err != nil {
		t.Fatal(err)
	}
	kernel, err = net.FileConn(kernelEnd)
	kernelEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serverEnd.Close() })
	return kernel, serverEnd
}
