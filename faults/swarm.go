package faults

import (
	"fmt"
	"slices"
	"time"
)

// SwarmOptions bound what a swarm may draw.
type SwarmOptions struct {
	// Nodes is 2 or 3 (3 = with witness; the witness can crash, freeze and be
	// partitioned too, but has no serial cable, fencing agent or resources).
	// 0 means 2.
	Nodes int
	// Safety is the length of the safety phase; faults happen only inside it.
	Safety time.Duration
	// Keepalive and Deadtime are the cluster's timing (0: Heartbeat's 1s and
	// 30s), so rates are drawn on its scale: outages sometimes shorter,
	// sometimes longer than deadtime, because both matter.
	Keepalive, Deadtime time.Duration
	// ClockDriftPPMMax: never draw |drift| beyond this (the core assumes a
	// bound). 0 means no drift at all.
	ClockDriftPPMMax int64
	// MaxLoss caps the per-link loss drawn (e.g. 0.5). 0 means no loss.
	MaxLoss float64
}

// MaxSwarmSteps bounds the schedule Swarm draws, so that even an adversarial
// Chooser (rapid likes extreme values) cannot make it run away.
const MaxSwarmSteps = 10000

// Swarm draws Rates (each fault class on or off with some probability, then
// its intensity) and a Schedule for the safety phase: Poisson processes of
// crashes, freezes, partitions (symmetric or one-way, between random pairs),
// serial cuts, clock drift changes, wall-clock jumps, fencing-agent breakages
// and admin commands, each outage undone after an exponential time of mean
// OutageMean unless the phase ends first (then Liveness undoes it). It tracks
// the cluster's state while drawing, so every step makes sense where it
// stands: a crashed node is not crashed again, only frozen nodes are thawed,
// and so on. Every step is strictly before Safety.
//
// All randomness comes from c, in a fixed order, so the same choices give the
// same result; a Chooser that answers 0 everywhere gives a quiet run.
func Swarm(c Chooser, opt SwarmOptions) (Rates, Schedule) {
	if opt.Nodes == 0 {
		opt.Nodes = 2
	}
	if opt.Nodes != 2 && opt.Nodes != 3 {
		panic(fmt.Sprintf("faults: Swarm needs 2 or 3 nodes, not %d", opt.Nodes))
	}
	if opt.Keepalive <= 0 {
		opt.Keepalive = time.Second
	}
	if opt.Deadtime <= 0 {
		opt.Deadtime = 30 * time.Second
	}
	r := drawRates(c, opt)
	g := &swarmGen{c: c, opt: opt, r: r, st: NewState(opt.Nodes)}
	g.run()
	return r, g.out.Sorted()
}

func drawRates(c Chooser, opt SwarmOptions) Rates {
	ka, dt, safety := opt.Keepalive, opt.Deadtime, opt.Safety
	r := Quiet()

	r.LatencyMin = logDur(c, 50*time.Microsecond, 500*time.Microsecond)
	if chance(c, 0.25) {
		// A congested or long-haul link: delays on the scale of the heartbeat
		// timing, up to half the deadtime, where false failovers hide.
		r.LatencyMean = r.LatencyMin + logDur(c, 200*time.Microsecond, ka/2)
		r.LatencyMax = r.LatencyMean + logDur(c, time.Millisecond, dt/2)
	} else {
		r.LatencyMean = r.LatencyMin + logDur(c, 100*time.Microsecond, 2*time.Millisecond)
		r.LatencyMax = r.LatencyMean + logDur(c, 500*time.Microsecond, 20*time.Millisecond)
	}
	if opt.MaxLoss > 0 && chance(c, 0.5) {
		r.Loss = min(logRange(c, 0.001, opt.MaxLoss), opt.MaxLoss)
	}
	if chance(c, 0.3) {
		r.Duplicate = logRange(c, 0.001, 0.1)
	}
	if chance(c, 0.3) {
		r.Reorder = logRange(c, 0.01, 0.3)
		r.ReorderDelay = logDur(c, r.LatencyMean, max(ka, r.LatencyMean))
	}

	bauds := []int{115200, 57600, 38400, 19200, 9600}
	r.SerialBaud = bauds[c.Intn(len(bauds))]
	if chance(c, 0.3) {
		r.SerialByteError = logRange(c, 1e-6, 1e-2)
	}

	r.FenceDuration = logDur(c, 500*time.Millisecond, 15*time.Second)
	if chance(c, 0.3) {
		r.FenceFail = logRange(c, 0.01, 0.5)
	}
	if chance(c, 0.2) {
		r.FenceTimeout = logRange(c, 0.01, 0.3)
	}
	r.ActionDuration = logDur(c, 10*time.Millisecond, 5*time.Second)
	if chance(c, 0.25) {
		r.StartFail = logRange(c, 0.01, 0.3)
	}
	if chance(c, 0.15) {
		r.StopFail = logRange(c, 0.005, 0.1)
	}
	if chance(c, 0.25) {
		r.MonitorFail = logRange(c, 0.001, 0.1)
	}

	if b := opt.ClockDriftPPMMax; b > 0 && chance(c, 0.7) {
		if chance(c, 0.3) {
			r.ClockDriftPPMMax = b // the edge the core's lease arithmetic must survive
		} else {
			r.ClockDriftPPMMax = min(b, max(1, int64(logRange(c, 10, float64(b)))))
		}
	}

	// Mean time between events: from once per safety phase to once per
	// deadtime (or 30 per phase, if that is rarer), so long and short phases
	// both see several events and outages do not simply overlap.
	every := func(p float64, perPhase time.Duration) time.Duration {
		if safety <= 0 || !chance(c, p) {
			return 0
		}
		return logDur(c, safety, max(perPhase, dt)).Round(time.Millisecond)
	}
	r.CrashEvery = every(0.5, safety/30)
	r.FreezeEvery = every(0.5, safety/30)
	r.PartitionEvery = every(0.5, safety/30)
	r.SerialCutEvery = every(0.4, safety/30)
	if r.ClockDriftPPMMax > 0 {
		r.ClockDriftEvery = every(0.3, safety/30)
	}
	r.ClockJumpEvery = every(0.3, safety/20)
	r.FenceBreakEvery = every(0.3, safety/20)
	r.AdminEvery = every(0.2, safety/5)

	// Outages in three regimes around deadtime: clean failures well past it,
	// blips well under it (must not fail over), and the ambiguous zone.
	switch c.Intn(3) {
	case 0:
		r.OutageMean = logDur(c, 2*dt, 5*dt)
	case 1:
		r.OutageMean = logDur(c, ka, dt/2)
	default:
		r.OutageMean = logDur(c, dt/2, 2*dt)
	}
	r.OutageMean = max(r.OutageMean.Round(time.Millisecond), time.Millisecond)
	return r
}

