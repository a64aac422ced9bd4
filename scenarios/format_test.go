package scenarios

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"tandem/internal/node"
	"tandem/internal/repl"
)

// TestRoundTrip is the property --emit-scenario relies on: for any valid
// scenario s, Parse(Format(s)) == s (positions aside), and formatting again
// gives the same text.
func TestRoundTrip(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		s := genScenario(rt)
		text := Format(s)
		got, err := Parse("gen.scn", text)
		if err != nil {
			rt.Fatalf("Parse(Format(s)) failed:\n%s\n%v", text, err)
		}
		if !reflect.DeepEqual(stripPos(got), stripPos(s)) {
			rt.Fatalf("Parse(Format(s)) != s\ntext:\n%s\ngot:  %+v\nwant: %+v", text, stripPos(got), stripPos(s))
		}
		if again := Format(got); !bytes.Equal(again, text) {
			rt.Fatalf("Format is not stable:\n%s\nthen:\n%s", text, again)
		}
	})
}

func TestFormatTutorial(t *testing.T) {
	src := `# The tutorial.
cluster server1 server2 protocol C fencing stonith keepalive 200ms deadtime 2s auto_failback off group "ip:192.168.1.5/24 fs:/replicated service:sendmail" disk 64MiB
expect no-split-brain
at 0s      write 100 blocks on server1
at 5s      crash server1
expect     primary server2 within 10s
at 20s     restart server1
at 30s for 90s   partition server1 server2 one-way
expect     disks-identical within 60s
expect at end state server1 role Secondary disk UpToDate
`
	want := `# The tutorial.

cluster server1 server2 \
        protocol C fencing stonith auto_failback off \
        keepalive 200ms deadtime 2s \
        disk 64MiB \
        group "ip:192.168.1.5/24 fs:/replicated service:sendmail"

at 0s           write 100 blocks on server1
expect          no-split-brain
at 5s           crash server1
expect          primary server2 within 10s
at 20s          restart server1
at 30s for 90s  partition server1 server2 one-way
expect          disks-identical within 60s
expect at end   state server1 role Secondary disk UpToDate
`
	got := string(Format(mustParse(t, src)))
	if got != want {
		t.Fatalf("Format:\n%s\nwant:\n%s", got, want)
	}
}

func TestDurationFormat(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"}, {time.Nanosecond, "0.000001ms"}, {500 * time.Microsecond, "0.5ms"}, {200 * time.Millisecond, "200ms"},
		{time.Second, "1s"}, {4100 * time.Millisecond, "4.1s"}, {time.Minute, "60s"}, {90 * time.Second, "90s"},
		{2 * time.Minute, "2m"}, {time.Hour, "60m"}, {3 * time.Hour, "3h"}, {-1500 * time.Millisecond, "-1.5s"},
	} {
		got := formatDuration(tc.d)
		if got != tc.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
		back, ok := parseDuration(got, true)
		if !ok || back != tc.d {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", got, back, ok, tc.d)
		}
	}
	for _, bad := range []string{"", "s", "1", "1.s", ".5s", "1.5", "1e3s", "1m30s", "1d", "-1s", "+1s", "1.0000000001s", "1001h"} {
		if d, ok := parseDuration(bad, false); ok {
			t.Errorf("parseDuration(%q) = %v, want an error", bad, d)
		}
	}
}

// ---- the generator ----

var (
	genNames   = []string{"server1", "server2", "alpha", "beta", "db-a", "n.2", "X_1", "witness1"}
	genMembers = []string{"ip:192.168.1.5/24", "ip:fd00::1/64", "fs:/replicated", "fs:/srv/db", "service:sendmail", "service:web"}
	genDurs    = []time.Duration{time.Millisecond, 250 * time.Millisecond, time.Second, 1500 * time.Millisecond, 10 * time.Second, time.Minute, 3 * time.Minute}
)

func genDur(rt *rapid.T, label string) time.Duration {
	return rapid.SampledFrom(genDurs).Draw(rt, label)
}

