// Package resource performs the failover group's actions for real: it
// starts, stops and monitors the members of the group that the core
// (internal/node) decides about — a virtual IP address, a filesystem, a
// service (systemd unit, LSB init script or OCF resource agent) or a custom
// command.
//
// # How the daemon uses it
//
// The core emits node.Output{Kind: node.Action, Resource: i, Op: op,
// Timeout: t, ID: id}. The daemon runs, in a goroutine of its own,
//
//	ctx, cancel := context.WithTimeout(parent, out.Timeout)
//	err := resource.Do(ctx, agents[out.Resource], out.Op)
//	cancel()
//
// and feeds back node.Input{Kind: node.ActionDone, ID: id, OK: err == nil,
// Err: errText(err)}. The core issues one action at a time, so an agent
// never runs two of its own actions at once; agents are nevertheless safe
// for concurrent use.
//
// # What the results mean
//
// Start and Stop return nil on success. Stop of something already stopped
// succeeds (stop is idempotent, as OCF requires), because the core stops a
// half-started group from the top and a failed stop blocks the group until
// an operator intervenes. Monitor returns a Status with OCF's meaning:
// Running (OCF 0), Stopped (OCF 7: cleanly not running), Failed (anything
// else; the error says what). Do turns a Monitor into the core's yes/no:
// only Running is a success, since the core monitors only what it started.
package resource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"tandem/internal/node"
)

// Agent is one member of the failover group. Every method honours ctx: the
// core gives each action a timeout, and an action that outlives it is
// abandoned (child processes are killed).
type Agent interface {
	// Start brings the resource up. Starting a running resource succeeds.
	Start(ctx context.Context) error
	// Stop takes it down. Stopping a stopped resource succeeds.
	Stop(ctx context.Context) error
	// Monitor says whether it runs. The error explains a Failed status
	// (and is nil for Running and Stopped).
	Monitor(ctx context.Context) (Status, error)
	// String names the resource for logs and events, e.g.
	// "ip 192.168.1.5/24 on eth0".
	String() string
}

// Status is the outcome of a monitor, with OCF's meaning.
type Status uint8

const (
	// Failed: the resource is in an error state, or its state could not
	// be determined (OCF exit codes other than 0 and 7).
	Failed Status = iota
	// Running: the resource is up (OCF 0, and 8 "running as master").
	Running
	// Stopped: the resource is cleanly down (OCF 7, "not running").
	Stopped
)

func (s Status) String() string {
	switch s {
	case Running:
		return "running"
	case Stopped:
		return "stopped"
	}
	return "failed"
}

// Spec describes one member of the group: exactly one field is set. The
// configuration package produces these.
type Spec struct {
	IP      *IPSpec
	FS      *FSSpec
	Service *ServiceSpec
	Exec    *ExecSpec
}

// Hooks are what agents need from the daemon rather than from the
// configuration.
type Hooks struct {
	// Writable says whether the replicated device is writable here (this
	// node is Primary). A filesystem agent mounts only while it says yes.
	// Required for FS specs.
	Writable func() bool
	// Log receives what happens in the background (announcements of a
	// virtual IP after Start returned). Default slog.Default().
	Log *slog.Logger
}

// FromSpec builds the agent a Spec describes, checking the spec. Errors say
// which field is wrong.
func FromSpec(s Spec, h Hooks) (Agent, error) {
	n := 0
	for _, set := range []bool{s.IP != nil, s.FS != nil, s.Service != nil, s.Exec != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("resource spec: exactly one of IP, FS, Service, Exec must be set (%d are)", n)
	}
	switch {
	case s.IP != nil:
		return NewIP(*s.IP, h.Log)
	case s.FS != nil:
		return NewFS(*s.FS, h.Writable)
	case s.Service != nil:
		return NewService(*s.Service)
	}
	return NewExec(*s.Exec)
}

// Do performs op on a and reduces the outcome to the core's success or
// failure: nil means success. A Monitor succeeds only if a reports Running.
// Errors name the resource.
func Do(ctx context.Context, a Agent, op node.Op) error {
	var err error
	switch op {
	case node.Start:
		err = a.Start(ctx)
	case node.Stop:
		err = a.Stop(ctx)
	case node.Monitor:
		var st Status
		st, err = a.Monitor(ctx)
		switch {
		case st == Running && err == nil:
			return nil
		case err == nil && st == Stopped:
			err = errors.New("not running")
		case err == nil:
			err = errors.New("failed")
		}
	default:
		err = fmt.Errorf("unknown action %v", op)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, a, err)
	}
	return nil
}
