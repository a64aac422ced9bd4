package sim

import (
	"bytes"
	"math"
	"math/bits"
	"testing"
	"time"
)

// within reports whether an observed count is within 5 standard deviations
// of a binomial(n, p) expectation.
func within(count, n int, p float64) bool {
	return math.Abs(float64(count)-float64(n)*p) <= 5*math.Sqrt(float64(n)*p*(1-p))+1
}

func TestLinkDeliverStats(t *testing.T) {
	const n = 100000
	tests := []struct {
		name string
		l    LinkParams
	}{
		{"perfect", LinkParams{LatencyMin: time.Millisecond, LatencyMean: time.Millisecond, LatencyMax: time.Millisecond}},
		{"lossy", LinkParams{LatencyMin: 100 * time.Microsecond, LatencyMean: 300 * time.Microsecond, LatencyMax: 5 * time.Millisecond, Loss: 0.1}},
		{"very lossy", LinkParams{LatencyMin: time.Millisecond, LatencyMean: 2 * time.Millisecond, LatencyMax: 50 * time.Millisecond, Loss: 0.5}},
		{"dup", LinkParams{LatencyMin: time.Millisecond, LatencyMean: 2 * time.Millisecond, LatencyMax: 50 * time.Millisecond, Duplicate: 0.05}},
		{"loss+dup", LinkParams{LatencyMin: time.Millisecond, LatencyMean: 2 * time.Millisecond, LatencyMax: 50 * time.Millisecond, Loss: 0.2, Duplicate: 0.3}},
		{"tight cap", LinkParams{LatencyMin: time.Millisecond, LatencyMean: 10 * time.Millisecond, LatencyMax: 3 * time.Millisecond, Loss: 0.01}},
		{"down", LinkParams{LatencyMin: time.Millisecond, LatencyMean: time.Millisecond, Down: true}},
		{"lost always", LinkParams{Loss: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRand(99)
			var buf []time.Duration
			lost, dup := 0, 0
			var now time.Duration
			for i := 0; i < n; i++ {
				now += 100 * time.Microsecond
				buf = tc.l.Deliver(now, r, buf[:0])
				switch len(buf) {
				case 0:
					lost++
				case 2:
					dup++
				}
				for _, at := range buf {
					lat := at - now
					if lat < tc.l.LatencyMin || (tc.l.LatencyMax > 0 && lat > tc.l.LatencyMax) {
						t.Fatalf("latency %v outside [%v,%v]", lat, tc.l.LatencyMin, tc.l.LatencyMax)
					}
				}
			}
			lossP := tc.l.Loss
			if tc.l.Down {
				lossP = 1
			}
			if lossP >= 1 && lost != n {
				t.Fatalf("lost %d of %d, want all", lost, n)
			}
			if !within(lost, n, lossP) {
				t.Errorf("lost %d of %d, want ~%.0f", lost, n, lossP*n)
			}
			if !within(dup, n, (1-lossP)*tc.l.Duplicate) {
				t.Errorf("duplicated %d of %d, want ~%.0f", dup, n, (1-lossP)*tc.l.Duplicate*n)
			}
		})
	}
}

func TestLinkDownDrawsNothing(t *testing.T) {
	l := LinkParams{LatencyMin: time.Millisecond, LatencyMean: 2 * time.Millisecond, Loss: 0.5, Down: true}
	a, b := NewRand(5), NewRand(5)
	for i := 0; i < 100; i++ {
		if got := l.Deliver(0, a, nil); len(got) != 0 {
			t.Fatal("Down link delivered")
		}
	}
	if a.Uint64() != b.Uint64() {
		t.Error("Down link consumed randomness")
	}
}

