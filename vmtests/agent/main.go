// Command tandem-agent is the guest side of the VM harness: it runs inside
// each test VM (started and respawned by busybox init, see vmtests/vm) and
// executes the host's requests arriving on the virtio-serial port named
// proto.PortName. It is built static and packed into the initramfs as
// /bin/tandem-agent; it is not part of the product.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"tandem/vmtests/agent/proto"
)

// maxOutput caps the captured stdout and stderr of one command so a runaway
// command cannot exhaust the guest's memory or the frame limit.
const maxOutput = 16 << 20

func main() {
	log.SetFlags(0)
	log.SetPrefix("tandem-agent: ")
	if len(os.Args) > 1 && os.Args[1] == "qmp" {
		os.Exit(qmpClient(os.Args[2:]))
	}
	go fenceListeners()
	for {
		f, err := openPort()
		if err != nil {
			log.Printf("%v; retrying", err)
			time.Sleep(time.Second)
			continue
		}
		a := &agent{port: f, running: map[uint64]int{}}
		current.Lock()
		current.a = a
		current.Unlock()
		a.serve()
		current.Lock()
		current.a = nil
		current.Unlock()
		f.Close()
	}
}

// current is the agent serving the port now (nil while it is reopened).
var current struct {
	sync.Mutex
	a *agent
}

// sendUp sends an unsolicited frame to the host; false if no port is open.
func sendUp(r *proto.Response) bool {
	current.Lock()
	a := current.a
	current.Unlock()
	if a == nil {
		return false
	}
	a.send(r)
	return true
}

// openPort waits for the virtio-serial port named proto.PortName and opens it.
func openPort() (*os.File, error) {
	start := time.Now()
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil || strings.TrimSpace(string(b)) != proto.PortName {
				continue
			}
			dev := "/dev/" + filepath.Base(filepath.Dir(n))
			return os.OpenFile(dev, os.O_RDWR, 0)
		}
		if time.Since(start) > 30*time.Second {
			return nil, fmt.Errorf("no virtio-serial port named %q after 30s (is virtio_console loaded? is -device virtserialport,name=%s given?)", proto.PortName, proto.PortName)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type agent struct {
	port *os.File
	wmu  sync.Mutex // one frame at a time on the port

	mu      sync.Mutex
	running map[uint64]int // request ID -> process group of an OpRun in flight
}

func (a *agent) send(r *proto.Response) {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if err := proto.Write(a.port, r); err != nil {
		log.Printf("write response %d: %v", r.ID, err)
	}
}

func (a *agent) serve() {
	go a.send(&proto.Response{Op: proto.OpHello, BootID: bootID(), UptimeMS: uptimeMS()})
	for {
		var req proto.Request
		err := proto.Read(a.port, &req)
		switch {
		case err == nil:
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			// The host side is not connected: the port reads as EOF.
			time.Sleep(100 * time.Millisecond)
			continue
		default:
			log.Printf("read request: %v; reopening the port", err)
			return
		}
		go a.handle(&req)
	}
}

func (a *agent) handle(req *proto.Request) {
	switch req.Op {
	case proto.OpQMPData, proto.OpQMPClose:
		fenceFromHost(req) // no response: a stream, not a call
		return
	}
	resp := &proto.Response{ID: req.ID, Op: req.Op}
	switch req.Op {
	case proto.OpPing:
		resp.BootID, resp.UptimeMS = bootID(), uptimeMS()
	case proto.OpRun:
		a.run(req, resp)
	case proto.OpStart:
		a.start(req, resp)
	case proto.OpPut:
		mode := os.FileMode(req.Mode)
		if mode == 0 {
			mode = 0o644
		}
		err := os.MkdirAll(filepath.Dir(req.Path), 0o755)
		if err == nil {
			err = os.WriteFile(req.Path, req.Data, mode)
		}
		if err == nil {
			err = os.Chmod(req.Path, mode)
		}
		if err != nil {
			resp.Err = err.Error()
		}
	case proto.OpGet:
		b, err := os.ReadFile(req.Path)
		if err != nil {
			resp.Err = err.Error()
		}
		resp.Data = b
	case proto.OpCancel:
		a.mu.Lock()
		pgid, ok := a.running[req.Target]
		a.mu.Unlock()
		if ok {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	default:
		resp.Err = fmt.Sprintf("unknown op %q", req.Op)
	}
	a.send(resp)
}

func env(extra []string) []string {
	e := append(os.Environ(),
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"DM_DISABLE_UDEV=1", // no udev in the guest: dmsetup must not wait for it
	)
	return append(e, extra...)
}

func (a *agent) run(req *proto.Request, resp *proto.Response) {
	if len(req.Args) == 0 {
		resp.Err = "run: no command"
		return
	}
	cmd := exec.Command(req.Args[0], req.Args[1:]...)
	cmd.Env = env(req.Env)
	cmd.Dir = req.Dir
	cmd.Stdin = bytes.NewReader(req.Stdin)
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A command that leaves a background child holding its output open
	// still returns shortly after it exits (use OpStart for daemons).
	cmd.WaitDelay = 500 * time.Millisecond
	if err := cmd.Start(); err != nil {
		resp.Err = err.Error()
		resp.Exit = 127
		return
	}
	pid := cmd.Process.Pid
	a.mu.Lock()
	a.running[req.ID] = pid
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.running, req.ID)
		a.mu.Unlock()
	}()
	var timer *time.Timer
	var timedOut sync.Once
	if req.TimeoutMS > 0 {
		timer = time.AfterFunc(time.Duration(req.TimeoutMS)*time.Millisecond, func() {
			timedOut.Do(func() { resp.TimedOut = true })
			syscall.Kill(-pid, syscall.SIGKILL)
		})
	}
	err := cmd.Wait()
	if timer != nil {
		timer.Stop()
	}
	timedOut.Do(func() {})
	resp.Stdout, resp.Stderr = stdout.Bytes(), stderr.Bytes()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			resp.Signal = ws.Signal().String()
			resp.Exit = 128 + int(ws.Signal())
		} else {
			resp.Exit = ee.ExitCode()
		}
	case errors.Is(err, exec.ErrWaitDelay):
		// Exited; a leftover child kept stdout or stderr open.
		resp.Exit = cmd.ProcessState.ExitCode()
	default:
		resp.Err = err.Error()
		resp.Exit = -1
	}
}

func (a *agent) start(req *proto.Request, resp *proto.Response) {
	if len(req.Args) == 0 {
		resp.Err = "start: no command"
		return
	}
	logPath := req.Path
	if logPath == "" {
		logPath = "/tmp/" + filepath.Base(req.Args[0]) + ".log"
	}
	out, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		resp.Err = err.Error()
		return
	}
	defer out.Close()
	cmd := exec.Command(req.Args[0], req.Args[1:]...)
	cmd.Env = env(req.Env)
	cmd.Dir = req.Dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		resp.Err = err.Error()
		return
	}
	resp.Pid = cmd.Process.Pid
	go cmd.Wait() // reap it
}

// capped is a bytes.Buffer that keeps only the first maxOutput bytes.
type capped struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := maxOutput - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

func (c *capped) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Bytes()
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

func uptimeMS() int64 {
	b, _ := os.ReadFile("/proc/uptime")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	s, _ := strconv.ParseFloat(f[0], 64)
	return int64(s * 1000)
}
