// Package fence powers off (or otherwise neutralises) the peer before this
// node takes the group over: STONITH, "shoot the other node in the head".
//
// # How the daemon uses it
//
// The core (internal/node, fencing policy FenceStonith) emits
// node.Output{Kind: node.Fence, Target: peer, Timeout: t, ID: id}. The
// daemon runs, in a goroutine of its own,
//
//	ctx, cancel := context.WithTimeout(parent, out.Timeout)
//	r := agent.Fence(ctx, names[out.Target])
//	cancel()
//
// and feeds back node.Input{Kind: node.FenceDone, ID: id, OK: r.OK(),
// Err: r.String()}.
//
// # Results
//
// A Result carries a Code with the meaning of the exit codes of DRBD's
// fence-peer handler (DRBD user's guide, "The peer fencing interface"), so
// that a handler written for DRBD works unchanged with the exec agent:
//
//	3 PeerInconsistent  the peer's disk was already Inconsistent
//	4 PeerOutdated      the peer's disk was set to Outdated (or was already)
//	5 PeerUnreachable   the peer could not be reached
//	6 PeerPrimary       the peer refused to be outdated: it is Primary
//	7 PeerFenced        the peer was fenced off the cluster (powered off)
//
// and Failed (0) when the agent gave no valid answer (it timed out, crashed,
// exited with another status, or the fence device refused).
//
// For the core, OK() is true for 3, 4 and 7, as in DRBD: the peer cannot
// write (its data is marked Inconsistent or Outdated, or it is off), so the
// core may take over, and it marks the peer's disk Outdated. 6 and Failed
// are failures: the core does not take over and retries after FenceRetry.
// 5 is a failure too, although DRBD accepts it when its own disk is
// UpToDate ("peer is unreachable, assumed to be dead"): an unreachable peer
// is exactly what a partition looks like, and taking over on that
// assumption is how split brains happen. A handler that knows the peer is
// down should say 7.
package fence

import (
	"context"
	"errors"
	"fmt"
)

// Agent fences a peer. Fence honours ctx: when it ends, the attempt is
// abandoned (child processes are killed, connections closed) and the
// Result is Failed.
type Agent interface {
	// Fence makes sure peer (its node name) cannot write any more.
	Fence(ctx context.Context, peer string) Result
}

// Code is the outcome of a fencing attempt, numbered like DRBD's fence-peer
// handler exit codes.
type Code uint8

const (
	// Failed: no valid answer; the peer's state is unknown.
	Failed Code = 0
	// PeerInconsistent (3): the peer's disk was already Inconsistent.
	PeerInconsistent Code = 3
	// PeerOutdated (4): the peer's disk is now (or was) Outdated.
	PeerOutdated Code = 4
	// PeerUnreachable (5): the peer could not be reached; it may or may not
	// be alive.
	PeerUnreachable Code = 5
	// PeerPrimary (6): the peer is Primary and refused to be outdated.
	PeerPrimary Code = 6
	// PeerFenced (7): the peer was powered off or otherwise cut off.
	PeerFenced Code = 7
)

func (c Code) String() string {
	switch c {
	case Failed:
		return "fencing failed"
	case PeerInconsistent:
		return "peer's disk is inconsistent"
	case PeerOutdated:
		return "peer's disk is outdated"
	case PeerUnreachable:
		return "peer unreachable"
	case PeerPrimary:
		return "peer is primary and refused"
	case PeerFenced:
		return "peer fenced"
	}
	return fmt.Sprintf("fence code %d", uint8(c))
}

// Result is the outcome of one Fence call.
type Result struct {
	Code Code
	// Detail says what the agent did or what went wrong, for the log and
	// the core's event: "fence_ipmilan: off, then status: OFF".
	Detail string
}

// OK says whether the core may treat the peer as fenced (codes 3, 4, 7).
func (r Result) OK() bool {
	return r.Code == PeerInconsistent || r.Code == PeerOutdated || r.Code == PeerFenced
}

func (r Result) String() string {
	if r.Detail == "" {
		return fmt.Sprintf("%v (%d)", r.Code, r.Code)
	}
	return fmt.Sprintf("%v (%d): %s", r.Code, r.Code, r.Detail)
}

func failed(format string, args ...any) Result {
	return Result{Code: Failed, Detail: fmt.Sprintf(format, args...)}
}

// Spec describes a fencing agent: exactly one field is set. The
// configuration package produces these.
type Spec struct {
	Exec       *ExecSpec
	FenceAgent *FenceAgentSpec
	QEMU       *QEMUSpec
}

// FromSpec builds the agent a Spec describes, checking the spec.
func FromSpec(s Spec) (Agent, error) {
	n := 0
	for _, set := range []bool{s.Exec != nil, s.FenceAgent != nil, s.QEMU != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("fencing spec: exactly one of Exec, FenceAgent, QEMU must be set (%d are)", n)
	}
	switch {
	case s.Exec != nil:
		return NewExec(*s.Exec)
	case s.FenceAgent != nil:
		return NewFenceAgent(*s.FenceAgent)
	}
	return NewQEMU(*s.QEMU)
}

var errEmptyPeer = errors.New("no peer name given")
