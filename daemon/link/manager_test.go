package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"maps"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/internal/repl"
)

// TestExchangeEveryKind: every message kind, with payloads where the kind
// carries one, crosses the link both ways intact and in order.
func TestExchangeEveryKind(t *testing.T) {
	a, b := pair(t, nil)
	ca, cb := connect(t, a, b)
	msgs := realMsgs()
	names := slices.Sorted(maps.Keys(msgs))
	rng := rand.New(rand.NewPCG(1, 2))
	for _, dir := range []struct {
		from, to *node
		conn     uint64
	}{{a, b, ca}, {b, a, cb}} {
		var payloads [][]byte
		for _, name := range names {
			c := msgs[name]
			var p []byte
			if c.n > 0 {
				p = make([]byte, c.n)
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
			}
			payloads = append(payloads, p)
			if err := dir.from.m.Send(dir.conn, &c.m, p); err != nil {
				t.Fatalf("%s: send %s: %v", dir.from.cfg.Self, name, err)
			}
		}
		for i, name := range names {
			e := dir.to.expect(Msg)
			if !reflect.DeepEqual(e.Msg, msgs[name].m) || !bytes.Equal(e.Payload, payloads[i]) {
				t.Fatalf("%s received %s as %+v (%d payload bytes), sent %+v (%d)", dir.to.cfg.Self, name,
					e.Msg, len(e.Payload), msgs[name].m, len(payloads[i]))
			}
		}
	}
	// A writer counts a frame after its write returns, which may be after
	// the peer has it.
	n := uint64(len(names))
	waitFor(t, "the counters", func() bool {
		ac, bc := a.m.Counters(), b.m.Counters()
		return ac.FramesOut == n && bc.FramesOut == n
	})
	ac, bc := a.m.Counters(), b.m.Counters()
	if bc.FramesIn != n || ac.FramesIn != n || ac.BytesOut != bc.BytesIn || bc.BytesOut != ac.BytesIn ||
		ac.Established != 1 || ac.Reconnects != 0 {
		t.Fatalf("counters: alpha %+v, bravo %+v", ac, bc)
	}
	if err := a.m.Send(ca, &repl.Msg{Kind: repl.MsgData, Node: 1}, nil); err == nil || !strings.Contains(err.Error(), "Node") {
		t.Fatalf("a data message with a Node field was sent: %v", err)
	}
	if err := a.m.Send(ca+1, &repl.Msg{Kind: repl.MsgPing}, nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("send on an unknown connection: %v", err)
	}
	if err := a.m.Send(ca, &repl.Msg{Kind: repl.MsgData}, make([]byte, DefaultMaxPayload+1)); !errors.Is(err, ErrOversized) {
		t.Fatalf("oversized send: %v", err)
	}
}

// TestSimultaneousConnect: both nodes dial and accept at once, round after
// round; each time exactly one connection survives, the same on both
// sides, and neither side ever reports one that the other refused.
func TestSimultaneousConnect(t *testing.T) {
	var refused uint64
	for round := range 8 {
		a, b := pair(t, func(a, b *Config) { a.ConnectMin, b.ConnectMin = time.Millisecond, time.Millisecond })
		go a.m.SetWanted(true)
		b.m.SetWanted(true)
		ea, eb := a.expect(Up), b.expect(Up)
		a.quiet(300 * time.Millisecond)
		b.quiet(10 * time.Millisecond)
		a.m.mu.Lock()
		b.m.mu.Lock()
		ok := a.m.cur != nil && b.m.cur != nil && a.m.cur.id == ea.Conn && b.m.cur.id == eb.Conn &&
			a.m.cur.nc.LocalAddr().String() == b.m.cur.nc.RemoteAddr().String() && len(a.m.pending) == 0 && len(b.m.pending) == 0
		b.m.mu.Unlock()
		a.m.mu.Unlock()
		if !ok {
			t.Fatalf("round %d: not one shared connection", round)
		}
		refused += a.m.Counters().Refused + b.m.Counters().Refused
		a.m.Shutdown()
		b.m.Shutdown()
	}
	t.Logf("concurrent connections refused over 8 rounds: %d", refused)
}

