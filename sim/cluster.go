// Package sim runs real internal/node state machines in a simulated world:
// one goroutine, a virtual clock, a priority queue of events and one root
// seed from which every random choice derives. Machines crash, restart,
// freeze and drift; network links lose, duplicate, delay and reorder packets
// and can be partitioned one way or both; the serial cable is a baud-limited
// byte stream with noise that can be cut; resource and fencing agents take
// time and fail. Checkers watch every instant for the properties of
// DESIGN.md §3 that apply to membership and failover.
//
// Fault model, and what it does not verify: faults are fail-stop crashes,
// pauses, message loss/duplication/reordering/delay, byte noise on the serial
// line, clock rate drift within the bound the nodes are configured with, and
// wall-clock steps (which the core ignores: it runs on monotonic time).
// Byzantine peers, drift beyond the configured bound and forged packets are
// out of scope here; replicated data arrives with the replication work.
package sim

import (
	"fmt"
	"io"
	"time"

	"tandem/faults"
	"tandem/internal/meta"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
	"tandem/internal/wire"
)

// Options describe one run.
type Options struct {
	Seed  uint64
	Nodes int // 2, or 3 with a witness
	// Names of the nodes; default server1, server2, witness.
	Names []string
	// Node is the base config of every node (Self, Names, IsWitness and
	// Media are filled in per node). Zero durations take the defaults below.
	Node node.Config
	// Serial: the data nodes also have a null-modem cable. Default true
	// (set NoSerial to leave it out).
	NoSerial bool
	// Rates is the environment; Schedule the timed faults of the safety phase.
	Rates    faults.Rates
	Schedule faults.Schedule
	// Safety is how long faults happen; Liveness how long the cluster then
	// gets to settle before convergence is checked (0: no liveness check).
	Safety, Liveness time.Duration
	// Trace receives one line per event; nil for none (faster).
	Trace io.Writer
	// MaxEvents stops a run that generates an absurd number of events (a
	// livelock); 0 means no limit.
	MaxEvents int
	// Replication, if set, gives the data nodes replicated disks, a
	// replication link and (optionally) an application workload.
	Replication *ReplicationOptions
}

// DefaultNode is the config the simulator and the demo use when none is
// given: the tutorial's group, fast test timings.
func DefaultNode() node.Config {
	return node.Config{
		Keepalive:    100 * time.Millisecond,
		Deadtime:     2 * time.Second,
		Warntime:     time.Second,
		Initdead:     4 * time.Second,
		Fencing:      node.FenceStonith,
		FenceDelay:   2 * time.Second,
		FenceTimeout: 5 * time.Second,
		FenceRetry:   2 * time.Second,
		Preferred:    0,
		Group: []node.Resource{
			{Name: "disk", StartTimeout: 10 * time.Second, StopTimeout: 10 * time.Second},
			{Name: "fs:/replicated", StartTimeout: 10 * time.Second, StopTimeout: 10 * time.Second, MonitorInterval: 10 * time.Second},
			{Name: "ip:192.168.1.5/24", StartTimeout: 10 * time.Second, StopTimeout: 10 * time.Second, MonitorInterval: 5 * time.Second},
			{Name: "service:sendmail", StartTimeout: 10 * time.Second, StopTimeout: 10 * time.Second, MonitorInterval: 5 * time.Second},
		},
	}
}

// Mark is a moment of a run: when, which node, on what grounds.
type Mark struct {
	At      time.Duration
	Node    int
	Grounds node.Grounds
}

// Violation is a broken property at an instant.
type Violation struct {
	At       time.Duration
	Property string
	Detail   string
}

func (v Violation) String() string {
	return fmt.Sprintf("%v %s: %s", fmtDur(v.At), v.Property, v.Detail)
}

// Result is what a run did.
type Result struct {
	Simulated      time.Duration
	Events         int
	Failovers      int // takeovers after the holder was declared dead
	FalseFailovers int // ... while the old holder was in fact powered on
	Handovers      int // acquisitions by agreement after the other node held
	SplitBrains    int // dual-primary episodes (only legal with fencing none)
	Fences         int
	Violations     []Violation
	// Timeline of group moves: acquisitions and arrivals in Primary.
	Acquisitions []Mark
	Primaries    []Mark
	// Final states and who is primary at the end (-1: nobody).
	Final   []proto.State
	Primary int
	// Repl: data figures (with Options.Replication).
	Repl ReplResult
}

