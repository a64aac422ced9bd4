package sim

import (
	"math"
	"testing"
	"time"
)

// TestRandReference pins the algorithm against the reference splitmix64 and
// xoshiro256** outputs: a change would silently re-map every recorded seed to
// a different run.
func TestRandReference(t *testing.T) {
	if got := mix64(0 + golden); got != 0xe220a8397b1dcdaf {
		t.Fatalf("splitmix64(0) = %#x", got)
	}
	r := NewRand(0)
	if r.s0 != 0xe220a8397b1dcdaf || r.s1 != 0x6e789e6aa1b965f4 || r.s2 != 0x06c45d188009454f || r.s3 != 0xf88bb8a8724c81ec {
		t.Fatalf("seed state = %#x %#x %#x %#x", r.s0, r.s1, r.s2, r.s3)
	}
	// First outputs of the reference C xoshiro256** (Blackman & Vigna) from
	// that state.
	for i, want := range []uint64{0x99ec5f36cb75f2b4, 0xbf6e1f784956452a, 0x1a5f849d4933e6e0} {
		if got := r.Uint64(); got != want {
			t.Fatalf("output %d = %#x, want %#x", i, got, want)
		}
	}
}

func TestRandDeterminism(t *testing.T) {
	for _, seed := range []uint64{0, 1, 42, 1 << 63, math.MaxUint64} {
		a, b := NewRand(seed), NewRand(seed)
		for i := 0; i < 1000; i++ {
			if x, y := a.Uint64(), b.Uint64(); x != y {
				t.Fatalf("seed %d step %d: %#x != %#x", seed, i, x, y)
			}
		}
		var c Rand
		c.Seed(seed)
		if c != *NewRand(seed) {
			t.Fatalf("Seed(%d) differs from NewRand", seed)
		}
	}
	if NewRand(1).Uint64() == NewRand(2).Uint64() {
		t.Fatal("seeds 1 and 2 start alike")
	}
}

