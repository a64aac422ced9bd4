package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/internal/proto"
)

// unicastPair opens node 0 and node 1 talking unicast over 127.0.0.1 on two
// free ports, retrying if another process grabbed a port in between.
func unicastPair(t *testing.T, tweak func(a, b *UDPConfig)) (a, b *UDP, toA, toB chan Received) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		p := freePorts(t, 2)
		ca := UDPConfig{Common: Common{ID: 0, Self: 0, Key: testKey,
			Peers: []Peer{{Node: 1, Addr: "127.0.0.1:" + strconv.Itoa(p[1])}}},
			Mode: Unicast, Bind: "127.0.0.1", Port: p[0]}
		cb := UDPConfig{Common: Common{ID: 0, Self: 1, Key: testKey,
			Peers: []Peer{{Node: 0, Addr: "127.0.0.1:" + strconv.Itoa(p[0])}}},
			Mode: Unicast, Bind: "127.0.0.1", Port: p[1]}
		if tweak != nil {
			tweak(&ca, &cb)
		}
		toA, toB = make(chan Received, 16), make(chan Received, 16)
		var err error
		if a, err = ListenUDP(ca, toA); err == nil {
			if b, err = ListenUDP(cb, toB); err != nil {
				a.Close()
			}
		}
		if errors.Is(err, syscall.EADDRINUSE) && attempt < 5 {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		closeOnCleanup(t, a)
		closeOnCleanup(t, b)
		return a, b, toA, toB
	}
}

func TestUnicastExchange(t *testing.T) {
	a, b, toA, toB := unicastPair(t, nil)
	if a.Kind() != proto.Network || a.ID() != 0 || !strings.HasPrefix(a.Name(), "ucast 127.0.0.1:") {
		t.Errorf("medium a: kind %v id %d name %q", a.Kind(), a.ID(), a.Name())
	}

	sent := beat(0, 42, 1)
	sent.SentAt = 0x7fC0DB00C0DB // bytes that SLIP would have to escape: irrelevant on UDP, kept honest
	if err := a.Send(1, sent); err != nil {
		t.Fatal(err)
	}
	r := receive(t, toB)
	if r.Msg != *sent || r.Medium != 0 || r.At.IsZero() {
		t.Errorf("b received %+v, want %+v on medium 0 with a time", r, *sent)
	}
	if from, ok := r.From.(*net.UDPAddr); !ok || from.Port != a.LocalAddr().(*net.UDPAddr).Port {
		t.Errorf("b received from %v, want a's address %v", r.From, a.LocalAddr())
	}

	if err := b.Send(0, beat(1, 9, 1)); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, toA); r.Msg.From != 1 || r.Msg.Incarnation != 9 {
		t.Errorf("a received %+v", r.Msg)
	}
	counted(t, a, Counters{Sent: 1, Received: 1})
	counted(t, b, Counters{Sent: 1, Received: 1})
	for _, m := range []*UDP{a, b} {
		if err, _ := m.LastError(); err != nil {
			t.Errorf("%s: write error %v", m.Name(), err)
		}
	}
}

// TestUnicastDrops feeds a medium every kind of bad packet and checks each
// is dropped and counted under its reason. A good packet sent last proves
// the reader got through all of them (one reader, in order, over loopback).
func TestUnicastDrops(t *testing.T) {
	_, b, _, toB := unicastPair(t, nil)
	in := newInjector(t, b.LocalAddr())

	in.send([]byte("hello, is this the heartbeat port?"))   // Malformed
	in.send(bytes.Repeat([]byte("TD"), 400))                // Oversized
	in.send(packet(beat(0, 1, 1), []byte("the wrong key"))) // BadAuth
	in.send(packet(beat(0, 1, 1), nil))                     // BadAuth: CRC where a MAC is due
	in.send(packet(beat(1, 1, 1), testKey))                 // Self: node 1 is b itself
	in.send(packet(beat(2, 1, 1), testKey))                 // WrongSender: node 2 is no peer of b
	corrupt := packet(beat(0, 1, 1), testKey)
	corrupt[20] ^= 1 // flip a bit of Seq: the MAC no longer matches
	in.send(corrupt) // BadAuth

	good := packet(beat(0, 5, 10), testKey)
	in.send(good)
	if r := receive(t, toB); r.Msg.Seq != 10 {
		t.Fatalf("delivered %+v, want seq 10", r.Msg)
	}
	in.send(good)                            // Replayed: the same packet again
	in.send(packet(beat(0, 4, 99), testKey)) // Replayed: an earlier incarnation
	in.send(packet(beat(0, 5, 11), testKey))
	if r := receive(t, toB); r.Msg.Seq != 11 {
		t.Fatalf("delivered %+v, want seq 11", r.Msg)
	}
	nothingMore(t, toB)

	want := Counters{Received: 2, Malformed: 1, Oversized: 1, BadAuth: 3, Self: 1, WrongSender: 1, Replayed: 2}
	counted(t, b, want)
}

