package proc

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestExitStatusAndOutput(t *testing.T) {
	res, err := Run(context.Background(), Shell(`echo out; echo err >&2; exit 3`))
	if err != nil {
		t.Fatal(err)
	}
	if res.Code != 3 {
		t.Errorf("code %d, want 3", res.Code)
	}
	if !strings.Contains(res.Output, "out") || !strings.Contains(res.Output, "err") {
		t.Errorf("output %q lacks stdout or stderr", res.Output)
	}
	if d := res.Describe("meaning"); !strings.HasPrefix(d, "exit status 3 (meaning); output: ") {
		t.Errorf("Describe = %q", d)
	}
}

func TestEnvAndStdin(t *testing.T) {
	c := Shell(`read a; read b; echo "$FOO $a $b"`, "FOO=bar")
	c.Stdin = "x=1\ny=2\n"
	res, err := Run(context.Background(), c)
	if err != nil || res.Code != 0 || res.Output != "bar x=1 y=2" {
		t.Fatalf("got %+v, %v; want output %q", res, err, "bar x=1 y=2")
	}
}

func TestOutputIsBounded(t *testing.T) {
	res, err := Run(context.Background(), Shell(`i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done`))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Output) > OutputLimit+3 {
		t.Errorf("output is %d bytes, limit %d", len(res.Output), OutputLimit)
	}
	if !strings.HasPrefix(res.Output, "...") || !strings.HasSuffix(res.Output, "line1999") {
		t.Errorf("want the truncated tail ending in line1999, got ...%q", res.Output[len(res.Output)-20:])
	}
}

func TestNotStartable(t *testing.T) {
	_, err := Run(context.Background(), Command{Path: "/nonexistent/program"})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/program") {
		t.Fatalf("err = %v, want one naming the program", err)
	}
}

// A timeout kills the whole process group: the shell and the child it
// started in the background.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Shell(`sleep 60 & echo $! > `+pidfile+`; echo started; wait`))
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout and DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Run returned after %v", took)
	}
	if res.Code != -1 || !strings.Contains(err.Error(), "started") {
		t.Errorf("res %+v, err %v: want code -1 and the output in the error", res, err)
	}
	b, rerr := os.ReadFile(pidfile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitDead(t, pid)
}

// A program that leaves a child holding its output pipe still returns
// promptly with its own exit status.
func TestBackgroundChildKeepsPipe(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "pid")
	start := time.Now()
	res, err := Run(context.Background(), Shell(`sleep 30 & echo $! > `+pidfile+`; exit 0`))
	if err != nil || res.Code != 0 {
		t.Fatalf("got %+v, %v", res, err)
	}
	if took := time.Since(start); took > pipeGrace+3*time.Second {
		t.Errorf("took %v", took)
	}
	b, _ := os.ReadFile(pidfile)
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
		if !alive(pid) {
			t.Errorf("the background child %d was killed; only a timeout should kill", pid)
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitDead waits until pid is gone or a zombie.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d (a child of the timed-out program) is still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
