package meta

import (
	"slices"
	"testing"

	"pgregory.net/rapid"
)

type begin struct {
	hot     bool
	evicted uint32
	ok      bool
}

func doBegin(a *ActivityLog, e uint32) begin {
	h, ev, ok := a.Begin(e)
	return begin{h, ev, ok}
}

func TestActivityLogLRU(t *testing.T) {
	a := NewActivityLog(3)
	if a.Slots() != 3 || len(a.Extents()) != 0 || a.InFlight() != 0 {
		t.Fatal("new log not empty")
	}
	// Cold extents fill the free slots without evicting anything.
	for _, e := range []uint32{10, 20, 30} {
		if got := doBegin(a, e); got != (begin{false, NoExtent, true}) {
			t.Fatalf("Begin(%d) = %+v", e, got)
		}
	}
	if got := a.Extents(); !slices.Equal(got, []uint32{10, 20, 30}) || a.Pending() != 3 || a.InFlight() != 3 {
		t.Fatalf("Extents %v Pending %d InFlight %d", got, a.Pending(), a.InFlight())
	}
	// Pending, not committed: a second write must not be issued early.
	if got := doBegin(a, 20); got != (begin{false, NoExtent, true}) {
		t.Fatalf("Begin on a pending extent = %+v", got)
	}
	a.Commit([]uint32{10, 20, 30, 99})
	if a.Pending() != 0 {
		t.Fatal("Commit left pending extents")
	}
	if got := doBegin(a, 20); got != (begin{true, NoExtent, true}) {
		t.Fatalf("Begin on a committed extent = %+v", got)
	}
	if a.InFlight() != 5 {
		t.Fatalf("InFlight %d", a.InFlight())
	}
	// Every slot busy: no room.
	if got := doBegin(a, 40); got != (begin{false, NoExtent, false}) {
		t.Fatalf("Begin with all slots busy = %+v", got)
	}
	if a.Hot(40) || a.InFlight() != 5 {
		t.Fatal("a refused Begin changed the log")
	}
	// Idle in the order 30, 10; 20 still has 3 writes in flight.
	a.End(30)
	a.End(10)
	a.End(20)
	if got := doBegin(a, 40); got != (begin{false, 30, true}) {
		t.Fatalf("Begin(40) = %+v, want 30 evicted (least recently used idle)", got)
	}
	if got := doBegin(a, 50); got != (begin{false, 10, true}) {
		t.Fatalf("Begin(50) = %+v, want 10 evicted", got)
	}
	// 20, 40 and 50 are busy now.
	if got := doBegin(a, 60); got.ok {
		t.Fatalf("Begin(60) = %+v, want no room (20 has writes in flight)", got)
	}
	a.End(20)
	a.End(20)
	if got := doBegin(a, 60); got != (begin{false, 20, true}) {
		t.Fatalf("Begin(60) = %+v, want 20 evicted once idle", got)
	}
	// Slot order: 40 took 30's slot, 50 took 10's, 60 took 20's.
	if got := a.Extents(); !slices.Equal(got, []uint32{50, 60, 40}) {
		t.Fatalf("Extents %v", got)
	}
	if !a.Hot(40) || a.Hot(30) {
		t.Fatal("Hot")
	}
	// Using an idle extent makes it most recently used again.
	for _, e := range []uint32{40, 50, 60} {
		a.End(e)
	}
	a.Commit(a.Extents())
	if got := doBegin(a, 40); !got.hot {
		t.Fatal("40 not hot")
	}
	a.End(40)
	if got := doBegin(a, 70); got.evicted != 50 {
		t.Fatalf("Begin(70) evicted %d, want 50", got.evicted)
	}
	a.Clear()
	if len(a.Extents()) != 0 || a.InFlight() != 0 || a.Hot(40) {
		t.Fatal("Clear")
	}
}