type evKind uint8

const (
	evTick evKind = iota + 1
	evInput
	evFault
	evFenceEffect
	evLiveness
	evRestart
	evDisk
	evReplMsg
	evConnect
	evWorkload
	evOperator
)

type event struct {
	kind evKind
	node int
	inc  uint64 // machine incarnation the event belongs to
	step int    // schedule index, for evFault
	in   node.Input
	// from is the sender of a delivered heartbeat (for the delivery log).
	from int
	// Replication: a disk operation's buffer, a metadata record to
	// persist, a message's payload.
	buf  repl.BufRef
	rec  *meta.Record
	data []uint64
}

// Sim is one simulated cluster.
type Sim struct {
	opt      Options
	rnd      *Rand
	q        Queue[event]
	now      time.Duration
	machines []*machine
	netDown  [proto.MaxNodes][proto.MaxNodes]bool
	link     LinkParams
	serial   SerialLine
	deframer [2]wire.Deframer
	rates    faults.Rates
	liveness bool
	res      Result
	sendBuf  []time.Duration
	frameBuf []byte
	recvBuf  []byte
	pktBuf   []byte
	// lastDelivery[from][to] is the last instant a heartbeat from `from`
	// reached `to` on any medium (global time), for the silence checker.
	lastDelivery [proto.MaxNodes][proto.MaxNodes]time.Duration
	delivered    [proto.MaxNodes][proto.MaxNodes]bool
	// lastWitnessGrant[n]: last delivery to n of a witness heartbeat that
	// granted n its vote.
	lastWitnessGrant [proto.MaxNodes]time.Duration
	// fencedAt[by][target]: instant by's agent powered target off.
	fencedAt [proto.MaxNodes][proto.MaxNodes]time.Duration
	holder   int // last node that acquired, -1 none
	episode  splitEpisode
	checks   checker
	repl     *replState
	observer func(node int, o *node.Output) // see Observe (sim/script.go)
}

type splitEpisode struct {
	open     bool
	reported bool
	start    time.Duration
}

type machine struct {
	id          int
	name        string
	cfg         node.Config
	n           *node.Node
	up, frozen  bool
	incarnation uint64
	boot        time.Duration
	clock       *Clock
	tickAt      time.Duration
	tickSet     bool
	buffered    []node.Input
	fenceMode   string
	breaks      map[[2]int]int // (resource, op) -> remaining failures
	peerWasUp   bool           // was the data peer powered on when declared dead
	rnd         *Rand
	r           *machineRepl // nil without replication (and on the witness)
}

// New builds a run; call Run.
func New(opt Options) (*Sim, error) {
	if opt.Nodes == 0 {
		opt.Nodes = 2
	}
	if opt.Nodes != 2 && opt.Nodes != 3 {
		return nil, fmt.Errorf("nodes: want 2 or 3, got %d", opt.Nodes)
	}
	if len(opt.Names) == 0 {
		opt.Names = []string{"server1", "server2", "witness"}[:opt.Nodes]
	}
	if opt.Node.Keepalive == 0 && opt.Node.Group == nil {
		base := DefaultNode()
		if opt.Node.Fencing != 0 {
			base.Fencing = opt.Node.Fencing
		}
		base.AutoFailback = opt.Node.AutoFailback
		opt.Node = base
	}
	s := &Sim{opt: opt, rnd: NewRand(opt.Seed), rates: opt.Rates, holder: -1}
	s.applyRates()
	for i := 0; i < opt.Nodes; i++ {
		cfg := opt.Node
		cfg.Self = proto.NodeID(i)
		cfg.Names = opt.Names
		cfg.IsWitness = i == 2
		cfg.Media = s.media(i)
		cfg = cfg.WithDefaults()
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("node %s: %w", opt.Names[i], err)
		}
		m := &machine{id: i, name: opt.Names[i], cfg: cfg, rnd: s.rnd.Fork(uint64(100 + i)), breaks: map[[2]int]int{}}
		drift := int64(0)
		if s.rates.ClockDriftPPMMax > 0 {
			drift = int64(m.rnd.Intn(int(2*s.rates.ClockDriftPPMMax+1))) - s.rates.ClockDriftPPMMax
		}
		// Each machine's monotonic clock starts at an arbitrary reading, so
		// nothing can rely on clocks agreeing.
		m.clock = NewClock(0, proto.Time(m.rnd.Intn(1<<30))*1000, drift)
		s.machines = append(s.machines, m)
	}
	s.checks.sim = s
	if s.replicationOn() {
		if err := s.initReplication(); err != nil {
			return nil, fmt.Errorf("replication: %w", err)
		}
	}
	return s, nil
}

