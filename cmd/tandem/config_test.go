package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tutorial = "../../daemon/config/testdata/tutorial.toml"

func TestCheck(t *testing.T) {
	run := func(args ...string) (string, string, int) {
		var out, errOut bytes.Buffer
		code := runCheck(args, &out, &errOut)
		return out.String(), errOut.String(), code
	}
	out, errOut, code := run("--config", tutorial)
	if code != 0 || errOut != "" || strings.Count(out, "\n") != 1 || !strings.Contains(out, `cluster "mail" ok: nodes server1, server2`) {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	out, _, code = run("--config", tutorial, "--node", "server2")
	if code != 0 || !strings.Contains(out, "; this node: server2 (id 1, 2 heartbeat media, disk /dev/sda3, link 10.0.0.2:7788)") {
		t.Fatalf("--node: exit %d, %q", code, out)
	}
	_, errOut, code = run("--config", tutorial, "--node", "server9")
	if code != 1 || !strings.Contains(errOut, `node "server9" is not in this cluster (nodes: server1, server2)`) {
		t.Fatalf("unknown node: exit %d, %q", code, errOut)
	}

	bad := filepath.Join(t.TempDir(), "bad.toml")
	text, _ := os.ReadFile(tutorial)
	text = bytes.Replace(text, []byte(`deadtime = "30s"`), []byte(`deadtime = "3s"`), 1)
	text = bytes.Replace(text, []byte(`kind = "bcast"`), []byte(`kind = "bcast"`+"\nintreface = \"eth0\""), 1)
	os.WriteFile(bad, text, 0o600)
	out, errOut, code = run("--config", bad)
	if code != 1 || out != "" {
		t.Fatalf("bad file: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{
		bad + `:10: cluster.deadtime: deadtime 3s must exceed 2×keepalive (2s)`,
		bad + `:35: heartbeat.intreface: unknown key "intreface" in [[heartbeat]]; write interface instead`,
		"check: 2 problems",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	if _, errOut, code = run("--config", filepath.Join(t.TempDir(), "none.toml")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, %q", code, errOut)
	}
	if _, _, code = run("--bogus"); code != 2 {
		t.Errorf("bad flag: exit %d", code)
	}
	if _, _, code = run("--config", tutorial, "extra"); code != 2 {
		t.Errorf("stray argument: exit %d", code)
	}
}

func TestImportThenCheck(t *testing.T) {
	dir := "../../daemon/config/testdata/classic/"
	dst := filepath.Join(t.TempDir(), "tandem.toml")
	var out, errOut bytes.Buffer
	code := runImport([]string{"--ha-cf", dir + "ha.cf", "--haresources", dir + "haresources", "--authkeys", dir + "authkeys",
		"--drbd-conf", dir + "drbd.conf", "--fstab", dir + "fstab", "-o", dst}, &out, &errOut)
	if code != 0 || out.Len() != 0 {
		t.Fatalf("exit %d stdout %q stderr:\n%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "note: "+dir+"ha.cf:2: logfacility") || !strings.Contains(errOut.String(), "import: wrote "+dst) {
		t.Errorf("stderr:\n%s", errOut.String())
	}
	st, err := os.Stat(dst)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("output file: %v %v", st, err)
	}
	out.Reset()
	errOut.Reset()
	if code := runCheck([]string{"--config", dst}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "group disk fs:/replicated ip:192.168.1.5/24 service:sendmail") {
		t.Fatalf("check of the import: exit %d\n%s%s", code, out.String(), errOut.String())
	}

	// To standard output; and a failing import exits 1.
	out.Reset()
	errOut.Reset()
	if code := runImport([]string{"--ha-cf", dir + "ha.cf", "--authkeys", dir + "authkeys"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "[cluster]") {
		t.Fatalf("to stdout: exit %d\n%s", code, errOut.String())
	}
	errOut.Reset()
	if code := runImport([]string{"--haresources", dir + "haresources"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "ha.cf file is required") {
		t.Fatalf("without ha.cf: exit %d %q", code, errOut.String())
	}
}
