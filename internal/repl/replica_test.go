package repl

import (
	"testing"
	"time"
)

// initialSync brings a fresh pair to UpToDate/UpToDate with a on top.
func initialSync(t *testing.T, w *world) {
	t.Helper()
	w.run(50 * time.Millisecond)
	if w.r[0].Conn() != Connected || w.r[0].Disk() != Inconsistent {
		t.Fatalf("fresh pair: %s", w.states())
	}
	if ok, _ := w.r[0].CanPromote(false); ok {
		t.Fatal("a fresh Inconsistent disk is promotable without --force")
	}
	w.promote(0, true)
	w.run(2 * time.Second)
	if w.r[0].Disk() != UpToDate || w.r[1].Disk() != UpToDate || w.r[1].Conn() != Connected {
		t.Fatalf("after initial sync: %s", w.states())
	}
	if !w.identical() {
		t.Fatal("disks differ after the initial sync")
	}
	// What both persist says so too: a source that kept its cleared bits
	// would resync the whole disk again after its next crash.
	w.run(time.Second)
	for i := range 2 {
		if n := w.meta[i].Bitmap.Count(); n != 0 {
			t.Fatalf("node %d persists %d blocks out of sync after the initial sync", i, n)
		}
	}
}

func TestInitialSyncAndProtocolC(t *testing.T) {
	w := newWorld(t, nil)
	initialSync(t, w)
	id := w.write(0, 10, 4, 1000)
	w.run(2 * time.Millisecond) // local write done, peer not yet
	if _, ok := w.done[id]; ok {
		t.Fatal("protocol C write completed before the peer wrote it")
	}
	w.run(10 * time.Millisecond)
	if err, ok := w.done[id]; !ok || err != OK {
		t.Fatalf("write not completed: %v %v", ok, err)
	}
	if w.disk[1][12] != 1002 {
		t.Fatalf("peer block 12 = %d", w.disk[1][12])
	}
	r := w.read(0, 10, 4)
	w.run(5 * time.Millisecond)
	if w.app[r][3] != 1003 {
		t.Fatalf("read back %v", w.app[r])
	}
}

func TestProtocolACompletesOnLocalWrite(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.Protocol = ProtocolA })
	initialSync(t, w)
	id := w.write(0, 10, 1, 77)
	w.run(1500 * time.Microsecond)
	if err, ok := w.done[id]; !ok || err != OK {
		t.Fatal("protocol A write did not complete with the local write")
	}
}

func TestBitmapResyncAfterOutage(t *testing.T) {
	w := newWorld(t, nil)
	initialSync(t, w)
	w.cut()
	w.run(time.Second) // the link times out
	if w.r[0].Conn() != Connecting {
		t.Fatalf("after cut: %s", w.states())
	}
	for k := range uint64(20) {
		w.write(0, 100+k*50, 1, 5000+k)
	}
	w.run(50 * time.Millisecond)
	if got := w.r[0].OutOfSync(); got != 20 {
		t.Fatalf("out of sync = %d, want 20", got)
	}
	before := w.r[0].Stats.ResyncBlocks
	doneBefore := w.sent[MsgResyncDone]
	w.heal()
	w.run(2 * time.Second)
	if w.r[1].Disk() != UpToDate || w.r[0].Conn() != Connected {
		t.Fatalf("after heal: %s", w.states())
	}
	if sent := w.r[0].Stats.ResyncBlocks - before; sent != 20 {
		t.Fatalf("resync sent %d blocks, want exactly the 20 dirty ones", sent)
	}
	if !w.identical() {
		t.Fatal("disks differ after resync")
	}
	// The disk (1 ms) answers faster than the link (2 ms each way): the
	// end of the resync still takes exactly one round of the three-step
	// "done", not a "done" per flush while the source's answer travels.
	if n := w.sent[MsgResyncDone] - doneBefore; n != 3 {
		t.Fatalf("%d resync-done messages for one resync, want 3", n)
	}
}

func TestSplitBrainDetectedAndDisconnect(t *testing.T) {
	w := newWorld(t, nil)
	initialSync(t, w)
	w.cut()
	w.run(time.Second)
	w.promote(1, false) // the classic: b takes over while a still runs
	w.write(0, 1, 1, 11)
	w.write(1, 2, 1, 22)
	w.run(50 * time.Millisecond)
	w.heal()
	w.run(time.Second)
	if !w.sawEvent(SplitBrain) {
		t.Fatal("no split-brain event")
	}
	if w.r[0].Conn() != StandAlone || w.r[1].Conn() != StandAlone {
		t.Fatalf("after split brain: %s", w.states())
	}
	// Manual recovery: b gives up its data.
	w.handle(1, w.r[1].Demote(w.now, "operator"))
	w.admin(1, CmdConnect, false, true)
	w.admin(0, CmdConnect, false, false)
	w.run(2 * time.Second)
	if !w.sawEvent(SplitBrainResolved) || !w.identical() || w.disk[1][1] != 11 || w.disk[1][2] != 0 {
		t.Fatalf("discard-my-data: %s, b[1]=%d b[2]=%d", w.states(), w.disk[1][1], w.disk[1][2])
	}
}

