package sim

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"tandem/internal/meta"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// Workload says what the simulated application does on the primary.
type Workload uint8

const (
	NoWorkload Workload = iota
	// WriteWorkload: writes (90%) and flushes (10%).
	WriteWorkload
	// MixedWorkload: writes (55%), reads (35%), flushes (10%).
	MixedWorkload
)

var workloadNames = [...]string{"none", "write", "mixed"}

func (w Workload) String() string {
	if int(w) < len(workloadNames) {
		return workloadNames[w]
	}
	return fmt.Sprintf("workload(%d)", uint8(w))
}

// ParseWorkload reads none, write or mixed.
func ParseWorkload(s string) (Workload, error) {
	switch s {
	case "none":
		return NoWorkload, nil
	case "write":
		return WriteWorkload, nil
	case "mixed":
		return MixedWorkload, nil
	}
	return 0, fmt.Errorf("unknown workload %q (want none, write or mixed)", s)
}

// ReplicationOptions switch on the replicated disk.
type ReplicationOptions struct {
	// Repl is the replication config (Self, Peer, Names and Fencing are
	// filled in); Blocks defaults to 4096 (16 MiB).
	Repl repl.Config
	// Workload and its rate (requests per second, default 100) and the
	// most requests it keeps outstanding (default 8).
	Workload    Workload
	Rate        int
	Outstanding int
	// Disk latency; zero: 0.1–2 ms writes and reads, 1–5 ms flushes.
	Latency DiskLatency
	// DiskFaults strike both disks during the safety phase; data faults
	// only where the other node holds a good copy of the block (unless
	// Unrecoverable). The liveness phase clears them.
	DiskFaults DiskFaults
}

// SwarmDiskFaults draws the disk faults of one swarm seed: each kind is
// off or on at a rate spread over two decades, so that seeds explore both
// rare and frequent faults. Only faults a reader can detect are drawn: a
// lost or misdirected write leaves a stale block that reads back without an
// error, which no replicated block device can notice without a per-block
// checksum journal (dm-integrity), and Tandem has none yet.
func SwarmDiskFaults(r *Rand) DiskFaults {
	rate := func(lo, hi float64) float64 {
		if r.Intn(2) == 0 {
			return 0
		}
		return lo * math.Pow(hi/lo, r.Float64())
	}
	f := DiskFaults{
		LatentError: rate(1e-4, 1e-2),
		Corrupt:     rate(1e-4, 1e-2),
		ReadError:   rate(1e-4, 1e-2),
		Stall:       rate(1e-4, 1e-2),
	}
	if f.Stall > 0 {
		f.StallFor = r.Between(50*time.Millisecond, 2*time.Second)
	}
	return f
}

// goodCopyElsewhere is the data-fault gate of machine m's disk: a fault may
// destroy block b here only while the other node is connected, both disks
// are UpToDate with b in sync, and the other copy of b is healthy.
func (s *Sim) goodCopyElsewhere(m *machine, b uint64) bool {
	o := s.machines[1-m.id]
	if !m.up || !o.up || m.n == nil || o.n == nil || m.n.Replica() == nil || o.n.Replica() == nil {
		return false
	}
	rm, ro := m.n.Replica(), o.n.Replica()
	return rm.Conn() == repl.Connected && ro.Conn() == repl.Connected &&
		rm.Disk() == repl.UpToDate && ro.Disk() == repl.UpToDate &&
		rm.BlockInSync(b) && ro.BlockInSync(b) && o.r.disk.Fault(b) == nil
}

