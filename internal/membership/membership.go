// Package membership tracks which peers are alive, medium by medium, with
// Heartbeat's rules: a peer is dead only when every medium has been silent for
// deadtime (or, right after start-up, when it was never heard within
// initdead), and a heartbeat later than warntime after the previous one on its
// medium is counted as late, with its lateness, so operators can tune deadtime.
//
// It is pure bookkeeping: it decides nothing but "alive or dead" and never
// reads a clock; callers pass their node's monotonic time.
package membership

import (
	"fmt"
	"strings"
	"time"

	"tandem/internal/proto"
)

// MaxMedia bounds the media per node so state lives in arrays, not maps.
const MaxMedia = 8

// MediumStats are one medium's counters for one peer.
type MediumStats struct {
	// Used: this medium reaches the peer.
	Used bool
	Name string
	// Heard: at least one heartbeat arrived since start-up.
	Heard     bool
	LastHeard proto.Time
	LastSeq   uint64
	Received  uint64
	// Late counts heartbeats that came more than warntime after the
	// previous one on this medium; MaxInterval is the longest such gap.
	Late        uint64
	MaxInterval time.Duration
	// Stale counts duplicates and reordered old heartbeats (ignored).
	Stale uint64
}

// Peer is what is known of one peer.
type Peer struct {
	Media       [MaxMedia]MediumStats
	Heard       bool
	LastHeard   proto.Time
	Incarnation uint64
	MaxSeq      uint64
	// Last is the newest heartbeat received (by sequence), on any medium.
	Last proto.Heartbeat
}

// Tracker follows every peer of one node.
type Tracker struct {
	deadtime, warntime, initdead time.Duration
	boot                         proto.Time
	peers                        [proto.MaxNodes]Peer
	isPeer                       [proto.MaxNodes]bool
}

// New starts tracking at boot time.
func New(boot proto.Time, deadtime, warntime, initdead time.Duration) *Tracker {
	return &Tracker{deadtime: deadtime, warntime: warntime, initdead: initdead, boot: boot}
}

// AddMedium declares that medium id (named name) reaches peer.
func (t *Tracker) AddMedium(peer proto.NodeID, id proto.MediumID, name string) {
	t.isPeer[peer] = true
	t.peers[peer].Media[id].Used = true
	t.peers[peer].Media[id].Name = name
}

// Observation is what one received heartbeat meant.
type Observation struct {
	// Fresh: newer than anything received before from this peer (on any
	// medium); its contents describe the peer's current state.
	Fresh bool
	// Restarted: the peer's incarnation changed (it rebooted).
	Restarted bool
	// Late is the gap since the previous heartbeat on this medium when it
	// exceeded warntime, else 0.
	Late time.Duration
}

// Observe records a heartbeat from hb.From on medium at now.
func (t *Tracker) Observe(now proto.Time, medium proto.MediumID, hb *proto.Heartbeat) Observation {
	var obs Observation
	if int(hb.From) >= proto.MaxNodes || !t.isPeer[hb.From] || int(medium) >= MaxMedia {
		return obs
	}
	p := &t.peers[hb.From]
	m := &p.Media[medium]
	if !m.Used {
		return obs
	}
	if hb.Incarnation != p.Incarnation {
		if hb.Incarnation < p.Incarnation {
			// A packet from before the peer's restart, delayed.
			m.Stale++
			return obs
		}
		obs.Restarted = p.Incarnation != 0
		p.Incarnation = hb.Incarnation
		p.MaxSeq = 0
		for i := range p.Media {
			p.Media[i].LastSeq = 0
		}
	}
	if hb.Seq <= m.LastSeq {
		m.Stale++
		return obs
	}
	if m.Heard {
		if gap := now.Sub(m.LastHeard); gap > t.warntime {
			m.Late++
			if gap > m.MaxInterval {
				m.MaxInterval = gap
			}
			obs.Late = gap
		}
	}
	m.Heard = true
	m.LastHeard = now
	m.LastSeq = hb.Seq
	m.Received++
	p.Heard = true
	if now > p.LastHeard {
		p.LastHeard = now
	}
	if hb.Seq > p.MaxSeq {
		p.MaxSeq = hb.Seq
		p.Last = *hb
		obs.Fresh = true
	}
	return obs
}

// DeadAt is the instant the peer is (or will be) declared dead unless heard
// again: deadtime after the last heartbeat on any medium, or initdead after
// start-up for a peer never heard.
func (t *Tracker) DeadAt(peer proto.NodeID) proto.Time {
	p := &t.peers[peer]
	if !p.Heard {
		return t.boot.Add(t.initdead)
	}
	return p.LastHeard.Add(t.deadtime)
}

// Dead reports whether the peer is dead at now.
func (t *Tracker) Dead(peer proto.NodeID, now proto.Time) bool { return now >= t.DeadAt(peer) }

// Peer returns what is known of a peer.
func (t *Tracker) Peer(peer proto.NodeID) *Peer { return &t.peers[peer] }

// Silence describes, for an operator, how long each medium to peer has been
// silent at now: "net0 silent 2.003s, serial0 silent 2.101s".
func (t *Tracker) Silence(peer proto.NodeID, now proto.Time) string {
	p := &t.peers[peer]
	if !p.Heard {
		return fmt.Sprintf("never heard since start-up %v ago (initdead %v)", now.Sub(t.boot), t.initdead)
	}
	var parts []string
	for i := range p.Media {
		m := &p.Media[i]
		if !m.Used {
			continue
		}
		if !m.Heard {
			parts = append(parts, m.Name+" never heard")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s silent %v", m.Name, now.Sub(m.LastHeard).Round(time.Millisecond)))
	}
	return strings.Join(parts, ", ")
}
