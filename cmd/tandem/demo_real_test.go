package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// The real demo runs `tandem daemon` from its own executable, which under
// `go test` is this test binary: when started that way, be the daemon.
func init() {
	if os.Getenv("TANDEM_TEST_AS_DAEMON") == "1" && len(os.Args) > 1 && os.Args[1] == "daemon" {
		os.Exit(runDaemon(os.Args[2:], os.Stdout, os.Stderr))
	}
}

// TestRealDemo runs `tandem demo` for real (two daemon processes, UDP and a
// pty cable, SIGKILL, takeover, readback, rejoin) and checks its report.
func TestRealDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two daemon processes and waits out a deadtime; skipped with -short")
	}
	t.Setenv("TANDEM_TEST_AS_DAEMON", "1")
	var out, errOut bytes.Buffer
	if code := runDemoCommand(nil, &out, &errOut); code != 0 {
		t.Fatalf("demo failed (%d):\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"REAL", "declared n1 dead", "ran the whole group", "1024/1024 blocks verified",
		"bytes copied to n1", "$ tandem status --node n2", "daemons stopped with SIGTERM"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDemoSimFlag: --sim still plays the simulated story.
func TestDemoSimFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runDemoCommand([]string{"--sim"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "SIMULATED") {
		t.Fatalf("demo --sim (%d):\n%s%s", code, out.String(), errOut.String())
	}
}
