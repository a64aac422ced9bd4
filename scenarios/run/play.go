package run

import (
	"fmt"
	"slices"
	"time"

	"tandem/faults"
	"tandem/internal/repl"
	"tandem/scenarios"
	"tandem/sim"
)

// runner is one run of one scenario.
type runner struct {
	sc    *scenarios.Scenario
	cl    scenarios.Cluster
	s     *sim.Sim
	rnd   *sim.Rand
	res   *Result
	trace *traceWriter
	end   time.Duration
	base  sim.LinkParams // the network as the run started, for heal
	acts  []action
	// stopping[i]: a `stop` waits for node i to hand the group over; the
	// daemon exits then, or at the deadline regardless. released[i]: when
	// its group stopped; it then waits up to deadtime for the peer to take
	// the group, as Heartbeat's shutdown notice lets the peer acquire
	// before the node is gone. cleanFrom[i] > 0: the orderly stop began
	// (sim.BeginStop) when the persisted record had sequence cleanFrom-1;
	// the daemon exits once a later one, marked clean, is on disk.
	stopping, released [2]time.Duration
	cleanFrom          [2]uint64
	latent             [2][]scenarios.Range // read-errors ranges, for disk-heal
	expects            []expectState
	ev                 eventLog
	last               [2]counters
	unsent             int // requests the client could not send (no primary, node down)
}

// action is one thing the runner does at a time: a timeline step, or one
// request of a spread workload step.
type action struct {
	at   time.Duration
	step scenarios.Step
	// block is the request's block for workload actions.
	block uint64
}

// unsupported lists the steps the simulator cannot play.
func (r *runner) unsupported() []Failure {
	var out []Failure
	bad := func(st scenarios.Step, why string) {
		out = append(out, Failure{Pos: st.Pos, At: st.At,
			Msg: fmt.Sprintf("unsupported: %s at %s:%d (%s)", r.sc.StepLine(st), st.Pos.File, st.Pos.Line, why)})
	}
	for _, st := range r.sc.Timeline() {
		switch st.Kind {
		case scenarios.Drop, scenarios.Duplicate, scenarios.Delay:
			// The simulated network has one set of link parameters for
			// every directed link.
			if st.OneWay {
				bad(st, "the simulator's link faults apply to both directions")
			} else if r.cl.HasWitness() {
				bad(st, "the simulator's link faults apply to every link, the witness's too")
			}
		case scenarios.WriteErrors:
			if st.Range != (scenarios.Range{}) {
				bad(st, "the simulated disk fails writes on the whole disk only")
			}
		case scenarios.DiskFull:
			if st.Range.First == 0 {
				bad(st, "the simulated disk can be full from block 1 on, not 0")
			}
		}
	}
	return out
}

// plan turns the timeline into actions: workload steps become one action
// per request, spread evenly over their window.
func (r *runner) plan() {
	blocks := r.cl.DiskBlocks()
	for _, st := range r.sc.Timeline() {
		switch st.Kind {
		case scenarios.Write, scenarios.Read:
			var list []uint64
			if st.Blocks > 0 {
				for range st.Blocks {
					list = append(list, uint64(r.rnd.Intn(int(blocks))))
				}
			} else {
				n := st.Range.Count
				if n == 0 {
					n = blocks - st.Range.First
				}
				for b := st.Range.First; b < st.Range.First+n; b++ {
					list = append(list, b)
				}
			}
			for i, b := range list {
				at := st.At
				if st.For > 0 {
					at += time.Duration(int64(st.For) * int64(i) / int64(len(list)))
				}
				r.acts = append(r.acts, action{at: at, step: st, block: b})
			}
		case scenarios.End:
		default:
			r.acts = append(r.acts, action{at: st.At, step: st})
		}
	}
	slices.SortStableFunc(r.acts, func(a, b action) int { return cmpDur(a.at, b.at) })
}

// play runs the simulator to the end, applying actions at their times and
// sampling the state over every span between two instants where anything
// happens.
func (r *runner) play() {
	s := r.s
	s.Start()
	cur := time.Duration(0)
	ai := 0
	for {
		t := r.end
		if ai < len(r.acts) && r.acts[ai].at < t {
			t = r.acts[ai].at
		}
		if at, ok := s.NextEvent(); ok && at < t {
			t = at
		}
		if t > cur {
			r.sample(cur, t)
			cur = t
		}
		// Events due now go first; then the clock stands at t for the
		// actions due now.
		if s.Advance(t) {
			continue
		}
		if ai < len(r.acts) && r.acts[ai].at <= t {
			r.apply(&r.acts[ai])
			ai++
			continue
		}
		break
	}
	r.sample(r.end, r.end)
}

