package faults

import (
	"flag"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

var swarmOpts = SwarmOptions{
	Safety:           20 * time.Minute,
	Keepalive:        time.Second,
	Deadtime:         10 * time.Second,
	ClockDriftPPMMax: 500,
	MaxLoss:          0.5,
}

// checkSwarm checks everything Swarm promises about one draw.
func checkSwarm(t interface {
	Helper()
	Fatalf(string, ...any)
}, opt SwarmOptions, r Rates, s Schedule) {
	t.Helper()
	names := names2
	if opt.Nodes == 3 {
		names = names3
	}
	if err := s.Check(names); err != nil { // sorted and state-consistent
		t.Fatalf("%v\n%s", err, s.Format(names))
	}
	if len(s) > MaxSwarmSteps {
		t.Fatalf("%d steps", len(s))
	}
	for _, st := range s {
		if st.At < 0 || st.At >= opt.Safety {
			t.Fatalf("step outside the safety phase: %s", st.Format(names))
		}
		if st != st.Canonical() {
			t.Fatalf("step not canonical: %+v", st)
		}
		if st.Kind == ClockDrift && (st.PPM > r.ClockDriftPPMMax || -st.PPM > r.ClockDriftPPMMax) {
			t.Fatalf("drift %d beyond the drawn bound %d", st.PPM, r.ClockDriftPPMMax)
		}
		if (st.Kind == FenceBreak || st.Kind == Admin) && st.Node > 1 {
			t.Fatalf("%s targets the witness", st.Format(names))
		}
		if line := st.Format(names); true {
			back, err := ParseStep(line, names)
			if err != nil || back != st {
				t.Fatalf("ParseStep(%q) = %+v, %v", line, back, err)
			}
		}
	}
	if r.ClockDriftPPMMax < 0 || r.ClockDriftPPMMax > opt.ClockDriftPPMMax {
		t.Fatalf("drift bound %d beyond %d", r.ClockDriftPPMMax, opt.ClockDriftPPMMax)
	}
	if r.Loss < 0 || r.Loss > opt.MaxLoss {
		t.Fatalf("loss %v beyond %v", r.Loss, opt.MaxLoss)
	}
	for _, p := range []float64{r.Duplicate, r.Reorder, r.SerialByteError, r.FenceFail, r.FenceTimeout, r.StartFail, r.StopFail, r.MonitorFail} {
		if p < 0 || p >= 1 {
			t.Fatalf("probability %v out of range in %s", p, r.Describe())
		}
	}
	if !(0 < r.LatencyMin && r.LatencyMin <= r.LatencyMean && r.LatencyMean <= r.LatencyMax) {
		t.Fatalf("latencies out of order: %s", r.Describe())
	}
	if r.SerialBaud <= 0 || r.FenceDuration <= 0 || r.ActionDuration <= 0 || r.OutageMean <= 0 {
		t.Fatalf("non-positive timing: %+v", r)
	}

	// Liveness undoes everything.
	live := Liveness(s, len(names), opt.Safety)
	full := append(append(Schedule{}, s...), live...)
	if err := full.Check(names); err != nil {
		t.Fatalf("schedule + liveness: %v", err)
	}
	st := NewState(len(names))
	for _, step := range full {
		_ = st.Apply(step)
	}
	if !st.Settled() {
		t.Fatalf("not settled after liveness:\n%s", full.Format(names))
	}
}

func TestSwarmSeeds(t *testing.T) {
	const seeds = 2000
	for _, nodes := range []int{2, 3} {
		opt := swarmOpts
		opt.Nodes = nodes
		descs := map[string]bool{}
		kinds := map[Kind]int{}
		oneWay, witness, total := 0, 0, 0
		for seed := range uint64(seeds) {
			r, s := Swarm(&splitmix{seed}, opt)
			checkSwarm(t, opt, r, s)
			descs[r.Describe()] = true
			total += len(s)
			for _, st := range s {
				kinds[st.Kind]++
				if st.OneWay {
					oneWay++
				}
				if st.Node == 2 || (st.Kind == Partition && st.Peer == 2) {
					witness++
				}
			}
		}
		t.Logf("%d nodes: %d seeds, %d steps, %d distinct rates, kinds %v", nodes, seeds, total, len(descs), kinds)
		if len(descs) < seeds*99/100 {
			t.Errorf("only %d distinct rates from %d seeds", len(descs), seeds)
		}
		for _, k := range Kinds() {
			if k != ResourceBreak && kinds[k] == 0 {
				t.Errorf("%d nodes: %d seeds never drew a %v", nodes, seeds, k)
			}
		}
		if oneWay == 0 {
			t.Errorf("no one-way partition")
		}
		if (nodes == 3) != (witness > 0) {
			t.Errorf("%d nodes: %d steps involve the witness", nodes, witness)
		}
	}
}

func TestSwarmDeterministic(t *testing.T) {
	for seed := range uint64(50) {
		r1, s1 := Swarm(&splitmix{seed}, swarmOpts)
		r2, s2 := Swarm(&splitmix{seed}, swarmOpts)
		if r1 != r2 || !reflect.DeepEqual(s1, s2) {
			t.Fatalf("seed %d: two draws differ", seed)
		}
	}
}

// Outages must land on both sides of deadtime: shorter ones test that no
// false failover happens, longer ones test failover itself.
func TestSwarmOutagesStraddleDeadtime(t *testing.T) {
	var short, long int
	for seed := range uint64(500) {
		_, s := Swarm(&splitmix{seed}, swarmOpts)
		crashed := map[int]time.Duration{}
		for _, st := range s {
			switch st.Kind {
			case Crash, Freeze:
				crashed[st.Node] = st.At
			case Restart, Thaw:
				if d := st.At - crashed[st.Node]; d < swarmOpts.Deadtime {
					short++
				} else {
					long++
				}
			}
		}
	}
	t.Logf("outages: %d shorter than deadtime, %d longer", short, long)
	if short < 100 || long < 100 {
		t.Errorf("outages: %d shorter than deadtime, %d longer; want plenty of both", short, long)
	}
}

func TestSwarmEdgeOptions(t *testing.T) {
	// A zero Chooser is the shrink target: a quiet run.
	r, s := Swarm(zeros{}, swarmOpts)
	if len(s) != 0 || r.Loss != 0 || r.CrashEvery != 0 || r.ClockDriftPPMMax != 0 {
		t.Errorf("zero chooser: %s, %d steps", r.Describe(), len(s))
	}
	// No safety phase: no steps. No drift or loss allowed: none drawn.
	for seed := range uint64(200) {
		r, s := Swarm(&splitmix{seed}, SwarmOptions{Nodes: 3})
		if len(s) != 0 || r.Loss != 0 || r.ClockDriftPPMMax != 0 {
			t.Fatalf("seed %d, empty options: %s, %d steps", seed, r.Describe(), len(s))
		}
	}
	// A very short safety phase, shorter than deadtime.
	short := swarmOpts
	short.Safety = 3 * time.Second
	for seed := range uint64(500) {
		r, s := Swarm(&splitmix{seed}, short)
		checkSwarm(t, short, r, s)
	}
}

// A chooser that always answers the extreme opposite of the shrink target:
// the step cap must hold.
type ones struct{}

func (ones) Intn(n int) int   { return n - 1 }
func (ones) Float64() float64 { return 1 - 1.0/(1<<53) }

func TestSwarmRunawayIsBounded(t *testing.T) {
	opt := swarmOpts
	opt.Nodes = 3
	opt.Safety = 1000 * time.Hour
	r, s := Swarm(ones{}, opt)
	checkSwarm(t, opt, r, s)
	if len(s) == 0 {
		t.Fatal("no steps")
	}
}

func TestRapidChooser(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := RapidChooser(t)
		if n := rapid.IntRange(1, 1000).Draw(t, "n"); true {
			if v := c.Intn(n); v < 0 || v >= n {
				t.Fatalf("Intn(%d) = %d", n, v)
			}
		}
		if f := c.Float64(); f < 0 || f >= 1 {
			t.Fatalf("Float64() = %v", f)
		}
		opt := swarmOpts
		opt.Nodes = rapid.IntRange(2, 3).Draw(t, "nodes")
		opt.Safety = time.Duration(rapid.Int64Range(0, int64(time.Hour)).Draw(t, "safety"))
		r, s := Swarm(c, opt)
		checkSwarm(t, opt, r, s)
	})
}

