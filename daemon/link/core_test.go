package link

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"tandem/internal/meta"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// coreNode runs the real replication core (internal/repl) against a
// Manager and an in-memory disk, on one goroutine, the way the daemon's
// main loop will: the core's outputs become link calls and disk
// operations, the link's events become the core's inputs. Disk operations
// and metadata writes complete diskLatency after they are issued.
type coreNode struct {
	t     *testing.T
	name  string
	r     *repl.Replica
	n     *node
	start time.Time
	disk  []byte
	bufs  map[repl.BufRef][]byte
	app   map[uint64][]byte
	local []completion // disk and metadata completions, in time order
	recvN uint64
	done  map[uint64]repl.IOError
	sent  map[repl.MsgKind]int
	errs  []error
	cmds  chan func()
	stop  chan struct{}
	exit  chan struct{}
}

const coreBlocks = 1024

// diskLatency is the in-memory disk's latency. Not zero: the core's resync
// end re-issues a flush each time one completes until the source answers,
// and a disk faster than the link turns that into a message flood.
const diskLatency = 500 * time.Microsecond

type completion struct {
	at time.Time
	in repl.Input
}

func newCoreNode(t *testing.T, self int, n *node) *coreNode {
	cfg := repl.Config{Self: proto.NodeID(self), Peer: proto.NodeID(1 - self), Names: []string{"alpha", "bravo"},
		Blocks: coreBlocks, Protocol: repl.ProtocolC, PingInterval: 200 * time.Millisecond, Timeout: 2 * time.Second}
	rec := &meta.Record{Blocks: coreBlocks, Bitmap: meta.NewBitmap(coreBlocks)}
	c := &coreNode{t: t, name: n.cfg.Self, n: n, start: time.Now(), disk: make([]byte, coreBlocks*4096),
		bufs: map[repl.BufRef][]byte{}, app: map[uint64][]byte{}, done: map[uint64]repl.IOError{},
		sent: map[repl.MsgKind]int{}, cmds: make(chan func()), stop: make(chan struct{}), exit: make(chan struct{})}
	r, err := repl.New(cfg, rec, c.now(), uint64(self+1))
	if err != nil {
		t.Fatal(err)
	}
	c.r = r
	go c.loop()
	t.Cleanup(func() { close(c.stop); <-c.exit })
	return c
}

func (c *coreNode) now() proto.Time { return proto.Time(time.Since(c.start)) }

// do runs f on the node's goroutine and waits for it.
func (c *coreNode) do(f func()) {
	ran := make(chan struct{})
	c.cmds <- func() { f(); close(ran) }
	<-ran
}

func (c *coreNode) loop() {
	defer close(c.exit)
	c.handle(c.r.Start())
	timer := time.NewTimer(time.Hour)
	for {
		for len(c.local) > 0 && !c.local[0].at.After(time.Now()) {
			in := c.local[0].in
			c.local = c.local[1:]
			c.handle(c.r.Step(c.now(), in))
		}
		wait := time.Hour
		if d := c.r.Deadline(); d != proto.Never {
			wait = max(0, d.Sub(c.now()))
		}
		if len(c.local) > 0 {
			wait = min(wait, time.Until(c.local[0].at))
		}
		timer.Reset(wait)
		select {
		case e := <-c.n.ev:
			c.handle(c.r.Step(c.now(), c.input(e)))
		case f := <-c.cmds:
			f()
		case <-timer.C:
			if len(c.local) == 0 || c.local[0].at.After(time.Now()) {
				c.handle(c.r.Step(c.now(), repl.Input{Kind: repl.Tick}))
			}
		case <-c.stop:
			return
		}
	}
}

// input translates a link event for the core.
func (c *coreNode) input(e Event) repl.Input {
	switch e.Kind {
	case Up:
		return repl.Input{Kind: repl.LinkUp, Conn: e.Conn}
	case Down:
		return repl.Input{Kind: repl.LinkDown, Conn: e.Conn}
	}
	in := repl.Input{Kind: repl.Receive, Conn: e.Conn, Msg: e.Msg}
	if e.Payload != nil {
		c.recvN++
		in.Buf = c.recvN
		c.bufs[repl.BufRef{Kind: repl.RecvBuf, ID: c.recvN}] = e.Payload
	}
	return in
}

func (c *coreNode) buf(b repl.BufRef) []byte {
	if b.Kind == repl.AppBuf {
		return c.app[b.ID]
	}
	return c.bufs[b]
}

