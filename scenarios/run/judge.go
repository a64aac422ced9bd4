package run

import (
	"fmt"
	"strings"
	"time"

	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
	"tandem/scenarios"
	"tandem/sim"
)

// expectState follows one expectation through the run.
type expectState struct {
	e *scenarios.Expect
	w scenarios.Window // EndOfRun replaced by the run's end
	// Throughout: the first span where the condition was false.
	failed bool
	failAt time.Duration
	why    string
	// Sometime: a span where it was true; last says how it looked last.
	met  bool
	last string
}

// window is the expectation's window with EndOfRun resolved.
func (r *runner) window(e *scenarios.Expect) scenarios.Window {
	w := e.Window()
	if w.From == scenarios.EndOfRun {
		w.From = r.end
	}
	if w.To == scenarios.EndOfRun || w.To > r.end {
		w.To = r.end
	}
	return w
}

// stamp is one event the expectations count or look for.
type stamp struct {
	at   time.Duration
	node int // who (failover: the node taking over; resolved: the victim)
	n    uint64
}

// eventLog holds the events and counted measures of a run, by time.
type eventLog struct {
	failovers, fences, sbDetected, sbResolved []stamp
	resync, verify                            []stamp
}

// counters are one replica's statistics as last seen.
type counters struct {
	rep            *repl.Replica
	resync, verify uint64
}

func (r *runner) observe(i int, o *node.Output) {
	now := r.s.Now()
	switch o.Kind {
	case node.Emit:
		switch o.Event.Kind {
		case node.Acquired:
			if o.Event.Grounds == node.AfterSilence {
				r.ev.failovers = append(r.ev.failovers, stamp{at: now, node: i, n: 1})
			}
		case node.FenceSucceeded:
			r.ev.fences = append(r.ev.fences, stamp{at: now, node: i, n: 1})
		case node.SplitBrain:
			r.ev.sbDetected = append(r.ev.sbDetected, stamp{at: now, node: i, n: 1})
		}
	case node.Replicate:
		if o.Repl.Kind != repl.Emit {
			return
		}
		switch o.Repl.Event.Kind {
		case repl.SplitBrain:
			r.ev.sbDetected = append(r.ev.sbDetected, stamp{at: now, node: i, n: 1})
		case repl.SplitBrainResolved:
			r.ev.sbResolved = append(r.ev.sbResolved, stamp{at: now, node: int(o.Repl.Event.Peer), n: 1})
			// A policy resolves only what was detected (DRBD logs "Split-Brain
			// detected, ... automatically solved"); the core reports just the
			// resolution.
			r.ev.sbDetected = append(r.ev.sbDetected, stamp{at: now, node: i, n: 1})
		}
	}
}

// count reads the replicas' statistics and stamps what grew since.
func (r *runner) count(at time.Duration) {
	for i := range 2 {
		n := r.s.Node(i)
		if n == nil || n.Replica() == nil {
			r.last[i] = counters{}
			continue
		}
		rep := n.Replica()
		c := &r.last[i]
		if c.rep != rep {
			// A new incarnation starts its statistics from zero.
			*c = counters{rep: rep}
		}
		if v := rep.Stats.ResyncReceived; v > c.resync {
			r.ev.resync = append(r.ev.resync, stamp{at: at, node: i, n: (v - c.resync) * scenarios.BlockSize})
			c.resync = v
		}
		if v := rep.Stats.VerifyMismatch; v > c.verify {
			r.ev.verify = append(r.ev.verify, stamp{at: at, node: i, n: v - c.verify})
			c.verify = v
		}
	}
}

// overlaps: the span [a, b) (or the instant a, when a == b) meets [from, to].
func overlaps(a, b time.Duration, w scenarios.Window) bool {
	if a == b {
		return a >= w.From && a <= w.To
	}
	return a <= w.To && b > w.From
}

// sample judges the state the cluster is in over [a, b): nothing happens
// between two events, so one look covers the span.
func (r *runner) sample(a, b time.Duration) {
	r.checkStops()
	r.count(a)
	var identical *bool
	var identWhy string
	for i := range r.expects {
		x := &r.expects[i]
		if x.w.Q == scenarios.Counted || !overlaps(a, b, x.w) || isEvent(x.e.Cond) {
			continue
		}
		if x.w.Q == scenarios.Throughout && x.failed || x.w.Q == scenarios.Sometime && x.met {
			continue
		}
		var ok bool
		var why string
		if x.e.Cond == scenarios.CondDisksIdentical {
			// Comparing two disks costs a pass over both: once per span.
			if identical == nil {
				v, w := r.disksIdentical()
				identical, identWhy = &v, w
			}
			ok, why = *identical, identWhy
		} else if x.e.Cond == scenarios.CondAckedWritesDurable {
			continue // judged on the history at the end
		} else {
			ok, why = r.holds(x.e)
		}
		switch x.w.Q {
		case scenarios.Throughout:
			if !ok {
				x.failed, x.failAt, x.why = true, max(a, x.w.From), why
			}
		case scenarios.Sometime:
			x.met = x.met || ok
			x.last, x.failAt = why, a
		}
	}
}

