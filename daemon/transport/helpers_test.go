package transport

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/internal/proto"
	"tandem/internal/wire"
)

// patience bounds every "it arrives eventually" wait. Nothing is asserted
// about how fast things happen; this only keeps a broken test from hanging.
const patience = 5 * time.Second

var testKey = []byte("tandem transport test key")

// beat is a valid heartbeat from node from.
func beat(from proto.NodeID, incarnation, seq uint64) *proto.Heartbeat {
	return &proto.Heartbeat{
		From: from, Incarnation: incarnation, Seq: seq,
		SentAt: proto.Time(1e9 + seq), State: proto.Secondary,
		HandoverTo: proto.NoNode, GrantTo: proto.NoNode,
	}
}

// packet encodes hb with key.
func packet(hb *proto.Heartbeat, key []byte) []byte { return wire.AppendHeartbeat(nil, hb, key) }

// receive waits for the next delivery on ch.
func receive(t *testing.T, ch <-chan Received) Received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(patience):
		t.Fatalf("no heartbeat delivered within %v", patience)
		return Received{}
	}
}

// nothingMore checks nothing else was delivered. It is only called after a
// later packet on the same reader was delivered, so whatever came before it
// has been processed: no waiting is needed.
func nothingMore(t *testing.T, ch <-chan Received) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("unexpected delivery: %+v", r)
	default:
	}
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, patience)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// freePorts finds n UDP ports free on 127.0.0.1 by binding and releasing
// them. Another process could take one in between; callers retry then.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var conns []*net.UDPConn
	var ports []int
	for range n {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		conns = append(conns, c)
		ports = append(ports, c.LocalAddr().(*net.UDPAddr).Port)
	}
	for _, c := range conns {
		c.Close()
	}
	return ports
}

// injector sends raw datagrams from 127.0.0.1 to a medium under test.
type injector struct {
	t    *testing.T
	conn *net.UDPConn
	to   *net.UDPAddr
}

func newInjector(t *testing.T, to net.Addr) *injector {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &injector{t: t, conn: c, to: to.(*net.UDPAddr)}
}

func (in *injector) send(pkt []byte) {
	in.t.Helper()
	if _, err := in.conn.WriteToUDP(pkt, in.to); err != nil {
		in.t.Fatalf("inject: %v", err)
	}
}

func closeOnCleanup(t *testing.T, m Medium) {
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close %s: %v", m.Name(), err)
		}
	})
}

// counted waits until m's counters are want. Received is counted just
// after the core took the heartbeat and Sent just after the write, so a
// test that has just seen a delivery may be a moment early.
func counted(t *testing.T, m Medium, want Counters) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		got := m.Counters()
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s counters\n got %+v\nwant %+v", m.Name(), got, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// captureLog is a slog.Handler that keeps every record's text.
type captureLog struct {
	mu    sync.Mutex
	lines []string
}

func (c *captureLog) Enabled(context.Context, slog.Level) bool { return true }
func (c *captureLog) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *captureLog) WithGroup(string) slog.Handler            { return c }

func (c *captureLog) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.Key + "=" + a.Value.String()
		return true
	})
	c.mu.Lock()
	c.lines = append(c.lines, line)
	c.mu.Unlock()
	return nil
}

// has reports whether a record with msg whose text contains part was logged.
func (c *captureLog) has(msg, part string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range c.lines {
		if strings.Contains(l, " "+msg) && strings.Contains(l, part) {
			return true
		}
	}
	return false
}

func (c *captureLog) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}
