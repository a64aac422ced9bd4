package vm

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These run in plain go test: the harness's pieces that need no QEMU.

func TestArchiveNewc(t *testing.T) {
	a := newArchive()
	a.file("/bin/x", []byte("hello"), 0o755) // parent /bin implied
	a.symlink("/init", "/bin/busybox")
	a.chardev("/dev/console", 0o600, 5, 1)
	a.dir("/tmp", 0o1777)
	var buf bytes.Buffer
	if err := a.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	type rec struct {
		mode, size, rmaj, rmin uint64
		data                   string
	}
	got := map[string]rec{}
	b := buf.Bytes()
	for off := 0; ; {
		if off%4 != 0 {
			t.Fatalf("record at %d not 4-aligned", off)
		}
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic at %d: %q", off, b[off:off+6])
		}
		f := func(i int) uint64 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		nameLen, size := int(f(11)), int(f(6))
		name := string(b[off+110 : off+110+nameLen-1])
		dataOff := (off + 110 + nameLen + 3) &^ 3
		if name == "TRAILER!!!" {
			break
		}
		got[name] = rec{f(1), uint64(size), f(9), f(10), string(b[dataOff : dataOff+size])}
		off = (dataOff + size + 3) &^ 3
	}
	want := map[string]rec{
		"bin":         {modeDir | 0o755, 0, 0, 0, ""},
		"bin/x":       {modeFile | 0o755, 5, 0, 0, "hello"},
		"init":        {modeLink | 0o777, 12, 0, 0, "/bin/busybox"},
		"dev":         {modeDir | 0o755, 0, 0, 0, ""},
		"dev/console": {modeChar | 0o600, 0, 5, 1, ""},
		"tmp":         {modeDir | 0o1777, 0, 0, 0, ""},
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: got %+v, want %+v", n, got[n], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("entries: %v", got)
	}
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "dev/console") {
			t.Errorf("cpio -it: %v\n%s", err, out)
		}
	}
}

func frame(payload string) []byte {
	b := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(b, uint32(len(payload)))
	copy(b[4:], payload)
	return b
}

func readFrame(c net.Conn, d time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(d))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return "", err
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	_, err := io.ReadFull(c, b)
	return string(b), err
}

func TestSwitch(t *testing.T) {
	s := newSwitch(t.TempDir(), t.Logf)
	defer s.close()
	conns := map[string]net.Conn{}
	for _, n := range []string{"a", "b", "c"} {
		p, err := s.addPort(n)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("unix", p)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[n] = c
	}
	time.Sleep(50 * time.Millisecond) // let the switch accept
	expect := func(to, want string) {
		t.Helper()
		got, err := readFrame(conns[to], 2*time.Second)
		if err != nil || got != want {
			t.Fatalf("%s received %q, %v; want %q", to, got, err, want)
		}
	}
	silent := func(to string) {
		t.Helper()
		if got, err := readFrame(conns[to], 200*time.Millisecond); err == nil {
			t.Fatalf("%s received %q through a cut", to, got)
		}
	}
	conns["a"].Write(frame("one"))
	expect("b", "one")
	expect("c", "one")
	s.Block("a", "b")
	conns["a"].Write(frame("two"))
	expect("c", "two")
	silent("b")
	conns["b"].Write(frame("three")) // the other way still works
	expect("a", "three")
	expect("c", "three")
	s.Heal()
	conns["a"].Write(frame("four"))
	expect("b", "four")
	expect("c", "four")
}

func TestCable(t *testing.T) {
	c := newCable("a", "b")
	defer c.close()
	a1, a2 := net.Pipe()
	b1, b2 := net.Pipe()
	c.plug("a", a2)
	c.plug("b", b2)
	read := func(conn net.Conn, d time.Duration) string {
		conn.SetReadDeadline(time.Now().Add(d))
		buf := make([]byte, 100)
		n, _ := conn.Read(buf)
		return string(buf[:n])
	}
	a1.Write([]byte("hi"))
	if got := read(b1, 2*time.Second); got != "hi" {
		t.Fatalf("b read %q", got)
	}
	c.Cut()
	a1.Write([]byte("lost"))
	if got := read(b1, 200*time.Millisecond); got != "" {
		t.Fatalf("b read %q through a cut cable", got)
	}
	c.Mend()
	b1.Write([]byte("back"))
	if got := read(a1, 2*time.Second); got != "back" {
		t.Fatalf("a read %q", got)
	}
}
