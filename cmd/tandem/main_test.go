package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSimOutputIsDeterministic: `tandem sim` prints the same trace for the same
// flags, a different one for another seed, and exactly one summary line.
func TestSimOutputIsDeterministic(t *testing.T) {
	run := func(seed string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := runSim([]string{"--seed", seed, "--duration", "20m", "--fencing", "stonith", "--faults", "swarm"}, &out, &errOut)
		return out.String(), errOut.String(), code
	}
	a, sumA, code := run("7")
	b, _, _ := run("7")
	c, _, _ := run("8")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, sumA)
	}
	if a != b {
		t.Fatal("seed 7 printed two different traces")
	}
	if a == c {
		t.Fatal("seeds 7 and 8 printed the same trace")
	}
	lines := strings.Split(strings.TrimSpace(sumA), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "sim: seed=7 simulated=21m0s wall=") ||
		!strings.Contains(lines[0], " failovers=") || !strings.Contains(lines[0], " false_failovers=") || !strings.Contains(lines[0], " violations=0 ") ||
		!strings.Contains(lines[0], " acked=0 lost=0 resync_bytes=") || !strings.Contains(lines[0], " dirty_bytes=") {
		t.Fatalf("summary is not one line of the documented form: %q", sumA)
	}
	if !strings.Contains(a, "legend:") {
		t.Fatal("trace has no legend")
	}
}

func TestSimRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--fencing", "sometimes"},
		{"--faults", "many"},
		{"--nodes", "4"},
		{"--fencing", "witness", "--nodes", "2"},
	} {
		var out, errOut bytes.Buffer
		if code := runSim(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if !strings.Contains(errOut.String(), "tandem sim:") {
			t.Errorf("%v: no clear error: %q", args, errOut.String())
		}
	}
}

func TestDemoPasses(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runDemo(nil, &out, &errOut); code != 0 {
		t.Fatalf("demo failed (%d):\n%s%s", code, out.String(), errOut.String())
	}
	if strings.Count(out.String(), "check ok") != 6 || !strings.Contains(out.String(), "SIMULATED") {
		t.Fatalf("demo output lacks its checks or its label:\n%s", out.String())
	}
}
