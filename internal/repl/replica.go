// Package repl is Tandem's replication core for one volume on one node: DRBD's
// half. It decides when an application request completes (protocols A, B
// and C), keeps write order across the link with epochs and barriers, keeps
// the metadata (generation identifiers, out-of-sync bitmap, activity log),
// runs the handshake that picks the resync direction or detects a split
// brain, drives resync and online verify, and handles disk errors.
//
// Like the failover core it is a plain value: Step(now, input) returns
// outputs; the shells own the data buffers, disks and sockets and report
// completions back. The core tracks requests by (block, count, id) only and
// never touches data.
package repl

import (
	"fmt"
	"time"

	"tandem/internal/meta"
	"tandem/internal/proto"
)

// span is a block range.
type span struct {
	block uint64
	count uint32
}

func (a span) overlaps(b span) bool {
	return a.block < b.block+uint64(b.count) && b.block < a.block+uint64(a.count)
}

// req is an application request on this node (Primary only).
type req struct {
	id     uint64
	op     ReqOp
	s      span
	queued bool // not yet issued (waiting for metadata, AL, conflict, suspension)
	// local disk part
	localPending bool
	localDone    bool
	localErr     IOError
	// peer part
	seq         uint64 // data sequence number when mirrored
	epoch       uint64
	needPeer    bool // completion waits for the peer's ack
	peerOK      bool
	peerFailed  bool
	peerEpoch   uint64 // flush: barrier ack of this epoch needed
	alHeld      bool
	gen         meta.UUID
	readFromBuf BufRef // a read served from the peer
	repair      bool   // a read being repaired from the peer
	// inDisk counts local disk operations on the request's own buffer not
	// yet returned, abandoned ones included: the request completes (and
	// hands its buffer back to the application) only after them.
	inDisk int
	// rewritten: a write to an overlapping range was issued after this
	// read; the peer's answer may predate it, so it must not be written
	// back over our copy as a repair.
	rewritten bool
	// abort, if set, is the error the request completes with whatever
	// else happens (a frozen write when the node gave up the primary role).
	abort IOError
}

type ioKind uint8

const (
	ioApp ioKind = iota + 1
	ioReplica
	ioBarrierFlush
	ioResyncRead
	ioResyncWrite
	ioCsumRead
	ioCsumSourceRead
	ioVerifyRead
	ioVerifyPeerRead
	ioRepair
	ioDemoteFlush
	ioSyncFlush
	ioReadForPeer
)

// io is a disk operation the core issued.
type io struct {
	id      uint64
	kind    ioKind
	r       *req
	msg     Msg
	buf     BufRef
	s       span
	abandon bool // the disk was detached: ignore the completion
}

// rxItem is a received write or barrier waiting its turn on a secondary.
type rxItem struct {
	msg Msg
	buf uint64
}

// tlEpoch is one epoch of the transfer log: writes mirrored to the peer
// but not yet known stable there.
type tlEpoch struct {
	num   uint64
	spans []span
}

// Replica is one node's replication state for one volume.
type Replica struct {
	cfg Config
	now proto.Time
	rnd uint64
	out []Output

	role  Role
	disk  DiskState
	pdisk DiskState
	prole Role
	conn  ConnState

	// Metadata, as in memory.
	gen           meta.Generations
	flags         meta.Flags
	bm            *meta.Bitmap
	al            *meta.ActivityLog
	clearsPending *meta.Bitmap // bits cleared whose data is not yet flushed
	clearsFlush   *meta.Bitmap // bits cleared before the flush in progress
	metaSeq       uint64
	metaBusy      bool
	metaAgain     bool
	metaID        uint64
	crashed       bool // attached after a power loss: with the same generation, resync from the peer
	primarySince  uint64
	newGenPending bool
	suspended     bool // fencing: waiting until the peer is outdated or fenced
	// demoteFlushAgain: the demotion's flush found writes still in flight;
	// flush again when the last one ends, then forget the activity log.
	demoteFlushAgain bool

	// Link.
	wantLink        bool
	link            uint64
	helloSent       bool
	peerHello       Msg
	haveHello       bool
	awaitBitmap     bool
	decision        Decision
	discardMine     bool
	lastRecv        proto.Time
	nextPing        proto.Time
	lastBarrier     proto.Time
	linkEstablished proto.Time

	nextID uint64
	reqs   map[uint64]*req
	order  []*req // requests in arrival order (completion scans, queue order)
	ios    map[uint64]*io
	seqReq map[uint64]*req

	// Primary write path.
	dataSeq            uint64
	epoch              uint64
	epochWrites        int
	epochHadCompletion bool
	tl                 []tlEpoch
	ackedEpoch         uint64

	// Secondary receive path.
	rxq         []rxItem
	rxInflight  int
	rxFlushing  bool
	busy        []span // target writes in flight (resync and replicated)
	blocked     []rxItem
	blockedSync []rxItem

	// Resync (target side drives it).
	syncPos       uint64
	syncInflight  int
	syncTokens    float64
	syncLast      proto.Time
	syncTotal     uint64
	syncDone      uint64
	syncPaused    bool
	syncFinishing bool
	syncDoneSent  bool // the target said it has every block; awaiting the source
	refusals      int  // handshakes refused in a row because a Primary would be overwritten
	syncTarget    bool
	syncFull      bool
	// Generations this node started since it was last in sync with the
	// peer: what a split-brain resolution discards if it is the victim.
	ownGens    []meta.UUID
	srcReading []span // source: resync reads in flight
	repairing  []span // read repairs (rewrites from the peer's copy) in flight
	deferred   []rxItem

	// Verify (initiator side).
	verifyPos      uint64
	verifyInflight int
	verifyFound    uint64
	verifyRunning  bool

	// Counters for status and checkers.
	Stats Stats
}

// Stats are counters for status displays and the simulator's figures.
type Stats struct {
	ResyncBlocks   uint64 // blocks sent (source) or received (target) as resync data
	ResyncReceived uint64 // blocks received as resync data (target only)
	ResyncSkipped  uint64 // blocks found equal by checksum
	DirtyAtStart   uint64 // out-of-sync blocks when resyncs started (summed)
	WritesMirrored uint64
	ReadsFromPeer  uint64
	Repairs        uint64
	VerifyMismatch uint64
	SplitBrains    uint64
	Detaches       uint64
}

// New makes a replica from its persisted metadata (nil: no usable disk —
// the node runs Diskless) at now.
func New(cfg Config, rec *meta.Record, now proto.Time, seed uint64) (*Replica, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Replica{
		cfg: cfg, now: now, rnd: seed | 1,
		role: Secondary, pdisk: DUnknown, conn: Connecting, wantLink: true,
		reqs: make(map[uint64]*req), ios: make(map[uint64]*io), seqReq: make(map[uint64]*req),
		epoch: 1,
	}
	r.bm = meta.NewBitmap(cfg.Blocks)
	r.clearsPending = meta.NewBitmap(cfg.Blocks)
	r.clearsFlush = meta.NewBitmap(cfg.Blocks)
	r.al = meta.NewActivityLog(cfg.ALSlots)
	r.disk = Diskless
	if rec != nil {
		if rec.Blocks != cfg.Blocks {
			return nil, fmt.Errorf("metadata describes %d blocks but the configured data area has %d", rec.Blocks, cfg.Blocks)
		}
		r.gen = rec.Gen
		r.flags = rec.Flags
		r.metaSeq = rec.Seq
		// When we last became Primary: after both nodes lost power the
		// discard-younger/older-primary policies still need it.
		r.primarySince = rec.PrimarySince
		if rec.Bitmap != nil {
			r.bm.CopyFrom(rec.Bitmap)
		}
		switch {
		case r.flags&meta.Consistent == 0 || r.gen.Current == 0:
			r.disk = Inconsistent
		case r.flags&meta.Outdated != 0:
			r.disk = Outdated
		case r.flags&meta.PeerOutdated != 0 && r.flags&meta.WasPrimary != 0:
			// We were the primary alone and knew the peer outdated: ours is
			// the latest data (DRBD's rule at attach).
			r.disk = UpToDate
		default:
			r.disk = Consistent
		}
		if r.flags&meta.CleanShutdown == 0 {
			// Power was lost: writes the peer acknowledged may have died in
			// our volatile cache, so with the same generation we receive.
			r.crashed = true
		}
		if r.flags&meta.WasPrimary != 0 && r.flags&meta.CleanShutdown == 0 {
			// A primary crashed: writes may have been in flight in every
			// hot extent, on either disk. Resync them.
			for _, e := range rec.AL {
				first := uint64(e) * meta.BlocksPerExtent
				if first < cfg.Blocks {
					n := min(uint64(meta.BlocksPerExtent), cfg.Blocks-first)
					r.bm.SetRange(first, n)
				}
			}
		}
		r.flags &^= meta.CleanShutdown
	}
	r.emitWantLink()
	if r.disk != Diskless {
		r.persist()
	}
	return r, nil
}