// TestLeaderTakesNewest drives the deciding node with a raw peer: a new
// authenticated connection from the follower replaces the one in use (the
// follower dials only when it has lost it), Down before Up.
func TestLeaderTakesNewest(t *testing.T) {
	a := startNode(t, testConfig(t, "alpha", "bravo", freeAddr(t), freeAddr(t)))
	a.m.SetWanted(true)
	addr := a.m.Addr().String()
	r1, err := dialRaw(t, addr, "bravo", "alpha", testKey)
	if err != nil {
		t.Fatal(err)
	}
	c1 := a.expect(Up).Conn
	if _, err := dialRaw(t, addr, "bravo", "alpha", testKey); err != nil {
		t.Fatalf("replacement refused: %v", err)
	}
	if d := a.expect(Down); d.Conn != c1 || !errors.Is(d.Err, errReplaced) {
		t.Fatalf("Down %d (%v), want %d replaced", d.Conn, d.Err, c1)
	}
	if c2 := a.expect(Up).Conn; c2 != c1+1 || !r1.closed() {
		t.Fatalf("new conn %d after %d, or the old one still open", c2, c1)
	}
}

// TestFollowerOneHandshake: the follower has one connection in its
// handshake at a time and closes a second at once; that is what lets the
// leader take the newest connection without a tie-break of its own.
func TestFollowerOneHandshake(t *testing.T) {
	b := startNode(t, testConfig(t, "bravo", "alpha", freeAddr(t), freeAddr(t)))
	b.m.SetWanted(true)
	addr := b.m.Addr().String()
	silent := rawConn(t, addr) // holds the slot, says nothing
	waitFor(t, "the silent connection to be admitted", func() bool {
		b.m.mu.Lock()
		defer b.m.mu.Unlock()
		return len(b.m.pending) == 1
	})
	if _, err := dialRaw(t, addr, "alpha", "bravo", testKey); err == nil {
		t.Fatal("a second concurrent handshake was admitted")
	}
	if n := b.m.Counters().Refused; n != 1 {
		t.Fatalf("Refused %d, want 1", n)
	}
	silent.Close()
	waitFor(t, "the slot to free", func() bool {
		b.m.mu.Lock()
		defer b.m.mu.Unlock()
		return len(b.m.pending) == 0
	})
	if _, err := dialRaw(t, addr, "alpha", "bravo", testKey); err != nil {
		t.Fatal(err)
	}
	b.expect(Up)
}

// TestFollowerTakesAccepted: the node that does not decide takes whatever
// connection the decider accepts, replacing its own (the decider saw the
// old one break first).
func TestFollowerTakesAccepted(t *testing.T) {
	b := startNode(t, testConfig(t, "bravo", "alpha", freeAddr(t), freeAddr(t)))
	b.m.SetWanted(true)
	addr := b.m.Addr().String()
	if _, err := dialRaw(t, addr, "alpha", "bravo", testKey); err != nil {
		t.Fatal(err)
	}
	c1 := b.expect(Up).Conn
	if _, err := dialRaw(t, addr, "alpha", "bravo", testKey); err != nil {
		t.Fatal(err)
	}
	if d := b.expect(Down); d.Conn != c1 {
		t.Fatalf("Down %d, want %d", d.Conn, c1)
	}
	if c2 := b.expect(Up).Conn; c2 != c1+1 {
		t.Fatalf("Up %d, want %d", c2, c1+1)
	}
}

// TestPeerRestart: the peer's process goes away and comes back on the same
// address: Down for the old connection, then Up with a new id, and
// messages flow on the new one only.
func TestPeerRestart(t *testing.T) {
	a, b := pair(t, nil)
	ca, _ := connect(t, a, b)
	b.m.Shutdown()
	d := a.expect(Down)
	if d.Conn != ca || d.Err == nil {
		t.Fatalf("Down %d (%v), want %d with a reason", d.Conn, d.Err, ca)
	}
	if err := a.m.Send(ca, &repl.Msg{Kind: repl.MsgPing}, nil); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("send on the dead connection: %v", err)
	}
	b2 := startNode(t, b.cfg)
	b2.m.SetWanted(true)
	ca2, cb2 := a.expect(Up).Conn, b2.expect(Up).Conn
	if ca2 <= ca {
		t.Fatalf("new connection id %d, old %d", ca2, ca)
	}
	if err := b2.m.Send(cb2, &repl.Msg{Kind: repl.MsgPing}, nil); err != nil {
		t.Fatal(err)
	}
	if e := a.expect(Msg); e.Conn != ca2 || e.Msg.Kind != repl.MsgPing {
		t.Fatalf("got %+v", e)
	}
	if c := a.m.Counters(); c.Established != 2 || c.Reconnects != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// TestWrongKey: a peer with another key never gets a connection; both
