package faults

import (
	"errors"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// One example per Kind: the scenario syntax is fixed here.
var formatExamples = []struct {
	step Step
	line string
}{
	{Step{At: 12500 * time.Millisecond, Kind: Crash, Node: 0}, "at 12.5s crash server1"},
	{Step{At: 20 * time.Second, Kind: Restart, Node: 0}, "at 20s restart server1"},
	{Step{At: time.Second, Kind: Freeze, Node: 2}, "at 1s freeze witness"},
	{Step{At: 31 * time.Second, Kind: Thaw, Node: 2}, "at 31s thaw witness"},
	{Step{At: 3 * time.Second, Kind: Partition, Node: 0, Peer: 1}, "at 3s partition server1 server2"},
	{Step{At: 3 * time.Second, Kind: Partition, Node: 0, Peer: 1, OneWay: true}, "at 3s partition server1 server2 one-way"},
	{Step{At: 4 * time.Second, Kind: Heal, Node: -1, Peer: -1}, "at 4s heal"},
	{Step{At: 4100 * time.Millisecond, Kind: Heal, Node: 1, Peer: 2}, "at 4.1s heal server2 witness"},
	{Step{At: 0, Kind: CutSerial}, "at 0s cut-serial"},
	{Step{At: time.Millisecond, Kind: RestoreSerial}, "at 0.001s restore-serial"},
	{Step{At: 5 * time.Second, Kind: ClockDrift, Node: 1, PPM: 200}, "at 5s clock-drift server2 200ppm"},
	{Step{At: 5 * time.Second, Kind: ClockDrift, Node: 1, PPM: -50}, "at 5s clock-drift server2 -50ppm"},
	{Step{At: 6 * time.Second, Kind: ClockJump, Node: 0, Delta: -1500 * time.Millisecond}, "at 6s clock-jump server1 -1.5s"},
	{Step{At: 7 * time.Second, Kind: FenceBreak, Node: 0, Mode: "timeout"}, "at 7s fence-break server1 timeout"},
	{Step{At: 8 * time.Second, Kind: ResourceBreak, Node: 1, Resource: 2, Op: "monitor", Count: 3}, "at 8s resource-break server2 2 monitor 3"},
	{Step{At: 9 * time.Second, Kind: Admin, Node: 1, Command: "standby"}, "at 9s admin server2 standby"},
}

func TestFormatParseEveryKind(t *testing.T) {
	seen := map[Kind]bool{}
	for _, ex := range formatExamples {
		seen[ex.step.Kind] = true
		if got := ex.step.Format(names3); got != ex.line {
			t.Errorf("Format(%+v) = %q, want %q", ex.step, got, ex.line)
		}
		got, err := ParseStep(ex.line, names3)
		if err != nil {
			t.Errorf("ParseStep(%q): %v", ex.line, err)
			continue
		}
		if got != ex.step {
			t.Errorf("ParseStep(%q) = %+v, want %+v", ex.line, got, ex.step)
		}
	}
	for _, k := range Kinds() {
		if !seen[k] {
			t.Errorf("no format example for %v", k)
		}
	}
}

func TestParseAcceptsVariants(t *testing.T) {
	for line, want := range map[string]string{
		"  at   1m30s  crash   server1 ":         "at 90s crash server1",
		"at 200ms clock-jump server2 +2s":        "at 0.2s clock-jump server2 2s",
		"at 1s clock-drift server1 +7ppm":        "at 1s clock-drift server1 7ppm",
		"at 1s crash #1":                         "at 1s crash server2",
		"at 0 partition witness server1":         "at 0s partition witness server1",
		"at 2.000s restart server1":              "at 2s restart server1",
		"at 1s resource-break server1 0 start 1": "at 1s resource-break server1 0 start 1",
	} {
		s, err := ParseStep(line, names3)
		if err != nil {
			t.Errorf("ParseStep(%q): %v", line, err)
			continue
		}
		if got := s.Format(names3); got != want {
			t.Errorf("ParseStep(%q) formats as %q, want %q", line, got, want)
		}
	}
}

func TestFormatWithoutNames(t *testing.T) {
	s := Step{At: time.Second, Kind: Partition, Node: 2, Peer: 0}
	line := s.Format(nil)
	if line != "at 1s partition #2 #0" {
		t.Fatalf("Format(nil) = %q", line)
	}
	got, err := ParseStep(line, nil)
	if err != nil || got != s {
		t.Fatalf("ParseStep(%q, nil) = %+v, %v", line, got, err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		line string
		word int
		want []string // substrings of the message
	}{
		{"at 1s crsh server1", 3, []string{`"crsh"`, `unknown verb (did you mean "crash"?)`, "want one of crash, restart, freeze"}},
		{"at 1s partiton server1 server2", 3, []string{`did you mean "partition"?`}},
		{"at 1s cutserial", 3, []string{`did you mean "cut-serial"?`}},
		{"at 1s drift server1 5ppm", 3, []string{`did you mean "clock-drift"?`}},
		{"at 1s explode server1", 3, []string{"unknown verb; want one of"}},
		{"at 1s crash server9", 4, []string{`"server9"`, "unknown node", "want one of server1, server2, witness"}},
		{"at 1s crash sevrer1", 4, []string{`did you mean "server1"?`}},
		{"at 1s partition server1 nobody", 5, []string{"unknown peer", "want one of server1, server2"}},
		{"at 1x crash server1", 2, []string{`"1x"`, "bad time", "such as 4.1s"}},
		{"at -1s crash server1", 2, []string{"bad time"}},
		{"at1s crash server1", 1, []string{`want "at <time> <verb> ..."`}},
		{"", 1, []string{`missing "at"`}},
		{"at", 2, []string{"missing time"}},
		{"at 1s", 3, []string{"missing verb"}},
		{"at 1s crash", 4, []string{"missing node", `"at <time> crash <node>"`}},
		{"at 1s crash server1 now", 5, []string{"unexpected extra word", `"at <time> crash <node>"`}},
		{"at 1s partition server1 server1", 5, []string{"two different nodes"}},
		{"at 1s partition server1 server2 oneway", 6, []string{`want "one-way" or nothing`}},
		{"at 1s heal server1", 5, []string{"missing peer"}},
		{"at 1s clock-drift server1 5", 5, []string{"bad drift", "200ppm"}},
		{"at 1s clock-jump server1 soon", 5, []string{"bad jump"}},
		{"at 1s fence-break server1 timout", 5, []string{`did you mean "timeout"?`, "want one of fail, timeout, ok"}},
		{"at 1s resource-break server1 x start 1", 5, []string{"bad resource index"}},
		{"at 1s resource-break server1 0 strat 1", 6, []string{`did you mean "start"?`}},
		{"at 1s resource-break server1 0 start 0", 7, []string{"bad failure count", "≥ 1"}},
		{"at 1s admin server1 standy", 5, []string{`did you mean "standby"?`}},
		{"at 1s crash #3", 4, []string{"unknown node"}},
	} {
		_, err := ParseStep(tc.line, names3)
		if err == nil {
			t.Errorf("ParseStep(%q) succeeded", tc.line)
			continue
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("ParseStep(%q) error %T is not a *ParseError", tc.line, err)
			continue
		}
		if pe.Word != tc.word {
			t.Errorf("ParseStep(%q): word %d, want %d (%v)", tc.line, pe.Word, tc.word, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseStep(%q) = %q, want it to contain %q", tc.line, err, w)
			}
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		time.Nanosecond:                       "0.000000001s",
		4100 * time.Millisecond:               "4.1s",
		-2 * time.Second:                      "-2s",
		2 * time.Hour:                         "7200s",
		12*time.Second + 500*time.Microsecond: "12.0005s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%d) = %q, want %q", d, got, want)
		}
		back, err := time.ParseDuration(want)
		if err != nil || back != d {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", want, back, err, d)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"crash", "crash", 0}, {"crsh", "crash", 1}, {"kitten", "sitting", 3}, {"", "abc", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

func TestKindString(t *testing.T) {
	for _, k := range Kinds() {
		back, ok := ParseKind(k.String())
		if !ok || back != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), back, ok)
		}
	}
	if got := Kind(0).String(); got != "kind(0)" {
		t.Errorf("Kind(0) = %q", got)
	}
	if got := Kind(99).String(); got != "kind(99)" {
		t.Errorf("Kind(99) = %q", got)
	}
}

// genStep draws any valid step for a cluster of nodes nodes.
func genStep(t *rapid.T, nodes int) Step {
	node := func(label string) int { return rapid.IntRange(0, nodes-1).Draw(t, label) }
	s := Step{
		At:   time.Duration(rapid.Int64Range(0, int64(1000*time.Hour)).Draw(t, "at")),
		Kind: rapid.SampledFrom(Kinds()).Draw(t, "kind"),
	}
	// Fill every field, so the test also checks that Format ignores the
	// fields a Kind does not use.
	s.Node = node("node")
	s.Peer = rapid.IntRange(0, nodes-1).Filter(func(p int) bool { return p != s.Node }).Draw(t, "peer")
	s.OneWay = rapid.Bool().Draw(t, "oneway")
	s.PPM = rapid.Int64Range(-1_000_000, 1_000_000).Draw(t, "ppm")
	s.Delta = time.Duration(rapid.Int64Range(-int64(100*time.Hour), int64(100*time.Hour)).Draw(t, "delta"))
	s.Mode = rapid.SampledFrom(FenceModes).Draw(t, "mode")
	s.Resource = rapid.IntRange(0, 20).Draw(t, "resource")
	s.Op = rapid.SampledFrom(ResourceOps).Draw(t, "op")
	s.Count = rapid.IntRange(1, 100).Draw(t, "count")
	s.Command = rapid.SampledFrom(AdminCommands).Draw(t, "command")
	if (s.Kind == ResourceBreak || s.Kind == Admin) && s.Node > 1 {
		s.Node = 0
		if s.Peer == 0 {
			s.Peer = 1
		}
	}
	if s.Kind == Heal && rapid.Bool().Draw(t, "heal-all") {
		s.Node = -1
	}
	return s
}

func TestFormatParseRoundTripRapid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		names := names2
		if rapid.Bool().Draw(t, "witness") {
			names = names3
		}
		s := genStep(t, len(names))
		line := s.Format(names)
		if strings.Contains(line, "\n") || strings.Contains(line, "  ") {
			t.Fatalf("Format = %q: not one regular line", line)
		}
		got, err := ParseStep(line, names)
		if err != nil {
			t.Fatalf("ParseStep(%q): %v", line, err)
		}
		if want := s.Canonical(); got != want {
			t.Fatalf("ParseStep(%q) = %+v, want %+v", line, got, want)
		}
		if again := got.Format(names); again != line {
			t.Fatalf("Format(ParseStep(%q)) = %q", line, again)
		}
	})
}