func TestRandFork(t *testing.T) {
	const n = 64
	seq := func(r *Rand) []uint64 {
		s := make([]uint64, n)
		for i := range s {
			s[i] = r.Uint64()
		}
		return s
	}
	equal := func(a, b []uint64) bool {
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	overlap := func(a, b []uint64) bool {
		m := map[uint64]bool{}
		for _, x := range a {
			m[x] = true
		}
		for _, x := range b {
			if m[x] {
				return true
			}
		}
		return false
	}

	// Forking does not consume from the parent.
	plain := seq(NewRand(7))
	p := NewRand(7)
	p.Fork(1)
	p.Fork(2)
	if !equal(plain, seq(p)) {
		t.Fatal("Fork perturbed the parent stream")
	}
	// Fork is a function of (seed, stream), also after the parent has drawn.
	p1 := NewRand(7)
	p1.Uint64()
	if !equal(seq(NewRand(7).Fork(3)), seq(p1.Fork(3))) {
		t.Fatal("Fork depends on the parent's position")
	}
	// Different streams, seeds, parents and nesting orders are independent.
	streams := [][]uint64{
		plain,
		seq(NewRand(7).Fork(0)),
		seq(NewRand(7).Fork(1)),
		seq(NewRand(7).Fork(2)),
		seq(NewRand(8).Fork(1)),
		seq(NewRand(7).Fork(1).Fork(2)),
		seq(NewRand(7).Fork(2).Fork(1)),
	}
	for i := range streams {
		for j := i + 1; j < len(streams); j++ {
			if overlap(streams[i], streams[j]) {
				t.Errorf("streams %d and %d share values", i, j)
			}
		}
	}
	// Child streams are statistically sane: low bit balanced.
	c := NewRand(7).Fork(99)
	ones := 0
	for i := 0; i < 100000; i++ {
		ones += int(c.Uint64() & 1)
	}
	if ones < 49000 || ones > 51000 {
		t.Errorf("fork low bit ones = %d / 100000", ones)
	}
}

func TestRandIntn(t *testing.T) {
	r := NewRand(1)
	for _, n := range []int{1, 2, 3, 7, 10, 1000} {
		const per = 2000
		counts := make([]int, n)
		for i := 0; i < per*n && i < 1_000_000; i++ {
			v := r.Intn(n)
			if v < 0 || v >= n {
				t.Fatalf("Intn(%d) = %d", n, v)
			}
			counts[v]++
		}
		// Chi-square against uniform; df = n-1, mean df, sd sqrt(2df).
		total := 0
		for _, c := range counts {
			total += c
		}
		exp := float64(total) / float64(n)
		chi := 0.0
		for _, c := range counts {
			d := float64(c) - exp
			chi += d * d / exp
		}
		df := float64(n - 1)
		if chi > df+6*math.Sqrt(2*df)+10 {
			t.Errorf("Intn(%d): chi2 = %.1f, df %v", n, chi, df)
		}
	}
	// A large non-power-of-two bound where modulo bias would be visible:
	// for n = 3*2^61, P(x < 2^62) is 2/3 if uniform but 3/4 for "Uint64 % n".
	n := 3 << 61
	low := 0
	for i := 0; i < 30000; i++ {
		if r.Intn(n) < 1<<62 {
			low++
		}
	}
	if !within(low, 30000, 2.0/3) {
		t.Errorf("Intn(3<<61) below 2^62: %d / 30000, want ~20000", low)
	}
	defer func() {
		if recover() == nil {
			t.Error("Intn(0) did not panic")
		}
	}()
	r.Intn(0)
}

func TestRandFloat64Chance(t *testing.T) {
	r := NewRand(2)
	sum := 0.0
	for i := 0; i < 100000; i++ {
		f := r.Float64()
		if f < 0 || f >= 1 {
			t.Fatalf("Float64 = %v", f)
		}
		sum += f
	}
	if m := sum / 100000; math.Abs(m-0.5) > 0.005 {
		t.Errorf("Float64 mean %v", m)
	}

	// p <= 0, NaN and p >= 1 decide without drawing.
	a, b := NewRand(3), NewRand(3)
	for _, p := range []float64{0, -1, math.NaN(), 1, 2, math.Inf(1)} {
		want := p >= 1
		if got := a.Chance(p); got != want {
			t.Errorf("Chance(%v) = %v", p, got)
		}
	}
	if a.Uint64() != b.Uint64() {
		t.Error("degenerate Chance consumed a draw")
	}

	for _, p := range []float64{0.001, 0.1, 0.5, 0.9} {
		const n = 100000
		hits := 0
		for i := 0; i < n; i++ {
			if r.Chance(p) {
				hits++
			}
		}
		sd := math.Sqrt(n * p * (1 - p))
		if math.Abs(float64(hits)-n*p) > 5*sd {
			t.Errorf("Chance(%v): %d / %d", p, hits, n)
		}
	}
}

func TestRandBetween(t *testing.T) {
	r := NewRand(4)
	tests := []struct{ lo, hi time.Duration }{
		{0, 0}, {5, 5}, {0, 1}, {0, 3}, {-3, 3},
		{time.Millisecond, 2 * time.Millisecond},
		{math.MinInt64, math.MaxInt64},
	}
	for _, tc := range tests {
		seenLo, seenHi := false, false
		for i := 0; i < 10000; i++ {
			d := r.Between(tc.lo, tc.hi)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("Between(%d,%d) = %d", tc.lo, tc.hi, d)
			}
			seenLo = seenLo || d == tc.lo
			seenHi = seenHi || d == tc.hi
		}
		if uint64(tc.hi)-uint64(tc.lo) < 10 && !(seenLo && seenHi) {
			t.Errorf("Between(%d,%d) never hit an end: lo %v hi %v", tc.lo, tc.hi, seenLo, seenHi)
		}
	}
	if got := r.Between(10, 3); got != 10 {
		t.Errorf("Between(10,3) = %d", got)
	}
}

func TestRandExp(t *testing.T) {
	r := NewRand(5)
	if r.Exp(0) != 0 || r.Exp(-time.Second) != 0 {
		t.Error("Exp of mean <= 0 not 0")
	}
	for _, mean := range []time.Duration{time.Microsecond, 3 * time.Millisecond, time.Hour} {
		const n = 200000
		var sum float64
		over := 0
		for i := 0; i < n; i++ {
			d := r.Exp(mean)
			if d < 0 {
				t.Fatalf("Exp(%v) = %v", mean, d)
			}
			sum += float64(d)
			if d > mean {
				over++
			}
		}
		// Mean within 5 standard errors (sd of Exp = mean).
		if m := sum / n; math.Abs(m-float64(mean)) > 5*float64(mean)/math.Sqrt(n) {
			t.Errorf("Exp(%v) mean %v", mean, time.Duration(m))
		}
		// P(X > mean) = 1/e.
		if f := float64(over) / n; math.Abs(f-1/math.E) > 0.005 {
			t.Errorf("Exp(%v) P(>mean) = %v", mean, f)
		}
	}
	if d := r.Exp(math.MaxInt64); d < 0 {
		t.Errorf("Exp(max) overflowed: %v", d)
	}
}

func BenchmarkRandUint64(b *testing.B) {
	r := NewRand(1)
	var s uint64
	for b.Loop() {
		s += r.Uint64()
	}
	sink = s
}

func BenchmarkRandExp(b *testing.B) {
	r := NewRand(1)
	var s time.Duration
	for b.Loop() {
		s += r.Exp(time.Millisecond)
	}
	sink = uint64(s)
}

var sink uint64