// replState is the simulator's side of replication: disks, buffers, the
// replication connection, the client and its history.
type replState struct {
	opt      ReplicationOptions
	protocol repl.Protocol // with defaults applied
	layout   meta.Layout
	conn     uint64 // established connection id; 0 none
	connAt   time.Duration
	// connecting: a connection attempt is scheduled.
	connecting bool
	lastArrive [2]time.Duration // FIFO per direction
	// draining is a connection closed gracefully by node drainFrom: what
	// that node sent before the close still arrives (TCP delivers it before
	// the FIN); a crash or partition ends the drain.
	draining  uint64
	drainFrom int
	hist      History
	nextReq   uint64
	nextVal   uint64
	pending   [2]int // outstanding requests per node
	// seqReq[node] maps a mirrored write's sequence number to its request,
	// to learn when the peer's write ack reached the primary.
	seqReq   [2]map[uint64]uint64
	peerAckd map[uint64]bool
	// goodPeerCopy: the peer acknowledged the write while its disk was
	// UpToDate, so its copy can stand in for ours after our crash.
	goodPeerCopy map[uint64]bool
	genWriter    map[uint64]genWriter // generation -> the node writing under it
	lostGens     map[uint64]bool
	// powerLoss[n] are the times node n lost power (crash or fence), in
	// order: a write lost with every copy before a flush covered it was
	// never promised to survive (see lostWithEveryCopy).
	powerLoss [2][]time.Duration
	// rotations[n] are node n's new generations in time order, and linkUps
	// the times the replication link came up: together they tell which
	// tenure a read belonged to (see splitTenure).
	rotations [2][]rotation
	linkUps   []time.Duration
	events    ReplResult
}

// ReplResult are the replication figures of a run.
type ReplResult struct {
	Acked, Failed, Unknown int
	Lost                   int // acknowledged writes missing at the end, not in any allowed window
	ResyncBytes            uint64
	DirtyBytes             uint64
	SplitBrainsDetected    int
	SplitBrainsResolved    int
	Detaches               int
}

type genWriter struct {
	node int
	last time.Duration // completion of its latest write
}

// machine-side replication state.
type machineRepl struct {
	disk    *Disk
	bufs    map[repl.BufRef][]uint64
	nextBuf uint64
	want    bool
	reqs    map[uint64]int // request id -> history index, for this incarnation
}

func (s *Sim) replicationOn() bool { return s.opt.Replication != nil }

func (s *Sim) initReplication() error {
	ro := s.opt.Replication
	if ro.Repl.Blocks == 0 {
		ro.Repl.Blocks = 4096
	}
	if ro.Rate == 0 {
		ro.Rate = 100
	}
	if ro.Outstanding == 0 {
		ro.Outstanding = 8
	}
	if ro.Latency == (DiskLatency{}) {
		ro.Latency = DiskLatency{
			Read:  DiskOpLatency{Min: 100 * time.Microsecond, Mean: 500 * time.Microsecond, Max: 5 * time.Millisecond},
			Write: DiskOpLatency{Min: 100 * time.Microsecond, Mean: 700 * time.Microsecond, Max: 8 * time.Millisecond},
			Flush: DiskOpLatency{Min: time.Millisecond, Mean: 2 * time.Millisecond, Max: 10 * time.Millisecond},
			Trim:  DiskOpLatency{Min: 100 * time.Microsecond, Mean: 300 * time.Microsecond, Max: 3 * time.Millisecond},
		}
	}
	// The replication link's keepalive follows the heartbeat timing so that
	// a dead link is noticed about as fast as a dead peer.
	if ro.Repl.PingInterval == 0 {
		ro.Repl.PingInterval = 4 * s.opt.Node.Keepalive
	}
	rs := &replState{opt: *ro, peerAckd: map[uint64]bool{}, goodPeerCopy: map[uint64]bool{}, genWriter: map[uint64]genWriter{}, lostGens: map[uint64]bool{}}
	metaBytes := uint64(256 << 10)
	l, err := meta.NewLayout(ro.Repl.Blocks*meta.BlockSize, false, metaBytes, 64)
	if err != nil {
		return err
	}
	rs.layout = l
	rs.protocol = ro.Repl.WithDefaults().Protocol
	s.repl = rs
	// Both disks start as after an initial sync: the same generation,
	// consistent, nothing out of sync.
	gen := meta.UUID(s.rnd.Uint64() | 1)
	for i := 0; i < 2; i++ {
		m := s.machines[i]
		m.r = &machineRepl{bufs: map[repl.BufRef][]uint64{}}
		m.r.disk = NewDisk(DiskOptions{Blocks: ro.Repl.Blocks, MetaBytes: l.MetaBytes, Latency: ro.Latency}, m.rnd.Fork(7))
		m.r.disk.SetFaults(ro.DiskFaults)
		m.r.disk.AllowDataFaults(true)
		m.r.disk.SetDataFaultGate(func(b uint64) bool { return s.goodCopyElsewhere(m, b) })
		rec := &meta.Record{Seq: 1, Blocks: ro.Repl.Blocks, Node: uint8(i), Gen: meta.Generations{Current: gen},
			Flags: meta.Consistent | meta.CleanShutdown, Bitmap: meta.NewBitmap(ro.Repl.Blocks)}
		img := l.EncodeAll(nil, rec)
		if err := m.r.disk.WriteMeta(0, img); err != nil {
			return err
		}
		if err := m.r.disk.Flush(); err != nil {
			return err
		}
		rc := ro.Repl
		m.cfg.Replication = &rc
	}
	return nil
}