func (s *Sim) media(i int) []node.Medium {
	var peers []proto.NodeID
	for j := 0; j < s.opt.Nodes; j++ {
		if j != i {
			peers = append(peers, proto.NodeID(j))
		}
	}
	media := []node.Medium{{ID: 0, Kind: proto.Network, Name: "net0", Peers: peers}}
	if i < 2 && !s.opt.NoSerial {
		media = append(media, node.Medium{ID: 1, Kind: proto.Serial, Name: "serial0", Peers: []proto.NodeID{proto.NodeID(1 - i)}})
	}
	return media
}

func (s *Sim) applyRates() {
	r := s.rates
	s.link = LinkParams{LatencyMin: r.LatencyMin, LatencyMean: r.LatencyMean, LatencyMax: r.LatencyMax,
		Loss: r.Loss, Duplicate: r.Duplicate, Reorder: r.Reorder, ReorderDelay: r.ReorderDelay}
	if s.link.LatencyMax == 0 {
		s.link.LatencyMin, s.link.LatencyMean, s.link.LatencyMax = 100*time.Microsecond, 300*time.Microsecond, 5*time.Millisecond
	}
	cut := s.serial.Cut
	s.serial.Baud = r.SerialBaud
	if s.serial.Baud == 0 {
		s.serial.Baud = 19200
	}
	s.serial.ByteError = r.SerialByteError
	s.serial.WriteTimeout = time.Second
	s.serial.Cut = cut
}

// Run plays the safety phase, then the liveness phase, and checks.
func (s *Sim) Run() Result {
	s.tracef("legend: ! crash  ^ restart  ~ freeze  = thaw  / partition  | heal  x serial cut  o serial restored  @ clock")
	s.tracef("        D peer dead  A peer alive  L late heartbeat  F fence  + fenced  - fence failed  P acquired  S state")
	s.tracef("        B split brain  R resource failure  Q quorum lost  # operator  V violation  * phase")
	s.tracef("* seed=%d nodes=%d fencing=%s keepalive=%v deadtime=%v %s", s.opt.Seed, s.opt.Nodes, s.machines[0].cfg.Fencing,
		s.machines[0].cfg.Keepalive, s.machines[0].cfg.Deadtime, s.rates.Describe())
	for _, m := range s.machines {
		s.boot(m)
	}
	for i, st := range s.opt.Schedule {
		if st.At <= s.opt.Safety {
			s.q.Push(st.At, event{kind: evFault, step: i})
		}
	}
	s.q.Push(s.opt.Safety, event{kind: evLiveness})
	if s.repl != nil && s.repl.opt.Workload != NoWorkload {
		s.q.Push(time.Second, event{kind: evWorkload})
	}
	end := s.opt.Safety + s.opt.Liveness
	for {
		at, ok := s.q.PeekAt()
		if !ok || at > end {
			break
		}
		_, e, _ := s.q.Pop()
		s.now = at
		s.res.Events++
		if s.opt.MaxEvents > 0 && s.res.Events > s.opt.MaxEvents {
			s.violate("liveness", fmt.Sprintf("more than %d events: livelock?", s.opt.MaxEvents))
			break
		}
		s.dispatch(e)
	}
	s.now = end
	s.res.Simulated = end
	if s.opt.Liveness > 0 {
		s.checks.final()
	}
	if s.repl != nil {
		s.finalRepl()
		s.res.Repl = s.repl.events
	}
	s.res.Primary = -1
	for _, m := range s.machines {
		st := proto.State(0)
		if m.up && m.n != nil {
			st = m.n.State()
			if st == proto.Primary {
				s.res.Primary = m.id
			}
		}
		s.res.Final = append(s.res.Final, st)
	}
	return s.res
}

