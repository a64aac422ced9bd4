package repl

import (
	"fmt"

	"tandem/internal/meta"
	"tandem/internal/proto"
)

// Decision is what a handshake concludes, from this node's point of view.
type Decision uint8

const (
	// NoSync: both hold the same data (or nothing can be decided yet).
	NoSync Decision = iota + 1
	// BecomeSource / BecomeTarget: bitmap-based resync.
	BecomeSource
	BecomeTarget
	// FullSource / FullTarget: every block is copied.
	FullSource
	FullTarget
	// SplitBrainDetected: both moved on from a common generation.
	SplitBrainDetected
	// UnrelatedData: no common history; refuse.
	UnrelatedData
	// Refuse: the rules name a source that cannot be one.
	Refuse
)

var decisionNames = [...]string{"?", "no-sync", "source", "target", "full-source", "full-target",
	"split-brain", "unrelated", "refuse"}

func (d Decision) String() string {
	if int(d) < len(decisionNames) {
		return decisionNames[d]
	}
	return fmt.Sprintf("decision(%d)", uint8(d))
}

// Side is one node's facts at the handshake (from its hello).
type Side struct {
	Node         proto.NodeID
	Gen          meta.Generations
	Disk         DiskState
	Role         Role
	Changes      uint64
	Crashed      bool
	Discard      bool
	PrimarySince uint64
}

func sideOf(m *Msg) Side {
	return Side{Node: m.Node, Gen: m.Gen, Disk: m.Disk, Role: m.Role, Changes: m.Changes,
		Crashed: m.Crashed, Discard: m.DiscardMyData, PrimarySince: m.PrimarySince}
}

// Decide compares generation identifiers as DRBD does (see DESIGN.md §2) and
// says what this node (me) does. It is symmetric: Decide(p, m) is the mirror
// of Decide(m, p). The string names the rule, for the event log.
func Decide(me, peer Side) (Decision, string) {
	m, p := me.Gen, peer.Gen
	switch {
	case me.Disk == Diskless || peer.Disk == Diskless:
		return NoSync, "a side is diskless"
	case m.Current == 0 && p.Current == 0:
		return NoSync, "both disks are fresh: waiting for `primary --force` on one of them"
	case m.Current == 0:
		return FullTarget, "my disk is fresh: full sync from the peer"
	case p.Current == 0:
		return FullSource, "the peer's disk is fresh: full sync to it"
	case m.Current == p.Current:
		if me.Changes == 0 && peer.Changes == 0 && behind(me) == behind(peer) {
			return NoSync, "same current generation, nothing out of sync"
		}
		if sameGenSource(me, peer) {
			return guard(me, peer, BecomeSource, "same current generation, bitmaps merged")
		}
		return guard(me, peer, BecomeTarget, "same current generation, bitmaps merged")
	case m.Bitmap != 0 && m.Bitmap == p.Current:
		return guard(me, peer, BecomeSource, "my bitmap generation is the peer's current: I moved on")
	case p.Bitmap != 0 && p.Bitmap == m.Current:
		return guard(me, peer, BecomeTarget, "the peer's bitmap generation is my current: the peer moved on")
	case inHistory(m.Current, p):
		return guard(me, peer, FullTarget, "my current generation is in the peer's history: full sync from it")
	case inHistory(p.Current, m):
		return guard(me, peer, FullSource, "the peer's current generation is in my history: full sync to it")
	case related(m, p):
		return SplitBrainDetected, "both moved on from a common generation"
	}
	return UnrelatedData, fmt.Sprintf("no common generation (mine %v, peer's %v)", m, p)
}

func inHistory(u meta.UUID, g meta.Generations) bool {
	return u != 0 && (g.History[0] == u || g.History[1] == u)
}

func related(a, b meta.Generations) bool {
	as := [3]meta.UUID{a.Bitmap, a.History[0], a.History[1]}
	bs := [3]meta.UUID{b.Bitmap, b.History[0], b.History[1]}
	for _, x := range as {
		for _, y := range bs {
			if x != 0 && x == y {
				return true
			}
		}
	}
	return false
}

// behind: the side's disk is known to lack data.
func behind(s Side) bool { return s.Disk == Inconsistent || s.Disk == Outdated }

