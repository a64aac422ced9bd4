package vm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"tandem/vmtests/agent/proto"
)

// ErrRebooted is returned for requests in flight when the guest agent
// announces a new boot (a reset or a guest-side reboot).
var ErrRebooted = errors.New("guest rebooted while the request was in flight")

// ErrDown is returned for requests in flight when the VM's QEMU process
// exits (power cut, quit, crash).
var ErrDown = errors.New("VM is off (its QEMU process exited)")

// guest is the host end of one QEMU process's agent channel.
type guest struct {
	vm   string
	conn net.Conn
	wmu  sync.Mutex

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan *proto.Response
	bootID  string
	ready   chan struct{} // closed (and replaced on reboot) once the agent answers
	done    chan struct{} // closed when the connection ends
	logf    func(string, ...any)
	onFrame func(*guest, *proto.Response) // the agent's unsolicited OpQMP* frames
}

func newGuest(vm string, conn net.Conn, logf func(string, ...any), onFrame func(*guest, *proto.Response)) *guest {
	g := &guest{vm: vm, conn: conn, pending: map[uint64]chan *proto.Response{},
		ready: make(chan struct{}), done: make(chan struct{}), logf: logf, onFrame: onFrame}
	go g.read()
	// Queued in the socket until the agent opens its port: QEMU does not
	// read a virtio-serial chardev the guest has not opened. The agent's
	// hello marks it ready as well, whichever comes first.
	go g.call(context.Background(), &proto.Request{Op: proto.OpPing}, 0)
	return g
}

func (g *guest) read() {
	defer func() {
		g.mu.Lock()
		for id, ch := range g.pending {
			close(ch)
			delete(g.pending, id)
		}
		g.mu.Unlock()
		close(g.done)
	}()
	for {
		var r proto.Response
		if err := proto.Read(g.conn, &r); err != nil {
			return
		}
		switch r.Op {
		case proto.OpQMPOpen, proto.OpQMPData, proto.OpQMPClose:
			if g.onFrame != nil {
				g.onFrame(g, &r)
			}
			continue
		}
		g.mu.Lock()
		if r.BootID != "" && r.BootID != g.bootID {
			if g.bootID != "" {
				g.logf("%s: agent reports a new boot (%s), failing %d requests in flight", g.vm, r.BootID, len(g.pending))
				for id, ch := range g.pending {
					if id != r.ID {
						ch <- &proto.Response{ID: id, Err: ErrRebooted.Error()}
						delete(g.pending, id)
					}
				}
				g.ready = make(chan struct{})
			}
			g.bootID = r.BootID
		}
		if r.BootID != "" {
			select {
			case <-g.ready:
			default:
				close(g.ready)
			}
		}
		if ch, ok := g.pending[r.ID]; ok && r.ID != 0 {
			ch <- &r
			delete(g.pending, r.ID)
		}
		g.mu.Unlock()
	}
}

// waitReady waits until the agent of the current boot has answered.
func (g *guest) waitReady(ctx context.Context) error {
	g.mu.Lock()
	ready := g.ready
	g.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-g.done:
		return fmt.Errorf("waiting for the guest agent: %w", ErrDown)
	case <-ctx.Done():
		return fmt.Errorf("the guest agent did not answer: %w", ctx.Err())
	}
}

// call sends req and waits for its response. timeout, if nonzero, is also
// passed to the agent so it kills the command.
func (g *guest) call(ctx context.Context, req *proto.Request, timeout time.Duration) (*proto.Response, error) {
	ch := make(chan *proto.Response, 1)
	g.mu.Lock()
	select {
	case <-g.done:
		g.mu.Unlock()
		return nil, ErrDown
	default:
	}
	g.next++
	req.ID = g.next
	g.pending[req.ID] = ch
	g.mu.Unlock()
	if timeout > 0 {
		req.TimeoutMS = timeout.Milliseconds()
	}
	if err := g.send(ctx, req); err != nil {
		g.forget(req.ID)
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, ErrDown
		}
		if r.Err == ErrRebooted.Error() {
			return nil, ErrRebooted
		}
		return r, nil
	case <-ctx.Done():
		g.forget(req.ID)
		if req.Op == proto.OpRun {
			// Best effort: kill it in the guest, unless the guest is gone.
			cctx, cancel := context.WithTimeout(context.Background(), time.Second)
			g.send(cctx, &proto.Request{Op: proto.OpCancel, Target: req.ID})
			cancel()
		}
		return nil, ctx.Err()
	}
}

func (g *guest) forget(id uint64) {
	g.mu.Lock()
	delete(g.pending, id)
	g.mu.Unlock()
}

func (g *guest) send(ctx context.Context, req *proto.Request) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	g.conn.SetWriteDeadline(dl)
	if err := proto.Write(g.conn, req); err != nil {
		return fmt.Errorf("%s: sending %s to the agent: %w", g.vm, req.Op, err)
	}
	return nil
}

func (g *guest) close() { g.conn.Close() }
