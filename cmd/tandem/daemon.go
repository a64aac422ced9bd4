package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"tandem/daemon"
	"tandem/daemon/config"
)

// runDaemon is `tandem daemon`: run this node until SIGTERM (orderly stop:
// hand the group away, clean metadata) or a second signal (stop at once).
func runDaemon(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "the configuration file")
	name := fs.String("node", "", "this node's name in the file (default: the hostname)")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	shutdownTimeout := fs.Duration("shutdown-timeout", daemon.DefaultShutdownTimeout,
		"on SIGTERM, how long to wait for the group to be handed away before stopping anyway")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: tandem daemon [--config FILE] [--node NAME] [--log-level LEVEL]\n\n"+
			"Runs this node: heartbeats, the replicated disk, its NBD export, the resource group.\n"+
			"SIGTERM or SIGINT stops it in order (the group is handed to the peer, the metadata marked clean);\n"+
			"a second signal stops it at once.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "daemon: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "daemon: --log-level %q: want debug, info, warn or error\n", *level)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	f, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	setup, err := f.Node(*name)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shutdown := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		s := <-sigs
		log.Info("signal: orderly shutdown", "signal", s)
		close(shutdown)
		s = <-sigs
		log.Warn("second signal: stopping at once", "signal", s)
		cancel()
	}()
	start := time.Now()
	err = daemon.Run(ctx, setup, daemon.Options{Logger: log, Shutdown: shutdown, ShutdownTimeout: *shutdownTimeout})
	if err != nil {
		fmt.Fprintf(stderr, "tandem daemon: %v\n", err)
		return 1
	}
	log.Info("stopped", "uptime", time.Since(start).Round(time.Millisecond))
	return 0
}
