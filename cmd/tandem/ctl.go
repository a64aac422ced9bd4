package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"tandem/daemon"
	"tandem/daemon/config"
)

// ctlFlags are the flags every control-socket command takes: where the
// daemon's socket is.
type ctlFlags struct {
	fs     *flag.FlagSet
	config *string
	node   *string
	socket *string
}

func newCtlFlags(name string, stderr io.Writer) *ctlFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &ctlFlags{fs: fs,
		config: fs.String("config", config.DefaultPath, "the configuration file (to find the control socket)"),
		node:   fs.String("node", "", "the node whose daemon to ask (default: this host)"),
		socket: fs.String("socket", "", "the control socket; overrides --config and --node")}
}

// parse parses args; code >= 0 means exit with it.
func (c *ctlFlags) parse(args []string, usage string, stderr io.Writer) int {
	c.fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		c.fs.PrintDefaults()
	}
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", c.fs.Name(), c.fs.Arg(0))
		return 2
	}
	return -1
}

// path is the control socket to use.
func (c *ctlFlags) path() (string, error) {
	if *c.socket != "" {
		return *c.socket, nil
	}
	f, err := config.Load(*c.config)
	if err != nil {
		return "", err
	}
	s, err := f.Node(*c.node)
	if err != nil {
		return "", err
	}
	return s.ControlSocket, nil
}

// runStatus is `tandem status [--json] [--verbose]`.
func runStatus(args []string, stdout, stderr io.Writer) int {
	c := newCtlFlags("status", stderr)
	asJSON := c.fs.Bool("json", false, "print the status as JSON")
	verbose := c.fs.Bool("verbose", false, "also show the replica's internal progress")
	if code := c.parse(args, "usage: tandem status [--json] [--verbose] [--config FILE] [--node NAME | --socket PATH]\n\n"+
		"Shows roles, disk and connection states of both nodes, sync progress, the group, heartbeat media and the last failover.\n\n", stderr); code >= 0 {
		return code
	}
	sock, err := c.path()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := daemon.Call(ctx, sock, daemon.Request{Command: "status", Verbose: *verbose})
	if err != nil {
		fmt.Fprintf(stderr, "tandem status: %v\n", err)
		return 1
	}
	if !resp.OK || resp.Status == nil {
		fmt.Fprintf(stderr, "tandem status: %s\n", resp.Error)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(resp.Status)
		return 0
	}
	printStatus(stdout, resp.Status)
	return 0
}

// printStatus writes a Status for people, as drbdadm status and crm_mon do.
func printStatus(w io.Writer, s *daemon.Status) {
	fmt.Fprintf(w, "%s: %s (epoch %d, up %s)", s.Node, s.State, s.Epoch, s.Uptime)
	if s.Stopping {
		fmt.Fprint(w, ", stopping")
	}
	fmt.Fprintln(w)
	if s.Peer != "" {
		alive := "dead or not heard yet"
		if s.PeerAlive {
			alive = "alive"
		}
		fmt.Fprintf(w, "  peer %s: %s", s.Peer, alive)
		if s.PeerState != "" {
			fmt.Fprintf(w, ", %s", s.PeerState)
		}
		fmt.Fprintln(w)
	}
	if r := s.Replication; r != nil {
		fmt.Fprintf(w, "  replication: role:%s disk:%s peer-disk:%s conn:%s protocol:%s", r.Role, r.Disk, r.PeerDisk, r.Conn, r.Protocol)
		if r.Suspended {
			fmt.Fprint(w, " I/O SUSPENDED")
		}
		if r.SplitBrain {
			fmt.Fprint(w, " SPLIT BRAIN")
		}
		if r.PeerOutdated {
			fmt.Fprint(w, " peer-outdated")
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "    size %d KiB, out of sync %d KiB, generations %s\n", r.SizeKiB, r.OutOfSyncKiB, r.Generations)
		if y := r.Sync; y != nil {
			fmt.Fprintf(w, "    sync: %.1f%% done, %d of %d KiB left", y.Percent, y.LeftKiB, y.TotalKiB)
			if y.ETA != "" {
				fmt.Fprintf(w, ", ETA %s", y.ETA)
			}
			fmt.Fprintln(w)
		}
		st := r.Stats
		fmt.Fprintf(w, "    resync: %d KiB received, %d KiB sent or received, %d KiB dirty at start; writes mirrored %d; split brains %d; detaches %d\n",
			st.ResyncReceived*4, st.ResyncBlocks*4, st.DirtyAtStart*4, st.WritesMirrored, st.SplitBrains, st.Detaches)
	}
	if len(s.Group) > 0 {
		fmt.Fprint(w, "  group:")
		for _, g := range s.Group {
			state := g.State
			if state == "" {
				state = "not started"
			}
			fmt.Fprintf(w, " %s[%s]", g.Name, state)
		}
		fmt.Fprintln(w)
		for _, g := range s.Group {
			if g.Error != "" {
				fmt.Fprintf(w, "    %s: %s\n", g.Name, g.Error)
			}
		}
	}
	for _, m := range s.Media {
		heard := "never heard"
		if m.Heard {
			heard = "heard " + m.LastHeardAgo + " ago"
		}
		fmt.Fprintf(w, "  medium %s (%s): %s, %d received, %d late", m.Name, m.Kind, heard, m.Received, m.Late)
		if m.MaxInterval != "" {
			fmt.Fprintf(w, " (longest gap %s)", m.MaxInterval)
		}
		t := m.Transport
		if drops := t.Malformed + t.BadAuth + t.Replayed + t.Oversized + t.WrongSender + t.Overrun; drops > 0 {
			fmt.Fprintf(w, "; dropped: malformed %d, bad auth %d, replayed %d, oversized %d, wrong sender %d, overrun %d",
				t.Malformed, t.BadAuth, t.Replayed, t.Oversized, t.WrongSender, t.Overrun)
		}
		fmt.Fprintln(w)
		if m.LastError != "" {
			fmt.Fprintf(w, "    last send error: %s\n", m.LastError)
		}
	}
	if f := s.LastFailover; f != nil {
		fmt.Fprintf(w, "  last takeover: %s at %s", f.Grounds, f.Acquired.Format(time.RFC3339))
		if f.Duration != "" {
			fmt.Fprintf(w, ", running %s after the peer was declared dead", f.Duration)
		}
		fmt.Fprintf(w, "\n    why: %s\n", f.Reason)
	}
	if s.NBD != nil {
		fmt.Fprintf(w, "  nbd: %s, %d connections, %d reads, %d writes, %d flushes, %d errors", s.NBDSocket, s.NBD.Connections,
			s.NBD.Reads, s.NBD.Writes, s.NBD.Flushes, s.NBD.Errors)
		switch {
		case s.KernelDevice != "":
			fmt.Fprintf(w, "; kernel device %s", s.KernelDevice)
		case s.KernelError != "":
			fmt.Fprintf(w, "; kernel device not attached: %s", s.KernelError)
		}
		fmt.Fprintln(w)
	}
	if s.Link != nil {
		l := s.Link
		fmt.Fprintf(w, "  link: %d connections (%d reconnects), %d frames in, %d out; bad MAC %d, bad CRC %d, malformed %d, replayed %d\n",
			l.Established, l.Reconnects, l.FramesIn, l.FramesOut, l.BadMAC, l.BadCRC, l.Malformed, l.Replayed)
	}
	if s.Debug != "" {
		fmt.Fprintf(w, "  debug: %s\n", s.Debug)
		fmt.Fprintf(w, "  shell: %d buffers held for the core, %d application requests pending\n", s.HeldBuffers, s.PendingRequests)
	}
}

