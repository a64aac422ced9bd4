// Package run executes scenarios (package scenarios) in the simulator: it
// builds the cluster the cluster line describes, plays the timeline (faults,
// operator commands, application requests) at its times, watches the true
// state of every machine after every event, and judges each expectation
// over its window. The simulator's own safety checkers (single writer, fence
// before promote, no false failover, split brain reported) run as well: a
// violation fails the scenario even if no expectation asked about it.
//
// Fault model and limits: everything the simulator models (see package
// sim). A step the simulator cannot play (see Unsupported) fails the
// scenario with "unsupported: <step> at file:line" instead of being skipped.
// Requests are sent by a client that follows the service address: a
// request for "the primary" while nobody holds the group, or for a node that
// is down, is never sent (a refused connection), and so is not counted as a
// failed request.
package run

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"tandem/faults"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
	"tandem/scenarios"
	"tandem/sim"
)

// Options tune one run of one scenario.
type Options struct {
	// Seed names the run: it drives every random choice (latencies, which
	// blocks "write N blocks" picks, fence and action durations).
	Seed uint64
	// Settle is how long the run goes on after the scenario's Horizon when
	// it has no "at ... end" step. Default 10s.
	Settle time.Duration
	// Trace, if set, receives the whole trace as it is written.
	Trace io.Writer
}

// Failure is one unmet expectation (or broken simulator property).
type Failure struct {
	// Pos is the expectation's position (for a simulator property, the
	// cluster line's; for an unsupported step, the step's).
	Pos scenarios.Pos
	// At is when it was first seen to fail (the end of its window for
	// conditions that never became true).
	At time.Duration
	// Msg says what was expected and what happened.
	Msg string
}

// String prints file:line: message.
func (f Failure) String() string {
	return fmt.Sprintf("%s:%d: %s", f.Pos.File, f.Pos.Line, f.Msg)
}

// TraceLine is one line of the simulator's trace and when it was written.
type TraceLine struct {
	At   time.Duration
	Text string
}

// Result is the outcome of one run.
type Result struct {
	Scenario *scenarios.Scenario
	Seed     uint64
	// End is when the run stopped.
	End time.Duration
	// Failures in the order they happened (ties in file order); empty if
	// the scenario passed.
	Failures []Failure
	// Trace is the whole trace, runner notes included.
	Trace []TraceLine
	// Sim are the simulator's figures.
	Sim sim.Result
}

// OK reports whether every expectation was met.
func (r *Result) OK() bool { return len(r.Failures) == 0 }

// TraceAround returns the trace lines within n lines of the first line
// written at or after t.
func (r *Result) TraceAround(t time.Duration, n int) []TraceLine {
	i, _ := slices.BinarySearchFunc(r.Trace, t, func(l TraceLine, t time.Duration) int {
		return cmpDur(l.At, t)
	})
	return r.Trace[max(0, i-n):min(len(r.Trace), i+n+1)]
}

func cmpDur(a, b time.Duration) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Run plays the scenario once. The error is for a scenario the runner cannot
// even set up (the simulator refused its configuration); unmet expectations
// and unsupported steps are Failures.
func Run(sc *scenarios.Scenario, opt Options) (*Result, error) {
	if opt.Settle == 0 {
		opt.Settle = 10 * time.Second
	}
	r := &runner{sc: sc, cl: sc.Cluster.WithDefaults(), res: &Result{Scenario: sc, Seed: opt.Seed}}
	r.trace = &traceWriter{r: r, tee: opt.Trace}
	so, err := Options2Sim(sc, opt.Seed)
	if err != nil {
		return nil, err
	}
	so.Trace = r.trace
	s, err := sim.New(so)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", sc.Cluster.Pos, err)
	}
	r.s = s
	r.rnd = sim.NewRand(opt.Seed).Fork(0x5ce7a110)
	r.base = s.Link()
	r.end = sc.Horizon()
	if !hasEnd(sc) {
		r.end += opt.Settle
	}
	if bad := r.unsupported(); len(bad) > 0 {
		r.res.Failures = bad
		return r.res, nil
	}
	r.plan()
	r.expects = make([]expectState, len(sc.Expects))
	for i := range sc.Expects {
		r.expects[i] = expectState{e: &sc.Expects[i], w: r.window(&sc.Expects[i])}
	}
	s.Observe(r.observe)
	r.play()
	r.judge()
	r.res.End = r.end
	r.res.Sim = s.Result()
	r.trace.flush()
	slices.SortStableFunc(r.res.Failures, func(a, b Failure) int {
		if c := cmpDur(a.At, b.At); c != 0 {
			return c
		}
		return a.Pos.Line - b.Pos.Line
	})
	return r.res, nil
}

