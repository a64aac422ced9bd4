package node

import (
	"errors"
	"fmt"
	"time"

	"tandem/internal/proto"
	"tandem/internal/repl"
)

// Fencing is the policy that keeps a partition from making two primaries.
type Fencing uint8

const (
	// FenceNone is the classic Heartbeat setup: take over after deadtime.
	// A partition between two live nodes makes a split brain; it is
	// detected and reported when they hear each other again.
	FenceNone Fencing = iota + 1
	// FenceStonith powers off the silent peer and takes over only after the
	// fencing agent reports success. A failed fence means no takeover.
	FenceStonith
	// FenceWitness needs a majority of {node0, node1, witness}: a holder keeps
	// the group only while a majority has promised it their vote, and a
	// candidate takes it only with a majority.
	FenceWitness
)

var fencingNames = [...]string{"?", "none", "stonith", "witness"}

func (f Fencing) String() string {
	if int(f) < len(fencingNames) {
		return fencingNames[f]
	}
	return fmt.Sprintf("fencing(%d)", uint8(f))
}

// ParseFencing reads a fencing policy name.
func ParseFencing(s string) (Fencing, error) {
	for i, n := range fencingNames {
		if i > 0 && n == s {
			return Fencing(i), nil
		}
	}
	return 0, fmt.Errorf("unknown fencing policy %q (want none, stonith or witness)", s)
}

// Medium is one heartbeat path from this node.
type Medium struct {
	ID   proto.MediumID
	Kind proto.MediumKind
	Name string
	// Peers are the nodes this medium reaches.
	Peers []proto.NodeID
}

// Resource is one member of the resource group, as in haresources.
type Resource struct {
	// Name identifies the resource in events, e.g. "ip:192.168.1.5/24".
	Name string
	// StartTimeout, StopTimeout and MonitorTimeout bound each action; no
	// answer in time counts as a failure. Default 20 s each.
	StartTimeout, StopTimeout, MonitorTimeout time.Duration
	// MonitorInterval is how often the resource is checked while the group
	// runs; 0 means never.
	MonitorInterval time.Duration
}

// Config is one node's view of the cluster. Durations are in the node's own
// monotonic time.
type Config struct {
	// Self is this node's id; Names[id] is each node's name.
	Self  proto.NodeID
	Names []string
	// IsWitness: this node is the diskless tiebreaker (never holds the group).
	IsWitness bool
	// Media are this node's heartbeat media.
	Media []Medium

	// Replication, if set, makes the first member of Group the replicated
	// disk: its start is the promotion, its stop the demotion, both done
	// inside the core, and the node only campaigns while its disk could
	// be promoted.
	Replication *repl.Config

	// Keepalive is the time between heartbeats. Default 1 s.
	Keepalive time.Duration
	// Warntime: a heartbeat later than this after the previous one on the
	// same medium is counted as late. Default Deadtime/2.
	Warntime time.Duration
	// Deadtime: a peer silent on every medium this long is dead. Default 30 s.
	// Must exceed 2×Keepalive.
	Deadtime time.Duration
	// Initdead: after start-up, how long to wait for a peer never heard
	// before declaring it dead (boots are slow). Default 2×Deadtime.
	Initdead time.Duration

	// Fencing is the split-brain policy. Default FenceNone.
	Fencing Fencing
	// FenceDelay: a node that does not hold the group waits this long
	// before fencing, so that in a partition the holder fences first and the
	// service does not move (Pacemaker's priority-fencing-delay). Default 5 s.
	FenceDelay time.Duration
	// FenceTimeout bounds one fencing attempt. Default 20 s.
	FenceTimeout time.Duration
	// FenceRetry is the pause after a failed fence before the next attempt.
	// Default 5 s.
	FenceRetry time.Duration
	// ClockDriftPPM is the largest rate difference assumed between two
	// nodes' clocks, in parts per million; leases are shortened by twice
	// this so a fast clock cannot let two leases overlap. Default 5000 (0.5%).
	ClockDriftPPM int64

	// Preferred is the node that owns the group when both are up (the node
	// named first in haresources).
	Preferred proto.NodeID
	// AutoFailback: the preferred node takes the group back when it returns.
	AutoFailback bool
	// Group is the resource group, started left to right, stopped right to left.
	Group []Resource
	// MigrationThreshold: after this many failures of one resource on this
	// node, the group moves away. Default 3.
	MigrationThreshold int
}

// Peers are the nodes this node exchanges heartbeats with.
func (c *Config) peers() []proto.NodeID {
	var out []proto.NodeID
	for id := range c.Names {
		if proto.NodeID(id) != c.Self {
			out = append(out, proto.NodeID(id))
		}
	}
	return out
}

// DataPeer is the other data node (witnesses have none; they watch both).
func (c *Config) DataPeer() proto.NodeID {
	if c.IsWitness {
		return proto.NoNode
	}
	return 1 - c.Self
}

