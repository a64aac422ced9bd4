package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"tandem/faults"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/sim"
)

// runDemo plays the seed's story in the simulator until the daemon exists:
// server1 runs the tutorial's group, server1 loses power, server2 fences it
// and takes over. It checks the outcome and says so.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 1, "seed for the simulated latencies and agent timings")
	verbose := fs.Bool("v", false, "show every trace line, late heartbeats included")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	const powerCut = 30 * time.Second
	cfg := sim.DefaultNode()
	cfg.Fencing = node.FenceStonith
	step, err := faults.ParseStep(fmt.Sprintf("at %v crash server1", powerCut), []string{"server1", "server2"})
	if err != nil {
		fmt.Fprintf(stderr, "tandem demo: %v\n", err)
		return 1
	}
	var trace bytes.Buffer
	s, err := sim.New(sim.Options{Seed: *seed, Nodes: 2, Node: cfg, Rates: faults.Quiet(),
		Schedule: faults.Schedule{step}, Safety: time.Minute, Liveness: 30 * time.Second, Trace: &trace})
	if err != nil {
		fmt.Fprintf(stderr, "tandem demo: %v\n", err)
		return 1
	}
	res := s.Run()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	c := cfg.WithDefaults()
	fmt.Fprintf(out, "SIMULATED — Tandem's core in the simulator (the daemon comes later); seed %d\n\n", *seed)
	fmt.Fprintf(out, "haresources:  server1 disk fs:/replicated ip:192.168.1.5/24 service:sendmail\n")
	fmt.Fprintf(out, "ha.cf:        keepalive %v  deadtime %v  initdead %v  media: net0 (UDP) + serial0 (null modem)\n", c.Keepalive, c.Deadtime, c.Initdead)
	fmt.Fprintf(out, "fencing:      stonith, fence delay %v for the node not holding the group\n", c.FenceDelay)
	fmt.Fprintf(out, "story:        server1 runs the group; at %v server1 loses power; at 60s it comes back\n", powerCut)
	fmt.Fprintf(out, "              (auto_failback off: server2 keeps the group)\n\n")
	for _, line := range strings.Split(strings.TrimRight(trace.String(), "\n"), "\n") {
		fields := strings.Fields(line)
		if !*verbose && len(fields) > 1 && (fields[1] == "L" || fields[1] == "legend:" || fields[1] == "#" || fields[1] == "@") {
			continue // late heartbeats and housekeeping: shown with -v
		}
		if !*verbose && len(fields) > 1 && fields[0] == "0.000s" && fields[1] != "*" && fields[1] != "P" {
			continue // the rest of the legend
		}
		fmt.Fprintln(out, line)
	}
	fmt.Fprintln(out)
	ok := true
	check := func(pass bool, format string, args ...any) {
		mark := "ok  "
		if !pass {
			mark, ok = "FAIL", false
		}
		fmt.Fprintf(out, "check %s %s\n", mark, fmt.Sprintf(format, args...))
	}
	var back time.Duration
	for _, p := range res.Primaries {
		if p.Node == 1 && p.At > powerCut {
			back = p.At - powerCut
			break
		}
	}
	check(res.Primary == 1 && res.Final[1] == proto.Primary, "server2 runs the whole group at the end (disk, fs, ip, service)")
	check(res.Failovers == 1 && res.FalseFailovers == 0, "exactly one failover, and not a false one (failovers=%d false=%d)", res.Failovers, res.FalseFailovers)
	check(res.Fences >= 1, "server2 fenced server1 before taking over (%d fence operations)", res.Fences)
	bound := c.Deadtime + c.FenceDelay + c.FenceTimeout
	for _, r := range c.Group {
		bound += r.StartTimeout
	}
	check(back > 0 && back <= bound, "service back %v after the power cut (bound: deadtime + fence delay + fence timeout + start timeouts = %v)", back.Round(time.Millisecond), bound)
	check(res.Final[0] == proto.Secondary, "server1 came back as secondary and did not take the group back (it is %s)", res.Final[0])
	check(len(res.Violations) == 0, "no property violated (%d violations)", len(res.Violations))
	for _, v := range res.Violations {
		fmt.Fprintf(out, "  violation: %v\n", v)
	}
	fmt.Fprintln(out, "\n(replicated data and its checks arrive with the replication work; this demo checks membership, fencing and failover)")
	if !ok {
		return 1
	}
	return 0
}