func (r *runner) name(i int) string { return r.cl.Nodes[i] }

// apply performs one action now.
func (r *runner) apply(a *action) {
	s := r.s
	st := a.step
	fault := func(k faults.Kind) faults.Step {
		return faults.Step{At: s.Now(), Kind: k, Node: st.Node, Peer: st.Peer, OneWay: st.OneWay}
	}
	switch st.Kind {
	case scenarios.Write, scenarios.Read, scenarios.Flush:
		r.request(a)
	case scenarios.Crash:
		s.Apply(fault(faults.Crash))
	case scenarios.Restart, scenarios.Start:
		s.Apply(fault(faults.Restart))
	case scenarios.Freeze:
		s.Apply(fault(faults.Freeze))
	case scenarios.Thaw:
		s.Apply(fault(faults.Thaw))
	case scenarios.Stop:
		s.Tracef("# %-8s heartbeat stop: hand the group over, then exit", r.name(st.Node))
		s.Apply(faults.Step{At: s.Now(), Kind: faults.Admin, Node: st.Node, Command: "standby"})
		r.stopping[st.Node] = s.Now() + 2*r.cl.Deadtime + 30*time.Second
		r.checkStops()
	case scenarios.Partition:
		s.Apply(fault(faults.Partition))
	case scenarios.Heal:
		f := fault(faults.Heal)
		if st.Node == scenarios.AnyNode {
			f.Node, f.Peer = -1, -1
		}
		s.Apply(f)
		if st.Node == scenarios.AnyNode || st.Node < 2 && st.Peer < 2 {
			s.SetLink(r.base)
		}
	case scenarios.Drop, scenarios.Duplicate, scenarios.Delay:
		p := s.Link()
		switch st.Kind {
		case scenarios.Drop:
			p.Loss = st.Percent / 100
		case scenarios.Duplicate:
			p.Duplicate = st.Percent / 100
		case scenarios.Delay:
			p.LatencyMin = r.base.LatencyMin + st.Delay
			p.LatencyMean = r.base.LatencyMean + st.Delay
			p.LatencyMax = r.base.LatencyMax + st.Delay
		}
		s.Tracef("/ %s", r.sc.StepLine(st))
		s.SetLink(p)
	case scenarios.CutSerial:
		s.Apply(faults.Step{At: s.Now(), Kind: faults.CutSerial})
	case scenarios.RestoreSerial:
		s.Apply(faults.Step{At: s.Now(), Kind: faults.RestoreSerial})
	case scenarios.ClockJump:
		s.Apply(faults.Step{At: s.Now(), Kind: faults.ClockJump, Node: st.Node, Delta: st.Delta})
	case scenarios.ClockDrift:
		s.Apply(faults.Step{At: s.Now(), Kind: faults.ClockDrift, Node: st.Node, PPM: st.PPM})
	case scenarios.FenceAgent:
		s.Apply(faults.Step{At: s.Now(), Kind: faults.FenceBreak, Node: st.Node, Mode: st.Mode})
	case scenarios.ResourceFail:
		// The replicated disk is the group's implicit first member.
		s.Apply(faults.Step{At: s.Now(), Kind: faults.ResourceBreak, Node: st.Node, Resource: st.Resource + 1, Op: st.Mode, Count: st.Count})
	case scenarios.Standby, scenarios.Online, scenarios.Takeover, scenarios.Cleanup:
		s.Apply(faults.Step{At: s.Now(), Kind: faults.Admin, Node: st.Node, Command: st.Kind.String()})
	case scenarios.Primary, scenarios.Secondary, scenarios.Connect, scenarios.Disconnect, scenarios.Verify,
		scenarios.Invalidate, scenarios.Detach, scenarios.PauseSync, scenarios.ResumeSync:
		if !s.ReplAdmin(st.Node, replCmds[st.Kind], st.Force, st.DiscardMyData) {
			s.Tracef("# %-8s is down: %q not typed", r.name(st.Node), r.sc.StepLine(st))
		}
	default:
		r.diskStep(st)
	}
}

