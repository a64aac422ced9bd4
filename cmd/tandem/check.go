package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"tandem/daemon/config"
)

// runCheck is `tandem check`: load the configuration file as the daemon
// would, print a one-line summary (exit 0) or every problem (exit 1).
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "the configuration file")
	name := fs.String("node", "", "also show what this node gets from the file (default: the whole file only)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tandem check [--config FILE] [--node NAME]\n\nChecks the configuration file; prints a summary or every problem with its line.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "check: unexpected argument %q (the file goes after --config)\n", fs.Arg(0))
		return 2
	}
	f, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if n := len(configProblems(err)); n > 1 {
			fmt.Fprintf(stderr, "check: %d problems\n", n)
		}
		return 1
	}
	line := f.Summary()
	if *name != "" {
		s, err := f.Node(*name)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		line += fmt.Sprintf("; this node: %s (id %d, %d heartbeat media", s.Name, s.ID, len(s.Core.Media))
		switch {
		case s.Witness:
			line += ", witness)"
		case s.Disk != nil:
			line += fmt.Sprintf(", disk %s, link %s)", s.Disk.Backing, s.Disk.Listen)
		default:
			line += ")"
		}
	}
	fmt.Fprintln(stdout, line)
	return 0
}

// configProblems splits the errors.Join of config.Load into its parts.
func configProblems(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
