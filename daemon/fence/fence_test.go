package fence

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestResultOK(t *testing.T) {
	for c, ok := range map[Code]bool{Failed: false, PeerInconsistent: true, PeerOutdated: true,
		PeerUnreachable: false, PeerPrimary: false, PeerFenced: true, Code(9): false} {
		if (Result{Code: c}).OK() != ok {
			t.Errorf("Result{%v}.OK() = %v", c, !ok)
		}
	}
	if s := (Result{Code: PeerFenced, Detail: "x"}).String(); s != "peer fenced (7): x" {
		t.Errorf("String() = %q", s)
	}
}

// The exec agent passes the handler's exit status through as the Code, for
// each of DRBD's fence-peer codes, and hands it the peer's name.
func TestExec(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	a, err := NewExec(ExecSpec{
		Command:  `env | grep -E '^(DRBD|TANDEM)_' | sort > "$OUT"; echo "fencing $DRBD_PEER"; exit $CODE`,
		Resource: "r0",
		Env:      []string{"OUT=" + envFile},
	})
	if err != nil {
		t.Fatal(err)
	}
	for code, want := range map[int]Code{3: PeerInconsistent, 4: PeerOutdated, 5: PeerUnreachable, 6: PeerPrimary, 7: PeerFenced, 0: Failed, 1: Failed, 8: Failed} {
		a.spec.Env = []string{"OUT=" + envFile, "CODE=" + strconv.Itoa(code)}
		r := a.Fence(ctxT(t, 10*time.Second), "server2")
		if r.Code != want {
			t.Errorf("exit %d: %v, want %v", code, r, want)
		}
		if !strings.Contains(r.Detail, "exit status "+strconv.Itoa(code)) || !strings.Contains(r.Detail, "fencing server2") {
			t.Errorf("exit %d: detail %q lacks the status or the output", code, r.Detail)
		}
	}
	env, _ := os.ReadFile(envFile)
	if want := "DRBD_PEER=server2\nDRBD_RESOURCE=r0\nTANDEM_PEER=server2\nTANDEM_RESOURCE=r0\n"; string(env) != want {
		t.Errorf("handler environment:\n%s\nwant\n%s", env, want)
	}
}

func TestExecTimeout(t *testing.T) {
	a, _ := NewExec(ExecSpec{Command: "sleep 30; exit 7"})
	start := time.Now()
	r := a.Fence(ctxT(t, 300*time.Millisecond), "server2")
	if r.Code != Failed || r.OK() || !strings.Contains(r.Detail, "killed") {
		t.Errorf("timed-out handler: %v", r)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("returned after %v", time.Since(start))
	}
}

// fakeAgent is a fence agent in the fence-agents style: options on stdin,
// power state in a file, behaviour chosen by the file "mode".
const fakeAgent = `
d=$(dirname "$0")
input=$(cat)
printf '%s\n--\n' "$input" >> "$d/stdin"
action=$(printf '%s\n' "$input" | sed -n 's/^action=//p')
mode=$(cat "$d/mode" 2>/dev/null)
case $action in
off)
	[ "$mode" = fail ] && { echo "Failed: Unable to connect" >&2; exit 4; }
	[ "$mode" = stayon ] || touch "$d/is-off"
	echo "Success: Powered OFF" ;;
reboot) echo "Success: Rebooted" ;;
status)
	if [ -f "$d/is-off" ]; then echo "Status: OFF"; exit 2; fi
	echo "Status: ON" ;;
*) exit 2 ;;
esac
`

func TestFenceAgent(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "fence_test"), []byte("#!/bin/sh\n"+fakeAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := NewFenceAgent(FenceAgentSpec{Agent: "test", Dir: dir, PeerOption: "plug",
		Options: map[string]string{"username": "admin", "password": "s3cret", "ip": "10.0.0.9"}})
	if err != nil {
		t.Fatal(err)
	}
	r := a.Fence(ctxT(t, 10*time.Second), "server2")
	if r.Code != PeerFenced || !r.OK() {
		t.Fatalf("fence: %v", r)
	}
	stdin, _ := os.ReadFile(filepath.Join(dir, "stdin"))
	want := "action=off\nplug=server2\nip=10.0.0.9\npassword=s3cret\nusername=admin\n--\n" +
		"action=status\nplug=server2\nip=10.0.0.9\npassword=s3cret\nusername=admin\n--\n"
	if string(stdin) != want {
		t.Errorf("agent received\n%s\nwant\n%s", stdin, want)
	}
	if strings.Contains(r.String(), "s3cret") {
		t.Errorf("result %q shows the password", r)
	}

	// Off "succeeds" but the machine stays on: not fenced.
	os.Remove(filepath.Join(dir, "is-off"))
	os.WriteFile(filepath.Join(dir, "mode"), []byte("stayon"), 0o644)
	if r := a.Fence(ctxT(t, 10*time.Second), "server2"); r.Code != Failed || !strings.Contains(r.Detail, "still on") {
		t.Errorf("machine still on after off: %v", r)
	}
	// Off fails: the agent's exit code and output are in the detail.
	os.WriteFile(filepath.Join(dir, "mode"), []byte("fail"), 0o644)
	r = a.Fence(ctxT(t, 10*time.Second), "server2")
	if r.Code != Failed || !strings.Contains(r.Detail, "exit status 4 (connection lost)") || !strings.Contains(r.Detail, "Unable to connect") {
		t.Errorf("failing agent: %v", r)
	}

	reboot, _ := NewFenceAgent(FenceAgentSpec{Agent: "fence_test", Dir: dir, Action: "reboot"})
	if r := reboot.Fence(ctxT(t, 10*time.Second), "server2"); r.Code != PeerFenced {
		t.Errorf("reboot: %v", r)
	}
}

func TestFenceAgentSpecErrors(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "fence_test"), []byte("#!/bin/sh\n"), 0o755)
	for _, s := range []FenceAgentSpec{
		{Agent: "", Dir: dir},
		{Agent: "/usr/sbin/fence_test", Dir: dir},
		{Agent: "missing", Dir: dir},
		{Agent: "test", Dir: dir, Action: "on"},
		{Agent: "test", Dir: dir, Options: map[string]string{"action": "off"}},
		{Agent: "test", Dir: dir, Options: map[string]string{"a=b": "c"}},
		{Agent: "test", Dir: dir, Options: map[string]string{"ip": "1\naction=on"}},
		{Agent: "test", Dir: dir, PeerOption: "plug", Options: map[string]string{"plug": "x"}},
	} {
		if _, err := NewFenceAgent(s); err == nil {
			t.Errorf("NewFenceAgent(%+v) accepted it", s)
		}
	}
}

func TestFromSpec(t *testing.T) {
	if _, err := FromSpec(Spec{}); err == nil {
		t.Error("empty spec accepted")
	}
	if _, err := FromSpec(Spec{Exec: &ExecSpec{Command: "exit 7"}, QEMU: &QEMUSpec{Socket: "/x"}}); err == nil {
		t.Error("two agents accepted")
	}
	a, err := FromSpec(Spec{Exec: &ExecSpec{Command: "exit 7"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := a.Fence(ctxT(t, 10*time.Second), "server2"); r.Code != PeerFenced {
		t.Errorf("fence: %v", r)
	}
}