// Start returns what New wants done (the first metadata write, the wish
// for a link). Call it once, before the first Step.
func (r *Replica) Start() []Output { return r.out }

// Role, Disk, PeerDisk, Conn report the states.
func (r *Replica) Role() Role          { return r.role }
func (r *Replica) Disk() DiskState     { return r.disk }
func (r *Replica) PeerDisk() DiskState { return r.pdisk }
func (r *Replica) Conn() ConnState     { return r.conn }

// Generations and Flags report the metadata as in memory.
func (r *Replica) Generations() meta.Generations { return r.gen }
func (r *Replica) Flags() meta.Flags             { return r.flags }

// OutOfSync is the number of blocks marked out of sync.
func (r *Replica) OutOfSync() uint64 { return r.bm.Count() }

// BlockInSync: block b is not marked out of sync here.
func (r *Replica) BlockInSync(b uint64) bool { return !r.bm.Test(b) }

// Suspended reports whether I/O is frozen waiting for the peer to be
// outdated or fenced.
func (r *Replica) Suspended() bool { return r.suspended }

// SyncProgress reports a running resync: blocks left and total.
func (r *Replica) SyncProgress() (left, total uint64) { return r.bm.Count(), r.syncTotal }

// Config returns the replica's config with defaults applied.
func (r *Replica) Config() *Config { return &r.cfg }

// CanPromote says whether this node may become Primary now, and why not.
func (r *Replica) CanPromote(force bool) (bool, string) {
	switch {
	case r.role == Primary:
		return true, ""
	case r.link != 0 && !r.conn.Linked():
		// The handshake decided (or is deciding) with us as Secondary;
		// it takes a round trip.
		return false, "the replication handshake is in progress"
	case r.conn.Linked() && r.prole == Primary:
		return false, "the peer is Primary"
	case r.disk == UpToDate:
		return true, ""
	case r.disk == Diskless && r.conn.Linked() && r.pdisk == UpToDate:
		return true, ""
	case force && (r.disk == Consistent || r.disk == Outdated || r.disk == Inconsistent):
		return true, ""
	case r.disk == Diskless:
		return false, "no local disk and no connected UpToDate peer"
	case r.disk == Consistent:
		return false, "disk is Consistent but it cannot be known whether the peer has newer data: connect the peer, or `primary --force`"
	}
	return false, fmt.Sprintf("disk is %v: it lacks the peer's latest writes (never promote stale data; `primary --force` overrides)", r.disk)
}

// CouldLead: the disk is good enough to hold the group (UpToDate, or
// diskless with a connected UpToDate peer), whoever is Primary now. A
// connected Secondary of a running Primary could lead after a handover;
// Promote itself still waits for the peer to step down.
func (r *Replica) CouldLead() bool {
	switch {
	case r.role == Primary:
		return true
	case r.link != 0 && !r.conn.Linked():
		return false // the handshake is deciding
	case r.disk == UpToDate:
		return true
	}
	return r.disk == Diskless && r.conn.Linked() && r.pdisk == UpToDate
}

// PeerPrimary: the connected peer is Primary (we cannot promote yet).
func (r *Replica) PeerPrimary() bool { return r.conn.Linked() && r.prole == Primary }

// Promotable is CanPromote without force.
func (r *Replica) Promotable() bool { ok, _ := r.CanPromote(false); return ok }

// WontPromote reports whether this node's disk keeps it from becoming
// Primary whatever happens to the link (the dopd "outdated" answer): it is
// Outdated, Inconsistent, absent, or Consistent without a peer to vouch for
// it. A peer being Primary is no such reason: it may die.
func (r *Replica) WontPromote() bool {
	switch r.disk {
	case UpToDate:
		return false
	case Diskless:
		return !(r.conn.Linked() && r.pdisk == UpToDate)
	}
	return r.role != Primary
}

// InSyncWithPeer: connected, both disks UpToDate, nothing out of sync.
func (r *Replica) InSyncWithPeer() bool {
	return r.conn == Connected && r.disk == UpToDate && r.pdisk == UpToDate && r.bm.Count() == 0
}

// KnowsPeerOutdated: this node wrote without the peer after the peer was
// outdated or fenced; the peer must resync from it before it may lead.
func (r *Replica) KnowsPeerOutdated() bool { return r.flags&meta.PeerOutdated != 0 }

// DataGen is the current data generation, advertised in heartbeats.
func (r *Replica) DataGen() meta.UUID { return r.gen.Current }

// WantsPeerOutdated reports whether this primary waits for the peer to
// outdate itself (the dopd request, carried by heartbeats).
func (r *Replica) WantsPeerOutdated() bool { return r.suspended && r.role == Primary }

// Step feeds one input and returns outputs; the slice is reused.
func (r *Replica) Step(now proto.Time, in Input) []Output {
	r.out = r.out[:0]
	if now > r.now {
		r.now = now
	}
	switch in.Kind {
	case Tick:
	case Request:
		r.request(in)
	case DiskDone:
		r.diskDone(in)
	case MetaDone:
		r.metaDone(in)
	case LinkUp:
		r.linkUp(in.Conn)
	case LinkDown:
		if in.Conn == r.link && r.link != 0 {
			r.linkLost("the replication link broke")
		}
	case Receive:
		if in.Conn != r.link || r.link == 0 {
			if in.Buf != 0 {
				r.release(BufRef{RecvBuf, in.Buf})
			}
			break
		}
		r.lastRecv = r.now
		r.receive(&in.Msg, in.Buf)
	case Admin:
		r.admin(in)
	case PeerGone:
		r.peerGone(in.Fenced)
	}
	r.timers()
	r.pump()
	return r.out
}

// Promote makes this node Primary (the failover core's "start" of the
// replicated disk, or the operator's `primary`). since is the cluster-wide
// claim epoch, which orders promotions for the split-brain policies.
func (r *Replica) Promote(now proto.Time, since uint64, force bool) (bool, string, []Output) {
	r.out = r.out[:0]
	if now > r.now {
		r.now = now
	}
	ok, why := r.CanPromote(force)
	if !ok {
		r.emit(Event{Kind: Refused, Reason: "promotion refused: " + why})
		return false, why, r.out
	}
	if r.role != Primary {
		r.promote(since)
	}
	r.pump()
	return true, "", r.out
}

