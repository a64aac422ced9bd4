package faults

import (
	"fmt"
	"slices"
	"time"
)

// Schedule is a run's fault timeline, sorted by At; steps at the same instant
// happen in list order.
type Schedule []Step

// Sorted returns a copy sorted by At. The sort is stable because the order of
// simultaneous steps matters (restart before admin online, say).
func (s Schedule) Sorted() Schedule {
	out := slices.Clone(s)
	slices.SortStableFunc(out, func(a, b Step) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	return out
}

// Format prints the schedule one step per line, in scenario syntax.
func (s Schedule) Format(names []string) string {
	var b []byte
	for _, st := range s {
		b = append(b, st.Format(names)...)
		b = append(b, '\n')
	}
	return string(b)
}

// Check replays the schedule on a cluster whose nodes are named names and
// reports the first step that makes no sense: out of order, a node that does
// not exist, or a step the state forbids (restarting a running node, thawing
// one that is not frozen, crashing one already down, cutting a cut cable...).
func (s Schedule) Check(names []string) error {
	st := NewState(len(names))
	st.Names = names
	var last time.Duration
	for i, step := range s {
		if step.At < 0 || step.At < last {
			return fmt.Errorf("step %d (%s): out of order, after %s", i+1, step.Format(names), FormatDuration(last))
		}
		last = step.At
		if err := st.Apply(step); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, step.Format(names), err)
		}
	}
	return nil
}

// Power is a machine's state as fault steps leave it.
type Power uint8

// Machine states. Up is the zero value so that a fresh State is all up.
const (
	Up     Power = iota // running
	Frozen              // paused: keeps its memory, runs nothing
	Down                // powered off: memory lost
)

// String returns "up", "frozen" or "down".
func (p Power) String() string {
	switch p {
	case Up:
		return "up"
	case Frozen:
		return "frozen"
	case Down:
		return "down"
	}
	return fmt.Sprintf("power(%d)", uint8(p))
}

// State is what a schedule has done to the cluster so far, as far as fault
// steps determine it. Generators track it so that they only draw steps that
// make sense; Liveness reads it to know what to undo.
type State struct {
	// Names name the nodes in error messages; optional.
	Names []string
	// Power is each node's machine state.
	Power []Power
	// cut[a][b]: the network path a->b is partitioned.
	cut [][]bool
	// SerialCut: the serial cable between the data nodes is cut.
	SerialCut bool
	// Drift is each node's clock rate error set by ClockDrift steps, in PPM.
	Drift []int64
	// FenceMode is each node's fencing agent mode: "" (never broken), or the
	// Mode of the last FenceBreak ("ok" when repaired).
	FenceMode []string
	// Standby: an operator put the node in standby and has not brought it
	// online again.
	Standby []bool
}

// NewState returns the state at the start of a run: every node up, every link
// and cable whole, no drift, agents working.
func NewState(nodes int) *State {
	st := &State{
		Power:     make([]Power, nodes),
		cut:       make([][]bool, nodes),
		Drift:     make([]int64, nodes),
		FenceMode: make([]string, nodes),
		Standby:   make([]bool, nodes),
	}
	for i := range st.cut {
		st.cut[i] = make([]bool, nodes)
	}
	return st
}

// Nodes is the number of nodes.
func (st *State) Nodes() int { return len(st.Power) }

// Cut reports whether the network path from -> to is partitioned.
func (st *State) Cut(from, to int) bool { return st.cut[from][to] }

// AnyCut reports whether any network path is partitioned.
func (st *State) AnyCut() bool {
	for _, row := range st.cut {
		if slices.Contains(row, true) {
			return true
		}
	}
	return false
}

// FenceBroken reports whether node's fencing agent is currently broken.
func (st *State) FenceBroken(node int) bool {
	m := st.FenceMode[node]
	return m != "" && m != "ok"
}

// Settled reports whether every fault is undone: all nodes up, no partition,
// cable whole, no drift, agents working, nobody in standby. It is what the
// liveness phase starts from.
func (st *State) Settled() bool {
	for i := range st.Power {
		if st.Power[i] != Up || st.Drift[i] != 0 || st.FenceBroken(i) || st.Standby[i] {
			return false
		}
	}
	return !st.AnyCut() && !st.SerialCut
}

func (st *State) name(i int) string { return nodeName(i, st.Names) }

func (st *State) checkNode(i int, dataOnly bool) error {
	if i < 0 || i >= st.Nodes() {
		return fmt.Errorf("node %s is not in the cluster of %d nodes", st.name(i), st.Nodes())
	}
	if dataOnly && i > 1 {
		return fmt.Errorf("node %s is the witness, which holds no resources", st.name(i))
	}
	return nil
}

