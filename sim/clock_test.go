package sim

import (
	"math"
	"math/big"
	"testing"
	"time"

	"tandem/internal/proto"
)

// bigLocal is the reference: baseL + floor((g-baseG)*(1e6+ppm)/1e6) in
// arbitrary precision.
func bigLocal(baseG time.Duration, baseL proto.Time, ppm int64, g time.Duration) *big.Int {
	d := new(big.Int).Sub(big.NewInt(int64(g)), big.NewInt(int64(baseG)))
	d.Mul(d, big.NewInt(ppmScale+ppm))
	d.Div(d, big.NewInt(ppmScale)) // d >= 0, so Div is floor
	return d.Add(d, big.NewInt(int64(baseL)))
}

func TestClockLocalExact(t *testing.T) {
	tests := []struct {
		name  string
		baseG time.Duration
		baseL proto.Time
		ppm   int64
	}{
		{"ideal", 0, 0, 0},
		{"fast 100000ppm", 0, 0, 100000},
		{"slow 100000ppm", 0, 0, -100000},
		{"odd rate", 3 * time.Second, 12345, 7},
		{"offset base", 5 * time.Hour, proto.Time(17 * time.Hour), -33},
		{"negative local base", time.Second, -proto.Time(time.Hour), 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClock(tc.baseG, tc.baseL, tc.ppm)
			r := NewRand(uint64(tc.ppm) + 1)
			prev := c.Local(tc.baseG)
			if prev != tc.baseL {
				t.Fatalf("Local(base) = %v", prev)
			}
			g := tc.baseG
			for i := 0; i < 20000; i++ {
				// Mix tiny steps (rounding) with big ones (hundreds of hours).
				if i%2 == 0 {
					g += time.Duration(r.Intn(3))
				} else {
					g += r.Between(0, 200*time.Second)
				}
				l := c.Local(g)
				if want := bigLocal(tc.baseG, tc.baseL, tc.ppm, g); want.Cmp(big.NewInt(int64(l))) != 0 {
					t.Fatalf("Local(%v) = %d, want %v", g, l, want)
				}
				if l < prev {
					t.Fatalf("Local went backwards at %v: %v < %v", g, l, prev)
				}
				prev = l
			}
			if g-tc.baseG < 200*time.Hour {
				t.Fatalf("only covered %v", g-tc.baseG)
			}
			if l := c.Local(tc.baseG - time.Hour); l != tc.baseL {
				t.Errorf("Local before base = %v, want base", l)
			}
		})
	}
}

// TestClockHoursNoOverflow: products like 1000h * 1.1e6 exceed 2^64, which a
// naive int64 computation would wrap.
func TestClockHoursNoOverflow(t *testing.T) {
	for _, ppm := range []int64{-100000, 100000} {
		c := NewClock(0, 0, ppm)
		for _, h := range []time.Duration{1, 3, 24, 1000, 100000} {
			g := h * time.Hour
			want := int64(g) / ppmScale * (ppmScale + ppm) // exact: hours are multiples of 1e6 ns
			if got := c.Local(g); int64(got) != want {
				t.Errorf("ppm %d, %dh: Local = %d, want %d", ppm, h, got, want)
			}
			if back := c.GlobalAt(proto.Time(want)); back != g {
				t.Errorf("ppm %d, %dh: GlobalAt = %v, want %v", ppm, h, back, g)
			}
		}
	}
	// Saturation, not wrap-around, at the ends of the range.
	c := NewClock(0, 0, 100000)
	if got := c.Local(math.MaxInt64); got != proto.Never {
		t.Errorf("Local(max) = %v, want Never", got)
	}
	if got := c.GlobalAt(proto.Never); got != math.MaxInt64 {
		t.Errorf("GlobalAt(Never) = %v, want never", got)
	}
	slow := NewClock(0, 0, -999999)
	if got := slow.GlobalAt(proto.Time(time.Hour) * 10000); got != math.MaxInt64 {
		t.Errorf("GlobalAt unreachable on slow clock = %v", got)
	}
	if got := slow.Local(math.MaxInt64); got < 0 {
		t.Errorf("slow Local(max) = %v", got)
	}
}