func (c *coreNode) handle(outs []repl.Output) {
	for _, o := range slices.Clone(outs) {
		switch o.Kind {
		case repl.DiskIO:
			span := c.disk[o.Block*4096 : (o.Block+uint64(o.Count))*4096]
			in := repl.Input{Kind: repl.DiskDone, ID: o.ID, Op: o.Op, Block: o.Block, Count: o.Count}
			switch o.Op {
			case repl.Read:
				d := bytes.Clone(span)
				if o.Buf.Kind == repl.AppBuf {
					c.app[o.Buf.ID] = d
				} else {
					c.bufs[o.Buf] = d
				}
				in.Digest = digest(d)
			case repl.Write:
				copy(span, c.buf(o.Buf))
			case repl.Trim:
				clear(span)
			}
			c.local = append(c.local, completion{time.Now().Add(diskLatency), in})
		case repl.Send:
			c.sent[o.Msg.Kind]++
			// ErrNotConnected is expected between a connection's end and
			// the core hearing of it (the Down is on its way).
			if err := c.n.m.Send(o.Conn, &o.Msg, c.buf(o.Buf)); err != nil && !errors.Is(err, ErrNotConnected) {
				c.errs = append(c.errs, err)
				c.t.Logf("%s: send: %v", c.name, err)
			}
		case repl.Persist:
			c.local = append(c.local, completion{time.Now().Add(diskLatency), repl.Input{Kind: repl.MetaDone, ID: o.ID}})
		case repl.Complete:
			c.done[o.ID] = o.Err
		case repl.Release:
			delete(c.bufs, o.Buf)
		case repl.Emit:
			c.t.Logf("%s: %v %s", c.name, o.Event.Kind, o.Event.Reason)
		case repl.WantLink:
			// With Conn set it only closes that connection; the core
			// follows it with its wish for the link.
			if o.Conn != 0 {
				c.n.m.Close(o.Conn)
			} else {
				c.n.m.SetWanted(o.Connect)
			}
		}
	}
}

func digest(b []byte) uint64 {
	h := uint64(1469598103934665603)
	for _, x := range b {
		h = (h ^ uint64(x)) * 1099511628211
	}
	return h
}

// state reads the node's replication state on its goroutine.
func (c *coreNode) state() string {
	var s string
	c.do(func() { s = fmt.Sprintf("%v/%v/%v", c.r.Role(), c.r.Disk(), c.r.Conn()) })
	return s
}

// TestCoreOverLink: two real replication cores reach each other over two
// Managers on loopback: handshake, the initial full sync after a forced
// promotion, protocol C writes; every message the cores send is accepted
// by Send (so the codec carries every field they set) and both disks end
// identical.
func TestCoreOverLink(t *testing.T) {
	a, b := pair(t, nil)
	ca, cb := newCoreNode(t, 0, a), newCoreNode(t, 1, b)
	waitFor(t, "the fresh pair to connect", func() bool {
		return ca.state() == "Secondary/Inconsistent/Connected" && cb.state() == "Secondary/Inconsistent/Connected"
	})
	ca.do(func() {
		ok, why, outs := ca.r.Promote(ca.now(), 1, true)
		if !ok {
			t.Errorf("promote: %s", why)
		}
		ca.handle(outs)
	})
	waitFor(t, "the initial sync", func() bool {
		return ca.state() == "Primary/UpToDate/Connected" && cb.state() == "Secondary/UpToDate/Connected"
	})
	write := func(first, n uint64) {
		ca.do(func() {
			for i := first; i < first+n; i++ {
				d := bytes.Repeat([]byte{byte(i + 1)}, 4*4096)
				ca.app[100+i] = d
				ca.handle(ca.r.Step(ca.now(), repl.Input{Kind: repl.Request, ID: 100 + i, Op: repl.Write, Block: 8 * i, Count: 4}))
			}
		})
		waitFor(t, "the writes to complete", func() bool {
			done := 0
			ca.do(func() { done = len(ca.done) })
			return uint64(done) == first+n
		})
	}
	write(0, 32)
	// Break the link under the cores (as a network fault would), write
	// on: the writes land in the bitmap, and the reconnect resyncs them.
	a.m.Close(a.m.live.Load().id)
	write(32, 32)
	waitFor(t, "the resync after the reconnect", func() bool {
		return ca.state() == "Primary/UpToDate/Connected" && cb.state() == "Secondary/UpToDate/Connected"
	})
	var errs []error
	var sent map[repl.MsgKind]int
	ca.do(func() {
		for id, err := range ca.done {
			if err != repl.OK {
				t.Errorf("write %d: %v", id, err)
			}
		}
		errs = append(errs, ca.errs...)
		sent = maps.Clone(ca.sent)
	})
	cb.do(func() {
		errs = append(errs, cb.errs...)
		for k, n := range cb.sent {
			sent[k] += n
		}
	})
	for _, err := range errs {
		t.Errorf("send: %v", err)
	}
	var identical bool
	ca.do(func() { cb.do(func() { identical = bytes.Equal(ca.disk, cb.disk) }) })
	if !identical {
		t.Fatal("disks differ")
	}
	for _, k := range []repl.MsgKind{repl.MsgHello, repl.MsgData, repl.MsgWriteAck, repl.MsgResyncData} {
		if sent[k] == 0 {
			t.Errorf("no %s message crossed the link", k)
		}
	}
	t.Logf("messages sent: %v", sent)
}