func TestLinkLatencyDistribution(t *testing.T) {
	l := LinkParams{LatencyMin: 200 * time.Microsecond, LatencyMean: 700 * time.Microsecond, LatencyMax: time.Second}
	r := NewRand(7)
	const n = 100000
	var sum float64
	var buf []time.Duration
	for i := 0; i < n; i++ {
		buf = l.Deliver(0, r, buf[:0])
		sum += float64(buf[0])
	}
	tail := float64(l.LatencyMean - l.LatencyMin)
	if m := sum / n; math.Abs(m-float64(l.LatencyMean)) > 5*tail/math.Sqrt(n) {
		t.Errorf("mean latency %v, want %v", time.Duration(m), l.LatencyMean)
	}
	// Uncapped (LatencyMax 0) still respects the floor and keeps the mean.
	l.LatencyMax = 0
	sum = 0
	for i := 0; i < n; i++ {
		buf = l.Deliver(0, r, buf[:0])
		if buf[0] < l.LatencyMin {
			t.Fatalf("below floor: %v", buf[0])
		}
		sum += float64(buf[0])
	}
	if m := sum / n; math.Abs(m-float64(l.LatencyMean)) > 5*tail/math.Sqrt(n) {
		t.Errorf("uncapped mean latency %v, want %v", time.Duration(m), l.LatencyMean)
	}
}

// inversions counts pairs of consecutive deliveries (in send order) that
// arrive out of order.
func inversions(l LinkParams, seed uint64) (inv, delivered int) {
	r := NewRand(seed)
	var buf []time.Duration
	last := time.Duration(-1)
	for i := 0; i < 10000; i++ {
		now := time.Duration(i) * time.Millisecond
		buf = l.Deliver(now, r, buf[:0])
		for _, at := range buf[:min(len(buf), 1)] {
			if at < last {
				inv++
			}
			last = at
			delivered++
		}
	}
	return inv, delivered
}

func TestLinkReorder(t *testing.T) {
	fixed := LinkParams{LatencyMin: 5 * time.Millisecond, LatencyMean: 5 * time.Millisecond, LatencyMax: 5 * time.Millisecond}
	if inv, _ := inversions(fixed, 1); inv != 0 {
		t.Fatalf("constant latency without Reorder reordered %d packets", inv)
	}
	re := fixed
	re.Reorder = 0.2
	re.ReorderDelay = 10 * time.Millisecond
	inv, n := inversions(re, 1)
	// A delayed packet is overtaken by the next one unless its extra delay is
	// < 1ms (the send spacing): expect roughly 0.2*0.9*0.8 of sends.
	if inv < n/20 {
		t.Fatalf("Reorder 0.2 gave only %d inversions in %d", inv, n)
	}
	// The reorder delay is bounded.
	r := NewRand(3)
	for i := 0; i < 10000; i++ {
		for _, at := range re.Deliver(0, r, nil) {
			if at < 5*time.Millisecond || at > 15*time.Millisecond {
				t.Fatalf("reordered arrival %v outside [5ms,15ms]", at)
			}
		}
	}
}

func TestLinkDeterministicNoAlloc(t *testing.T) {
	l := LinkParams{LatencyMin: time.Millisecond, LatencyMean: 3 * time.Millisecond, LatencyMax: 20 * time.Millisecond,
		Loss: 0.1, Duplicate: 0.1, Reorder: 0.1, ReorderDelay: 5 * time.Millisecond}
	a, b := NewRand(8), NewRand(8)
	var ba, bb []time.Duration
	for i := 0; i < 10000; i++ {
		now := time.Duration(i) * time.Millisecond
		ba = l.Deliver(now, a, ba[:0])
		bb = l.Deliver(now, b, bb[:0])
		if len(ba) != len(bb) || (len(ba) > 0 && ba[0] != bb[0]) || (len(ba) > 1 && ba[1] != bb[1]) {
			t.Fatalf("packet %d: %v vs %v", i, ba, bb)
		}
	}
	buf := make([]time.Duration, 0, 2)
	if allocs := testing.AllocsPerRun(1000, func() { buf = l.Deliver(0, a, buf[:0]) }); allocs != 0 {
		t.Errorf("Deliver allocates %v times", allocs)
	}
}

func BenchmarkDeliver(b *testing.B) {
	l := LinkParams{LatencyMin: 100 * time.Microsecond, LatencyMean: 300 * time.Microsecond, LatencyMax: 10 * time.Millisecond,
		Loss: 0.01, Duplicate: 0.01, Reorder: 0.01, ReorderDelay: time.Millisecond}
	r := NewRand(1)
	buf := make([]time.Duration, 0, 2)
	var now time.Duration
	b.ReportAllocs()
	for b.Loop() {
		now += time.Millisecond
		buf = l.Deliver(now, r, buf[:0])
	}
}

