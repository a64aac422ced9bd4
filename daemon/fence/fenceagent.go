package fence

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"tandem/daemon/resource/proc"
)

// FenceAgentSpec is a fence agent from the fence-agents package
// (fence_ipmilan, fence_virsh, fence_apc, ...), driven the way fenced and
// Pacemaker drive them: options as key=value lines on standard input.
type FenceAgentSpec struct {
	// Agent is the program, "fence_ipmilan" or just "ipmilan".
	Agent string
	// Options are the agent's options (see its man page), e.g. ip,
	// username, password, lanplus. "action" is set by Tandem.
	Options map[string]string
	// PeerOption, if set, is the option that names the victim, set to the
	// peer's node name: "plug" for agents that control many machines
	// (fence_virsh, PDUs). Leave it empty when Options already point at
	// the peer's own device (an IPMI address).
	PeerOption string
	// Action is "off" (default) or "reboot". Off is verified; reboot
	// cannot be (the peer is on again afterwards).
	Action string
	// Dir is where the agent lives. Default: $PATH, then /usr/sbin and
	// /sbin.
	Dir string
}

// FenceAgent runs a fence-agents program. Action off: `action=off`, which
// must exit 0, then `action=status`, which must exit 2 ("off"; 0 means
// still on) for PeerFenced. Action reboot: exit 0 is PeerFenced. Anything
// else, or a timeout, is Failed with the agent's output.
type FenceAgent struct {
	path  string
	spec  FenceAgentSpec
	input string // the options, one per line, without action and peer
}

// NewFenceAgent checks spec, finds the program and returns its agent.
func NewFenceAgent(spec FenceAgentSpec) (*FenceAgent, error) {
	name := spec.Agent
	if name == "" || strings.ContainsRune(name, '/') {
		return nil, fmt.Errorf("fence agent %q: give the agent's name, e.g. fence_ipmilan (and Dir for its directory)", name)
	}
	if !strings.HasPrefix(name, "fence_") {
		name = "fence_" + name
	}
	switch spec.Action {
	case "":
		spec.Action = "off"
	case "off", "reboot":
	default:
		return nil, fmt.Errorf("fence agent %s: Action %q is not off or reboot", name, spec.Action)
	}
	keys := make([]string, 0, len(spec.Options))
	for k := range spec.Options {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the same input every time, whatever the map's order
	var b strings.Builder
	for _, k := range keys {
		v := spec.Options[k]
		switch {
		case k == "" || strings.ContainsAny(k, "=\n\r \t"):
			return nil, fmt.Errorf("fence agent %s: option name %q is not a word", name, k)
		case strings.ContainsAny(v, "\n\r"):
			return nil, fmt.Errorf("fence agent %s: option %s: value has a line break", name, k)
		case k == "action" || k == "option":
			return nil, fmt.Errorf("fence agent %s: option %s is set by Tandem (use Action)", name, k)
		case k == spec.PeerOption:
			return nil, fmt.Errorf("fence agent %s: option %s is PeerOption, set to the peer's name; do not set it in Options", name, k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	path, err := findAgent(name, spec.Dir)
	if err != nil {
		return nil, err
	}
	spec.Agent = name
	return &FenceAgent{path: path, spec: spec, input: b.String()}, nil
}

func findAgent(name, dir string) (string, error) {
	if dir != "" {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("fence agent %s not found in %s (is fence-agents installed?)", name, dir)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} { // a daemon's PATH may lack sbin
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("fence agent %s not found in $PATH, /usr/sbin or /sbin (is fence-agents installed?)", name)
}

func (f *FenceAgent) run(ctx context.Context, action, peer string) (proc.Result, error) {
	in := "action=" + action + "\n"
	if f.spec.PeerOption != "" {
		in += f.spec.PeerOption + "=" + peer + "\n"
	}
	return proc.Run(ctx, proc.Command{Path: f.path, Stdin: in + f.input})
}

// Fence runs the agent's off (or reboot) action and, for off, checks the
// peer's power status.
func (f *FenceAgent) Fence(ctx context.Context, peer string) Result {
	if peer == "" || strings.ContainsAny(peer, "\n\r") {
		return failed("%s: %v", f.spec.Agent, errEmptyPeer)
	}
	res, err := f.run(ctx, f.spec.Action, peer)
	if err != nil {
		return failed("%s %s: %v", f.spec.Agent, f.spec.Action, err)
	}
	if res.Code != 0 {
		return failed("%s %s: %s", f.spec.Agent, f.spec.Action, res.Describe(agentMeaning(res.Code)))
	}
	if f.spec.Action == "reboot" {
		return Result{Code: PeerFenced, Detail: fmt.Sprintf("%s: rebooted %s", f.spec.Agent, peer)}
	}
	res, err = f.run(ctx, "status", peer)
	switch {
	case err != nil:
		return failed("%s: off succeeded, but status: %v", f.spec.Agent, err)
	case res.Code == 2:
		return Result{Code: PeerFenced, Detail: fmt.Sprintf("%s: off, then status: off", f.spec.Agent)}
	case res.Code == 0:
		return failed("%s: off succeeded, but status says %s is still on", f.spec.Agent, peer)
	}
	return failed("%s: off succeeded, but status: %s", f.spec.Agent, res.Describe(agentMeaning(res.Code)))
}

// agentMeaning names the exit codes of the fence-agents library (fencing.py).
func agentMeaning(code int) string {
	switch code {
	case 1:
		return "generic error"
	case 2:
		return "bad arguments"
	case 3:
		return "login denied"
	case 4:
		return "connection lost"
	case 5:
		return "timed out"
	case 6:
		return "timed out waiting for power on"
	case 7:
		return "timed out waiting for power off"
	case 8:
		return "cannot read the power status"
	case 10:
		return "password missing"
	case 11:
		return "invalid privileges"
	}
	return ""
}
