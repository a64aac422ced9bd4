// Package scenarios is the scenario language: small, line-oriented text files
// (*.scn) that describe a cluster, a timeline of workload and faults, and what
// must be true as a result. LANGUAGE.md is the reference; library/ holds the
// scenarios worth keeping.
//
// This package parses and prints scenarios; it does not run them. Parse
// checks everything that can be checked without running: words, names,
// numbers, units, policies, the order of time, and whether each step makes
// sense in the machine states the earlier steps leave (no restart of a
// running node). A runner executes the result: Scenario.Timeline gives the
// steps with every "for" window expanded into its undo step, and
// Expect.Window says over which span and how each expectation is judged.
package scenarios

import (
	"fmt"
	"math"
	"time"

	"tandem/internal/node"
	"tandem/internal/repl"
)

// Pos is where something was written: 1-based line and column (in bytes).
type Pos struct {
	File      string
	Line, Col int
}

// String prints file:line:col.
func (p Pos) String() string { return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col) }

// Scenario is one parsed scenario file.
type Scenario struct {
	// Name is the file's base name without ".scn"; File is the name given
	// to Parse (used in positions).
	Name, File string
	// Doc is the header comment (the block of comment lines at the top of
	// the file), without the "#" marks, one line per line.
	Doc     string
	Cluster Cluster
	// Steps in file order, which is time order (Parse rejects a time going
	// backwards). "for" windows are not expanded here: see Timeline.
	Steps []Step
	// Expects in file order.
	Expects []Expect
}

// Node indices are those of internal/node and the simulator: 0 and 1 are the
// data nodes in the order the cluster line names them (0 is the preferred
// node, as the first node of haresources), 2 is the witness.
const (
	// AnyNode in Step.Node: for workload steps, whichever node is primary at
	// that instant; for Heal, every link. In Expect.Node: "none" for
	// CondPrimary, any node for CondFailover and CondSplitBrainResolved.
	AnyNode = -1
	// WitnessNode is the witness's index.
	WitnessNode = 2
)

// Cluster is the cluster line. Zero fields mean "the default";
// WithDefaults fills them in.
type Cluster struct {
	Pos Pos
	// Nodes are the node names, indexed by node id: the two data nodes,
	// then the witness if there is one.
	Nodes []string
	// Protocol is the replication protocol. Default C.
	Protocol repl.Protocol
	// Fencing is the split-brain policy. Default none.
	Fencing node.Fencing
	// Heartbeat timings as in ha.cf. Defaults those of node.Config:
	// keepalive 1s, deadtime 30s, warntime deadtime/2, initdead 2×deadtime.
	Keepalive, Warntime, Deadtime, Initdead time.Duration
	// FenceDelay, FenceTimeout: as node.Config (defaults 5s and 20s).
	// FenceTime is how long the simulated fencing agent takes to power a
	// node off (default 2s).
	FenceDelay, FenceTimeout, FenceTime time.Duration
	// AutoFailback: the preferred node (Nodes[0]) takes the group back
	// when it returns. Default off.
	AutoFailback bool
	// Group is the resource group after the replicated disk, which is
	// always its first, implicit member: e.g. "ip:192.168.1.5/24",
	// "fs:/replicated", "service:sendmail". Started left to right.
	Group []string
	// DiskBytes is the replicated data area size, a multiple of 4 KiB.
	// Default 16 MiB.
	DiskBytes uint64
	// Split-brain recovery policies (default disconnect each); DiscardNode
	// is the node named by after-sb-0pri discard-node-NAME (else AnyNode).
	AfterSB0    repl.SB0
	DiscardNode int
	AfterSB1    repl.SB1
	AfterSB2    repl.SB2
	// OnIOError: detach (default) or pass_on.
	OnIOError repl.OnIOError
	// ResyncRate caps resync traffic, in bytes per second (a multiple of
	// 4 KiB). Default 100 MiB/s.
	ResyncRate uint64
	// NoSerial: the data nodes have no serial cable (default: they have one).
	NoSerial bool
}

