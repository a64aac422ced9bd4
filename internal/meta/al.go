package meta

import "fmt"

// NoExtent marks "no extent": an empty activity-log slot, or no eviction.
const NoExtent = ^uint32(0)

// ActivityLog is the set of "hot" extents (BlocksPerExtent blocks each) in
// which a Primary may have writes in flight. After a crash as Primary only
// these extents can differ from the peer, so only they are resynced. A write
// to an extent that is not hot needs a metadata transaction (a persist whose
// Record.AL includes the extent) to be durable BEFORE the write is issued.
//
// It has a fixed number of slots. Extents with writes in flight are pinned;
// idle ones are kept in least-recently-used order (recency = when their last
// write ended) and the least recently used idle one is evicted when a new
// extent needs a slot. Empty slots are used first, lowest slot first.
//
// Every hot extent is either committed (a durable transaction lists it:
// Load, Commit) or pending (made hot by Begin since). Begin reports hot only
// for committed extents, so a second write to an extent whose transaction is
// still in flight is not issued early. The caller calls Commit with the
// Record.AL of each persist once it is durable.
//
// Map lookups find an extent's slot; nothing iterates a map.
type ActivityLog struct {
	ext       []uint32 // per slot: the extent, or NoExtent
	busy      []uint32 // per slot: writes in flight
	committed []bool   // per slot: a durable transaction lists ext
	// The idle list: slots with no writes in flight, LRU first, as a
	// circular doubly linked list through prev/next; index len(ext) is the
	// sentinel.
	prev, next []int32
	slot       map[uint32]int32 // extent -> slot
	inflight   int
}

// MaxALSlots bounds the activity log (and NewLayout's alSlots), as DRBD's
// al-extents does.
const MaxALSlots = 65534

// NewActivityLog returns an empty activity log of slots slots (1 to
// MaxALSlots; anything else panics).
func NewActivityLog(slots int) *ActivityLog {
	if slots < 1 || slots > MaxALSlots {
		panic(fmt.Sprintf("meta: activity log of %d slots, want 1..%d", slots, MaxALSlots))
	}
	a := &ActivityLog{
		ext:       make([]uint32, slots),
		busy:      make([]uint32, slots),
		committed: make([]bool, slots),
		prev:      make([]int32, slots+1),
		next:      make([]int32, slots+1),
	}
	a.Clear()
	return a
}

// Slots is the number of slots.
func (a *ActivityLog) Slots() int { return len(a.ext) }

func (a *ActivityLog) sentinel() int32 { return int32(len(a.ext)) }

func (a *ActivityLog) unlink(s int32) {
	p, n := a.prev[s], a.next[s]
	a.next[p], a.prev[n] = n, p
}

// pushBack makes s the most recently used idle slot.
func (a *ActivityLog) pushBack(s int32) {
	z := a.sentinel()
	p := a.prev[z]
	a.next[p], a.prev[s] = s, p
	a.next[s], a.prev[z] = z, s
}

// Hot reports whether e is in the activity log, committed or pending.
func (a *ActivityLog) Hot(e uint32) bool {
	_, ok := a.slot[e]
	return ok
}

// Begin records a write starting in extent e.
//
// hot: e is hot and committed; issue the write, no transaction needed.
//
// Otherwise, if e is already hot but pending, or a slot is free, or an idle
// hot extent can be evicted (the least recently used one), e is hot (pending)
// now, ok is true, evicted is the extent it replaced (NoExtent if none), and
// the caller must issue the write only once a transaction that includes e
// (Extents after this call) is durable, then Commit it. The transaction must
// carry the current bitmap too: the evicted extent is no longer covered by
// the activity log, so its out-of-sync bits must be on disk.
//
// ok=false: every slot has writes in flight; nothing was recorded, the
// caller waits for an End and retries.
func (a *ActivityLog) Begin(e uint32) (hot bool, evicted uint32, ok bool) {
	if e == NoExtent {
		panic("meta: Begin(NoExtent)")
	}
	if s, found := a.slot[e]; found {
		if a.busy[s] == 0 {
			a.unlink(s)
		}
		a.busy[s]++
		a.inflight++
		return a.committed[s], NoExtent, true
	}
	s := a.next[a.sentinel()] // LRU idle slot; empty slots sit at the front
	if s == a.sentinel() {
		return false, NoExtent, false
	}
	a.unlink(s)
	evicted = a.ext[s]
	if evicted != NoExtent {
		delete(a.slot, evicted)
	}
	a.ext[s], a.busy[s], a.committed[s] = e, 1, false
	a.slot[e] = s
	a.inflight++
	return false, evicted, true
}

