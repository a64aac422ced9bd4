package run

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/scenarios"
)

var (
	seedsFlag   = flag.Int("scenario.seeds", 3, "seeds each library scenario runs with (1..N)")
	pendingFlag = flag.Bool("scenario.pending", false, "also run scenarios/pending (expected to fail until the core is fixed)")
)

// TestLibrary runs every library scenario under seeds 1..scenario.seeds.
func TestLibrary(t *testing.T) {
	files, err := filepath.Glob("../library/*.scn")
	if err != nil || len(files) == 0 {
		t.Fatalf("no library scenarios (%v)", err)
	}
	for _, path := range files {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".scn"), func(t *testing.T) {
			runFile(t, path, *seedsFlag)
		})
	}
}

// TestPending skips each pending scenario with the reason its README gives;
// with -scenario.pending it runs them.
func TestPending(t *testing.T) {
	reasons := pendingReasons(t)
	files, _ := filepath.Glob("../pending/*.scn")
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".scn"), func(t *testing.T) {
			why, ok := reasons[name]
			if !ok {
				t.Fatalf("%s has no reason in pending/README.md: say what goes wrong", path)
			}
			if !*pendingFlag {
				t.Skip(why)
			}
			runFile(t, path, *seedsFlag)
		})
	}
	for name := range reasons {
		if _, err := os.Stat(filepath.Join("../pending", name)); err != nil {
			t.Errorf("pending/README.md names %s, which is not in pending/ (moved back? delete its line)", name)
		}
	}
}

func pendingReasons(t *testing.T) map[string]string {
	f, err := os.Open("../pending/README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, why, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "- "), ": ")
		if ok && strings.HasSuffix(name, ".scn") && strings.HasPrefix(sc.Text(), "- ") {
			out[name] = why
		}
	}
	return out
}

func runFile(t *testing.T, path string, seeds int) {
	sc, err := scenarios.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for seed := uint64(1); seed <= uint64(seeds); seed++ {
		res, err := Run(sc, Options{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() {
			f := res.Failures[0]
			var trace strings.Builder
			for _, l := range res.TraceAround(f.At, 20) {
				fmt.Fprintf(&trace, "    %s\n", l.Text)
			}
			t.Fatalf("seed %d: %s\n%s  replay: go run ./cmd/tandem scenario run %s --seed %d -v", seed, f, trace.String(), path, seed)
		}
	}
}

func mustParse(t *testing.T, src string) *scenarios.Scenario {
	t.Helper()
	sc, err := scenarios.Parse("test.scn", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

const fast = "cluster server1 server2 fencing stonith keepalive 200ms deadtime 2s initdead 4s fence-delay 1s fence-timeout 5s fence-time 1s disk 4MiB\n"

// TestUnmetExpectationNamesItsLine: a wrong expectation fails with its
// file:line, and the runner does not report expectations that hold.
func TestUnmetExpectationNamesItsLine(t *testing.T) {
	sc := mustParse(t, fast+
		"expect primary server1 within 5s\n"+
		"at 10s crash server1\n"+
		"expect primary server1 within 10s\n"+ // wrong: server1 is off
		"expect failover to server2 within 6s\n")
	res, err := Run(sc, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 1 || res.Failures[0].Pos.Line != 4 || !strings.HasPrefix(res.Failures[0].String(), "test.scn:4: expect primary server1 within 10s") {
		t.Fatalf("want exactly the failure of line 4, got %v", res.Failures)
	}
}

// TestUnsupportedStepFails: a step the simulator cannot play fails the
// scenario and says which and where.
func TestUnsupportedStepFails(t *testing.T) {
	sc := mustParse(t, fast+"at 1s delay 10ms server1 server2 one-way\nexpect no-split-brain\n")
	res, err := Run(sc, Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || !strings.Contains(res.Failures[0].Msg, "unsupported: at 1s delay 10ms server1 server2 one-way at test.scn:2") {
		t.Fatalf("want an unsupported failure, got %v", res.Failures)
	}
}

// TestMeasuresAndData: writes are acknowledged and durable, a crash makes a
// failover, and the measures count what happened.
func TestMeasuresAndData(t *testing.T) {
	sc := mustParse(t, fast+
		"expect primary server1 within 5s\n"+
		"at 5s for 2s write 200 blocks\n"+
		"at 10s crash server1\n"+
		"expect failovers == 1 fences == 1 failed-requests == 0\n"+
		"expect acked-writes-durable\n"+
		"at 20s restart server1\n"+
		"expect disks-identical within 10s\n"+
		"expect resync-bytes > 0\n")
	res, err := Run(sc, Options{Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("%v", res.Failures)
	}
	// The same expectations with impossible values fail.
	bad := mustParse(t, fast+"at 5s for 2s write 200 blocks\nat 10s crash server1\nexpect failovers == 0\nexpect fences >= 2\n")
	res, _ = Run(bad, Options{Seed: 2})
	if len(res.Failures) != 2 {
		t.Fatalf("want 2 failures, got %v", res.Failures)
	}
}

// TestDeterministic: one seed, one trace.
func TestDeterministic(t *testing.T) {
	sc, err := scenarios.ParseFile("../library/tutorial-power-off.scn")
	if err != nil {
		t.Fatal(err)
	}
	var a, b strings.Builder
	if _, err := Run(sc, Options{Seed: 7, Trace: &a}); err != nil {
		t.Fatal(err)
	}
	Run(sc, Options{Seed: 7, Trace: &b})
	if a.String() != b.String() || a.Len() == 0 {
		t.Fatalf("two runs of seed 7 differ (%d and %d bytes of trace)", a.Len(), b.Len())
	}
}
