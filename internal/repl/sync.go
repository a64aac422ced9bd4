package repl

import (
	"fmt"

	"tandem/internal/meta"
)

// handshake runs when the peer's hello has arrived on a fresh link.
func (r *Replica) handshake() {
	p := &r.peerHello
	if p.Blocks != r.cfg.Blocks {
		r.emit(Event{Kind: Unrelated, Reason: fmt.Sprintf("the peer's data area has %d blocks, ours %d: refusing to connect", p.Blocks, r.cfg.Blocks)})
		r.disconnect()
		return
	}
	r.prole = p.Role
	me := Side{Node: r.cfg.Self, Gen: r.gen, Disk: r.disk, Role: r.role, Changes: r.bm.Count(),
		Crashed: r.crashed, Discard: r.discardMine, PrimarySince: r.primarySince}
	peer := sideOf(p)
	d, why := Decide(me, peer)
	if d == SplitBrainDetected {
		r.Stats.SplitBrains++
		v, pwhy := ResolveSplitBrain(&r.cfg, me, peer)
		switch {
		case v == NoVictim:
			r.emit(Event{Kind: SplitBrain, Blocks: me.Changes + peer.Changes,
				Reason: fmt.Sprintf("split brain: %s (this node changed %d blocks, %s changed %d); %s: staying StandAlone until an operator connects one side with --discard-my-data",
					why, me.Changes, r.name(r.cfg.Peer), peer.Changes, pwhy)})
			r.disconnect()
			return
		case v == VictimMe && r.role == Primary, v == VictimPeer && p.Role == Primary:
			r.emit(Event{Kind: SplitBrain, Reason: "split brain: the policy would discard a Primary's data; refusing: " + pwhy})
			r.disconnect()
			return
		case v == VictimMe:
			r.emit(Event{Kind: SplitBrainResolved, Peer: r.cfg.Self, Blocks: me.Changes, Gens: divergedGens(r.gen, p.Gen, r.ownGens),
				Reason: fmt.Sprintf("split brain resolved (%s): discarding the %d blocks %s changed; resync from %s",
					pwhy, me.Changes, r.name(r.cfg.Self), r.name(r.cfg.Peer))})
			d = BecomeTarget
		default:
			r.emit(Event{Kind: SplitBrainResolved, Peer: r.cfg.Peer, Blocks: peer.Changes, Gens: divergedGens(p.Gen, r.gen, nil),
				Reason: fmt.Sprintf("split brain resolved (%s): discarding the %d blocks %s changed; resync to it",
					pwhy, peer.Changes, r.name(r.cfg.Peer))})
			d = BecomeSource
		}
	}
	r.discardMine = false
	r.decision = d
	if d != Refuse {
		r.refusals = 0
	}
	if d != UnrelatedData && d != Refuse {
		// The peer follows us again, so every write reaches it: the
		// suspension for fencing has done its job.
		r.resume("the peer is connected again")
	}
	if d == NoSync || d == BecomeSource || d == FullSource {
		// The peer is back before our first write without it: it will
		// receive every write from here on, so there is no divergence to
		// mark with a new generation.
		r.newGenPending = false
	}
	switch d {
	case NoSync:
		r.setConn(Connected, why)
		pd := p.Disk
		if r.gen.Current != 0 && r.gen.Current == p.Gen.Current {
			if r.disk == Consistent && (pd == UpToDate || pd == Consistent) {
				r.setDisk(UpToDate, "connected to a peer with the same data")
			}
			if pd == Consistent && (r.disk == UpToDate || r.disk == Consistent) {
				pd = UpToDate
			}
			r.inSync()
		}
		r.setPeerDisk(pd)
	case Refuse:
		if (r.role == Primary || p.Role == Primary) && r.refusals < maxRefusals {
			// The side that must receive is still Primary: a demotion is
			// often on its way (a zombie stepping down), so try again a
			// few times before leaving it to an operator, as DRBD does
			// ("I shall become SyncTarget, but I am primary!").
			r.refusals++
			r.emit(Event{Kind: Info, Reason: fmt.Sprintf("not connecting yet: %s; retry %d of %d", why, r.refusals, maxRefusals)})
			r.linkLost("handshake refused while a Primary would be overwritten")
			return
		}
		r.refusals = 0
		r.emit(Event{Kind: Unrelated, Reason: "refusing to connect: " + why})
		r.disconnect()
	case UnrelatedData:
		r.emit(Event{Kind: Unrelated, Reason: "refusing to connect: " + why})
		r.disconnect()
	default:
		r.emit(Event{Kind: Info, Reason: fmt.Sprintf("handshake: %v (%s)", d, why)})
		r.setPeerDisk(p.Disk)
		r.awaitBitmap = true
		r.send(Msg{Kind: MsgBitmap, Bitmap: meta.AppendRuns(nil, r.bm)}, BufRef{})
	}
}

