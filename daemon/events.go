package daemon

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"tandem/daemon/config"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// Event is one line of `tandem events`: a core Emit, with the node's states
// right after it, as drbdsetup events2 prints a change with the new state.
type Event struct {
	Time time.Time `json:"time"`
	Node string    `json:"node"`
	// Source is "node" (membership, fencing, the group) or "repl" (the
	// replicated disk).
	Source string `json:"source"`
	Kind   string `json:"kind"`
	Peer   string `json:"peer,omitempty"`
	Medium string `json:"medium,omitempty"`
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	Blocks uint64 `json:"blocks,omitempty"`
	Reason string `json:"reason,omitempty"`
	// The node's states after the event.
	State string `json:"state"`
	Role  string `json:"role,omitempty"`
	Disk  string `json:"disk,omitempty"`
	Conn  string `json:"conn,omitempty"`
}

// subscriber is one `tandem events` connection. Lines that do not fit are
// dropped and counted rather than slowing the loop.
type subscriber struct {
	ch      chan []byte
	dropped uint64
}

// observed is what the shell remembers about the core's reports, for status:
// nothing here feeds back into the core.
type observed struct {
	resources   []ResourceStatus
	actions     map[uint64]int // action id -> resource index
	peerDeadAt  time.Time
	failover    *Failover
	syncStarted time.Time
	syncTotal   uint64
	events      uint64
}

func (o *observed) actionStarted(out *node.Output, s *config.NodeSetup) {
	if o.resources == nil {
		for _, r := range s.Core.Group {
			o.resources = append(o.resources, ResourceStatus{Name: r.Name})
		}
		o.actions = map[uint64]int{}
	}
	if out.Resource >= len(o.resources) {
		return
	}
	o.actions[out.ID] = out.Resource
	r := &o.resources[out.Resource]
	r.State = map[node.Op]string{node.Start: "starting", node.Stop: "stopping", node.Monitor: r.State}[out.Op]
	r.op = out.Op
	r.Since = time.Now()
}

func (o *observed) actionDone(in node.Input) {
	i, ok := o.actions[in.ID]
	if !ok {
		return
	}
	delete(o.actions, in.ID)
	r := &o.resources[i]
	switch {
	case !in.OK:
		r.State, r.Error = r.op.String()+" failed", in.Err
	case r.op == node.Stop:
		r.State, r.Error = "stopped", ""
	default:
		r.State, r.Error = "running", ""
	}
	r.Since = time.Now()
}

func (d *loop) baseEvent(source, kind, reason string) Event {
	e := Event{Time: time.Now(), Node: d.setup.Name, Source: source, Kind: kind, Reason: reason, State: d.n.State().String()}
	if r := d.n.Replica(); r != nil {
		e.Role, e.Disk, e.Conn = r.Role().String(), r.Disk().String(), r.Conn().String()
	}
	return e
}

func (d *loop) name(id proto.NodeID) string {
	if int(id) < len(d.setup.Core.Names) {
		return d.setup.Core.Names[id]
	}
	return ""
}

// nodeEvent logs and publishes an event of the failover core.
func (d *loop) nodeEvent(ev *node.Event) {
	e := d.baseEvent("node", ev.Kind.String(), ev.Reason)
	switch ev.Kind {
	case node.StateChanged:
		e.From, e.To = ev.From.String(), ev.To.String()
		if ev.To == proto.Primary && d.obs.failover != nil && d.obs.failover.Primary.IsZero() {
			f := d.obs.failover
			f.Primary = e.Time
			if !f.Detected.IsZero() {
				f.Duration = f.Primary.Sub(f.Detected).String()
			}
		}
	case node.PeerDead, node.PeerAlive, node.LateHeartbeat, node.FenceStarted, node.FenceSucceeded, node.FenceFailed, node.SplitBrain:
		e.Peer = d.name(ev.Peer)
		if ev.Kind == node.LateHeartbeat {
			e.Medium = d.mediumName(ev.Medium)
		}
		if ev.Kind == node.PeerDead {
			d.obs.peerDeadAt = e.Time
		}
	case node.Acquired:
		f := &Failover{Acquired: e.Time, Reason: ev.Reason}
		if ev.Grounds == node.AfterSilence {
			f.Grounds = "after silence"
			f.Detected = d.obs.peerDeadAt
		} else {
			f.Grounds = "by agreement"
		}
		d.obs.failover = f
	}
	level := slog.LevelInfo
	switch ev.Kind {
	case node.LateHeartbeat, node.Note:
		level = slog.LevelDebug
	case node.FenceFailed, node.ResourceFailed, node.AdminRefused, node.QuorumLost:
		level = slog.LevelWarn
	case node.SplitBrain:
		level = slog.LevelError
	}
	if ev.Kind == node.AdminRefused && d.stop.phase == 1 {
		d.stop.refused = ev.Reason
	}
	d.log.Log(context.Background(), level, ev.Reason, "event", e.Kind, "state", e.State)
	d.broadcast(&e)
}

func (d *loop) mediumName(id proto.MediumID) string {
	if m := d.mediaByID[id]; m != nil {
		return m.Name()
	}
	return ""
}

// replEvent logs and publishes an event of the replicated disk.
func (d *loop) replEvent(ev *repl.Event) {
	e := d.baseEvent("repl", ev.Kind.String(), ev.Reason)
	e.Blocks = ev.Blocks
	if ev.Kind == repl.SplitBrainResolved {
		e.Peer = d.name(ev.Peer)
	}
	if ev.Kind == repl.ResyncStarted {
		d.obs.syncStarted, d.obs.syncTotal = e.Time, ev.Blocks
	}
	level := slog.LevelInfo
	switch ev.Kind {
	case repl.SplitBrain, repl.IOFailed, repl.Unrelated:
		level = slog.LevelError
	case repl.Refused:
		level = slog.LevelWarn
	case repl.Info:
		level = slog.LevelDebug
	}
	d.log.Log(context.Background(), level, ev.Reason, "event", e.Kind, "role", e.Role, "disk", e.Disk, "conn", e.Conn)
	d.broadcast(&e)
}

func (d *loop) broadcast(e *Event) {
	d.obs.events++
	if d.capture != nil {
		*d.capture = append(*d.capture, *e)
	}
	if len(d.subs) == 0 {
		return
	}
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	line = append(line, '\n')
	for s := range d.subs {
		select {
		case s.ch <- line:
		default:
			s.dropped++
		}
	}
}
