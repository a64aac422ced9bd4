package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"tandem/vmtests/agent/proto"
)

// Fence devices. A node allowed to fence another (Config.Fence) has a unix
// socket in the guest, /run/tandem/qmp-TARGET.sock, that speaks QMP: the
// daemon's "qemu" fencing agent points there. The sessions travel over the
// agent's channel and the harness answers them here, as the target's fence
// device (think IPMI or a switched PDU with a QMP face): it stays reachable
// when the target is off, so a fence after a power cut succeeds ("quit" on
// a machine that is off is done), and it can be broken on purpose.
//
// Commands: qmp_capabilities; query-status (the real one, or "shutdown"
// when off); quit (power cut); system_reset; stop and cont (freeze, thaw);
// anything else is passed to the target's QEMU when it runs.

// FenceMode is how a fence device behaves.
type FenceMode int

const (
	// FenceWorks does what it is asked.
	FenceWorks FenceMode = iota
	// FenceHangs accepts connections and never answers (a dead PDU).
	FenceHangs
	// FenceFails answers every fencing command with a QMP GenericError.
	FenceFails
)

func (m FenceMode) String() string {
	return [...]string{"works", "hangs", "fails"}[m]
}

// FenceEvent is one command a node sent to a fence device.
type FenceEvent struct {
	At      time.Time
	By      string // the fencing node
	Target  string
	Command string // the QMP command: quit, system_reset, query-status, ...
	Err     string // empty if it was carried out
}

type fencing struct {
	mu     sync.Mutex
	mode   map[string]FenceMode // by target
	events []FenceEvent
}

// SetFenceMode breaks (or mends) the fence device of target.
func (c *Cluster) SetFenceMode(target string, m FenceMode) {
	c.fence.mu.Lock()
	defer c.fence.mu.Unlock()
	if c.fence.mode == nil {
		c.fence.mode = map[string]FenceMode{}
	}
	c.fence.mode[target] = m
	c.logf("fence device of %s now %s", target, m)
}

// Fences returns the commands sent to fence devices so far, in order.
func (c *Cluster) Fences() []FenceEvent {
	c.fence.mu.Lock()
	defer c.fence.mu.Unlock()
	return append([]FenceEvent(nil), c.fence.events...)
}

func (c *Cluster) fenceMode(target string) FenceMode {
	c.fence.mu.Lock()
	defer c.fence.mu.Unlock()
	return c.fence.mode[target]
}

func (c *Cluster) mayFence(by, target string) bool {
	for _, t := range c.cfg.Fence[by] {
		if t == target {
			return true
		}
	}
	return false
}

// fenceSession is one guest connection to a fence device.
type fenceSession struct {
	c       *Cluster
	g       *guest
	id      uint64
	by      string
	target  *VM
	in      *io.PipeWriter
	pending chan []byte
}

// onGuestFrame handles the agent's unsolicited QMP-session frames.
func (v *VM) onGuestFrame(g *guest, r *proto.Response) {
	v.fmu.Lock()
	defer v.fmu.Unlock()
	if v.fsessions == nil {
		v.fsessions = map[uint64]*fenceSession{}
	}
	switch r.Op {
	case proto.OpQMPOpen:
		t := v.c.by[r.Peer]
		if t == nil || !v.c.mayFence(v.Name, r.Peer) {
			v.c.logf("%s: fence device of %q: not allowed (Config.Fence)", v.Name, r.Peer)
			g.send(context.Background(), &proto.Request{Op: proto.OpQMPClose, Session: r.Session})
			return
		}
		pr, pw := io.Pipe()
		s := &fenceSession{c: v.c, g: g, id: r.Session, by: v.Name, target: t, in: pw, pending: make(chan []byte, 256)}
		v.fsessions[r.Session] = s
		go s.pump()
		go s.serve(pr)
	case proto.OpQMPData:
		if s := v.fsessions[r.Session]; s != nil {
			s.queue(r.Data)
		}
	case proto.OpQMPClose:
		if s := v.fsessions[r.Session]; s != nil {
			s.queue(nil)
			delete(v.fsessions, r.Session)
		}
	}
}