func (s *Sim) dispatch(e event) {
	switch e.kind {
	case evFault:
		s.applyStep(s.opt.Schedule[e.step])
	case evLiveness:
		s.startLiveness()
	case evRestart:
		m := s.machines[e.node]
		if !m.up && e.inc == m.incarnation {
			s.tracef("^ %-8s restarts after being fenced", m.name)
			s.boot(m)
		}
	case evFenceEffect:
		s.fenceEffect(e)
	case evDisk:
		s.diskEvent(e)
	case evReplMsg:
		s.replMsgEvent(e)
	case evConnect:
		s.connectEvent()
	case evOperator:
		s.operatorSplitBrain()
	case evWorkload:
		if !s.liveness || s.now < s.opt.Safety+s.opt.Liveness/2 {
			s.workloadEvent()
		}
	case evTick:
		m := s.machines[e.node]
		if e.inc != m.incarnation || !m.up || !m.tickSet || m.tickAt != s.now {
			return // stale: a later deadline replaced it, or the machine rebooted
		}
		m.tickSet = false
		if m.frozen {
			return
		}
		s.step(m, node.Input{Kind: node.Tick})
	case evInput:
		m := s.machines[e.node]
		if e.inc != m.incarnation || !m.up {
			return
		}
		s.input(m, e.in)
	}
}

// input hands an input to a running machine; a frozen one finds it queued
// when it thaws (the kernel queues packets and pipe data for a stopped
// process; a full socket buffer drops the rest).
func (s *Sim) input(m *machine, in node.Input) {
	if m.frozen {
		if len(m.buffered) < 256 || in.Kind != node.Receive {
			m.buffered = append(m.buffered, in)
		}
		return
	}
	s.step(m, in)
}

func (s *Sim) recordDelivery(from, to int, hb *proto.Heartbeat) {
	s.lastDelivery[from][to] = s.now
	s.delivered[from][to] = true
	if from == 2 && hb.GrantTo == proto.NodeID(to) {
		s.lastWitnessGrant[to] = s.now
	}
}

func (s *Sim) boot(m *machine) {
	m.incarnation++
	m.up, m.frozen = true, false
	m.buffered = m.buffered[:0]
	m.boot = s.now
	m.tickSet = false
	for j := range s.machines {
		s.delivered[j][m.id] = false
	}
	n, err := node.New(m.cfg, m.clock.Local(s.now), m.incarnation, m.rnd.Uint64())
	if err != nil {
		panic(fmt.Sprintf("config validated at start no longer valid: %v", err))
	}
	m.n = n
	s.attach(m)
	s.step(m, node.Input{Kind: node.Tick})
}

func (s *Sim) step(m *machine, in node.Input) {
	if in.Kind == node.Receive {
		// Delivered means read by the node: a frozen node's socket buffer
		// does not count until it thaws and reads it.
		s.recordDelivery(int(in.Msg.From), m.id, &in.Msg)
	}
	local := m.clock.Local(s.now)
	before := m.n.State()
	outs := m.n.Step(local, in)
	for i := range outs {
		s.perform(m, &outs[i])
	}
	if m.n.State() != before {
		s.checks.stateChanged(m, before)
	}
	s.schedule(m)
}

// schedule makes sure a tick is queued for the node's next deadline.
func (s *Sim) schedule(m *machine) {
	at := m.clock.GlobalAt(m.n.Deadline())
	if at <= s.now {
		at = s.now + time.Microsecond
	}
	if m.tickSet && m.tickAt <= at {
		return
	}
	m.tickSet, m.tickAt = true, at
	s.q.Push(at, event{kind: evTick, node: m.id, inc: m.incarnation})
}

func (s *Sim) perform(m *machine, o *node.Output) {
	switch o.Kind {
	case node.Send:
		s.send(m, o)
	case node.Action:
		s.action(m, o)
	case node.Fence:
		s.fence(m, o)
	case node.Emit:
		s.observe(m, &o.Event)
	case node.Replicate:
		s.replicate(m, &o.Repl)
	}
	if s.observer != nil {
		s.observer(m.id, o)
	}
}