// checkInverse asserts the GlobalAt contract for target l.
func checkInverse(t *testing.T, c *Clock, l proto.Time) {
	t.Helper()
	g := c.GlobalAt(l)
	if g == math.MaxInt64 {
		return
	}
	if got := c.Local(g); got < l {
		t.Fatalf("Local(GlobalAt(%d)) = %d < target", l, got)
	}
	if g > c.baseG {
		if got := c.Local(g - 1); got >= l {
			t.Fatalf("GlobalAt(%d) = %v not earliest: Local(g-1) = %d", l, g, got)
		}
	} else if g != c.baseG {
		t.Fatalf("GlobalAt(%d) = %v before base %v", l, g, c.baseG)
	}
}

func TestClockGlobalAtInverse(t *testing.T) {
	r := NewRand(21)
	for _, ppm := range []int64{0, 1, -1, 7, 100000, -100000, 500000, -999999} {
		c := NewClock(time.Duration(r.Intn(1e12)), proto.Time(r.Intn(1e12)), ppm)
		base := c.Local(c.baseG)
		// Before and at the base: the base instant.
		for _, l := range []proto.Time{base - 1000, base - 1, base} {
			if g := c.GlobalAt(l); g != c.baseG {
				t.Errorf("ppm %d: GlobalAt(%d <= base) = %v, want base %v", ppm, l, g, c.baseG)
			}
		}
		for i := 0; i < 20000; i++ {
			var l proto.Time
			switch i % 3 {
			case 0:
				l = base + proto.Time(r.Intn(10))
			case 1:
				l = base + proto.Time(r.Intn(int(time.Minute)))
			default:
				l = base + proto.Time(r.Between(0, 1000*time.Hour))
			}
			checkInverse(t, c, l)
		}
	}
}

func TestClockSetDriftContinuous(t *testing.T) {
	r := NewRand(31)
	c := NewClock(0, proto.Time(time.Hour), 0)
	var g time.Duration
	prev := c.Local(0)
	for i := 0; i < 5000; i++ {
		g += r.Between(0, 10*time.Minute)
		before := c.Local(g)
		ppm := int64(r.Intn(200001)) - 100000
		c.SetDrift(g, ppm)
		if c.DriftPPM() != ppm {
			t.Fatalf("DriftPPM = %d, want %d", c.DriftPPM(), ppm)
		}
		if after := c.Local(g); after != before {
			t.Fatalf("SetDrift jumped Local at %v: %v -> %v", g, before, after)
		}
		if before < prev {
			t.Fatalf("Local went backwards at %v", g)
		}
		prev = before
		// Between drift changes, readings are monotonic and invertible.
		for j := 0; j < 3; j++ {
			h := g + r.Between(0, 10*time.Minute)
			if c.Local(h) < before {
				t.Fatalf("Local(%v) < Local(%v) after SetDrift", h, g)
			}
			checkInverse(t, c, c.Local(h)+proto.Time(r.Intn(3)))
		}
	}
	if g < 100*time.Hour {
		t.Fatalf("only covered %v", g)
	}
	// A rebase instant in the past keeps the base (no past reading changes).
	c2 := NewClock(time.Hour, 0, 0)
	c2.SetDrift(time.Minute, 100000)
	if c2.Local(time.Hour) != 0 || c2.Local(time.Hour+time.Second) != proto.Time(1100*time.Millisecond) {
		t.Errorf("SetDrift in the past: %v %v", c2.Local(time.Hour), c2.Local(time.Hour+time.Second))
	}
	defer func() {
		if recover() == nil {
			t.Error("SetDrift(-1e6) did not panic")
		}
	}()
	c2.SetDrift(2*time.Hour, -1000000)
}

func TestClockWall(t *testing.T) {
	c := NewClock(0, 0, 100)
	g := 10 * time.Second
	l := c.Local(g)
	if c.Wall(g) != time.Duration(l) {
		t.Fatalf("Wall starts at %v, want Local %v", c.Wall(g), l)
	}
	c.JumpWall(-time.Hour) // date -s into the past
	c.JumpWall(30 * time.Second)
	if c.Local(g) != l {
		t.Fatal("JumpWall moved the monotonic clock")
	}
	if want := time.Duration(l) - time.Hour + 30*time.Second; c.Wall(g) != want {
		t.Fatalf("Wall = %v, want %v", c.Wall(g), want)
	}
	if c.GlobalAt(l+1) != c.GlobalAt(l+1) || c.Local(c.GlobalAt(l+1)) < l+1 {
		t.Fatal("timers affected by wall jump")
	}
}

func BenchmarkClockLocal(b *testing.B) {
	c := NewClock(0, 0, 123)
	var g time.Duration
	var s proto.Time
	for b.Loop() {
		g += 1234567
		s += c.Local(g)
	}
	sink = uint64(s)
}
