package sim

// Scripted runs: instead of Run's safety and liveness phases, a driver (the
// scenario runner) boots the cluster with Start, advances it event by event
// with Advance, applies its own steps between events (faults, operator
// commands, application requests), reads the true state of every machine
// and disk, and ends with CheckDurable. Everything here uses the same
// machinery Run does; only who decides what happens when differs.
//
// What a script can do that a Schedule cannot: application requests on a
// chosen node and blocks (Submit), drbdadm-style commands (ReplAdmin), a
// clean daemon stop (Stop), targeted disk faults (Disk plus MarkLatent,
// Corrupt), and link quality changes (SetLink).

import (
	"fmt"
	"math"
	"time"

	"tandem/faults"
	"tandem/internal/meta"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// Start boots every machine, as Run does before its first event. The
// Schedule, the liveness phase and the built-in workload are not used: the
// driver injects its own steps.
func (s *Sim) Start() {
	s.tracef("* seed=%d nodes=%d fencing=%s keepalive=%v deadtime=%v (scripted run)", s.opt.Seed, s.opt.Nodes, s.machines[0].cfg.Fencing,
		s.machines[0].cfg.Keepalive, s.machines[0].cfg.Deadtime)
	for _, m := range s.machines {
		s.boot(m)
	}
}

// Now is the current simulated time.
func (s *Sim) Now() time.Duration { return s.now }

// NextEvent is the time of the next queued event, if any.
func (s *Sim) NextEvent() (time.Duration, bool) { return s.q.PeekAt() }

// Advance processes the next queued event if it is due at or before limit,
// and reports whether it did. Time never moves past limit; when Advance
// returns false, the clock stands at limit (or where it was, if later).
func (s *Sim) Advance(limit time.Duration) bool {
	at, ok := s.q.PeekAt()
	if !ok || at > limit {
		s.now = max(s.now, limit)
		return false
	}
	_, e, _ := s.q.Pop()
	s.now = at
	s.res.Events++
	s.dispatch(e)
	return true
}

// Observe registers f to see every output a node performs (events for
// observers included: node.Emit, and replication events as node.Replicate
// with repl.Emit), after the simulator performed it. One observer; nil
// removes it.
func (s *Sim) Observe(f func(node int, o *node.Output)) { s.observer = f }

// Apply performs one fault step now (its At is ignored), exactly as a
// scheduled one.
func (s *Sim) Apply(st faults.Step) { s.applyStep(st) }

// Tracef writes one line to the trace at the current time, if there is one.
func (s *Sim) Tracef(format string, args ...any) { s.tracef(format, args...) }

// Names are the nodes' names.
func (s *Sim) Names() []string { return s.opt.Names }

// Up reports whether machine i is powered on (frozen or not).
func (s *Sim) Up(i int) bool { return s.machines[i].up }

// Frozen reports whether machine i is paused.
func (s *Sim) Frozen(i int) bool { return s.machines[i].up && s.machines[i].frozen }

// Node is machine i's state machine, nil while it is down. Read it only: its
// inputs belong to the simulator.
func (s *Sim) Node(i int) *node.Node {
	m := s.machines[i]
	if !m.up {
		return nil
	}
	return m.n
}

// AcceptingWrites reports whether machine i is up and would serve a write now.
func (s *Sim) AcceptingWrites(i int) bool {
	m := s.machines[i]
	return m.up && m.n != nil && m.n.AcceptingWrites(m.clock.Local(s.now))
}

// Disk is data node i's disk (nil without replication or on the witness).
func (s *Sim) Disk(i int) *Disk {
	if m := s.machines[i]; m.r != nil {
		return m.r.disk
	}
	return nil
}

// Violations are the properties broken so far.
func (s *Sim) Violations() []Violation { return s.res.Violations }

// Result is the run's figures so far (Final and Primary are filled by Run
// only).
func (s *Sim) Result() Result { return s.res }

// Link returns the network's current link parameters (every directed link).
func (s *Sim) Link() LinkParams { return s.link }

// SetLink changes every network link from now on (latency, loss,
// duplication). Packets in flight keep their delivery times.
func (s *Sim) SetLink(p LinkParams) { s.link = p }

// Submit sends one application request to data node i as the client would:
// a write carries fresh unique tokens (block b+k gets value+k), a read and
// a flush none. It returns the request id, or false if the node is down
// (the client's connection is refused: no request exists). A node that is
// not primary completes it with an error, as the core decides.
func (s *Sim) Submit(i int, op OpKind, block uint64, count int) (uint64, bool) {
	rs := s.repl
	m := s.machines[i]
	if rs == nil || m.r == nil || !m.up || m.n == nil {
		return 0, false
	}
	rs.nextReq++
	id := rs.nextReq
	r := Request{ID: id, Node: m.id, Op: op, Invoke: s.now, Protocol: byte(rs.protocol)}
	in := repl.Input{Kind: repl.Request, ID: id}
	switch op {
	case OpWrite:
		rs.nextVal += 16
		r.Block, r.Count, r.Value = block, count, rs.nextVal
		vals := make([]uint64, count)
		for k := range vals {
			vals[k] = r.Value + uint64(k)
		}
		m.r.bufs[repl.BufRef{Kind: repl.AppBuf, ID: id}] = vals
		in.Op, in.Block, in.Count = repl.Write, block, uint32(count)
	case OpRead:
		r.Block, r.Count = block, count
		in.Op, in.Block, in.Count = repl.Read, block, uint32(count)
	case OpFlush:
		in.Op = repl.Flush
	default:
		panic(fmt.Sprintf("sim: Submit of %v", op))
	}
	m.r.reqs[id] = rs.hist.Invoke(r)
	rs.pending[m.id]++
	s.input(m, node.Input{Kind: node.Replication, Repl: in})
	return id, true
}

// ReplAdmin types a drbdadm command on data node i (force: primary
// --force; discard: connect --discard-my-data). It reports false if the node
// is down.
func (s *Sim) ReplAdmin(i int, cmd repl.AdminCmd, force, discard bool) bool {
	m := s.machines[i]
	if !m.up || m.n == nil || m.r == nil {
		return false
	}
	s.tracef("# %-8s operator: %v%s", m.name, cmd, map[bool]string{true: " --force"}[force]+map[bool]string{true: " --discard-my-data"}[discard])
	s.input(m, node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.Admin, Admin: cmd, Force: force, DiscardMyData: discard}})
	return true
}