// sameGenSource decides the direction when both share a current generation:
// the side that is behind receives; then a side that lost power (whose
// cache may have lost writes the other acknowledged; a primary's activity
// log extents are marked too) receives; then the primary sends; then the
// lower node id sends.
func sameGenSource(me, peer Side) bool {
	if behind(me) != behind(peer) {
		return behind(peer)
	}
	if me.Crashed != peer.Crashed {
		return peer.Crashed
	}
	if (me.Role == Primary) != (peer.Role == Primary) {
		return me.Role == Primary
	}
	return me.Node < peer.Node
}

// guard refuses a resync whose source could not serve as one, or that would
// overwrite a running primary.
func guard(me, peer Side, d Decision, why string) (Decision, string) {
	src, dst := me, peer
	if d == BecomeTarget || d == FullTarget {
		src, dst = peer, me
	}
	if src.Disk == Inconsistent {
		return Refuse, fmt.Sprintf("%s, but the source (node %d) is Inconsistent", why, src.Node)
	}
	if dst.Role == Primary {
		return Refuse, fmt.Sprintf("%s, but that would overwrite the data of node %d, which is Primary", why, dst.Node)
	}
	return d, why
}

// Victim is whose changes a split-brain policy discards.
type Victim uint8

const (
	NoVictim Victim = iota
	VictimMe
	VictimPeer
)

// ResolveSplitBrain applies the configured policies (and --discard-my-data)
// to a detected split brain. Symmetric like Decide.
func ResolveSplitBrain(cfg *Config, me, peer Side) (Victim, string) {
	switch {
	case me.Discard && !peer.Discard:
		return VictimMe, "this node was connected with --discard-my-data"
	case peer.Discard && !me.Discard:
		return VictimPeer, "the peer was connected with --discard-my-data"
	case me.Discard && peer.Discard:
		return NoVictim, "both sides asked to discard their data"
	}
	primaries := 0
	if me.Role == Primary {
		primaries++
	}
	if peer.Role == Primary {
		primaries++
	}
	switch primaries {
	case 0:
		return sb0(cfg, me, peer)
	case 1:
		switch cfg.AfterSB1 {
		case DiscardSecondary:
			if me.Role == Primary {
				return VictimPeer, "after-sb-1pri discard-secondary"
			}
			return VictimMe, "after-sb-1pri discard-secondary"
		case Consensus:
			v, why := sb0(cfg, me, peer)
			if (v == VictimMe && me.Role != Primary) || (v == VictimPeer && peer.Role != Primary) {
				return v, "after-sb-1pri consensus: " + why
			}
			return NoVictim, "after-sb-1pri consensus: the after-sb-0pri policy would not discard the secondary"
		}
		return NoVictim, "after-sb-1pri disconnect"
	}
	return NoVictim, "after-sb-2pri disconnect"
}

func sb0(cfg *Config, me, peer Side) (Victim, string) {
	younger := func(why string) (Victim, string) {
		switch {
		case me.PrimarySince > peer.PrimarySince:
			return VictimMe, why
		case peer.PrimarySince > me.PrimarySince:
			return VictimPeer, why
		}
		return NoVictim, why + ": cannot tell which became primary later"
	}
	switch cfg.AfterSB0 {
	case DiscardZeroChanges:
		switch {
		case me.Changes == 0 && peer.Changes == 0:
			if me.Node > peer.Node {
				return VictimMe, "discard-zero-changes: neither changed anything"
			}
			return VictimPeer, "discard-zero-changes: neither changed anything"
		case me.Changes == 0:
			return VictimMe, "discard-zero-changes: this node changed nothing"
		case peer.Changes == 0:
			return VictimPeer, "discard-zero-changes: the peer changed nothing"
		}
		return NoVictim, "discard-zero-changes: both sides changed data"
	case DiscardYoungerPrimary:
		return younger("discard-younger-primary")
	case DiscardOlderPrimary:
		v, why := younger("discard-older-primary")
		switch v {
		case VictimMe:
			return VictimPeer, why
		case VictimPeer:
			return VictimMe, why
		}
		return v, why
	case DiscardLeastChanges:
		switch {
		case me.Changes < peer.Changes:
			return VictimMe, "discard-least-changes"
		case peer.Changes < me.Changes:
			return VictimPeer, "discard-least-changes"
		}
		return younger("discard-least-changes: equal changes, discarding the younger primary")
	case DiscardNode:
		switch cfg.DiscardNode {
		case me.Node:
			return VictimMe, "discard-node"
		case peer.Node:
			return VictimPeer, "discard-node"
		}
	}
	return NoVictim, "after-sb-0pri disconnect"
}