// TestSharedReplayFilter: node 1 hears node 0 on two media sharing one
// filter. The same heartbeat is delivered once on each (membership needs
// both), and a replay on either is refused.
func TestSharedReplayFilter(t *testing.T) {
	filter := NewReplayFilter(0)
	ch := make(chan Received, 16)
	var media [2]*UDP
	for i := range media {
		m, err := ListenUDP(UDPConfig{Common: Common{ID: proto.MediumID(i), Self: 1, Key: testKey, Replay: filter,
			Peers: []Peer{{Node: 0, Addr: "127.0.0.1:9"}}}, Mode: Unicast, Bind: "127.0.0.1", Port: freePorts(t, 1)[0]}, ch)
		if err != nil {
			t.Fatal(err)
		}
		closeOnCleanup(t, m)
		media[i] = m
	}
	pkt := packet(beat(0, 3, 50), testKey)
	for i, m := range media {
		newInjector(t, m.LocalAddr()).send(pkt)
		if r := receive(t, ch); r.Medium != proto.MediumID(i) || r.Msg.Seq != 50 {
			t.Fatalf("got %+v on medium %d, want seq 50 on medium %d", r.Msg, r.Medium, i)
		}
	}
	in := newInjector(t, media[1].LocalAddr())
	in.send(pkt)
	in.send(packet(beat(0, 3, 51), testKey))
	if r := receive(t, ch); r.Msg.Seq != 51 {
		t.Fatalf("got %+v, want seq 51", r.Msg)
	}
	counted(t, media[1], Counters{Received: 2, Replayed: 1})
}

// TestOverrun: a core that does not take heartbeats makes the reader drop
// them after DeliverWait instead of blocking.
func TestOverrun(t *testing.T) {
	stuck := make(chan Received) // nobody reads it
	m, err := ListenUDP(UDPConfig{Common: Common{Self: 1, Key: testKey, DeliverWait: time.Millisecond,
		Peers: []Peer{{Node: 0, Addr: "127.0.0.1:9"}}}, Mode: Unicast, Bind: "127.0.0.1", Port: freePorts(t, 1)[0]}, stuck)
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, m)
	in := newInjector(t, m.LocalAddr())
	for seq := uint64(1); seq <= 3; seq++ {
		in.send(packet(beat(0, 1, seq), testKey))
	}
	counted(t, m, Counters{Overrun: 3})
}

func TestCRCOnly(t *testing.T) {
	_, b, _, toB := unicastPair(t, func(a, b *UDPConfig) {
		a.Key, a.CRCOnly = nil, true
		b.Key, b.CRCOnly = nil, true
	})
	in := newInjector(t, b.LocalAddr())
	in.send(packet(beat(0, 1, 1), testKey)) // a MAC where a CRC is due
	in.send(packet(beat(0, 1, 2), nil))
	if r := receive(t, toB); r.Msg.Seq != 2 {
		t.Fatalf("got %+v, want seq 2", r.Msg)
	}
	counted(t, b, Counters{Received: 1, BadAuth: 1})
}