func genCluster(rt *rapid.T) Cluster {
	names := rapid.Permutation(genNames).Draw(rt, "names")
	c := Cluster{Nodes: names[:2], DiscardNode: AnyNode}
	if rapid.Bool().Draw(rt, "witness") {
		c.Nodes = names[:3]
		c.Fencing = node.FenceWitness
	} else {
		c.Fencing = rapid.SampledFrom([]node.Fencing{0, node.FenceNone, node.FenceStonith}).Draw(rt, "fencing")
	}
	c.Protocol = rapid.SampledFrom([]repl.Protocol{0, repl.ProtocolA, repl.ProtocolB, repl.ProtocolC}).Draw(rt, "protocol")
	if rapid.Bool().Draw(rt, "timings") {
		// Timings obey node.Config's rules: deadtime > 2×keepalive,
		// keepalive <= warntime < deadtime <= initdead.
		c.Keepalive = rapid.SampledFrom([]time.Duration{100 * time.Millisecond, 200 * time.Millisecond, time.Second}).Draw(rt, "keepalive")
		c.Deadtime = c.Keepalive * time.Duration(rapid.IntRange(3, 30).Draw(rt, "deadtimeX"))
		c.Warntime = c.Keepalive * time.Duration(rapid.IntRange(1, int(c.Deadtime/c.Keepalive)-1).Draw(rt, "warntimeX"))
		c.Initdead = c.Deadtime * time.Duration(rapid.IntRange(1, 3).Draw(rt, "initdeadX"))
	}
	for _, d := range []*time.Duration{&c.FenceDelay, &c.FenceTimeout, &c.FenceTime} {
		if rapid.Bool().Draw(rt, "fenceTiming") {
			*d = genDur(rt, "fenceDur")
		}
	}
	c.AutoFailback = rapid.Bool().Draw(rt, "autoFailback")
	c.NoSerial = rapid.IntRange(0, 4).Draw(rt, "noSerial") == 0
	if g := rapid.SliceOfDistinct(rapid.SampledFrom(genMembers), rapid.ID[string]).Draw(rt, "group"); len(g) > 0 {
		c.Group = g // nil when empty, as Parse leaves it
	}
	if rapid.Bool().Draw(rt, "disk") {
		c.DiskBytes = BlockSize * rapid.Uint64Range(16, 1<<20).Draw(rt, "diskBlocks")
	}
	c.AfterSB0 = repl.SB0(rapid.IntRange(0, int(repl.DiscardNode)).Draw(rt, "sb0"))
	if c.AfterSB0 == repl.DiscardNode {
		c.DiscardNode = rapid.IntRange(0, 1).Draw(rt, "discardNode")
	}
	c.AfterSB1 = repl.SB1(rapid.IntRange(0, int(repl.DiscardSecondary)).Draw(rt, "sb1"))
	c.AfterSB2 = repl.SB2(rapid.IntRange(0, int(repl.SB2Disconnect)).Draw(rt, "sb2"))
	c.OnIOError = repl.OnIOError(rapid.IntRange(0, int(repl.PassOn)).Draw(rt, "onIOError"))
	if rapid.Bool().Draw(rt, "resyncRate") {
		c.ResyncRate = BlockSize * rapid.Uint64Range(1, 1<<18).Draw(rt, "resyncBlocks")
	}
	return c
}

func genRange(rt *rapid.T, c *Cluster) Range {
	blocks := c.DiskBlocks()
	first := rapid.Uint64Range(0, blocks-1).Draw(rt, "first")
	switch rapid.IntRange(0, 2).Draw(rt, "rangeForm") {
	case 0:
		return Range{First: first, Count: 1}
	case 1:
		return Range{First: first} // to the end
	}
	return Range{First: first, Count: rapid.Uint64Range(1, blocks-first).Draw(rt, "count")}
}

