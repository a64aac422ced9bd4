// Package node is Tandem's deterministic core for one node: membership over
// several heartbeat media, the quorum and fencing rules that decide who may
// hold the resource group, and the group itself (start left to right, stop
// right to left, monitors, failure counts, handover).
//
// A Node is a plain value. Step(now, input) returns what must be done; the
// production daemon and the simulator perform it and report back through
// later inputs. Nothing here reads a clock, sleeps, starts goroutines, does
// I/O or draws from a global random source, so the same inputs always give the
// same outputs.
//
// # Who may hold the group
//
// Every node keeps at most one promise ("vote") at a time, valid for one lease
// period L = deadtime after the latest request it covers. A node that wants
// the group (a candidate) or holds it asks for votes in its heartbeats; a
// voter's grant echoes the requester's own send time, so the requester can
// time the promise on its own clock, shortened by the assumed clock drift.
// Because promises are exclusive, two nodes can never both count a majority:
//
//   - both data nodes connected: the group is acquired only with the peer's
//     vote (start-up, handover, failback, takeover by hand);
//   - peer silent on every medium for deadtime, fencing none: take over (a
//     partition makes a split brain, detected and resolved on reconnection);
//   - fencing stonith: take over only after the fencing agent reports the
//     peer powered off;
//   - fencing witness: take over only with the witness's vote, and a holder
//     keeps accepting writes only while a majority's promises last.
//
// Votes are not persisted, so a node abstains for one lease period after it
// starts: it cannot have forgotten a promise that is still running.
package node

import (
	"fmt"
	"strings"
	"time"

	"tandem/internal/membership"
	"tandem/internal/meta"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// Node is the state of one node.
type Node struct {
	cfg  Config
	self proto.NodeID
	peer proto.NodeID // the other data node; NoNode on the witness
	// outdated, on the witness: data nodes it marked Outdated for a holder
	// that lost its replication peer; it votes for neither until it
	// reports InSync.
	outdated [2]bool
	mem      *membership.Tracker
	rnd      uint64

	incarnation uint64
	boot, now   proto.Time
	lease       time.Duration // L: how long a promise lasts at the voter
	leaseUsable time.Duration // L shortened by the drift margin, at the grantee
	seq         uint64
	nextBeat    proto.Time
	beatNow     bool // send a heartbeat at the end of this step (state changed)

	state      proto.State
	epoch      uint64 // epoch of our current or last claim
	maxEpoch   uint64 // highest epoch heard or held
	standby    bool
	wantGroup  bool
	handoverTo proto.NodeID
	failcount  []int

	// The vote we promised: to whom, until when (our clock), and the
	// grantee's latest request send time (its clock) that the promise covers.
	promisedTo       proto.NodeID
	promiseUntil     proto.Time
	grantEcho        proto.Time
	grantIncarnation uint64

	// Our own candidacy: since when, and the votes counted for it (valid
	// until, on our clock).
	candidate      bool
	candidateSince proto.Time
	votes          [proto.MaxNodes]proto.Time

	peerDead     [proto.MaxNodes]bool
	splitBrain   bool
	quorumLost   bool
	lastGrounds  Grounds
	lastReason   string
	fence        fenceState
	group        groupState
	nextActionID uint64

	rep *repl.Replica

	out []Output
}

type fenceState struct {
	pending   bool
	id        uint64
	started   proto.Time
	deadline  proto.Time
	notBefore proto.Time
	fenced    bool // the peer was powered off since it was last declared dead
	attempts  int
}

type groupState struct {
	running     int // resources [0, running) are started
	target      int // how many should run
	pending     bool
	id          uint64
	res         int
	op          Op
	deadline    proto.Time
	nextMonitor []proto.Time
	// After a full stop: hand the group to this node (or NoNode).
	releaseTo proto.NodeID
	// restartFrom >= 0: a local restart stops down to this index, then
	// starts everything again.
	restartFrom int
	startFailed bool
	why         string
}

// New makes a node that starts at now (its boot), with incarnation
// distinguishing this start from earlier ones (the shell persists or derives
// it, e.g. from a boot counter) and seed feeding its private random source.
func New(cfg Config, now proto.Time, incarnation uint64, seed uint64) (*Node, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:         cfg,
		self:        cfg.Self,
		peer:        cfg.DataPeer(),
		mem:         membership.New(now, cfg.Deadtime, cfg.Warntime, cfg.Initdead),
		rnd:         seed,
		incarnation: incarnation,
		boot:        now,
		now:         now,
		lease:       cfg.Deadtime,
		state:       proto.Secondary,
		handoverTo:  proto.NoNode,
		promisedTo:  proto.NoNode,
		failcount:   make([]int, len(cfg.Group)),
	}
	// Grantees shorten the lease by twice the worst drift (their clock may
	// run fast while the voter's runs slow), plus a small fixed margin.
	margin := time.Duration(int64(n.lease) / 1e6 * (2*cfg.ClockDriftPPM + 1000))
	n.leaseUsable = n.lease - margin
	if cfg.IsWitness {
		n.state = proto.Witness
	}
	for _, m := range cfg.Media {
		for _, p := range m.Peers {
			n.mem.AddMedium(p, m.ID, m.Name)
		}
	}
	n.group.nextMonitor = make([]proto.Time, len(cfg.Group))
	n.group.restartFrom = -1
	n.group.releaseTo = proto.NoNode
	n.beatNow = true
	return n, nil
}

