package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tandem/vmtests/agent/proto"
)

// Fence-device sessions: each connection to QMPSocketDir/qmp-NAME.sock is
// carried to the host over the agent's port, where the harness serves NAME's
// fence device (QMP).

var sessions = struct {
	sync.Mutex
	next  atomic.Uint64
	conns map[uint64]net.Conn
}{conns: map[uint64]net.Conn{}}

// fenceListeners listens on a socket per node named by tandem.qmp= on the
// kernel command line.
func fenceListeners() {
	b, _ := os.ReadFile("/proc/cmdline")
	var peers []string
	for _, w := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(w, "tandem.qmp="); ok {
			peers = strings.Split(v, ",")
		}
	}
	if len(peers) == 0 {
		return
	}
	os.MkdirAll(proto.QMPSocketDir, 0o755)
	for _, p := range peers {
		path := filepath.Join(proto.QMPSocketDir, "qmp-"+p+".sock")
		os.Remove(path)
		ln, err := net.Listen("unix", path)
		if err != nil {
			log.Printf("fence device for %s: %v", p, err)
			continue
		}
		go acceptFence(ln, p)
	}
}

func acceptFence(ln net.Listener, peer string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("fence device for %s: %v", peer, err)
			return
		}
		id := sessions.next.Add(1)
		sessions.Lock()
		sessions.conns[id] = c
		sessions.Unlock()
		if !sendUp(&proto.Response{Op: proto.OpQMPOpen, Session: id, Peer: peer}) {
			log.Printf("fence device for %s: no connection to the host", peer)
			dropSession(id)
			continue
		}
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					sendUp(&proto.Response{Op: proto.OpQMPData, Session: id, Data: append([]byte(nil), buf[:n]...)})
				}
				if err != nil {
					sendUp(&proto.Response{Op: proto.OpQMPClose, Session: id})
					dropSession(id)
					return
				}
			}
		}()
	}
}

func dropSession(id uint64) {
	sessions.Lock()
	c := sessions.conns[id]
	delete(sessions.conns, id)
	sessions.Unlock()
	if c != nil {
		c.Close()
	}
}

// fenceFromHost delivers the host's side of a session.
func fenceFromHost(req *proto.Request) {
	sessions.Lock()
	c := sessions.conns[req.Session]
	sessions.Unlock()
	if c == nil {
		return
	}
	if req.Op == proto.OpQMPClose {
		dropSession(req.Session)
		return
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req.Data); err != nil {
		dropSession(req.Session)
	}
}

// qmpClient is "tandem-agent qmp [-timeout D] SOCKET COMMAND [ARGUMENTS-JSON]":
// a minimal QMP client (a reference fencing agent for tests and scripts).
// It prints the command's "return" value and exits 0; a QMP error exits 1,
// anything else (no answer within the timeout, no socket) exits 2.
func qmpClient(args []string) int {
	fs := flag.NewFlagSet("qmp", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		fmt.Fprintln(os.Stderr, "usage: tandem-agent qmp [-timeout D] SOCKET COMMAND [ARGUMENTS-JSON]")
		return 2
	}
	c, err := net.DialTimeout("unix", fs.Arg(0), *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(*timeout))
	dec := json.NewDecoder(bufio.NewReader(c))
	var greeting map[string]json.RawMessage
	if err := dec.Decode(&greeting); err != nil || greeting["QMP"] == nil {
		fmt.Fprintf(os.Stderr, "qmp: no greeting: %v\n", err)
		return 2
	}
	call := func(cmd string, arguments json.RawMessage) (json.RawMessage, int) {
		req := map[string]any{"execute": cmd}
		if arguments != nil {
			req["arguments"] = arguments
		}
		b, _ := json.Marshal(req)
		if _, err := c.Write(append(b, '\n')); err != nil {
			fmt.Fprintf(os.Stderr, "qmp %s: %v\n", cmd, err)
			return nil, 2
		}
		for {
			var m struct {
				Event  string          `json:"event"`
				Return json.RawMessage `json:"return"`
				Error  *struct{ Class, Desc string }
			}
			if err := dec.Decode(&m); err != nil {
				fmt.Fprintf(os.Stderr, "qmp %s: %v\n", cmd, err)
				return nil, 2
			}
			switch {
			case m.Event != "":
			case m.Error != nil:
				fmt.Fprintf(os.Stderr, "qmp %s: %s: %s\n", cmd, m.Error.Class, m.Error.Desc)
				return nil, 1
			default:
				return m.Return, 0
			}
		}
	}
	if _, code := call("qmp_capabilities", nil); code != 0 {
		return code
	}
	var arguments json.RawMessage
	if fs.NArg() == 3 {
		arguments = json.RawMessage(fs.Arg(2))
	}
	ret, code := call(fs.Arg(1), arguments)
	if code == 0 {
		fmt.Println(string(ret))
	}
	return code
}
