package sim

import (
	"math"
	"math/bits"
	"time"

	"tandem/internal/proto"
)

// ppmScale is the rate denominator: a clock with drift d ppm advances
// (ppmScale+d) local nanoseconds per ppmScale global nanoseconds.
const ppmScale = 1_000_000

// maxDuration stands for "never" on the global timeline, as proto.Never does
// on a node's.
const maxDuration = time.Duration(math.MaxInt64)

// Clock is one simulated machine's clocks as functions of global simulated
// time: a monotonic clock (proto.Time, what the node's timers and deadtime use)
// that runs at a drifted rate, and a wall clock that is the monotonic reading
// plus an offset.
//
// The monotonic clock never jumps: it is continuous and non-decreasing in
// global time even when the drift changes. That is the point of it — real
// nodes must measure deadtime on CLOCK_MONOTONIC, because an NTP step or an
// operator's `date -s` on the wall clock would otherwise look like a peer
// that went silent (or one that spoke from the future). Wall-clock steps are
// therefore modelled separately (JumpWall) and only reach log timestamps.
//
// The mapping is piecewise linear: from the base point (baseG, baseL) on,
// Local(g) = baseL + floor((g-baseG) * (1e6+drift) / 1e6), computed exactly
// with 128-bit intermediates so hours of time at large drifts cannot overflow.
// Results saturate at proto.Never / the largest Duration instead of wrapping.
type Clock struct {
	baseG time.Duration
	baseL proto.Time
	ppm   int64
	num   uint64 // ppmScale + ppm, always > 0
	wall  time.Duration
}

// rateNum validates a drift and returns the rate numerator. A rate <= 0 would
// make the clock stand still or run backwards, which no monotonic clock does.
func rateNum(driftPPM int64) uint64 {
	if driftPPM <= -ppmScale {
		panic("sim: clock drift must be > -1e6 ppm")
	}
	return uint64(ppmScale + driftPPM)
}

// NewClock returns a clock that reads local at global instant global and runs
// at rate (1e6+driftPPM)/1e6 from then on. driftPPM must be > -1e6. The wall
// clock starts equal to the monotonic one.
func NewClock(global time.Duration, local proto.Time, driftPPM int64) *Clock {
	return &Clock{baseG: global, baseL: local, ppm: driftPPM, num: rateNum(driftPPM)}
}

// Local returns the monotonic reading at global instant global. It is exact
// (floor of the rational rate) and non-decreasing in global. Instants before
// the current base read the base value: the simulator only moves forward, and
// clamping keeps the clock from ever appearing to run backwards.
func (c *Clock) Local(global time.Duration) proto.Time {
	if global <= c.baseG {
		return c.baseL
	}
	dg := uint64(global) - uint64(c.baseG) // true difference, < 2^64
	hi, lo := bits.Mul64(dg, c.num)
	if hi >= ppmScale { // quotient would not fit in 64 bits
		return proto.Never
	}
	q, _ := bits.Div64(hi, lo, ppmScale)
	if q >= uint64(proto.Never)-uint64(c.baseL) {
		return proto.Never
	}
	return c.baseL + proto.Time(q)
}

// GlobalAt returns the earliest global instant g with Local(g) >= local: when
// a node arms a timer for its own time local, the simulator schedules it at
// GlobalAt(local). For local at or before the current base it returns the base
// instant (the timer is already due). proto.Never, and any reading not
// reached within the Duration range, map to the largest Duration ("never").
func (c *Clock) GlobalAt(local proto.Time) time.Duration {
	if local <= c.baseL {
		return c.baseG
	}
	if local == proto.Never {
		return maxDuration
	}
	dl := uint64(local) - uint64(c.baseL)
	// Smallest dg with floor(dg*num/1e6) >= dl, i.e. dg*num >= dl*1e6:
	// dg = ceil(dl*1e6/num).
	hi, lo := bits.Mul64(dl, ppmScale)
	if hi >= c.num {
		return maxDuration
	}
	q, rem := bits.Div64(hi, lo, c.num)
	if rem != 0 {
		q++
		if q == 0 {
			return maxDuration
		}
	}
	if q >= uint64(maxDuration)-uint64(c.baseG) {
		return maxDuration
	}
	return c.baseG + time.Duration(q)
}

// SetDrift changes the rate from global instant global on. The clock is first
// rebased at global so Local stays continuous (no jump). A global before the
// current base rebases at the base instead, since readings already given out
// must not change.
func (c *Clock) SetDrift(global time.Duration, driftPPM int64) {
	num := rateNum(driftPPM)
	if global > c.baseG {
		c.baseL = c.Local(global)
		c.baseG = global
	}
	c.ppm = driftPPM
	c.num = num
}

// DriftPPM returns the current drift in parts per million.
func (c *Clock) DriftPPM() int64 { return c.ppm }

// JumpWall steps the wall clock by d (an NTP step, `date -s`). It does not
// affect Local, which is exactly what the node must be immune to.
func (c *Clock) JumpWall(d time.Duration) { c.wall += d }

// Wall returns the wall-clock reading (Local plus the accumulated steps) at
// global instant global, for log timestamps only: nothing may decide on it.
func (c *Clock) Wall(global time.Duration) time.Duration {
	return time.Duration(c.Local(global)) + c.wall
}