// End records that a write in e completed (or was abandoned). It panics if
// e has no write in flight.
func (a *ActivityLog) End(e uint32) {
	s, ok := a.slot[e]
	if !ok || a.busy[s] == 0 {
		panic(fmt.Sprintf("meta: End(%d) without a write in flight", e))
	}
	a.busy[s]--
	a.inflight--
	if a.busy[s] == 0 {
		a.pushBack(s)
	}
}

// Commit records that a transaction listing extents is durable: those of
// them still hot become committed. Pass the Record.AL of each persist once
// its writes are flushed.
func (a *ActivityLog) Commit(extents []uint32) {
	for _, e := range extents {
		if s, ok := a.slot[e]; ok {
			a.committed[s] = true
		}
	}
}

// Pending is the number of hot extents not yet committed: if it is not 0, a
// transaction is needed (or in flight).
func (a *ActivityLog) Pending() int {
	n := 0
	for s, e := range a.ext {
		if e != NoExtent && !a.committed[s] {
			n++
		}
	}
	return n
}

// Extents returns the hot extents, committed and pending, in slot order, in
// a fresh slice: what a transaction persists as Record.AL.
func (a *ActivityLog) Extents() []uint32 {
	out := make([]uint32, 0, len(a.slot))
	for _, e := range a.ext {
		if e != NoExtent {
			out = append(out, e)
		}
	}
	return out
}

// Load replaces the contents with extents read back from disk (after a
// restart): extents[i] goes to slot i, all committed and idle, least recently
// used first in slot order (after the empty slots). It panics on more
// extents than slots, duplicates or NoExtent; a decoded Record.AL never has
// those when the layout has as many slots as the log.
func (a *ActivityLog) Load(extents []uint32) {
	if len(extents) > len(a.ext) {
		panic(fmt.Sprintf("meta: Load of %d extents into %d slots", len(extents), len(a.ext)))
	}
	a.Clear()
	for i, e := range extents {
		if _, dup := a.slot[e]; dup || e == NoExtent {
			a.Clear()
			panic(fmt.Sprintf("meta: Load: extent %d duplicated or invalid", e))
		}
		a.ext[i], a.committed[i] = e, true
		a.slot[e] = int32(i)
	}
	// Re-thread the idle list: empty slots first, then loaded ones.
	z := a.sentinel()
	a.next[z], a.prev[z] = z, z
	for s := len(extents); s < len(a.ext); s++ {
		a.pushBack(int32(s))
	}
	for s := range extents {
		a.pushBack(int32(s))
	}
}

// Clear empties the log: every slot free, nothing in flight.
func (a *ActivityLog) Clear() {
	z := a.sentinel()
	a.next[z], a.prev[z] = z, z
	for s := range a.ext {
		a.ext[s], a.busy[s], a.committed[s] = NoExtent, 0, false
		a.pushBack(int32(s))
	}
	if a.slot == nil {
		a.slot = make(map[uint32]int32, len(a.ext))
	} else {
		clear(a.slot)
	}
	a.inflight = 0
}

// InFlight is the number of writes in flight over all extents.
func (a *ActivityLog) InFlight() int { return a.inflight }
