package repl

import (
	"errors"
	"fmt"
	"time"

	"tandem/internal/proto"
)

// SB0 is the after-sb-0pri policy: split brain detected, no primary now.
type SB0 uint8

const (
	SB0Disconnect SB0 = iota + 1
	DiscardZeroChanges
	DiscardYoungerPrimary
	DiscardOlderPrimary
	DiscardLeastChanges
	// DiscardNode discards the changes of Config.DiscardNode.
	DiscardNode
)

var sb0Names = [...]string{"?", "disconnect", "discard-zero-changes", "discard-younger-primary",
	"discard-older-primary", "discard-least-changes", "discard-node"}

func (p SB0) String() string {
	if int(p) < len(sb0Names) {
		return sb0Names[p]
	}
	return fmt.Sprintf("sb0(%d)", uint8(p))
}

// SB1 is the after-sb-1pri policy: split brain detected, one primary now.
type SB1 uint8

const (
	SB1Disconnect SB1 = iota + 1
	// Consensus applies the after-sb-0pri policy; if that discards the
	// secondary, so be it, otherwise disconnect.
	Consensus
	DiscardSecondary
)

var sb1Names = [...]string{"?", "disconnect", "consensus", "discard-secondary"}

func (p SB1) String() string {
	if int(p) < len(sb1Names) {
		return sb1Names[p]
	}
	return fmt.Sprintf("sb1(%d)", uint8(p))
}

// SB2 is the after-sb-2pri policy: both are primary. Only disconnect is
// offered: discarding a running primary's data is never automatic.
type SB2 uint8

const SB2Disconnect SB2 = 1

func (p SB2) String() string { return "disconnect" }

// ParseSB0 reads an after-sb-0pri policy; discard-node-NAME names a node.
func ParseSB0(s string, names []string) (SB0, proto.NodeID, error) {
	for i, n := range sb0Names {
		if i > 0 && n == s && SB0(i) != DiscardNode {
			return SB0(i), proto.NoNode, nil
		}
	}
	const prefix = "discard-node-"
	if len(s) > len(prefix) && s[:len(prefix)] == prefix {
		for i, n := range names {
			if n == s[len(prefix):] {
				return DiscardNode, proto.NodeID(i), nil
			}
		}
		return 0, proto.NoNode, fmt.Errorf("after-sb-0pri %q names no node of this cluster", s)
	}
	return 0, proto.NoNode, fmt.Errorf("unknown after-sb-0pri policy %q (want disconnect, discard-zero-changes, discard-younger-primary, discard-older-primary, discard-least-changes or discard-node-NAME)", s)
}

// ParseSB1 reads an after-sb-1pri policy.
func ParseSB1(s string) (SB1, error) {
	for i, n := range sb1Names {
		if i > 0 && n == s {
			return SB1(i), nil
		}
	}
	return 0, fmt.Errorf("unknown after-sb-1pri policy %q (want disconnect, consensus or discard-secondary)", s)
}

// ParseSB2 reads an after-sb-2pri policy.
func ParseSB2(s string) (SB2, error) {
	if s == "disconnect" {
		return SB2Disconnect, nil
	}
	return 0, fmt.Errorf("unknown after-sb-2pri policy %q (only disconnect: a running primary's data is never discarded automatically)", s)
}

// OnIOError is what a local disk error does.
type OnIOError uint8

const (
	// Detach drops the failed disk and serves I/O through the peer.
	Detach OnIOError = iota + 1
	// PassOn reports the error to the application.
	PassOn
)

func (o OnIOError) String() string {
	if o == PassOn {
		return "pass_on"
	}
	return "detach"
}