func (s *Sim) send(m *machine, o *node.Output) {
	to := int(o.To)
	if to >= len(s.machines) {
		return
	}
	dst := s.machines[to]
	if o.Medium == 1 {
		s.sendSerial(m, dst, o)
		return
	}
	p := s.link
	p.Down = s.netDown[m.id][to]
	s.sendBuf = p.Deliver(s.now, m.rnd, s.sendBuf[:0])
	for _, at := range s.sendBuf {
		s.q.Push(at, event{kind: evInput, node: to, inc: dst.incarnation, from: m.id,
			in: node.Input{Kind: node.Receive, Medium: o.Medium, Msg: o.Msg}})
	}
}

// sendSerial encodes the heartbeat, frames it, pushes the bytes through the
// noisy cable and decodes whatever the far end's deframer makes of them.
func (s *Sim) sendSerial(m, dst *machine, o *node.Output) {
	dir := m.id // 0: server1 -> server2
	s.pktBuf = wire.AppendHeartbeat(s.pktBuf[:0], &o.Msg, nil)
	s.frameBuf = wire.AppendFrame(s.frameBuf[:0], s.pktBuf)
	arrive, received, ok := s.serial.Transmit(s.now, dir, s.frameBuf, m.rnd, s.recvBuf[:0])
	if !ok {
		return
	}
	s.recvBuf = received
	d := &s.deframer[dir]
	d.Write(received)
	for {
		pkt, ok := d.Next()
		if !ok {
			break
		}
		var hb proto.Heartbeat
		if err := wire.DecodeHeartbeat(pkt, &hb, nil); err != nil {
			continue // noise: dropped and counted by the line's statistics
		}
		s.q.Push(arrive, event{kind: evInput, node: dst.id, inc: dst.incarnation, from: m.id,
			in: node.Input{Kind: node.Receive, Medium: o.Medium, Msg: hb}})
	}
}

func (s *Sim) action(m *machine, o *node.Output) {
	ops := [...]string{node.Start: "start", node.Stop: "stop", node.Monitor: "monitor"}
	key := [2]int{o.Resource, int(o.Op)}
	fail := false
	if s.liveness {
		fail = false
	} else if m.breaks[key] > 0 {
		m.breaks[key]--
		fail = true
	} else {
		switch o.Op {
		case node.Start:
			fail = m.rnd.Chance(s.rates.StartFail)
		case node.Stop:
			fail = m.rnd.Chance(s.rates.StopFail)
		case node.Monitor:
			fail = m.rnd.Chance(s.rates.MonitorFail)
		}
	}
	took := m.rnd.Exp(s.actionMean(o.Op))
	if s.liveness && took > o.Timeout/2 {
		took = o.Timeout / 2 // healthy agents answer well within their timeouts
	}
	in := node.Input{Kind: node.ActionDone, ID: o.ID, OK: !fail}
	if fail {
		in.Err = "simulated " + ops[o.Op] + " failure"
	}
	s.q.Push(s.now+took, event{kind: evInput, node: m.id, inc: m.incarnation, in: in})
}

func (s *Sim) actionMean(op node.Op) time.Duration {
	d := s.rates.ActionDuration
	if d == 0 {
		d = 50 * time.Millisecond
	}
	if op == node.Monitor {
		d /= 5
	}
	return d
}

func (s *Sim) fence(m *machine, o *node.Output) {
	s.res.Fences++
	mode := m.fenceMode
	if mode == "" && !s.liveness {
		switch {
		case m.rnd.Chance(s.rates.FenceFail):
			mode = "fail"
		case m.rnd.Chance(s.rates.FenceTimeout):
			mode = "timeout"
		}
	}
	mean := s.rates.FenceDuration
	if mean == 0 {
		mean = time.Second
	}
	took := mean/2 + m.rnd.Exp(mean/2)
	if s.liveness && took > m.cfg.FenceTimeout/2 {
		took = m.cfg.FenceTimeout / 2 // a healthy agent answers well within its timeout
	}
	switch mode {
	case "timeout":
		return // the agent never answers; the node's own timeout fires
	case "fail":
		s.q.Push(s.now+took, event{kind: evInput, node: m.id, inc: m.incarnation,
			in: node.Input{Kind: node.FenceDone, ID: o.ID, OK: false, Err: "simulated agent failure"}})
		return
	}
	s.q.Push(s.now+took, event{kind: evFenceEffect, node: m.id, inc: m.incarnation, step: int(o.Target),
		in: node.Input{Kind: node.FenceDone, ID: o.ID, OK: true}})
}

