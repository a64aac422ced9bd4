package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"tandem/daemon/config"
)

// runImport is `tandem import`: convert a Heartbeat + DRBD setup into a
// Tandem configuration file. The file goes to -o (mode 0600: it holds the
// key) or standard output; notes about what was not carried over go to
// standard error.
func runImport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var files config.ImportFiles
	fs.StringVar(&files.HaCf, "ha-cf", "", "Heartbeat's ha.cf (required), e.g. /etc/ha.d/ha.cf")
	fs.StringVar(&files.Haresources, "haresources", "", "Heartbeat's haresources, e.g. /etc/ha.d/haresources")
	fs.StringVar(&files.Authkeys, "authkeys", "", "Heartbeat's authkeys, e.g. /etc/ha.d/authkeys")
	fs.StringVar(&files.DrbdConf, "drbd-conf", "", "DRBD's configuration, e.g. /etc/drbd.conf (includes are followed)")
	fs.StringVar(&files.Fstab, "fstab", "", "fstab, to find the filesystem an old datadisk resource mounted, e.g. /etc/fstab")
	out := fs.String("o", "", "write the new configuration here (mode 0600) instead of standard output")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tandem import --ha-cf F [--haresources F] [--authkeys F] [--drbd-conf F] [--fstab F] [-o out.toml]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "import: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	text, notes, err := config.Import(files)
	for _, n := range notes {
		fmt.Fprintln(stderr, "note:", n)
	}
	if text != nil {
		if werr := writeOut(*out, text, stdout); werr != nil {
			fmt.Fprintln(stderr, "import:", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *out != "" {
		fmt.Fprintf(stderr, "import: wrote %s; check it with: tandem check --config %s\n", *out, *out)
	}
	return 0
}

func writeOut(path string, text []byte, stdout io.Writer) error {
	if path == "" {
		_, err := stdout.Write(text)
		return err
	}
	if err := os.WriteFile(path, text, 0o600); err != nil {
		return err
	}
	// WriteFile keeps an existing file's mode; the file holds the key.
	return os.Chmod(path, 0o600)
}