type swarmGen struct {
	c    Chooser
	opt  SwarmOptions
	r    Rates
	st   *State
	out  Schedule
	pend []Step // undo steps due later, in insertion order (which breaks ties)
}

// emit appends a step after applying it; generation never draws a step the
// state forbids, so an error here is a bug in this file.
func (g *swarmGen) emit(s Step) {
	if err := g.st.Apply(s); err != nil {
		panic("faults: swarm drew an inconsistent step " + s.String() + ": " + err.Error())
	}
	g.out = append(g.out, s.Canonical())
}

// later schedules undo after an outage, unless the phase ends first: then the
// fault lasts into Liveness, which undoes it.
func (g *swarmGen) later(t time.Duration, undo Step) {
	d := expDur(g.c, g.r.OutageMean)
	if d >= g.opt.Safety-t {
		return
	}
	undo.At = t + d
	g.pend = append(g.pend, undo)
}

// arrival is the next event time of a Poisson process after t, or never.
func (g *swarmGen) arrival(t, every time.Duration) time.Duration {
	if every <= 0 {
		return never
	}
	d := expDur(g.c, every)
	if d >= g.opt.Safety-t {
		return never
	}
	return t + d
}

type swarmClass struct {
	every, next time.Duration
	fire        func(t time.Duration)
}

func (g *swarmGen) run() {
	classes := []swarmClass{
		{every: g.r.CrashEvery, fire: g.crash},
		{every: g.r.FreezeEvery, fire: g.freeze},
		{every: g.r.PartitionEvery, fire: g.partition},
		{every: g.r.SerialCutEvery, fire: g.serialCut},
		{every: g.r.ClockDriftEvery, fire: g.clockDrift},
		{every: g.r.ClockJumpEvery, fire: g.clockJump},
		{every: g.r.FenceBreakEvery, fire: g.fenceBreak},
		{every: g.r.AdminEvery, fire: g.admin},
	}
	for i := range classes {
		classes[i].next = g.arrival(0, classes[i].every)
	}
	// Merge the processes in time order. Iterations are bounded too, since a
	// class event may find nothing eligible and emit nothing.
	for iter := 0; len(g.out) < MaxSwarmSteps && iter < 10*MaxSwarmSteps; iter++ {
		pi := -1
		for i, p := range g.pend {
			if pi < 0 || p.At < g.pend[pi].At {
				pi = i
			}
		}
		ci := -1
		for i, cl := range classes {
			if cl.next != never && (ci < 0 || cl.next < classes[ci].next) {
				ci = i
			}
		}
		switch {
		case pi >= 0 && (ci < 0 || g.pend[pi].At <= classes[ci].next):
			p := g.pend[pi]
			g.pend = slices.Delete(g.pend, pi, pi+1)
			g.undo(p)
		case ci >= 0:
			cl := &classes[ci]
			t := cl.next
			cl.fire(t)
			cl.next = g.arrival(t, cl.every)
		default:
			return
		}
	}
}

