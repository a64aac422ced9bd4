// Package proto is the vocabulary every part of Tandem shares: node and medium
// identifiers, the node-local monotonic time, and the heartbeat message that
// carries membership, quorum votes and group state between nodes.
//
// It holds types only. Encoding to bytes lives in internal/wire; decisions live
// in internal/node.
package proto

import (
	"fmt"
	"time"
)

// Time is a node's monotonic clock reading in nanoseconds. It is deliberately
// not a wall-clock time: a step of the wall clock (NTP, an operator's `date -s`)
// must never look like a silent peer. Each node has its own Time; values from
// two nodes are never compared except through echoes (see Heartbeat.GrantEcho).
type Time int64

// Add returns t+d.
func (t Time) Add(d time.Duration) Time { return t + Time(d) }

// Sub returns the duration t-u.
func (t Time) Sub(u Time) time.Duration { return time.Duration(t - u) }

// String prints seconds with millisecond precision, as the traces do.
func (t Time) String() string {
	return fmt.Sprintf("%d.%03ds", int64(t)/1e9, (int64(t)%1e9)/1e6)
}

// Never is a time later than any deadline.
const Never Time = 1<<63 - 1

// NodeID names a node of the cluster: 0 and 1 are the data nodes, 2 is the
// witness when there is one. It is an index, so slices can be used instead of
// maps and no decision ever depends on map order.
type NodeID uint8

// NoNode is the absent node (no grant, no handover target).
const NoNode NodeID = 255

// MaxNodes bounds the cluster: two data nodes and a witness.
const MaxNodes = 3

// MediumID names one heartbeat medium of a node (a UDP path, a serial line).
type MediumID uint8

// MediumKind says what carries a medium's packets.
type MediumKind uint8

const (
	// Network is a UDP path (unicast, broadcast or multicast).
	Network MediumKind = iota + 1
	// Serial is a null-modem cable.
	Serial
)

func (k MediumKind) String() string {
	switch k {
	case Network:
		return "network"
	case Serial:
		return "serial"
	}
	return fmt.Sprintf("medium(%d)", uint8(k))
}

// State is what a node is doing with the resource group. It is sent in every
// heartbeat so the peer can decide without asking.
type State uint8

const (
	// Secondary holds nothing and is ready to take over.
	Secondary State = iota + 1
	// Starting is starting the group, left to right. It holds the group.
	Starting
	// Primary runs the whole group.
	Primary
	// Stopping is stopping the group, right to left. It still holds the group.
	Stopping
	// Blocked failed to stop a resource: it may still hold part of the group
	// and will not hand it over until an operator has cleaned up.
	Blocked
	// Witness is the diskless tiebreaker; it never holds the group.
	Witness
)

var stateNames = [...]string{"?", "Secondary", "Starting", "Primary", "Stopping", "Blocked", "Witness"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Holds reports whether a node in this state may hold any part of the group.
func (s State) Holds() bool { return s == Starting || s == Primary || s == Stopping || s == Blocked }

// Flags are the yes/no facts of a heartbeat.
type Flags uint16

const (
	// WantVotes: the sender is a candidate (or a primary renewing its lease)
	// and asks every receiver for its vote.
	WantVotes Flags = 1 << iota
	// Ineligible: the sender will not take the group (standby, failed
	// resources over the migration threshold, blocked).
	Ineligible
	// WantGroup: an operator asked the sender to take the group (takeover);
	// the holder should hand it over.
	WantGroup
	// Abstaining: the sender started less than a lease period ago; it may
	// have forgotten a promise, so it neither votes nor campaigns yet.
	Abstaining
	// OutdateRequest: the sender is a primary that lost its replication
	// link but not the peer; it asks the peer to mark its disk Outdated
	// before it acknowledges more writes (DRBD's dopd, over heartbeats).
	OutdateRequest
	// DiskOutdated: the sender's disk is not promotable (Outdated,
	// Inconsistent or none): it confirms an outdate request.
	DiskOutdated
	// InSync: the sender's disk is UpToDate and connected to its peer with
	// nothing to resync: a witness forgets that it outdated it.
	InSync
	// Outdated0 and Outdated1, from a witness: it marked data node 0 (1)
	// Outdated at the holder's request and will not vote for it until it
	// reports InSync. The holder takes this as the peer outdated; the
	// marked node outdates its own disk.
	Outdated0
	Outdated1
)

// OutdatedFlag is the witness flag that marks data node id Outdated.
func OutdatedFlag(id NodeID) Flags {
	if id == 0 {
		return Outdated0
	}
	return Outdated1
}

// Heartbeat is the one message nodes exchange. The same heartbeat (same Seq)
// goes out on every medium, so a receiver can tell media apart and count the
// late ones.
type Heartbeat struct {
	From NodeID
	// Incarnation changes each time the node's process starts, so a rebooted
	// peer's restarted sequence numbers are not mistaken for replays.
	Incarnation uint64
	// Seq increases by one per heartbeat round.
	Seq uint64
	// SentAt is the sender's own clock at sending. Receivers echo it back in
	// grants; they never compare it with their own clock.
	SentAt Time
	State  State
	Flags  Flags
	// Epoch is the sender's claim generation: it increases on every
	// acquisition of the group, so that after a split brain the newer claim
	// wins and the older one steps down.
	Epoch uint64
	// HandoverTo names the node the sender is handing the group to, or NoNode.
	HandoverTo NodeID
	// GrantTo is the node the sender has promised its vote to, or NoNode.
	// GrantEcho is the SentAt of the grantee's latest request the promise
	// covers: the grantee counts the promise valid for a lease period from
	// that instant of its own clock.
	GrantTo   NodeID
	GrantEcho Time
	// GrantIncarnation is the grantee's incarnation the promise was made
	// to: a promise to an earlier life of a node (whose clock may have
	// restarted) must not count for the new one.
	GrantIncarnation uint64
}