// attach runs at boot: read the metadata back and start the replica.
func (s *Sim) attach(m *machine) {
	if m.r == nil {
		return
	}
	m.r.bufs = map[repl.BufRef][]uint64{}
	m.r.reqs = map[uint64]int{}
	m.r.want = false
	s.repl.seqReq[m.id] = map[uint64]uint64{}
	var rec *meta.Record
	if !m.r.disk.Failed() {
		area := make([]byte, s.repl.layout.MetaBytes)
		if err := m.r.disk.ReadMeta(0, area); err == nil {
			if r, err := s.repl.layout.Decode(area); err == nil {
				rec = r
			} else {
				s.tracef("M %-8s metadata unreadable: %v", m.name, err)
			}
		}
	}
	outs, err := m.n.AttachReplica(rec, m.rnd.Uint64())
	if err != nil {
		panic(fmt.Sprintf("attach %s: %v", m.name, err))
	}
	outs = append([]node.Output(nil), outs...)
	for i := range outs {
		s.perform(m, &outs[i])
	}
}

// replicate performs one output of the replicated disk.
func (s *Sim) replicate(m *machine, o *repl.Output) {
	r := m.r
	switch o.Kind {
	case repl.DiskIO:
		kind := diskOpKinds[o.Op]
		n := int(o.Count)
		if o.Op == repl.Flush {
			n = r.disk.CachedBlocks()
		}
		at := s.now + r.disk.Latency(kind, max(n, 1))
		s.q.Push(at, event{kind: evDisk, node: m.id, inc: m.incarnation,
			in:  node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.DiskDone, ID: o.ID, Op: o.Op, Block: o.Block, Count: o.Count}},
			buf: o.Buf})
	case repl.Persist:
		at := s.now + r.disk.Latency(DiskWrite, 2) + r.disk.Latency(DiskFlush, 1)
		s.q.Push(at, event{kind: evDisk, node: m.id, inc: m.incarnation,
			in:  node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.MetaDone, ID: o.ID}},
			rec: o.Record})
	case repl.Send:
		s.replSend(m, o)
	case repl.Complete:
		s.completeRequest(m, o)
	case repl.Release:
		delete(r.bufs, o.Buf)
	case repl.WantLink:
		r.want = o.Connect
		if !o.Connect && o.Conn != 0 && o.Conn == s.repl.conn {
			s.closeConn(m.id, "closed by "+m.name)
		}
		s.maybeConnect()
	case repl.Emit:
		s.replEvent(m, &o.Event)
	}
}

// diskOpKinds maps the core's disk operations onto the disk model's.
var diskOpKinds = [...]DiskOpKind{repl.Read: DiskRead, repl.Write: DiskWrite, repl.Flush: DiskFlush, repl.Trim: DiskTrim}