var replCmds = map[scenarios.StepKind]repl.AdminCmd{
	scenarios.Primary: repl.CmdPrimary, scenarios.Secondary: repl.CmdSecondary,
	scenarios.Connect: repl.CmdConnect, scenarios.Disconnect: repl.CmdDisconnect,
	scenarios.Verify: repl.CmdVerify, scenarios.Invalidate: repl.CmdInvalidate,
	scenarios.Detach: repl.CmdDetach, scenarios.PauseSync: repl.CmdPauseSync,
	scenarios.ResumeSync: repl.CmdResumeSync,
}

// diskStep injects a disk fault.
func (r *runner) diskStep(st scenarios.Step) {
	d := r.s.Disk(st.Node)
	if d == nil {
		return
	}
	r.s.Tracef("d %s", r.sc.StepLine(st))
	first, n := st.Range.First, st.Range.Count
	if n == 0 {
		n = d.Blocks() - first
	}
	f := d.Faults()
	switch st.Kind {
	case scenarios.DiskFail:
		d.Fail()
	case scenarios.DiskReplace:
		d.Repair()
	case scenarios.DiskHeal:
		d.SetFaults(sim.DiskFaults{})
		d.AllowDataFaults(false)
		d.SetDataFaultGate(nil)
		for _, rg := range r.latent[st.Node] {
			d.ClearLatent(rg.First, rg.Count)
		}
		r.latent[st.Node] = nil
		return
	case scenarios.ReadErrors:
		d.MarkLatent(first, n)
		r.latent[st.Node] = append(r.latent[st.Node], scenarios.Range{First: first, Count: n})
		return
	case scenarios.WriteErrors:
		f.WriteError = 1
	case scenarios.Corrupt:
		d.CorruptBlocks(first, n)
		return
	case scenarios.LoseWrites:
		f.LostWrite = 1
		d.AllowDataFaults(true)
		d.SetDataFaultGate(func(b uint64) bool { return b >= first && b < first+n })
	case scenarios.Stall:
		f.Stall, f.StallFor = 1, r.stallFor(st)
	case scenarios.DiskFull:
		f.FullAt = st.Range.First
	}
	d.SetFaults(f)
}

// stallFor: a stalled disk answers when its stall ends (the next disk-heal
// of that node), so each operation submitted meanwhile waits that long.
func (r *runner) stallFor(st scenarios.Step) time.Duration {
	for _, a := range r.acts {
		if a.at >= st.At && a.step.Kind == scenarios.DiskHeal && a.step.Node == st.Node {
			return max(a.at-st.At, time.Millisecond)
		}
	}
	return r.end + time.Hour
}

// request sends one application request of a workload step.
func (r *runner) request(a *action) {
	s := r.s
	st := a.step
	target := st.Node
	if target == scenarios.AnyNode {
		for i := range 2 {
			if s.AcceptingWrites(i) {
				target = i
			}
		}
		if target == scenarios.AnyNode {
			r.unsent++
			return // nobody runs the service address: the client's connection is refused
		}
	}
	op := map[scenarios.StepKind]sim.OpKind{scenarios.Write: sim.OpWrite, scenarios.Read: sim.OpRead, scenarios.Flush: sim.OpFlush}[st.Kind]
	if _, ok := s.Submit(target, op, a.block, 1); !ok {
		r.unsent++
	}
}

// checkStops lets a stopping daemon exit once it no longer holds the group.
func (r *runner) checkStops() {
	for i, dl := range r.stopping {
		if dl == 0 {
			continue
		}
		n, p := r.s.Node(i), r.s.Node(1-i)
		if n != nil && !n.State().Holds() && r.released[i] == 0 {
			r.released[i] = r.s.Now()
		}
		handedOver := p == nil || p.State().Holds() || r.s.Now() >= r.released[i]+r.cl.Deadtime
		if n != nil && r.s.Now() < dl && !n.State().Holds() && handedOver {
			// As the daemon: disconnect, persist the metadata marked clean,
			// wait for it (10s at most), then exit.
			if r.cleanFrom[i] == 0 {
				seq, _ := r.s.CleanOnDisk(i)
				if !r.s.BeginStop(i) {
					n = nil
				} else {
					r.cleanFrom[i] = seq + 1
					r.stopping[i] = min(dl, r.s.Now()+10*time.Second)
					continue
				}
			} else if seq, clean := r.s.CleanOnDisk(i); !clean || seq < r.cleanFrom[i] {
				continue
			}
		}
		if n == nil || (!n.State().Holds() && handedOver) || r.s.Now() >= dl {
			r.stopping[i], r.released[i], r.cleanFrom[i] = 0, 0, 0
			r.s.Stop(i)
		}
	}
}
