package fence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// QEMUSpec fences a QEMU virtual machine through its QMP socket (the VM
// suite gives each node the QMP socket of its peer's fence device).
type QEMUSpec struct {
	// Socket is the QMP unix socket; "{peer}" in it is replaced by the
	// peer's name, e.g. "/run/tandem/qmp-{peer}.sock".
	Socket string
	// Action is "off" (default: QMP quit, a power cut) or "reset" (QMP
	// system_reset, a press of the reset button).
	Action string
}

// QEMU fences a virtual machine over QMP.
//
// Off: connect, read the greeting, qmp_capabilities, then quit. It counts
// as done (PeerFenced) once QEMU is seen to be gone, polling until the
// context ends: the connection closes and the socket refuses or has vanished
// (a real QEMU exits), or query-status reports running: false (a fence
// device that outlives the machine, as in the VM suite; a paused machine
// is not off). A socket that
// refuses connections from the start also means QEMU is gone: PeerFenced.
// A socket that does not exist is Failed (likely a wrong path).
//
// Reset: system_reset must be answered with success; that is PeerFenced,
// unverified, since a reset machine runs again.
type QEMU struct{ spec QEMUSpec }

// NewQEMU checks spec and returns its agent.
func NewQEMU(spec QEMUSpec) (*QEMU, error) {
	if spec.Socket == "" {
		return nil, errors.New("qemu fencing: Socket is empty")
	}
	switch spec.Action {
	case "":
		spec.Action = "off"
	case "off", "reset":
	default:
		return nil, fmt.Errorf("qemu fencing: Action %q is not off or reset", spec.Action)
	}
	return &QEMU{spec: spec}, nil
}

// pollInterval is the time between checks that QEMU is gone after quit.
const pollInterval = 100 * time.Millisecond

// Fence powers off (or resets) the peer's virtual machine.
func (q *QEMU) Fence(ctx context.Context, peer string) Result {
	if peer == "" {
		return failed("qemu: %v", errEmptyPeer)
	}
	path := strings.ReplaceAll(q.spec.Socket, "{peer}", peer)
	c, err := dialQMP(ctx, path)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return Result{Code: PeerFenced, Detail: fmt.Sprintf("qemu %s: QMP socket refuses connections: QEMU is not running", path)}
	}
	if err != nil {
		return failed("qemu %s: %v", path, err)
	}
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	if q.spec.Action == "reset" {
		if _, err := c.execute("system_reset"); err != nil {
			return failed("qemu %s: %v", path, err)
		}
		return Result{Code: PeerFenced, Detail: fmt.Sprintf("qemu %s: system_reset accepted", path)}
	}
	if _, err := c.execute("quit"); err != nil && !errors.Is(err, errClosed) {
		return failed("qemu %s: %v", path, err)
	}
	// quit answered, or the connection closed under it: see that QEMU is
	// gone.
	for {
		gone, why, err := c.stopped()
		if errors.Is(err, errClosed) {
			c.close()
			c, err = dialQMP(ctx, path) // nil on error
			if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
				return Result{Code: PeerFenced, Detail: fmt.Sprintf("qemu %s: quit; QEMU exited", path)}
			}
			if err == nil {
				continue
			}
		}
		switch {
		case ctx.Err() != nil:
			return failed("qemu %s: quit sent, but QEMU was not seen to stop: %v", path, ctx.Err())
		case err != nil:
			return failed("qemu %s: quit sent, then: %v", path, err)
		case gone:
			return Result{Code: PeerFenced, Detail: fmt.Sprintf("qemu %s: quit; status %s", path, why)}
		}
		select {
		case <-ctx.Done():
		case <-time.After(pollInterval):
		}
	}
}

// ---- a small QMP client ----

// errClosed: the other end closed the connection.
var errClosed = errors.New("QMP connection closed")

type qmpConn struct {
	conn   net.Conn
	dec    *json.Decoder
	nextID int
	stop   func() bool
}

type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	ID     json.RawMessage `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// dialQMP connects, reads the greeting and negotiates capabilities. The
// connection is bound to ctx: when ctx ends, pending reads and writes fail.
func dialQMP(ctx context.Context, path string) (*qmpConn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connecting to QMP: %w", err)
	}
	c := &qmpConn{conn: conn, dec: json.NewDecoder(conn)}
	c.stop = context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	var greeting qmpMessage
	if err := c.read(&greeting); err != nil {
		c.close()
		return nil, fmt.Errorf("reading the QMP greeting: %w", err)
	}
	if greeting.QMP == nil {
		c.close()
		return nil, errors.New("the socket does not speak QMP (no greeting)")
	}
	if _, err := c.execute("qmp_capabilities"); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *qmpConn) close() {
	c.stop()
	c.conn.Close()
}

func (c *qmpConn) read(m *qmpMessage) error {
	*m = qmpMessage{}
	err := c.dec.Decode(m)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
		return errClosed
	}
	return err
}

// execute runs one command and returns its "return" value. Events that
// arrive meanwhile (SHUTDOWN, STOP, RESET...) are skipped.
func (c *qmpConn) execute(cmd string) (json.RawMessage, error) {
	c.nextID++
	id := fmt.Sprintf(`"tandem-%d"`, c.nextID)
	req := fmt.Sprintf(`{"execute":%q,"id":%s}`+"\n", cmd, id)
	if _, err := io.WriteString(c.conn, req); err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			return nil, fmt.Errorf("QMP %s: %w", cmd, errClosed)
		}
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		var m qmpMessage
		if err := c.read(&m); err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		if m.Event != "" || m.QMP != nil || m.ID != nil && string(m.ID) != id {
			continue
		}
		if m.Error != nil {
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		if m.Return == nil {
			return nil, fmt.Errorf("QMP %s: reply has neither return nor error", cmd)
		}
		return m.Return, nil
	}
}

// stopped asks query-status whether the machine is off.
func (c *qmpConn) stopped() (bool, string, error) {
	ret, err := c.execute("query-status")
	if err != nil {
		return false, "", err
	}
	var st struct {
		Running *bool  `json:"running"`
		Status  string `json:"status"`
	}
	if err := json.Unmarshal(ret, &st); err != nil || st.Running == nil {
		return false, "", fmt.Errorf("QMP query-status: unexpected reply %s", ret)
	}
	// Only "shutdown" is off: "paused" and the other stopped states can
	// resume.
	return !*st.Running && st.Status == "shutdown", st.Status, nil
}
