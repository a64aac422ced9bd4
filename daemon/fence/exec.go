package fence

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"tandem/daemon/resource/proc"
)

// ExecSpec is a fence-peer handler: a command whose exit status is one of
// DRBD's fence-peer codes (3 to 7).
type ExecSpec struct {
	// Command runs with /bin/sh -c, as DRBD runs its handlers, e.g.
	// "/usr/lib/drbd/crm-fence-peer.sh" or "ipmitool -H bmc-$DRBD_PEER ...
	// chassis power off && exit 7".
	Command string
	// Resource is passed as DRBD_RESOURCE and TANDEM_RESOURCE. Optional.
	Resource string
	// Env is added to the command's environment (KEY=value entries).
	Env []string
}

// Exec runs a fence-peer handler. Its environment has DRBD_PEER and
// TANDEM_PEER set to the peer's name (and DRBD_RESOURCE/TANDEM_RESOURCE).
// Exit statuses 3 to 7 are the Result's Code; any other status, a
// signal or a timeout (which kills the handler's process group) is Failed.
// Note that DRBD calls exit 0 "broken" too: a handler must say what it did.
type Exec struct{ spec ExecSpec }

// NewExec checks spec and returns its agent.
func NewExec(spec ExecSpec) (*Exec, error) {
	if strings.TrimSpace(spec.Command) == "" {
		return nil, errors.New("exec fencing: Command is empty")
	}
	for _, kv := range spec.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("exec fencing: environment entry %q is not KEY=value", kv)
		}
	}
	return &Exec{spec: spec}, nil
}

// Fence runs the handler.
func (e *Exec) Fence(ctx context.Context, peer string) Result {
	if peer == "" {
		return failed("exec fencing: %v", errEmptyPeer)
	}
	env := append([]string{"DRBD_PEER=" + peer, "TANDEM_PEER=" + peer}, e.spec.Env...)
	if e.spec.Resource != "" {
		env = append(env, "DRBD_RESOURCE="+e.spec.Resource, "TANDEM_RESOURCE="+e.spec.Resource)
	}
	res, err := proc.Run(ctx, proc.Shell(e.spec.Command, env...))
	if err != nil {
		return failed("fence-peer handler: %v", err)
	}
	c := Code(res.Code)
	switch c {
	case PeerInconsistent, PeerOutdated, PeerUnreachable, PeerPrimary, PeerFenced:
		return Result{Code: c, Detail: "fence-peer handler: " + res.Describe("")}
	}
	return failed("fence-peer handler: %s", res.Describe("not a fence-peer result: exit 3 to 7, e.g. 7 when the peer is powered off"))
}
