package sim

import (
	"math"
	"math/bits"
	"time"
)

// Rand is a small, fast, seedable PRNG: xoshiro256** whose state is filled by
// splitmix64 from a 64-bit seed. Every random choice of a run derives from one
// root seed, so a seed names a whole run and replays it exactly.
//
// It is deliberately not math/rand: its algorithm and stream are fixed here, so
// traces stay byte-identical across Go releases. A Rand is not safe for
// concurrent use (the simulator is single-threaded anyway).
type Rand struct {
	s0, s1, s2, s3 uint64
	seed           uint64 // kept only so Fork can derive children without drawing
}

// golden is 2^64/phi, the splitmix64 increment.
const golden = 0x9e3779b97f4a7c15

// mix64 is the splitmix64 finalizer: a bijective avalanche of x.
func mix64(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// NewRand returns a generator whose whole sequence is determined by seed.
func NewRand(seed uint64) *Rand {
	r := &Rand{}
	r.Seed(seed)
	return r
}

// Seed resets r to the state NewRand(seed) would have, without allocating.
func (r *Rand) Seed(seed uint64) {
	// Four consecutive splitmix64 outputs are distinct images of distinct
	// inputs under a bijection, so they are never all zero (the one state
	// xoshiro must avoid).
	x := seed
	x += golden
	r.s0 = mix64(x)
	x += golden
	r.s1 = mix64(x)
	x += golden
	r.s2 = mix64(x)
	x += golden
	r.s3 = mix64(x)
	r.seed = seed
}

// Uint64 returns 64 uniformly random bits (xoshiro256**).
func (r *Rand) Uint64() uint64 {
	res := bits.RotateLeft64(r.s1*5, 7) * 9
	t := r.s1 << 17
	r.s2 ^= r.s0
	r.s3 ^= r.s1
	r.s1 ^= r.s2
	r.s0 ^= r.s3
	r.s2 ^= t
	r.s3 = bits.RotateLeft64(r.s3, 45)
	return res
}

// uint64n returns a uniform value in [0,n) for n>0, without modulo bias
// (Lemire's multiply-and-reject; the rejection branch is rarely taken).
func (r *Rand) uint64n(n uint64) uint64 {
	hi, lo := bits.Mul64(r.Uint64(), n)
	if lo < n {
		thresh := -n % n
		for lo < thresh {
			hi, lo = bits.Mul64(r.Uint64(), n)
		}
	}
	return hi
}

// Intn returns a uniform int in [0,n), unbiased. It panics if n <= 0, since
// that is always a bug in the caller.
func (r *Rand) Intn(n int) int {
	if n <= 0 {
		panic("sim: Rand.Intn with n <= 0")
	}
	return int(r.uint64n(uint64(n)))
}

// Float64 returns a uniform float64 in [0,1) with 53 bits of precision.
func (r *Rand) Float64() float64 {
	return float64(r.Uint64()>>11) * 0x1p-53
}

// Chance reports true with probability p. For p <= 0 (never) and p >= 1
// (always) it consumes no draw: a fault rate of 0 costs nothing, and the
// outcome needs no randomness. Note that this means changing a probability
// from 0 to non-zero shifts the rest of the stream — which is fine, since it
// changes the run anyway. NaN counts as 0.
func (r *Rand) Chance(p float64) bool {
	if !(p > 0) {
		return false
	}
	if p >= 1 {
		return true
	}
	return r.Float64() < p
}

// Between returns a uniform duration in [lo,hi], both ends included, so that
// Between(x,x) is x. If hi < lo it returns lo without drawing.
func (r *Rand) Between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	span := uint64(hi) - uint64(lo) + 1 // exact even across sign, < 2^64 unless full range
	if span == 0 {
		return time.Duration(r.Uint64())
	}
	return lo + time.Duration(r.uint64n(span))
}

// Exp returns an exponentially distributed duration with the given mean
// (inverse-CDF method, one draw). A mean <= 0 returns 0 without drawing.
// The result saturates at the largest Duration rather than overflowing.
func (r *Rand) Exp(mean time.Duration) time.Duration {
	if mean <= 0 {
		return 0
	}
	// 1-U is in (0,1], so the logarithm is finite: the result is at most
	// about 36.7 means.
	f := -math.Log(1-r.Float64()) * float64(mean)
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(f)
}

// Fork returns an independent child generator derived from r's seed and
// stream, without consuming anything from r: adding a new consumer (a new
// disk, a new link) does not perturb the draws of existing ones. The same
// (seed, stream) always gives the same child, and children of children are
// order-sensitive (Fork(a).Fork(b) differs from Fork(b).Fork(a)).
func (r *Rand) Fork(stream uint64) *Rand {
	return NewRand(mix64(r.seed ^ mix64(stream+golden)))
}