// Demote makes this node Secondary; requests still in flight fail.
func (r *Replica) Demote(now proto.Time, why string) []Output {
	r.out = r.out[:0]
	if now > r.now {
		r.now = now
	}
	r.demote(why)
	r.pump()
	return r.out
}

// ObservePeer feeds what the peer's heartbeat says about its replica: its
// data generation, whether it asks us to outdate ourselves (dopd), and
// whether its disk is not promotable (confirming an outdate).
func (r *Replica) ObservePeer(now proto.Time, peerPrimary, outdateRequest, peerOutdated bool) []Output {
	r.out = r.out[:0]
	if now > r.now {
		r.now = now
	}
	if r.conn.Linked() || r.link != 0 {
		// Linked, or in the handshake: our hello already told the peer
		// our disk state, and the link is what will settle it.
		return r.out
	}
	if outdateRequest && peerPrimary && r.role == Secondary &&
		(r.disk == UpToDate || r.disk == Consistent) {
		r.setDisk(Outdated, "the primary asked over a heartbeat medium: it writes without us")
		r.flags |= meta.Outdated
		r.persist()
	}
	if peerOutdated && r.suspended {
		r.pdisk = Outdated
		r.flags |= meta.PeerOutdated
		r.resume("the peer confirmed it is Outdated")
	}
	r.pump()
	return r.out
}

func (r *Replica) promote(since uint64) {
	r.setRole(Primary, "promoted")
	r.primarySince = since
	if r.disk != UpToDate && r.disk != Diskless {
		r.setDisk(UpToDate, "forced by the operator")
		r.flags |= meta.Consistent
		r.flags &^= meta.Outdated
		if r.gen.Current == 0 {
			r.gen.Current = r.newUUID()
			r.emit(Event{Kind: NewGeneration, Gen: r.gen.Current, Reason: "first primary --force of fresh data"})
		}
		if r.conn.Linked() && r.pdisk != UpToDate {
			// Renegotiate so the handshake starts the full sync.
			r.flags |= meta.WasPrimary
			r.persist()
			r.linkLost("primary --force: reconnecting to sync the peer")
			return
		}
	}
	if !r.conn.Linked() {
		r.newGenPending = true
	}
	r.flags |= meta.WasPrimary
	r.persist()
	if r.conn.Linked() {
		r.sendState()
	}
}

func (r *Replica) demote(why string) {
	if r.role != Primary {
		return
	}
	for _, q := range r.order {
		if !q.queued {
			continue
		}
		r.complete(q, NotPrimary)
	}
	if r.suspended {
		// Writes frozen for fencing never reached the peer, and we give
		// up the right to write without it: they fail, they are not
		// acknowledged on the strength of the local copy alone.
		for _, q := range r.order {
			if q.op != Read && !q.queued && !q.peerOK {
				q.abort = Suspended
				q.needPeer = false
			}
		}
	}
	r.setRole(Secondary, why)
	r.newGenPending = false
	r.suspended = false
	if r.disk == UpToDate || r.disk == Consistent {
		// The activity log stays in force until the data is on stable
		// storage; then was-primary is cleared.
		r.issue(&io{kind: ioDemoteFlush}, Flush, span{})
	} else {
		r.persist()
	}
	if r.conn.Linked() {
		r.sendState()
	}
}

func (r *Replica) newUUID() meta.UUID {
	for {
		r.rnd ^= r.rnd << 13
		r.rnd ^= r.rnd >> 7
		r.rnd ^= r.rnd << 17
		if u := meta.UUID(r.rnd); u != 0 {
			return u
		}
	}
}

// rotate starts a new current generation: the old one becomes the bitmap
// generation (the point the bitmap tracks changes from), or history if the
// bitmap already tracks from an earlier point.
func (r *Replica) rotate(why string) {
	if r.gen.Bitmap == 0 {
		r.gen.Bitmap = r.gen.Current
	} else {
		r.gen.History[1] = r.gen.History[0]
		r.gen.History[0] = r.gen.Current
	}
	r.gen.Current = r.newUUID()
	r.ownGens = append(r.ownGens, r.gen.Current)
	r.newGenPending = false
	r.emit(Event{Kind: NewGeneration, Gen: r.gen.Current, Reason: why})
	r.persist()
}

// --- events and small helpers ---

func (r *Replica) emit(e Event) {
	if e.Peer == 0 && e.Kind != SplitBrainResolved {
		e.Peer = r.cfg.Peer
	}
	r.out = append(r.out, Output{Kind: Emit, Event: e})
}

func (r *Replica) name(n proto.NodeID) string {
	if int(n) < len(r.cfg.Names) {
		return r.cfg.Names[n]
	}
	return fmt.Sprintf("node%d", n)
}

func (r *Replica) setRole(to Role, why string) {
	if r.role == to {
		return
	}
	r.emit(Event{Kind: RoleChanged, Reason: fmt.Sprintf("%v -> %v: %s", r.role, to, why)})
	r.role = to
}

func (r *Replica) setDisk(to DiskState, why string) {
	if r.disk == to {
		return
	}
	r.emit(Event{Kind: DiskChanged, Reason: fmt.Sprintf("%v -> %v: %s", r.disk, to, why)})
	r.disk = to
	if r.conn.Linked() {
		r.sendState()
	}
}

func (r *Replica) setConn(to ConnState, why string) {
	if r.conn == to {
		return
	}
	r.emit(Event{Kind: ConnChanged, Reason: fmt.Sprintf("%v -> %v: %s", r.conn, to, why)})
	r.conn = to
}

func (r *Replica) setPeerDisk(to DiskState) {
	if r.pdisk == to {
		return
	}
	r.emit(Event{Kind: PeerDiskChanged, Reason: fmt.Sprintf("%v -> %v", r.pdisk, to)})
	r.pdisk = to
}

func (r *Replica) release(b BufRef) {
	if b.Kind == DiskBuf || b.Kind == RecvBuf {
		r.out = append(r.out, Output{Kind: Release, Buf: b})
	}
}

func (r *Replica) send(m Msg, buf BufRef) {
	if r.link == 0 {
		r.release(buf)
		return
	}
	r.out = append(r.out, Output{Kind: Send, Conn: r.link, Msg: m, Buf: buf})
}

func (r *Replica) emitWantLink() {
	r.out = append(r.out, Output{Kind: WantLink, Connect: r.wantLink})
}

func (r *Replica) issue(o *io, op ReqOp, s span) {
	r.nextID++
	o.id = r.nextID
	o.s = s
	if o.buf.Kind == DiskBuf {
		o.buf.ID = o.id // a read into a fresh buffer is named after itself
	}
	r.ios[o.id] = o
	r.out = append(r.out, Output{Kind: DiskIO, ID: o.id, Op: op, Block: s.block, Count: s.count, Buf: o.buf})
}

// usableDisk: the local disk can take I/O.
func (r *Replica) usableDisk() bool {
	return r.disk != Diskless && r.disk != Failed && r.disk != Attaching
}

// peerTakesWrites: mirrored writes go to the peer.
func (r *Replica) peerTakesWrites() bool {
	return r.conn.Linked() && (r.pdisk == UpToDate || r.pdisk == Inconsistent ||
		r.pdisk == Consistent || r.pdisk == Outdated)
}

// --- metadata ---

// persist writes the metadata record; concurrent requests coalesce.
func (r *Replica) persist() {
	if !r.usableDisk() && r.disk != Inconsistent {
		return
	}
	if r.metaBusy {
		r.metaAgain = true
		return
	}
	r.metaBusy = true
	r.metaSeq++
	bm := r.bm.Clone()
	bm.Or(r.clearsPending)
	bm.Or(r.clearsFlush)
	rec := &meta.Record{Seq: r.metaSeq, Blocks: r.cfg.Blocks, Node: uint8(r.cfg.Self), Gen: r.gen,
		Flags: r.flags, AL: r.al.Extents(), Bitmap: bm, PrimarySince: r.primarySince}
	r.nextID++
	r.metaID = r.nextID
	r.out = append(r.out, Output{Kind: Persist, ID: r.metaID, Record: rec})
}

