package scenarios

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"tandem/internal/node"
	"tandem/internal/repl"
)

// head is the cluster line most step and expectation tests share.
const head = `cluster server1 server2 fencing stonith group "ip:10.0.0.5/24 service:web" disk 1MiB` + "\n"

// stripPos clears what depends on where things were written, so that ASTs
// from different texts can be compared.
func stripPos(s *Scenario) *Scenario {
	c := *s
	c.Name, c.File = "", ""
	c.Cluster.Pos = Pos{}
	c.Steps = append([]Step(nil), s.Steps...)
	for i := range c.Steps {
		c.Steps[i].Pos = Pos{}
	}
	c.Expects = append([]Expect(nil), s.Expects...)
	for i := range c.Expects {
		c.Expects[i].Pos = Pos{}
	}
	return &c
}

func mustParse(t *testing.T, src string) *Scenario {
	t.Helper()
	s, err := Parse("test.scn", []byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror:\n%v", src, err)
	}
	return s
}

func TestParseTutorial(t *testing.T) {
	src := `# The tutorial: server1 fails, server2 takes over.
#
#   auto_failback off keeps it there.
cluster server1 server2 protocol C fencing stonith keepalive 200ms deadtime 2s auto_failback off group "ip:192.168.1.5/24 fs:/replicated service:sendmail" disk 64MiB
at 0s      write 100 blocks on server1
at 5s      crash server1
expect     primary server2 within 10s
expect     acked-writes-durable
at 20s     restart server1
expect     disks-identical within 60s
expect     primary server2            # auto_failback off
`
	got := mustParse(t, src)
	want := &Scenario{
		Name: "test", File: "test.scn",
		Doc: "The tutorial: server1 fails, server2 takes over.\n\n  auto_failback off keeps it there.",
		Cluster: Cluster{
			Pos:   Pos{"test.scn", 4, 1},
			Nodes: []string{"server1", "server2"}, Protocol: repl.ProtocolC, Fencing: node.FenceStonith,
			Keepalive: 200 * time.Millisecond, Deadtime: 2 * time.Second,
			Group:     []string{"ip:192.168.1.5/24", "fs:/replicated", "service:sendmail"},
			DiskBytes: 64 << 20, DiscardNode: AnyNode,
		},
		Steps: []Step{
			{Pos: Pos{"test.scn", 5, 12}, At: 0, Kind: Write, Blocks: 100, Node: 0, Peer: AnyNode},
			{Pos: Pos{"test.scn", 6, 12}, At: 5 * time.Second, Kind: Crash, Node: 0, Peer: AnyNode},
			{Pos: Pos{"test.scn", 9, 12}, At: 20 * time.Second, Kind: Restart, Node: 0, Peer: AnyNode},
		},
		Expects: []Expect{
			{Pos: Pos{"test.scn", 7, 12}, Cond: CondPrimary, Node: 1, When: Within, D: 10 * time.Second, Anchor: 5 * time.Second},
			{Pos: Pos{"test.scn", 8, 12}, Cond: CondAckedWritesDurable, Node: AnyNode, When: FromHere, Anchor: 5 * time.Second},
			{Pos: Pos{"test.scn", 10, 12}, Cond: CondDisksIdentical, Node: AnyNode, When: Within, D: time.Minute, Anchor: 20 * time.Second},
			{Pos: Pos{"test.scn", 11, 12}, Cond: CondPrimary, Node: 1, When: FromHere, Anchor: 20 * time.Second},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", got, want)
	}
	// What the runner reads: windows and the end of the run.
	for i, w := range []Window{
		{5 * time.Second, 15 * time.Second, Sometime},
		{5 * time.Second, EndOfRun, Throughout},
		{20 * time.Second, 80 * time.Second, Sometime},
		{20 * time.Second, EndOfRun, Throughout},
	} {
		if g := got.Expects[i].Window(); g != w {
			t.Errorf("Expects[%d].Window() = %+v, want %+v", i, g, w)
		}
	}
	if h := got.Horizon(); h != 80*time.Second {
		t.Errorf("Horizon = %v, want 80s (the disks-identical window)", h)
	}
}

func TestParseCluster(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       Cluster
	}{
		{"minimal", "cluster a b", Cluster{Nodes: []string{"a", "b"}, DiscardNode: AnyNode}},
		{"witness", "cluster n1 n2 witness tb fencing witness protocol a",
			Cluster{Nodes: []string{"n1", "n2", "tb"}, Fencing: node.FenceWitness, Protocol: repl.ProtocolA, DiscardNode: AnyNode}},
		{"every option, any case, continued over lines", `cluster alpha beta \
		    PROTOCOL B Fencing None auto-failback on serial off \
		    keepalive 0.5s warntime 1500ms deadtime 3s initdead 1m \
		    fence-delay 1s fence-timeout 10s fence-time 250ms \
		    after-sb-0pri discard-node-beta after-sb-1pri consensus after-sb-2pri disconnect on-io-error pass_on \
		    disk 1000 blocks resync-rate 4MiB/s \
		    group service:db   # a single member needs no quotes`,
			Cluster{Nodes: []string{"alpha", "beta"}, Protocol: repl.ProtocolB, Fencing: node.FenceNone,
				AutoFailback: true, NoSerial: true,
				Keepalive: 500 * time.Millisecond, Warntime: 1500 * time.Millisecond, Deadtime: 3 * time.Second, Initdead: time.Minute,
				FenceDelay: time.Second, FenceTimeout: 10 * time.Second, FenceTime: 250 * time.Millisecond,
				AfterSB0: repl.DiscardNode, DiscardNode: 1, AfterSB1: repl.Consensus, AfterSB2: repl.SB2Disconnect, OnIOError: repl.PassOn,
				DiskBytes: 1000 * BlockSize, ResyncRate: 4 << 20, Group: []string{"service:db"}}},
		{"continuation before a comment", "cluster n1 n2 \\  # the witness follows\n  witness tb fencing witness",
			Cluster{Nodes: []string{"n1", "n2", "tb"}, Fencing: node.FenceWitness, DiscardNode: AnyNode}},
		{"policies", "cluster a b after-sb-0pri Discard_Least_Changes after-sb-1pri discard-secondary",
			Cluster{Nodes: []string{"a", "b"}, AfterSB0: repl.DiscardLeastChanges, AfterSB1: repl.DiscardSecondary, DiscardNode: AnyNode}},
		{"ipv6 group", `cluster a b group "ip:fd00::5/64 fs:/srv/data"`,
			Cluster{Nodes: []string{"a", "b"}, Group: []string{"ip:fd00::5/64", "fs:/srv/data"}, DiscardNode: AnyNode}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := stripPos(mustParse(t, tc.line)).Cluster
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseSteps(t *testing.T) {
	s := func(k StepKind, node, peer int) Step { return Step{At: time.Second, Kind: k, Node: node, Peer: peer} }
	with := func(st Step, f func(*Step)) Step { f(&st); return st }
	const any = AnyNode
	for _, tc := range []struct {
		line string
		want Step
	}{
		{"write 100 blocks on server1", with(s(Write, 0, any), func(s *Step) { s.Blocks = 100 })},
		{"write 1 block", with(s(Write, any, any), func(s *Step) { s.Blocks = 1 })},
		{"write 64KiB on server2", with(s(Write, 1, any), func(s *Step) { s.Blocks = 16 })},
		{"write blocks 10-19", with(s(Write, any, any), func(s *Step) { s.Range = Range{10, 10} })},
		{"read blocks 200- on server2", with(s(Read, 1, any), func(s *Step) { s.Range = Range{200, 0} })},
		{"read blocks 7", with(s(Read, any, any), func(s *Step) { s.Range = Range{7, 1} })},
		{"flush", s(Flush, any, any)},
		{"flush on server2", s(Flush, 1, any)},
		{"crash server1", s(Crash, 0, any)},
		{"restart server1", s(Restart, 0, any)},
		{"freeze server2", s(Freeze, 1, any)},
		{"thaw server2", s(Thaw, 1, any)},
		{"stop server1", s(Stop, 0, any)},
		{"start server1", s(Start, 0, any)},
		{"partition server1 server2", s(Partition, 0, 1)},
		{"partition server2 server1 one-way", with(s(Partition, 1, 0), func(s *Step) { s.OneWay = true })},
		{"heal", s(Heal, any, any)},
		{"heal server2 server1", s(Heal, 1, 0)},
		{"drop 30% server1 server2", with(s(Drop, 0, 1), func(s *Step) { s.Percent = 30 })},
		{"drop 0.5% server1 server2 one-way", with(s(Drop, 0, 1), func(s *Step) { s.Percent = 0.5; s.OneWay = true })},
		{"duplicate 100% server2 server1", with(s(Duplicate, 1, 0), func(s *Step) { s.Percent = 100 })},
		{"delay 150ms server1 server2", with(s(Delay, 0, 1), func(s *Step) { s.Delay = 150 * time.Millisecond })},
		{"cut-serial", s(CutSerial, any, any)},
		{"restore-serial", s(RestoreSerial, any, any)},
		{"disk-fail server2", s(DiskFail, 1, any)},
		{"disk-replace server2", s(DiskReplace, 1, any)},
		{"disk-heal server2", s(DiskHeal, 1, any)},
		{"read-errors server1 blocks 42", with(s(ReadErrors, 0, any), func(s *Step) { s.Range = Range{42, 1} })},
		{"write-errors server1", s(WriteErrors, 0, any)},
		{"corrupt server2 block 3-4", with(s(Corrupt, 1, any), func(s *Step) { s.Range = Range{3, 2} })},
		{"lose-writes server2 blocks 0-255", with(s(LoseWrites, 1, any), func(s *Step) { s.Range = Range{0, 256} })},
		{"stall server1", s(Stall, 0, any)},
		{"disk-full server1", s(DiskFull, 0, any)},
		{"disk-full server1 from block 200", with(s(DiskFull, 0, any), func(s *Step) { s.Range.First = 200 })},
		{"clock-jump server1 -1h", with(s(ClockJump, 0, any), func(s *Step) { s.Delta = -time.Hour })},
		{"clock-jump server2 +2.5s", with(s(ClockJump, 1, any), func(s *Step) { s.Delta = 2500 * time.Millisecond })},
		{"clock-drift server2 -300ppm", with(s(ClockDrift, 1, any), func(s *Step) { s.PPM = -300 })},
		{"fence-agent server2 timeout", with(s(FenceAgent, 1, any), func(s *Step) { s.Mode = "timeout" })},
		{"resource-fail server1 service:web monitor", with(s(ResourceFail, 0, any), func(s *Step) { s.Resource = 1; s.Mode = "monitor"; s.Count = 1 })},
		{"resource-fail server2 ip:10.0.0.5/24 start 3 times", with(s(ResourceFail, 1, any), func(s *Step) { s.Mode = "start"; s.Count = 3 })},
		{"primary server2 --force", with(s(Primary, 1, any), func(s *Step) { s.Force = true })},
		{"primary server2", s(Primary, 1, any)},
		{"secondary server1", s(Secondary, 0, any)},
		{"connect server2 --discard-my-data", with(s(Connect, 1, any), func(s *Step) { s.DiscardMyData = true })},
		{"disconnect server2", s(Disconnect, 1, any)},
		{"verify server1", s(Verify, 0, any)},
		{"invalidate server2", s(Invalidate, 1, any)},
		{"detach server2", s(Detach, 1, any)},
		{"pause-sync server1", s(PauseSync, 0, any)},
		{"resume-sync server1", s(ResumeSync, 0, any)},
		{"standby server1", s(Standby, 0, any)},
		{"online server1", s(Online, 0, any)},
		{"takeover server2", s(Takeover, 1, any)},
		{"cleanup server2", s(Cleanup, 1, any)},
		{"end", s(End, any, any)},
		{"Cut_Serial", s(CutSerial, any, any)}, // keywords ignore case and _ vs -
	} {
		t.Run(tc.line, func(t *testing.T) {
			prefix := ""
			switch tc.want.Kind {
			case Restart:
				prefix = "at 0s crash server1\n"
			case Thaw:
				prefix = "at 0s freeze server2\n"
			case Start:
				prefix = "at 0s stop server1\n"
			case RestoreSerial:
				prefix = "at 0s cut-serial\n"
			}
			sc := stripPos(mustParse(t, head+prefix+"at 1s "+tc.line))
			got := sc.Steps[len(sc.Steps)-1]
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseExpects(t *testing.T) {
	const any = AnyNode
	e := func(k CondKind, node int, when When) Expect {
		return Expect{Cond: k, Node: node, When: when, Anchor: 2 * time.Second}
	}
	with := func(x Expect, f func(*Expect)) Expect { f(&x); return x }
	for _, tc := range []struct {
		line string
		want []Expect
	}{
		{"primary server2", []Expect{e(CondPrimary, 1, FromHere)}},
		{"primary none for 5s", []Expect{with(e(CondPrimary, any, For), func(x *Expect) { x.D = 5 * time.Second })}},
		{"at 12s state server2 disk UpToDate conn StandAlone", []Expect{with(e(CondState, 1, AtTime), func(x *Expect) {
			x.T, x.Disk, x.Conn = 12*time.Second, repl.UpToDate, repl.StandAlone
		})}},
		{"at end state server1 role secondary peer-disk outdated", []Expect{with(e(CondState, 0, AtEnd), func(x *Expect) {
			x.Role, x.PeerDisk = repl.Secondary, repl.Outdated
		})}},
		{"no-split-brain acked-writes-durable", []Expect{e(CondNoSplitBrain, any, FromHere), e(CondAckedWritesDurable, any, FromHere)}},
		{"split-brain-detected within 10s", []Expect{with(e(CondSplitBrainDetected, any, Within), func(x *Expect) { x.D = 10 * time.Second })}},
		{"split-brain-resolved victim server2", []Expect{e(CondSplitBrainResolved, 1, FromHere)}},
		{"split-brain-resolved", []Expect{e(CondSplitBrainResolved, any, FromHere)}},
		{"no-failover for 1m", []Expect{with(e(CondNoFailover, any, For), func(x *Expect) { x.D = time.Minute })}},
		{"failover within 3s", []Expect{with(e(CondFailover, any, Within), func(x *Expect) { x.D = 3 * time.Second })}},
		{"failover to server2", []Expect{e(CondFailover, 1, FromHere)}},
		{"resync-bytes <= 4MiB", []Expect{with(e(CondMeasure, any, FromHere), func(x *Expect) { x.Measure, x.Op, x.Value = ResyncBytes, LE, 4<<20 })}},
		{"resync-bytes == 0", []Expect{with(e(CondMeasure, any, FromHere), func(x *Expect) { x.Measure, x.Op, x.Value = ResyncBytes, EQ, 0 })}},
		{"resync-bytes < 10 blocks within 30s", []Expect{with(e(CondMeasure, any, Within), func(x *Expect) {
			x.Measure, x.Op, x.Value, x.D = ResyncBytes, LT, 10*BlockSize, 30*time.Second
		})}},
		{"lost-writes >= 1 failovers == 1 fences > 0 verify-mismatches == 3 blocks", []Expect{
			with(e(CondMeasure, any, FromHere), func(x *Expect) { x.Measure, x.Op, x.Value = LostWrites, GE, 1 }),
			with(e(CondMeasure, any, FromHere), func(x *Expect) { x.Measure, x.Op, x.Value = Failovers, EQ, 1 }),
			with(e(CondMeasure, any, FromHere), func(x *Expect) { x.Measure, x.Op, x.Value = Fences, GT, 0 }),
			with(e(CondMeasure, any, FromHere), func(x *Expect) { x.Measure, x.Op, x.Value = VerifyMismatches, EQ, 3 }),
		}},
	} {
		t.Run(tc.line, func(t *testing.T) {
			sc := stripPos(mustParse(t, head+"at 2s crash server1\nexpect "+tc.line))
			if !reflect.DeepEqual(sc.Expects, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", sc.Expects, tc.want)
			}
		})
	}
}

func TestWindows(t *testing.T) {
	sc := mustParse(t, head+`expect no-split-brain
at 10s crash server1
expect failover within 5s
expect primary server2 within 5s
expect primary server2 for 5s
expect at 30s primary server2
expect at end disks-identical
expect failover
expect resync-bytes <= 1MiB
`)
	want := []Window{
		{0, EndOfRun, Throughout},
		{10 * time.Second, 15 * time.Second, Sometime},
		{10 * time.Second, 15 * time.Second, Sometime},
		{10 * time.Second, 15 * time.Second, Throughout},
		{30 * time.Second, 30 * time.Second, Throughout},
		{EndOfRun, EndOfRun, Throughout},
		{10 * time.Second, EndOfRun, Sometime},
		{10 * time.Second, EndOfRun, Counted},
	}
	for i, w := range want {
		if g := sc.Expects[i].Window(); g != w {
			t.Errorf("%s: Window() = %+v, want %+v", formatCond(&sc.Expects[i], sc.Cluster.Nodes), g, w)
		}
	}
}

func TestTimeline(t *testing.T) {
	sc := mustParse(t, head+`at 0s for 30s write 300 blocks
at 10s for 5s partition server1 server2 one-way
at 10s for 1m cut-serial
at 15s crash server2
at 20s for 10s drop 20% server1 server2
at 20s for 2s fence-agent server1 fail
at 30s for 4s flap server1 server2 every 2s down 500ms
at 40s for 1s freeze server1
at 41s restart server2
at 70s end
`)
	var got []string
	for _, st := range sc.Timeline() {
		got = append(got, st.String())
	}
	want := []string{
		"at 0s for 30s write 300 blocks", // workload keeps its window: the runner spreads it
		"at 10s partition #0 #1 one-way",
		"at 10s cut-serial",
		"at 15s heal #0 #1",
		"at 15s crash #1",
		"at 20s drop 20% #0 #1",
		"at 20s fence-agent #0 fail",
		"at 22s fence-agent #0 ok",
		"at 30s drop 0% #0 #1",
		"at 30s partition #0 #1",
		"at 30.5s heal #0 #1",
		"at 32s partition #0 #1",
		"at 32.5s heal #0 #1",
		"at 40s freeze #0",
		"at 41s thaw #0",
		"at 41s restart #1",
		"at 70s restore-serial",
		"at 70s end",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Timeline:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if h := sc.Horizon(); h != 70*time.Second {
		t.Errorf("Horizon = %v, want the end step's 70s", h)
	}
}

func TestErrorListIsReturned(t *testing.T) {
	_, err := Parse("x.scn", []byte("cluster a b\nat 1s crash c\n"))
	var list ErrorList
	if !errors.As(err, &list) || len(list) != 1 || list[0].Pos != (Pos{"x.scn", 2, 13}) || list[0].Suggest != "" {
		t.Fatalf("err = %#v, want one *Error at x.scn:2:13", err)
	}
}

func TestWithDefaults(t *testing.T) {
	c := mustParse(t, "cluster a b deadtime 4s").Cluster.WithDefaults()
	if c.Keepalive != time.Second || c.Warntime != 2*time.Second || c.Initdead != 8*time.Second ||
		c.Fencing != node.FenceNone || c.Protocol != repl.ProtocolC || c.AfterSB0 != repl.SB0Disconnect ||
		c.OnIOError != repl.Detach || c.DiskBytes != DefaultDiskBytes || c.FenceTime != DefaultFenceTime ||
		c.ResyncRate != DefaultResyncRate || c.FenceTimeout != 20*time.Second {
		t.Fatalf("WithDefaults = %+v", c)
	}
}
