package run

import (
	"testing"
	"time"

	"tandem/faults"
	"tandem/internal/repl"
	"tandem/scenarios"
	"tandem/sim"
)

// swarmRun is what `tandem sim --seed N --duration 2m --liveness 1m
// --workload write` runs.
func swarmRun(seed uint64) sim.Options {
	cfg := sim.DefaultNode()
	opt := sim.Options{Seed: seed, Nodes: 2, Node: cfg, Safety: 2 * time.Minute, Liveness: time.Minute}
	opt.Rates, opt.Schedule = faults.Swarm(sim.NewRand(seed).Fork(1), faults.SwarmOptions{
		Nodes: 2, Safety: opt.Safety, Keepalive: cfg.Keepalive, Deadtime: cfg.Deadtime, ClockDriftPPMMax: 5000, MaxLoss: 0.5})
	opt.Replication = &sim.ReplicationOptions{Workload: sim.WriteWorkload, Repl: repl.Config{Protocol: 'C', Blocks: 4096}}
	return opt
}

// TestFromSim: a simulator run emitted as a scenario parses, carries every
// timed fault of the schedule, and the runner reaches the simulator's
// verdict on it (these seeds break no property in either).
func TestFromSim(t *testing.T) {
	for _, seed := range []uint64{6, 7} {
		opt := swarmRun(seed)
		s, err := sim.New(opt)
		if err != nil {
			t.Fatal(err)
		}
		res := s.Run()
		sc, err := FromSim(opt, res, "test")
		if err != nil {
			t.Fatal(err)
		}
		faultSteps := 0
		for _, st := range sc.Steps {
			switch st.Kind {
			case scenarios.Write, scenarios.Drop, scenarios.Duplicate, scenarios.End:
			default:
				faultSteps++
			}
		}
		want := len(faults.Liveness(opt.Schedule, 2, opt.Safety))
		for _, st := range opt.Schedule {
			if st.At <= opt.Safety {
				want++
			}
		}
		if faultSteps != want {
			t.Errorf("seed %d: %d fault steps in the scenario, want %d (schedule and liveness repairs)", seed, faultSteps, want)
		}
		if len(res.Violations) != 0 {
			t.Fatalf("seed %d: the simulator run itself failed (%v): pick another seed", seed, res.Violations[0])
		}
		got, err := Run(sc, Options{Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		if !got.OK() {
			t.Errorf("seed %d: the simulator passed, its scenario fails: %v\n%s", seed, got.Failures[0], scenarios.Format(sc))
		}
	}
}