// queue passes guest bytes (nil: end of session) to the session's decoder,
// in order, without blocking the agent channel's reader.
func (s *fenceSession) queue(b []byte) {
	select {
	case s.pending <- b:
	default:
		s.c.logf("%s: fence session %d: too many writes queued; dropped", s.by, s.id)
	}
}

func (s *fenceSession) pump() {
	for b := range s.pending {
		if b == nil {
			s.in.Close()
			return
		}
		s.in.Write(b)
	}
}

func (s *fenceSession) reply(v any) {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.g.send(ctx, &proto.Request{Op: proto.OpQMPData, Session: s.id, Data: append(b, '\r', '\n')})
}

func (s *fenceSession) serve(r *io.PipeReader) {
	defer r.Close()
	if s.c.fenceMode(s.target.Name) == FenceHangs {
		s.c.recordFence(s.by, s.target.Name, "connect", "no answer (fence device hangs)")
		io.Copy(io.Discard, r)
		return
	}
	s.reply(map[string]any{"QMP": map[string]any{
		"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 0}, "package": "tandem vmtests fence device"},
		"capabilities": []string{},
	}})
	dec := json.NewDecoder(r)
	for {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			if err != io.EOF && !strings.Contains(err.Error(), "closed pipe") {
				s.reply(map[string]any{"error": map[string]string{"class": "GenericError", "desc": "JSON parse error: " + err.Error()}})
			}
			return
		}
		ret, err := s.command(req.Execute, req.Arguments)
		out := map[string]any{}
		if err != nil {
			out["error"] = map[string]string{"class": "GenericError", "desc": err.Error()}
		} else {
			if ret == nil {
				ret = json.RawMessage("{}")
			}
			out["return"] = ret
		}
		if req.ID != nil {
			out["id"] = req.ID
		}
		s.reply(out)
	}
}

func (s *fenceSession) command(cmd string, args json.RawMessage) (json.RawMessage, error) {
	t := s.target
	if cmd == "qmp_capabilities" {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fail := func(err error) (json.RawMessage, error) {
		s.c.recordFence(s.by, t.Name, cmd, err.Error())
		return nil, err
	}
	if cmd != "query-status" && s.c.fenceMode(t.Name) == FenceFails {
		return fail(fmt.Errorf("fence device of %s failed (broken on purpose)", t.Name))
	}
	running := t.Running()
	switch cmd {
	case "query-status":
		if !running {
			return json.RawMessage(`{"status":"shutdown","singlestep":false,"running":false}`), nil
		}
		return t.QMP(ctx, cmd, nil)
	case "quit":
		if running {
			if err := t.PowerCut(); err != nil {
				return fail(err)
			}
		}
		s.c.recordFence(s.by, t.Name, cmd, "")
		return nil, nil
	case "system_reset":
		if !running {
			return fail(fmt.Errorf("%s is off", t.Name))
		}
		go func() {
			if err := t.Reset(context.Background()); err != nil {
				s.c.logf("%s: reset by %s's fence: %v", t.Name, s.by, err)
			}
		}()
		s.c.recordFence(s.by, t.Name, cmd, "")
		return nil, nil
	case "stop":
		if !running {
			return fail(fmt.Errorf("%s is off", t.Name))
		}
		if err := t.Freeze(ctx); err != nil {
			return fail(err)
		}
		s.c.recordFence(s.by, t.Name, cmd, "")
		return nil, nil
	case "cont":
		if !running {
			return fail(fmt.Errorf("%s is off", t.Name))
		}
		if err := t.Thaw(ctx); err != nil {
			return fail(err)
		}
		s.c.recordFence(s.by, t.Name, cmd, "")
		return nil, nil
	}
	if !running {
		return fail(fmt.Errorf("%s is off", t.Name))
	}
	var a any
	if len(args) > 0 {
		a = args
	}
	return t.QMP(ctx, cmd, a)
}

func (c *Cluster) recordFence(by, target, cmd, errText string) {
	c.fence.mu.Lock()
	c.fence.events = append(c.fence.events, FenceEvent{At: time.Now(), By: by, Target: target, Command: cmd, Err: errText})
	c.fence.mu.Unlock()
	if errText == "" {
		c.logf("%s fenced %s: %s", by, target, cmd)
	} else {
		c.logf("%s tried to fence %s: %s: %s", by, target, cmd, errText)
	}
}
