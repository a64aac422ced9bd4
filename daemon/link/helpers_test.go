package link

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"tandem/internal/repl"
)

var testKey = []byte("tandem test authkey 0123456789")

// testLogger discards the Manager's log unless TANDEM_LINK_LOG is set.
func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("TANDEM_LINK_LOG") == "" {
		return discardLogger()
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// freeAddr returns a loopback address with a port nobody listens on (it was
// free a moment ago; the kernel does not hand it out again at once).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// node is one Manager under test with its event channel.
type node struct {
	t   *testing.T
	cfg Config
	m   *Manager
	ev  chan Event
}

// testConfig is the config of a node named self; alpha sorts first and so
// decides duplicates.
func testConfig(t *testing.T, self, peer, listen, peerAddr string) Config {
	return Config{Self: self, Peer: peer, ListenAddr: listen, PeerAddr: peerAddr, Key: testKey,
		ConnectMin: 20 * time.Millisecond, ConnectInterval: 200 * time.Millisecond,
		HandshakeTimeout: 2 * time.Second, Logger: testLogger(t)}
}

func startNode(t *testing.T, cfg Config) *node {
	t.Helper()
	n := &node{t: t, cfg: cfg, ev: make(chan Event, 1024)}
	m, err := New(cfg, n.ev)
	if err != nil {
		t.Fatal(err)
	}
	n.m = m
	t.Cleanup(m.Shutdown)
	return n
}

// pair starts alpha and bravo pointed at each other; mod may change either
// config first.
func pair(t *testing.T, mod func(a, b *Config)) (*node, *node) {
	aAddr, bAddr := freeAddr(t), freeAddr(t)
	ca := testConfig(t, "alpha", "bravo", aAddr, bAddr)
	cb := testConfig(t, "bravo", "alpha", bAddr, aAddr)
	if mod != nil {
		mod(&ca, &cb)
	}
	return startNode(t, ca), startNode(t, cb)
}

// next waits for the node's next event.
func (n *node) next(d time.Duration) (Event, bool) {
	select {
	case e := <-n.ev:
		return e, true
	case <-time.After(d):
		return Event{}, false
	}
}

// expect waits for the next event and fails unless it is of kind k.
func (n *node) expect(k EventKind) Event {
	n.t.Helper()
	e, ok := n.next(5 * time.Second)
	if !ok {
		n.t.Fatalf("%s: no event, want %s (counters %+v)", n.cfg.Self, k, n.m.Counters())
	}
	if e.Kind != k {
		n.t.Fatalf("%s: event %s (conn %d, err %v), want %s", n.cfg.Self, e.Kind, e.Conn, e.Err, k)
	}
	return e
}

// quiet fails if an event arrives within d.
func (n *node) quiet(d time.Duration) {
	n.t.Helper()
	if e, ok := n.next(d); ok {
		n.t.Fatalf("%s: unexpected event %s (conn %d, err %v)", n.cfg.Self, e.Kind, e.Conn, e.Err)
	}
}

// connect sets both wanted and returns their connection ids.
func connect(t *testing.T, a, b *node) (uint64, uint64) {
	t.Helper()
	a.m.SetWanted(true)
	b.m.SetWanted(true)
	return a.expect(Up).Conn, b.expect(Up).Conn
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawPeer is a hand-driven peer built from the package's own handshake and
// frame code, for what a real Manager never does: replay, duplicate, lie
// about lengths. It records every byte it writes.
type rawPeer struct {
	t    *testing.T
	nc   net.Conn
	br   *bufio.Reader
	sent bytes.Buffer
	s    session
	mac  hash.Hash
	seq  uint64
	rd   *frameReader
}

// dialRaw connects to addr as self (expecting peer), runs the handshake and,
// if self does not decide, waits for the accept frame. A refusal returns
// io.EOF.
func dialRaw(t *testing.T, addr, self, peer string, key []byte) (*rawPeer, error) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	r := &rawPeer{t: t, nc: nc, br: bufio.NewReader(nc), seq: 1}
	mine := hello{from: self, to: peer, nonce: newNonce()}
	s, err := handshake(io.MultiWriter(nc, &r.sent), r.br, key, mine, peer, true)
	if err != nil {
		return r, err
	}
	r.s = s
	r.mac = hmac.New(sha256.New, s.sendKey)
	r.rd = newFrameReader(r.br, s.recvKey, DefaultMaxPayload)
	if self > peer {
		in, err := r.rd.read()
		if err != nil {
			return r, err
		}
		if in.typ != typeAccept {
			t.Fatalf("first frame of type %d, want accept", in.typ)
		}
	} else {
		f := newFrame(typeAccept, nil, nil)
		r.write(r.seal(f))
	}
	return r, nil
}

// seal gives f the next sequence number and MAC and returns its bytes.
func (r *rawPeer) seal(f *frame) []byte {
	f.seal(r.seq, r.mac)
	r.seq++
	out := append(append(append([]byte(nil), f.buf[:f.n]...), f.payload...), f.buf[f.n:]...)
	return out
}

func (r *rawPeer) msgFrame(m *repl.Msg, payload []byte) []byte {
	return r.seal(newFrame(typeMsg, m, payload))
}

func (r *rawPeer) write(b []byte) {
	r.t.Helper()
	if _, err := io.MultiWriter(r.nc, &r.sent).Write(b); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

// closed waits until the other end closes the connection.
func (r *rawPeer) closed() bool {
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, r.br)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// proxy forwards TCP connections from its own address to target; tamper,
// if not nil, rewrites the stream from client to target.
type proxy struct {
	ln     net.Listener
	target string
	tamper func(pending []byte) (out []byte, keep []byte)
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startProxy(t *testing.T, target string, tamper func([]byte) ([]byte, []byte)) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, tamper: tamper}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(c, s)
			c.Close()
			s.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.forward(s, c)
			c.Close()
			s.Close()
		}()
	}
}

// forward copies client to server through tamper, which gets everything not
// yet forwarded and returns what to send now and what to hold back.
func (p *proxy) forward(dst, src net.Conn) {
	var pending []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			out := pending
			if p.tamper != nil {
				out, pending = p.tamper(pending)
			} else {
				pending = nil
			}
			if _, werr := dst.Write(out); werr != nil {
				return
			}
			pending = append([]byte(nil), pending...)
		}
		if err != nil {
			return
		}
	}
}

func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

func bufioReader(nc net.Conn) *bufio.Reader { return bufio.NewReader(nc) }