func TestActivityLogLoad(t *testing.T) {
	a := NewActivityLog(4)
	a.Begin(1)
	a.Load([]uint32{7, 3, 5})
	if got := a.Extents(); !slices.Equal(got, []uint32{7, 3, 5}) || a.InFlight() != 0 || a.Pending() != 0 {
		t.Fatalf("after Load: %v, InFlight %d, Pending %d", got, a.InFlight(), a.Pending())
	}
	if a.Hot(1) {
		t.Fatal("Load kept an old extent")
	}
	// Loaded extents are committed.
	if got := doBegin(a, 3); got != (begin{true, NoExtent, true}) {
		t.Fatalf("Begin(3) after Load = %+v", got)
	}
	a.End(3)
	// The free slot first, then loaded extents least recently used first in
	// slot order: 7, 5, then 3 (just used).
	for _, want := range []uint32{NoExtent, 7, 5, 3} {
		e := 100 + want%100
		got := doBegin(a, e)
		a.End(e)
		if got.evicted != want || !got.ok {
			t.Fatalf("Begin(%d) = %+v, want %d evicted", e, got, want)
		}
	}
	b := NewActivityLog(4)
	b.Load(a.Extents())
	if !slices.Equal(b.Extents(), a.Extents()) {
		t.Fatal("Load/Extents round trip")
	}
	// Extents returns a fresh slice.
	x := b.Extents()
	x[0] = 12345
	if b.Extents()[0] == 12345 {
		t.Fatal("Extents aliases the log")
	}
	for _, bad := range [][]uint32{{1, 2, 3, 4, 5}, {1, 1}, {NoExtent}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Load(%v) did not panic", bad)
				}
			}()
			b.Load(bad)
		}()
	}
}

func TestActivityLogMisuse(t *testing.T) {
	for _, f := range []func(){
		func() { NewActivityLog(0) },
		func() { NewActivityLog(MaxALSlots + 1) },
		func() { NewActivityLog(2).End(1) },
		func() { a := NewActivityLog(2); a.Begin(1); a.End(1); a.End(1) },
		func() { NewActivityLog(2).Begin(NoExtent) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		}()
	}
}

// alModel is an obviously correct activity log: linear scans, recency
// stamps.
type alModel struct {
	ext       []uint32
	busy      []int
	committed []bool
	stamp     []int // when the slot last became idle
	now       int
}

func newALModel(slots int) *alModel {
	m := &alModel{ext: make([]uint32, slots), busy: make([]int, slots), committed: make([]bool, slots), stamp: make([]int, slots)}
	for i := range m.ext {
		m.ext[i] = NoExtent
	}
	return m
}

func (m *alModel) find(e uint32) int { return slices.Index(m.ext, e) }

func (m *alModel) begin(e uint32) begin {
	if s := m.find(e); s >= 0 {
		m.busy[s]++
		return begin{m.committed[s], NoExtent, true}
	}
	victim := -1
	for s := range m.ext {
		if m.ext[s] == NoExtent {
			victim = s
			break
		}
	}
	if victim < 0 {
		for s := range m.ext {
			if m.busy[s] == 0 && (victim < 0 || m.stamp[s] < m.stamp[victim]) {
				victim = s
			}
		}
	}
	if victim < 0 {
		return begin{false, NoExtent, false}
	}
	ev := m.ext[victim]
	m.ext[victim], m.busy[victim], m.committed[victim] = e, 1, false
	return begin{false, ev, true}
}

func (m *alModel) end(e uint32) {
	s := m.find(e)
	m.busy[s]--
	if m.busy[s] == 0 {
		m.now++
		m.stamp[s] = m.now
	}
}

func TestActivityLogModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		slots := rapid.IntRange(1, 6).Draw(t, "slots")
		a, m := NewActivityLog(slots), newALModel(slots)
		ext := rapid.Uint32Range(0, 10)
		var inflight []uint32 // writes begun and not ended, in begin order
		for range rapid.IntRange(0, 100).Draw(t, "steps") {
			switch rapid.IntRange(0, 4).Draw(t, "op") {
			case 0, 1:
				e := ext.Draw(t, "e")
				got, want := doBegin(a, e), m.begin(e)
				if got != want {
					t.Fatalf("Begin(%d) = %+v, model %+v", e, got, want)
				}
				if got.ok {
					inflight = append(inflight, e)
				}
			case 2:
				if len(inflight) > 0 {
					i := rapid.IntRange(0, len(inflight)-1).Draw(t, "end")
					a.End(inflight[i])
					m.end(inflight[i])
					inflight = slices.Delete(inflight, i, i+1)
				}
			case 3:
				snap := a.Extents()
				a.Commit(snap)
				for s, e := range m.ext {
					if e != NoExtent {
						m.committed[s] = true
					}
				}
			case 4:
				if len(inflight) == 0 && rapid.Bool().Draw(t, "reload") {
					snap := a.Extents()
					a.Load(snap)
					m = newALModel(slots)
					for i, e := range snap {
						m.ext[i], m.committed[i], m.stamp[i] = e, true, i-len(snap)
					}
				}
			}
			if a.InFlight() != len(inflight) {
				t.Fatalf("InFlight %d, want %d", a.InFlight(), len(inflight))
			}
			var want []uint32
			for _, e := range m.ext {
				if e != NoExtent {
					want = append(want, e)
				}
			}
			if got := a.Extents(); !slices.Equal(got, want) {
				t.Fatalf("Extents %v, model %v", got, want)
			}
		}
	})
}