func isEvent(c scenarios.CondKind) bool {
	switch c {
	case scenarios.CondFailover, scenarios.CondNoFailover, scenarios.CondSplitBrainDetected, scenarios.CondSplitBrainResolved:
		return true
	}
	return false
}

// holds evaluates a state condition now; why describes what is.
func (r *runner) holds(e *scenarios.Expect) (bool, string) {
	s := r.s
	switch e.Cond {
	case scenarios.CondPrimary:
		who := r.primaries()
		if e.Node == scenarios.AnyNode {
			return len(who) == 0, r.describe()
		}
		return len(who) == 1 && who[0] == e.Node, r.describe()
	case scenarios.CondNoSplitBrain:
		var acc []string
		for i := range r.cl.Nodes {
			if s.AcceptingWrites(i) {
				acc = append(acc, r.name(i))
			}
		}
		return len(acc) <= 1, fmt.Sprintf("accepting writes: %s", strings.Join(acc, ", "))
	case scenarios.CondState:
		n := s.Node(e.Node)
		if n == nil || n.Replica() == nil {
			return false, r.describe()
		}
		rep := n.Replica()
		ok := (e.Role == 0 || rep.Role() == e.Role) && (e.Disk == 0 || rep.Disk() == e.Disk) &&
			(e.Conn == 0 || rep.Conn() == e.Conn) && (e.PeerDisk == 0 || rep.PeerDisk() == e.PeerDisk)
		return ok, r.describe()
	}
	return false, "condition " + e.Cond.String() + " is not a state"
}

// primaries are the data nodes running the whole group with their disk
// Primary.
func (r *runner) primaries() []int {
	var who []int
	for i := range 2 {
		n := r.s.Node(i)
		if n != nil && n.State() == proto.Primary && (n.Replica() == nil || n.Replica().Role() == repl.Primary) {
			who = append(who, i)
		}
	}
	return who
}

