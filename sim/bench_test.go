package sim

import (
	"testing"
	"time"

	"tandem/faults"
	"tandem/internal/node"
	"tandem/internal/repl"
)

// BenchmarkSimulator measures simulator speed for a 2-node cluster with 100 ms
// keepalives and swarm faults: simulated seconds per wall second ("x", a
// ratio measured within the run, so noisy shared machines matter less) and
// seeds of 10 simulated minutes per wall minute.
func BenchmarkSimulator(b *testing.B) {
	for _, policy := range []node.Fencing{node.FenceStonith, node.FenceWitness} {
		b.Run(policy.String(), func(b *testing.B) {
			var simulated time.Duration
			start := time.Now()
			for i := 0; i < b.N; i++ {
				s, err := New(swarmOptions(uint64(i+1), policy, 10*time.Minute, nil))
				if err != nil {
					b.Fatal(err)
				}
				simulated += s.Run().Simulated
			}
			wall := time.Since(start)
			b.ReportMetric(float64(simulated)/float64(wall), "x")
			b.ReportMetric(float64(b.N)/wall.Minutes(), "seeds/min")
		})
	}
}

// BenchmarkQuietCluster is the baseline without faults: the cost of
// heartbeats alone.
func BenchmarkQuietCluster(b *testing.B) {
	var simulated time.Duration
	start := time.Now()
	for i := 0; i < b.N; i++ {
		opt := quiet(node.FenceStonith, uint64(i+1))
		opt.Rates = faults.Quiet()
		s, err := New(opt)
		if err != nil {
			b.Fatal(err)
		}
		simulated += s.Run().Simulated
	}
	b.ReportMetric(float64(simulated)/float64(time.Since(start)), "x")
}

// BenchmarkSimulatorWrite is the simulator's speed with replicated disks and
// the write workload under swarm faults, beside BenchmarkSimulator (the same
// seeds without a data path): "x" is simulated per wall time, "vs-no-data"
// the ratio of the two measured in this run.
func BenchmarkSimulatorWrite(b *testing.B) {
	speed := func(n int, data bool) float64 {
		var simulated time.Duration
		start := time.Now()
		for i := 0; i < n; i++ {
			opt := swarmOptions(uint64(i+1), node.FenceStonith, 10*time.Minute, nil)
			if data {
				opt = withData(opt, repl.ProtocolC, WriteWorkload)
			}
			s, err := New(opt)
			if err != nil {
				b.Fatal(err)
			}
			simulated += s.Run().Simulated
		}
		return float64(simulated) / float64(time.Since(start))
	}
	with := speed(b.N, true)
	without := speed(b.N, false)
	b.ReportMetric(with, "x")
	b.ReportMetric(with/without, "vs-no-data")
}

// BenchmarkResyncEfficiency: a 10 s replication-link partition under write
// load (the serial cable keeps the heartbeat, so nothing fails over), then
// the bitmap resync. resync/dirty is the bytes sent over the bytes the
// bitmap marked: 1.00 is minimal; the target is <= 1.05.
func BenchmarkResyncEfficiency(b *testing.B) {
	var resync, dirty uint64
	for i := 0; i < b.N; i++ {
		opt := withData(quiet(node.FenceStonith, uint64(i+1), "at 30s partition server1 server2", "at 40s heal"),
			repl.ProtocolC, WriteWorkload)
		opt.Safety = time.Minute
		s, err := New(opt)
		if err != nil {
			b.Fatal(err)
		}
		res := s.Run()
		if len(res.Violations) > 0 {
			b.Fatal(res.Violations[0])
		}
		resync += res.Repl.ResyncBytes
		dirty += res.Repl.DirtyBytes
	}
	if dirty == 0 {
		b.Fatal("the partition left nothing to resync")
	}
	b.ReportMetric(float64(resync)/float64(dirty), "resync/dirty")
	b.ReportMetric(float64(dirty)/float64(b.N)/1024, "dirty-KiB/run")
}