// A primary that never wrote after losing its peer started no new
// generation (DRBD 9's rule), so the other side's takeover is no split brain.
func TestIdlePrimaryIsNoSplitBrain(t *testing.T) {
	w := newWorld(t, nil)
	initialSync(t, w)
	w.cut()
	w.run(time.Second)
	w.promote(1, false)
	w.write(1, 2, 1, 22) // only b writes; a is primary but idle
	w.run(50 * time.Millisecond)
	w.handle(0, w.r[0].Demote(w.now, "test"))
	w.run(50 * time.Millisecond)
	w.heal()
	w.run(2 * time.Second)
	if w.sawEvent(SplitBrain) || w.sawEvent(SplitBrainResolved) || !w.identical() || w.disk[0][2] != 22 {
		t.Fatalf("idle primary: %s a[2]=%d", w.states(), w.disk[0][2])
	}
}

func TestDiscardLeastChanges(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.AfterSB0 = DiscardLeastChanges })
	initialSync(t, w)
	w.cut()
	w.run(time.Second)
	w.promote(1, false)
	w.write(0, 1, 1, 11)
	w.write(1, 2, 3, 22)
	w.run(50 * time.Millisecond)
	w.handle(0, w.r[0].Demote(w.now, "test"))
	w.handle(1, w.r[1].Demote(w.now, "test"))
	w.run(50 * time.Millisecond)
	w.heal()
	w.run(2 * time.Second)
	var got Event
	for _, e := range w.ev {
		if e.Kind == SplitBrainResolved {
			got = e
		}
	}
	if got.Peer != 0 || got.Blocks != 1 || len(got.Gens) != 1 {
		t.Fatalf("resolution event %+v, want node a's 1 block and 1 generation discarded", got)
	}
	if !w.identical() || w.disk[0][1] != 0 || w.disk[0][4] != 24 {
		t.Fatalf("discard-least-changes: %s a[1]=%d a[4]=%d", w.states(), w.disk[0][1], w.disk[0][4])
	}
}

func TestCrashedPrimaryResyncsActivityLog(t *testing.T) {
	w := newWorld(t, nil)
	initialSync(t, w)
	w.write(0, 5000/2, 1, 9)
	w.run(20 * time.Millisecond)
	w.crash(0)
	w.run(time.Second)
	w.boot(0)
	if !w.r[0].crashed || w.r[0].OutOfSync() == 0 {
		t.Fatalf("restart after a primary crash: crashed=%v oos=%d", w.r[0].crashed, w.r[0].OutOfSync())
	}
	w.run(3 * time.Second)
	if w.r[0].Disk() != UpToDate || w.r[0].Conn() != Connected || !w.identical() {
		t.Fatalf("after reconnect: %s", w.states())
	}
}

func TestOutdatedNeverPromotes(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.Fencing = true })
	initialSync(t, w)
	w.cut()
	w.run(time.Second)
	id := w.write(0, 3, 1, 1)
	w.run(50 * time.Millisecond)
	if _, ok := w.done[id]; ok {
		t.Fatal("fencing: a write completed before the peer was outdated")
	}
	// dopd over the heartbeat: a asks, b outdates itself, a resumes.
	w.handle(1, w.r[1].ObservePeer(w.now, true, w.r[0].WantsPeerOutdated(), false))
	if w.r[1].Disk() != Outdated {
		t.Fatalf("b did not outdate itself: %s", w.states())
	}
	if ok, _ := w.r[1].CanPromote(false); ok {
		t.Fatal("an Outdated disk is promotable")
	}
	w.handle(0, w.r[0].ObservePeer(w.now, false, false, !w.r[1].Promotable()))
	w.run(10 * time.Millisecond)
	if err, ok := w.done[id]; !ok || err != OK {
		t.Fatalf("write after the peer was outdated: %v %v", ok, err)
	}
}

func TestDetachServesFromPeer(t *testing.T) {
	w := newWorld(t, nil)
	initialSync(t, w)
	w.write(0, 7, 1, 70)
	w.run(10 * time.Millisecond)
	w.admin(0, CmdDetach, false, false)
	if w.r[0].Disk() != Diskless {
		t.Fatalf("detach: %s", w.states())
	}
	r := w.read(0, 7, 1)
	id := w.write(0, 8, 1, 80)
	w.run(20 * time.Millisecond)
	if w.done[r] != OK || w.app[r][0] != 70 {
		t.Fatalf("diskless read: %v %v", w.done[r], w.app[r])
	}
	if w.done[id] != OK || w.disk[1][8] != 80 {
		t.Fatalf("diskless write: %v peer=%d", w.done[id], w.disk[1][8])
	}
}

func TestVerifyFindsMismatch(t *testing.T) {
	w := newWorld(t, nil)
	initialSync(t, w)
	w.disk[1][42] = 999 // silent divergence
	w.disk[1][43] = 998
	w.admin(0, CmdVerify, false, false)
	w.run(3 * time.Second)
	var found uint64
	for _, e := range w.ev {
		if e.Kind == VerifyFinished {
			found = e.Blocks
		}
	}
	if found != 2 || w.r[0].OutOfSync() != 2 {
		t.Fatalf("verify found %d, oos %d; want 2", found, w.r[0].OutOfSync())
	}
	w.admin(0, CmdDisconnect, false, false)
	w.admin(1, CmdDisconnect, false, false)
	w.admin(0, CmdConnect, false, false)
	w.admin(1, CmdConnect, false, false)
	w.run(2 * time.Second)
	if !w.identical() {
		t.Fatalf("not identical after resync of verify mismatches: %s", w.states())
	}
}
