package repl

import (
	"fmt"

	"tandem/internal/meta"
	"tandem/internal/proto"
)

// Role is the replica's role, with DRBD's meaning: only a Primary accepts
// application requests.
type Role uint8

const (
	Secondary Role = iota + 1
	Primary
)

func (r Role) String() string {
	switch r {
	case Secondary:
		return "Secondary"
	case Primary:
		return "Primary"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// DiskState is the local (or, as known, the peer's) disk state, with DRBD's
// meanings.
type DiskState uint8

const (
	// Diskless: no local disk (never attached, or detached after an I/O
	// error); I/O goes to the peer.
	Diskless DiskState = iota + 1
	// Attaching: reading the metadata.
	Attaching
	// Failed: an I/O error was seen; the disk is being detached.
	Failed
	// Inconsistent: a resync target (or a never-synced disk): not usable.
	Inconsistent
	// Outdated: consistent, but known to lack the peer's newer writes.
	Outdated
	// DUnknown: the peer's disk state is unknown (no connection).
	DUnknown
	// Consistent: consistent data of a node without connection; whether it
	// is UpToDate is decided at the next handshake.
	Consistent
	// UpToDate: consistent and the latest data.
	UpToDate
)

var diskNames = [...]string{"?", "Diskless", "Attaching", "Failed", "Inconsistent",
	"Outdated", "DUnknown", "Consistent", "UpToDate"}

func (d DiskState) String() string {
	if int(d) < len(diskNames) {
		return diskNames[d]
	}
	return fmt.Sprintf("Disk(%d)", uint8(d))
}

// ConnState is the replication connection state, with DRBD's meanings.
type ConnState uint8

const (
	// StandAlone: no connection and none wanted (split brain, operator
	// disconnect, unrelated data).
	StandAlone ConnState = iota + 1
	// Connecting: waiting for the link, or in the handshake.
	Connecting
	// Connected: replicating, nothing to resync.
	Connected
	// SyncSource, SyncTarget: resyncing, this node sends / receives.
	SyncSource
	SyncTarget
	// PausedSync: a resync is paused (by the operator).
	PausedSync
	// VerifySource, VerifyTarget: online verify running.
	VerifySource
	VerifyTarget
)

var connNames = [...]string{"?", "StandAlone", "Connecting", "Connected", "SyncSource",
	"SyncTarget", "PausedSync", "VerifySource", "VerifyTarget"}

func (c ConnState) String() string {
	if int(c) < len(connNames) {
		return connNames[c]
	}
	return fmt.Sprintf("Conn(%d)", uint8(c))
}

// Linked reports whether a handshake has completed on the current link.
func (c ConnState) Linked() bool { return c >= Connected }

// Protocol is the acknowledgement protocol.
type Protocol byte

const (
	// ProtocolA: a write completes when the local write is done and the
	// data is handed to the link.
	ProtocolA Protocol = 'A'
	// ProtocolB: ... and the peer has received it.
	ProtocolB Protocol = 'B'
	// ProtocolC: ... and the peer has written it.
	ProtocolC Protocol = 'C'
)

func (p Protocol) String() string { return string(rune(p)) }

// ParseProtocol reads "A", "B" or "C".
func ParseProtocol(s string) (Protocol, error) {
	switch s {
	case "A", "a":
		return ProtocolA, nil
	case "B", "b":
		return ProtocolB, nil
	case "C", "c":
		return ProtocolC, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want A, B or C)", s)
}

// IOError classifies a disk or request failure. The shells map errno values
// onto it; the core never sees an error string it must parse.
type IOError uint8

const (
	OK IOError = iota
	// EIO: the device reported an I/O error.
	EIO
	// BadChecksum: the data read failed its integrity check (corruption,
	// or a misdirected write landed here).
	BadChecksum
	// NoSpace: ENOSPC (thin or file-backed device full).
	NoSpace
	// DeviceFailed: the device is gone.
	DeviceFailed
	// NotPrimary: the request came to a node that does not accept it.
	NotPrimary
	// NoData: no good copy is reachable (local disk detached and no
	// connected UpToDate peer).
	NoData
	// Suspended: the request could not complete before the node stopped
	// accepting writes (quorum lost, demotion).
	Suspended
)

var ioErrNames = [...]string{"ok", "EIO", "bad-checksum", "ENOSPC", "device-failed",
	"not-primary", "no-data", "suspended"}

func (e IOError) String() string {
	if int(e) < len(ioErrNames) {
		return ioErrNames[e]
	}
	return fmt.Sprintf("ioerr(%d)", uint8(e))
}

// ReqOp is an application request or a disk operation.
type ReqOp uint8

const (
	Read ReqOp = iota + 1
	Write
	Flush
	Trim
)

var opNames = [...]string{"?", "read", "write", "flush", "trim"}

func (o ReqOp) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// AdminCmd is an operator's replication command (drbdadm's verbs).
type AdminCmd uint8

const (
	// CmdPrimary promotes (Input.Force: even an Inconsistent or Outdated
	// disk — `primary --force`).
	CmdPrimary AdminCmd = iota + 1
	CmdSecondary
	// CmdConnect leaves StandAlone (Input.DiscardMyData: this node agrees
	// to be the split-brain victim).
	CmdConnect
	CmdDisconnect
	// CmdVerify starts an online verify; mismatches are marked out of sync.
	CmdVerify
	// CmdInvalidate discards the local data: full resync from the peer.
	CmdInvalidate
	// CmdDetach drops the local disk; CmdPauseSync/CmdResumeSync pause a
	// running resync.
	CmdDetach
	CmdPauseSync
	CmdResumeSync
)

var cmdNames = [...]string{"?", "primary", "secondary", "connect", "disconnect", "verify",
	"invalidate", "detach", "pause-sync", "resume-sync"}

func (c AdminCmd) String() string {
	if int(c) < len(cmdNames) {
		return cmdNames[c]
	}
	return fmt.Sprintf("cmd(%d)", uint8(c))
}

// BufKind says who owns a data buffer the core refers to.
type BufKind uint8

const (
	NoBuf BufKind = iota
	// AppBuf is an application request's buffer (Input.ID of the request).
	AppBuf
	// DiskBuf is a buffer the shell allocated for a core-issued disk read
	// (the DiskIO output's ID); the core releases it.
	DiskBuf
	// RecvBuf is the payload of a received message (Input.Buf); the core
	// releases it.
	RecvBuf
)

// BufRef names a buffer held by the shell. The core never touches data.
type BufRef struct {
	Kind BufKind
	ID   uint64
}

// InputKind says which fields of an Input are meaningful.
type InputKind uint8

const (
	Tick InputKind = iota + 1
	// Request: an application request (ID, Op, Block, Count).
	Request
	// DiskDone: a disk operation issued with DiskIO finished (ID, Err,
	// Digest for reads: the shell's digest of the data read).
	DiskDone
	// MetaDone: a Persist finished (ID, Err).
	MetaDone
	// LinkUp: a replication connection Conn was established.
	LinkUp
	// LinkDown: connection Conn broke (or was closed).
	LinkDown
	// Receive: message Msg arrived on connection Conn, payload in Buf.
	Receive
	// Admin: an operator command (Admin, Force, DiscardMyData).
	Admin
	// PeerGone: the failover core declared the peer dead; Fenced says the
	// fencing agent powered it off.
	PeerGone
)

// Input is one thing that happened to a replica.
type Input struct {
	Kind          InputKind
	ID            uint64
	Op            ReqOp
	Block         uint64
	Count         uint32
	Err           IOError
	Digest        uint64
	Conn          uint64
	Msg           Msg
	Buf           uint64
	Admin         AdminCmd
	Force         bool
	DiscardMyData bool
	Fenced        bool
}

// OutputKind says which fields of an Output are meaningful.
type OutputKind uint8

const (
	// DiskIO: issue Op on the local disk (ID, Block, Count, Buf); report
	// DiskDone with ID. Reads land in Buf.
	DiskIO OutputKind = iota + 1
	// Send: send Msg on Conn, with the contents of Buf (if any) as payload.
	Send
	// Complete: application request ID finished with Err; for a read
	// served elsewhere, its data is in Buf.
	Complete
	// Persist: write Record to the metadata area (flushing as the metadata
	// format requires); report MetaDone with ID.
	Persist
	// Release: the core no longer needs Buf.
	Release
	// Emit: an event for observers (Event).
	Emit
	// WantLink: Connect says whether the shell should (re)establish the
	// replication link; false with Conn set also means close connection
	// Conn.
	WantLink
)

// Output is one thing the replica wants done or known.
type Output struct {
	Kind    OutputKind
	ID      uint64
	Op      ReqOp
	Block   uint64
	Count   uint32
	Buf     BufRef
	Conn    uint64
	Msg     Msg
	Err     IOError
	Record  *meta.Record
	Event   Event
	Connect bool
	// Gen: for a completed write, the generation it was accepted under.
	Gen meta.UUID
}

// MsgKind is a replication protocol message.
type MsgKind uint8

const (
	// MsgHello opens the handshake: generations, flags, disk state, role,
	// size, bitmap count and this node's split-brain facts.
	MsgHello MsgKind = iota + 1
	// MsgBitmap carries the sender's out-of-sync bitmap (run-length coded).
	MsgBitmap
	// MsgState: the sender's role or disk state changed.
	MsgState
	// MsgData: a replicated application write (Seq, Epoch, Block, Count,
	// WriterGen), payload = data; MsgTrim the same without payload.
	MsgData
	MsgTrim
	// MsgRecvAck (protocol B) and MsgWriteAck (C) acknowledge Seq;
	// MsgNegAck says the peer could not write it.
	MsgRecvAck
	MsgWriteAck
	MsgNegAck
	// MsgBarrier closes Epoch; MsgBarrierAck: every write of Epoch is on
	// stable storage at the peer.
	MsgBarrier
	MsgBarrierAck
	// MsgReadReq / MsgReadReply: a read served by the peer (Seq = request).
	MsgReadReq
	MsgReadReply
	// MsgResyncReq asks for blocks; MsgCsumReq asks with the target's digest
	// so the source can answer MsgInSync instead of data.
	MsgResyncReq
	MsgCsumReq
	MsgResyncData
	MsgInSync
	// MsgResyncDone: the target holds every block; it adopts Gen.
	MsgResyncDone
	// MsgVerifyReq carries the source's digest of a range; the reply says
	// whether the target's matched.
	MsgVerifyReq
	MsgVerifyReply
	// MsgPing / MsgPingAck: the link's own keepalive.
	MsgPing
	MsgPingAck
	// MsgOutOfSync: the sender marked a range out of sync (a write it
	// could not mirror during a resync, or a verify mismatch).
	MsgOutOfSync
)

var msgNames = [...]string{"?", "hello", "bitmap", "state", "data", "trim", "recv-ack",
	"write-ack", "neg-ack", "barrier", "barrier-ack", "read-req", "read-reply", "resync-req",
	"csum-req", "resync-data", "in-sync", "resync-done", "verify-req", "verify-reply",
	"ping", "ping-ack", "out-of-sync"}

func (k MsgKind) String() string {
	if int(k) < len(msgNames) {
		return msgNames[k]
	}
	return fmt.Sprintf("msg(%d)", uint8(k))
}

// Msg is a replication message. One flat struct, so that stepping does not
// allocate; each kind uses the fields its comment names.
type Msg struct {
	Kind   MsgKind
	Seq    uint64
	Epoch  uint64
	Block  uint64
	Count  uint32
	Digest uint64
	Err    IOError
	// WriterGen is the generation a write was accepted under.
	WriterGen meta.UUID
	// Hello and state.
	Node          proto.NodeID
	Gen           meta.Generations
	Flags         meta.Flags
	Disk          DiskState
	Role          Role
	Blocks        uint64
	Changes       uint64
	Protocol      Protocol
	DiscardMyData bool
	Crashed       bool
	// PrimarySince orders the two nodes' latest promotions (a cluster-wide
	// claim epoch), for discard-younger/older-primary.
	PrimarySince uint64
	// Bitmap is the run-length coded bitmap (MsgBitmap).
	Bitmap []byte
}

// EventKind classifies replication events.
type EventKind uint8

const (
	RoleChanged EventKind = iota + 1
	DiskChanged
	ConnChanged
	PeerDiskChanged
	// NewGeneration: a new current generation identifier was started.
	NewGeneration
	// ResyncStarted: Blocks to copy; Reason says why and which way.
	ResyncStarted
	ResyncFinished
	// SplitBrain: divergence detected at the handshake; not resolved.
	SplitBrain
	// SplitBrainResolved: a policy (or --discard-my-data) chose a victim;
	// Peer is the node whose changes were discarded, Blocks how many.
	SplitBrainResolved
	// VerifyFinished: Blocks out of sync found.
	VerifyFinished
	// IOFailed: a local disk error (Reason), and what was done about it.
	IOFailed
	// Refused: an admin command or promotion was refused (Reason).
	Refused
	// Unrelated: the peer's data has no common history with ours.
	Unrelated
	// Info: anything else worth a line in the log.
	Info
)

var eventNames = [...]string{"?", "role", "disk", "conn", "peer-disk", "new-generation",
	"resync-start", "resync-done", "split-brain", "split-brain-resolved", "verify-done",
	"io-error", "refused", "unrelated", "info"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event is a report for observers; Reason is a sentence for a human.
type Event struct {
	Kind   EventKind
	Peer   proto.NodeID
	Blocks uint64
	Gen    meta.UUID
	// Gens: the generations a split-brain resolution discarded.
	Gens   []meta.UUID
	Reason string
}
