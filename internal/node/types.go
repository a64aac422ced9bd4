package node

import (
	"fmt"
	"time"

	"tandem/internal/proto"
	"tandem/internal/repl"
)

// InputKind says which field of an Input is meaningful.
type InputKind uint8

const (
	// Tick: time passed. Shells tick at Node.Deadline(), or more often.
	Tick InputKind = iota + 1
	// Receive: a heartbeat arrived on Input.Medium.
	Receive
	// ActionDone: a resource action finished (Input.ID, Input.OK, Input.Err).
	ActionDone
	// FenceDone: a fencing operation finished (Input.ID, Input.OK, Input.Err).
	FenceDone
	// AdminCommand: an operator's command (Input.Admin).
	AdminCommand
	// Replication: an input for the replicated disk (Input.Repl): disk and
	// metadata completions, link events and messages, application
	// requests, replication admin commands.
	Replication
)

// Admin is an operator's command.
type Admin uint8

const (
	// Standby: give the group away (if held) and do not take it until Online.
	Standby Admin = iota + 1
	// Online: clear Standby.
	Online
	// Takeover: clear Standby and ask the holder to hand the group over.
	Takeover
	// Cleanup: forget resource failure counts and leave Blocked.
	Cleanup
)

var adminNames = [...]string{"?", "standby", "online", "takeover", "cleanup"}

func (a Admin) String() string {
	if int(a) < len(adminNames) {
		return adminNames[a]
	}
	return fmt.Sprintf("admin(%d)", uint8(a))
}

// Input is one thing that happened to a node. It is a plain struct rather than
// an interface so that stepping allocates nothing.
type Input struct {
	Kind   InputKind
	Medium proto.MediumID
	Msg    proto.Heartbeat
	ID     uint64
	OK     bool
	Err    string
	Admin  Admin
	Repl   repl.Input
}

// OutputKind says which field of an Output is meaningful.
type OutputKind uint8

const (
	// Send: put Output.Msg on Output.Medium towards Output.To.
	Send OutputKind = iota + 1
	// Action: run resource action Output.Op on group member Output.Resource;
	// report back with ActionDone carrying Output.ID. The node treats no
	// answer within Output.Timeout as a failure.
	Action
	// Fence: power off Output.Target; report back with FenceDone carrying
	// Output.ID. No answer within Output.Timeout counts as a failure.
	Fence
	// Emit: something worth telling an operator (Output.Event).
	Emit
	// Replicate: the replicated disk wants something done (Output.Repl).
	Replicate
)

// Op is a resource action.
type Op uint8

const (
	Start Op = iota + 1
	Stop
	Monitor
)

var opNames = [...]string{"?", "start", "stop", "monitor"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Output is one thing a node wants done, or wants known.
type Output struct {
	Kind     OutputKind
	To       proto.NodeID
	Medium   proto.MediumID
	Msg      proto.Heartbeat
	ID       uint64
	Resource int
	Op       Op
	Timeout  time.Duration
	Target   proto.NodeID
	Event    Event
	Repl     repl.Output
}

// EventKind classifies events for observers and checkers.
type EventKind uint8

const (
	// StateChanged: the node's group state changed (From → To, Reason).
	StateChanged EventKind = iota + 1
	// PeerDead: every medium to Peer has been silent for deadtime.
	PeerDead
	// PeerAlive: Peer was heard again (or for the first time).
	PeerAlive
	// LateHeartbeat: a heartbeat from Peer on Medium came after warntime.
	LateHeartbeat
	// FenceStarted, FenceSucceeded, FenceFailed: fencing of Peer.
	FenceStarted
	FenceSucceeded
	FenceFailed
	// Acquired: the node won the group (Reason says on what grounds:
	// agreement, takeover after silence, fence result, witness vote).
	Acquired
	// SplitBrain: both data nodes hold the group.
	SplitBrain
	// ResourceFailed: a start, stop or monitor failed.
	ResourceFailed
	// QuorumLost: a holder's lease ran out; it stops accepting writes.
	QuorumLost
	// AdminRefused: an operator command could not be carried out.
	AdminRefused
	// Note: anything else worth a line in the log.
	Note
)

var eventNames = [...]string{"?", "state", "peer-dead", "peer-alive", "late-heartbeat",
	"fence-start", "fence-ok", "fence-failed", "acquired", "split-brain",
	"resource-failed", "quorum-lost", "admin-refused", "note"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Grounds says on what grounds a node acquired the group.
type Grounds uint8

const (
	// ByAgreement: the peer was alive and voted for us (start-up,
	// handover, failback).
	ByAgreement Grounds = iota + 1
	// AfterSilence: the peer was declared dead (every medium silent for
	// deadtime, or never heard within initdead).
	AfterSilence
)

// Event is a report for observers. Reason is a sentence for a human.
type Event struct {
	Kind     EventKind
	Peer     proto.NodeID
	Medium   proto.MediumID
	From, To proto.State
	Epoch    uint64
	Grounds  Grounds
	Late     time.Duration
	Reason   string
}