func hasEnd(sc *scenarios.Scenario) bool {
	for _, st := range sc.Steps {
		if st.Kind == scenarios.End {
			return true
		}
	}
	return false
}

// Options2Sim builds the simulator's options from the scenario's cluster
// line: names, witness, timings, fencing, group, replication settings. The
// environment is faults.Quiet with the cluster's fence time and quick
// resource agents; nothing happens that the scenario does not say, except
// latencies and durations drawn from the seed.
func Options2Sim(sc *scenarios.Scenario, seed uint64) (sim.Options, error) {
	c := sc.Cluster.WithDefaults()
	group := []node.Resource{{Name: "disk", StartTimeout: 10 * time.Second, StopTimeout: 10 * time.Second}}
	for _, m := range c.Group {
		group = append(group, node.Resource{Name: m, StartTimeout: 10 * time.Second, StopTimeout: 10 * time.Second, MonitorInterval: 5 * time.Second})
	}
	nc := node.Config{
		Keepalive: c.Keepalive, Warntime: c.Warntime, Deadtime: c.Deadtime, Initdead: c.Initdead,
		Fencing: c.Fencing, FenceDelay: c.FenceDelay, FenceTimeout: c.FenceTimeout,
		Preferred: 0, AutoFailback: c.AutoFailback, Group: group,
	}
	rc := repl.Config{Blocks: c.DiskBlocks(), Protocol: c.Protocol, OnIOError: c.OnIOError,
		AfterSB0: c.AfterSB0, AfterSB1: c.AfterSB1, AfterSB2: c.AfterSB2,
		ResyncRate: c.ResyncRate / scenarios.BlockSize}
	if c.DiscardNode >= 0 {
		rc.DiscardNode = proto.NodeID(c.DiscardNode)
	}
	rates := faults.Quiet()
	rates.FenceDuration = c.FenceTime
	// Resource agents (an address, a mount, a service) answer in about
	// 100ms each: group start is then well under a second, which is what
	// scenario timings such as "primary server1 within 5s" assume. Quiet's
	// 500ms mean, exponentially spread over four members, sometimes takes
	// longer than the 3s a scenario leaves after initial election.
	rates.ActionDuration = 100 * time.Millisecond
	return sim.Options{
		Seed: seed, Nodes: len(c.Nodes), Names: c.Nodes, Node: nc, NoSerial: c.NoSerial,
		Rates: rates, Replication: &sim.ReplicationOptions{Repl: rc, Workload: sim.NoWorkload},
	}, nil
}

// traceWriter keeps the trace, line by line, with the time of each line.
type traceWriter struct {
	r       *runner
	partial []byte
	tee     io.Writer
}

func (w *traceWriter) Write(p []byte) (int, error) {
	if w.tee != nil {
		w.tee.Write(p)
	}
	w.partial = append(w.partial, p...)
	for {
		i := slices.Index(w.partial, '\n')
		if i < 0 {
			break
		}
		at := time.Duration(0)
		if w.r.s != nil {
			at = w.r.s.Now()
		}
		w.r.res.Trace = append(w.r.res.Trace, TraceLine{At: at, Text: string(w.partial[:i])})
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *traceWriter) flush() {
	if len(w.partial) > 0 {
		w.Write([]byte("\n"))
	}
}

// FormatTimeline prints the scenario's steps as executed (for windows
// expanded), one per line, for reports.
func FormatTimeline(sc *scenarios.Scenario) string {
	var b strings.Builder
	for _, st := range sc.Timeline() {
		fmt.Fprintf(&b, "  %s:%d  %s\n", st.Pos.File, st.Pos.Line, sc.StepLine(st))
	}
	return b.String()
}