// sides count the failed proofs.
func TestWrongKey(t *testing.T) {
	a, b := pair(t, func(_, b *Config) { b.Key = []byte("not the same key") })
	a.m.SetWanted(true)
	b.m.SetWanted(true)
	a.quiet(500 * time.Millisecond)
	b.quiet(10 * time.Millisecond)
	ac, bc := a.m.Counters(), b.m.Counters()
	if ac.BadMAC == 0 || bc.BadMAC == 0 || ac.Established+bc.Established != 0 {
		t.Fatalf("alpha %+v, bravo %+v", ac, bc)
	}
}

// TestReplayedHandshake: a recording of an earlier, successful handshake
// replayed byte for byte does not authenticate (the proof does not cover
// the new nonce).
func TestReplayedHandshake(t *testing.T) {
	a := startNode(t, testConfig(t, "alpha", "bravo", freeAddr(t), freeAddr(t)))
	a.m.SetWanted(true)
	addr := a.m.Addr().String()
	r, err := dialRaw(t, addr, "bravo", "alpha", testKey)
	if err != nil {
		t.Fatal(err)
	}
	a.expect(Up)
	recorded := r.sent.Bytes()
	r.nc.Close()
	a.expect(Down)
	before := a.m.Counters().BadMAC
	nc := rawConn(t, addr)
	nc.Write(recorded)
	if !(&rawPeer{nc: nc, br: bufioReader(nc)}).closed() {
		t.Fatal("replayed handshake not closed")
	}
	a.quiet(100 * time.Millisecond)
	if n := a.m.Counters().BadMAC; n != before+1 {
		t.Fatalf("BadMAC %d, want %d", n, before+1)
	}
}

// TestReplayedFrame: an authentic frame sent twice on its connection, or
// replayed into a later connection, is refused: the connection closes and
// the counters say why.
func TestReplayedFrame(t *testing.T) {
	a := startNode(t, testConfig(t, "alpha", "bravo", freeAddr(t), freeAddr(t)))
	a.m.SetWanted(true)
	addr := a.m.Addr().String()
	r, err := dialRaw(t, addr, "bravo", "alpha", testKey)
	if err != nil {
		t.Fatal(err)
	}
	c := a.expect(Up).Conn
	f := r.msgFrame(&repl.Msg{Kind: repl.MsgWriteAck, Seq: 5}, nil)
	r.write(f)
	if e := a.expect(Msg); e.Msg.Seq != 5 {
		t.Fatalf("got %+v", e.Msg)
	}
	r.write(f)
	if d := a.expect(Down); d.Conn != c || !errors.Is(d.Err, ErrReplayed) {
		t.Fatalf("Down %d: %v, want replayed", d.Conn, d.Err)
	}
	if n := a.m.Counters().Replayed; n != 1 {
		t.Fatalf("Replayed = %d", n)
	}
	// Into a new connection: same sequence number 1, but the old key.
	r2, err := dialRaw(t, addr, "bravo", "alpha", testKey)
	if err != nil {
		t.Fatal(err)
	}
	a.expect(Up)
	r2.write(f)
	if d := a.expect(Down); !errors.Is(d.Err, ErrBadMAC) {
		t.Fatalf("old connection's frame: %v, want bad MAC", d.Err)
	}
}