// HasWitness reports whether the cluster has a third, witness node.
func (c *Config) HasWitness() bool { return len(c.Names) == 3 }

// WithDefaults returns the config with zero fields set to Heartbeat's and
// Tandem's defaults.
func (c Config) WithDefaults() Config {
	if c.Keepalive == 0 {
		c.Keepalive = time.Second
	}
	if c.Deadtime == 0 {
		c.Deadtime = 30 * time.Second
	}
	if c.Warntime == 0 {
		c.Warntime = c.Deadtime / 2
	}
	if c.Initdead == 0 {
		c.Initdead = 2 * c.Deadtime
	}
	if c.Fencing == 0 {
		c.Fencing = FenceNone
	}
	if c.FenceDelay == 0 {
		c.FenceDelay = 5 * time.Second
	}
	if c.FenceTimeout == 0 {
		c.FenceTimeout = 20 * time.Second
	}
	if c.FenceRetry == 0 {
		c.FenceRetry = 5 * time.Second
	}
	if c.ClockDriftPPM == 0 {
		c.ClockDriftPPM = 5000
	}
	if c.MigrationThreshold == 0 {
		c.MigrationThreshold = 3
	}
	c.Group = append([]Resource(nil), c.Group...)
	for i := range c.Group {
		r := &c.Group[i]
		for _, d := range []*time.Duration{&r.StartTimeout, &r.StopTimeout, &r.MonitorTimeout} {
			if *d == 0 {
				*d = 20 * time.Second
			}
		}
	}
	return c
}

// Validate checks the config as Heartbeat checks ha.cf, and says what to change.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Names) != 2 && len(c.Names) != 3 {
		bad("nodes", "a cluster has 2 data nodes and at most one witness, got %d nodes", len(c.Names))
	}
	if int(c.Self) >= len(c.Names) {
		bad("self", "node id %d is not in the cluster of %d nodes", c.Self, len(c.Names))
	}
	if c.IsWitness && int(c.Self) != 2 {
		bad("witness", "the witness must be node 2, not %d", c.Self)
	}
	if c.Keepalive <= 0 {
		bad("keepalive", "must be positive, got %v", c.Keepalive)
	}
	if c.Deadtime <= 2*c.Keepalive {
		bad("deadtime", "%v must exceed 2×keepalive (%v), or one lost heartbeat declares the peer dead", c.Deadtime, 2*c.Keepalive)
	}
	if c.Warntime < c.Keepalive || c.Warntime >= c.Deadtime {
		bad("warntime", "%v must lie between keepalive (%v) and deadtime (%v)", c.Warntime, c.Keepalive, c.Deadtime)
	}
	if c.Initdead < c.Deadtime {
		bad("initdead", "%v must be at least deadtime (%v): boots are slower than heartbeats", c.Initdead, c.Deadtime)
	}
	if c.Fencing < FenceNone || c.Fencing > FenceWitness {
		bad("fencing", "unknown policy %d", c.Fencing)
	}
	if c.Fencing == FenceWitness && !c.HasWitness() {
		bad("fencing", "policy witness needs a third, witness node")
	}
	if c.ClockDriftPPM < 0 || c.ClockDriftPPM > 100000 {
		bad("clock_drift_ppm", "%d is outside 0..100000", c.ClockDriftPPM)
	}
	if int(c.Preferred) > 1 {
		bad("preferred", "node %d is not a data node", c.Preferred)
	}
	if c.MigrationThreshold < 1 {
		bad("migration_threshold", "must be at least 1, got %d", c.MigrationThreshold)
	}
	if len(c.Media) == 0 {
		bad("media", "at least one heartbeat medium is needed (two are better: a network and a serial cable)")
	}
	for i, m := range c.Media {
		if m.Kind != proto.Network && m.Kind != proto.Serial {
			bad(fmt.Sprintf("media[%d]", i), "unknown kind %d", m.Kind)
		}
		for _, p := range m.Peers {
			if int(p) >= len(c.Names) || p == c.Self {
				bad(fmt.Sprintf("media[%d] %s", i, m.Name), "peer %d is not another node of the cluster", p)
			}
		}
	}
	for _, p := range c.peers() {
		if !c.reaches(p) {
			name := fmt.Sprint(p)
			if int(p) < len(c.Names) {
				name = c.Names[p]
			}
			bad("media", "no medium reaches %s", name)
		}
	}
	for i, r := range c.Group {
		if r.Name == "" {
			bad(fmt.Sprintf("group[%d]", i), "resource has no name")
		}
		if r.MonitorInterval < 0 {
			bad(fmt.Sprintf("group[%d] %s", i, r.Name), "monitor interval must not be negative")
		}
	}
	return errors.Join(errs...)
}

func (c *Config) reaches(p proto.NodeID) bool {
	for _, m := range c.Media {
		for _, q := range m.Peers {
			if q == p {
				return true
			}
		}
	}
	return false
}