// BeginStop is the daemon's orderly stop once the group is handed over:
// the replication link is closed and the metadata persisted marked clean
// (repl.Replica.Shutdown), so that the next start does not treat the node
// as having lost power. The driver calls Stop once CleanOnDisk reports the
// record durable (or after its own deadline). Reports false if machine i
// is down or has no replica.
func (s *Sim) BeginStop(i int) bool {
	m := s.machines[i]
	if !m.up || m.frozen || m.n == nil || m.r == nil || m.n.Replica() == nil {
		return false
	}
	s.tracef("# %-8s orderly stop: disconnect, metadata marked clean", m.name)
	s.input(m, node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.Admin, Admin: repl.CmdDisconnect}})
	outs := append([]repl.Output(nil), m.n.Replica().Shutdown(m.clock.Local(s.now))...)
	for k := range outs {
		s.replicate(m, &outs[k])
	}
	return true
}

// CleanOnDisk reports the sequence number of machine i's persisted
// metadata record and whether it is marked as an orderly shutdown.
func (s *Sim) CleanOnDisk(i int) (seq uint64, clean bool) {
	m := s.machines[i]
	if m.r == nil || m.r.disk.Failed() {
		return 0, false
	}
	area := make([]byte, s.repl.layout.MetaBytes)
	if err := m.r.disk.ReadMeta(0, area); err != nil {
		return 0, false
	}
	rec, err := s.repl.layout.Decode(area)
	if err != nil {
		return 0, false
	}
	return rec.Seq, rec.Flags&meta.CleanShutdown != 0
}

// Stop ends machine i's daemon cleanly, as the last part of a `heartbeat
// stop` (the driver first hands the group over with standby): the disk
// cache is flushed, the replication link is closed so the peer hears it,
// and the machine is down until Restart. Reports false if it was down.
func (s *Sim) Stop(i int) bool {
	m := s.machines[i]
	if !m.up {
		return false
	}
	s.tracef("! %-8s daemon stopped cleanly", m.name)
	if m.r != nil {
		_ = m.r.disk.Flush() // a clean shutdown syncs; an error here is the disk's, seen at restart
		if s.repl.conn != 0 {
			s.closeConn(m.id, m.name+" stopped")
		}
	}
	m.up, m.frozen, m.n = false, false, nil
	var drain uint64
	if s.repl != nil {
		drain = s.repl.draining
	}
	s.crashRepl(m)
	if s.repl != nil {
		// The kernel still delivers what the daemon sent before it closed
		// the link; crashRepl drops it, as after a power cut.
		s.repl.draining = drain
	}
	s.checks.crashed()
	return true
}

