// Package faults is the vocabulary of what can go wrong in a Tandem cluster and
// when: fault steps, schedules of them, the per-run environment (Rates), and the
// swarm generator that draws both from a Chooser. The simulator, the scenario
// language and the VM suite all speak it, so a schedule found by one can be
// replayed by the others.
//
// Everything here is deterministic: every random decision goes through a
// Chooser, so a seed (or a rapid bitstream) names a whole schedule.
package faults

import (
	"math"
	"time"

	"pgregory.net/rapid"
)

// Chooser is the source of every random decision a generator makes. The
// simulator passes a seeded PRNG; property tests pass an adapter over rapid so
// that failing schedules shrink.
//
// Generators here are written so that a Chooser answering 0 everywhere gives
// the simplest outcome (fault classes off, events never happening), because
// that is the direction rapid shrinks in.
type Chooser interface {
	Intn(n int) int   // uniform [0,n)
	Float64() float64 // [0,1)
}

// RapidChooser adapts a *rapid.T: each call draws through rapid, so a failing
// schedule shrinks like any other rapid value.
func RapidChooser(t *rapid.T) Chooser { return rapidChooser{t} }

type rapidChooser struct{ t *rapid.T }

func (r rapidChooser) Intn(n int) int {
	if n <= 0 {
		panic("faults: Intn argument must be positive")
	}
	if n == 1 {
		// Nothing to choose; not drawing keeps the bitstream short.
		return 0
	}
	return rapid.IntRange(0, n-1).Draw(r.t, "intn")
}

func (r rapidChooser) Float64() float64 {
	// rapid biases integer draws heavily towards small values (a draw over
	// [0, 2^53) is below 0.1·2^53 nine times in ten), which would leave
	// every fault class off. Two decimal digits drawn separately are only
	// mildly biased, so the leading digits spread over [0,1) and the tail
	// adds the rest. All three shrink towards 0, the quiet choice.
	hi := rapid.IntRange(0, 9).Draw(r.t, "float-digit1")
	lo := rapid.IntRange(0, 9).Draw(r.t, "float-digit2")
	tail := rapid.Uint64Range(0, 1<<46-1).Draw(r.t, "float-tail")
	return (float64(hi*10+lo) + float64(tail)/(1<<46)) / 100
}

// never is the "this does not happen" duration an exponential draw of 0 maps to.
const never = time.Duration(math.MaxInt64)

// chance is true with probability p; a Float64 of 0 (the shrink target) says no.
func chance(c Chooser, p float64) bool { return c.Float64() >= 1-p }

// expDur draws an exponential duration with the given mean, at millisecond
// resolution and at least 1ms (so Poisson loops always advance). A Float64 of 0
// gives never, so shrinking removes events instead of piling them up.
func expDur(c Chooser, mean time.Duration) time.Duration {
	u := c.Float64()
	if u <= 0 || mean <= 0 {
		return never
	}
	v := -float64(mean) * math.Log(u)
	if v >= float64(math.MaxInt64/2) {
		return never
	}
	d := time.Duration(v).Truncate(time.Millisecond)
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// logRange draws log-uniformly between mild (a Float64 of 0) and severe.
// Fault intensities span orders of magnitude, so log-uniform explores each
// decade equally.
func logRange(c Chooser, mild, severe float64) float64 {
	u := c.Float64()
	if mild <= 0 || severe <= 0 {
		return mild
	}
	return mild * math.Pow(severe/mild, u)
}

// logDur is logRange for durations, rounded to the microsecond for readable
// traces.
func logDur(c Chooser, mild, severe time.Duration) time.Duration {
	if mild <= 0 {
		mild = time.Microsecond
	}
	if severe <= 0 {
		severe = mild
	}
	d := time.Duration(logRange(c, float64(mild), float64(severe))).Round(time.Microsecond)
	if d < time.Microsecond {
		d = time.Microsecond
	}
	return d
}
