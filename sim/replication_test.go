package sim

import (
	"strings"
	"testing"
	"time"

	"tandem/faults"

	"tandem/internal/node"
	"tandem/internal/repl"
)

func withRepl(opt Options, p repl.Protocol) Options {
	opt.Replication = &ReplicationOptions{Workload: MixedWorkload, Repl: repl.Config{Protocol: p}}
	return opt
}

// A quiet cluster under load: every acknowledged write reads back, reads
// are linearizable per block, and the disks end byte-identical.
func TestReplicationQuietLoad(t *testing.T) {
	for _, p := range []repl.Protocol{repl.ProtocolA, repl.ProtocolB, repl.ProtocolC} {
		res, _ := mustRun(t, withRepl(quiet(node.FenceStonith, 3), p))
		if res.Repl.Acked < 5000 || res.Repl.Lost != 0 {
			t.Errorf("protocol %v: %+v", p, res.Repl)
		}
	}
}

// The primary loses power under load (protocol C, stonith): the survivor
// fences it and takes over, and no acknowledged write is missing; when the
// old primary returns it resyncs only what changed, and the disks converge.
func TestPrimaryCrashLosesNoAcknowledgedWrite(t *testing.T) {
	for seed := uint64(1); seed <= 5; seed++ {
		opt := withRepl(quiet(node.FenceStonith, seed, "at 30s crash server1"), repl.ProtocolC)
		// 1 GiB with a 16-extent activity log: a crash dirties at most
		// 64 MiB through the log.
		opt.Replication.Repl.Blocks = 1 << 18
		opt.Replication.Repl.ALSlots = 16
		res, _ := mustRun(t, opt)
		if res.Failovers != 1 || res.Repl.Acked < 1000 || res.Repl.Lost != 0 {
			t.Errorf("seed %d: failovers=%d %+v", seed, res.Failovers, res.Repl)
		}
		// Only what changed crosses the link: the blocks written after the
		// crash plus the crashed primary's activity-log extents — never
		// more than was out of sync, and far less than the whole disk.
		if res.Repl.ResyncBytes == 0 || res.Repl.ResyncBytes > res.Repl.DirtyBytes || res.Repl.ResyncBytes > 256<<20 {
			t.Errorf("seed %d: resync moved %d bytes of %d out of sync", seed, res.Repl.ResyncBytes, res.Repl.DirtyBytes)
		}
	}
}

// A partition that cuts the replication link but not the serial heartbeat:
// no failover, the primary outdates the peer over the heartbeat (dopd) and
// goes on; after healing, a bitmap resync makes the disks identical.
func TestReplicationLinkCutWithSerialUp(t *testing.T) {
	opt := withRepl(quiet(node.FenceStonith, 2, "at 20s partition server1 server2", "at 40s heal"), repl.ProtocolC)
	res, _ := mustRun(t, opt)
	if res.Failovers != 0 || res.Repl.Lost != 0 || res.Repl.ResyncBytes == 0 {
		t.Errorf("failovers=%d %+v", res.Failovers, res.Repl)
	}
}

func TestReplicationDeterminism(t *testing.T) {
	opt := withRepl(quiet(node.FenceStonith, 9, "at 20s crash server1", "at 50s restart server1"), repl.ProtocolC)
	_, a := mustRun(t, opt)
	_, b := mustRun(t, opt)
	if a != b || len(a) == 0 || !strings.Contains(a, "resync") {
		t.Fatalf("two runs of one seed differ (%d vs %d bytes of trace)", len(a), len(b))
	}
}

// TestDiskFaultsRepaired: detectable disk faults (latent sector errors,
// corruption caught by the block integrity check, transient read errors,
// stalls) strike the primary's and the secondary's disks wherever the other
// holds a good copy. Reads are repaired from the peer, a detached disk is
// attached again in the liveness phase, and no client ever sees bad data or
// loses an acknowledged write.
func TestDiskFaultsRepaired(t *testing.T) {
	var struck, repairs uint64
	for seed := uint64(1); seed <= 12; seed++ {
		cfg := DefaultNode()
		cfg.Fencing = node.FenceStonith
		f := SwarmDiskFaults(NewRand(seed).Fork(9))
		f.Corrupt, f.LatentError = max(f.Corrupt, 1e-3), max(f.LatentError, 1e-3)
		s, err := New(Options{Seed: seed, Nodes: 2, Node: cfg, Rates: faults.Quiet(), Safety: 3 * time.Minute, Liveness: time.Minute,
			Replication: &ReplicationOptions{Workload: MixedWorkload, Repl: repl.Config{Protocol: repl.ProtocolC, Blocks: 1024}, DiskFaults: f}})
		if err != nil {
			t.Fatal(err)
		}
		res := s.Run()
		for _, v := range res.Violations {
			t.Errorf("seed %d: %v", seed, v)
		}
		for _, m := range s.machines[:2] {
			st := m.r.disk.Stats()
			struck += st.Corruptions + st.LatentErrors + st.ReadErrors
			if m.n != nil {
				repairs += m.n.Replica().Stats.Repairs
			}
		}
	}
	t.Logf("%d disk faults struck, %d blocks repaired from the peer", struck, repairs)
	if struck == 0 || repairs == 0 {
		t.Fatalf("the test did not exercise repairs: %d faults, %d repairs", struck, repairs)
	}
}
