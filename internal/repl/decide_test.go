package repl

import (
	"testing"

	"tandem/internal/meta"
	"tandem/internal/proto"
)

func gens(cur, bm, h0, h1 meta.UUID) meta.Generations {
	return meta.Generations{Current: cur, Bitmap: bm, History: [2]meta.UUID{h0, h1}}
}

// TestDecideTable covers every row of DRBD's generation comparison, from both
// sides: the decision must mirror.
func TestDecideTable(t *testing.T) {
	up := UpToDate
	mirror := map[Decision]Decision{NoSync: NoSync, BecomeSource: BecomeTarget, BecomeTarget: BecomeSource,
		FullSource: FullTarget, FullTarget: FullSource, SplitBrainDetected: SplitBrainDetected,
		UnrelatedData: UnrelatedData, Refuse: Refuse}
	cases := []struct {
		name   string
		me, pr Side
		want   Decision
	}{
		{"both fresh", Side{Node: 0, Disk: Inconsistent}, Side{Node: 1, Disk: Inconsistent}, NoSync},
		{"my disk fresh", Side{Node: 0, Disk: Inconsistent}, Side{Node: 1, Disk: up, Gen: gens(5, 0, 0, 0)}, FullTarget},
		{"peer fresh", Side{Node: 0, Disk: up, Gen: gens(5, 0, 0, 0)}, Side{Node: 1, Disk: Inconsistent}, FullSource},
		{"same current, clean", Side{Node: 0, Disk: up, Gen: gens(5, 0, 0, 0)}, Side{Node: 1, Disk: Consistent, Gen: gens(5, 0, 0, 0)}, NoSync},
		{"same current, peer outdated", Side{Node: 0, Disk: up, Gen: gens(5, 0, 0, 0)}, Side{Node: 1, Disk: Outdated, Gen: gens(5, 0, 0, 0)}, BecomeSource},
		{"same current, I crashed as primary", Side{Node: 0, Disk: Consistent, Gen: gens(5, 0, 0, 0), Crashed: true, Changes: 10}, Side{Node: 1, Disk: up, Gen: gens(5, 0, 0, 0)}, BecomeTarget},
		{"same current, dirty, I am primary", Side{Node: 1, Disk: up, Role: Primary, Gen: gens(5, 0, 0, 0), Changes: 3}, Side{Node: 0, Disk: up, Gen: gens(5, 0, 0, 0)}, BecomeSource},
		{"I moved on", Side{Node: 0, Disk: up, Gen: gens(7, 5, 0, 0), Changes: 4}, Side{Node: 1, Disk: Consistent, Gen: gens(5, 0, 0, 0)}, BecomeSource},
		{"peer moved on", Side{Node: 0, Disk: Consistent, Gen: gens(5, 0, 0, 0)}, Side{Node: 1, Disk: up, Gen: gens(7, 5, 0, 0)}, BecomeTarget},
		{"mine in peer history", Side{Node: 0, Disk: Consistent, Gen: gens(3, 0, 0, 0)}, Side{Node: 1, Disk: up, Gen: gens(9, 7, 3, 0)}, FullTarget},
		{"peer in my history", Side{Node: 0, Disk: up, Gen: gens(9, 7, 0, 3)}, Side{Node: 1, Disk: Consistent, Gen: gens(3, 0, 0, 0)}, FullSource},
		{"split brain", Side{Node: 0, Disk: up, Gen: gens(8, 5, 0, 0)}, Side{Node: 1, Disk: up, Gen: gens(9, 5, 0, 0)}, SplitBrainDetected},
		{"split brain via history", Side{Node: 0, Disk: up, Gen: gens(8, 6, 5, 0)}, Side{Node: 1, Disk: up, Gen: gens(9, 5, 0, 0)}, SplitBrainDetected},
		{"unrelated", Side{Node: 0, Disk: up, Gen: gens(8, 6, 0, 0)}, Side{Node: 1, Disk: up, Gen: gens(9, 5, 0, 0)}, UnrelatedData},
		{"source inconsistent", Side{Node: 0, Disk: Inconsistent, Gen: gens(7, 5, 0, 0)}, Side{Node: 1, Disk: up, Gen: gens(5, 0, 0, 0)}, Refuse},
		{"would overwrite a primary", Side{Node: 0, Disk: up, Gen: gens(7, 5, 0, 0)}, Side{Node: 1, Disk: up, Role: Primary, Gen: gens(5, 0, 0, 0)}, Refuse},
		{"diskless", Side{Node: 0, Disk: Diskless}, Side{Node: 1, Disk: up, Gen: gens(5, 0, 0, 0)}, NoSync},
	}
	for _, c := range cases {
		got, why := Decide(c.me, c.pr)
		if got != c.want {
			t.Errorf("%s: Decide = %v (%s), want %v", c.name, got, why, c.want)
		}
		back, why := Decide(c.pr, c.me)
		if back != mirror[c.want] {
			t.Errorf("%s (peer's view): Decide = %v (%s), want %v", c.name, back, why, mirror[c.want])
		}
	}
}