// genStep draws a step of any kind with valid arguments; whether the
// machine states allow it is checked by the caller.
func genStep(rt *rapid.T, c *Cluster, at time.Duration) Step {
	s := Step{At: at, Node: AnyNode, Peer: AnyNode}
	s.Kind = StepKind(rapid.IntRange(int(Write), int(Cleanup)).Draw(rt, "kind"))
	data := func() int { return rapid.IntRange(0, 1).Draw(rt, "node") }
	anyNode := func() int { return rapid.IntRange(0, len(c.Nodes)-1).Draw(rt, "node") }
	pair := func() {
		s.Node = anyNode()
		s.Peer = (s.Node + rapid.IntRange(1, len(c.Nodes)-1).Draw(rt, "peer")) % len(c.Nodes)
	}
	switch k := s.Kind; {
	case k == Write || k == Read:
		if rapid.Bool().Draw(rt, "byCount") {
			s.Blocks = rapid.Uint64Range(1, 5000).Draw(rt, "blocks")
		} else {
			s.Range = genRange(rt, c)
		}
		if rapid.Bool().Draw(rt, "on") {
			s.Node = data()
		}
	case k == Flush:
		if rapid.Bool().Draw(rt, "on") {
			s.Node = data()
		}
	case k >= Crash && k <= Start, k == ClockJump, k == ClockDrift:
		s.Node = anyNode()
		switch k {
		case ClockJump:
			s.Delta = genDur(rt, "delta")
			if rapid.Bool().Draw(rt, "back") {
				s.Delta = -s.Delta
			}
		case ClockDrift:
			s.PPM = rapid.Int64Range(-maxPPM, maxPPM).Draw(rt, "ppm")
		}
	case k == Partition || k == Drop || k == Duplicate || k == Delay:
		pair()
		s.OneWay = rapid.Bool().Draw(rt, "oneWay")
		switch k {
		case Drop, Duplicate:
			s.Percent = float64(rapid.IntRange(0, 800).Draw(rt, "eighths")) / 8
		case Delay:
			s.Delay = genDur(rt, "delay")
		}
	case k == Heal:
		if rapid.Bool().Draw(rt, "pair") {
			pair()
		}
	case k == Flap:
		pair()
		s.Every = rapid.SampledFrom([]time.Duration{time.Second, 2 * time.Second, 5 * time.Second}).Draw(rt, "every")
		s.Down = s.Every / time.Duration(rapid.IntRange(2, 10).Draw(rt, "downDiv"))
		s.For = s.Every * time.Duration(rapid.IntRange(1, 5).Draw(rt, "flaps"))
	case k == CutSerial || k == RestoreSerial:
	case k == ReadErrors || k == WriteErrors || k == LoseWrites:
		s.Node = data()
		if rapid.Bool().Draw(rt, "range") {
			s.Range = genRange(rt, c)
		}
	case k == Corrupt:
		s.Node = data()
		s.Range = genRange(rt, c)
	case k == DiskFull:
		s.Node = data()
		s.Range.First = rapid.Uint64Range(0, c.DiskBlocks()-1).Draw(rt, "fullFrom")
	case k == FenceAgent:
		s.Node = data()
		s.Mode = rapid.SampledFrom(FenceModes).Draw(rt, "mode")
	case k == ResourceFail:
		s.Node = data()
		s.Resource = rapid.IntRange(0, max(0, len(c.Group)-1)).Draw(rt, "resource")
		s.Mode = rapid.SampledFrom(ResourceOps).Draw(rt, "op")
		s.Count = rapid.IntRange(1, 5).Draw(rt, "times")
	default: // one data node: disk and operator commands
		s.Node = data()
		s.Force = k == Primary && rapid.Bool().Draw(rt, "force")
		s.DiscardMyData = k == Connect && rapid.Bool().Draw(rt, "discard")
	}
	spec := stepSpecs[s.Kind]
	if (spec.undo != 0 || spec.workload) && rapid.IntRange(0, 3).Draw(rt, "window") == 0 {
		s.For = genDur(rt, "for")
	}
	return s
}

// stepAllowed says whether Parse would accept s after the steps already in
// sc: the cluster's options permit it and the machine states do.
func stepAllowed(sc *Scenario, s Step) bool {
	c := &sc.Cluster
	switch s.Kind {
	case FenceAgent:
		if c.WithDefaults().Fencing != node.FenceStonith {
			return false
		}
	case ResourceFail:
		if len(c.Group) == 0 {
			return false
		}
	case CutSerial, RestoreSerial:
		if c.NoSerial {
			return false
		}
	}
	trial := *sc
	trial.Steps = append(append([]Step(nil), sc.Steps...), s)
	var errs errList
	checkTimeline(&trial, &errs)
	return len(errs.list) == 0
}

