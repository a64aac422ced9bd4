package repl

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"tandem/internal/meta"
	"tandem/internal/proto"
)

// world is a tiny deterministic two-node world: disks complete after 1 ms,
// the link delivers in order after 2 ms, metadata persists instantly.
type world struct {
	t     *testing.T
	now   proto.Time
	r     [2]*Replica
	disk  [2][]uint64
	meta  [2]*meta.Record
	bufs  [2]map[BufRef][]uint64
	app   map[uint64][]uint64 // request buffers (shared id space)
	done  map[uint64]IOError
	up    bool // network path
	want  [2]bool
	conn  uint64
	live  uint64 // the established connection id, 0 none
	q     []wev
	seq   int
	nextR uint64
	recvN uint64
	ev    []Event
	cfg   Config
	sent  map[MsgKind]int // messages put on the link, by kind
}

type wev struct {
	at   proto.Time
	seq  int
	node int
	in   Input
	data []uint64
}

const blocks = 4096

func newWorld(t *testing.T, mod func(*Config)) *world {
	w := &world{t: t, up: true, app: map[uint64][]uint64{}, done: map[uint64]IOError{}, sent: map[MsgKind]int{}}
	for i := range 2 {
		cfg := Config{Self: proto.NodeID(i), Peer: proto.NodeID(1 - i), Names: []string{"a", "b"},
			Blocks: blocks, PingInterval: 100 * time.Millisecond}
		if mod != nil {
			mod(&cfg)
		}
		w.cfg = cfg
		w.disk[i] = make([]uint64, blocks)
		w.bufs[i] = map[BufRef][]uint64{}
		w.meta[i] = &meta.Record{Blocks: blocks, Bitmap: meta.NewBitmap(blocks), Flags: 0}
		w.boot(i)
	}
	return w
}

func (w *world) boot(i int) {
	cfg := w.cfg
	cfg.Self, cfg.Peer = proto.NodeID(i), proto.NodeID(1-i)
	r, err := New(cfg, w.meta[i], w.now, uint64(i+1)*7919)
	if err != nil {
		w.t.Fatal(err)
	}
	w.r[i] = r
	w.handle(i, r.Start())
}

func (w *world) push(at proto.Time, node int, in Input, data []uint64) {
	w.seq++
	w.q = append(w.q, wev{at, w.seq, node, in, data})
	sort.Slice(w.q, func(a, b int) bool {
		if w.q[a].at != w.q[b].at {
			return w.q[a].at < w.q[b].at
		}
		return w.q[a].seq < w.q[b].seq
	})
}

func (w *world) handle(i int, outs []Output) {
	outs = append([]Output(nil), outs...)
	for _, o := range outs {
		switch o.Kind {
		case DiskIO:
			var data []uint64
			switch o.Op {
			case Write:
				src := w.buf(i, o.Buf)
				data = append([]uint64(nil), src...)
			}
			w.push(w.now.Add(time.Millisecond), i, Input{Kind: DiskDone, ID: o.ID, Op: o.Op, Block: o.Block, Count: o.Count}, data)
			if o.Op == Read {
				// Reads capture the disk at issue; fine for these tests.
				d := append([]uint64(nil), w.disk[i][o.Block:o.Block+uint64(o.Count)]...)
				w.bufs[i][o.Buf] = d
				if o.Buf.Kind == AppBuf {
					w.app[o.Buf.ID] = d
				}
			}
		case Send:
			if w.live != o.Conn || !w.up {
				continue
			}
			w.recvN++
			w.sent[o.Msg.Kind]++
			var data []uint64
			if o.Buf.Kind != NoBuf {
				data = append([]uint64(nil), w.buf(i, o.Buf)...)
			}
			w.push(w.now.Add(2*time.Millisecond), 1-i, Input{Kind: Receive, Conn: o.Conn, Msg: o.Msg, Buf: w.recvN}, data)
		case Persist:
			w.meta[i] = o.Record
			w.push(w.now, i, Input{Kind: MetaDone, ID: o.ID}, nil)
		case Complete:
			w.done[o.ID] = o.Err
			if o.Buf.Kind == RecvBuf {
				w.app[o.ID] = append([]uint64(nil), w.bufs[i][o.Buf]...)
			}
		case Release:
			delete(w.bufs[i], o.Buf)
		case Emit:
			w.ev = append(w.ev, o.Event)
			w.t.Logf("%v %s: %v %s", w.now, w.r[0].name(proto.NodeID(i)), o.Event.Kind, o.Event.Reason)
		case WantLink:
			w.want[i] = o.Connect
			if !o.Connect && w.live != 0 && w.live == o.Conn {
				c := w.live
				w.live = 0
				w.push(w.now, 1-i, Input{Kind: LinkDown, Conn: c}, nil)
			}
		}
	}
	w.maybeConnect()
}