func (r *Replica) metaDone(in Input) {
	if in.ID != r.metaID || !r.metaBusy {
		return
	}
	r.metaBusy = false
	if in.Err != OK {
		r.ioFailed(in.Err, "writing metadata")
		return
	}
	if r.metaAgain {
		r.metaAgain = false
		r.persist()
	}
}

// clearBits marks a range in sync; until the next flush the bits stay set
// in what is persisted.
func (r *Replica) clearBits(s span) {
	for b := s.block; b < s.block+uint64(s.count); b++ {
		if r.bm.Clear(b) {
			r.clearsPending.Set(b)
		}
	}
}

// --- application requests (Primary) ---

func (r *Replica) request(in Input) {
	q := &req{id: in.ID, op: in.Op, s: span{in.Block, in.Count}, queued: true}
	if r.role != Primary {
		r.out = append(r.out, Output{Kind: Complete, ID: in.ID, Err: NotPrimary})
		return
	}
	if (in.Op == Read || in.Op == Write || in.Op == Trim) &&
		(in.Count == 0 || in.Block+uint64(in.Count) > r.cfg.Blocks) {
		r.out = append(r.out, Output{Kind: Complete, ID: in.ID, Err: EIO})
		return
	}
	r.reqs[q.id] = q
	r.order = append(r.order, q)
}

// pump issues queued requests whose turn has come, completes finished
// ones, and drives resync and verify.
func (r *Replica) pump() {
	for progress := true; progress; {
		progress = false
		for _, q := range r.order {
			if q.queued && r.tryIssue(q) {
				progress = true
			}
		}
		if r.completeDone() {
			progress = true
		}
	}
	r.pumpSync()
	r.pumpVerify()
}

// tryIssue issues q if nothing holds it back.
func (r *Replica) tryIssue(q *req) bool {
	if r.role != Primary || r.suspended || r.conn == Connecting && r.link != 0 {
		return false
	}
	local := r.usableDisk() && r.disk == UpToDate
	remote := r.peerTakesWrites()
	switch q.op {
	case Read:
		// Reads may pass queued writes only if they do not overlap them.
		for _, o := range r.order {
			if o == q {
				break
			}
			if o.op == Write || o.op == Trim {
				if o.s.overlaps(q.s) && !o.localDone {
					return false
				}
			}
		}
		q.queued = false
		switch {
		case local:
			q.localPending = true
			q.inDisk++
			r.issue(&io{kind: ioApp, r: q, buf: BufRef{AppBuf, q.id}}, Read, q.s)
		case r.conn.Linked() && r.pdisk == UpToDate:
			r.readFromPeer(q)
		default:
			r.complete(q, NoData)
		}
		return true
	case Flush:
		// A flush covers every write issued before it.
		for _, o := range r.order {
			if o == q {
				break
			}
			if (o.op == Write || o.op == Trim) && o.queued {
				return false
			}
		}
		q.queued = false
		if remote {
			r.closeEpoch()
			q.peerEpoch = r.epoch - 1
			q.needPeer = q.peerEpoch > r.ackedEpoch
		}
		if local {
			q.localPending = true
			r.issue(&io{kind: ioApp, r: q}, Flush, span{})
		} else {
			q.localDone = true
			if !remote {
				r.complete(q, NoData)
			}
		}
		return true
	}
	// Write or trim.
	if !local && !remote {
		q.queued = false
		r.complete(q, NoData)
		return true
	}
	if r.metaBusy {
		return false
	}
	if r.newGenPending {
		r.rotate("first write since the peer was lost or since promotion without it")
		return false
	}
	// Overlapping writes are serialised: the second waits for the first,
	// so both disks apply them in the same order.
	for _, o := range r.order {
		if o == q {
			break
		}
		if (o.op == Write || o.op == Trim) && o.s.overlaps(q.s) {
			return false
		}
	}
	for _, s := range r.srcReading {
		if s.overlaps(q.s) {
			return false
		}
	}
	for _, s := range r.repairing {
		if s.overlaps(q.s) {
			return false // the repair must land first, or it would undo us
		}
	}
	if local && !q.alHeld {
		needTx := false
		first, last := uint32(q.s.block/meta.BlocksPerExtent), uint32((q.s.block+uint64(q.s.count)-1)/meta.BlocksPerExtent)
		for e := first; e <= last; e++ {
			if r.al.Hot(e) {
				continue
			}
			if _, _, ok := r.al.Begin(e); !ok {
				// Every slot busy: undo the ones taken and wait.
				for u := first; u < e; u++ {
					r.al.End(u)
				}
				return false
			}
			r.al.End(e)
			needTx = true
		}
		if needTx {
			r.persist()
			return false
		}
		for e := first; e <= last; e++ {
			r.al.Begin(e)
		}
		q.alHeld = true
	}
	q.queued = false
	q.gen = r.gen.Current
	for _, o := range r.order {
		if o.op == Read && o != q && o.s.overlaps(q.s) {
			o.rewritten = true
		}
	}
	if r.epochHadCompletion || r.epochWrites >= r.cfg.MaxEpochWrites {
		r.closeEpoch()
	}
	if local {
		q.localPending = true
		q.inDisk++
		r.issue(&io{kind: ioApp, r: q, buf: BufRef{AppBuf, q.id}}, q.op, q.s)
	} else {
		q.localDone = true
	}
	if remote {
		r.dataSeq++
		q.seq = r.dataSeq
		q.epoch = r.epoch
		r.seqReq[q.seq] = q
		kind := MsgData
		buf := BufRef{AppBuf, q.id}
		if q.op == Trim {
			kind, buf = MsgTrim, BufRef{}
		}
		r.send(Msg{Kind: kind, Seq: q.seq, Epoch: q.epoch, Block: q.s.block, Count: q.s.count,
			WriterGen: q.gen}, buf)
		r.Stats.WritesMirrored++
		r.epochWrites++
		r.tlAdd(q.s)
		q.needPeer = r.cfg.Protocol != ProtocolA || !local
	} else {
		r.bm.SetRange(q.s.block, uint64(q.s.count))
	}
	return true
}

func (r *Replica) readFromPeer(q *req) {
	r.dataSeq++
	q.seq = r.dataSeq
	r.seqReq[q.seq] = q
	q.needPeer = true
	r.Stats.ReadsFromPeer++
	r.send(Msg{Kind: MsgReadReq, Seq: q.seq, Block: q.s.block, Count: q.s.count}, BufRef{})
}

func (r *Replica) tlAdd(s span) {
	if len(r.tl) == 0 || r.tl[len(r.tl)-1].num != r.epoch {
		r.tl = append(r.tl, tlEpoch{num: r.epoch})
	}
	t := &r.tl[len(r.tl)-1]
	t.spans = append(t.spans, s)
}

// closeEpoch sends a barrier after the current epoch's writes.
func (r *Replica) closeEpoch() {
	if r.epochWrites == 0 {
		return
	}
	r.send(Msg{Kind: MsgBarrier, Epoch: r.epoch}, BufRef{})
	r.epoch++
	r.epochWrites = 0
	r.epochHadCompletion = false
	r.lastBarrier = r.now
}