// fenceEffect: the power switch acts, then the agent reports success.
func (s *Sim) fenceEffect(e event) {
	by := s.machines[e.node]
	if e.inc != by.incarnation || !by.up {
		return // the node that asked died; its agent's command was never sent
	}
	t := s.machines[e.step]
	if t.up {
		s.tracef("! %-8s powered off by %s's fencing agent", t.name, by.name)
		t.up = false
		t.n = nil
		s.crashRepl(t)
		// A fencing agent reboots by default: the machine comes back.
		s.q.Push(s.now+by.rnd.Between(2*by.cfg.Deadtime, 6*by.cfg.Deadtime), event{kind: evRestart, node: t.id, inc: t.incarnation})
	}
	s.fencedAt[by.id][t.id] = s.now
	s.input(by, e.in)
}

// traceSymbols are the legend's one-letter marks for node events.
var traceSymbols = [...]string{
	node.PeerDead: "D", node.PeerAlive: "A", node.LateHeartbeat: "L",
	node.FenceStarted: "F", node.FenceSucceeded: "+", node.FenceFailed: "-",
	node.SplitBrain: "B", node.ResourceFailed: "R", node.QuorumLost: "Q",
	node.AdminRefused: "#", node.Note: "#",
}

func (s *Sim) observe(m *machine, ev *node.Event) {
	switch ev.Kind {
	case node.Acquired:
		s.tracef("P %-8s acquired the group, epoch %d: %s", m.name, ev.Epoch, ev.Reason)
		s.res.Acquisitions = append(s.res.Acquisitions, Mark{At: s.now, Node: m.id, Grounds: ev.Grounds})
		s.checks.acquired(m, ev)
		return
	case node.StateChanged:
		s.tracef("S %-8s %s -> %s: %s", m.name, ev.From, ev.To, ev.Reason)
		if ev.To == proto.Primary {
			s.res.Primaries = append(s.res.Primaries, Mark{At: s.now, Node: m.id})
		}
		if ev.To == proto.Blocked {
			s.operatorCleanup(m)
		}
		return
	case node.PeerDead:
		if int(ev.Peer) < 2 && m.id < 2 {
			m.peerWasUp = s.machines[ev.Peer].up
		}
	case node.SplitBrain:
		s.episode.reported = true
	case node.ResourceFailed:
		s.operatorCleanup(m)
	}
	if int(ev.Kind) < len(traceSymbols) && traceSymbols[ev.Kind] != "" {
		s.tracef("%s %-8s %s", traceSymbols[ev.Kind], m.name, ev.Reason)
	}
}

// operatorCleanup: in the liveness phase an operator reacts to a failed
// resource (an action that was already failing when the faults stopped) by
// cleaning it up a second later, as a human would.
func (s *Sim) operatorCleanup(m *machine) {
	if !s.liveness {
		return
	}
	s.q.Push(s.now+time.Second, event{kind: evInput, node: m.id, inc: m.incarnation, from: -1,
		in: node.Input{Kind: node.AdminCommand, Admin: node.Cleanup}})
}

func (s *Sim) tracef(format string, args ...any) {
	if s.opt.Trace == nil {
		return
	}
	fmt.Fprintf(s.opt.Trace, "%10s ", fmtDur(s.now))
	fmt.Fprintf(s.opt.Trace, format, args...)
	io.WriteString(s.opt.Trace, "\n")
}

func (s *Sim) violate(property, detail string) {
	// The first few say everything; thousands more would drown the trace.
	if len(s.res.Violations) >= 20 {
		return
	}
	v := Violation{At: s.now, Property: property, Detail: detail}
	s.res.Violations = append(s.res.Violations, v)
	s.tracef("V %s: %s", property, detail)
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%d.%03ds", d/time.Second, (d%time.Second)/time.Millisecond)
}