// shrinkTB captures a rapid failure instead of failing the test, so we can
// look at what rapid shrank the schedule to.
type shrinkTB struct {
	*testing.T
	failed bool
}

func (s *shrinkTB) Logf(string, ...any)   {}
func (s *shrinkTB) Log(...any)            {}
func (s *shrinkTB) Errorf(string, ...any) { s.failed = true }
func (s *shrinkTB) Error(...any)          { s.failed = true }
func (s *shrinkTB) Fatalf(string, ...any) { s.failed = true }
func (s *shrinkTB) Fatal(...any)          { s.failed = true }
func (s *shrinkTB) Fail()                 { s.failed = true }
func (s *shrinkTB) FailNow()              { s.failed = true }
func (s *shrinkTB) Failed() bool          { return s.failed }

// A property that fails whenever the witness crashes must shrink to little
// more than that crash, with the rest of the environment quiet.
func TestRapidChooserShrinks(t *testing.T) {
	if f := flag.Lookup("rapid.nofailfile"); f != nil {
		old := f.Value.String()
		_ = f.Value.Set("true") // the failure is deliberate: write no testdata file
		defer func() { _ = f.Value.Set(old) }()
	}
	opt := swarmOpts
	opt.Nodes = 3
	var last Schedule
	var lastRates Rates
	tb := &shrinkTB{T: t}
	rapid.Check(tb, func(rt *rapid.T) {
		r, s := Swarm(RapidChooser(rt), opt)
		for _, st := range s {
			if st.Kind == Crash && st.Node == 2 {
				last, lastRates = s, r
				rt.Fatalf("witness crashed")
			}
		}
	})
	if !tb.failed {
		t.Fatal("rapid found no schedule crashing the witness")
	}
	t.Logf("shrunk to %s\n%s", lastRates.Describe(), last.Format(names3))
	// Rapid shrinks draws towards 0, and node choices index the eligible
	// nodes, so a crash of server1 can survive in front of the witness's
	// (picking the witness first would mean a larger draw). Everything else
	// must go.
	if len(last) == 0 || len(last) > 3 {
		t.Fatalf("did not shrink:\n%s", last.Format(names3))
	}
	for _, st := range last {
		if st.Kind != Crash {
			t.Fatalf("shrunk schedule has more than crashes:\n%s", last.Format(names3))
		}
	}
	if strings.Contains(lastRates.Describe(), "loss=") {
		t.Errorf("shrunk rates still lossy: %s", lastRates.Describe())
	}
}
