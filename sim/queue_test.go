package sim

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestQueueOrderAndTies(t *testing.T) {
	type ev struct {
		at time.Duration
		id int
	}
	tests := []struct {
		name string
		push []ev
		want []int // ids in pop order
	}{
		{"empty", nil, nil},
		{"one", []ev{{5, 0}}, []int{0}},
		{"sorted", []ev{{1, 0}, {2, 1}, {3, 2}}, []int{0, 1, 2}},
		{"reversed", []ev{{3, 0}, {2, 1}, {1, 2}}, []int{2, 1, 0}},
		{"all ties pop in push order", []ev{{7, 0}, {7, 1}, {7, 2}, {7, 3}, {7, 4}, {7, 5}}, []int{0, 1, 2, 3, 4, 5}},
		{"ties interleaved", []ev{{2, 0}, {1, 1}, {2, 2}, {1, 3}, {0, 4}, {2, 5}, {1, 6}}, []int{4, 1, 3, 6, 0, 2, 5}},
		{"negative instants", []ev{{0, 0}, {-1, 1}, {-1, 2}}, []int{1, 2, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var q Queue[int]
			for _, e := range tc.push {
				q.Push(e.at, e.id)
			}
			if q.Len() != len(tc.push) {
				t.Fatalf("Len = %d", q.Len())
			}
			var got []int
			for {
				pat, pok := q.PeekAt()
				at, id, ok := q.Pop()
				if ok != pok || at != pat {
					t.Fatalf("PeekAt (%v,%v) != Pop (%v,%v)", pat, pok, at, ok)
				}
				if !ok {
					break
				}
				got = append(got, id)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("pop order %v, want %v", got, tc.want)
			}
		})
	}
}

// TestQueueRandomized checks against a stable sort over many interleaved
// pushes and pops with heavy ties.
func TestQueueRandomized(t *testing.T) {
	type ev struct {
		at  time.Duration
		seq int
	}
	r := NewRand(11)
	var q Queue[ev]
	var model []ev // kept sorted by (at, seq)
	seq := 0
	for step := 0; step < 200000; step++ {
		if r.Intn(3) != 0 || len(model) == 0 {
			e := ev{time.Duration(r.Intn(50)), seq}
			seq++
			q.Push(e.at, e)
			i, _ := slices.BinarySearchFunc(model, e, func(a, b ev) int {
				if a.at != b.at {
					return int(a.at - b.at)
				}
				return a.seq - b.seq
			})
			model = slices.Insert(model, i, e)
		} else {
			at, e, ok := q.Pop()
			if !ok || at != model[0].at || e != model[0] {
				t.Fatalf("step %d: popped %v %v %v, want %v", step, at, e, ok, model[0])
			}
			model = model[1:]
		}
		if q.Len() != len(model) {
			t.Fatalf("step %d: Len %d, want %d", step, q.Len(), len(model))
		}
	}
}

func TestQueueReleasesAndResets(t *testing.T) {
	var q Queue[*int]
	x := new(int)
	q.Push(1, x)
	q.Push(2, x)
	q.Pop()
	if q.h[:2][1].e != nil {
		t.Error("popped slot still references its event")
	}
	q.Reset()
	if q.Len() != 0 || cap(q.h) == 0 {
		t.Fatalf("Reset: len %d cap %d", q.Len(), cap(q.h))
	}
	if _, _, ok := q.Pop(); ok {
		t.Fatal("Pop after Reset")
	}
	// Ties after Reset behave as in a fresh queue.
	q.Push(3, nil)
	if q.h[0].seq != 0 {
		t.Error("Reset did not restart the sequence")
	}
}

func TestQueueNoAllocSteadyState(t *testing.T) {
	type event struct {
		kind int
		node int
		data [4]uint64
	}
	var q Queue[event]
	r := NewRand(1)
	for i := 0; i < 1024; i++ {
		q.Push(time.Duration(r.Intn(1e6)), event{kind: i})
	}
	allocs := testing.AllocsPerRun(1000, func() {
		at, e, _ := q.Pop()
		q.Push(at+time.Duration(r.Intn(1e6)), e)
	})
	if allocs != 0 {
		t.Errorf("steady-state Pop+Push allocates %v times", allocs)
	}
}

// BenchmarkQueue measures one Pop plus one Push at a steady size, the
// simulator's inner loop, for a realistic event struct.
func BenchmarkQueue(b *testing.B) {
	type event struct {
		kind int
		node int
		data [4]uint64
	}
	for _, size := range []int{16, 1024, 65536} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			var q Queue[event]
			r := NewRand(1)
			for i := 0; i < size; i++ {
				q.Push(time.Duration(r.Intn(1e9)), event{kind: i})
			}
			b.ReportAllocs()
			for b.Loop() {
				at, e, _ := q.Pop()
				q.Push(at+time.Duration(r.Intn(1e9)), e)
			}
		})
	}
}