// Default values of the cluster line, for fields left out. Timings and
// policies come from node.Config and repl.Config so that a scenario without
// them behaves as the daemon without them.
const (
	DefaultDiskBytes  = 16 << 20
	DefaultFenceTime  = 2 * time.Second
	DefaultResyncRate = 100 << 20
)

// HasWitness reports whether the cluster has a witness node.
func (c *Cluster) HasWitness() bool { return len(c.Nodes) == 3 }

// DiskBlocks is the replicated data area in 4 KiB blocks (after defaults).
func (c *Cluster) DiskBlocks() uint64 {
	if c.DiskBytes == 0 {
		return DefaultDiskBytes / BlockSize
	}
	return c.DiskBytes / BlockSize
}

// WithDefaults returns the cluster with every zero field set to its default.
func (c Cluster) WithDefaults() Cluster {
	nc := node.Config{Keepalive: c.Keepalive, Warntime: c.Warntime, Deadtime: c.Deadtime,
		Initdead: c.Initdead, Fencing: c.Fencing, FenceDelay: c.FenceDelay,
		FenceTimeout: c.FenceTimeout}.WithDefaults()
	c.Keepalive, c.Warntime, c.Deadtime, c.Initdead = nc.Keepalive, nc.Warntime, nc.Deadtime, nc.Initdead
	c.Fencing, c.FenceDelay, c.FenceTimeout = nc.Fencing, nc.FenceDelay, nc.FenceTimeout
	rc := repl.Config{Protocol: c.Protocol, AfterSB0: c.AfterSB0, AfterSB1: c.AfterSB1,
		AfterSB2: c.AfterSB2, OnIOError: c.OnIOError}.WithDefaults()
	c.Protocol, c.AfterSB0, c.AfterSB1, c.AfterSB2, c.OnIOError = rc.Protocol, rc.AfterSB0, rc.AfterSB1, rc.AfterSB2, rc.OnIOError
	if c.FenceTime == 0 {
		c.FenceTime = DefaultFenceTime
	}
	if c.DiskBytes == 0 {
		c.DiskBytes = DefaultDiskBytes
	}
	if c.ResyncRate == 0 {
		c.ResyncRate = DefaultResyncRate
	}
	c.Nodes = append([]string(nil), c.Nodes...)
	c.Group = append([]string(nil), c.Group...)
	return c
}

// BlockSize is the unit of block counts and ranges (DRBD's bitmap granule).
const BlockSize = 4096

// Range is a range of blocks: Count blocks from First; Count 0 means up to
// the end of the disk (so the zero Range is the whole disk).
type Range struct {
	First, Count uint64
}

// StepKind says what a step does. Each kind's comment names the Step fields
// it uses besides At, For and Pos.
type StepKind uint8

