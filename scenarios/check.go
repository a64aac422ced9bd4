package scenarios

import (
	"fmt"
	"slices"

	"tandem/internal/node"
)

// timed is a step of the expanded timeline; undo: it ends the For window of
// the step written at its Pos.
type timed struct {
	Step
	undo bool
}

// expand is Timeline with each step's origin kept, for messages.
func (s *Scenario) expand() []timed {
	var out []timed
	for _, st := range s.Steps {
		if st.Kind == Flap {
			for t := st.At; t < st.At+st.For && st.Every > 0; t += st.Every {
				out = append(out,
					timed{Step: Step{Pos: st.Pos, At: t, Kind: Partition, Node: st.Node, Peer: st.Peer}},
					timed{Step: Step{Pos: st.Pos, At: t + st.Down, Kind: Heal, Node: st.Node, Peer: st.Peer}, undo: true})
			}
			continue
		}
		u, ok := st.Undo()
		if st.Kind >= numStepKinds || !stepSpecs[st.Kind].workload {
			st.For = 0
		}
		out = append(out, timed{Step: st})
		if ok {
			out = append(out, timed{Step: u, undo: true})
		}
	}
	slices.SortStableFunc(out, func(a, b timed) int {
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

// machine is what the steps so far have done to one node.
type machine struct {
	down, frozen, stopped bool
	line                  int    // where the last change was written (0: none yet)
	verb                  string // ... and by which step
}

func (m *machine) state() string {
	switch {
	case m.down:
		return "down"
	case m.frozen:
		return "frozen"
	case m.stopped:
		return "stopped"
	}
	return "up"
}

func (m *machine) since() string {
	if m.line == 0 {
		return "since the start"
	}
	return fmt.Sprintf("after %q on line %d", m.verb, m.line)
}

// checkTimeline replays the expanded timeline and reports each step the
// machine states forbid: restarting a running node (unless stonith may have
// powered it off), thawing one that is not frozen, a command typed on a node
// that is down, cutting a cut cable.
func checkTimeline(sc *Scenario, errs *errList) {
	names := sc.Cluster.Nodes
	ms := make([]machine, len(names))
	serialCut, serialLine := false, 0
	stonith := sc.Cluster.WithDefaults().Fencing == node.FenceStonith
	for _, t := range sc.expand() {
		st := t.Step
		verb := st.Kind.String()
		where := ""
		if t.undo {
			where = fmt.Sprintf(" (the end of its \"for\" window, at %s)", formatDuration(st.At))
		}
		var m *machine
		if st.Node >= 0 && st.Node < len(ms) {
			m = &ms[st.Node]
		}
		need := func(ok bool, want string) bool {
			if !ok {
				errs.add(st.Pos, fmt.Sprintf("expected %s to be %s for %q%s, but it is %s %s",
					names[st.Node], want, verb, where, m.state(), m.since()), "")
			}
			return ok
		}
		change := func() { m.line, m.verb = st.Pos.Line, verb }
		switch k := st.Kind; {
		case k == Crash:
			if need(!m.down, "running") {
				*m = machine{down: true}
				change()
			}
		case k == Restart:
			// Under stonith a node may be down without a step saying so:
			// fencing powered it off. Restarting it is then the operator's
			// next move, and a no-op if it was not fenced after all.
			if need(m.down || stonith && st.Node < 2, "down") {
				*m = machine{}
				change()
			}
		case k == Freeze:
			if need(!m.down && !m.frozen, "running") {
				m.frozen = true
				change()
			}
		case k == Thaw:
			if need(m.frozen, "frozen") {
				m.frozen = false
				change()
			}
		case k == Stop:
			if need(m.state() == "up", "up") {
				m.stopped = true
				change()
			}
		case k == Start:
			if need(m.state() == "stopped", "stopped") {
				m.stopped = false
				change()
			}
		case k.isAdmin() || stepSpecs[k].workload || k == Flush:
			if m != nil {
				need(m.state() == "up", "up")
			}
		case k == CutSerial || k == RestoreSerial:
			if serialCut == (k == CutSerial) {
				state := "whole"
				if serialCut {
					state = fmt.Sprintf("already cut (line %d)", serialLine)
				}
				errs.add(st.Pos, fmt.Sprintf("expected the serial cable to be %s for %q%s, but it is %s",
					map[bool]string{true: "whole", false: "cut"}[k == CutSerial], verb, where, state), "")
				continue
			}
			serialCut, serialLine = k == CutSerial, st.Pos.Line
		}
	}
}