// AttachReplica starts the replicated disk from its persisted metadata
// (nil: no usable disk, the node runs Diskless). Call it once, right after
// New, when Config.Replication is set.
func (n *Node) AttachReplica(rec *meta.Record, seed uint64) ([]Output, error) {
	n.out = n.out[:0]
	if n.cfg.Replication == nil {
		return nil, fmt.Errorf("node %s: no replication configured", n.name(n.self))
	}
	rc := *n.cfg.Replication
	rc.Self, rc.Peer, rc.Names = n.self, n.peer, n.cfg.Names
	rc.Fencing = n.cfg.Fencing != FenceNone
	r, err := repl.New(rc, rec, n.now, seed)
	if err != nil {
		return nil, err
	}
	n.rep = r
	n.wrap(r.Start())
	return n.out, nil
}

// Replica is the replicated disk's state (nil without replication).
func (n *Node) Replica() *repl.Replica { return n.rep }

func (n *Node) wrap(outs []repl.Output) {
	for _, o := range outs {
		n.out = append(n.out, Output{Kind: Replicate, Repl: o})
	}
}

// Config returns the node's config with defaults applied.
func (n *Node) Config() *Config { return &n.cfg }

// State is the node's group state.
func (n *Node) State() proto.State { return n.state }

// Epoch is the node's current or last claim generation.
func (n *Node) Epoch() uint64 { return n.epoch }

// LastAcquisition says on what grounds and why this node last took the
// group, for status displays ("last failover and why").
func (n *Node) LastAcquisition() (Grounds, string) { return n.lastGrounds, n.lastReason }

// Membership exposes heartbeat counters for status displays.
func (n *Node) Membership() *membership.Tracker { return n.mem }

// AcceptingWrites reports whether, at now, this node may accept writes to the
// replicated data: it holds the group and, under the witness policy, a
// majority's promises have not run out. Checkers call it at every instant.
func (n *Node) AcceptingWrites(now proto.Time) bool {
	if n.state != proto.Starting && n.state != proto.Primary {
		return false
	}
	return n.cfg.Fencing != FenceWitness || n.leaseValid(now)
}

// Step feeds one input at time now and returns what to do. The returned
// slice is reused by the next call.
func (n *Node) Step(now proto.Time, in Input) []Output {
	n.out = n.out[:0]
	if now < n.now {
		// A monotonic clock never goes back; treat it as no time passing.
		now = n.now
	}
	n.now = now
	switch in.Kind {
	case Tick:
	case Receive:
		n.receive(in.Medium, &in.Msg)
	case ActionDone:
		n.actionDone(in.ID, in.OK, in.Err)
	case FenceDone:
		n.fenceDone(in.ID, in.OK, in.Err)
	case AdminCommand:
		n.admin(in.Admin)
	case Replication:
		n.replInput(in.Repl)
	}
	n.checkPeers()
	if !n.cfg.IsWitness {
		n.checkLease()
		n.checkActionTimeout()
		n.decide()
		n.runFencing()
		n.runGroup()
	}
	if n.rep != nil {
		n.wrap(n.rep.Step(n.now, repl.Input{Kind: repl.Tick}))
	}
	n.heartbeat()
	return n.out
}

func (n *Node) replInput(in repl.Input) {
	if n.rep == nil {
		return
	}
	if in.Kind == repl.Request && !n.AcceptingWrites(n.now) {
		// Only the holder with a valid claim serves the application.
		n.out = append(n.out, Output{Kind: Replicate, Repl: repl.Output{Kind: repl.Complete, ID: in.ID, Err: repl.NotPrimary}})
		return
	}
	n.wrap(n.rep.Step(n.now, in))
}

// Deadline is the latest time the node needs its next Tick, if nothing else
// happens before.
func (n *Node) Deadline() proto.Time {
	d := n.nextBeat
	min := func(t proto.Time) {
		if t > n.now && t < d {
			d = t
		}
	}
	for _, p := range n.cfg.peers() {
		if !n.peerDead[p] {
			min(n.mem.DeadAt(p))
		}
	}
	min(n.boot.Add(n.lease))
	min(n.promiseUntil)
	if n.cfg.IsWitness {
		return d
	}
	if n.state.Holds() && n.cfg.Fencing == FenceWitness {
		min(n.leaseExpiry())
	}
	if n.group.pending {
		min(n.group.deadline)
	} else if n.state == proto.Primary {
		for i, r := range n.cfg.Group {
			if r.MonitorInterval > 0 {
				min(n.group.nextMonitor[i])
			}
		}
	}
	if n.fence.pending {
		min(n.fence.deadline)
	} else {
		min(n.fence.notBefore)
	}
	for _, v := range n.votes {
		min(v)
	}
	if n.rep != nil {
		min(n.rep.Deadline())
	}
	return d
}