// completeDone completes requests whose parts are all done.
func (r *Replica) completeDone() bool {
	done := false
	for _, q := range r.order {
		if q.queued || q.localPending || q.inDisk > 0 || (q.needPeer && !q.peerOK && !q.peerFailed) {
			continue
		}
		if r.suspended && (q.op != Read) {
			continue
		}
		err := OK
		switch {
		case q.localErr != OK && !q.peerOK:
			err = q.localErr
		case q.localErr == OK && !q.localDone && !q.peerOK:
			err = NoData
		case q.peerFailed && !q.localDone:
			err = NoData
		}
		if q.abort != OK {
			err = q.abort
		}
		if q.op == Read && q.repair {
			continue
		}
		r.complete(q, err)
		done = true
	}
	if done {
		kept := r.order[:0]
		for _, q := range r.order {
			if r.reqs[q.id] == q {
				kept = append(kept, q)
			}
		}
		for i := len(kept); i < len(r.order); i++ {
			r.order[i] = nil
		}
		r.order = kept
	}
	return done
}

func (r *Replica) complete(q *req, err IOError) {
	if r.reqs[q.id] != q {
		return
	}
	delete(r.reqs, q.id)
	if q.seq != 0 {
		delete(r.seqReq, q.seq)
	}
	q.queued = false
	if q.alHeld {
		first, last := uint32(q.s.block/meta.BlocksPerExtent), uint32((q.s.block+uint64(q.s.count)-1)/meta.BlocksPerExtent)
		for e := first; e <= last; e++ {
			r.al.End(e)
		}
		q.alHeld = false
		if r.demoteFlushAgain && r.al.InFlight() == 0 {
			r.demoteFlushAgain = false
			if r.role == Secondary {
				r.issue(&io{kind: ioDemoteFlush}, Flush, span{})
			}
		}
	}
	if q.op == Write || q.op == Trim {
		r.epochHadCompletion = true
	}
	r.out = append(r.out, Output{Kind: Complete, ID: q.id, Err: err, Buf: q.readFromBuf, Gen: q.gen})
	if q.readFromBuf.Kind == RecvBuf {
		r.release(q.readFromBuf)
	}
	// Removal from r.order happens in completeDone's sweep; until then
	// nothing may treat the request as waiting for the disk.
	q.localPending = false
}

// --- disk completions ---

func (r *Replica) diskDone(in Input) {
	o := r.ios[in.ID]
	if o == nil {
		return
	}
	delete(r.ios, in.ID)
	if o.kind == ioApp && o.buf.Kind == AppBuf {
		o.r.inDisk--
	}
	if o.abandon {
		r.release(o.buf)
		return
	}
	err := in.Err
	switch o.kind {
	case ioApp:
		r.appDiskDone(o, err)
	case ioRepair:
		r.release(o.buf)
		for i, x := range r.repairing {
			if x == o.s {
				r.repairing = append(r.repairing[:i], r.repairing[i+1:]...)
				break
			}
		}
		if err != OK {
			r.ioFailed(err, "rewriting a block repaired from the peer")
		} else {
			r.Stats.Repairs++
		}
	case ioReplica:
		r.rxInflight--
		r.unbusy(o.s)
		if err != OK {
			r.send(Msg{Kind: MsgNegAck, Seq: o.msg.Seq, Err: err}, BufRef{})
			r.ioFailed(err, "writing replicated data")
		} else {
			r.clearBits(o.s)
			// Sent under every protocol: the primary needs it when its
			// own disk is gone, and the simulator uses it to bound the
			// protocol A/B loss window.
			r.send(Msg{Kind: MsgWriteAck, Seq: o.msg.Seq}, BufRef{})
		}
		r.release(o.buf)
		r.drainRx()
		r.drainBlocked()
	case ioBarrierFlush:
		r.rxFlushing = false
		r.flushDoneClears()
		if err != OK {
			r.send(Msg{Kind: MsgBarrierAck, Epoch: o.msg.Epoch, Err: err}, BufRef{})
			r.ioFailed(err, "flushing at a barrier")
		} else {
			r.send(Msg{Kind: MsgBarrierAck, Epoch: o.msg.Epoch}, BufRef{})
		}
		if len(r.rxq) > 0 && r.rxq[0].msg.Kind == MsgBarrier {
			r.rxq = r.rxq[1:]
		}
		r.drainRx()
	case ioDemoteFlush:
		r.flushDoneClears()
		if err != OK {
			r.ioFailed(err, "flushing at demotion")
			return
		}
		if r.role == Secondary && r.al.InFlight() > 0 {
			// Writes accepted before the demotion are still on their way
			// to the disk: their extents stay hot until they are done.
			r.demoteFlushAgain = true
			return
		}
		if r.role == Secondary {
			r.flags &^= meta.WasPrimary
			r.al.Clear()
			r.crashed = false
			r.persist()
		}
	case ioSyncFlush:
		r.flushDoneClears()
		if err != OK {
			r.ioFailed(err, "flushing resynced data")
			return
		}
		r.syncFlushed()
	case ioResyncRead, ioCsumSourceRead:
		r.unreading(o.s)
		if err != OK {
			r.release(o.buf)
			r.send(Msg{Kind: MsgResyncData, Block: o.s.block, Count: o.s.count, Err: err}, BufRef{})
			r.ioFailed(err, "reading for resync")
			break
		}
		if o.kind == ioCsumSourceRead && in.Digest == o.msg.Digest {
			r.release(o.buf)
			r.clearBits(o.s)
			r.Stats.ResyncSkipped += uint64(o.s.count)
			r.send(Msg{Kind: MsgInSync, Block: o.s.block, Count: o.s.count}, BufRef{})
			break
		}
		r.Stats.ResyncBlocks += uint64(o.s.count)
		r.send(Msg{Kind: MsgResyncData, Block: o.s.block, Count: o.s.count}, o.buf)
		r.release(o.buf)
	case ioCsumRead:
		r.release(o.buf)
		if err != OK {
			// Our copy is unreadable: ask for the data outright.
			r.send(Msg{Kind: MsgResyncReq, Block: o.s.block, Count: o.s.count}, BufRef{})
			break
		}
		r.send(Msg{Kind: MsgCsumReq, Block: o.s.block, Count: o.s.count, Digest: in.Digest}, BufRef{})
	case ioResyncWrite:
		r.unbusy(o.s)
		r.release(o.buf)
		r.syncInflight--
		if err != OK {
			r.ioFailed(err, "writing resync data")
			break
		}
		r.clearBits(o.s)
		r.syncDone += uint64(o.s.count)
		r.send(Msg{Kind: MsgInSync, Block: o.s.block, Count: o.s.count}, BufRef{})
		r.drainBlocked()
	case ioVerifyRead:
		r.release(o.buf)
		if err != OK {
			r.verifyInflight--
			r.bm.SetRange(o.s.block, uint64(o.s.count))
			r.verifyFound += uint64(o.s.count)
			break
		}
		r.send(Msg{Kind: MsgVerifyReq, Block: o.s.block, Count: o.s.count, Digest: in.Digest}, BufRef{})
	case ioReadForPeer:
		if err != OK {
			r.release(o.buf)
			r.send(Msg{Kind: MsgReadReply, Seq: o.msg.Seq, Err: err}, BufRef{})
			r.ioFailed(err, "reading for the peer")
			break
		}
		r.send(Msg{Kind: MsgReadReply, Seq: o.msg.Seq}, o.buf)
		r.release(o.buf)
	case ioVerifyPeerRead:
		r.release(o.buf)
		same := err == OK && in.Digest == o.msg.Digest
		reply := Msg{Kind: MsgVerifyReply, Block: o.s.block, Count: o.s.count}
		if !same {
			reply.Err = BadChecksum
			r.bm.SetRange(o.s.block, uint64(o.s.count))
			r.Stats.VerifyMismatch += uint64(o.s.count)
		}
		r.send(reply, BufRef{})
	}
}

