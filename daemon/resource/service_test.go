package resource

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tandem/daemon/resource/proc"
	"tandem/internal/node"
)

// script writes an executable shell script.
func script(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeLSB is an init script whose service is a state file; what each action
// exits with comes from files the test writes, so every LSB code can be
// produced. It logs its arguments.
const fakeLSB = `
d=$(dirname "$0")
echo "$@" >> "$d/calls"
action=$(eval echo \${$#})
case $action in
start) [ -f "$d/start.rc" ] && exit $(cat "$d/start.rc"); touch "$d/running"; echo started ;;
stop) rm -f "$d/running"; [ -f "$d/stop.rc" ] && exit $(cat "$d/stop.rc"); echo stopped ;;
status) [ -f "$d/status.rc" ] && exit $(cat "$d/status.rc"); [ -f "$d/running" ] && exit 0; exit 3 ;;
*) exit 2 ;;
esac
`

func TestLSB(t *testing.T) {
	dir := t.TempDir()
	script(t, filepath.Join(dir, "mysvc"), fakeLSB)
	a, err := NewService(ServiceSpec{Kind: LSB, Name: "mysvc", Dir: dir, Args: []string{"arg1"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if st, err := a.Monitor(ctx); st != Stopped || err != nil {
		t.Fatalf("monitor before start: %v, %v; want stopped", st, err)
	}
	if err := Do(ctx, a, node.Start); err != nil {
		t.Fatal(err)
	}
	if st, err := a.Monitor(ctx); st != Running || err != nil {
		t.Fatalf("monitor after start: %v, %v; want running", st, err)
	}
	if err := Do(ctx, a, node.Stop); err != nil {
		t.Fatal(err)
	}
	if err := Do(ctx, a, node.Monitor); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Fatalf("Do(monitor) of a stopped service = %v, want 'not running'", err)
	}
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	if want := "arg1 status\narg1 start\narg1 status\narg1 stop\narg1 status\n"; string(calls) != want {
		t.Errorf("script called with\n%s\nwant\n%s", calls, want)
	}

	// Status codes 1, 2 and 4 are failures, with the LSB meaning.
	for code, meaning := range map[string]string{"1": "pid file exists", "2": "lock file exists", "4": "unknown"} {
		os.WriteFile(filepath.Join(dir, "status.rc"), []byte(code), 0o644)
		st, err := a.Monitor(ctx)
		if st != Failed || err == nil || !strings.Contains(err.Error(), meaning) {
			t.Errorf("status exit %s: %v, %v; want failed saying %q", code, st, err, meaning)
		}
	}

	// A failed start is reported with its code's meaning and output.
	os.WriteFile(filepath.Join(dir, "start.rc"), []byte("5"), 0o644)
	err = a.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "exit status 5 (program is not installed)") {
		t.Errorf("start exit 5: %v", err)
	}

	// A stop that exits non-zero is forgiven when status says stopped...
	os.WriteFile(filepath.Join(dir, "stop.rc"), []byte("1"), 0o644)
	os.WriteFile(filepath.Join(dir, "status.rc"), []byte("3"), 0o644)
	if err := a.Stop(ctx); err != nil {
		t.Errorf("stop exit 1, then status 3: %v, want success", err)
	}
	// ...and not when it says running.
	os.WriteFile(filepath.Join(dir, "status.rc"), []byte("0"), 0o644)
	if err := a.Stop(ctx); err == nil {
		t.Error("stop exit 1, then status 0: success, want failure")
	}
}

// fakeOCF records its environment and exits with the code in rc.ACTION if
// present, else follows a state file.
const fakeOCF = `
d=$(dirname "$0")
env | grep -E '^OCF_' | sort > "$d/env.$1"
[ -f "$d/rc.$1" ] && { echo "agent says hello on $1" >&2; exit $(cat "$d/rc.$1"); }
case $1 in
start) touch "$d/running" ;;
stop) rm -f "$d/running" ;;
monitor) [ -f "$d/running" ] && exit 0; exit 7 ;;
*) exit 3 ;;
esac
`

func TestOCF(t *testing.T) {
	root := t.TempDir()
	agentDir := filepath.Join(root, "resource.d", "acme")
	script(t, filepath.Join(agentDir, "Thing"), fakeOCF)
	a, err := NewService(ServiceSpec{Kind: OCF, Name: "Thing", Provider: "acme", Instance: "thing1", OCFRoot: root,
		Params: map[string]string{"ip": "10.0.0.1", "cidr_netmask": "24"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	env, _ := os.ReadFile(filepath.Join(agentDir, "env.start"))
	for _, want := range []string{
		"OCF_ROOT=" + root, "OCF_RA_VERSION_MAJOR=1", "OCF_RA_VERSION_MINOR=0",
		"OCF_RESOURCE_INSTANCE=thing1", "OCF_RESOURCE_TYPE=Thing", "OCF_RESOURCE_PROVIDER=acme",
		"OCF_RESKEY_ip=10.0.0.1", "OCF_RESKEY_cidr_netmask=24", "OCF_RESKEY_CRM_meta_timeout=",
	} {
		if !strings.Contains(string(env), want) {
			t.Errorf("agent environment lacks %q:\n%s", want, env)
		}
	}
	if st, err := a.Monitor(ctx); st != Running || err != nil {
		t.Errorf("monitor: %v, %v", st, err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := a.Monitor(ctx); st != Stopped || err != nil {
		t.Errorf("monitor after stop: %v, %v", st, err)
	}

	// Every monitor code maps as documented.
	for code, want := range map[string]Status{"0": Running, "8": Running, "7": Stopped, "1": Failed, "2": Failed,
		"3": Failed, "5": Failed, "6": Failed, "9": Failed, "42": Failed} {
		os.WriteFile(filepath.Join(agentDir, "rc.monitor"), []byte(code), 0o644)
		st, err := a.Monitor(ctx)
		if st != want || (st == Failed) != (err != nil) {
			t.Errorf("monitor exit %s: %v, %v; want %v", code, st, err, want)
		}
		if err != nil && !strings.Contains(err.Error(), "agent says hello") {
			t.Errorf("monitor exit %s: error %q lacks the agent's output", code, err)
		}
	}
	// Stop: 0 and 7 succeed, others fail with the meaning.
	for code, ok := range map[string]bool{"0": true, "7": true, "1": false, "5": false, "6": false} {
		os.WriteFile(filepath.Join(agentDir, "rc.stop"), []byte(code), 0o644)
		if err := a.Stop(ctx); (err == nil) != ok {
			t.Errorf("stop exit %s: %v, want success %v", code, err, ok)
		}
	}
	os.WriteFile(filepath.Join(agentDir, "rc.start"), []byte("6"), 0o644)
	if err := a.Start(ctx); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Errorf("start exit 6: %v, want 'not configured'", err)
	}
	os.WriteFile(filepath.Join(agentDir, "rc.start"), []byte("7"), 0o644)
	if err := a.Start(ctx); err == nil {
		t.Error("start exit 7 succeeded; only 0 is a successful start")
	}
}

func TestServiceSpecErrors(t *testing.T) {
	for _, s := range []ServiceSpec{
		{Kind: "upstart", Name: "x"},
		{Kind: LSB},
		{Kind: LSB, Name: "../x"},
		{Kind: OCF, Name: "x", Params: map[string]string{"bad-key": "v"}},
		{Kind: OCF, Name: "x", Provider: "a/b"},
	} {
		if _, err := NewService(s); err == nil {
			t.Errorf("NewService(%+v) accepted it", s)
		}
	}
}

func TestExec(t *testing.T) {
	dir := t.TempDir()
	flag := filepath.Join(dir, "up")
	a, err := NewExec(ExecSpec{Name: "app",
		Start:   `touch "$FLAG"`,
		Stop:    `rm -f "$FLAG"`,
		Monitor: `[ -f "$FLAG" ] || exit 7`,
		Env:     []string{"FLAG=" + flag}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	for _, step := range []struct {
		op   node.Op
		fail bool
	}{{node.Monitor, true}, {node.Start, false}, {node.Monitor, false}, {node.Stop, false}, {node.Stop, false}, {node.Monitor, true}} {
		if err := Do(ctx, a, step.op); (err != nil) != step.fail {
			t.Fatalf("%v: %v, want failure %v", step.op, err, step.fail)
		}
	}

	bad, _ := NewExec(ExecSpec{Name: "bad", Start: `echo cannot start >&2; exit 1`, Stop: "true", Monitor: "exit 2"})
	err = bad.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "exit status 1") || !strings.Contains(err.Error(), "cannot start") {
		t.Errorf("failed start: %v, want exit status and output", err)
	}
	if st, err := bad.Monitor(ctx); st != Failed || err == nil || !strings.Contains(err.Error(), "invalid arguments") {
		t.Errorf("monitor exit 2: %v, %v", st, err)
	}
	noMon, _ := NewExec(ExecSpec{Name: "nomon", Start: "true", Stop: "true"})
	if st, err := noMon.Monitor(ctx); st != Failed || err == nil {
		t.Errorf("monitor without a command: %v, %v", st, err)
	}
}

// An action that outlives its timeout is killed with its whole process
// group, and the error says so.
func TestExecTimeoutKillsGroup(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	a, _ := NewExec(ExecSpec{Name: "slow", Start: `sleep 60 & echo $! > ` + pidfile + `; wait`, Stop: "true"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := Do(ctx, a, node.Start)
	if !errors.Is(err, proc.ErrTimeout) {
		t.Fatalf("err = %v, want proc.ErrTimeout", err)
	}
	b, _ := os.ReadFile(pidfile)
	pid := strings.TrimSpace(string(b))
	deadline := time.Now().Add(5 * time.Second)
	for {
		// ps reports zombies as Z; a killed orphan may linger as one until
		// init reaps it, and that is dead enough.
		out, err := exec.Command("ps", "-o", "stat=", "-p", pid).Output()
		if err != nil || strings.HasPrefix(strings.TrimSpace(string(out)), "Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("background child %s survived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFromSpec(t *testing.T) {
	if _, err := FromSpec(Spec{}, Hooks{}); err == nil {
		t.Error("empty spec accepted")
	}
	if _, err := FromSpec(Spec{Exec: &ExecSpec{Name: "a", Start: "true", Stop: "true"}, Service: &ServiceSpec{Kind: LSB, Name: "x"}}, Hooks{}); err == nil {
		t.Error("spec with two kinds accepted")
	}
	if _, err := FromSpec(Spec{FS: &FSSpec{Device: "/dev/x", Mountpoint: "/mnt/x", FSType: "ext4"}}, Hooks{}); err == nil {
		t.Error("fs without Writable accepted")
	}
	a, err := FromSpec(Spec{Exec: &ExecSpec{Name: "a", Start: "true", Stop: "true"}}, Hooks{})
	if err != nil || a.String() != "exec a" {
		t.Errorf("FromSpec(exec) = %v, %v", a, err)
	}
}
