package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmp is a minimal QEMU Machine Protocol client: one command at a time over
// the VM's unix socket; asynchronous events are passed to onEvent.
type qmp struct {
	vm      string
	conn    net.Conn
	mu      sync.Mutex // one command in flight
	replies chan qmpMsg
	done    chan struct{} // closed when the connection ends
	onEvent func(name string, data json.RawMessage)
}

type qmpMsg struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// dialQMP connects to path (waiting for QEMU to create it) and negotiates
// capabilities.
func dialQMP(ctx context.Context, vm, path string, onEvent func(string, json.RawMessage)) (*qmp, error) {
	conn, err := dialUnix(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("%s: QMP socket: %w", vm, err)
	}
	q := &qmp{vm: vm, conn: conn, replies: make(chan qmpMsg, 1), done: make(chan struct{}), onEvent: onEvent}
	go q.read()
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) read() {
	defer close(q.done)
	dec := json.NewDecoder(q.conn)
	for {
		var m qmpMsg
		if err := dec.Decode(&m); err != nil {
			return
		}
		switch {
		case m.QMP != nil: // greeting
		case m.Event != "":
			if q.onEvent != nil {
				q.onEvent(m.Event, m.Data)
			}
		default:
			q.replies <- m
		}
	}
}

// execute runs one QMP command and returns its "return" value.
func (q *qmp) execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if dl, ok := ctx.Deadline(); ok {
		q.conn.SetWriteDeadline(dl)
	} else {
		q.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("%s: QMP %s: %w", q.vm, cmd, err)
	}
	select {
	case m := <-q.replies:
		if m.Error != nil {
			return nil, fmt.Errorf("%s: QMP %s: %s: %s", q.vm, cmd, m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	case <-q.done:
		return nil, fmt.Errorf("%s: QMP %s: connection closed (QEMU exited?)", q.vm, cmd)
	case <-ctx.Done():
		// The reply may still come; drop the connection rather than let
		// it answer the next command.
		q.conn.Close()
		return nil, fmt.Errorf("%s: QMP %s: no reply: %w", q.vm, cmd, ctx.Err())
	}
}

func (q *qmp) close() { q.conn.Close() }

// dialUnix connects to a unix socket QEMU creates, retrying until it exists.
func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