func (r *Replica) flushDoneClears() {
	r.clearsFlush.ClearAll()
}

func (r *Replica) startFlushClears() {
	r.clearsFlush.Or(r.clearsPending)
	r.clearsPending.ClearAll()
}

func (r *Replica) appDiskDone(o *io, err IOError) {
	q := o.r
	if r.reqs[q.id] != q {
		return
	}
	q.localPending = false
	if err == OK {
		q.localDone = true
		return
	}
	if q.op == Read {
		// Serve the read from the good copy and rewrite ours with it.
		if (err == EIO || err == BadChecksum) && r.cfg.OnIOError == Detach &&
			r.conn.Linked() && r.pdisk == UpToDate {
			q.repair = true
			r.readFromPeer(q)
			return
		}
		if err == DeviceFailed && r.cfg.OnIOError == Detach {
			r.ioFailed(err, "reading")
			if r.conn.Linked() && r.pdisk == UpToDate {
				r.readFromPeer(q)
				return
			}
		}
		q.localErr = err
		return
	}
	if q.op == Flush {
		// An fsync error is never retried into an acknowledgement: the
		// local copy is suspect, so it counts only if the peer has it.
		q.localErr = err
		if r.cfg.OnIOError == Detach {
			r.ioFailed(err, "flushing")
		}
		return
	}
	q.localErr = err
	if r.cfg.OnIOError == Detach {
		// The write may or may not be on our disk; with the disk gone the
		// peer's copy is the one that counts.
		r.ioFailed(err, "writing")
		if !q.needPeer && q.seq != 0 {
			q.needPeer = true
		}
	}
}

// ioFailed applies on-io-error to a local disk error.
func (r *Replica) ioFailed(err IOError, doing string) {
	if r.disk == Diskless || r.disk == Failed {
		return
	}
	if r.cfg.OnIOError == PassOn && err != DeviceFailed {
		r.emit(Event{Kind: IOFailed, Reason: fmt.Sprintf("%v while %s: passed on to the application (on-io-error pass_on)", err, doing)})
		return
	}
	r.emit(Event{Kind: IOFailed, Reason: fmt.Sprintf("%v while %s: detaching the disk (on-io-error detach)", err, doing)})
	r.detach()
}

func (r *Replica) detach() {
	r.setDisk(Failed, "I/O error")
	r.Stats.Detaches++
	for _, o := range r.ios {
		o.abandon = true
	}
	// Requests waiting only for the local disk now wait for the peer.
	for _, q := range r.order {
		if q.localPending {
			q.localPending = false
			switch {
			case q.op == Read:
				if r.conn.Linked() && r.pdisk == UpToDate {
					r.readFromPeer(q)
				} else {
					q.localErr = DeviceFailed
				}
			case q.seq != 0 && r.conn.Linked():
				q.needPeer = true
			default:
				q.localErr = DeviceFailed
			}
		}
		if q.alHeld {
			q.alHeld = false
		}
	}
	r.al = meta.NewActivityLog(r.cfg.ALSlots)
	r.repairing = r.repairing[:0]
	r.rxInflight = 0
	r.rxFlushing = false
	r.busy = r.busy[:0]
	r.syncInflight = 0
	r.srcReading = r.srcReading[:0]
	r.metaBusy = false
	r.setDisk(Diskless, "detached after an I/O error")
	if r.conn == SyncSource || r.conn == SyncTarget || r.conn == PausedSync ||
		r.conn == VerifySource || r.conn == VerifyTarget {
		r.setConn(Connected, "the local disk is gone")
		r.verifyRunning = false
	}
}

// --- link ---

func (r *Replica) linkUp(conn uint64) {
	if !r.wantLink {
		return
	}
	if r.link != 0 {
		r.linkLost("a new connection replaced the old one")
	}
	r.link = conn
	r.lastRecv = r.now
	r.nextPing = r.now.Add(r.cfg.PingInterval)
	r.linkEstablished = r.now
	r.haveHello = false
	r.awaitBitmap = false
	r.setConn(Connecting, "link up, handshake")
	r.sendHello()
}

func (r *Replica) sendHello() {
	r.helloSent = true
	r.send(Msg{Kind: MsgHello, Node: r.cfg.Self, Gen: r.gen, Flags: r.flags, Disk: r.disk,
		Role: r.role, Blocks: r.cfg.Blocks, Changes: r.bm.Count(), Protocol: r.cfg.Protocol,
		DiscardMyData: r.discardMine, Crashed: r.crashed, PrimarySince: r.primarySince}, BufRef{})
}

func (r *Replica) sendState() {
	r.send(Msg{Kind: MsgState, Disk: r.disk, Role: r.role, Gen: r.gen}, BufRef{})
}

// linkLost tears down everything tied to the connection.
func (r *Replica) linkLost(why string) {
	if r.link == 0 {
		return
	}
	closed := r.link
	r.link = 0
	r.haveHello = false
	r.helloSent = false
	r.awaitBitmap = false
	wasLinked := r.conn.Linked()
	peerDisk := r.pdisk
	// Writes the peer may not have made stable are out of sync.
	for _, t := range r.tl {
		for _, s := range t.spans {
			r.bm.SetRange(s.block, uint64(s.count))
		}
	}
	r.tl = r.tl[:0]
	r.epochWrites = 0
	r.epoch++
	r.ackedEpoch = r.epoch - 1
	var orphans []*req // writes in flight that will now complete without the peer
	for _, q := range r.order {
		if q.needPeer && !q.peerOK {
			q.needPeer = false
			if q.op != Read && q.localErr == OK {
				orphans = append(orphans, q)
			}
			if q.op == Read {
				if q.repair || !q.localDone {
					q.repair = false
					q.localErr = NoData
				}
			} else if !q.localDone && q.localErr == OK && !q.localPending {
				q.localErr = NoData
			}
		}
	}
	clear(r.seqReq)
	for _, it := range r.rxq {
		if it.buf != 0 {
			r.release(BufRef{RecvBuf, it.buf})
		}
	}
	r.rxq = r.rxq[:0]
	for _, it := range r.blocked {
		if it.buf != 0 {
			r.release(BufRef{RecvBuf, it.buf})
		}
	}
	r.blocked = r.blocked[:0]
	r.deferred = r.deferred[:0]
	r.syncFinishing = false
	r.syncDoneSent = false
	r.verifyRunning = false
	r.setPeerDisk(DUnknown)
	r.prole = 0
	next := Connecting
	if !r.wantLink {
		next = StandAlone
	}
	r.setConn(next, why)
	r.out = append(r.out, Output{Kind: WantLink, Connect: false, Conn: closed})
	if r.role != Primary {
		// A Secondary (a primary that stepped down while these waited for
		// the peer) has no right to acknowledge a write on its own copy.
		for _, q := range orphans {
			q.abort = NotPrimary
		}
	}
	if wasLinked && r.role == Primary {
		r.newGenPending = true
		if len(orphans) > 0 && !r.cfg.Fencing {
			// Without fencing these writes complete now without the peer,
			// which may be promoted meanwhile: they belong to a new
			// generation, so a later split-brain resolution that discards
			// our changes names them too. (With fencing they wait, frozen,
			// until the peer is outdated or fenced, and cannot diverge.)
			r.rotate("writes in flight lost the peer")
			for _, q := range orphans {
				q.gen = r.gen.Current
			}
		}
		// Only a peer that could be promoted is a risk worth freezing for.
		if r.cfg.Fencing && !r.suspended && (peerDisk == UpToDate || peerDisk == Consistent) {
			r.suspended = true
			r.emit(Event{Kind: Info, Reason: "I/O suspended: the peer is lost and fencing is on; waiting until it is outdated or fenced"})
		}
	}
	r.emitWantLink()
}