// diskEvent applies a disk operation when it completes (the device works
// even while the machine is frozen), then reports it.
func (s *Sim) diskEvent(e event) {
	m := s.machines[e.node]
	if e.inc != m.incarnation || !m.up {
		return // the machine lost power before the operation completed
	}
	r := m.r
	in := e.in
	if in.Repl.Kind == repl.MetaDone {
		in.Repl.Err = s.persistMeta(r.disk, e.rec)
		s.input(m, in)
		return
	}
	var err error
	switch in.Repl.Op {
	case repl.Write:
		err = r.disk.Write(in.Repl.Block, s.bufData(m, e.buf))
	case repl.Read:
		out := make([]uint64, in.Repl.Count)
		err = r.disk.Read(in.Repl.Block, out)
		// A failed read still hands back what the device transferred (a
		// corrupt block's flipped bits): the core must not serve it.
		r.bufs[e.buf] = out
		if err == nil {
			in.Repl.Digest = digestTokens(out)
		}
	case repl.Flush:
		err = r.disk.Flush()
	case repl.Trim:
		err = r.disk.Trim(in.Repl.Block, uint64(in.Repl.Count))
	}
	in.Repl.Err = ioErr(err)
	s.input(m, in)
}

// persistMeta writes a metadata record as the format requires: everything
// but the header, flush, the header, flush.
func (s *Sim) persistMeta(d *Disk, rec *meta.Record) repl.IOError {
	ws, err := s.repl.layout.Encode(rec)
	if err != nil {
		panic(fmt.Sprintf("encoding metadata: %v", err))
	}
	for i, w := range ws {
		if i == len(ws)-1 {
			if err := d.Flush(); err != nil {
				return ioErr(err)
			}
		}
		if err := d.WriteMeta(w.Offset, w.Data); err != nil {
			return ioErr(err)
		}
	}
	return ioErr(d.Flush())
}

func ioErr(err error) repl.IOError {
	switch {
	case err == nil:
		return repl.OK
	case errors.Is(err, ErrFailed):
		return repl.DeviceFailed
	case errors.Is(err, ErrNoSpace):
		return repl.NoSpace
	case errors.Is(err, ErrChecksum), errors.Is(err, ErrMisdirected):
		return repl.BadChecksum
	}
	return repl.EIO
}

func digestTokens(v []uint64) uint64 {
	h := uint64(1469598103934665603)
	for _, x := range v {
		h = (h ^ x) * 1099511628211
	}
	return h
}

// bufData is the contents of a buffer the core named.
func (s *Sim) bufData(m *machine, b repl.BufRef) []uint64 {
	if d, ok := m.r.bufs[b]; ok {
		return d
	}
	panic(fmt.Sprintf("%s: buffer %+v not held (the core used a released buffer)", m.name, b))
}

// --- the replication connection ---

func (s *Sim) maybeConnect() {
	rs := s.repl
	if rs.conn != 0 || rs.connecting {
		return
	}
	a, b := s.machines[0], s.machines[1]
	if !a.up || !b.up || a.frozen || b.frozen || !a.r.want || !b.r.want || s.netDown[0][1] || s.netDown[1][0] {
		return
	}
	rs.connecting = true
	// DRBD's connect-int: the next attempt comes within a few hundred ms.
	s.q.Push(s.now+time.Duration(50+s.rnd.Intn(200))*time.Millisecond, event{kind: evConnect})
}

func (s *Sim) connectEvent() {
	rs := s.repl
	rs.connecting = false
	a, b := s.machines[0], s.machines[1]
	if rs.conn != 0 || !a.up || !b.up || a.frozen || b.frozen || !a.r.want || !b.r.want || s.netDown[0][1] || s.netDown[1][0] {
		return
	}
	rs.conn = uint64(s.res.Events) + 1
	rs.linkUps = append(rs.linkUps, s.now)
	rs.lastArrive = [2]time.Duration{s.now, s.now}
	s.tracef("C %-8s replication link %d up", "", rs.conn)
	for _, m := range []*machine{a, b} {
		s.input(m, node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.LinkUp, Conn: rs.conn}})
	}
}