// TestOversizedLength: a frame header announcing 4 GiB is refused before
// anything is read or allocated for it.
func TestOversizedLength(t *testing.T) {
	a := startNode(t, testConfig(t, "alpha", "bravo", freeAddr(t), freeAddr(t)))
	a.m.SetWanted(true)
	for _, c := range []struct {
		name string
		at   int
	}{{"message", 8}, {"payload", 12}} {
		r, err := dialRaw(t, a.m.Addr().String(), "bravo", "alpha", testKey)
		if err != nil {
			t.Fatal(err)
		}
		a.expect(Up)
		f := r.msgFrame(&repl.Msg{Kind: repl.MsgPing}, nil)
		copy(f[c.at:], []byte{0xff, 0xff, 0xff, 0xff})
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		r.write(f[:headerLen])
		d := a.expect(Down)
		runtime.ReadMemStats(&after)
		if !errors.Is(d.Err, ErrOversized) || !r.closed() {
			t.Fatalf("%s: Down %v, want oversized", c.name, d.Err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
			t.Fatalf("%s: %d bytes allocated while refusing", c.name, grew)
		}
	}
	if n := a.m.Counters().Oversized; n != 2 {
		t.Fatalf("Oversized = %d", n)
	}
}

// tamperPayload returns a proxy tamper for the dialer-to-acceptor stream
// that flips one byte of the first payload of size bytes and, with fixCRC,
// recomputes the CRC in front of it as a forger would. It follows the
// stream's structure (hello, proof, frames) to find the payload, holding
// back only the frame it will change until that frame is complete.
func tamperPayload(size int, fixCRC bool) func([]byte) ([]byte, []byte) {
	var all []byte
	sent, done := 0, false
	return func(p []byte) ([]byte, []byte) {
		if done {
			return p, nil
		}
		all = append(all[:sent], p...)
		forward := func(upto int) ([]byte, []byte) {
			upto = max(sent, min(upto, len(all)))
			out, keep := all[sent:upto], all[upto:]
			sent = upto
			return out, keep
		}
		if len(all) < 7 {
			return forward(0)
		}
		off := 7 + int(all[5]) + int(all[6]) + nonceLen + macLen
		for len(all) >= off+headerLen {
			h := all[off:]
			msgLen, payloadLen := int(binary.BigEndian.Uint32(h[8:])), int(binary.BigEndian.Uint32(h[12:]))
			start := off + headerLen + msgLen + crcLen
			end := start + payloadLen + macLen
			if payloadLen != size {
				off = end
				continue
			}
			if len(all) < end {
				return forward(off)
			}
			all[start+size/2] ^= 0x20
			if fixCRC {
				binary.BigEndian.PutUint32(all[start-crcLen:], crc32.Checksum(all[start:start+size], castagnoli))
			}
			done = true
			return forward(len(all))
		}
		return forward(off)
	}
}

// TestCorruptionInFlight: a man in the middle flips a payload byte. Left
// as is, the CRC catches it (corruption); with the CRC fixed up (forgery),
// the MAC does. Either way the connection closes and the link comes back.
func TestCorruptionInFlight(t *testing.T) {
	for _, fix := range []bool{false, true} {
		aAddr, bAddr := freeAddr(t), freeAddr(t)
		// alpha's own dials go nowhere; bravo reaches alpha through the proxy.
		a := startNode(t, testConfig(t, "alpha", "bravo", aAddr, freeAddr(t)))
		p := startProxy(t, aAddr, tamperPayload(4096, fix))
		b := startNode(t, testConfig(t, "bravo", "alpha", bAddr, p.addr()))
		ca, cb := connect(t, a, b)
		payload := bytes.Repeat([]byte{0x5a}, 4096)
		if err := b.m.Send(cb, &repl.Msg{Kind: repl.MsgData, Seq: 1, Count: 1}, payload); err != nil {
			t.Fatal(err)
		}
		d := a.expect(Down)
		want, counter := ErrBadCRC, a.m.Counters().BadCRC
		if fix {
			want, counter = ErrBadMAC, a.m.Counters().BadMAC
		}
		if d.Conn != ca || !errors.Is(d.Err, want) || counter != 1 {
			t.Fatalf("fixCRC %v: Down %d %v, counters %+v", fix, d.Conn, d.Err, a.m.Counters())
		}
		if d := b.expect(Down); d.Conn != cb {
			t.Fatalf("bravo Down %d", d.Conn)
		}
		// The link comes back (the proxy tampers once).
		a.expect(Up)
		b.expect(Up)
		a.m.Shutdown()
		b.m.Shutdown()
	}
}

// TestSetWantedFalse closes the connection, stops dialing and turns the
// peer away until wanted again.
func TestSetWantedFalse(t *testing.T) {
	a, b := pair(t, nil)
	ca, cb := connect(t, a, b)
	a.m.SetWanted(false)
	if d := a.expect(Down); d.Conn != ca || !errors.Is(d.Err, ErrClosed) {
		t.Fatalf("Down %d %v", d.Conn, d.Err)
	}
	if d := b.expect(Down); d.Conn != cb {
		t.Fatalf("bravo Down %d", d.Conn)
	}
	dials := a.m.Counters().Dials
	a.quiet(600 * time.Millisecond)
	b.quiet(10 * time.Millisecond)
	if c := a.m.Counters(); c.Dials != dials || c.Refused == 0 {
		t.Fatalf("alpha dialed %d times while not wanted; refused %d", c.Dials-dials, c.Refused)
	}
	a.m.SetWanted(true)
	if c := a.expect(Up).Conn; c != ca+1 {
		t.Fatalf("Up %d", c)
	}
	b.expect(Up)
}

// TestClose: the core closing a connection gives Down on both sides and,
// since the link is still wanted, a new connection.
func TestClose(t *testing.T) {
	a, b := pair(t, nil)
	ca, _ := connect(t, a, b)
	a.m.Close(ca + 7) // not ours: ignored
	a.m.Close(ca)
	if d := a.expect(Down); d.Conn != ca || !errors.Is(d.Err, ErrClosed) {
		t.Fatalf("Down %d %v", d.Conn, d.Err)
	}
	b.expect(Down)
	if c := a.expect(Up).Conn; c != ca+1 {
		t.Fatalf("Up %d", c)
	}
	b.expect(Up)
}

// TestQueueFull: when the peer stops reading, the sender's queue fills and
// Send says so instead of dropping; Close still works.
func TestQueueFull(t *testing.T) {
	aAddr, bAddr := freeAddr(t), freeAddr(t)
	ca := testConfig(t, "alpha", "bravo", aAddr, bAddr)
	ca.QueueFrames = 8
	a := startNode(t, ca)
	// bravo's main loop reads nothing after Up: its reader blocks and TCP
	// pushes back.
	b := &node{t: t, cfg: testConfig(t, "bravo", "alpha", bAddr, aAddr), ev: make(chan Event, 1)}
	m, err := New(b.cfg, b.ev)
	if err != nil {
		t.Fatal(err)
	}
	b.m = m
	t.Cleanup(m.Shutdown)
	conn, _ := connect(t, a, b)
	payload := make([]byte, DefaultMaxPayload)
	var sent int
	for {
		err := a.m.Send(conn, &repl.Msg{Kind: repl.MsgData, Count: 256}, payload)
		if errors.Is(err, ErrQueueFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if sent++; sent > 1000 {
			t.Fatal("1000 MiB queued to a peer that reads nothing")
		}
	}
	if c := a.m.Counters(); c.QueueFull != 1 {
		t.Fatalf("QueueFull %d", c.QueueFull)
	}
	t.Logf("queue full after %d MiB", sent)
	a.m.Close(conn)
	if d := a.expect(Down); d.Conn != conn {
		t.Fatalf("Down %d", d.Conn)
	}
}

// TestConfigErrors: bad configurations are refused with a message naming
// what is wrong.
func TestConfigErrors(t *testing.T) {
	ok := testConfig(t, "alpha", "bravo", "127.0.0.1:0", "127.0.0.1:1")
	for _, c := range []struct {
		mod  func(*Config)
		says string
	}{
		{func(c *Config) { c.Self = "" }, "names are required"},
		{func(c *Config) { c.Peer = "alpha" }, "both"},
		{func(c *Config) { c.Key = nil }, "Key"},
		{func(c *Config) { c.PeerAddr = "" }, "PeerAddr"},
		{func(c *Config) { c.Self = strings.Repeat("x", MaxNameLen+1) }, "at most"},
		{func(c *Config) { c.ListenAddr = "127.0.0.1:99999" }, "listen on 127.0.0.1:99999"},
	} {
		cfg := ok
		c.mod(&cfg)
		m, err := New(cfg, make(chan Event))
		if err == nil {
			m.Shutdown()
		}
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%v, want an error saying %q", err, c.says)
		}
	}
}
