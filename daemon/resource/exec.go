package resource

import (
	"context"
	"errors"
	"fmt"

	"tandem/daemon/resource/proc"
)

// ExecSpec is a resource made of custom shell commands (each run with
// /bin/sh -c in a process group of its own, killed when its time runs out).
type ExecSpec struct {
	// Name identifies the resource in logs, e.g. "myapp".
	Name string
	// Start and Stop are required; each must exit 0 on success. Stop must
	// succeed when the resource is already stopped.
	Start, Stop string
	// Monitor is optional; its exit status has OCF's meaning: 0 running,
	// 7 not running, anything else failed. Without it Monitor reports
	// Failed, saying that no monitor command is configured.
	Monitor string
	// Env is added to the commands' environment (KEY=value entries).
	Env []string
}

// Exec is a resource run by custom commands.
type Exec struct{ spec ExecSpec }

// NewExec checks spec and returns its agent.
func NewExec(spec ExecSpec) (*Exec, error) {
	if spec.Name == "" {
		return nil, errors.New("exec resource: Name is empty")
	}
	if spec.Start == "" || spec.Stop == "" {
		return nil, fmt.Errorf("exec resource %s: both Start and Stop commands are required", spec.Name)
	}
	if err := checkEnv(spec.Env); err != nil {
		return nil, fmt.Errorf("exec resource %s: %w", spec.Name, err)
	}
	return &Exec{spec: spec}, nil
}

func (e *Exec) String() string { return "exec " + e.spec.Name }

// Start runs the start command.
func (e *Exec) Start(ctx context.Context) error { return e.run(ctx, "start", e.spec.Start) }

// Stop runs the stop command.
func (e *Exec) Stop(ctx context.Context) error { return e.run(ctx, "stop", e.spec.Stop) }

func (e *Exec) run(ctx context.Context, what, script string) error {
	res, err := proc.Run(ctx, proc.Shell(script, e.spec.Env...))
	if err != nil {
		return fmt.Errorf("%s command: %w", what, err)
	}
	if res.Code != 0 {
		return fmt.Errorf("%s command: %s", what, res.Describe(""))
	}
	return nil
}

// Monitor runs the monitor command and reads its exit status as OCF does.
func (e *Exec) Monitor(ctx context.Context) (Status, error) {
	if e.spec.Monitor == "" {
		return Failed, errors.New("no monitor command configured")
	}
	res, err := proc.Run(ctx, proc.Shell(e.spec.Monitor, e.spec.Env...))
	if err != nil {
		return Failed, fmt.Errorf("monitor command: %w", err)
	}
	return ocfMonitor(res)
}

// ocfMonitor reads a monitor's exit status with OCF's meaning.
func ocfMonitor(res proc.Result) (Status, error) {
	switch res.Code {
	case ocfSuccess, ocfRunningMaster:
		return Running, nil
	case ocfNotRunning:
		return Stopped, nil
	}
	return Failed, fmt.Errorf("monitor: %s", res.Describe(ocfMeaning(res.Code)))
}

// checkEnv rejects environment entries that are not KEY=value.
func checkEnv(env []string) error {
	for _, kv := range env {
		i := 0
		for i < len(kv) && kv[i] != '=' {
			i++
		}
		if i == 0 || i == len(kv) {
			return fmt.Errorf("environment entry %q is not KEY=value", kv)
		}
	}
	return nil
}