func (s *Sim) closeConn(by int, why string) {
	rs := s.repl
	c := rs.conn
	rs.conn = 0
	s.tracef("C %-8s replication link %d down: %s", "", c, why)
	if by >= 0 {
		// A graceful close reaches the other side after everything the
		// closer sent before it (the queue keeps ties in push order).
		rs.draining, rs.drainFrom = c, by
		o := s.machines[1-by]
		s.q.Push(max(s.now+time.Millisecond, rs.lastArrive[by]), event{kind: evInput, node: o.id, inc: o.incarnation,
			in: node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.LinkDown, Conn: c}}})
	}
	s.maybeConnect()
}

// breakConn: the network lost the connection; nobody is told (the
// replication timeout finds out). Messages still in flight are lost, those
// of a connection closed gracefully before included.
func (s *Sim) breakConn(why string) {
	if s.repl != nil {
		s.repl.draining = 0
	}
	if s.repl != nil && s.repl.conn != 0 {
		s.closeConn(-1, why)
	}
}

func (s *Sim) replSend(m *machine, o *repl.Output) {
	rs := s.repl
	if o.Conn != rs.conn || rs.conn == 0 {
		return
	}
	to := 1 - m.id
	if s.netDown[m.id][to] {
		s.breakConn("a packet hit the partition")
		return
	}
	var data []uint64
	if o.Buf.Kind != repl.NoBuf {
		data = append([]uint64(nil), s.bufData(m, o.Buf)...)
	}
	if o.Msg.Kind == repl.MsgData && o.Buf.Kind == repl.AppBuf {
		rs.seqReq[m.id][o.Msg.Seq] = o.Buf.ID
	}
	lat := s.link.Latency(m.rnd)
	at := max(s.now+lat, rs.lastArrive[m.id])
	rs.lastArrive[m.id] = at
	dst := s.machines[to]
	s.q.Push(at, event{kind: evReplMsg, node: to, inc: dst.incarnation, from: m.id,
		in: node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.Receive, Conn: o.Conn, Msg: o.Msg}}, data: data})
}

func (s *Sim) replMsgEvent(e event) {
	m := s.machines[e.node]
	rs := s.repl
	c := e.in.Repl.Conn
	if e.inc != m.incarnation || !m.up || (c != rs.conn && (c != rs.draining || e.from != rs.drainFrom)) {
		return
	}
	if e.data != nil {
		m.r.nextBuf++
		m.r.bufs[repl.BufRef{Kind: repl.RecvBuf, ID: m.r.nextBuf}] = e.data
		e.in.Repl.Buf = m.r.nextBuf
	}
	if e.in.Repl.Msg.Kind == repl.MsgWriteAck {
		if id, ok := rs.seqReq[m.id][e.in.Repl.Msg.Seq]; ok {
			rs.peerAckd[id] = true
			if m.up && m.n != nil && m.n.Replica().PeerDisk() == repl.UpToDate {
				rs.goodPeerCopy[id] = true
			}
			delete(rs.seqReq[m.id], e.in.Repl.Msg.Seq)
		}
	}
	s.input(m, e.in)
}

// --- the client ---

