package config

import (
	"fmt"

	"tandem/daemon/resource"
	"tandem/daemon/transport"
	"tandem/internal/node"
	"tandem/internal/proto"
)

// Error is one thing wrong with a configuration file. Load and Parse return
// every Error they find, joined with errors.Join, in line order.
type Error struct {
	// File is the file's name as given to Load or Parse.
	File string
	// Line is the line of the offending key, or of the section a missing
	// key belongs in; 0 when no line applies (a cross-section rule).
	Line int
	// Key is the dotted key, without array indices: "node.address".
	Key string
	// Msg says what is wrong and what to write instead.
	Msg string
}

func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	if e.Key != "" {
		s += ": " + e.Key
	}
	return s + ": " + e.Msg
}

// File is a parsed, validated configuration file: the whole cluster, as
// both nodes read it.
type File struct {
	// Path is the file's name as given to Load or Parse.
	Path string
	// Cluster is the cluster's name ([cluster] name).
	Cluster string

	nodes   []*NodeSetup // by node id
	summary string
}

// NodeSetup is everything one node's daemon needs from the file.
type NodeSetup struct {
	// Name is the node's name; ID its index in Core.Names.
	Name string
	ID   proto.NodeID
	// Witness: this node is the diskless tiebreaker.
	Witness bool

	// Core is the config for node.New, with defaults applied and
	// validated. On the data nodes of a replicating cluster
	// Core.Replication is set and Core.Group[0] is the replicated disk.
	// Core.Replication.Blocks is 0 unless the file sets size or blocks:
	// the daemon then sets it to the data area meta.NewLayout computes
	// for Disk.Backing before calling node.New.
	Core node.Config

	// UDP and Serial are this node's heartbeat media. Their Common.ID
	// matches Core.Media[i].ID; Common.Key is the auth key and
	// Common.Replay one filter shared by all of them (a new one each time
	// Node is called). Logger is left for the daemon to set.
	UDP    []transport.UDPConfig
	Serial []transport.SerialConfig

	// Disk is the replicated disk; nil on a witness and in a cluster
	// without replication.
	Disk *DiskSetup

	// Resources[i] says how to carry out Core.Group[i]; nil on a witness,
	// which never runs the group.
	Resources []ResourceSpec

	// Fences are the agents that can fence this node's data peer, in file
	// order: try each in turn. Empty unless cluster fencing is stonith.
	Fences []FenceSpec

	// Key is the shared authentication key (authkey or authkey_file).
	Key []byte

	// ControlSocket is the unix socket `tandem status` and the admin verbs
	// talk to. MetricsAddress is host:port for Prometheus metrics, or ""
	// for none.
	ControlSocket  string
	MetricsAddress string
}

// DiskSetup is where one node's replicated data lives and how it is
// reached.
type DiskSetup struct {
	// Backing is the backing device or file (node.disk).
	Backing string
	// MetaDisk is the external metadata device or file; "" means internal
	// metadata at the end of Backing.
	MetaDisk string
	// NBDSocket is the unix socket the NBD server listens on; NBDDevice the
	// kernel device (/dev/nbdN) to attach to it, or "" to attach none.
	NBDSocket string
	NBDDevice string
	// Listen is this node's replication link address (host:port); Peer the
	// data peer's.
	Listen string
	Peer   string
	// PullAhead: on congestion a protocol A primary goes ahead and
	// resyncs later instead of blocking writes (on_congestion).
	PullAhead bool
	// DataIntegrity is the checksum carried with each replicated block:
	// "crc32c" or "" for none.
	DataIntegrity string
}

// ResourceSpec is one member of the resource group.
type ResourceSpec struct {
	// Name is the same as the core's Group[i].Name, e.g. "ip:192.168.1.5/24".
	Name string
	// Disk: this member is the replicated disk, which the core promotes
	// and demotes itself; Agent is empty.
	Disk bool
	// Agent is what resource.FromSpec builds the member's agent from. An
	// FS member's Device is this node's nbd_device.
	Agent resource.Spec
}

// FenceKind says how a FenceSpec fences.
type FenceKind uint8

const (
	// FenceExec runs Command (sh -c), a DRBD-style fence-peer handler.
	FenceExec FenceKind = iota + 1
	// FenceAgent runs a fence-agents program (fence_ipmilan, ...).
	FenceAgent
	// FenceQEMU cuts power to (or resets) the target's QEMU over QMP.
	FenceQEMU
)

var fenceKindNames = [...]string{"?", "exec", "fence_agent", "qemu"}

func (k FenceKind) String() string {
	if int(k) < len(fenceKindNames) {
		return fenceKindNames[k]
	}
	return fmt.Sprintf("fence(%d)", uint8(k))
}

// FenceSpec is one way to fence one node. Its fields are daemon/fence's
// ExecSpec, FenceAgentSpec and QEMUSpec, flattened: Kind says which apply.
// "{target}" and "{peer}" in Command, Socket and Options values are already
// replaced by the target's name.
type FenceSpec struct {
	Kind FenceKind
	// Name names the agent in logs, e.g. "qemu server2".
	Name string
	// Target is the node it fences.
	Target     proto.NodeID
	TargetName string
	// Command (exec) is the handler's command line.
	Command string
	// Agent (fence_agent) is the program; Options its options; PeerOption,
	// if set, the option that is given the target's name ("plug").
	Agent      string
	Options    map[string]string
	PeerOption string
	// Socket (qemu) is the target's QMP unix socket.
	Socket string
	// Action is "off" (default) or "reboot" for fence_agent, "off"
	// (default, QMP quit) or "reset" (QMP system_reset) for qemu.
	Action string
}