func (r *Replica) peerGone(fenced bool) {
	if r.link != 0 {
		r.linkLost("the peer was declared dead")
	}
	if fenced {
		r.setPeerDisk(Outdated)
		r.flags |= meta.PeerOutdated
		if r.role == Primary {
			r.persist()
		}
		r.resume("the peer was fenced")
	}
}

func (r *Replica) resume(why string) {
	if !r.suspended {
		return
	}
	r.suspended = false
	r.emit(Event{Kind: Info, Reason: "I/O resumed: " + why})
	r.persist()
}

func (r *Replica) timers() {
	if r.link != 0 {
		if r.now.Sub(r.lastRecv) >= r.cfg.Timeout {
			r.linkLost(fmt.Sprintf("nothing from the peer for %v (replication timeout)", r.cfg.Timeout))
			return
		}
		if r.now >= r.nextPing {
			r.send(Msg{Kind: MsgPing}, BufRef{})
			r.nextPing = r.now.Add(r.cfg.PingInterval)
		}
	}
	if r.role == Primary && r.epochWrites > 0 && r.now.Sub(r.lastBarrier) >= r.cfg.BarrierInterval {
		r.closeEpoch()
	}
}

// Deadline is when the replica next needs a Tick.
func (r *Replica) Deadline() proto.Time {
	d := proto.Never
	if r.link != 0 {
		d = min(d, r.nextPing, r.lastRecv.Add(r.cfg.Timeout))
	}
	if r.role == Primary && r.epochWrites > 0 {
		d = min(d, r.lastBarrier.Add(r.cfg.BarrierInterval))
	}
	if r.conn == SyncTarget && r.syncInflight < r.cfg.ResyncInflight && r.bm.Count() > 0 {
		d = min(d, r.now.Add(10*time.Millisecond))
	}
	if r.verifyRunning {
		d = min(d, r.now.Add(10*time.Millisecond))
	}
	return d
}

// --- messages ---

func (r *Replica) receive(m *Msg, buf uint64) {
	switch m.Kind {
	case MsgPing:
		r.send(Msg{Kind: MsgPingAck}, BufRef{})
	case MsgPingAck:
	case MsgHello:
		r.peerHello = *m
		r.haveHello = true
		r.handshake()
	case MsgBitmap:
		r.gotBitmap(m)
	case MsgState:
		r.prole = m.Role
		r.setPeerDisk(m.Disk)
		if m.Disk == Diskless && (r.conn == SyncTarget || r.conn == PausedSync || r.conn == VerifySource) {
			r.setConn(Connected, "the peer lost its disk")
			r.verifyRunning = false
		}
		if m.Role == Primary && r.role == Primary {
			r.emit(Event{Kind: SplitBrain, Reason: "both nodes are Primary on a connected link: disconnecting"})
			r.disconnect()
		}
	case MsgData, MsgTrim, MsgBarrier:
		r.rxq = append(r.rxq, rxItem{msg: *m, buf: buf})
		r.drainRx()
		return
	case MsgRecvAck, MsgWriteAck:
		if q := r.seqReq[m.Seq]; q != nil {
			// Protocol B settles for "received" only while our own disk
			// holds the data too.
			if m.Kind == MsgWriteAck || (r.cfg.Protocol == ProtocolB && r.usableDisk()) {
				q.peerOK = true
			}
		}
	case MsgNegAck:
		if q := r.seqReq[m.Seq]; q != nil {
			q.peerFailed = true
			r.bm.SetRange(q.s.block, uint64(q.s.count))
		}
	case MsgBarrierAck:
		r.barrierAck(m)
	case MsgReadReq:
		if !r.usableDisk() || r.disk != UpToDate {
			r.send(Msg{Kind: MsgReadReply, Seq: m.Seq, Err: NoData}, BufRef{})
			return
		}
		r.issue(&io{kind: ioReadForPeer, msg: *m, buf: BufRef{Kind: DiskBuf}}, Read, span{m.Block, m.Count})
	case MsgReadReply:
		q := r.seqReq[m.Seq]
		if q == nil {
			r.release(BufRef{RecvBuf, buf})
			return
		}
		delete(r.seqReq, m.Seq)
		if m.Err != OK {
			q.peerFailed = true
			if q.localErr == OK {
				q.localErr = m.Err
			}
			q.repair = false
			r.release(BufRef{RecvBuf, buf})
			return
		}
		q.peerOK = true
		q.localErr = OK
		q.readFromBuf = BufRef{RecvBuf, buf}
		if q.repair && r.usableDisk() && !q.rewritten {
			// Complete the read now, then rewrite the bad local copy.
			q.repair = false
			r.repairLocal(q, buf)
			q.readFromBuf = BufRef{RecvBuf, buf}
			r.completeKeepBuf(q)
			return
		}
		q.repair = false
		return // the completion hands the buffer over and releases it
	case MsgResyncReq, MsgCsumReq:
		r.sourceRead(*m)
	case MsgResyncData:
		r.targetData(m, buf)
		return
	case MsgInSync:
		r.clearBits(span{m.Block, m.Count})
		if r.syncTarget {
			r.syncInflight--
			r.Stats.ResyncSkipped += uint64(m.Count)
			r.syncDone += uint64(m.Count)
		}
	case MsgResyncDone:
		r.gotResyncDone(m)
	case MsgVerifyReq:
		if m.Count == 0 {
			r.setConn(Connected, "online verify finished")
			return
		}
		if r.conn == Connected {
			r.setConn(VerifyTarget, "online verify started by the peer")
		}
		if !r.usableDisk() {
			r.send(Msg{Kind: MsgVerifyReply, Block: m.Block, Count: m.Count, Err: NoData}, BufRef{})
			return
		}
		r.issue(&io{kind: ioVerifyPeerRead, msg: *m, buf: BufRef{Kind: DiskBuf}}, Read, span{m.Block, m.Count})
	case MsgVerifyReply:
		r.verifyInflight--
		if m.Err != OK {
			r.bm.SetRange(m.Block, uint64(m.Count))
			r.verifyFound += uint64(m.Count)
			r.Stats.VerifyMismatch += uint64(m.Count)
		}
	case MsgOutOfSync:
		r.bm.SetRange(m.Block, uint64(m.Count))
	}
	if buf != 0 {
		r.release(BufRef{RecvBuf, buf})
	}
}

func (r *Replica) repairLocal(q *req, buf uint64) {
	// The repair write reads from the received buffer; its completion
	// releases it, so the request must not.
	r.repairing = append(r.repairing, q.s)
	r.issue(&io{kind: ioRepair, buf: BufRef{RecvBuf, buf}}, Write, q.s)
}

func (r *Replica) completeKeepBuf(q *req) {
	b := q.readFromBuf
	q.readFromBuf = BufRef{}
	r.complete(q, OK)
	// The completion carries the data buffer, which the repair still uses.
	r.out[len(r.out)-1].Buf = b
}

func (r *Replica) barrierAck(m *Msg) {
	for len(r.tl) > 0 && r.tl[0].num <= m.Epoch {
		if m.Err != OK {
			for _, s := range r.tl[0].spans {
				r.bm.SetRange(s.block, uint64(s.count))
			}
		}
		r.tl = r.tl[1:]
	}
	if m.Epoch > r.ackedEpoch {
		r.ackedEpoch = m.Epoch
	}
	for _, q := range r.order {
		if q.op == Flush && q.needPeer && !q.peerOK && q.peerEpoch <= r.ackedEpoch {
			if m.Err != OK {
				q.peerFailed = true
			} else {
				q.peerOK = true
			}
		}
	}
}