func (w *world) maybeConnect() {
	if w.live == 0 && w.up && w.want[0] && w.want[1] && w.r[0] != nil && w.r[1] != nil {
		w.conn++
		w.live = w.conn
		w.push(w.now.Add(time.Millisecond), 0, Input{Kind: LinkUp, Conn: w.conn}, nil)
		w.push(w.now.Add(time.Millisecond), 1, Input{Kind: LinkUp, Conn: w.conn}, nil)
	}
}

func (w *world) buf(i int, b BufRef) []uint64 {
	if b.Kind == AppBuf {
		return w.app[b.ID]
	}
	d, ok := w.bufs[i][b]
	if !ok {
		w.t.Fatalf("node %d: buffer %+v not held", i, b)
	}
	return d
}

// run advances the world by d, ticking each replica at its deadline.
func (w *world) run(d time.Duration) {
	end := w.now.Add(d)
	for {
		next := end
		node := -1
		if len(w.q) > 0 && w.q[0].at <= next {
			next = w.q[0].at
			node = -2
		}
		for i := range 2 {
			if dl := w.r[i].Deadline(); dl < next {
				next, node = dl, i
			}
		}
		if node == -1 {
			w.now = end
			return
		}
		w.now = next
		if node >= 0 {
			w.handle(node, w.r[node].Step(w.now, Input{Kind: Tick}))
			continue
		}
		e := w.q[0]
		w.q = w.q[1:]
		if e.in.Kind == Receive && e.data != nil {
			w.bufs[e.node][BufRef{RecvBuf, e.in.Buf}] = e.data
		}
		if e.in.Kind == DiskDone && e.in.Op == Write && e.data != nil {
			copy(w.disk[e.node][e.in.Block:], e.data)
		}
		if e.in.Kind == DiskDone && e.in.Op == Trim {
			clear(w.disk[e.node][e.in.Block : e.in.Block+uint64(e.in.Count)])
		}
		if e.in.Kind == DiskDone {
			e.in.Digest = digest(w.bufs[e.node][BufRef{DiskBuf, e.in.ID}])
		}
		w.handle(e.node, w.r[e.node].Step(w.now, e.in))
	}
}

func digest(v []uint64) uint64 {
	h := uint64(1469598103934665603)
	for _, x := range v {
		h = (h ^ x) * 1099511628211
	}
	return h
}

// write submits an application write of count blocks on node i.
func (w *world) write(i int, block uint64, count uint32, val uint64) uint64 {
	w.nextR++
	id := w.nextR
	d := make([]uint64, count)
	for k := range d {
		d[k] = val + uint64(k)
	}
	w.app[id] = d
	w.handle(i, w.r[i].Step(w.now, Input{Kind: Request, ID: id, Op: Write, Block: block, Count: count}))
	return id
}

func (w *world) read(i int, block uint64, count uint32) uint64 {
	w.nextR++
	id := w.nextR
	w.handle(i, w.r[i].Step(w.now, Input{Kind: Request, ID: id, Op: Read, Block: block, Count: count}))
	return id
}

func (w *world) admin(i int, c AdminCmd, force, discard bool) {
	w.handle(i, w.r[i].Step(w.now, Input{Kind: Admin, Admin: c, Force: force, DiscardMyData: discard}))
}

func (w *world) promote(i int, force bool) {
	ok, why, outs := w.r[i].Promote(w.now, 1, force)
	if !ok {
		w.t.Fatalf("promote %d refused: %s", i, why)
	}
	w.handle(i, outs)
}

func (w *world) cut() {
	w.up = false
	if w.live != 0 {
		c := w.live
		w.live = 0
		// Nobody tells the nodes: the link timeout must find out.
		_ = c
	}
}

func (w *world) heal() { w.up = true; w.maybeConnect() }

// crash loses node i's process (its disk and persisted metadata survive).
func (w *world) crash(i int) {
	if w.live != 0 {
		w.live = 0
	}
	kept := w.q[:0]
	for _, e := range w.q {
		if e.node != i {
			kept = append(kept, e)
		}
	}
	w.q = kept
	w.bufs[i] = map[BufRef][]uint64{}
	w.want[i] = false
}

func (w *world) identical() bool {
	for b := range w.disk[0] {
		if w.disk[0][b] != w.disk[1][b] {
			return false
		}
	}
	return true
}

func (w *world) states() string {
	return fmt.Sprintf("a:%v/%v/%v b:%v/%v/%v", w.r[0].Role(), w.r[0].Disk(), w.r[0].Conn(),
		w.r[1].Role(), w.r[1].Disk(), w.r[1].Conn())
}

func (w *world) sawEvent(k EventKind) bool {
	for _, e := range w.ev {
		if e.Kind == k {
			return true
		}
	}
	return false
}