const (
	// Write and Read: the application writes (with unique, checkable
	// contents) or reads Blocks blocks chosen by the runner, or, if Blocks
	// is 0, the blocks of Range; on Node (AnyNode: the primary of the
	// moment). With For, the requests are spread evenly over the window.
	Write StepKind = iota + 1
	Read
	// Flush: the application flushes on Node (AnyNode: the primary).
	Flush

	// Crash powers Node off (in-memory state and unflushed disk cache
	// lost); Restart powers it back on. Freeze pauses it (time passes, it
	// runs nothing, packets queue); Thaw resumes it. Stop is a clean
	// "heartbeat stop": Node hands the group over as standby would, then
	// its daemon exits; Start starts the daemon again.
	Crash
	Restart
	Freeze
	Thaw
	Stop
	Start

	// Partition cuts every network path between Node and Peer (OneWay:
	// only Node→Peer). Heal lifts partitions and link faults between Node
	// and Peer, or everywhere if Node is AnyNode.
	Partition
	Heal
	// Drop loses Percent % of the packets between Node and Peer; Duplicate
	// delivers Percent % twice; Delay adds Delay to each. OneWay: only
	// Node→Peer. Percent or Delay 0 restores the link.
	Drop
	Duplicate
	Delay
	// Flap partitions Node and Peer every Every for Down, for the step's
	// For window. Timeline expands it.
	Flap
	// CutSerial and RestoreSerial cut and reconnect the serial cable.
	CutSerial
	RestoreSerial

	// DiskFail: Node's disk dies; every I/O fails. DiskReplace puts in a
	// blank, working disk. DiskHeal ends every injected fault on Node's
	// disk (data stays as it is).
	DiskFail
	DiskReplace
	DiskHeal
	// ReadErrors: reads of Range on Node's disk fail with EIO (latent
	// sector errors) until the blocks are rewritten or DiskHeal.
	ReadErrors
	// WriteErrors: writes to Range on Node's disk fail with EIO.
	WriteErrors
	// Corrupt flips bits of the stored blocks of Range on Node's disk,
	// silently: only their checksums can tell.
	Corrupt
	// LoseWrites: writes to Range on Node's disk report success but change
	// nothing (lost writes: only an online verify can tell).
	LoseWrites
	// Stall: Node's disk stops answering; queued I/O completes at DiskHeal.
	Stall
	// DiskFull: writes touching blocks from Range.First on fail with ENOSPC
	// (Range.Count is 0).
	DiskFull

	// ClockJump steps Node's wall clock by Delta (monotonic time is not
	// affected). ClockDrift sets Node's clock rate error to PPM.
	ClockJump
	ClockDrift
	// FenceAgent sets Node's fencing agent to Mode "fail" (reports
	// failure), "timeout" (never answers) or "ok".
	FenceAgent
	// ResourceFail: on Node, group member Cluster.Group[Resource] fails its
	// next Count actions Op ("start", "stop" or "monitor").
	ResourceFail

	// Operator commands on Node. Primary (Force: even a disk that is not
	// UpToDate, `primary --force`), Secondary, Connect (DiscardMyData:
	// this node is the split-brain victim), Disconnect, Verify, Invalidate,
	// Detach, PauseSync and ResumeSync are drbdadm's; Standby, Online,
	// Takeover and Cleanup are the cluster manager's.
	Primary
	Secondary
	Connect
	Disconnect
	Verify
	Invalidate
	Detach
	PauseSync
	ResumeSync
	Standby
	Online
	Takeover
	Cleanup

	// End ends the run at At.
	End

	numStepKinds
)

// String returns the kind's verb in the scenario language, e.g. "cut-serial".
func (k StepKind) String() string {
	if k > 0 && k < numStepKinds {
		return stepSpecs[k].verb
	}
	return fmt.Sprintf("StepKind(%d)", uint8(k))
}

// Step is one timed statement: `at <At> [for <For>] <verb> <args>`. Only the
// fields its Kind uses are set; the others are zero (Node and Peer are
// AnyNode where unused).
type Step struct {
	Pos  Pos
	At   time.Duration
	For  time.Duration // 0: no window
	Kind StepKind

	Node, Peer    int
	OneWay        bool
	Blocks        uint64 // Write, Read: number of blocks (0: Range is used)
	Range         Range
	Percent       float64       // Drop, Duplicate: 0..100
	Delay         time.Duration // Delay
	Every, Down   time.Duration // Flap
	Delta         time.Duration // ClockJump
	PPM           int64         // ClockDrift
	Mode          string        // FenceAgent: fail, timeout, ok; ResourceFail: start, stop, monitor
	Resource      int           // ResourceFail: index into Cluster.Group
	Count         int           // ResourceFail: how many actions fail
	Force         bool          // Primary
	DiscardMyData bool          // Connect
}

// Undo returns the step that ends s's For window, and whether s has one.
// Workload steps have no undo: For spreads them instead.
func (s Step) Undo() (Step, bool) {
	if s.Kind == 0 || s.Kind >= numStepKinds {
		return Step{}, false
	}
	spec := stepSpecs[s.Kind]
	if s.For <= 0 || spec.undo == 0 {
		return Step{}, false
	}
	u := Step{Pos: s.Pos, At: s.At + s.For, Kind: spec.undo, Node: s.Node, Peer: AnyNode}
	switch s.Kind {
	case Partition:
		u.Peer = s.Peer
	case Drop, Duplicate, Delay:
		u.Kind, u.Peer, u.OneWay = s.Kind, s.Peer, s.OneWay
	case CutSerial:
		u.Node = AnyNode
	case FenceAgent:
		u.Mode = "ok"
	case ClockDrift:
		u.Kind = ClockDrift
	}
	return u, true
}