func (s *Sim) workloadEvent() {
	rs := s.repl
	ro := &rs.opt
	next := time.Second / time.Duration(ro.Rate)
	s.q.Push(s.now+s.rnd.Exp(next), event{kind: evWorkload})
	// The client follows the service address: it talks to the node that
	// runs the group.
	var m *machine
	for _, c := range s.machines[:2] {
		if c.up && !c.frozen && c.n != nil && c.n.State() == proto.Primary {
			m = c
		}
	}
	if m == nil || rs.pending[m.id] >= ro.Outstanding {
		return
	}
	blocks := ro.Repl.Blocks
	count := 1 + s.rnd.Intn(4)
	block := uint64(s.rnd.Intn(int(blocks) - count))
	p := s.rnd.Intn(100)
	op := OpWrite
	switch {
	case ro.Workload == MixedWorkload && p >= 55 && p < 90:
		op = OpRead
	case p >= 90:
		op = OpFlush
	}
	s.Submit(m.id, op, block, count)
}

func (s *Sim) completeRequest(m *machine, o *repl.Output) {
	rs := s.repl
	idx, ok := m.r.reqs[o.ID]
	if !ok {
		return
	}
	delete(m.r.reqs, o.ID)
	rs.pending[m.id]--
	req := rs.hist.At(idx)
	out := OK
	if o.Err != repl.OK {
		out = Fail
	}
	var read []uint64
	if req.Op == OpRead && o.Err == repl.OK {
		src := o.Buf
		if src.Kind == repl.NoBuf {
			src = repl.BufRef{Kind: repl.AppBuf, ID: o.ID}
		}
		read = append([]uint64(nil), m.r.bufs[src]...)
		rep := m.n.Replica()
		req.Gen = uint64(rep.Generations().Current)
		if o := s.machines[1-m.id]; o.up && o.n != nil && o.n.Replica().Role() == repl.Primary && !rep.Conn().Linked() {
			req.SplitView = true
		}
	}
	if req.Op == OpWrite && o.Err == repl.OK {
		req.Gen = uint64(o.Gen)
		// A generation may pass from one node to the other in a connected
		// handover, but never be written by both at once: a write under it
		// on another node must start after the last one here completed.
		if w, seen := rs.genWriter[req.Gen]; seen && w.node != m.id && req.Invoke < w.last {
			s.violate("single-writer", fmt.Sprintf("generation %x accepted writes on %s (until %v) and on %s (write #%d invoked at %v)",
				req.Gen, s.machines[w.node].name, fmtDur(w.last), m.name, req.ID, fmtDur(req.Invoke)))
		}
		rs.genWriter[req.Gen] = genWriter{node: m.id, last: s.now}
	}
	delete(m.r.bufs, repl.BufRef{Kind: repl.AppBuf, ID: o.ID})
	rs.hist.Complete(o.ID, s.now, out, read)
}

// crashRepl: the machine lost power: its disk's cache is gone, its pending
// requests' outcome is unknown, the connection dies silently.
func (s *Sim) crashRepl(m *machine) {
	if m.r == nil {
		return
	}
	m.r.disk.Crash()
	s.repl.powerLoss[m.id] = append(s.repl.powerLoss[m.id], s.now)
	s.repl.pending[m.id] = 0
	m.r.reqs = map[uint64]int{}
	m.r.want = false
	s.breakConn(m.name + " lost power")
}

func (s *Sim) replEvent(m *machine, ev *repl.Event) {
	rs := s.repl
	switch ev.Kind {
	case repl.SplitBrain:
		rs.events.SplitBrainsDetected++
		if s.liveness {
			s.q.Push(s.now+2*time.Second, event{kind: evOperator})
		}
	case repl.SplitBrainResolved:
		rs.events.SplitBrainsResolved++
		for _, g := range ev.Gens {
			rs.lostGens[uint64(g)] = true
		}
	case repl.NewGeneration:
		rs.rotations[m.id] = append(rs.rotations[m.id], rotation{at: s.now, gen: uint64(ev.Gen)})
	case repl.IOFailed:
		rs.events.Detaches++
	}
	if s.opt.Trace != nil {
		s.tracef("R %-8s %v %s", m.name, ev.Kind, ev.Reason)
	}
}

type rotation struct {
	at  time.Duration
	gen uint64
}

