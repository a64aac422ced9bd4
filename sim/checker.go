package sim

import (
	"fmt"
	"time"

	"tandem/internal/node"
	"tandem/internal/proto"
)

// checker holds the properties of DESIGN.md §3 that apply to membership and
// failover. It judges from what the simulator knows to be true (deliveries,
// power states, fence effects), never from what the nodes believe.
type checker struct {
	sim *Sim
}

// acquired checks a node that just won the group:
//
//   - single writer (1): with stonith or witness no other node may be
//     accepting writes at this instant; with fencing none, a second primary
//     is legal only after a genuine silence, and opens a split-brain episode
//     that must be reported before it is resolved;
//   - fence before promote (4) and no false failover (10): a takeover after
//     silence must follow deadtime without any heartbeat delivered from the
//     peer on any medium, and a successful fence of the peer (stonith) or the
//     witness's vote (witness).
func (c *checker) acquired(m *machine, ev *node.Event) {
	s := c.sim
	cfg := &m.cfg
	peer := 1 - m.id
	if ev.Grounds == node.AfterSilence {
		s.res.Failovers++
		if m.peerWasUp {
			s.res.FalseFailovers++
		}
		c.checkSilence(m, peer)
		switch cfg.Fencing {
		case node.FenceStonith:
			at := s.fencedAt[m.id][peer]
			if at == 0 || (s.delivered[peer][m.id] && at < s.lastDelivery[peer][m.id]) {
				s.violate("fence-before-promote", fmt.Sprintf("%s took over without a successful fence of %s after its last heartbeat",
					m.name, s.machines[peer].name))
			}
		case node.FenceWitness:
			if s.lastWitnessGrant[m.id] == 0 || s.now-s.lastWitnessGrant[m.id] > cfg.Deadtime {
				s.violate("fence-before-promote", fmt.Sprintf("%s took over without a recent vote from the witness", m.name))
			}
		}
	} else if s.holder >= 0 && s.holder != m.id {
		s.res.Handovers++
	}
	s.holder = m.id
	others := 0
	for _, o := range s.machines {
		if o != m && o.up && o.n != nil && o.n.AcceptingWrites(o.clock.Local(s.now)) {
			others++
			if cfg.Fencing != node.FenceNone {
				s.violate("single-writer", fmt.Sprintf("%s acquired the group (epoch %d) while %s still accepts writes (state %s, epoch %d)",
					m.name, ev.Epoch, o.name, o.n.State(), o.n.Epoch()))
			} else if ev.Grounds != node.AfterSilence {
				s.violate("single-writer", fmt.Sprintf("%s acquired the group by agreement while %s still accepts writes",
					m.name, o.name))
			}
		}
	}
	if others > 0 && !s.episode.open {
		s.res.SplitBrains++
		s.episode = splitEpisode{open: true, start: s.now}
	}
}

// checkSilence: no heartbeat from peer reached m for deadtime before now
// (in global time, allowing m's clock to run fast by the configured bound).
func (c *checker) checkSilence(m *machine, peer int) {
	s := c.sim
	cfg := &m.cfg
	window := cfg.Deadtime
	if !s.delivered[peer][m.id] {
		window = cfg.Initdead
		if s.now-m.boot < scaleDown(window, cfg.ClockDriftPPM)-time.Microsecond {
			s.violate("no-false-failover", fmt.Sprintf("%s declared %s dead %v after boot, before initdead %v",
				m.name, s.machines[peer].name, s.now-m.boot, window))
		}
		return
	}
	silent := s.now - s.lastDelivery[peer][m.id]
	if silent < scaleDown(window, cfg.ClockDriftPPM)-time.Microsecond {
		s.violate("no-false-failover", fmt.Sprintf("%s took over although a heartbeat from %s arrived %v ago (deadtime %v)",
			m.name, s.machines[peer].name, silent, window))
	}
}

// scaleDown is the shortest global duration a node whose clock runs fast by
// up to ppm can measure as d.
func scaleDown(d time.Duration, ppm int64) time.Duration {
	return time.Duration(float64(d) * 1e6 / float64(1e6+ppm))
}

// stateChanged closes split-brain episodes: the episode must have been
// reported (a SplitBrain event) if it ended with a node stepping down.
func (c *checker) stateChanged(m *machine, before proto.State) {
	s := c.sim
	if !s.episode.open {
		return
	}
	if c.accepting() > 1 {
		return
	}
	if !s.episode.reported && m.n != nil && before.Holds() && !m.n.State().Holds() {
		s.violate("split-brain-reported", fmt.Sprintf("a split brain since %v ended without being reported", fmtDur(s.episode.start)))
	}
	s.episode = splitEpisode{}
}

func (c *checker) accepting() int {
	s := c.sim
	count := 0
	for _, o := range s.machines {
		if o.up && o.n != nil && o.n.AcceptingWrites(o.clock.Local(s.now)) {
			count++
		}
	}
	return count
}

// crashed closes an episode that ends because a primary lost power.
func (c *checker) crashed() {
	if c.sim.episode.open && c.accepting() <= 1 {
		c.sim.episode = splitEpisode{}
	}
}

// final checks convergence after the liveness phase: every machine up,
// exactly one data node Primary, the other Secondary, and each node's view
// of the others matching the truth.
func (c *checker) final() {
	s := c.sim
	primaries := 0
	for _, m := range s.machines {
		if !m.up || m.n == nil {
			s.violate("convergence", fmt.Sprintf("%s is still down after the liveness phase", m.name))
			return
		}
		switch st := m.n.State(); st {
		case proto.Primary:
			primaries++
		case proto.Secondary, proto.Witness:
		default:
			s.violate("convergence", fmt.Sprintf("%s is still %s after the liveness phase", m.name, st))
		}
	}
	if primaries != 1 {
		s.violate("convergence", fmt.Sprintf("%d primaries after the liveness phase (want exactly 1)", primaries))
		return
	}
	for _, m := range s.machines {
		for _, o := range s.machines {
			if o == m {
				continue
			}
			seen := m.n.Membership().Peer(proto.NodeID(o.id)).Last.State
			if seen != o.n.State() {
				s.violate("convergence", fmt.Sprintf("%s believes %s is %s but it is %s", m.name, o.name, seen, o.n.State()))
			}
		}
	}
}