func TestSendErrors(t *testing.T) {
	a, _, _, _ := unicastPair(t, nil)
	bad := beat(0, 1, 1)
	bad.State = 0
	for _, c := range []struct {
		what string
		to   proto.NodeID
		hb   *proto.Heartbeat
		want string
	}{
		{"to a node the medium does not reach", 2, beat(0, 1, 1), "not a peer"},
		{"to no node", proto.NoNode, beat(0, 1, 1), "not a peer"},
		{"as another node", 1, beat(1, 1, 1), "refusing to send a heartbeat from node 1"},
		{"an invalid heartbeat", 1, bad, "invalid heartbeat"},
	} {
		if err := a.Send(c.to, c.hb); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("send %s: error %v, want one containing %q", c.what, err, c.want)
		}
	}
	a.Close()
	if err := a.Send(1, beat(0, 1, 1)); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("send after close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestUDPConfigErrors(t *testing.T) {
	ok := func() UDPConfig {
		return UDPConfig{Common: Common{Self: 0, Key: testKey, Peers: []Peer{{Node: 1, Addr: "127.0.0.1"}}},
			Mode: Unicast, Bind: "127.0.0.1", Port: 9}
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		what   string
		change func(*UDPConfig)
		want   string
	}{
		{"no key", func(c *UDPConfig) { c.Key = nil }, "refusing to start without an authentication key"},
		{"an empty key", func(c *UDPConfig) { c.Key = []byte{} }, "refusing to start without an authentication key"},
		{"key and crc-only", func(c *UDPConfig) { c.CRCOnly = true }, "both a key and CRC-only"},
		{"no peers", func(c *UDPConfig) { c.Peers = nil }, "no peers"},
		{"self as peer", func(c *UDPConfig) { c.Peers[0].Node = 0 }, "this node itself"},
		{"a peer twice", func(c *UDPConfig) { c.Peers = append(c.Peers, c.Peers[0]) }, "listed twice"},
		{"unicast peer without address", func(c *UDPConfig) { c.Peers[0].Addr = "" }, "no address"},
		{"a broadcast peer with an address", func(c *UDPConfig) { c.Mode, c.Interface = Broadcast, "lo" }, "only unicast media send to addresses"},
		{"no mode", func(c *UDPConfig) { c.Mode = 0 }, "unknown mode"},
		{"a port out of range", func(c *UDPConfig) { c.Port = 70000 }, "out of range"},
		{"a medium id too large", func(c *UDPConfig) { c.ID = MaxMedia }, "too large"},
		{"multicast without interface", func(c *UDPConfig) { c.Mode, c.Peers[0].Addr = Multicast, "" }, "no interface"},
		{"multicast to a unicast group", func(c *UDPConfig) {
			c.Mode, c.Peers[0].Addr, c.Interface, c.Group = Multicast, "", "lo", "10.0.0.1"
		}, map[bool]string{true: "not an IPv4 multicast address", false: "no MULTICAST flag"}[lo.Flags&net.FlagMulticast != 0]},
		{"broadcast on an interface that cannot", func(c *UDPConfig) { c.Mode, c.Peers[0].Addr, c.Interface = Broadcast, "", "lo" },
			map[bool]string{true: "", false: "has no BROADCAST flag"}[lo.Flags&net.FlagBroadcast != 0]},
		{"no such interface", func(c *UDPConfig) { c.Mode, c.Peers[0].Addr, c.Interface = Broadcast, "", "tandem-none0" }, "tandem-none0"},
	}
	for _, c := range cases {
		if c.want == "" {
			continue // the kernel's lo differs from the usual; nothing to check
		}
		cfg := ok()
		c.change(&cfg)
		m, err := ListenUDP(cfg, make(chan Received))
		if err == nil {
			m.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.what, err, c.want)
		}
	}
	if _, err := ListenUDP(ok(), nil); err == nil {
		t.Error("a medium without a channel started")
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[UDPMode]string{Unicast: "ucast", Broadcast: "bcast", Multicast: "mcast", 9: "udpmode(9)"} {
		if got := fmt.Sprint(m); got != want {
			t.Errorf("%d prints %q, want %q", m, got, want)
		}
	}
}