func TestSerialTiming(t *testing.T) {
	tests := []struct {
		baud  int
		bytes int
		want  time.Duration
	}{
		{19200, 60, 31250 * time.Microsecond},
		{19200, 1, 520834 * time.Nanosecond}, // 520833.33 rounded up
		{115200, 100, 8680556 * time.Nanosecond},
		{9600, 0, 0},
		{300, 3, 100 * time.Millisecond},
	}
	for _, tc := range tests {
		s := SerialLine{Baud: tc.baud}
		if got := s.ByteTime(tc.bytes); got != tc.want {
			t.Errorf("%d bytes at %d baud: %v, want %v", tc.bytes, tc.baud, got, tc.want)
		}
		at, got, ok := s.Transmit(time.Second, 0, make([]byte, tc.bytes), NewRand(1), nil)
		if !ok || at != time.Second+tc.want || len(got) != tc.bytes {
			t.Errorf("Transmit %d bytes at %d: %v %d %v", tc.bytes, tc.baud, at, len(got), ok)
		}
	}
}

func TestSerialQueuing(t *testing.T) {
	s := SerialLine{Baud: 19200}
	r := NewRand(1)
	frame := make([]byte, 60)
	const ft = 31250 * time.Microsecond
	steps := []struct {
		now  time.Duration
		dir  int
		want time.Duration
	}{
		{0, 0, ft},                         // idle line
		{0, 0, 2 * ft},                     // queues behind the first frame
		{10 * time.Millisecond, 0, 3 * ft}, // still queued
		{0, 1, ft},                         // other direction is independent
		{time.Second, 0, time.Second + ft}, // drained: starts at now
		{time.Second + ft, 0, time.Second + 2*ft},
	}
	for i, st := range steps {
		at, _, ok := s.Transmit(st.now, st.dir, frame, r, nil)
		if !ok || at != st.want {
			t.Fatalf("step %d: arrive %v ok %v, want %v", i, at, ok, st.want)
		}
	}
	if s.Sent != [2]uint64{5, 1} || s.BusyUntil(0) != time.Second+2*ft {
		t.Fatalf("Sent %v busy %v", s.Sent, s.BusyUntil(0))
	}
}

func TestSerialWriteTimeout(t *testing.T) {
	s := SerialLine{Baud: 19200, WriteTimeout: 50 * time.Millisecond}
	r := NewRand(1)
	frame := make([]byte, 60) // 31.25ms each
	const ft = 31250 * time.Microsecond
	for i, want := range []bool{true, true, false, false} {
		// Waits: 0, 31.25ms, 62.5ms (> 50ms: dropped), 62.5ms again since
		// dropped frames do not occupy the line.
		_, _, ok := s.Transmit(0, 0, frame, r, nil)
		if ok != want {
			t.Fatalf("write %d: ok %v", i, ok)
		}
	}
	if s.DroppedTimeout[0] != 2 || s.Sent[0] != 2 || s.BusyUntil(0) != 2*ft {
		t.Fatalf("dropped %v sent %v busy %v", s.DroppedTimeout, s.Sent, s.BusyUntil(0))
	}
	// Exactly at the timeout is still accepted.
	s2 := SerialLine{Baud: 19200, WriteTimeout: ft}
	s2.Transmit(0, 1, frame, r, nil)
	if _, _, ok := s2.Transmit(0, 1, frame, r, nil); !ok {
		t.Fatal("wait == WriteTimeout dropped")
	}
}

func TestSerialCut(t *testing.T) {
	s := SerialLine{Baud: 19200, Cut: true}
	r := NewRand(1)
	out := make([]byte, 0, 64)
	for dir := 0; dir < 2; dir++ {
		for i := 0; i < 3; i++ {
			if _, got, ok := s.Transmit(0, dir, []byte("hello"), r, out); ok || len(got) != 0 {
				t.Fatalf("cut line delivered in dir %d", dir)
			}
		}
	}
	if s.DroppedCut != [2]uint64{3, 3} || s.Sent != [2]uint64{} || s.BusyUntil(0) != 0 {
		t.Fatalf("DroppedCut %v Sent %v", s.DroppedCut, s.Sent)
	}
	s.Cut = false // repaired
	if _, got, ok := s.Transmit(0, 0, []byte("hello"), r, out); !ok || string(got) != "hello" {
		t.Fatalf("repaired line: %q %v", got, ok)
	}
}

