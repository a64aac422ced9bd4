package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"tandem/faults"
	"tandem/internal/node"
	"tandem/internal/repl"
	"tandem/sim"
)

// simRun is one simulator run as the command line describes it.
type simRun struct {
	seed     uint64
	duration time.Duration
	liveness time.Duration
	nodes    int
	fencing  string
	faults   string
	workload string
	protocol string
	blocks   uint64
	history  string
	disk     string
}

func (r simRun) command() string {
	return fmt.Sprintf("go run ./cmd/tandem sim --seed %d --duration %v --nodes %d --fencing %s --faults %s --workload %s --protocol %s --blocks %d --disk-faults %s",
		r.seed, r.duration, r.nodes, r.fencing, r.faults, r.workload, r.protocol, r.blocks, r.disk)
}

// options turns the command line into simulator options: swarm draws this
// seed's own fault rates and schedule from the seed itself.
func (r simRun) options(trace io.Writer) (sim.Options, error) {
	f, err := node.ParseFencing(r.fencing)
	if err != nil {
		return sim.Options{}, err
	}
	if f == node.FenceWitness && r.nodes != 3 {
		return sim.Options{}, fmt.Errorf("--fencing witness needs --nodes 3 (two data nodes and the witness)")
	}
	if r.nodes != 2 && r.nodes != 3 {
		return sim.Options{}, fmt.Errorf("--nodes: want 2 or 3, got %d", r.nodes)
	}
	cfg := sim.DefaultNode()
	cfg.Fencing = f
	opt := sim.Options{Seed: r.seed, Nodes: r.nodes, Node: cfg, Safety: r.duration, Liveness: r.liveness, Trace: trace}
	switch r.faults {
	case "none":
		opt.Rates = faults.Quiet()
	case "swarm":
		chooser := sim.NewRand(r.seed).Fork(1)
		opt.Rates, opt.Schedule = faults.Swarm(chooser, faults.SwarmOptions{
			Nodes: r.nodes, Safety: r.duration, Keepalive: cfg.Keepalive, Deadtime: cfg.Deadtime,
			ClockDriftPPMMax: 5000, MaxLoss: 0.5,
		})
	default:
		return sim.Options{}, fmt.Errorf("--faults: want none or swarm, got %q", r.faults)
	}
	w, err := sim.ParseWorkload(r.workload)
	if err != nil {
		return sim.Options{}, fmt.Errorf("--workload: %w", err)
	}
	p, err := repl.ParseProtocol(r.protocol)
	if err != nil {
		return sim.Options{}, fmt.Errorf("--protocol: %w", err)
	}
	if r.blocks < 64 || r.blocks > 1<<24 {
		return sim.Options{}, fmt.Errorf("--blocks: want 64..16777216 blocks of 4 KiB, got %d", r.blocks)
	}
	opt.Replication = &sim.ReplicationOptions{Workload: w, Repl: repl.Config{Protocol: p, Blocks: r.blocks}}
	switch r.disk {
	case "none":
	case "swarm":
		opt.Replication.DiskFaults = sim.SwarmDiskFaults(sim.NewRand(r.seed).Fork(9))
	default:
		return sim.Options{}, fmt.Errorf("--disk-faults: want none or swarm, got %q", r.disk)
	}
	return opt, nil
}

func runSim(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var r simRun
	fs.Uint64Var(&r.seed, "seed", 1, "root seed: names the whole run")
	fs.DurationVar(&r.duration, "duration", 10*time.Minute, "simulated length of the safety phase (faults happen here)")
	fs.DurationVar(&r.liveness, "liveness", time.Minute, "simulated length of the liveness phase (no faults; the cluster must settle)")
	fs.IntVar(&r.nodes, "nodes", 2, "2, or 3 for two data nodes and a witness")
	fs.StringVar(&r.fencing, "fencing", "stonith", "none, stonith or witness")
	fs.StringVar(&r.faults, "faults", "swarm", "none, or swarm: this seed draws its own fault rates and schedule")
	fs.StringVar(&r.workload, "workload", "none", "what the application does on the primary: none, write (writes and flushes) or mixed (also reads)")
	fs.StringVar(&r.protocol, "protocol", "C", "replication protocol: A, B or C")
	fs.Uint64Var(&r.blocks, "blocks", 4096, "size of the replicated disk in 4 KiB blocks")
	fs.StringVar(&r.disk, "disk-faults", "none", "none, or swarm: this seed draws its own detectable disk faults (latent sector errors, corruption, read errors, stalls), each only where the peer holds a good copy")
	fs.StringVar(&r.history, "history", "", "write the client history as JSON lines to this file (see README)")
	emit := fs.String("emit-scenario", "", "write the run's faults and checks as a scenario file (tandem scenario run replays it)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tandem sim [flags]\n\nThe trace goes to stdout (byte-identical for the same flags); the summary line and, on failure,\nthe replay command go to stderr.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if r.nodes == 2 && r.fencing == "witness" && !flagSet(fs, "nodes") {
		r.nodes = 3
	}
	out := bufio.NewWriterSize(stdout, 1<<16)
	opt, err := r.options(out)
	if err != nil {
		fmt.Fprintf(stderr, "tandem sim: %v\n", err)
		return 2
	}
	s, err := sim.New(opt)
	if err != nil {
		fmt.Fprintf(stderr, "tandem sim: %v\n", err)
		return 2
	}
	start := time.Now()
	res := s.Run()
	wall := time.Since(start)
	out.Flush()
	if r.history != "" {
		if err := writeHistory(r.history, s, []string{"server1", "server2", "witness"}); err != nil {
			fmt.Fprintf(stderr, "tandem sim: --history: %v\n", err)
			return 2
		}
	}
	fmt.Fprintln(stderr, summary(r.seed, res, wall))
	if *emit != "" {
		if err := emitScenario(*emit, opt, res, r.command()); err != nil {
			fmt.Fprintf(stderr, "tandem sim: --emit-scenario: %v\n", err)
			return 2
		}
	}
	if len(res.Violations) > 0 {
		for _, v := range res.Violations {
			fmt.Fprintf(stderr, "violation: %v\n", v)
		}
		fmt.Fprintf(stderr, "replay: %s\n", r.command())
		return 1
	}
	return 0
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func summary(seed uint64, res sim.Result, wall time.Duration) string {
	speed := float64(res.Simulated) / float64(max(wall, time.Microsecond))
	return fmt.Sprintf("sim: seed=%d simulated=%v wall=%v speed=%.0fx failovers=%d false_failovers=%d violations=%d acked=%d lost=%d resync_bytes=%d dirty_bytes=%d",
		seed, res.Simulated, wall.Round(time.Millisecond), speed, res.Failovers, res.FalseFailovers, len(res.Violations),
		res.Repl.Acked, res.Repl.Lost, res.Repl.ResyncBytes, res.Repl.DirtyBytes)
}

func writeHistory(path string, s *sim.Sim, names []string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := s.History().WriteJSON(w, names); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
