package run

import (
	"fmt"
	"strings"
	"time"

	"tandem/faults"
	"tandem/internal/node"
	"tandem/scenarios"
	"tandem/sim"
)

// FromSim turns a simulator run into a scenario, so that a seed that found a
// bug becomes a readable regression: the cluster line from opt (names,
// timings, fencing, group, protocol, disk), the timed faults of
// opt.Schedule, the liveness phase's repairs, a write workload at the
// simulator's rate, and the properties the simulator checks as
// expectations. res is the run's result (its violations go into the
// header). command is how the run was started, for the header.
//
// What does not carry over, and is said in the header: the random
// environment of a swarm seed beyond packet loss and duplication on a
// two-node cluster (latency spread, reordering, serial noise, agent failure
// and drift rates), and the exact requests of the workload (the scenario
// writes as many one-block requests over the same span).
func FromSim(opt sim.Options, res sim.Result, command string) (*scenarios.Scenario, error) {
	nodes := opt.Nodes
	if nodes == 0 {
		nodes = 2
	}
	names := opt.Names
	if len(names) == 0 {
		names = []string{"server1", "server2", "witness"}[:nodes]
	}
	nc := opt.Node
	if nc.Keepalive == 0 && nc.Group == nil {
		base := sim.DefaultNode()
		base.Fencing, base.AutoFailback = nc.Fencing, nc.AutoFailback
		nc = base
	}
	nc = nc.WithDefaults()
	c := scenarios.Cluster{Nodes: names, Keepalive: nc.Keepalive, Warntime: nc.Warntime, Deadtime: nc.Deadtime,
		Initdead: nc.Initdead, Fencing: nc.Fencing, FenceDelay: nc.FenceDelay, FenceTimeout: nc.FenceTimeout,
		AutoFailback: nc.AutoFailback, NoSerial: opt.NoSerial, DiscardNode: scenarios.AnyNode}
	if opt.Rates.FenceDuration > 0 {
		c.FenceTime = opt.Rates.FenceDuration
	}
	for i, r := range nc.Group {
		if i > 0 { // the first member is the replicated disk, implicit in a scenario
			c.Group = append(c.Group, r.Name)
		}
	}
	if ro := opt.Replication; ro != nil {
		c.Protocol = ro.Repl.Protocol
		blocks := ro.Repl.Blocks
		if blocks == 0 {
			blocks = 4096
		}
		c.DiskBytes = blocks * scenarios.BlockSize
	}
	sc := &scenarios.Scenario{Name: fmt.Sprintf("sim-seed-%d", opt.Seed), Cluster: c}
	var notes []string
	// The liveness phase calms the network: the link faults end there.
	at0 := scenarios.Step{Kind: scenarios.Drop, Node: 0, Peer: 1, For: opt.Safety}
	if nodes == 2 {
		if opt.Rates.Loss > 0 {
			s := at0
			s.Percent = percent(opt.Rates.Loss)
			sc.Steps = append(sc.Steps, s)
		}
		if opt.Rates.Duplicate > 0 {
			s := at0
			s.Kind, s.Percent = scenarios.Duplicate, percent(opt.Rates.Duplicate)
			sc.Steps = append(sc.Steps, s)
		}
	} else if opt.Rates.Loss > 0 || opt.Rates.Duplicate > 0 {
		notes = append(notes, "packet loss and duplication (a scenario's link faults are per pair; the simulator's apply to every link)")
	}
	if ro := opt.Replication; ro != nil && ro.Workload != sim.NoWorkload {
		rate := ro.Rate
		if rate == 0 {
			rate = 100
		}
		span := opt.Safety + opt.Liveness/2 - time.Second // the simulator's client runs from 1s to mid-liveness
		if span > 0 {
			n := uint64(span.Seconds() * float64(rate) * 0.9) // writes are 90% of its requests
			sc.Steps = append(sc.Steps, scenarios.Step{At: time.Second, For: span, Kind: scenarios.Write, Blocks: max(n, 1), Node: scenarios.AnyNode, Peer: scenarios.AnyNode})
		}
		notes = append(notes, "the exact client requests (here: one-block writes at the same rate)")
	}
	sched := opt.Schedule.Sorted()
	var tl []faults.Step
	for _, st := range sched {
		if st.At <= opt.Safety {
			tl = append(tl, st)
		}
	}
	if opt.Liveness > 0 {
		tl = append(tl, faults.Liveness(opt.Schedule, nodes, opt.Safety)...)
	}
	for _, st := range tl {
		s, ok := fromFault(st)
		if !ok {
			notes = append(notes, fmt.Sprintf("%q (no scenario verb)", st.Format(names)))
			continue
		}
		sc.Steps = append(sc.Steps, s)
	}
	// Steps must be in time order; the workload and link steps start early.
	sortSteps(sc.Steps)
	end := opt.Safety + opt.Liveness
	sc.Steps = append(sc.Steps, scenarios.Step{At: end, Kind: scenarios.End, Node: scenarios.AnyNode, Peer: scenarios.AnyNode})
	if c.Fencing != node.FenceNone {
		sc.Expects = append(sc.Expects, scenarios.Expect{Cond: scenarios.CondNoSplitBrain, When: scenarios.FromHere, Node: scenarios.AnyNode})
	}
	if ro := opt.Replication; ro != nil && ro.Workload != sim.NoWorkload {
		sc.Expects = append(sc.Expects, scenarios.Expect{Cond: scenarios.CondAckedWritesDurable, When: scenarios.FromHere, Node: scenarios.AnyNode})
	}
	if opt.Liveness > 0 {
		// After the repairs the cluster must settle (the simulator's
		// liveness check): one primary, both disks identical.
		sc.Expects = append(sc.Expects,
			scenarios.Expect{Cond: scenarios.CondDisksIdentical, When: scenarios.Within, Anchor: opt.Safety, D: opt.Liveness, Node: scenarios.AnyNode})
	}
	var doc []string
	doc = append(doc, fmt.Sprintf("Emitted from a simulator run: %s", command),
		fmt.Sprintf("environment: %s", opt.Rates.Describe()))
	if len(res.Violations) == 0 {
		doc = append(doc, fmt.Sprintf("The run broke no property (%d failovers, %d fences).", res.Failovers, res.Fences))
	} else {
		doc = append(doc, fmt.Sprintf("The run broke %d properties; the first: %v", len(res.Violations), res.Violations[0]))
	}
	if opt.Liveness > 0 {
		notes = append(notes, "the liveness phase's operator (cleanup of failed resources, --discard-my-data after an unresolved split brain)")
	}
	if len(notes) > 0 {
		doc = append(doc, "Not carried over: "+strings.Join(notes, "; ")+".")
	}
	sc.Doc = strings.Join(doc, "\n")
	// Format then Parse: the file must read back, and Parse fills in what
	// only it computes (anchors are set above; positions come from it).
	back, err := scenarios.Parse(sc.Name+".scn", scenarios.Format(sc))
	if err != nil {
		return nil, fmt.Errorf("emitted scenario does not parse (a bug in FromSim): %w\n%s", err, scenarios.Format(sc))
	}
	return back, nil
}