// Config is one node's replication settings for one volume.
type Config struct {
	Self, Peer proto.NodeID
	Names      []string
	// Blocks is the data area size in 4 KiB blocks.
	Blocks   uint64
	Protocol Protocol
	// Fencing: on losing the peer, a primary suspends I/O until the peer is
	// known Outdated (it says so over a heartbeat medium) or was fenced, as
	// DRBD's fencing resource-and-stonith. Set for stonith and witness.
	Fencing   bool
	OnIOError OnIOError
	// Split-brain recovery policies.
	AfterSB0    SB0
	DiscardNode proto.NodeID
	AfterSB1    SB1
	AfterSB2    SB2
	// ALSlots is the activity log size in 4 MiB extents. Default 64.
	ALSlots int
	// ResyncRate caps resync traffic, in blocks per second. Default 25600
	// (100 MiB/s). ResyncInflight bounds resync requests in flight (default
	// 16), ResyncChunk is blocks per request (default 8), and AppShare is
	// the percentage of those slots left to application writes while they
	// arrive (default 50).
	ResyncRate     uint64
	ResyncInflight int
	ResyncChunk    uint32
	AppShare       int
	// CsumResync: send digests first and data only where they differ.
	CsumResync bool
	// PingInterval and Timeout are the replication link's own keepalive:
	// a link silent for Timeout is declared broken. Defaults 1 s and 3 s.
	PingInterval, Timeout time.Duration
	// MaxEpochWrites closes a write epoch after this many writes (default
	// 64); BarrierInterval closes a non-empty epoch after this long
	// (default 100 ms) so the transfer log stays short.
	MaxEpochWrites  int
	BarrierInterval time.Duration
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Protocol == 0 {
		c.Protocol = ProtocolC
	}
	if c.OnIOError == 0 {
		c.OnIOError = Detach
	}
	if c.AfterSB0 == 0 {
		c.AfterSB0 = SB0Disconnect
	}
	if c.AfterSB1 == 0 {
		c.AfterSB1 = SB1Disconnect
	}
	if c.AfterSB2 == 0 {
		c.AfterSB2 = SB2Disconnect
	}
	if c.ALSlots == 0 {
		c.ALSlots = 64
	}
	if c.ResyncRate == 0 {
		c.ResyncRate = 25600
	}
	if c.ResyncInflight == 0 {
		c.ResyncInflight = 16
	}
	if c.ResyncChunk == 0 {
		c.ResyncChunk = 8
	}
	if c.AppShare == 0 {
		c.AppShare = 50
	}
	if c.PingInterval == 0 {
		c.PingInterval = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 3 * c.PingInterval
	}
	if c.MaxEpochWrites == 0 {
		c.MaxEpochWrites = 64
	}
	if c.BarrierInterval == 0 {
		c.BarrierInterval = 100 * time.Millisecond
	}
	if c.DiscardNode == 0 && c.AfterSB0 != DiscardNode {
		c.DiscardNode = proto.NoNode
	}
	return c
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("replication %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Self == c.Peer || c.Self >= proto.MaxNodes || c.Peer >= proto.MaxNodes {
		bad("nodes", "self %d and peer %d must be two different node ids", c.Self, c.Peer)
	}
	if c.Blocks == 0 {
		bad("size", "the data area is empty")
	}
	switch c.Protocol {
	case ProtocolA, ProtocolB, ProtocolC:
	default:
		bad("protocol", "%q is not A, B or C", string(rune(c.Protocol)))
	}
	if c.AfterSB0 == DiscardNode && c.DiscardNode >= proto.MaxNodes {
		bad("after-sb-0pri", "discard-node names no node")
	}
	if c.ALSlots < 1 || c.ALSlots > 65534 {
		bad("al-extents", "%d is out of range 1..65534", c.ALSlots)
	}
	if c.AppShare < 0 || c.AppShare > 90 {
		bad("app-share", "%d%% is out of range 0..90", c.AppShare)
	}
	if c.Timeout <= c.PingInterval {
		bad("timeout", "%v must exceed ping-int %v", c.Timeout, c.PingInterval)
	}
	return errors.Join(errs...)
}