// drainRx applies received writes in order on a secondary: writes of one
// epoch run concurrently; a barrier waits for them, flushes, and acks.
func (r *Replica) drainRx() {
	for len(r.rxq) > 0 {
		it := r.rxq[0]
		if it.msg.Kind == MsgBarrier {
			if r.rxInflight > 0 || r.rxFlushing || len(r.blocked) > 0 {
				return
			}
			if !r.usableDisk() {
				r.send(Msg{Kind: MsgBarrierAck, Epoch: it.msg.Epoch, Err: NoData}, BufRef{})
				r.rxq = r.rxq[1:]
				continue
			}
			r.rxFlushing = true
			r.startFlushClears()
			r.issue(&io{kind: ioBarrierFlush, msg: it.msg}, Flush, span{})
			return
		}
		r.rxq = r.rxq[1:]
		if r.cfg.Protocol == ProtocolB {
			r.send(Msg{Kind: MsgRecvAck, Seq: it.msg.Seq}, BufRef{})
		}
		if !r.usableDisk() {
			r.send(Msg{Kind: MsgNegAck, Seq: it.msg.Seq, Err: NoData}, BufRef{})
			if it.buf != 0 {
				r.release(BufRef{RecvBuf, it.buf})
			}
			continue
		}
		r.writeReplica(it)
	}
}

func (r *Replica) writeReplica(it rxItem) {
	s := span{it.msg.Block, it.msg.Count}
	if r.isBusy(s) || r.blockedOverlap(s) {
		r.blocked = append(r.blocked, it)
		r.rxInflight++ // counts as in flight for the barrier
		return
	}
	r.busy = append(r.busy, s)
	r.rxInflight++
	op, buf := Write, BufRef{RecvBuf, it.buf}
	if it.msg.Kind == MsgTrim {
		op, buf = Trim, BufRef{}
	}
	r.issue(&io{kind: ioReplica, msg: it.msg, buf: buf}, op, s)
}

func (r *Replica) isBusy(s span) bool {
	for _, b := range r.busy {
		if b.overlaps(s) {
			return true
		}
	}
	return false
}

func (r *Replica) blockedOverlap(s span) bool {
	for _, b := range r.blocked {
		if (span{b.msg.Block, b.msg.Count}).overlaps(s) {
			return true
		}
	}
	return false
}

func (r *Replica) unbusy(s span) {
	for i, b := range r.busy {
		if b == s {
			r.busy = append(r.busy[:i], r.busy[i+1:]...)
			return
		}
	}
}

// drainBlocked issues writes that waited for an overlapping one, in order.
func (r *Replica) drainBlocked() {
	for len(r.blocked) > 0 {
		it := r.blocked[0]
		s := span{it.msg.Block, it.msg.Count}
		if r.isBusy(s) {
			return
		}
		r.blocked = r.blocked[1:]
		r.busy = append(r.busy, s)
		if it.msg.Kind == MsgResyncData {
			r.issue(&io{kind: ioResyncWrite, msg: it.msg, buf: BufRef{RecvBuf, it.buf}}, Write, s)
			continue
		}
		op, buf := Write, BufRef{RecvBuf, it.buf}
		if it.msg.Kind == MsgTrim {
			op, buf = Trim, BufRef{}
		}
		r.issue(&io{kind: ioReplica, msg: it.msg, buf: buf}, op, s)
	}
	r.drainRx()
}

// --- admin ---

func (r *Replica) admin(in Input) {
	switch in.Admin {
	case CmdPrimary:
		ok, why := r.CanPromote(in.Force)
		if !ok {
			r.emit(Event{Kind: Refused, Reason: "primary refused: " + why})
			return
		}
		if r.role != Primary {
			r.promote(r.primarySince)
		}
	case CmdSecondary:
		r.demote("operator: secondary")
	case CmdConnect:
		if in.DiscardMyData && r.role == Primary {
			r.emit(Event{Kind: Refused, Reason: "connect --discard-my-data refused: this node is Primary; demote it first"})
			return
		}
		r.discardMine = in.DiscardMyData
		if !r.wantLink {
			r.wantLink = true
			r.setConn(Connecting, "operator: connect")
			r.emitWantLink()
		}
	case CmdDisconnect:
		r.disconnect()
	case CmdVerify:
		if r.conn != Connected || r.disk != UpToDate || r.pdisk != UpToDate {
			r.emit(Event{Kind: Refused, Reason: fmt.Sprintf("verify refused: needs Connected with both disks UpToDate (connection %v, disks %v/%v)", r.conn, r.disk, r.pdisk)})
			return
		}
		r.verifyRunning = true
		r.verifyPos = 0
		r.verifyFound = 0
		r.setConn(VerifySource, "operator: verify")
	case CmdInvalidate:
		if r.role == Primary {
			r.emit(Event{Kind: Refused, Reason: "invalidate refused: this node is Primary"})
			return
		}
		if !r.usableDisk() {
			r.emit(Event{Kind: Refused, Reason: "invalidate refused: no local disk"})
			return
		}
		r.bm.SetAll()
		r.flags &^= meta.Consistent
		r.setDisk(Inconsistent, "operator: invalidate")
		r.persist()
		if r.link != 0 {
			// Renegotiate: the handshake makes us the target.
			r.linkLost("invalidate: reconnecting to resync")
		}
	case CmdDetach:
		if r.role == Primary && !(r.conn.Linked() && r.pdisk == UpToDate) {
			r.emit(Event{Kind: Refused, Reason: "detach refused: this Primary has no connected UpToDate peer to serve I/O"})
			return
		}
		r.emit(Event{Kind: IOFailed, Reason: "operator: detach"})
		r.detach()
	case CmdPauseSync:
		if r.conn == SyncTarget || r.conn == SyncSource {
			r.syncPaused = true
			r.setConn(PausedSync, "operator: pause-sync")
		}
	case CmdResumeSync:
		if r.conn == PausedSync {
			r.syncPaused = false
			if r.syncTarget {
				r.setConn(SyncTarget, "operator: resume-sync")
			} else {
				r.setConn(SyncSource, "operator: resume-sync")
			}
		}
	}
}

func (r *Replica) disconnect() {
	r.wantLink = false
	if r.link != 0 {
		r.linkLost("disconnected")
	}
	r.setConn(StandAlone, "disconnected")
	r.emitWantLink()
}

// Debug describes the replica's internal progress in one line, for a
// violation report or `tandem status --verbose`: what a stuck resync or a
// suspended request is waiting for.
func (r *Replica) Debug() string {
	return fmt.Sprintf("role=%v disk=%v conn=%v peer=%v/%v gen=%v oos=%d link=%d hello=%v/%v bitmap-wait=%v "+
		"sync{target=%v pos=%d inflight=%d finishing=%v paused=%v tokens=%.0f} meta-busy=%v suspended=%v "+
		"reqs=%d ios=%d rxq=%d rx-inflight=%d busy=%d blocked=%d blocked-sync=%d deferred=%d src-reading=%d tl=%d",
		r.role, r.disk, r.conn, r.prole, r.pdisk, r.gen, r.bm.Count(), r.link, r.helloSent, r.haveHello, r.awaitBitmap,
		r.syncTarget, r.syncPos, r.syncInflight, r.syncFinishing, r.syncPaused, r.syncTokens, r.metaBusy, r.suspended,
		len(r.reqs), len(r.ios), len(r.rxq), r.rxInflight, len(r.busy), len(r.blocked), len(r.blockedSync),
		len(r.deferred), len(r.srcReading), len(r.tl))
}
