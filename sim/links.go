package sim

import (
	"math"
	"math/bits"
	"time"
)

// LinkParams describe one direction of one network path. A symmetric path is
// two LinkParams with the same values; a one-way partition sets Down on one
// of them only.
//
// The latency of a delivered copy is LatencyMin + Exp(LatencyMean-LatencyMin),
// clamped to LatencyMax: a hard floor (propagation, serialization) plus an
// exponential queueing tail, whose mean overall is LatencyMean when the cap is
// generous. Clamping (rather than redrawing) keeps the number of draws per
// packet fixed; it piles the cut-off tail mass onto LatencyMax, so set the cap
// well above the mean (several times LatencyMean-LatencyMin) unless that atom
// is wanted. LatencyMax <= 0 means no cap; a cap below the floor acts as the
// floor. Even without Reorder, independent exponential latencies let close
// packets overtake each other, as on a real network.
type LinkParams struct {
	LatencyMin   time.Duration // floor of the latency
	LatencyMean  time.Duration // mean latency; LatencyMean-LatencyMin is the mean of the exponential tail (<= LatencyMin: constant latency)
	LatencyMax   time.Duration // cap on the latency (before any reorder delay); <= 0: no cap
	Loss         float64       // probability a packet is dropped
	Duplicate    float64       // probability a delivered packet is delivered twice (second copy with its own latency and reorder draw)
	Reorder      float64       // probability a copy gets an extra delay uniform in [0, ReorderDelay], so it may overtake/be overtaken
	ReorderDelay time.Duration // upper bound of the reorder delay
	Down         bool          // partitioned: nothing passes in this direction
}

// latency draws one copy's latency (no reorder).
func (l *LinkParams) latency(r *Rand) time.Duration {
	d := l.LatencyMin + r.Exp(l.LatencyMean-l.LatencyMin)
	if l.LatencyMax > 0 && d > l.LatencyMax {
		d = max(l.LatencyMax, l.LatencyMin)
	}
	return d
}

// Latency draws a latency for a stream (TCP) message: loss shows up as
// delay there, and order is kept by the caller.
func (l *LinkParams) Latency(r *Rand) time.Duration { return l.latency(r) }

// arrival is one copy's delivery instant: latency plus the optional reorder
// delay.
func (l *LinkParams) arrival(now time.Duration, r *Rand) time.Duration {
	t := now + l.latency(r)
	if r.Chance(l.Reorder) {
		t += r.Between(0, l.ReorderDelay)
	}
	return t
}

// Deliver decides the fate of one packet sent at now and appends its delivery
// instants (0, 1 or 2 of them) to buf, which it returns; pass buf[:0] of a
// reused slice to avoid allocating. Draw order is fixed (loss, then each
// copy's latency and reorder, then duplication), and a Down link draws
// nothing, so a seed replays exactly.
func (l *LinkParams) Deliver(now time.Duration, r *Rand, buf []time.Duration) []time.Duration {
	if l.Down || r.Chance(l.Loss) {
		return buf
	}
	buf = append(buf, l.arrival(now, r))
	if r.Chance(l.Duplicate) {
		buf = append(buf, l.arrival(now, r))
	}
	return buf
}

// SerialLine is a null-modem cable: a baud-limited byte stream in each
// direction (10 bits per byte on the wire, 8N1). Direction 0 carries bytes
// from end A to end B, direction 1 from B to A; the two are independent (full
// duplex), but within one direction frames queue behind each other, so a slow
// baud delays heartbeats realistically.
//
// Counters are per direction and count frames, except CorruptedBytes.
type SerialLine struct {
	Baud         int           // bits per second; must be > 0
	ByteError    float64       // per-byte probability of a corrupted byte (noise): one random bit of it flips
	Cut          bool          // cable cut: nothing passes either way
	WriteTimeout time.Duration // a write that would wait longer than this for the line to drain is dropped and counted; <= 0: wait forever

	busy [2]time.Duration // instant each direction finishes sending what is queued

	Sent           [2]uint64 // frames accepted onto the line
	Corrupted      [2]uint64 // accepted frames with at least one corrupted byte
	CorruptedBytes [2]uint64 // corrupted bytes in total
	DroppedCut     [2]uint64 // frames written while the cable was cut
	DroppedTimeout [2]uint64 // frames dropped because the line did not drain within WriteTimeout ("no connection or bad cable?")
}

// BusyUntil returns the instant direction dir finishes sending what is already
// queued (in the past when the line is idle).
func (s *SerialLine) BusyUntil(dir int) time.Duration { return s.busy[dir] }

// ByteTime returns the time n bytes take on the wire at s.Baud (10 bits per
// byte), rounded up to the nanosecond: 60 bytes at 19200 baud take 31.25 ms.
func (s *SerialLine) ByteTime(n int) time.Duration {
	if s.Baud <= 0 {
		panic("sim: SerialLine.Baud must be > 0")
	}
	if n <= 0 {
		return 0
	}
	hi, lo := bits.Mul64(uint64(n), 10*uint64(time.Second))
	baud := uint64(s.Baud)
	if hi >= baud {
		return maxDuration
	}
	q, rem := bits.Div64(hi, lo, baud)
	if rem != 0 {
		q++
	}
	if q > uint64(maxDuration) {
		return maxDuration
	}
	return time.Duration(q)
}

// Transmit queues frame (already framed bytes) in direction dir (0: end A to
// B, 1: B to A) at now. It returns the instant the last byte arrives and the
// bytes as received — a copy with noise applied (bit flips) written into
// out[:0], so received aliases out when it has room — or ok=false if the cable
// is cut or the write timed out (a dropped frame does not occupy the line).
// Bytes queue behind earlier frames in the same direction (busy-until).
//
// Cut is checked at write time only: a caller that wants frames in flight to
// be lost when the cable is cut must check Cut again at arrival.
func (s *SerialLine) Transmit(now time.Duration, dir int, frame []byte, r *Rand, out []byte) (arrive time.Duration, received []byte, ok bool) {
	if s.Cut {
		s.DroppedCut[dir]++
		return 0, out[:0], false
	}
	start := max(now, s.busy[dir])
	if s.WriteTimeout > 0 && start-now > s.WriteTimeout {
		s.DroppedTimeout[dir]++
		return 0, out[:0], false
	}
	arrive = start + s.ByteTime(len(frame))
	s.busy[dir] = arrive
	s.Sent[dir]++
	received = append(out[:0], frame...)
	if n := corrupt(received, s.ByteError, r); n > 0 {
		s.Corrupted[dir]++
		s.CorruptedBytes[dir] += uint64(n)
	}
	return arrive, received, true
}

// corrupt flips one random bit in each byte of b independently with
// probability p, and returns how many bytes it corrupted. Instead of one draw
// per byte it draws the geometric gap to the next corrupted byte, so a clean
// 60-byte frame costs one draw rather than sixty; the distribution is the
// same.
func corrupt(b []byte, p float64, r *Rand) int {
	if !(p > 0) || len(b) == 0 {
		return 0
	}
	if p >= 1 {
		for i := range b {
			b[i] ^= 1 << (r.Uint64() >> 61)
		}
		return len(b)
	}
	lq := math.Log1p(-p) // log(1-p) < 0
	n := 0
	i := -1
	for {
		// Gap ~ Geometric(p): number of clean bytes before the next bad one.
		g := math.Floor(math.Log(1-r.Float64()) / lq)
		if g >= float64(len(b)-i-1) {
			return n
		}
		i += int(g) + 1
		b[i] ^= 1 << (r.Uint64() >> 61)
		n++
	}
}