func percent(p float64) float64 {
	return float64(int64(p*100*1000+0.5)) / 1000 // the language's percentages are decimal; keep three places
}

func sortSteps(s []scenarios.Step) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].At < s[j-1].At; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// fromFault maps one fault step onto the scenario language.
func fromFault(f faults.Step) (scenarios.Step, bool) {
	s := scenarios.Step{At: f.At, Node: f.Node, Peer: scenarios.AnyNode}
	switch f.Kind {
	case faults.Crash:
		s.Kind = scenarios.Crash
	case faults.Restart:
		s.Kind = scenarios.Restart
	case faults.Freeze:
		s.Kind = scenarios.Freeze
	case faults.Thaw:
		s.Kind = scenarios.Thaw
	case faults.Partition:
		s.Kind, s.Peer, s.OneWay = scenarios.Partition, f.Peer, f.OneWay
	case faults.Heal:
		s.Kind, s.Peer = scenarios.Heal, f.Peer
		if f.Node < 0 {
			s.Node, s.Peer = scenarios.AnyNode, scenarios.AnyNode
		}
	case faults.CutSerial:
		s.Kind, s.Node = scenarios.CutSerial, scenarios.AnyNode
	case faults.RestoreSerial:
		s.Kind, s.Node = scenarios.RestoreSerial, scenarios.AnyNode
	case faults.ClockDrift:
		s.Kind, s.PPM = scenarios.ClockDrift, f.PPM
	case faults.ClockJump:
		s.Kind, s.Delta = scenarios.ClockJump, f.Delta
	case faults.FenceBreak:
		s.Kind, s.Mode = scenarios.FenceAgent, f.Mode
	case faults.ResourceBreak:
		if f.Resource < 1 {
			return s, false // the replicated disk's own promotion has no scenario verb
		}
		s.Kind, s.Resource, s.Mode, s.Count = scenarios.ResourceFail, f.Resource-1, f.Op, f.Count
	case faults.Admin:
		k, ok := map[string]scenarios.StepKind{"standby": scenarios.Standby, "online": scenarios.Online,
			"takeover": scenarios.Takeover, "cleanup": scenarios.Cleanup}[f.Command]
		if !ok {
			return s, false
		}
		s.Kind = k
	default:
		return s, false
	}
	return s, true
}
