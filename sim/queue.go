package sim

import "time"

// Queue is a min-heap of events ordered by (At, insertion sequence): ties pop
// in push order, which makes runs deterministic (a heap alone is not stable).
//
// It is a hand-written binary heap on a slice of structs, generic over the
// event type, so pushing and popping never box an event in an interface and,
// once the slice has grown to the run's high-water mark, never allocate. The
// zero value is an empty queue ready to use.
type Queue[E any] struct {
	h   []queueItem[E]
	seq uint64 // next insertion sequence number; never reused, so ties stay FIFO
}

// queueItem is one heap slot.
type queueItem[E any] struct {
	at  time.Duration
	seq uint64
	e   E
}

// before is the heap order: earlier time first, then earlier push.
func (a *queueItem[E]) before(b *queueItem[E]) bool {
	return a.at < b.at || (a.at == b.at && a.seq < b.seq)
}

// Push schedules e at instant at. Instants in the past are allowed; they
// simply pop first.
func (q *Queue[E]) Push(at time.Duration, e E) {
	x := queueItem[E]{at: at, seq: q.seq, e: e}
	q.seq++
	q.h = append(q.h, x)
	// Sift up by moving parents down into the hole: one copy per level
	// instead of a swap.
	h := q.h
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !x.before(&h[p]) {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = x
}

// Pop removes and returns the earliest event; ok is false if the queue is
// empty.
func (q *Queue[E]) Pop() (at time.Duration, e E, ok bool) {
	h := q.h
	n := len(h) - 1
	if n < 0 {
		return 0, e, false
	}
	top := h[0]
	x := h[n]
	h[n] = queueItem[E]{} // drop references so popped events can be collected
	h = h[:n]
	q.h = h
	if n > 0 {
		i := 0
		for {
			c := 2*i + 1
			if c >= n {
				break
			}
			if c+1 < n && h[c+1].before(&h[c]) {
				c++
			}
			if !h[c].before(&x) {
				break
			}
			h[i] = h[c]
			i = c
		}
		h[i] = x
	}
	return top.at, top.e, true
}

// PeekAt returns the instant of the earliest event without removing it; ok is
// false if the queue is empty.
func (q *Queue[E]) PeekAt() (time.Duration, bool) {
	if len(q.h) == 0 {
		return 0, false
	}
	return q.h[0].at, true
}

// Len returns the number of pending events.
func (q *Queue[E]) Len() int { return len(q.h) }

// Reset empties the queue but keeps its storage for reuse (the next run of a
// seed sweep). The sequence counter restarts too, so a reset queue behaves
// exactly like a fresh one.
func (q *Queue[E]) Reset() {
	clear(q.h)
	q.h = q.h[:0]
	q.seq = 0
}
