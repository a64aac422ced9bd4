// Package proto is the wire format between the VM harness (vmtests/vm) and
// the guest agent (vmtests/agent) over a virtio-serial port.
//
// A frame is a 4-byte big-endian length followed by that many bytes of JSON.
// The host sends Requests, the agent answers each with a Response carrying
// the same ID. Requests run concurrently in the guest, so responses may come
// back in any order. The agent also sends an unsolicited Response with Op
// "hello" whenever it (re)opens the port, so the host learns of boots and
// reboots without asking.
package proto

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
)

// The guest's fence devices. A node allowed to fence others (kernel
// command line tandem.qmp=NAME[,NAME]) finds one unix socket per target at
// QMPSocketDir/qmp-NAME.sock; what it writes there is a QMP session with the
// target's fence device, which the harness serves (vmtests/vm/fence.go).
// The agent carries those sessions over its port as OpQMP* frames, so a
// fencing agent in the guest (the daemon's "qemu" agent) talks plain QMP.
const QMPSocketDir = "/run/tandem"

// PortName is the virtserialport name the agent looks for under
// /sys/class/virtio-ports/*/name.
const PortName = "tandem.agent"

// MaxFrame bounds one frame; a larger length means the stream is out of sync.
const MaxFrame = 64 << 20

// Operations a Request can ask for.
const (
	OpRun    = "run"    // run Args to completion, return its output and exit status
	OpStart  = "start"  // start Args in the background (new session), return its pid
	OpPut    = "put"    // write Data to Path with Mode
	OpGet    = "get"    // read Path into Data
	OpCancel = "cancel" // kill the process group of the running request Target
	OpPing   = "ping"   // answer at once (used to wait for the agent)
	OpHello  = "hello"  // agent -> host only: the agent (re)opened its port

	// Fence-device sessions, initiated by the guest (see QMPSocketDir).
	OpQMPOpen  = "qmp-open"  // agent -> host: Session opened to fence Peer
	OpQMPData  = "qmp-data"  // both ways: Data bytes of Session
	OpQMPClose = "qmp-close" // both ways: Session is over
)

// Request is one host -> guest command.
type Request struct {
	ID        uint64   `json:"id"`
	Op        string   `json:"op"`
	Args      []string `json:"args,omitempty"`
	Env       []string `json:"env,omitempty"` // extra KEY=VALUE pairs
	Dir       string   `json:"dir,omitempty"`
	Stdin     []byte   `json:"stdin,omitempty"`
	TimeoutMS int64    `json:"timeout_ms,omitempty"` // OpRun: kill the process group after this long
	Path      string   `json:"path,omitempty"`       // OpPut, OpGet; OpStart: output log file
	Data      []byte   `json:"data,omitempty"`
	Mode      uint32   `json:"mode,omitempty"`
	Target    uint64   `json:"target,omitempty"`  // OpCancel
	Session   uint64   `json:"session,omitempty"` // OpQMP*
}

// Response is one guest -> host answer.
type Response struct {
	ID       uint64 `json:"id"`
	Op       string `json:"op,omitempty"`
	Stdout   []byte `json:"stdout,omitempty"`
	Stderr   []byte `json:"stderr,omitempty"`
	Exit     int    `json:"exit"`
	Signal   string `json:"signal,omitempty"`    // set when the process died of a signal
	TimedOut bool   `json:"timed_out,omitempty"` // the agent killed it at TimeoutMS
	Pid      int    `json:"pid,omitempty"`
	Data     []byte `json:"data,omitempty"`
	Err      string `json:"err,omitempty"` // the agent could not do what was asked
	BootID   string `json:"boot_id,omitempty"`
	UptimeMS int64  `json:"uptime_ms,omitempty"` // hello, ping
	Session  uint64 `json:"session,omitempty"`   // OpQMP*
	Peer     string `json:"peer,omitempty"`      // OpQMPOpen: the node to fence
}

// Write sends v as one frame.
func Write(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxFrame {
		return fmt.Errorf("proto: frame of %d bytes exceeds %d", len(b), MaxFrame)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// Read receives one frame into v.
func Read(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return fmt.Errorf("proto: frame length %d exceeds %d: stream out of sync", n, MaxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