// Timeline returns the steps as a runner executes them, in time order: each
// step with a For window followed (at At+For) by its undo, and each Flap
// expanded into its Partition and Heal steps. Only workload steps keep For.
// Steps at the same instant keep file order; an undo comes before the steps
// written after its origin.
func (s *Scenario) Timeline() []Step {
	ts := s.expand()
	out := make([]Step, len(ts))
	for i, t := range ts {
		out[i] = t.Step
	}
	return out
}

// Horizon is when the run ends: the End step's time if there is one, else
// the latest instant the scenario names (a step, the end of a For window, an
// expectation's window). A runner without an End step should let the
// cluster settle past it.
func (s *Scenario) Horizon() time.Duration {
	var h time.Duration
	for _, st := range s.Steps {
		if st.Kind == End {
			return st.At
		}
		h = max(h, st.At+st.For)
	}
	for _, e := range s.Expects {
		w := e.Window()
		for _, t := range []time.Duration{w.From, w.To} {
			if t != EndOfRun {
				h = max(h, t)
			}
		}
	}
	return h
}

// CondKind says what an expectation checks.
type CondKind uint8

const (
	// CondPrimary: Node runs the resource group (every member started, its
	// replicated disk Primary); Node AnyNode: nobody does.
	CondPrimary CondKind = iota + 1
	// CondNoSplitBrain: single writer — never two nodes accepting writes at
	// the same instant, and no write accepted under an old primary's
	// generation after another node took over.
	CondNoSplitBrain
	// CondSplitBrainDetected: a node reports split brain (at a handshake,
	// or two holders of the group meeting).
	CondSplitBrainDetected
	// CondSplitBrainResolved: a split brain was resolved automatically or
	// by --discard-my-data; Node is the victim whose changes were
	// discarded (AnyNode: either).
	CondSplitBrainResolved
	// CondAckedWritesDurable: every acknowledged write reads back with its
	// value or a later one, except, under protocol A or B, writes within
	// the protocol's documented loss window.
	CondAckedWritesDurable
	// CondDisksIdentical: both data disks hold the same data, block for
	// block, and neither has anything marked out of sync.
	CondDisksIdentical
	// CondNoFailover: no node takes the group over after declaring its
	// holder dead (handovers by agreement are not failovers).
	CondNoFailover
	// CondFailover: a node (Node, or any) takes the group over after
	// declaring its holder dead.
	CondFailover
	// CondState: Node's replication state matches every non-zero field of
	// Role, Disk, Conn and PeerDisk.
	CondState
	// CondMeasure: the count Measure over the window compares by Op with
	// Value.
	CondMeasure

	numCondKinds
)

var condWords = [...]string{"?", "primary", "no-split-brain", "split-brain-detected",
	"split-brain-resolved", "acked-writes-durable", "disks-identical", "no-failover",
	"failover", "state", "measure"}

// String returns the condition's word, e.g. "disks-identical".
func (k CondKind) String() string {
	if int(k) < len(condWords) && k > 0 {
		return condWords[k]
	}
	return fmt.Sprintf("CondKind(%d)", uint8(k))
}

// Measure is a count a CondMeasure compares.
type Measure uint8

const (
	// ResyncBytes: bytes copied by resyncs (full, bitmap or checksum).
	ResyncBytes Measure = iota + 1
	// LostWrites: acknowledged writes that do not read back (inside a
	// protocol window or not).
	LostWrites
	// Failovers: takeovers after the holder was declared dead.
	Failovers
	// Fences: successful fencing operations.
	Fences
	// VerifyMismatches: blocks an online verify found out of sync.
	VerifyMismatches
	// FailedRequests: application requests (reads, writes, flushes) that
	// completed with an error.
	FailedRequests

	numMeasures
)

