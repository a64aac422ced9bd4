package sim

import (
	"testing"
	"time"

	"tandem/faults"
	"tandem/internal/node"
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
