package node

import (
	"strings"
	"testing"
	"time"

	"tandem/internal/proto"
)

func sec(s float64) proto.Time { return proto.Time(s * float64(time.Second)) }

func TestStartupPreferredNodeTakesGroup(t *testing.T) {
	h := newHarness(t, 2, FenceNone, nil)
	h.run(sec(1))
	h.expect("Secondary Secondary") // abstaining for one lease period after boot
	h.run(sec(3))
	h.expect("Primary Secondary")
}

func TestCrashOfPrimaryFailsOverAfterDeadtime(t *testing.T) {
	for _, f := range []Fencing{FenceNone, FenceStonith} {
		t.Run(f.String(), func(t *testing.T) {
			h := newHarness(t, 2, f, nil)
			h.run(sec(3))
			h.expect("Primary Secondary")
			h.crash(0)
			h.run(sec(4.8))
			h.expect("down Secondary")
			h.run(sec(9))
			h.expect("down Primary")
			if h.primaries != 1 {
				t.Fatalf("saw %d primaries at once", h.primaries)
			}
		})
	}
}

func TestWitnessTakeoverNeedsWitnessVote(t *testing.T) {
	h := newHarness(t, 3, FenceWitness, nil)
	h.run(sec(3))
	h.expect("Primary Secondary Witness")
	h.crash(0)
	h.run(sec(8))
	h.expect("down Primary Witness")

	// Partition server1 from server2 only: the witness still hears the
	// primary, so server2 must not take over.
	h = newHarness(t, 3, FenceWitness, nil)
	h.run(sec(3))
	h.cut[0][1], h.cut[1][0] = true, true
	h.run(sec(20))
	h.expect("Primary Secondary Witness")
	if h.primaries != 1 {
		t.Fatalf("saw %d primaries at once", h.primaries)
	}

	// Isolate server1 entirely: it must stop accepting writes before
	// server2 starts.
	h = newHarness(t, 3, FenceWitness, nil)
	h.run(sec(3))
	for _, p := range []int{1, 2} {
		h.cut[0][p], h.cut[p][0] = true, true
	}
	h.run(sec(20))
	h.expect("Secondary Primary Witness")
	if h.primaries != 1 {
		t.Fatalf("saw %d primaries at once\n%s", h.primaries, strings.Join(h.log, "\n"))
	}
}

func TestStonithFailedFenceMeansNoTakeover(t *testing.T) {
	h := newHarness(t, 2, FenceStonith, nil)
	h.run(sec(3))
	h.fenceOK = false
	h.cut[0][1], h.cut[1][0] = true, true
	h.run(sec(30))
	h.expect("Primary Secondary")
	log := strings.Join(h.log, "\n")
	if !strings.Contains(log, "fence-failed") {
		t.Fatalf("no failed fence reported:\n%s", log)
	}
}

func TestPartitionWithoutFencingIsSplitBrainThenResolved(t *testing.T) {
	h := newHarness(t, 2, FenceNone, nil)
	h.run(sec(3))
	h.cut[0][1], h.cut[1][0] = true, true
	h.run(sec(8))
	h.expect("Primary Primary")
	h.cut[0][1], h.cut[1][0] = false, false
	h.run(sec(10))
	h.expect("Secondary Primary") // server2's claim is newer
	if log := strings.Join(h.log, "\n"); !strings.Contains(log, "split-brain") {
		t.Fatalf("split brain not reported:\n%s", log)
	}
}

func TestStandbyHandsOverAndAutoFailback(t *testing.T) {
	h := newHarness(t, 2, FenceStonith, func(c *Config) { c.AutoFailback = true })
	h.run(sec(3))
	h.push(h.now, 0, Input{Kind: AdminCommand, Admin: Standby})
	h.run(sec(4))
	h.expect("Secondary Primary")
	h.push(h.now, 0, Input{Kind: AdminCommand, Admin: Online})
	h.run(sec(5))
	h.expect("Primary Secondary")
}

func TestStartFailureMovesGroup(t *testing.T) {
	h := newHarness(t, 2, FenceStonith, nil)
	h.failStart[[2]int{0, 2}] = true
	h.run(sec(4))
	h.expect("Secondary Primary")
}

func TestMonitorFailuresRestartThenMigrate(t *testing.T) {
	h := newHarness(t, 2, FenceStonith, func(c *Config) { c.MigrationThreshold = 3 })
	h.run(sec(3))
	h.expect("Primary Secondary")
	// Two failures: restarted in place each time, the group stays.
	h.failMonitor[[2]int{0, 3}] = 2
	h.run(sec(10))
	h.expect("Primary Secondary")
	log := strings.Join(h.log, "\n")
	if strings.Count(log, "restarting it") != 2 {
		t.Fatalf("want two in-place restarts:\n%s", log)
	}
	// The third failure reaches the threshold: the group moves.
	h.failMonitor[[2]int{0, 3}] = 1
	h.run(sec(15))
	h.expect("Secondary Primary")
	if !strings.Contains(strings.Join(h.log, "\n"), "moving the group away") {
		t.Fatalf("migration not reported:\n%s", strings.Join(h.log, "\n"))
	}
}

func TestTakeoverByOperator(t *testing.T) {
	h := newHarness(t, 2, FenceStonith, nil)
	h.run(sec(3))
	h.expect("Primary Secondary")
	h.push(h.now, 1, Input{Kind: AdminCommand, Admin: Takeover})
	h.run(sec(4))
	h.expect("Secondary Primary")
	if h.primaries != 1 {
		t.Fatalf("saw %d primaries at once", h.primaries)
	}
	// auto_failback is off: server1 does not take it back.
	h.run(sec(20))
	h.expect("Secondary Primary")
}

func TestStandbyRefusedWithoutPeer(t *testing.T) {
	h := newHarness(t, 2, FenceStonith, nil)
	h.run(sec(3))
	h.crash(1)
	h.run(sec(10))
	h.push(h.now, 0, Input{Kind: AdminCommand, Admin: Standby})
	h.run(sec(11))
	h.expect("Primary down")
	if !strings.Contains(strings.Join(h.log, "\n"), "standby refused") {
		t.Fatalf("refusal not reported:\n%s", strings.Join(h.log, "\n"))
	}
}

// TestDeterministicOutputs: the same inputs give the same outputs.
func TestDeterministicOutputs(t *testing.T) {
	run := func() string {
		h := newHarness(t, 3, FenceWitness, nil)
		h.run(sec(3))
		h.crash(0)
		h.run(sec(10))
		return strings.Join(h.log, "\n")
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("two runs differ:\n%s\n---\n%s", a, b)
	}
}