// runEvents is `tandem events`: every state change, one line each.
func runEvents(args []string, stdout, stderr io.Writer) int {
	c := newCtlFlags("events", stderr)
	asJSON := c.fs.Bool("json", false, "print each event as a JSON line")
	if code := c.parse(args, "usage: tandem events [--json] [--config FILE] [--node NAME | --socket PATH]\n\n"+
		"Streams the daemon's state changes, one line each, until interrupted (like drbdsetup events2).\n\n", stderr); code >= 0 {
		return code
	}
	sock, err := c.path()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	enc := json.NewEncoder(stdout)
	err = daemon.Events(ctx, sock, func(e daemon.Event) error {
		if *asJSON {
			return enc.Encode(e)
		}
		_, err := fmt.Fprintln(stdout, formatEvent(&e))
		return err
	})
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		fmt.Fprintln(stderr, "tandem events: the daemon closed the stream (it stopped)")
		return 1
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "tandem events: %v\n", err)
		return 1
	}
	return 0
}

// formatEvent is one event as a line of key:value words, events2 style.
func formatEvent(e *daemon.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %s", e.Time.Format("15:04:05.000"), e.Node, e.Source, e.Kind)
	for _, kv := range [][2]string{{"peer", e.Peer}, {"medium", e.Medium}, {"from", e.From}, {"to", e.To},
		{"state", e.State}, {"role", e.Role}, {"disk", e.Disk}, {"conn", e.Conn}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s:%s", kv[0], kv[1])
		}
	}
	if e.Blocks != 0 {
		fmt.Fprintf(&b, " blocks:%d", e.Blocks)
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " %q", e.Reason)
	}
	return b.String()
}

// runAdmin is an admin verb: `tandem primary [--force]`, `tandem connect
// [--discard-my-data]`, `tandem standby`, ...
func runAdmin(verb string, args []string, stdout, stderr io.Writer) int {
	c := newCtlFlags(verb, stderr)
	var force, discard *bool
	switch verb {
	case "primary":
		force = c.fs.Bool("force", false, "promote even an Inconsistent or Outdated disk (the first primary of fresh disks)")
	case "connect":
		discard = c.fs.Bool("discard-my-data", false, "this node is the split-brain victim: its changes are discarded")
	}
	help := ""
	for _, v := range daemon.Verbs {
		if v.Name == verb {
			help = v.Help
		}
	}
	if code := c.parse(args, fmt.Sprintf("usage: tandem %s [flags]\n\n%s.\n\n", verb, help), stderr); code >= 0 {
		return code
	}
	sock, err := c.path()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	req := daemon.Request{Command: verb}
	if force != nil {
		req.Force = *force
	}
	if discard != nil {
		req.DiscardMyData = *discard
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := daemon.Call(ctx, sock, req)
	if err != nil {
		fmt.Fprintf(stderr, "tandem %s: %v\n", verb, err)
		return 1
	}
	for _, e := range resp.Events {
		fmt.Fprintln(stdout, formatEvent(&e))
	}
	if !resp.OK {
		fmt.Fprintf(stderr, "tandem %s: refused: %s\n", verb, resp.Error)
		return 1
	}
	return 0
}

// isAdminVerb reports whether name is one of the daemon's admin verbs.
func isAdminVerb(name string) bool {
	for _, v := range daemon.Verbs {
		if v.Name == name {
			return true
		}
	}
	return false
}