func TestSerialNoise(t *testing.T) {
	tests := []struct {
		name string
		p    float64
		size int
	}{
		{"clean", 0, 60},
		{"rare", 1e-4, 60},
		{"noisy", 1e-3, 60},
		{"bad cable", 0.02, 60},
		{"big frames", 1e-3, 1000},
		{"all", 1, 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := SerialLine{Baud: 115200, ByteError: tc.p}
			r := NewRand(17)
			frame := make([]byte, tc.size)
			for i := range frame {
				frame[i] = byte(i * 7)
			}
			out := make([]byte, 0, tc.size)
			const n = 20000
			bad, badBytes := 0, 0
			for i := 0; i < n; i++ {
				_, got, ok := s.Transmit(time.Duration(i)*time.Second, i&1, frame, r, out)
				if !ok || len(got) != len(frame) {
					t.Fatal("noise dropped or resized a frame")
				}
				if &got[0] != &out[:1][0] {
					t.Fatal("received does not reuse out")
				}
				nb := 0
				for j := range got {
					if d := got[j] ^ frame[j]; d != 0 {
						if bits.OnesCount8(d) != 1 {
							t.Fatalf("byte %d: %08b is not a single bit flip", j, d)
						}
						nb++
					}
				}
				if nb > 0 {
					bad++
				}
				badBytes += nb
			}
			pf := 1 - math.Pow(1-tc.p, float64(tc.size))
			if !within(bad, n, pf) {
				t.Errorf("corrupted frames %d of %d, want ~%.1f", bad, n, pf*n)
			}
			if !within(badBytes, n*tc.size, tc.p) {
				t.Errorf("corrupted bytes %d of %d, want ~%.1f", badBytes, n*tc.size, tc.p*float64(n*tc.size))
			}
			if got := s.Corrupted[0] + s.Corrupted[1]; got != uint64(bad) {
				t.Errorf("Corrupted counter %d, observed %d", got, bad)
			}
			if got := s.CorruptedBytes[0] + s.CorruptedBytes[1]; got != uint64(badBytes) {
				t.Errorf("CorruptedBytes counter %d, observed %d", got, badBytes)
			}
			if s.Sent != [2]uint64{n / 2, n / 2} {
				t.Errorf("Sent %v", s.Sent)
			}
		})
	}
	// The input frame is never modified.
	s := SerialLine{Baud: 9600, ByteError: 1}
	frame := []byte("heartbeat")
	s.Transmit(0, 0, frame, NewRand(1), nil)
	if !bytes.Equal(frame, []byte("heartbeat")) {
		t.Fatal("Transmit modified its input")
	}
}

// TestSerialNoisePositions checks that the geometric skipping hits every
// position uniformly (no bias toward the frame start or end).
func TestSerialNoisePositions(t *testing.T) {
	const size, n = 16, 50000
	var hits [size]int
	r := NewRand(23)
	b := make([]byte, size)
	for i := 0; i < n; i++ {
		clear(b)
		corrupt(b, 0.05, r)
		for j, x := range b {
			if x != 0 {
				hits[j]++
			}
		}
	}
	for j, h := range hits {
		if !within(h, n, 0.05) {
			t.Errorf("position %d corrupted %d of %d", j, h, n)
		}
	}
}

func BenchmarkSerialTransmit(b *testing.B) {
	s := SerialLine{Baud: 19200, ByteError: 1e-4}
	r := NewRand(1)
	frame := make([]byte, 60)
	out := make([]byte, 0, 64)
	var now time.Duration
	b.ReportAllocs()
	for b.Loop() {
		now += time.Second
		_, out, _ = s.Transmit(now, 0, frame, r, out)
	}
}