// DurableReport is CheckDurable's verdict.
type DurableReport struct {
	// From is the data node whose disk gave the final values (-1: none
	// could, e.g. both disks failed).
	From int
	// Violations are acknowledged writes that do not read back (outside the
	// documented protocol A/B window and reported split-brain discards), and
	// reads that returned what no linearizable history allows.
	Violations []BlockViolation
	// Lost counts acknowledged writes whose blocks, in the end, hold older
	// data, inside an allowed window or not.
	Lost int
}

// CheckDurable judges the client history against the final contents of the
// data node that holds the data now: the primary, else a node whose disk
// is UpToDate, else the last holder. It may be called once, at the end of a
// scripted run (it settles pending requests as abandoned).
func (s *Sim) CheckDurable() DurableReport {
	rs := s.repl
	rep := DurableReport{From: -1}
	if rs == nil {
		return rep
	}
	src := s.dataSource()
	if src == nil {
		return rep
	}
	rep.From = src.id
	h := &rs.hist
	h.AbandonPending()
	flushes := completedFlushes(h)
	for i := 0; i < h.Len(); i++ {
		r := h.At(i)
		if r.Op == OpRead && rs.lostGens[r.Gen] {
			r.SplitView = true
		}
		if r.Op != OpWrite {
			continue
		}
		if r.Outcome == OK && r.Protocol != 'C' && !rs.peerAckd[r.ID] {
			r.MayBeLost = true
		}
		if rs.lostGens[r.Gen] {
			r.MayBeLost = true
		}
		if r.Outcome == OK && !r.MayBeLost && rs.lostWithEveryCopy(r, flushes) {
			r.MayBeLost = true
		}
	}
	for _, b := range h.WrittenBlocks() {
		h.SetFinal(b, src.r.disk.Contents(b))
	}
	rep.Violations = CheckBlocks(h)
	rep.Lost = countLost(h)
	return rep
}

// dataSource is the machine whose disk holds the cluster's data at the end.
func (s *Sim) dataSource() *machine {
	var best *machine
	for _, m := range s.machines[:2] {
		if !m.up || m.n == nil || m.r == nil {
			continue
		}
		if m.n.State() == proto.Primary && m.n.Replica().Disk() == repl.UpToDate {
			return m
		}
		if m.n.Replica().Disk() == repl.UpToDate && (best == nil || m.id == s.holder) {
			best = m
		}
	}
	if best == nil && s.holder >= 0 && s.holder < 2 {
		best = s.machines[s.holder]
	}
	return best
}

// countLost counts acknowledged writes some block of which finally holds
// data written before the write was invoked (tokens grow in invoke order),
// by a write that had completed by then (so it did not race this one).
func countLost(h *History) int {
	byValue := map[uint64]*Request{}
	for i := 0; i < h.Len(); i++ {
		if r := h.At(i); r.Op == OpWrite {
			byValue[r.Value] = r
		}
	}
	writer := func(tok uint64) *Request { return byValue[tok&^15] }
	lost := 0
	for i := 0; i < h.Len(); i++ {
		w := h.At(i)
		if w.Op != OpWrite || w.Outcome != OK {
			continue
		}
		for k := 0; k < w.Count; k++ {
			f, ok := h.Final(w.Block + uint64(k))
			if !ok || f >= w.Value {
				continue
			}
			if o := writer(f); f != 0 && o != nil && (o.Outcome != OK || o.Complete > w.Invoke) {
				continue // it raced this write: either order is legal
			}
			lost++
			break
		}
	}
	return lost
}

// MarkLatent makes blocks [first, first+n) of the disk latent sector
// errors: reads fail with EIO until the block is rewritten or ClearLatent.
func (d *Disk) MarkLatent(first, n uint64) {
	d.checkRange(first, n)
	for b := first; b < first+n; b++ {
		d.cur(b).latent = true
	}
}

// ClearLatent ends the latent sector errors of blocks [first, first+n)
// (the data stays as it is).
func (d *Disk) ClearLatent(first, n uint64) {
	d.checkRange(first, n)
	for b := first; b < first+n; b++ {
		d.cur(b).latent = false
		d.media[b].latent = false
	}
}

// CorruptBlocks flips a bit of the stored copy of blocks [first,
// first+n), silently: reads return the flipped data with ErrChecksum until
// the block is rewritten.
func (d *Disk) CorruptBlocks(first, n uint64) {
	d.checkRange(first, n)
	for b := first; b < first+n; b++ {
		c := d.cur(b)
		if c.flip == 0 {
			c.flip = 1
			d.st.Corruptions++
		}
	}
}

// FarFuture stands for "until further notice" in stall lengths.
const FarFuture = time.Duration(math.MaxInt64 / 4)
