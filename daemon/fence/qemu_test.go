package fence

import (
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeQMP speaks QMP on a unix socket the way QEMU does: a greeting,
// nothing but qmp_capabilities accepted until capabilities are negotiated,
// replies carrying the request's id, asynchronous events in between. Its
// mode says what kind of machine (or fence device) it is:
//
//	qemu    quit answers, emits SHUTDOWN, closes and removes the socket (QEMU exits)
//	device  quit answers and the connection stays; query-status then says
//	        "shutdown" (the VM suite's fence device, which outlives the VM)
//	fails   quit and system_reset answer GenericError
//	stuck   quit answers but the machine keeps running
//	hangs   accepts connections and never says anything
type fakeQMP struct {
	t    *testing.T
	mode string
	ln   *net.UnixListener

	mu      sync.Mutex
	cmds    []string
	running bool
}

func newFakeQMP(t *testing.T, path, mode string) *fakeQMP {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeQMP{t: t, mode: mode, ln: ln, running: true}
	t.Cleanup(func() { ln.Close() })
	go f.serve()
	return f
}

func (f *fakeQMP) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.cmds)
}

func (f *fakeQMP) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.session(c)
	}
}

func (f *fakeQMP) session(c net.Conn) {
	defer c.Close()
	if f.mode == "hangs" {
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}
	send := func(v any) {
		b, _ := json.Marshal(v)
		c.Write(append(b, '\r', '\n'))
	}
	event := func(name string) {
		send(map[string]any{"event": name, "data": map[string]any{}, "timestamp": map[string]int{"seconds": 1, "microseconds": 2}})
	}
	send(map[string]any{"QMP": map[string]any{
		"version":      map[string]any{"qemu": map[string]int{"major": 8, "minor": 2, "micro": 0}, "package": ""},
		"capabilities": []string{"oob"},
	}})
	dec := json.NewDecoder(c)
	negotiated := false
	for {
		var req struct {
			Execute string          `json:"execute"`
			ID      json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			return
		}
		f.mu.Lock()
		f.cmds = append(f.cmds, req.Execute)
		running := f.running
		f.mu.Unlock()
		reply := func(ret any) {
			m := map[string]any{"return": ret}
			if req.ID != nil {
				m["id"] = req.ID
			}
			send(m)
		}
		fail := func(class, desc string) {
			m := map[string]any{"error": map[string]string{"class": class, "desc": desc}}
			if req.ID != nil {
				m["id"] = req.ID
			}
			send(m)
		}
		switch {
		case !negotiated && req.Execute != "qmp_capabilities":
			fail("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
		case req.Execute == "qmp_capabilities":
			negotiated = true
			reply(map[string]any{})
		case req.Execute == "query-status":
			status := "running"
			if !running {
				status = "shutdown"
			}
			reply(map[string]any{"status": status, "running": running, "singlestep": false})
		case f.mode == "fails" && (req.Execute == "quit" || req.Execute == "system_reset"):
			fail("GenericError", "fence device broken on purpose")
		case req.Execute == "quit" && f.mode == "qemu":
			reply(map[string]any{})
			event("SHUTDOWN")
			f.ln.Close() // QEMU exits: the socket goes away
			return
		case req.Execute == "quit" && f.mode == "device":
			f.mu.Lock()
			f.running = false
			f.mu.Unlock()
			event("SHUTDOWN") // before the reply: the client must skip it
			reply(map[string]any{})
		case req.Execute == "quit": // stuck
			reply(map[string]any{})
		case req.Execute == "system_reset":
			reply(map[string]any{})
			event("RESET")
		default:
			fail("CommandNotFound", "The command "+req.Execute+" has not been found")
		}
	}
}

func TestQEMUQuitExits(t *testing.T) {
	dir := t.TempDir()
	f := newFakeQMP(t, filepath.Join(dir, "qmp-server2.sock"), "qemu")
	a, err := NewQEMU(QEMUSpec{Socket: filepath.Join(dir, "qmp-{peer}.sock")})
	if err != nil {
		t.Fatal(err)
	}
	r := a.Fence(ctxT(t, 10*time.Second), "server2")
	if r.Code != PeerFenced || !strings.Contains(r.Detail, "QEMU exited") {
		t.Fatalf("fence: %v", r)
	}
	if got := f.commands(); !slices.Equal(got, []string{"qmp_capabilities", "quit"}) {
		t.Errorf("QEMU received %v", got)
	}
}

func TestQEMUFenceDevice(t *testing.T) {
	dir := t.TempDir()
	f := newFakeQMP(t, filepath.Join(dir, "qmp.sock"), "device")
	a, _ := NewQEMU(QEMUSpec{Socket: filepath.Join(dir, "qmp.sock")})
	r := a.Fence(ctxT(t, 10*time.Second), "server2")
	if r.Code != PeerFenced || !strings.Contains(r.Detail, "status shutdown") {
		t.Fatalf("fence: %v", r)
	}
	if got := f.commands(); !slices.Equal(got, []string{"qmp_capabilities", "quit", "query-status"}) {
		t.Errorf("fence device received %v", got)
	}
}

func TestQEMUFailures(t *testing.T) {
	dir := t.TempDir()
	newFakeQMP(t, filepath.Join(dir, "fails.sock"), "fails")
	newFakeQMP(t, filepath.Join(dir, "stuck.sock"), "stuck")
	newFakeQMP(t, filepath.Join(dir, "hangs.sock"), "hangs")
	for _, c := range []struct {
		sock, action, want string
		timeout            time.Duration
	}{
		{"fails.sock", "off", "GenericError: fence device broken on purpose", 10 * time.Second},
		{"fails.sock", "reset", "GenericError", 10 * time.Second},
		{"stuck.sock", "off", "not seen to stop", time.Second},
		{"hangs.sock", "off", "greeting", 500 * time.Millisecond},
		{"missing.sock", "off", "no such file", 10 * time.Second},
	} {
		a, _ := NewQEMU(QEMUSpec{Socket: filepath.Join(dir, c.sock), Action: c.action})
		start := time.Now()
		r := a.Fence(ctxT(t, c.timeout), "server2")
		if r.Code != Failed || r.OK() || !strings.Contains(r.Detail, c.want) {
			t.Errorf("%s %s: %v; want failed with %q", c.sock, c.action, r, c.want)
		}
		if took := time.Since(start); took > c.timeout+2*time.Second {
			t.Errorf("%s %s: took %v with a %v timeout", c.sock, c.action, took, c.timeout)
		}
	}
}

func TestQEMUReset(t *testing.T) {
	dir := t.TempDir()
	f := newFakeQMP(t, filepath.Join(dir, "qmp.sock"), "device")
	a, _ := NewQEMU(QEMUSpec{Socket: filepath.Join(dir, "qmp.sock"), Action: "reset"})
	if r := a.Fence(ctxT(t, 10*time.Second), "server2"); r.Code != PeerFenced {
		t.Fatalf("reset: %v", r)
	}
	if got := f.commands(); !slices.Equal(got, []string{"qmp_capabilities", "system_reset"}) {
		t.Errorf("received %v", got)
	}
}

// A socket nobody listens on any more belongs to a QEMU that has exited.
func TestQEMUAlreadyGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // as a killed QEMU leaves it
	ln.Close()
	a, _ := NewQEMU(QEMUSpec{Socket: path})
	if r := a.Fence(ctxT(t, 10*time.Second), "server2"); r.Code != PeerFenced || !strings.Contains(r.Detail, "not running") {
		t.Errorf("fence of a gone QEMU: %v", r)
	}
}

func TestQEMUSpecErrors(t *testing.T) {
	for _, s := range []QEMUSpec{{}, {Socket: "/x", Action: "stop"}} {
		if _, err := NewQEMU(s); err == nil {
			t.Errorf("NewQEMU(%+v) accepted it", s)
		}
	}
}