func (g *swarmGen) undo(s Step) {
	if s.Kind == Admin && g.st.Power[s.Node] != Up {
		// The operator cannot reach a node that is down or frozen; they try
		// again later.
		g.later(s.At, s)
		return
	}
	g.emit(s)
}

// pick returns a random member of the nodes for which ok holds, or -1.
func (g *swarmGen) pick(n int, ok func(i int) bool) int {
	var el []int
	for i := range n {
		if ok(i) {
			el = append(el, i)
		}
	}
	if len(el) == 0 {
		return -1
	}
	return el[g.c.Intn(len(el))]
}

func (g *swarmGen) crash(t time.Duration) {
	n := g.pick(g.opt.Nodes, func(i int) bool { return g.st.Power[i] != Down })
	if n < 0 {
		return
	}
	if g.st.Power[n] == Frozen {
		// A frozen machine that loses power is not thawed any more.
		g.pend = slices.DeleteFunc(g.pend, func(p Step) bool { return p.Kind == Thaw && p.Node == n })
	}
	g.emit(Step{At: t, Kind: Crash, Node: n})
	g.later(t, Step{Kind: Restart, Node: n})
}

func (g *swarmGen) freeze(t time.Duration) {
	n := g.pick(g.opt.Nodes, func(i int) bool { return g.st.Power[i] == Up })
	if n < 0 {
		return
	}
	g.emit(Step{At: t, Kind: Freeze, Node: n})
	g.later(t, Step{Kind: Thaw, Node: n})
}

func (g *swarmGen) partition(t time.Duration) {
	var pairs [][2]int
	for a := range g.opt.Nodes {
		for b := a + 1; b < g.opt.Nodes; b++ {
			if !g.st.Cut(a, b) && !g.st.Cut(b, a) {
				pairs = append(pairs, [2]int{a, b})
			}
		}
	}
	if len(pairs) == 0 {
		return
	}
	p := pairs[g.c.Intn(len(pairs))]
	if g.c.Intn(2) == 1 {
		p[0], p[1] = p[1], p[0]
	}
	oneWay := chance(g.c, 0.3)
	g.emit(Step{At: t, Kind: Partition, Node: p[0], Peer: p[1], OneWay: oneWay})
	g.later(t, Step{Kind: Heal, Node: p[0], Peer: p[1]})
}

func (g *swarmGen) serialCut(t time.Duration) {
	if g.st.SerialCut {
		return
	}
	g.emit(Step{At: t, Kind: CutSerial})
	g.later(t, Step{Kind: RestoreSerial})
}

func (g *swarmGen) clockDrift(t time.Duration) {
	n := g.c.Intn(g.opt.Nodes)
	b := g.r.ClockDriftPPMMax
	// 0..b fast, then 1..b slow, so a 0 draw means no drift.
	v := int64(g.c.Intn(int(2*b + 1)))
	if v > b {
		v = b - v
	}
	g.emit(Step{At: t, Kind: ClockDrift, Node: n, PPM: v})
}

func (g *swarmGen) clockJump(t time.Duration) {
	n := g.pick(g.opt.Nodes, func(i int) bool { return g.st.Power[i] != Down })
	if n < 0 {
		return
	}
	// From NTP slews to an hour's step (a VM resumed, a bad RTC).
	d := max(logDur(g.c, 10*time.Millisecond, time.Hour).Truncate(time.Millisecond), time.Millisecond)
	if g.c.Intn(2) == 1 {
		d = -d
	}
	g.emit(Step{At: t, Kind: ClockJump, Node: n, Delta: d})
}

func (g *swarmGen) fenceBreak(t time.Duration) {
	n := g.pick(min(g.opt.Nodes, 2), func(i int) bool { return !g.st.FenceBroken(i) })
	if n < 0 {
		return
	}
	mode := FenceModes[g.c.Intn(2)] // "fail" or "timeout"
	g.emit(Step{At: t, Kind: FenceBreak, Node: n, Mode: mode})
	g.later(t, Step{Kind: FenceBreak, Node: n, Mode: "ok"})
}

func (g *swarmGen) admin(t time.Duration) {
	n := g.pick(2, func(i int) bool { return g.st.Power[i] == Up && !g.st.Standby[i] })
	if n < 0 {
		return
	}
	cmd := []string{"cleanup", "takeover", "standby"}[g.c.Intn(3)]
	if cmd == "standby" && g.st.Standby[1-n] {
		cmd = "cleanup" // keep one data node willing to run the service
	}
	g.emit(Step{At: t, Kind: Admin, Node: n, Command: cmd})
	if cmd == "standby" {
		g.later(t, Step{Kind: Admin, Node: n, Command: "online"})
	}
}