// describe is a one-line picture of both data nodes, for failure messages.
func (r *runner) describe() string {
	var parts []string
	for i := range 2 {
		n := r.s.Node(i)
		switch {
		case n == nil:
			parts = append(parts, r.name(i)+" down")
		case r.s.Frozen(i):
			parts = append(parts, r.name(i)+" frozen")
		default:
			p := fmt.Sprintf("%s %s", r.name(i), n.State())
			if rep := n.Replica(); rep != nil {
				p += fmt.Sprintf(" (%s/%s/%s peer %s, %d out of sync)", rep.Role(), rep.Disk(), rep.Conn(), rep.PeerDisk(), rep.OutOfSync())
			}
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "; ")
}

// disksIdentical: both data nodes up, Connected and UpToDate with nothing
// out of sync, and the disks hold the same tokens block for block.
func (r *runner) disksIdentical() (bool, string) {
	for i := range 2 {
		n := r.s.Node(i)
		if n == nil || n.Replica() == nil {
			return false, r.describe()
		}
		rep := n.Replica()
		if rep.Conn() != repl.Connected || rep.Disk() != repl.UpToDate || rep.OutOfSync() != 0 {
			return false, r.describe()
		}
	}
	a, b := r.s.Disk(0), r.s.Disk(1)
	for blk := uint64(0); blk < a.Blocks(); blk++ {
		if x, y := a.Contents(blk), b.Contents(blk); x != y {
			return false, fmt.Sprintf("block %d differs: %s has %x, %s has %x", blk, r.name(0), x, r.name(1), y)
		}
	}
	return true, "identical"
}

// judge decides every expectation at the end of the run.
func (r *runner) judge() {
	var durable *sim.DurableReport
	durability := func() *sim.DurableReport {
		if durable == nil {
			d := r.s.CheckDurable()
			durable = &d
		}
		return durable
	}
	fail := func(x *expectState, at time.Duration, format string, args ...any) {
		r.res.Failures = append(r.res.Failures, Failure{Pos: x.e.Pos, At: at,
			Msg: r.sc.ExpectLine(x.e) + ": " + fmt.Sprintf(format, args...)})
	}
	for i := range r.expects {
		x := &r.expects[i]
		e, w := x.e, x.w
		switch {
		case e.Cond == scenarios.CondAckedWritesDurable:
			d := durability()
			if d.From < 0 {
				fail(x, w.To, "no data node holds the data at the end (%s)", r.describe())
			} else if len(d.Violations) > 0 {
				fail(x, w.To, "%d violations on %s's disk, first: %v", len(d.Violations), r.name(d.From), d.Violations[0])
			}
		case e.Cond == scenarios.CondMeasure:
			got, detail := r.measure(e.Measure, w, durability)
			if !e.Op.Holds(got, e.Value) {
				fail(x, w.To, "counted %d over %s..%s%s", got, fmtT(w.From), fmtT(w.To), detail)
			}
		case isEvent(e.Cond):
			r.judgeEvent(x, fail)
		case w.Q == scenarios.Throughout:
			if x.failed {
				fail(x, x.failAt, "at %s: %s", fmtT(x.failAt), x.why)
			}
		case w.Q == scenarios.Sometime:
			if !x.met {
				fail(x, w.To, "never true in %s..%s; at %s: %s", fmtT(w.From), fmtT(w.To), fmtT(x.failAt), x.last)
			}
		}
		if e.Cond == scenarios.CondNoSplitBrain {
			for _, v := range r.s.Violations() {
				if v.Property == "single-writer" && v.At >= w.From && v.At <= w.To {
					fail(x, v.At, "the simulator saw %s", v)
					break
				}
			}
		}
	}
	for _, v := range r.s.Violations() {
		r.res.Failures = append(r.res.Failures, Failure{Pos: r.sc.Cluster.Pos, At: v.At,
			Msg: fmt.Sprintf("simulator property broken at %s: %s: %s", fmtT(v.At), v.Property, v.Detail)})
	}
}

func (r *runner) judgeEvent(x *expectState, fail func(*expectState, time.Duration, string, ...any)) {
	e, w := x.e, x.w
	var list []stamp
	switch e.Cond {
	case scenarios.CondFailover, scenarios.CondNoFailover:
		list = r.ev.failovers
	case scenarios.CondSplitBrainDetected:
		list = r.ev.sbDetected
	case scenarios.CondSplitBrainResolved:
		list = r.ev.sbResolved
	}
	var in []stamp
	for _, st := range list {
		if st.at >= w.From && st.at <= w.To && (e.Cond == scenarios.CondNoFailover || e.Node == scenarios.AnyNode || st.node == e.Node) {
			in = append(in, st)
		}
	}
	if e.Cond == scenarios.CondNoFailover {
		if len(in) > 0 {
			fail(x, in[0].at, "%s took over after declaring its peer dead at %s", r.name(in[0].node), fmtT(in[0].at))
		}
		return
	}
	if len(in) == 0 {
		var seen []string
		for _, st := range list {
			seen = append(seen, fmt.Sprintf("%s at %s", r.name(st.node), fmtT(st.at)))
		}
		what := "none in the run"
		if len(seen) > 0 {
			what = "seen: " + strings.Join(seen, ", ")
		}
		fail(x, w.To, "did not happen in %s..%s (%s)", fmtT(w.From), fmtT(w.To), what)
	}
}

// measure counts m over the window.
func (r *runner) measure(m scenarios.Measure, w scenarios.Window, durability func() *sim.DurableReport) (uint64, string) {
	sum := func(list []stamp) uint64 {
		var n uint64
		for _, st := range list {
			if st.at >= w.From && st.at <= w.To {
				n += st.n
			}
		}
		return n
	}
	switch m {
	case scenarios.ResyncBytes:
		return sum(r.ev.resync), " bytes"
	case scenarios.Failovers:
		return sum(r.ev.failovers), ""
	case scenarios.Fences:
		return sum(r.ev.fences), ""
	case scenarios.VerifyMismatches:
		// Both ends of a verify count the blocks they found different:
		// the larger count is the number of blocks.
		var per [2]uint64
		for _, st := range r.ev.verify {
			if st.at >= w.From && st.at <= w.To {
				per[st.node] += st.n
			}
		}
		return max(per[0], per[1]), " blocks"
	case scenarios.LostWrites:
		// Judged on the final contents: over the whole run.
		return uint64(durability().Lost), " (over the whole run)"
	case scenarios.FailedRequests:
		var n uint64
		var first string
		h := r.s.History()
		for i := 0; i < h.Len(); i++ {
			q := h.At(i)
			if q.Outcome == sim.Fail && q.Complete >= w.From && q.Complete <= w.To {
				if n == 0 {
					first = fmt.Sprintf("; first: %v #%d on %s block %d at %s", q.Op, q.ID, r.name(q.Node), q.Block, fmtT(q.Complete))
				}
				n++
			}
		}
		return n, first
	}
	return 0, ""
}

func fmtT(d time.Duration) string { return scenarios.FormatDuration(d) }