// maxRefusals bounds the handshakes retried while a Primary would be
// overwritten; then the link goes StandAlone.
const maxRefusals = 8

// divergedGens are the victim's generations the survivor never had: what a
// split-brain resolution discards. known adds those the victim remembers
// starting (a restart forgets them, the record does not).
func divergedGens(victim, survivor meta.Generations, known []meta.UUID) []meta.UUID {
	has := func(set []meta.UUID, g meta.UUID) bool {
		for _, x := range set {
			if x == g {
				return true
			}
		}
		return false
	}
	theirs := []meta.UUID{survivor.Current, survivor.Bitmap, survivor.History[0], survivor.History[1]}
	out := append([]meta.UUID(nil), known...)
	for _, g := range []meta.UUID{victim.Current, victim.Bitmap, victim.History[0], victim.History[1]} {
		if g != 0 && !has(theirs, g) && !has(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// inSync: connected and nothing out of sync; forget what tracked the
// divergence.
func (r *Replica) inSync() {
	r.ownGens = r.ownGens[:0]
	r.crashed = false
	changed := false
	if r.gen.Bitmap != 0 && r.bm.Count() == 0 {
		r.gen.History[1] = r.gen.History[0]
		r.gen.History[0] = r.gen.Bitmap
		r.gen.Bitmap = 0
		changed = true
	}
	if r.flags&(meta.PeerOutdated|meta.Outdated) != 0 && r.disk == UpToDate {
		r.flags &^= meta.PeerOutdated | meta.Outdated
		changed = true
	}
	if changed {
		r.persist()
	}
}

func (r *Replica) gotBitmap(m *Msg) {
	if !r.awaitBitmap {
		return
	}
	r.awaitBitmap = false
	peerBm, err := meta.DecodeRuns(m.Bitmap, r.cfg.Blocks)
	if err != nil {
		r.emit(Event{Kind: Unrelated, Reason: fmt.Sprintf("the peer's bitmap does not decode (%v): disconnecting", err)})
		r.linkLost("bad bitmap")
		return
	}
	r.bm.Or(peerBm)
	full := r.decision == FullSource || r.decision == FullTarget
	if full {
		r.bm.SetAll()
	}
	r.startSync(r.decision == BecomeTarget || r.decision == FullTarget, full)
}

func (r *Replica) startSync(target, full bool) {
	p := &r.peerHello
	r.syncTarget = target
	r.syncFull = full
	r.syncPos = 0
	r.syncInflight = 0
	r.syncDone = 0
	r.syncLast = r.now
	r.syncTokens = float64(r.cfg.ResyncChunk)
	r.syncFinishing = false
	r.syncDoneSent = false
	r.syncTotal = r.bm.Count()
	if target {
		r.Stats.DirtyAtStart += r.syncTotal
	}
	kind := "bitmap"
	if full {
		kind = "full"
	}
	if target {
		// The target's data is a mix until the end: Inconsistent, and its
		// current generation becomes the point the source tracks from, so
		// an interrupted resync resumes as a bitmap resync.
		from := p.Gen.Bitmap
		if from == 0 {
			from = p.Gen.Current
		}
		r.gen = meta.Generations{Current: from, History: p.Gen.History}
		r.flags &^= meta.Consistent | meta.Outdated | meta.PeerOutdated
		r.setDisk(Inconsistent, "resync target")
		r.setConn(SyncTarget, fmt.Sprintf("%s resync of %d blocks from %s", kind, r.syncTotal, r.name(r.cfg.Peer)))
		r.setPeerDisk(UpToDate)
		r.emit(Event{Kind: ResyncStarted, Blocks: r.syncTotal, Reason: fmt.Sprintf("%s resync: %d blocks from %s", kind, r.syncTotal, r.name(r.cfg.Peer))})
	} else {
		if r.gen.Bitmap == 0 {
			r.gen.Bitmap = r.gen.Current
		}
		if r.disk == Consistent {
			r.setDisk(UpToDate, "the handshake found our data the newest")
		}
		r.setConn(SyncSource, fmt.Sprintf("%s resync of %d blocks to %s", kind, r.syncTotal, r.name(r.cfg.Peer)))
		r.setPeerDisk(Inconsistent)
		r.emit(Event{Kind: ResyncStarted, Blocks: r.syncTotal, Reason: fmt.Sprintf("%s resync: %d blocks to %s", kind, r.syncTotal, r.name(r.cfg.Peer))})
	}
	r.persist()
}

// pumpSync sends resync requests from the target, within the rate and the
// in-flight bounds, in disk order.
func (r *Replica) pumpSync() {
	if !r.syncTarget || r.conn != SyncTarget || r.metaBusy || r.syncFinishing {
		r.retryDeferred()
		return
	}
	elapsed := r.now.Sub(r.syncLast)
	r.syncLast = r.now
	r.syncTokens += elapsed.Seconds() * float64(r.cfg.ResyncRate)
	burst := float64(r.cfg.ResyncRate)/10 + float64(r.cfg.ResyncChunk)
	if r.syncTokens > burst {
		r.syncTokens = burst
	}
	limit := r.cfg.ResyncInflight
	if r.rxInflight > 0 {
		limit = max(1, limit*(100-r.cfg.AppShare)/100)
	}
	for r.syncInflight < limit && r.syncTokens >= 1 {
		b, ok := r.bm.NextSet(r.syncPos)
		if !ok {
			if r.syncPos == 0 || r.syncInflight > 0 {
				break
			}
			r.syncPos = 0
			continue
		}
		n := uint32(1)
		for n < r.cfg.ResyncChunk && b+uint64(n) < r.cfg.Blocks && r.bm.Test(b+uint64(n)) {
			n++
		}
		s := span{b, n}
		r.syncPos = b + uint64(n)
		r.syncInflight++
		r.syncTokens -= float64(n)
		if r.cfg.CsumResync {
			r.issue(&io{kind: ioCsumRead, buf: BufRef{Kind: DiskBuf}}, Read, s)
		} else {
			r.send(Msg{Kind: MsgResyncReq, Block: b, Count: n}, BufRef{})
		}
	}
	if r.bm.Count() == 0 && r.syncInflight == 0 && len(r.blocked) == 0 && !r.syncDoneSent {
		r.syncFinishing = true
		r.startFlushClears()
		r.issue(&io{kind: ioSyncFlush}, Flush, span{})
	}
}

// syncFlushed: every resynced block is on stable storage at the target.
func (r *Replica) syncFlushed() {
	r.syncFinishing = false
	if !r.syncTarget || r.conn != SyncTarget {
		return
	}
	if r.bm.Count() > 0 {
		return
	}
	// Once: the source's answer ends the resync; until then another flush
	// and another "done" would only flood the link.
	r.syncDoneSent = true
	r.send(Msg{Kind: MsgResyncDone, Seq: 0}, BufRef{})
}

// gotResyncDone runs the three-step end of a resync: the target says it has
// everything (0); the source names the generation to adopt (1); the target
// adopts it and confirms (2), then the source forgets its bitmap generation.
func (r *Replica) gotResyncDone(m *Msg) {
	switch m.Seq {
	case 0:
		if r.syncTarget {
			return
		}
		r.send(Msg{Kind: MsgResyncDone, Seq: 1, Gen: r.gen}, BufRef{})
	case 1:
		if !r.syncTarget {
			return
		}
		r.gen = meta.Generations{Current: m.Gen.Current, History: m.Gen.History}
		if m.Gen.Bitmap != 0 {
			r.gen.History = [2]meta.UUID{m.Gen.Bitmap, m.Gen.History[0]}
		}
		r.flags |= meta.Consistent
		r.flags &^= meta.Outdated | meta.PeerOutdated | meta.WasPrimary
		r.syncTarget = false
		r.setDisk(UpToDate, "resync finished")
		r.setConn(Connected, "resync finished")
		r.emit(Event{Kind: ResyncFinished, Blocks: r.syncDone, Reason: fmt.Sprintf("resync finished: %d blocks received", r.syncDone)})
		r.inSync()
		r.persist()
		r.send(Msg{Kind: MsgResyncDone, Seq: 2}, BufRef{})
	case 2:
		if r.syncTarget {
			return
		}
		// The target vouches for every block: it flushed before saying so,
		// so no cleared bit needs to stay set in what we persist either.
		r.bm.ClearAll()
		r.clearsPending.ClearAll()
		r.clearsFlush.ClearAll()
		r.setConn(Connected, "resync finished")
		r.setPeerDisk(UpToDate)
		r.emit(Event{Kind: ResyncFinished, Blocks: r.syncTotal, Reason: fmt.Sprintf("resync finished: %d blocks were out of sync", r.syncTotal)})
		r.inSync()
		r.persist()
	}
}

// sourceRead answers a resync (or checksum) request. A read that overlaps a
// local application write in flight waits for it, so the target never gets
// data older than a write it has already received.
func (r *Replica) sourceRead(m Msg) {
	s := span{m.Block, m.Count}
	if !r.usableDisk() || r.disk != UpToDate {
		r.send(Msg{Kind: MsgResyncData, Block: m.Block, Count: m.Count, Err: NoData}, BufRef{})
		return
	}
	for _, q := range r.order {
		if (q.op == Write || q.op == Trim) && !q.queued && q.s.overlaps(s) {
			r.deferred = append(r.deferred, rxItem{msg: m})
			return
		}
	}
	r.srcReading = append(r.srcReading, s)
	kind := ioResyncRead
	if m.Kind == MsgCsumReq {
		kind = ioCsumSourceRead
	}
	r.issue(&io{kind: kind, msg: m, buf: BufRef{Kind: DiskBuf}}, Read, s)
}

func (r *Replica) retryDeferred() {
	if len(r.deferred) == 0 {
		return
	}
	items := r.deferred
	r.deferred = nil
	for _, it := range items {
		r.sourceRead(it.msg)
	}
}

func (r *Replica) unreading(s span) {
	for i, x := range r.srcReading {
		if x == s {
			r.srcReading = append(r.srcReading[:i], r.srcReading[i+1:]...)
			return
		}
	}
}

// targetData writes resync data; writes overlapping a replicated write in
// flight queue behind it, in arrival order.
func (r *Replica) targetData(m *Msg, buf uint64) {
	if !r.syncTarget {
		r.release(BufRef{RecvBuf, buf})
		return
	}
	if m.Err != OK {
		r.syncInflight--
		if buf != 0 {
			r.release(BufRef{RecvBuf, buf})
		}
		return
	}
	if !r.usableDisk() {
		r.syncInflight--
		r.release(BufRef{RecvBuf, buf})
		return
	}
	r.Stats.ResyncBlocks += uint64(m.Count)
	r.Stats.ResyncReceived += uint64(m.Count)
	s := span{m.Block, m.Count}
	if r.isBusy(s) || r.blockedOverlap(s) {
		r.blocked = append(r.blocked, rxItem{msg: *m, buf: buf})
		return
	}
	r.busy = append(r.busy, s)
	r.issue(&io{kind: ioResyncWrite, msg: *m, buf: BufRef{RecvBuf, buf}}, Write, s)
}

// pumpVerify drives an online verify from its initiator.
func (r *Replica) pumpVerify() {
	if !r.verifyRunning || r.conn != VerifySource {
		return
	}
	for r.verifyInflight < 4*r.cfg.ResyncInflight && r.verifyPos < r.cfg.Blocks {
		// One block per digest, so that mismatches are counted exactly.
		n := uint32(1)
		s := span{r.verifyPos, n}
		for _, q := range r.order {
			if (q.op == Write || q.op == Trim) && !q.queued && q.s.overlaps(s) {
				return
			}
		}
		r.verifyPos += uint64(n)
		r.verifyInflight++
		r.issue(&io{kind: ioVerifyRead, buf: BufRef{Kind: DiskBuf}}, Read, s)
	}
	if r.verifyPos >= r.cfg.Blocks && r.verifyInflight == 0 {
		r.verifyRunning = false
		r.send(Msg{Kind: MsgVerifyReq}, BufRef{})
		r.setConn(Connected, "online verify finished")
		r.emit(Event{Kind: VerifyFinished, Blocks: r.verifyFound,
			Reason: fmt.Sprintf("online verify finished: %d blocks out of sync (disconnect and connect to resync them)", r.verifyFound)})
		if r.verifyFound > 0 {
			r.persist()
		}
	}
}
