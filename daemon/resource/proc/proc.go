// Package proc runs the external programs that resource and fencing agents
// are made of: init scripts, OCF resource agents, fsck, custom commands,
// fence-peer handlers and fence agents.
//
// Every program runs in a process group of its own, so that a timeout kills
// the whole tree (a shell script's children included) rather than only the
// shell, and with its standard output and error captured, bounded, for the
// error a user reads.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// OutputLimit is how much of a program's output (stdout and stderr
// together) is kept: the last OutputLimit bytes, which is where the reason
// for a failure usually is.
const OutputLimit = 4096

// pipeGrace bounds the wait for output after the program exited. A start
// script that launches a daemon without redirecting its output leaves the
// pipe open for as long as the daemon runs; the script's exit status is
// what counts, so after this grace period the pipe is abandoned.
const pipeGrace = time.Second

// Command is one program to run.
type Command struct {
	// Path is the program; Args its arguments (without argv[0]).
	Path string
	Args []string
	// Env is added to the daemon's own environment (KEY=value entries;
	// later entries win).
	Env []string
	// Stdin is written to the program's standard input; empty means
	// /dev/null.
	Stdin string
	// Dir is the working directory; empty means the daemon's.
	Dir string
}

// Shell returns a Command that runs script with /bin/sh -c, as Heartbeat
// and DRBD run their handlers.
func Shell(script string, env ...string) Command {
	return Command{Path: "/bin/sh", Args: []string{"-c", script}, Env: env}
}

// Result is how a program ended.
type Result struct {
	// Code is the exit status; -1 if the program was killed by a signal.
	Code int
	// Output is the tail of its combined stdout and stderr, trimmed.
	Output string
}

// ErrTimeout is wrapped by Run's error when the context ended first and the
// process group was killed.
var ErrTimeout = errors.New("killed (process group) when its time ran out")

// Run runs c and waits for it, or until ctx ends, in which case the whole
// process group gets SIGKILL and the error wraps ErrTimeout and ctx.Err().
// A program that could not be started, or died of a signal, is an error;
// any exit status is a Result (what it means is the caller's business).
// The error and the Result carry the output either way.
func Run(ctx context.Context, c Command) (Result, error) {
	if ctx.Err() != nil {
		return Result{Code: -1}, fmt.Errorf("%s: not run: %w", c.Path, ctx.Err())
	}
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Dir = c.Dir
	if c.Stdin != "" {
		cmd.Stdin = strings.NewReader(c.Stdin)
	}
	out := &tail{limit: OutputLimit}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The negative pid names the group: the program and every child
		// it did not move to a group of its own.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = pipeGrace
	err := cmd.Run()
	res := Result{Code: -1, Output: out.String()}
	if cmd.ProcessState != nil {
		res.Code = cmd.ProcessState.ExitCode()
	}
	switch {
	case ctx.Err() != nil && cmd.ProcessState != nil && !cmd.ProcessState.Exited():
		return res, fmt.Errorf("%s: %w: %w%s", c.Path, ErrTimeout, ctx.Err(), res.suffix())
	case err == nil, errors.Is(err, exec.ErrWaitDelay) && res.Code >= 0:
		return res, nil
	case res.Code >= 0:
		return res, nil // *exec.ExitError: a status, which is a Result
	case cmd.ProcessState != nil:
		return res, fmt.Errorf("%s: %v%s", c.Path, cmd.ProcessState, res.suffix())
	}
	return res, fmt.Errorf("%s: %w", c.Path, err)
}

// suffix is the output for an error message, if there is any.
func (r Result) suffix() string {
	if r.Output == "" {
		return ""
	}
	return "; output: " + r.Output
}

// Describe says how a program ended, with its output, for an error message:
// "exit status 3 (not running); output: ...".
func (r Result) Describe(meaning string) string {
	s := fmt.Sprintf("exit status %d", r.Code)
	if meaning != "" {
		s += " (" + meaning + ")"
	}
	return s + r.suffix()
}

// tail keeps the last limit bytes written to it. The child's stdout and
// stderr are copied by two goroutines, hence the lock.
type tail struct {
	mu        sync.Mutex
	limit     int
	buf       []byte
	truncated bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.limit; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.truncated = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(bytes.TrimSpace(bytes.ToValidUTF8(t.buf, []byte("?"))))
	if t.truncated {
		s = "..." + s
	}
	return s
}