func TestResolveSplitBrainPolicies(t *testing.T) {
	a := Side{Node: 0, Disk: UpToDate, Changes: 0, PrimarySince: 3}
	b := Side{Node: 1, Disk: UpToDate, Changes: 12, PrimarySince: 5}
	cases := []struct {
		cfg  Config
		me   Side
		peer Side
		want Victim
	}{
		{Config{AfterSB0: SB0Disconnect}, a, b, NoVictim},
		{Config{AfterSB0: DiscardZeroChanges}, a, b, VictimMe},
		{Config{AfterSB0: DiscardZeroChanges}, b, a, VictimPeer},
		{Config{AfterSB0: DiscardYoungerPrimary}, a, b, VictimPeer},
		{Config{AfterSB0: DiscardOlderPrimary}, a, b, VictimMe},
		{Config{AfterSB0: DiscardLeastChanges}, a, b, VictimMe},
		{Config{AfterSB0: DiscardNode, DiscardNode: 1}, a, b, VictimPeer},
		{Config{AfterSB0: DiscardNode, DiscardNode: 1}, b, a, VictimMe},
	}
	for i, c := range cases {
		got, why := ResolveSplitBrain(&c.cfg, c.me, c.peer)
		if got != c.want {
			t.Errorf("case %d %v: got %v (%s), want %v", i, c.cfg.AfterSB0, got, why, c.want)
		}
	}
	// One primary.
	pa := a
	pa.Role = Primary
	if v, _ := ResolveSplitBrain(&Config{AfterSB1: DiscardSecondary}, pa, b); v != VictimPeer {
		t.Errorf("discard-secondary from the primary's side: %v", v)
	}
	if v, _ := ResolveSplitBrain(&Config{AfterSB1: DiscardSecondary}, b, pa); v != VictimMe {
		t.Errorf("discard-secondary from the secondary's side: %v", v)
	}
	// Consensus: zero-changes would discard the primary (a): refuse.
	if v, _ := ResolveSplitBrain(&Config{AfterSB1: Consensus, AfterSB0: DiscardZeroChanges}, pa, b); v != NoVictim {
		t.Errorf("consensus discarding the primary: %v", v)
	}
	pb := b
	pb.Role = Primary
	if v, _ := ResolveSplitBrain(&Config{AfterSB1: Consensus, AfterSB0: DiscardZeroChanges}, pb, a); v != VictimPeer {
		t.Errorf("consensus agreeing to discard the secondary: %v", v)
	}
	if v, _ := ResolveSplitBrain(&Config{AfterSB2: SB2Disconnect}, pa, pb); v != NoVictim {
		t.Errorf("two primaries: %v", v)
	}
	// --discard-my-data wins over any policy.
	d := b
	d.Discard = true
	if v, _ := ResolveSplitBrain(&Config{AfterSB0: SB0Disconnect}, d, a); v != VictimMe {
		t.Errorf("discard-my-data: %v", v)
	}
}

func TestParsePolicies(t *testing.T) {
	names := []string{"server1", "server2"}
	if p, n, err := ParseSB0("discard-node-server2", names); err != nil || p != DiscardNode || n != proto.NodeID(1) {
		t.Errorf("discard-node-server2: %v %v %v", p, n, err)
	}
	if _, _, err := ParseSB0("discard-node-server9", names); err == nil {
		t.Error("discard-node of an unknown node accepted")
	}
	if _, _, err := ParseSB0("discard-everything", names); err == nil {
		t.Error("unknown policy accepted")
	}
	if _, err := ParseSB2("discard-secondary"); err == nil {
		t.Error("after-sb-2pri accepted a discarding policy")
	}
}