func genExpect(rt *rapid.T, c *Cluster, anchor time.Duration) Expect {
	e := Expect{Anchor: anchor, Node: AnyNode}
	e.Cond = CondKind(rapid.IntRange(int(CondPrimary), int(CondMeasure)).Draw(rt, "cond"))
	data := func() int { return rapid.IntRange(0, 1).Draw(rt, "node") }
	switch e.Cond {
	case CondPrimary, CondSplitBrainResolved, CondFailover:
		if rapid.Bool().Draw(rt, "someNode") {
			e.Node = data()
		}
	case CondState:
		e.Node = data()
		for e.Role == 0 && e.Disk == 0 && e.Conn == 0 && e.PeerDisk == 0 {
			if rapid.Bool().Draw(rt, "role") {
				e.Role = repl.Role(rapid.IntRange(1, len(roleNames)).Draw(rt, "roleV"))
			}
			if rapid.Bool().Draw(rt, "disk") {
				e.Disk = repl.DiskState(rapid.IntRange(1, len(diskNames)).Draw(rt, "diskV"))
			}
			if rapid.Bool().Draw(rt, "conn") {
				e.Conn = repl.ConnState(rapid.IntRange(1, len(connNames)).Draw(rt, "connV"))
			}
			if rapid.Bool().Draw(rt, "peerDisk") {
				e.PeerDisk = repl.DiskState(rapid.IntRange(1, len(diskNames)).Draw(rt, "peerDiskV"))
			}
		}
	case CondMeasure:
		e.Measure = Measure(rapid.IntRange(int(ResyncBytes), int(numMeasures-1)).Draw(rt, "measure"))
		e.Op = rapid.SampledFrom(cmpOps).Draw(rt, "op")
		e.Value = rapid.Uint64Range(0, 1<<40).Draw(rt, "value")
	}
	var whens []When
	switch condSpecs[e.Cond].class {
	case stateClass:
		whens = []When{FromHere, Within, For, AtTime, AtEnd}
	case invariant:
		whens = []When{FromHere, For}
	default:
		whens = []When{FromHere, Within}
	}
	e.When = rapid.SampledFrom(whens).Draw(rt, "when")
	switch e.When {
	case Within, For:
		e.D = genDur(rt, "d")
	case AtTime:
		e.T = genDur(rt, "t")
	}
	return e
}

func genScenario(rt *rapid.T) *Scenario {
	s := &Scenario{Name: "gen", File: "gen.scn", Cluster: genCluster(rt)}
	s.Doc = strings.Join(rapid.SliceOfN(rapid.StringMatching(`( ?[A-Za-z0-9,.:()#"'%/-]){0,20}`), 0, 3).Draw(rt, "doc"), "\n")
	var at time.Duration
	for range rapid.IntRange(0, 25).Draw(rt, "lines") {
		if rapid.IntRange(0, 2).Draw(rt, "expect") == 0 {
			s.Expects = append(s.Expects, genExpect(rt, &s.Cluster, at))
			continue
		}
		next := at + rapid.SampledFrom([]time.Duration{0, 0, time.Millisecond, time.Second, 2500 * time.Millisecond, time.Minute}).Draw(rt, "dt")
		st := genStep(rt, &s.Cluster, next)
		if stepAllowed(s, st) {
			s.Steps = append(s.Steps, st)
			at = next
		}
	}
	if rapid.IntRange(0, 3).Draw(rt, "end") == 0 {
		end := Step{At: at + genDur(rt, "endAfter"), Kind: End, Node: AnyNode, Peer: AnyNode}
		for _, st := range s.Steps {
			end.At = max(end.At, st.At+st.For) // the run lasts past every window
		}
		s.Steps = append(s.Steps, end)
		var kept []Expect
		for _, e := range s.Expects {
			if w := e.Window(); w.To == EndOfRun || w.To <= end.At {
				kept = append(kept, e)
			}
		}
		s.Expects = kept
	}
	return s
}