func (n *Node) name(id proto.NodeID) string {
	if int(id) < len(n.cfg.Names) {
		return n.cfg.Names[id]
	}
	return fmt.Sprintf("node%d", id)
}

func (n *Node) emit(e Event) {
	n.out = append(n.out, Output{Kind: Emit, Event: e})
}

func (n *Node) note(format string, args ...any) {
	n.emit(Event{Kind: Note, Reason: fmt.Sprintf(format, args...)})
}

func (n *Node) setState(s proto.State, reason string) {
	if s == n.state {
		return
	}
	n.emit(Event{Kind: StateChanged, From: n.state, To: s, Epoch: n.epoch, Reason: reason})
	n.state = s
	n.beatNow = true
}

func (n *Node) nextID() uint64 {
	n.nextActionID++
	return n.nextActionID
}

// random draws from the node's private splitmix64 stream.
func (n *Node) random() uint64 {
	n.rnd += 0x9e3779b97f4a7c15
	z := n.rnd
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// ---- heartbeats and membership ----

func (n *Node) heartbeat() {
	if n.now < n.nextBeat && !n.beatNow {
		return
	}
	n.beatNow = false
	n.seq++
	n.nextBeat = n.now.Add(n.cfg.Keepalive)
	hb := proto.Heartbeat{
		From:        n.self,
		Incarnation: n.incarnation,
		Seq:         n.seq,
		SentAt:      n.now,
		State:       n.state,
		Epoch:       n.epoch,
		HandoverTo:  n.handoverTo,
		GrantTo:     proto.NoNode,
	}
	if n.candidate || n.state.Holds() {
		hb.Flags |= proto.WantVotes
	}
	if !n.eligible() {
		hb.Flags |= proto.Ineligible
	}
	if n.wantGroup {
		hb.Flags |= proto.WantGroup
	}
	if n.abstaining() {
		hb.Flags |= proto.Abstaining
	}
	if n.rep != nil {
		if n.rep.WantsPeerOutdated() {
			hb.Flags |= proto.OutdateRequest
		}
		if n.rep.WontPromote() {
			hb.Flags |= proto.DiskOutdated
		}
		if n.rep.InSyncWithPeer() {
			hb.Flags |= proto.InSync
		}
	}
	for id, marked := range n.outdated {
		if marked {
			hb.Flags |= proto.OutdatedFlag(proto.NodeID(id))
		}
	}
	if n.promisedTo != proto.NoNode && n.promisedTo != n.self && n.now < n.promiseUntil {
		hb.GrantTo = n.promisedTo
		hb.GrantEcho = n.grantEcho
		hb.GrantIncarnation = n.grantIncarnation
	}
	for _, m := range n.cfg.Media {
		for _, p := range m.Peers {
			n.out = append(n.out, Output{Kind: Send, To: p, Medium: m.ID, Msg: hb})
		}
	}
}

func (n *Node) receive(medium proto.MediumID, hb *proto.Heartbeat) {
	if hb.From == n.self || int(hb.From) >= len(n.cfg.Names) {
		return
	}
	obs := n.mem.Observe(n.now, medium, hb)
	if obs.Restarted && n.promisedTo == hb.From {
		// The life we promised to is over; it cannot use the promise.
		n.promisedTo = proto.NoNode
		n.promiseUntil = 0
	}
	if obs.Late > 0 {
		n.emit(Event{Kind: LateHeartbeat, Peer: hb.From, Medium: medium, Late: obs.Late,
			Reason: fmt.Sprintf("late heartbeat from %s on %s: %v since the previous one (warntime %v, deadtime %v)",
				n.name(hb.From), n.mediumName(medium), obs.Late, n.cfg.Warntime, n.cfg.Deadtime)})
	}
	if !obs.Fresh {
		return
	}
	if hb.Epoch > n.maxEpoch {
		n.maxEpoch = hb.Epoch
	}
	n.considerRequest(hb)
	n.countGrant(hb)
	if n.rep != nil && hb.From == n.peer {
		n.wrap(n.rep.ObservePeer(n.now, hb.State.Holds(), hb.Flags&proto.OutdateRequest != 0,
			hb.Flags&proto.DiskOutdated != 0))
	}
	if n.cfg.IsWitness && hb.From < 2 {
		n.witnessOutdate(hb)
	}
	if n.rep != nil && n.cfg.HasWitness() && hb.From == 2 {
		// The witness speaks for the holder: a mark on the peer is the
		// peer outdated; a mark on us outdates our disk.
		if hb.Flags&proto.OutdatedFlag(n.peer) != 0 {
			n.wrap(n.rep.ObservePeer(n.now, false, false, true))
		}
		if hb.Flags&proto.OutdatedFlag(n.self) != 0 && !n.state.Holds() {
			n.wrap(n.rep.ObservePeer(n.now, true, true, false))
		}
	}
}

// witnessOutdate is the witness's half of outdating a data node: the holder
// it promised its vote to lost its replication peer and asks (OutdateRequest)
// to go on writing alone, so the witness marks the other node Outdated and
// votes for it no more until it is back in sync. Without the mark, once the
// holder's lease ran out, the witness could elect a node that misses the
// holder's latest writes.
func (n *Node) witnessOutdate(hb *proto.Heartbeat) {
	from := hb.From
	if hb.Flags&proto.InSync != 0 && n.outdated[from] {
		n.outdated[from] = false
		n.beatNow = true
		n.emit(Event{Kind: Note, Peer: from, Reason: fmt.Sprintf("%s is in sync again: it may be elected", n.name(from))})
	}
	other := 1 - from
	if hb.Flags&proto.OutdateRequest == 0 || !hb.State.Holds() || n.outdated[from] || n.outdated[other] {
		return
	}
	if n.promisedTo != from || n.now >= n.promiseUntil {
		return // only the lease holder may outdate the other
	}
	n.outdated[other] = true
	n.beatNow = true
	n.emit(Event{Kind: Note, Peer: other, Reason: fmt.Sprintf("marked %s Outdated for %s, which writes without it; no vote for it until it is in sync", n.name(other), n.name(from))})
}

func (n *Node) mediumName(id proto.MediumID) string {
	for _, m := range n.cfg.Media {
		if m.ID == id {
			return m.Name
		}
	}
	return fmt.Sprintf("medium%d", id)
}

// checkPeers turns silence into PeerDead and voices into PeerAlive.
func (n *Node) checkPeers() {
	for _, p := range n.cfg.peers() {
		dead := n.mem.Dead(p, n.now)
		if dead == n.peerDead[p] {
			continue
		}
		n.peerDead[p] = dead
		if dead {
			n.emit(Event{Kind: PeerDead, Peer: p, Reason: fmt.Sprintf("%s is dead: %s (deadtime %v)",
				n.name(p), n.mem.Silence(p, n.now), n.cfg.Deadtime)})
			if p == n.peer {
				n.peerDied()
				n.peerGoneToReplica(false)
			}
		} else {
			n.emit(Event{Kind: PeerAlive, Peer: p, Reason: fmt.Sprintf("%s is alive (%s)", n.name(p), n.mem.Peer(p).Last.State)})
			if p == n.peer {
				n.fence = fenceState{}
				n.splitBrain = false
			}
		}
	}
}

// peerGoneToReplica tells the replicated disk the peer is gone. It counts
// as fenced (safe to write without it) after a successful fence. Under the
// witness policy the holder instead waits for the witness to mark the peer
// Outdated (witnessOutdate): a lease alone would let the peer be elected
// with stale data once it ran out.
func (n *Node) peerGoneToReplica(fenced bool) {
	if n.rep == nil {
		return
	}
	n.wrap(n.rep.Step(n.now, repl.Input{Kind: repl.PeerGone, Fenced: fenced}))
}

// ---- votes ----

// abstaining: right after start-up a node neither votes nor campaigns for one
// lease period, because it may have forgotten a promise it made before.
func (n *Node) abstaining() bool { return n.now < n.boot.Add(n.lease) }

// considerRequest handles a peer's request for our vote, or its release.
func (n *Node) considerRequest(hb *proto.Heartbeat) {
	wants := hb.Flags&proto.WantVotes != 0
	if !wants {
		// A grantee that no longer campaigns nor holds, speaking after the
		// request our promise covers, frees us: it will not count it.
		if n.promisedTo == hb.From && !hb.State.Holds() && hb.SentAt > n.grantEcho {
			n.promisedTo = proto.NoNode
			n.promiseUntil = 0
		}
		return
	}
	if n.abstaining() {
		return
	}
	if n.candidate || n.state.Holds() {
		return // our vote is our own
	}
	if int(hb.From) < len(n.outdated) && n.outdated[hb.From] {
		return // its data misses the holder's latest writes
	}
	if n.rep != nil && hb.From == n.peer && n.rep.KnowsPeerOutdated() {
		return // we wrote without it: it must resync from us first
	}
	free := n.promisedTo == proto.NoNode || n.promisedTo == hb.From || n.now >= n.promiseUntil
	if !free {
		return
	}
	if n.promisedTo != hb.From || n.grantIncarnation != hb.Incarnation {
		n.beatNow = true // tell the new grantee at once
		n.grantEcho = hb.SentAt
	} else if hb.SentAt > n.grantEcho {
		n.grantEcho = hb.SentAt
	}
	n.promisedTo = hb.From
	n.grantIncarnation = hb.Incarnation
	n.promiseUntil = n.now.Add(n.lease)
}

// countGrant records a peer's vote for our current candidacy or holding.
func (n *Node) countGrant(hb *proto.Heartbeat) {
	if hb.GrantTo != n.self {
		n.votes[hb.From] = 0
		return
	}
	if !n.candidate && !n.state.Holds() {
		return
	}
	if hb.GrantIncarnation != n.incarnation || hb.GrantEcho < n.candidateSince {
		return // a promise to an earlier life or candidacy of ours
	}
	until := hb.GrantEcho.Add(n.leaseUsable)
	if until > n.votes[hb.From] {
		n.votes[hb.From] = until
	}
}

// selfVoteFree: we may vote for ourselves (no running promise to another).
func (n *Node) selfVoteFree() bool {
	return !n.abstaining() && (n.promisedTo == proto.NoNode || n.promisedTo == n.self || n.now >= n.promiseUntil)
}

func (n *Node) validVotes(now proto.Time) int {
	count := 1 // ourselves
	for id, until := range n.votes {
		if proto.NodeID(id) != n.self && now < until {
			count++
		}
	}
	return count
}

// voters names the nodes whose promises we hold, for reasons.
func (n *Node) voters() string {
	var names []string
	for id, until := range n.votes {
		if proto.NodeID(id) != n.self && n.now < until {
			names = append(names, n.name(proto.NodeID(id)))
		}
	}
	return strings.Join(names, " and ")
}

func (n *Node) leaseValid(now proto.Time) bool { return n.validVotes(now) >= 2 }

// leaseExpiry is when the holder's majority runs out, if nothing renews it.
func (n *Node) leaseExpiry() proto.Time {
	best := proto.Time(0)
	for id, until := range n.votes {
		if proto.NodeID(id) != n.self && until > best {
			best = until
		}
	}
	return best
}

func (n *Node) becomeCandidate() {
	if n.candidate {
		return
	}
	n.candidate = true
	n.candidateSince = n.now
	n.votes = [proto.MaxNodes]proto.Time{}
	n.promisedTo = n.self
	n.beatNow = true
}

func (n *Node) withdraw() {
	if !n.candidate {
		return
	}
	n.candidate = false
	n.votes = [proto.MaxNodes]proto.Time{}
	if n.promisedTo == n.self {
		n.promisedTo = proto.NoNode
	}
	n.beatNow = true
}

// ---- deciding ----

func (n *Node) eligible() bool {
	if n.cfg.IsWitness || n.standby || n.state == proto.Blocked {
		return false
	}
	if n.rep != nil && !n.state.Holds() && !n.rep.CouldLead() {
		return false // never promote stale data
	}
	for _, f := range n.failcount {
		if f >= n.cfg.MigrationThreshold {
			return false
		}
	}
	return true
}

func (n *Node) peerLast() *proto.Heartbeat { return &n.mem.Peer(n.peer).Last }

// peerEligible: the peer could take the group now (alive, not standby or
// failed, and past its start-up abstention, so a holder does not hand the
// group to a node that must first wait a lease period).
func (n *Node) peerEligible() bool {
	return !n.peerDead[n.peer] && n.mem.Peer(n.peer).Heard && n.peerLast().Flags&(proto.Ineligible|proto.Abstaining) == 0
}

// peerIneligible: the peer said it will not take the group.
func (n *Node) peerIneligible() bool { return n.peerLast().Flags&proto.Ineligible != 0 }

// peerOutranks breaks ties when both data nodes want the group at once.
func (n *Node) peerOutranks() bool {
	p := n.peerLast()
	peerWants, iWant := p.Flags&proto.WantGroup != 0, n.wantGroup
	if peerWants != iWant {
		return peerWants
	}
	// A node handing the group over yields, unless both hand it to each
	// other (each stopped it for a failure the other then hit): then the
	// preferred node decides.
	peerYields, iYield := p.HandoverTo == n.self, n.handoverTo == n.peer
	if peerYields != iYield {
		return iYield
	}
	return n.peer == n.cfg.Preferred
}

func (n *Node) decide() {
	if n.state.Holds() {
		n.decideHolder()
		return
	}
	if !n.eligible() {
		n.withdraw()
		return
	}
	peerHeard := n.mem.Peer(n.peer).Heard
	if n.peerDead[n.peer] {
		n.decideTakeover()
		return
	}
	if !peerHeard {
		return // still within initdead: wait to hear it or declare it dead
	}
	p := n.peerLast()
	if p.State.Holds() {
		if p.Epoch >= n.epoch {
			n.handoverTo = proto.NoNode // it has taken what we handed over
		}
		n.withdraw()
		return
	}
	if n.handoverTo == n.peer && n.peerEligible() && p.HandoverTo != n.self {
		n.withdraw()
		return // we gave it away; wait for the peer to take it
	}
	designated := n.self == n.cfg.Preferred || n.peerIneligible() || p.HandoverTo == n.self || n.wantGroup
	if p.Flags&proto.WantVotes != 0 && n.peerEligible() && n.peerOutranks() {
		designated = false
	}
	if !designated {
		n.withdraw()
		return
	}
	if !n.selfVoteFree() {
		return
	}
	n.becomeCandidate()
	if n.validVotes(n.now) >= 2 {
		var reason string
		switch {
		case p.HandoverTo == n.self:
			reason = fmt.Sprintf("%s handed the group over", n.name(n.peer))
		case n.wantGroup:
			reason = "takeover requested by operator"
		case n.peerIneligible() && p.Flags&proto.DiskOutdated != 0:
			reason = fmt.Sprintf("%s's disk cannot be promoted (Outdated, Inconsistent or none)", n.name(n.peer))
		case n.peerIneligible():
			reason = fmt.Sprintf("%s is not eligible (standby, failed resources, or its data cannot lead yet)", n.name(n.peer))
		default:
			reason = "preferred node"
		}
		reason += "; votes from " + n.voters()
		n.acquire(ByAgreement, reason)
	}
}

// decideTakeover: the peer is dead. Take over if the policy allows.
func (n *Node) decideTakeover() {
	if !n.selfVoteFree() {
		return
	}
	n.becomeCandidate()
	silence := n.mem.Silence(n.peer, n.now)
	switch n.cfg.Fencing {
	case FenceNone:
		n.acquire(AfterSilence, fmt.Sprintf("%s is dead: %s; fencing none: if it is alive behind a partition this is a split brain", n.name(n.peer), silence))
	case FenceStonith:
		if n.fence.fenced {
			n.acquire(AfterSilence, fmt.Sprintf("%s is dead: %s; fenced by stonith", n.name(n.peer), silence))
		}
	case FenceWitness:
		if n.validVotes(n.now) >= 2 {
			n.acquire(AfterSilence, fmt.Sprintf("%s is dead: %s; the witness %s voted for us", n.name(n.peer), silence, n.name(2)))
		}
	}
}

func (n *Node) acquire(grounds Grounds, reason string) {
	if n.maxEpoch < n.epoch {
		n.maxEpoch = n.epoch
	}
	n.maxEpoch++
	n.epoch = n.maxEpoch
	n.wantGroup = false
	n.handoverTo = proto.NoNode
	n.splitBrain = false
	n.quorumLost = false
	n.lastGrounds = grounds
	n.lastReason = reason
	n.emit(Event{Kind: Acquired, Peer: n.peer, Epoch: n.epoch, Grounds: grounds, Reason: reason})
	n.group.target = len(n.cfg.Group)
	n.group.releaseTo = proto.NoNode
	n.group.restartFrom = -1
	n.group.startFailed = false
	n.setState(proto.Starting, reason)
}

func (n *Node) decideHolder() {
	if n.state == proto.Blocked || n.group.target == 0 {
		return // already stopping, or waiting for an operator
	}
	peerAlive := !n.peerDead[n.peer] && n.mem.Peer(n.peer).Heard
	p := n.peerLast()
	switch {
	case peerAlive && (p.State == proto.Starting || p.State == proto.Primary) && n.state != proto.Stopping:
		// A peer that is stopping (quorum lost, handing over) is not a
		// second writer; two nodes starting or running the group are.
		if !n.splitBrain {
			n.splitBrain = true
			n.emit(Event{Kind: SplitBrain, Peer: n.peer, Epoch: n.epoch, Reason: fmt.Sprintf(
				"split brain: %s also holds the group (its epoch %d, ours %d)", n.name(n.peer), p.Epoch, n.epoch)})
		}
		if p.Epoch > n.epoch || p.Epoch == n.epoch && n.peer == n.cfg.Preferred {
			n.release(proto.NoNode, fmt.Sprintf("split brain resolved: %s's claim (epoch %d) is newer than ours (epoch %d) or preferred", n.name(n.peer), p.Epoch, n.epoch))
		}
	case peerAlive && n.standby && n.peerEligible():
		n.release(n.peer, "standby requested by operator")
	case peerAlive && p.Flags&proto.WantGroup != 0 && n.peerEligible():
		n.release(n.peer, fmt.Sprintf("%s asked to take over (operator)", n.name(n.peer)))
	case peerAlive && n.cfg.AutoFailback && n.peer == n.cfg.Preferred && n.peerEligible() && n.state == proto.Primary:
		n.release(n.peer, fmt.Sprintf("auto_failback: preferred node %s is back", n.name(n.peer)))
	}
}

// release stops the whole group; once stopped, the group goes to `to`.
func (n *Node) release(to proto.NodeID, why string) {
	n.group.target = 0
	n.group.releaseTo = to
	n.group.restartFrom = -1
	n.group.why = why
	if n.state != proto.Blocked {
		n.setState(proto.Stopping, why)
	}
}

// checkLease: under the witness policy a holder without a majority stops
// accepting writes at once and gives the group up.
func (n *Node) checkLease() {
	if n.cfg.Fencing != FenceWitness || !n.state.Holds() || n.quorumLost {
		return
	}
	if n.leaseValid(n.now) {
		return
	}
	n.quorumLost = true
	n.emit(Event{Kind: QuorumLost, Epoch: n.epoch, Reason: fmt.Sprintf(
		"quorum lost: no promise from %s or the witness %s is still running; writes stop now", n.name(n.peer), n.name(2))})
	if n.group.target != 0 {
		n.release(proto.NoNode, "quorum lost")
	}
}

// ---- fencing ----

func (n *Node) peerDied() {
	n.fence = fenceState{}
	if n.cfg.Fencing != FenceStonith {
		return
	}
	delay := n.cfg.FenceDelay
	if n.state.Holds() || (!n.peerLast().State.Holds() && n.self == n.cfg.Preferred) {
		delay = 0 // the holder (or, if nobody holds, the preferred node) shoots first
	}
	n.fence.notBefore = n.now.Add(delay)
	if delay > 0 {
		n.note("will fence %s in %v unless it is heard again (fence delay: the holder shoots first)", n.name(n.peer), delay)
	}
}

func (n *Node) runFencing() {
	if n.cfg.Fencing != FenceStonith || !n.peerDead[n.peer] || n.fence.fenced || n.fence.pending {
		return
	}
	if n.now < n.fence.notBefore {
		return
	}
	if !n.state.Holds() && !n.eligible() {
		return // we would not take over; shooting the peer gains nothing
	}
	n.fence.pending = true
	n.fence.id = n.nextID()
	n.fence.started = n.now
	n.fence.deadline = n.now.Add(n.cfg.FenceTimeout)
	n.fence.attempts++
	n.out = append(n.out, Output{Kind: Fence, ID: n.fence.id, Target: n.peer, Timeout: n.cfg.FenceTimeout})
	n.emit(Event{Kind: FenceStarted, Peer: n.peer, Reason: fmt.Sprintf("fencing %s (attempt %d): %s",
		n.name(n.peer), n.fence.attempts, n.mem.Silence(n.peer, n.now))})
}

func (n *Node) fenceDone(id uint64, ok bool, msg string) {
	if !n.fence.pending || id != n.fence.id {
		return
	}
	n.fence.pending = false
	took := n.now.Sub(n.fence.started)
	if ok {
		n.fence.fenced = true
		n.emit(Event{Kind: FenceSucceeded, Peer: n.peer, Reason: fmt.Sprintf("fenced %s in %v", n.name(n.peer), took.Round(time.Millisecond))})
		n.peerGoneToReplica(true)
		return
	}
	n.failFence(fmt.Sprintf("fencing %s failed after %v: %s", n.name(n.peer), took, msg))
}

func (n *Node) failFence(why string) {
	n.fence.pending = false
	// Jitter the retry by up to 10% so two nodes do not stay in lock step.
	retry := n.cfg.FenceRetry + time.Duration(n.random()%uint64(n.cfg.FenceRetry/10+1))
	n.fence.notBefore = n.now.Add(retry)
	n.emit(Event{Kind: FenceFailed, Peer: n.peer, Reason: fmt.Sprintf("%s; no takeover; retry in %v", why, retry)})
}

// ---- the resource group ----

func (n *Node) checkActionTimeout() {
	if n.fence.pending && n.now >= n.fence.deadline {
		n.failFence(fmt.Sprintf("fencing %s timed out after %v", n.name(n.peer), n.cfg.FenceTimeout))
	}
	if n.group.pending && n.now >= n.group.deadline {
		r := n.cfg.Group[n.group.res]
		n.actionDone(n.group.id, false, fmt.Sprintf("no answer within %v", n.actionTimeout(r, n.group.op)))
	}
}

func (n *Node) actionTimeout(r Resource, op Op) time.Duration {
	switch op {
	case Start:
		return r.StartTimeout
	case Stop:
		return r.StopTimeout
	}
	return r.MonitorTimeout
}

func (n *Node) issue(res int, op Op) {
	if res == 0 && n.rep != nil && op != Monitor {
		if op == Start && n.rep.PeerPrimary() {
			// A handover: the old holder released the group on the
			// heartbeat; its demotion is still on its way over the
			// replication link. runGroup retries on the next step.
			return
		}
		n.replicatedDisk(op)
		return
	}
	r := n.cfg.Group[res]
	n.group.pending = true
	n.group.id = n.nextID()
	n.group.res = res
	n.group.op = op
	t := n.actionTimeout(r, op)
	n.group.deadline = n.now.Add(t)
	n.out = append(n.out, Output{Kind: Action, ID: n.group.id, Resource: res, Op: op, Timeout: t})
}

// replicatedDisk starts (promotes) or stops (demotes) the replicated disk,
// which lives in the core, so the action completes at once.
func (n *Node) replicatedDisk(op Op) {
	id := n.nextID()
	n.group.pending, n.group.id, n.group.res, n.group.op = true, id, 0, op
	ok, why := true, ""
	if op == Start {
		var outs []repl.Output
		ok, why, outs = n.rep.Promote(n.now, n.epoch, false)
		n.wrap(outs)
	} else {
		n.wrap(n.rep.Demote(n.now, "the group is stopping"))
	}
	n.actionDone(id, ok, why)
	n.runGroup()
}

func (n *Node) actionDone(id uint64, ok bool, msg string) {
	g := &n.group
	if !g.pending || id != g.id {
		return
	}
	g.pending = false
	r := n.cfg.Group[g.res]
	switch g.op {
	case Start:
		if ok {
			g.running = g.res + 1
			if r.MonitorInterval > 0 {
				g.nextMonitor[g.res] = n.now.Add(r.MonitorInterval)
			}
			return
		}
		n.failcount[g.res] = n.cfg.MigrationThreshold // a failed start is fatal here, as in Pacemaker
		n.emit(Event{Kind: ResourceFailed, Reason: fmt.Sprintf("start of %s failed: %s; stopping the group", r.Name, msg)})
		g.startFailed = true
		g.running = g.res + 1 // it may be half started: stop it too
		n.release(n.handoverTarget(), fmt.Sprintf("start of %s failed", r.Name))
	case Stop:
		if ok {
			g.running = g.res
			return
		}
		n.emit(Event{Kind: ResourceFailed, Reason: fmt.Sprintf(
			"stop of %s failed: %s; blocked: the group stays here until an operator runs cleanup", r.Name, msg)})
		n.setState(proto.Blocked, fmt.Sprintf("stop of %s failed", r.Name))
	case Monitor:
		if ok {
			g.nextMonitor[g.res] = n.now.Add(r.MonitorInterval)
			return
		}
		n.failcount[g.res]++
		if n.failcount[g.res] >= n.cfg.MigrationThreshold {
			n.emit(Event{Kind: ResourceFailed, Reason: fmt.Sprintf("monitor of %s failed (%d of %d): %s; moving the group away",
				r.Name, n.failcount[g.res], n.cfg.MigrationThreshold, msg)})
			n.release(n.handoverTarget(), fmt.Sprintf("%s reached its migration threshold", r.Name))
			return
		}
		n.emit(Event{Kind: ResourceFailed, Reason: fmt.Sprintf("monitor of %s failed (%d of %d): %s; restarting it",
			r.Name, n.failcount[g.res], n.cfg.MigrationThreshold, msg)})
		g.restartFrom = g.res
	}
}

func (n *Node) handoverTarget() proto.NodeID {
	if n.peerEligible() {
		return n.peer
	}
	return proto.NoNode
}

// runGroup issues the next start or stop towards the target, one at a time.
func (n *Node) runGroup() {
	g := &n.group
	if !n.state.Holds() || n.state == proto.Blocked || g.pending {
		return
	}
	switch {
	case g.restartFrom >= 0 && g.running > g.restartFrom:
		n.issue(g.running-1, Stop)
	case g.restartFrom >= 0:
		g.restartFrom = -1
		n.runGroup()
	case g.running > g.target:
		n.issue(g.running-1, Stop)
	case g.running < g.target:
		n.issue(g.running, Start)
	case g.target == 0:
		n.stopped()
	default:
		if n.state != proto.Primary {
			n.setState(proto.Primary, fmt.Sprintf("group started (%d resources)", len(n.cfg.Group)))
		}
		n.monitor()
	}
}

func (n *Node) monitor() {
	for i, r := range n.cfg.Group {
		if r.MonitorInterval > 0 && n.now >= n.group.nextMonitor[i] {
			n.issue(i, Monitor)
			return
		}
	}
}

// stopped: the whole group is down; give it to whoever it was meant for.
func (n *Node) stopped() {
	g := &n.group
	n.candidate = false
	n.votes = [proto.MaxNodes]proto.Time{}
	if n.promisedTo == n.self {
		n.promisedTo = proto.NoNode
	}
	n.handoverTo = g.releaseTo
	why := g.why
	if g.releaseTo != proto.NoNode {
		why += "; handing over to " + n.name(g.releaseTo)
	} else if g.startFailed || !n.eligible() {
		why += "; no eligible node: the group stays down"
	}
	n.setState(proto.Secondary, "group stopped: "+why)
}

// ---- operator ----

func (n *Node) admin(cmd Admin) {
	refuse := func(why string) {
		n.emit(Event{Kind: AdminRefused, Reason: fmt.Sprintf("%s refused: %s", cmd, why)})
	}
	if n.cfg.IsWitness {
		refuse("the witness never holds the group")
		return
	}
	switch cmd {
	case Standby:
		if n.state.Holds() && !n.peerEligible() {
			refuse(fmt.Sprintf("%s is not available to take the group over", n.name(n.peer)))
			return
		}
		n.standby = true
		n.wantGroup = false
	case Online:
		n.standby = false
	case Takeover:
		n.standby = false
		if n.state.Holds() {
			refuse("this node already holds the group")
			return
		}
		if !n.eligible() {
			refuse("this node has failed resources; run cleanup first")
			return
		}
		n.wantGroup = true
		n.handoverTo = proto.NoNode
	case Cleanup:
		for i := range n.failcount {
			n.failcount[i] = 0
		}
		if n.state == proto.Blocked {
			if n.group.target == 0 {
				n.setState(proto.Stopping, "cleanup by operator: retrying the stop")
			} else {
				n.setState(proto.Starting, "cleanup by operator: restarting the failed resource")
			}
		}
	}
	n.note("operator: %s", cmd)
	n.beatNow = true
}