// splitTenure: read r was served before its node's first write of a tenure
// that a split-brain resolution later discarded (the node's next new
// generation is a discarded one, and the link never came up in between).
// Such a node had been promoted without the peer's latest writes (fencing
// none allows it), so what it read was not the cluster's timeline.
func (rs *replState) splitTenure(r *Request) bool {
	rots := rs.rotations[r.Node]
	i, _ := slices.BinarySearchFunc(rots, r.Complete, func(x rotation, t time.Duration) int { return cmp.Compare(x.at, t) })
	if i == len(rots) || !rs.lostGens[rots[i].gen] {
		return false
	}
	j, _ := slices.BinarySearch(rs.linkUps, r.Complete)
	return j == len(rs.linkUps) || rs.linkUps[j] > rots[i].at
}

// flushDone is, for flushes sorted by invoke time, the earliest completion
// of any flush invoked at or after that one.
type flushDone struct {
	invoke []time.Duration
	done   []time.Duration
}

func completedFlushes(h *History) flushDone {
	var f flushDone
	for i := 0; i < h.Len(); i++ { // the history is in invoke order
		if r := h.At(i); r.Op == OpFlush && r.Outcome == OK {
			f.invoke = append(f.invoke, r.Invoke)
			f.done = append(f.done, r.Complete)
		}
	}
	for i := len(f.done) - 2; i >= 0; i-- {
		f.done[i] = min(f.done[i], f.done[i+1])
	}
	return f
}

// lostWithEveryCopy: every node that held write w (the one that served it,
// and the peer if it acknowledged the write on an UpToDate disk) lost power after w started and
// before any flush invoked after it completed had finished. Its data was then
// only ever in volatile caches, so a block device may lose it: only a flush
// makes a write survive the power loss of every copy.
func (rs *replState) lostWithEveryCopy(w *Request, f flushDone) bool {
	covered := time.Duration(math.MaxInt64)
	if i, _ := slices.BinarySearch(f.invoke, w.Complete); i < len(f.invoke) {
		covered = f.done[i]
	}
	for n := range rs.powerLoss {
		if n != w.Node && !rs.goodPeerCopy[w.ID] {
			// The peer never had it, or only on a disk being resynced
			// (Inconsistent as a whole, so no source for recovery).
			continue
		}
		i, _ := slices.BinarySearch(rs.powerLoss[n], w.Invoke)
		if i == len(rs.powerLoss[n]) || rs.powerLoss[n][i] >= covered {
			return false
		}
	}
	return true
}

// operatorSplitBrain is the liveness phase's operator facing a split brain
// the policies left unresolved, doing what DRBD's guide says: choose the
// victim (the side that does not run the service), `connect
// --discard-my-data` there and `connect` on the survivor. Its discarded
// writes are reported, so the checkers allow their loss.
func (s *Sim) operatorSplitBrain() {
	a, b := s.machines[0], s.machines[1]
	if !s.liveness || !a.up || !b.up || a.n == nil || b.n == nil {
		return
	}
	ra, rb := a.n.Replica(), b.n.Replica()
	if ra.Conn() != repl.StandAlone && rb.Conn() != repl.StandAlone {
		return
	}
	retry := event{kind: evOperator}
	if ra.Role() == repl.Primary && rb.Role() == repl.Primary {
		// Wait until the failover core leaves one holder.
		s.q.Push(s.now+2*time.Second, retry)
		return
	}
	victim, survivor := b, a
	switch {
	case rb.Role() == repl.Primary:
		victim, survivor = a, b
	case ra.Role() == repl.Primary:
	case b.n.State() == proto.Primary || b.n.State() == proto.Starting:
		victim, survivor = a, b
	}
	s.tracef("# %-8s operator: split brain; connect --discard-my-data here, connect on %s", victim.name, survivor.name)
	s.step(victim, node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.Admin, Admin: repl.CmdConnect, DiscardMyData: true}})
	s.step(survivor, node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.Admin, Admin: repl.CmdConnect}})
	s.q.Push(s.now+5*time.Second, retry)
}

