package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"tandem/scenarios"
	"tandem/scenarios/run"
	"tandem/sim"
)

// runScenario is `tandem scenario run FILE... [--seed N] [--seeds K] [-v]`.
func runScenario(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintf(stderr, "usage: tandem scenario run FILE... [--seed N] [--seeds K] [-v]\n")
		return 2
	}
	fs := flag.NewFlagSet("scenario run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Uint64("seed", 1, "first seed (it varies latencies, fence and action times, the blocks \"write N blocks\" picks)")
	seeds := fs.Int("seeds", 1, "how many seeds to run each file with: seed, seed+1, ...")
	verbose := fs.Bool("v", false, "print the whole trace of every run")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tandem scenario run FILE... [--seed N] [--seeds K] [-v]\n\nRuns each scenario in the simulator; one line per file, and for a failure the\nfirst unmet expectation, the trace around it and the scenario's timeline.\n\n")
		fs.PrintDefaults()
	}
	// Flags may come after the files (tandem scenario run a.scn --seeds 10).
	var files []string
	rest := args[1:]
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return 2
		}
		rest = fs.Args()
		if len(rest) > 0 {
			files = append(files, rest[0])
			rest = rest[1:]
		}
	}
	if len(files) == 0 {
		fs.Usage()
		return 2
	}
	if *seeds < 1 {
		fmt.Fprintf(stderr, "tandem scenario run: --seeds: want at least 1, got %d\n", *seeds)
		return 2
	}
	code := 0
	for _, path := range files {
		if !runScenarioFile(path, *seed, *seeds, *verbose, stdout) {
			code = 1
		}
	}
	return code
}

// runScenarioFile runs one file under every seed and reports; false if it
// failed (or did not parse).
func runScenarioFile(path string, seed uint64, seeds int, verbose bool, out io.Writer) bool {
	sc, err := scenarios.ParseFile(path)
	if err != nil {
		fmt.Fprintf(out, "FAIL %s: %v\n", path, err)
		return false
	}
	start := time.Now()
	for k := range uint64(seeds) {
		opt := run.Options{Seed: seed + k}
		if verbose {
			fmt.Fprintf(out, "=== %s seed %d\n", path, seed+k)
			opt.Trace = out
		}
		res, err := run.Run(sc, opt)
		if err != nil {
			fmt.Fprintf(out, "FAIL %s seed %d: %v\n", path, seed+k, err)
			return false
		}
		if !res.OK() {
			f := res.Failures[0]
			fmt.Fprintf(out, "FAIL %s seed %d: %s\n", path, seed+k, f)
			for _, g := range res.Failures[1:] {
				fmt.Fprintf(out, "     also: %s\n", g)
			}
			fmt.Fprintf(out, "  trace around %s:\n", scenarios.FormatDuration(f.At))
			for _, l := range res.TraceAround(f.At, 20) {
				fmt.Fprintf(out, "    %s\n", l.Text)
			}
			fmt.Fprintf(out, "  timeline:\n%s", run.FormatTimeline(sc))
			fmt.Fprintf(out, "  replay: tandem scenario run %s --seed %d -v\n", path, seed+k)
			return false
		}
	}
	fmt.Fprintf(out, "PASS %s (seeds %d..%d, %v)\n", path, seed, seed+uint64(seeds)-1, time.Since(start).Round(time.Millisecond))
	return true
}

// emitScenario writes a simulator run as a scenario file (tandem sim
// --emit-scenario FILE), so that a failing seed becomes a regression.
func emitScenario(path string, opt sim.Options, res sim.Result, command string) error {
	sc, err := run.FromSim(opt, res, command)
	if err != nil {
		return err
	}
	return os.WriteFile(path, scenarios.Format(sc), 0o644)
}
