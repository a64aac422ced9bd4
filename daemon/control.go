package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"tandem/internal/node"
	"tandem/internal/repl"
)

// Request is one line a control client sends.
type Request struct {
	// Command is "status", "events", or an admin verb: "primary",
	// "secondary", "connect", "disconnect", "verify", "invalidate",
	// "detach", "pause-sync", "resume-sync" (the replicated disk, as drbdadm),
	// "standby", "online", "takeover", "cleanup" (the group, as Heartbeat's
	// hb_standby/hb_takeover and crm's cleanup).
	Command string `json:"command"`
	// Force: primary --force (promote an Inconsistent or Outdated disk).
	Force bool `json:"force,omitempty"`
	// DiscardMyData: connect --discard-my-data (this node is the split-brain
	// victim).
	DiscardMyData bool `json:"discard_my_data,omitempty"`
	// Verbose: status includes the replica's internal progress.
	Verbose bool `json:"verbose,omitempty"`
}

// Response is the daemon's one-line answer (for "events", the first line;
// Event lines follow).
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Events are what the core reported while carrying out an admin verb.
	Events []Event `json:"events,omitempty"`
	Status *Status `json:"status,omitempty"`
}

// Verbs lists the admin verbs and what they do, for usage texts.
var Verbs = []struct{ Name, Help string }{
	{"primary", "promote the replicated disk (--force: even Inconsistent/Outdated; the first one starts the first generation)"},
	{"secondary", "demote the replicated disk"},
	{"connect", "leave StandAlone and connect (--discard-my-data: this node is the split-brain victim)"},
	{"disconnect", "drop the replication link and stay StandAlone"},
	{"verify", "start an online verify; mismatches are marked out of sync"},
	{"invalidate", "discard the local data: full resync from the peer"},
	{"detach", "drop the local disk; I/O is served through the peer"},
	{"pause-sync", "pause a running resync"},
	{"resume-sync", "resume a paused resync"},
	{"standby", "hand the group to the peer and do not take it until online"},
	{"online", "clear standby"},
	{"takeover", "take the group from the peer"},
	{"cleanup", "forget resource failure counts and leave Blocked"},
}

var replVerbs = map[string]repl.AdminCmd{
	"primary": repl.CmdPrimary, "secondary": repl.CmdSecondary, "connect": repl.CmdConnect,
	"disconnect": repl.CmdDisconnect, "verify": repl.CmdVerify, "invalidate": repl.CmdInvalidate,
	"detach": repl.CmdDetach, "pause-sync": repl.CmdPauseSync, "resume-sync": repl.CmdResumeSync,
}

var nodeVerbs = map[string]node.Admin{
	"standby": node.Standby, "online": node.Online, "takeover": node.Takeover, "cleanup": node.Cleanup,
}

// serveControl accepts control connections until the listener closes.
func (d *loop) serveControl(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer c.Close()
			d.serveConn(c)
		}()
	}
}

func (d *loop) serveConn(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(c, 4096).ReadSlice('\n')
	if err != nil {
		return
	}
	c.SetReadDeadline(time.Time{})
	var req Request
	var resp Response
	enc := json.NewEncoder(c)
	if err := json.Unmarshal(line, &req); err != nil {
		enc.Encode(Response{Error: fmt.Sprintf("bad request %q: %v", strings.TrimSpace(string(line)), err)})
		return
	}
	if req.Command == "events" {
		d.streamEvents(c, enc)
		return
	}
	if !d.call(func() { resp = d.handle(&req) }) {
		resp = Response{Error: "the daemon is stopping"}
	}
	enc.Encode(resp)
}

// handle runs a request on the loop goroutine.
func (d *loop) handle(req *Request) Response {
	if req.Command == "status" {
		return Response{OK: true, Status: d.status(req.Verbose)}
	}
	var in node.Input
	if cmd, ok := replVerbs[req.Command]; ok {
		if d.n.Replica() == nil {
			return Response{Error: req.Command + ": this node has no replicated disk"}
		}
		in = node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.Admin, Admin: cmd, Force: req.Force,
			DiscardMyData: req.DiscardMyData}}
	} else if cmd, ok := nodeVerbs[req.Command]; ok {
		in = node.Input{Kind: node.AdminCommand, Admin: cmd}
	} else {
		return Response{Error: fmt.Sprintf("unknown command %q (want status, events or an admin verb)", req.Command)}
	}
	if d.stop.phase > 0 {
		return Response{Error: "the daemon is stopping"}
	}
	d.log.Info("operator command", "verb", req.Command, "force", req.Force, "discard_my_data", req.DiscardMyData)
	var got []Event
	d.capture = &got
	d.step(in)
	d.capture = nil
	resp := Response{OK: true, Events: got}
	for _, e := range got {
		if e.Kind == node.AdminRefused.String() || e.Kind == repl.Refused.String() {
			resp.OK, resp.Error = false, e.Reason
		}
	}
	return resp
}

// streamEvents sends a Response line, then every event as a line, until the
// client hangs up or the daemon stops.
func (d *loop) streamEvents(c net.Conn, enc *json.Encoder) {
	sub := &subscriber{ch: make(chan []byte, 1024)}
	if !d.call(func() { d.subs[sub] = struct{}{} }) {
		enc.Encode(Response{Error: "the daemon is stopping"})
		return
	}
	defer d.call(func() { delete(d.subs, sub) })
	if enc.Encode(Response{OK: true}) != nil {
		return
	}
	gone := make(chan struct{})
	go func() {
		var b [64]byte
		for {
			if _, err := c.Read(b[:]); err != nil {
				close(gone)
				return
			}
		}
	}()
	for {
		select {
		case line := <-sub.ch:
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(line); err != nil {
				return
			}
		case <-gone:
			return
		case <-d.quit:
			return
		}
	}
}

// Call sends one request to the daemon's control socket and returns its
// answer. A refused admin verb is a Response with OK false, not an error;
// the error is for a daemon that cannot be reached or answers nonsense.
func Call(ctx context.Context, socket string, req Request) (*Response, error) {
	c, err := dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", socket, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("control socket %s: reading the answer: %w", socket, err)
	}
	return &resp, nil
}

// Events streams the daemon's events to fn until ctx ends, fn returns an
// error, or the daemon goes away (io.EOF-like errors are returned as is).
func Events(ctx context.Context, socket string, fn func(Event) error) error {
	return EventsSubscribed(ctx, socket, nil, fn)
}

// EventsSubscribed is Events, calling subscribed (if not nil) once the daemon
// has accepted the subscription: every event after that moment reaches fn.
func EventsSubscribed(ctx context.Context, socket string, subscribed func(), fn func(Event) error) error {
	c, err := dial(ctx, socket)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(c).Encode(Request{Command: "events"}); err != nil {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	dec := json.NewDecoder(c)
	var resp Response
	if err := dec.Decode(&resp); err != nil {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	if !resp.OK {
		return fmt.Errorf("control socket %s: %s", socket, resp.Error)
	}
	if subscribed != nil {
		subscribed()
	}
	for {
		var e Event
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

func dial(ctx context.Context, socket string) (net.Conn, error) {
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", socket)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return nil, fmt.Errorf("cannot reach the daemon at %s (is tandem daemon running, and are you root?): %w", socket, op.Err)
		}
		return nil, err
	}
	return c, nil
}