// Apply performs step s, or, if s makes no sense in the current state, leaves
// the state unchanged and says why.
func (st *State) Apply(s Step) error {
	switch s.Kind {
	case Crash, Restart, Freeze, Thaw, ClockDrift, ClockJump, FenceBreak:
		if err := st.checkNode(s.Node, false); err != nil {
			return err
		}
	case ResourceBreak, Admin:
		if err := st.checkNode(s.Node, true); err != nil {
			return err
		}
	case Partition:
		if err := st.checkPair(s); err != nil {
			return err
		}
	case Heal:
		if s.Node >= 0 {
			if err := st.checkPair(s); err != nil {
				return err
			}
		}
	case CutSerial, RestoreSerial:
	default:
		return fmt.Errorf("unknown kind %d", uint8(s.Kind))
	}

	n := s.Node
	switch s.Kind {
	case Crash:
		if st.Power[n] == Down {
			return fmt.Errorf("%s is already down", st.name(n))
		}
		st.Power[n] = Down
	case Restart:
		if st.Power[n] != Down {
			return fmt.Errorf("%s is %s, not down", st.name(n), st.Power[n])
		}
		st.Power[n] = Up
	case Freeze:
		if st.Power[n] != Up {
			return fmt.Errorf("%s is %s, not up", st.name(n), st.Power[n])
		}
		st.Power[n] = Frozen
	case Thaw:
		if st.Power[n] != Frozen {
			return fmt.Errorf("%s is %s, not frozen", st.name(n), st.Power[n])
		}
		st.Power[n] = Up
	case Partition:
		st.cut[n][s.Peer] = true
		if !s.OneWay {
			st.cut[s.Peer][n] = true
		}
	case Heal:
		if n < 0 {
			for _, row := range st.cut {
				clear(row)
			}
		} else {
			st.cut[n][s.Peer] = false
			st.cut[s.Peer][n] = false
		}
	case CutSerial:
		if st.SerialCut {
			return fmt.Errorf("the serial cable is already cut")
		}
		st.SerialCut = true
	case RestoreSerial:
		if !st.SerialCut {
			return fmt.Errorf("the serial cable is not cut")
		}
		st.SerialCut = false
	case ClockDrift:
		st.Drift[n] = s.PPM
	case ClockJump:
	case FenceBreak:
		if !slices.Contains(FenceModes, s.Mode) {
			return fmt.Errorf("fencing agent mode %q is not one of %v", s.Mode, FenceModes)
		}
		st.FenceMode[n] = s.Mode
	case ResourceBreak:
		if s.Resource < 0 || s.Count < 1 || !slices.Contains(ResourceOps, s.Op) {
			return fmt.Errorf("resource-break needs resource ≥ 0, op in %v and count ≥ 1", ResourceOps)
		}
	case Admin:
		if !slices.Contains(AdminCommands, s.Command) {
			return fmt.Errorf("admin command %q is not one of %v", s.Command, AdminCommands)
		}
		switch s.Command {
		case "standby":
			st.Standby[n] = true
		case "online":
			st.Standby[n] = false
		}
	}
	return nil
}

func (st *State) checkPair(s Step) error {
	if err := st.checkNode(s.Node, false); err != nil {
		return err
	}
	if err := st.checkNode(s.Peer, false); err != nil {
		return err
	}
	if s.Node == s.Peer {
		return fmt.Errorf("%s with itself", s.Kind)
	}
	return nil
}

// Liveness returns the steps that end the safety phase at time at: heal every
// link, restore the serial cable, repair fencing agents, restart every crashed
// node, thaw every frozen one, reset every node's drift to 0 and bring standby
// nodes online. It replays s up to at to know what needs undoing; steps that
// made no sense are skipped as the backends would. Drift is reset on every
// node, not only on those s drifted, because the simulator also draws an
// initial drift per node that the schedule does not record. (The simulator
// also calms the environment: see Rates.ForLiveness.)
func Liveness(s Schedule, nodes int, at time.Duration) Schedule {
	st := NewState(nodes)
	for _, step := range s {
		if step.At <= at {
			_ = st.Apply(step) // nonsense steps change nothing, as on a real cluster
		}
	}
	var out Schedule
	add := func(step Step) {
		step.At = at
		out = append(out, step.Canonical())
	}
	// Links first, so restarted nodes find each other at once; agents before
	// nodes, so a node that must fence on rejoining can.
	if st.AnyCut() {
		add(Step{Kind: Heal, Node: -1})
	}
	if st.SerialCut {
		add(Step{Kind: RestoreSerial})
	}
	for i := range nodes {
		if st.FenceBroken(i) {
			add(Step{Kind: FenceBreak, Node: i, Mode: "ok"})
		}
	}
	for i := range nodes {
		switch st.Power[i] {
		case Down:
			add(Step{Kind: Restart, Node: i})
		case Frozen:
			add(Step{Kind: Thaw, Node: i})
		}
	}
	for i := range nodes {
		add(Step{Kind: ClockDrift, Node: i, PPM: 0})
	}
	for i := range nodes {
		if st.Standby[i] {
			add(Step{Kind: Admin, Node: i, Command: "online"})
		}
	}
	return out
}