var measureWords = [...]string{"?", "resync-bytes", "lost-writes", "failovers", "fences", "verify-mismatches", "failed-requests"}

// String returns the measure's word, e.g. "resync-bytes".
func (m Measure) String() string {
	if m > 0 && m < numMeasures {
		return measureWords[m]
	}
	return fmt.Sprintf("Measure(%d)", uint8(m))
}

// CmpOp compares a measure with a value.
type CmpOp uint8

const (
	LE CmpOp = iota + 1 // <=
	LT                  // <
	EQ                  // ==
	GE                  // >=
	GT                  // >
)

var cmpWords = [...]string{"?", "<=", "<", "==", ">=", ">"}

// String returns the operator as written, e.g. "<=".
func (o CmpOp) String() string {
	if o > 0 && int(o) < len(cmpWords) {
		return cmpWords[o]
	}
	return fmt.Sprintf("CmpOp(%d)", uint8(o))
}

// Holds reports whether got compares with want as o says.
func (o CmpOp) Holds(got, want uint64) bool {
	switch o {
	case LE:
		return got <= want
	case LT:
		return got < want
	case EQ:
		return got == want
	case GE:
		return got >= want
	case GT:
		return got > want
	}
	return false
}

// When is the timing of an expectation, as written.
type When uint8

const (
	// FromHere: no timing words; the window runs from the anchor to the
	// end of the run.
	FromHere When = iota + 1
	// Within D: the window is [anchor, anchor+D] and the condition must
	// become true in it (for a measure: counted over it).
	Within
	// For D: the condition holds throughout [anchor, anchor+D].
	For
	// AtTime T (`expect at T`): at the instant T.
	AtTime
	// AtEnd (`expect at end`): at the end of the run.
	AtEnd
)

// Expect is one expectation: `expect [at <T>|at end] <cond> [within|for <D>]`.
type Expect struct {
	Pos  Pos
	Cond CondKind
	When When
	// Anchor is the time of the last `at` line above the expectation (0 if
	// none): "from here" in the timeline.
	Anchor time.Duration
	// D is the duration of Within and For; T the instant of AtTime.
	D, T time.Duration

	Node int // CondPrimary, CondFailover, CondSplitBrainResolved, CondState
	// CondState: zero fields are not checked.
	Role     repl.Role
	Disk     repl.DiskState
	Conn     repl.ConnState
	PeerDisk repl.DiskState
	// CondMeasure.
	Measure Measure
	Op      CmpOp
	Value   uint64
}

// EndOfRun stands for the end of the run in a Window.
const EndOfRun = time.Duration(math.MaxInt64)

// Quantifier says how a window is judged.
type Quantifier uint8

const (
	// Throughout: the condition holds at every instant of the window (an
	// instant when From == To).
	Throughout Quantifier = iota + 1
	// Sometime: the condition is true at some instant of the window (for
	// events: the event happens in it).
	Sometime
	// Counted: the measure is counted over the window and compared at its
	// end.
	Counted
)

// Window is the span of time an expectation is judged over. From and To
// may be EndOfRun.
type Window struct {
	From, To time.Duration
	Q        Quantifier
}

// Window says over which span and how e is judged: events (failover,
// split-brain-detected, split-brain-resolved) must happen in the window;
// measures are counted over it; any other condition must hold throughout
// it, except with `within`, where it must become true in it.
func (e *Expect) Window() Window {
	w := Window{From: e.Anchor, To: EndOfRun, Q: Throughout}
	switch e.When {
	case Within, For:
		w.To = e.Anchor + e.D
	case AtTime:
		w.From, w.To = e.T, e.T
	case AtEnd:
		w.From = EndOfRun
	}
	switch {
	case e.Cond == CondMeasure:
		w.Q = Counted
	case e.Cond < numCondKinds && condSpecs[e.Cond].class == event, e.When == Within:
		w.Q = Sometime
	}
	return w
}
