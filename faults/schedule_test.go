package faults

import (
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, names []string, text string) Schedule {
	t.Helper()
	var s Schedule
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		st, err := ParseStep(line, names)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		s = append(s, st)
	}
	return s
}

func TestSortedIsStableCopy(t *testing.T) {
	s := Schedule{
		{At: 2 * time.Second, Kind: Crash, Node: 0},
		{At: time.Second, Kind: CutSerial},
		{At: 2 * time.Second, Kind: Restart, Node: 0},
		{At: time.Second, Kind: RestoreSerial},
	}
	got := s.Sorted()
	want := []Kind{CutSerial, RestoreSerial, Crash, Restart}
	for i, k := range want {
		if got[i].Kind != k {
			t.Fatalf("Sorted = %v, want kinds %v", got, want)
		}
	}
	if s[0].Kind != Crash {
		t.Fatal("Sorted modified its receiver")
	}
}

func TestCheckRejectsInconsistentSchedules(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"at 1s restart server1", "server1 is up, not down"},
		{"at 1s thaw server2", "server2 is up, not frozen"},
		{"at 1s crash server1\nat 2s crash server1", "server1 is already down"},
		{"at 1s crash server1\nat 2s freeze server1", "server1 is down, not up"},
		{"at 1s freeze server1\nat 2s crash server1\nat 3s thaw server1", "server1 is down, not frozen"},
		{"at 1s cut-serial\nat 2s cut-serial", "already cut"},
		{"at 1s restore-serial", "not cut"},
		{"at 2s crash server1\nat 1s restart server1", "out of order"},
		{"at 1s admin witness standby", "witness, which holds no resources"},
		{"at 1s resource-break witness 0 start 1", "witness"},
	} {
		err := mustParse(t, names3, tc.text).Check(names3)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%q) = %v, want it to mention %q", tc.text, err, tc.want)
		}
	}
	// Nodes that exist in the names but not in a 2-node cluster.
	if err := (Schedule{{Kind: Crash, Node: 2}}).Check(names2); err == nil || !strings.Contains(err.Error(), "not in the cluster") {
		t.Errorf("Check of crash #2 in a 2-node cluster = %v", err)
	}
	ok := mustParse(t, names3, `
at 1s freeze server1
at 2s crash server1
at 3s restart server1
at 3s partition server1 witness one-way
at 4s heal
at 4s heal server1 server2
at 5s fence-break server2 fail
at 6s fence-break server2 ok`)
	if err := ok.Check(names3); err != nil {
		t.Errorf("Check of a consistent schedule: %v", err)
	}
}

func TestLivenessBringsEverythingBack(t *testing.T) {
	s := mustParse(t, names3, `
at 1s crash server1
at 2s freeze witness
at 3s partition server2 witness one-way
at 4s cut-serial
at 5s fence-break server2 timeout
at 6s clock-drift server2 300ppm
at 7s admin server2 standby
at 8s freeze server2
at 9s thaw server2
at 200s restart server1`)
	if err := s.Check(names3); err != nil {
		t.Fatal(err)
	}
	live := Liveness(s, 3, 100*time.Second)
	want := `at 100s heal
at 100s restore-serial
at 100s fence-break server2 ok
at 100s restart server1
at 100s thaw witness
at 100s clock-drift server1 0ppm
at 100s clock-drift server2 0ppm
at 100s clock-drift witness 0ppm
at 100s admin server2 online
`
	if got := live.Format(names3); got != want {
		t.Fatalf("Liveness =\n%s\nwant\n%s", got, want)
	}
	// The restart at 200s lies after the safety phase, so it is not counted.
	full := append(Schedule{}, s[:len(s)-1]...)
	full = append(full, live...)
	if err := full.Check(names3); err != nil {
		t.Fatalf("schedule + liveness: %v", err)
	}
	st := NewState(3)
	for _, step := range full {
		_ = st.Apply(step)
	}
	if !st.Settled() {
		t.Fatalf("not settled after liveness: %+v", st)
	}
}

func TestLivenessOfAQuietRun(t *testing.T) {
	live := Liveness(nil, 2, time.Minute)
	if got := live.Format(names2); got != "at 60s clock-drift server1 0ppm\nat 60s clock-drift server2 0ppm\n" {
		t.Fatalf("Liveness(nil) = %q", got)
	}
}

func TestForLivenessIsCalm(t *testing.T) {
	r := Rates{
		LatencyMin: time.Millisecond, LatencyMean: 2 * time.Millisecond, LatencyMax: 9 * time.Millisecond,
		Loss: 0.3, Duplicate: 0.1, Reorder: 0.2, ReorderDelay: time.Second, SerialBaud: 9600, SerialByteError: 0.01,
		FenceDuration: 3 * time.Second, FenceFail: 0.5, FenceTimeout: 0.1, ActionDuration: time.Second,
		StartFail: 0.1, StopFail: 0.1, MonitorFail: 0.1, ClockDriftPPMMax: 100,
		CrashEvery: time.Minute, FreezeEvery: time.Minute, PartitionEvery: time.Minute, SerialCutEvery: time.Minute,
		ClockJumpEvery: time.Minute, FenceBreakEvery: time.Minute, AdminEvery: time.Minute, ClockDriftEvery: time.Minute,
		OutageMean: time.Minute,
	}
	l := r.ForLiveness()
	want := Rates{
		LatencyMin: time.Millisecond, LatencyMean: 2 * time.Millisecond, LatencyMax: 9 * time.Millisecond,
		SerialBaud: 9600, FenceDuration: 3 * time.Second, ActionDuration: time.Second,
	}
	if l != want {
		t.Fatalf("ForLiveness = %+v, want %+v", l, want)
	}
}

func TestDescribe(t *testing.T) {
	if got, want := Quiet().Describe(), "lat=50µs/200µs/2ms serial=115200 fence=2s action=500ms"; got != want {
		t.Errorf("Quiet().Describe() = %q, want %q", got, want)
	}
	r := Quiet()
	r.Loss, r.Duplicate, r.Reorder, r.ReorderDelay = 0.03, 0.01, 0.05, 20*time.Millisecond
	r.CrashEvery, r.FreezeEvery, r.OutageMean = 10*time.Minute, 4*time.Minute, 45*time.Second
	r.ClockDriftPPMMax = 200
	want := "lat=50µs/200µs/2ms loss=3% dup=1% reorder=5%@20ms serial=115200 fence=2s action=500ms drift<=200ppm crash/10m freeze/4m outage=45s"
	if got := r.Describe(); got != want {
		t.Errorf("Describe() =\n%q, want\n%q", got, want)
	}
}