// finalRepl checks the data properties at the end of a run.
func (s *Sim) finalRepl() {
	rs := s.repl
	h := &rs.hist
	h.AbandonPending()
	flushes := completedFlushes(h)
	for i := 0; i < h.Len(); i++ {
		r := h.At(i)
		if r.Op == OpRead && (rs.lostGens[r.Gen] || rs.splitTenure(r)) {
			r.SplitView = true
		}
		if r.Op != OpWrite {
			continue
		}
		switch r.Outcome {
		case OK:
			rs.events.Acked++
		case Fail:
			rs.events.Failed++
		default:
			rs.events.Unknown++
		}
		if r.Outcome == OK && r.Protocol != 'C' && !rs.peerAckd[r.ID] {
			r.MayBeLost = true // inside the documented protocol A/B window
		}
		if rs.lostGens[r.Gen] {
			r.MayBeLost = true // discarded by a reported split-brain resolution
		}
		if r.Outcome == OK && !r.MayBeLost && rs.lostWithEveryCopy(r, flushes) {
			r.MayBeLost = true
		}
	}
	// A read that returned a write allowed to be lost saw a timeline the
	// cluster may have dropped (protocol A/B's window, a discarded split
	// brain): when the write is gone, the block going back is no violation.
	unsure := map[uint64]bool{}
	for i := 0; i < h.Len(); i++ {
		if r := h.At(i); r.Op == OpWrite && r.MayBeLost {
			for k := 0; k < r.Count; k++ {
				unsure[r.Value+uint64(k)] = true
			}
		}
	}
	for i := 0; i < h.Len(); i++ {
		r := h.At(i)
		if r.Op != OpRead || r.Outcome != OK {
			continue
		}
		for _, v := range r.Read {
			if unsure[v] {
				r.SplitView = true
				break
			}
		}
	}
	var prim *machine
	for _, m := range s.machines[:2] {
		if m.up && m.n != nil && m.n.State() == proto.Primary {
			prim = m
		}
	}
	for i := range 2 {
		st := s.machines[i].n.Replica().Stats
		rs.events.ResyncBytes += st.ResyncReceived * meta.BlockSize
		rs.events.DirtyBytes += st.DirtyAtStart * meta.BlockSize
	}
	if prim == nil || s.opt.Liveness == 0 {
		return
	}
	for _, b := range h.WrittenBlocks() {
		h.SetFinal(b, prim.r.disk.Contents(b))
	}
	for _, v := range CheckBlocks(h) {
		rs.events.Lost++
		s.violate("acked-writes-durable", v.String())
	}
	// Convergence: connected and in sync, the disks are identical.
	a, b := s.machines[0], s.machines[1]
	if a.up && b.up && a.n.Replica().Conn() == repl.Connected && b.n.Replica().Conn() == repl.Connected &&
		a.n.Replica().Disk() == repl.UpToDate && b.n.Replica().Disk() == repl.UpToDate {
		sa, sb := a.r.disk.Snapshot(nil), b.r.disk.Snapshot(nil)
		for blk := range sa {
			if sa[blk] != sb[blk] {
				s.violate("convergence", fmt.Sprintf("block %d differs after resync: %s has %x, %s has %x", blk, a.name, sa[blk], b.name, sb[blk]))
				break
			}
		}
	} else {
		s.violate("convergence", fmt.Sprintf("not connected and in sync at the end: %s %v/%v, %s %v/%v\n    %s: %s\n    %s: %s",
			a.name, a.n.Replica().Conn(), a.n.Replica().Disk(), b.name, b.n.Replica().Conn(), b.n.Replica().Disk(),
			a.name, a.n.Replica().Debug(), b.name, b.n.Replica().Debug()))
	}
}

// History is the client history of the run (nil without replication).
func (s *Sim) History() *History {
	if s.repl == nil {
		return nil
	}
	return &s.repl.hist
}
