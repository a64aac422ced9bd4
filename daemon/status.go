package daemon

import (
	"time"

	"tandem/daemon/link"
	"tandem/daemon/nbd"
	"tandem/daemon/transport"
	"tandem/internal/meta"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// Status is what `tandem status` shows: one node's view of the cluster, as
// drbdadm status and crm_mon together.
type Status struct {
	Node        string `json:"node"`
	Cluster     string `json:"cluster,omitempty"`
	Peer        string `json:"peer,omitempty"`
	Incarnation uint64 `json:"incarnation"`
	Uptime      string `json:"uptime"`
	// State is this node's group state (Secondary, Starting, Primary,
	// Stopping, Blocked, Witness); Epoch its claim generation.
	State string `json:"state"`
	Epoch uint64 `json:"epoch"`
	// PeerAlive: heard on some medium within deadtime; PeerState is the
	// group state its latest heartbeat announced.
	PeerAlive bool   `json:"peer_alive"`
	PeerState string `json:"peer_state,omitempty"`
	Stopping  bool   `json:"stopping,omitempty"`
	// QuorumLost: this node holds the group but may not accept writes
	// (under the witness policy, its majority's promises ran out).
	QuorumLost bool `json:"quorum_lost,omitempty"`

	Replication  *ReplStatus      `json:"replication,omitempty"`
	Group        []ResourceStatus `json:"group,omitempty"`
	Media        []MediumStatus   `json:"media,omitempty"`
	LastFailover *Failover        `json:"last_failover,omitempty"`

	Link          *link.Counters `json:"link,omitempty"`
	NBD           *nbd.Counters  `json:"nbd,omitempty"`
	NBDSocket     string         `json:"nbd_socket,omitempty"`
	KernelDevice  string         `json:"kernel_device,omitempty"`
	KernelError   string         `json:"kernel_error,omitempty"`
	Events        uint64         `json:"events"`
	EventsDropped uint64         `json:"events_dropped,omitempty"`
	// Debug is the replica's internal progress (verbose only); HeldBuffers
	// and PendingRequests are the shell's side of it: data buffers the core
	// has not released and application requests not yet completed.
	Debug           string `json:"debug,omitempty"`
	HeldBuffers     int    `json:"held_buffers"`
	PendingRequests int    `json:"pending_requests"`
}

// ReplStatus is the replicated disk's state on both nodes, as this node
// knows it.
type ReplStatus struct {
	Role        string `json:"role"`
	Disk        string `json:"disk"`
	PeerDisk    string `json:"peer_disk"`
	Conn        string `json:"conn"`
	Protocol    string `json:"protocol"`
	Suspended   bool   `json:"suspended,omitempty"`
	Generations string `json:"generations"`
	SizeKiB     uint64 `json:"size_kib"`
	// OutOfSyncKiB is what the bitmap marks as differing from the peer.
	OutOfSyncKiB uint64      `json:"out_of_sync_kib"`
	Sync         *SyncStatus `json:"sync,omitempty"`
	SplitBrain   bool        `json:"split_brain,omitempty"`
	PeerOutdated bool        `json:"peer_outdated,omitempty"`
	Stats        repl.Stats  `json:"stats"`
}

// SyncStatus is a running resync's progress.
type SyncStatus struct {
	LeftKiB  uint64  `json:"left_kib"`
	TotalKiB uint64  `json:"total_kib"`
	Percent  float64 `json:"percent"`
	// ETA is the time left at the average rate so far ("" until known).
	ETA string `json:"eta,omitempty"`
}

// ResourceStatus is one member of the group, as its last action left it.
type ResourceStatus struct {
	Name  string    `json:"name"`
	State string    `json:"state"` // "", starting, running, stopping, stopped, "<op> failed"
	Error string    `json:"error,omitempty"`
	Since time.Time `json:"since,omitzero"`
	op    node.Op
}

// MediumStatus is one heartbeat medium: what the core counted about the
// peer's heartbeats on it, and what the transport dropped.
type MediumStatus struct {
	ID           proto.MediumID     `json:"id"`
	Name         string             `json:"name"`
	Kind         string             `json:"kind"`
	Heard        bool               `json:"heard"`
	LastHeardAgo string             `json:"last_heard_ago,omitempty"`
	Received     uint64             `json:"received"`
	Late         uint64             `json:"late"`
	MaxInterval  string             `json:"max_interval,omitempty"`
	Transport    transport.Counters `json:"transport"`
	LastError    string             `json:"last_error,omitempty"`
}

// Failover is the last time this node took the group: on what grounds, why,
// and how long from detecting the peer's death to running the group.
type Failover struct {
	Grounds  string    `json:"grounds"`
	Reason   string    `json:"reason"`
	Detected time.Time `json:"detected,omitzero"`
	Acquired time.Time `json:"acquired"`
	Primary  time.Time `json:"primary,omitzero"`
	Duration string    `json:"duration,omitempty"`
}

// status builds the Status on the loop goroutine.
func (d *loop) status(verbose bool) *Status {
	s := d.setup
	now := d.now()
	st := &Status{Node: s.Name, Incarnation: d.opts.Incarnation, Uptime: time.Since(d.start).Round(time.Millisecond).String(),
		State: d.n.State().String(), Epoch: d.n.Epoch(), Stopping: d.stop.phase > 0, Events: d.obs.events,
		NBDSocket: d.endpoints.NBD, KernelError: d.kernelErr}
	st.HeldBuffers, st.PendingRequests = len(d.bufs), len(d.app)
	st.QuorumLost = !s.Witness && d.n.State() == proto.Primary && !d.n.AcceptingWrites(now)
	if !s.Witness {
		peer := s.Core.DataPeer()
		st.Peer = d.name(peer)
		mem := d.n.Membership()
		p := mem.Peer(peer)
		st.PeerAlive = p.Heard && !mem.Dead(peer, now)
		if p.Heard {
			st.PeerState = p.Last.State.String()
		}
		for _, m := range d.media {
			ms := MediumStatus{ID: m.ID(), Name: m.Name(), Kind: m.Kind().String(), Transport: m.Counters()}
			if int(m.ID()) < len(p.Media) {
				x := p.Media[m.ID()]
				ms.Heard, ms.Received, ms.Late = x.Heard, x.Received, x.Late
				if x.Heard {
					ms.LastHeardAgo = now.Sub(x.LastHeard).Round(time.Millisecond).String()
				}
				if x.MaxInterval > 0 {
					ms.MaxInterval = x.MaxInterval.String()
				}
			}
			if err, at := m.LastError(); err != nil {
				ms.LastError = at.Format(time.RFC3339) + ": " + err.Error()
			}
			st.Media = append(st.Media, ms)
		}
	}
	if r := d.n.Replica(); r != nil {
		rs := &ReplStatus{Role: r.Role().String(), Disk: r.Disk().String(), PeerDisk: r.PeerDisk().String(),
			Conn: r.Conn().String(), Protocol: r.Config().Protocol.String(), Suspended: r.Suspended(),
			Generations: r.Generations().String(), SizeKiB: r.Config().Blocks * meta.BlockSize / 1024,
			OutOfSyncKiB: r.OutOfSync() * meta.BlockSize / 1024, Stats: r.Stats,
			SplitBrain: r.Conn() == repl.StandAlone && r.Stats.SplitBrains > 0, PeerOutdated: r.KnowsPeerOutdated()}
		if c := r.Conn(); c == repl.SyncSource || c == repl.SyncTarget || c == repl.PausedSync {
			left, total := r.SyncProgress()
			ss := &SyncStatus{LeftKiB: left * meta.BlockSize / 1024, TotalKiB: total * meta.BlockSize / 1024}
			if total > 0 {
				ss.Percent = 100 * float64(total-min(left, total)) / float64(total)
			}
			if el := time.Since(d.obs.syncStarted); total > left && el > 0 && !d.obs.syncStarted.IsZero() {
				rate := float64(total-left) / el.Seconds()
				ss.ETA = time.Duration(float64(left) / rate * float64(time.Second)).Round(time.Second).String()
			}
			rs.Sync = ss
		}
		st.Replication = rs
		if verbose {
			st.Debug = r.Debug()
		}
	}
	if len(s.Core.Group) > 0 {
		st.Group = make([]ResourceStatus, len(s.Core.Group))
		for i, g := range s.Core.Group {
			st.Group[i] = ResourceStatus{Name: g.Name}
			if i < len(d.obs.resources) {
				st.Group[i] = d.obs.resources[i]
			}
			if i == 0 && s.Core.Replication != nil {
				st.Group[i].State = "secondary"
				if r := d.n.Replica(); r != nil && r.Role() == repl.Primary {
					st.Group[i].State = "primary"
				}
			}
		}
	}
	if d.obs.failover != nil {
		f := *d.obs.failover
		st.LastFailover = &f
	}
	if d.link != nil {
		c := d.link.Counters()
		st.Link = &c
	}
	if d.nbd != nil {
		c := d.nbd.Counters()
		st.NBD = &c
	}
	if d.kernelDev != nil {
		st.KernelDevice = d.kernelDev.Path()
	}
	for sub := range d.subs {
		st.EventsDropped += sub.dropped
	}
	return st
}
