package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// NodeConfig describes one VM.
type NodeConfig struct {
	Name string // hostname, and the name tests use; must be unique
	// IP is the address (or comma-separated addresses) with prefix length
	// that init puts on eth0, e.g. "192.168.1.1/24". Empty: none.
	IP string
	// Disks are the sizes in bytes of the VM's raw virtio disks, in order:
	// /dev/vda, /dev/vdb, ... The image files are sparse, in t.TempDir().
	Disks  []int64
	MemMB  int    // guest RAM; 0 means 384
	Append string // extra kernel command line
	// Reboot makes a guest-initiated reboot (reboot -f, a watchdog, a
	// panic: the kernel runs with panic=-1) restart the VM. By default
	// QEMU runs with -no-reboot: the VM powers off instead, so a boot that
	// panics fails fast rather than looping. Reset works either way.
	Reboot bool
}

// VM is one QEMU process (or the lack of one, after a power cut: its disks
// survive and PowerOn boots it again).
type VM struct {
	Name string
	cfg  NodeConfig
	c    *Cluster

	disks   []string // host paths of the disk images
	netSock string
	console string // guest ttyS0, appended over power cycles
	qemuLog string // QEMU's own stderr
	events  string // QMP events, one a line

	mu       sync.Mutex
	proc     *exec.Cmd
	exited   chan struct{}
	qmp      *qmp
	guest    *guest
	started  time.Time
	bootTime time.Duration
	boots    int

	frozen bool // between Freeze and Thaw

	fmu       sync.Mutex
	fsessions map[uint64]*fenceSession
}

func (v *VM) sock(what string) string { return filepath.Join(v.c.dir, v.Name+"."+what+".sock") }

// Disk returns the host path of the VM's i-th disk image (/dev/vda is 0).
// Read it only while the VM is off or frozen after a guest sync.
func (v *VM) Disk(i int) string { return v.disks[i] }

// ConsolePath is the file collecting the guest's console (kernel messages,
// init's and the agent's output), across power cycles.
func (v *VM) ConsolePath() string { return v.console }

// Console returns the guest's console output so far.
func (v *VM) Console() string {
	b, _ := os.ReadFile(v.console)
	return string(b)
}

// BootTime is how long the last boot took, from starting QEMU to the
// guest agent's first answer.
func (v *VM) BootTime() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.bootTime
}

// Pid is the QEMU process's pid, or 0 when the VM is off.
func (v *VM) Pid() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc == nil {
		return 0
	}
	return v.proc.Process.Pid
}

// Running reports whether the VM's QEMU process is alive.
func (v *VM) Running() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc == nil {
		return false
	}
	select {
	case <-v.exited:
		return false
	default:
		return true
	}
}

func (v *VM) qemuArgs() []string {
	img := v.c.Image
	mem := v.cfg.MemMB
	if mem == 0 {
		mem = 384
	}
	var hosts []string
	for _, n := range v.c.order {
		if ip, _, _ := strings.Cut(strings.Split(n.cfg.IP, ",")[0], "/"); ip != "" {
			hosts = append(hosts, n.Name+"="+ip)
		}
	}
	cmdline := []string{"console=ttyS0", "panic=-1", "quiet", "tandem.name=" + v.Name}
	if v.cfg.IP != "" {
		cmdline = append(cmdline, "tandem.ip="+v.cfg.IP)
	}
	if len(hosts) > 0 {
		cmdline = append(cmdline, "tandem.hosts="+strings.Join(hosts, ","))
	}
	if t := v.c.cfg.Fence[v.Name]; len(t) > 0 {
		cmdline = append(cmdline, "tandem.qmp="+strings.Join(t, ","))
	}
	if v.cfg.Append != "" {
		cmdline = append(cmdline, v.cfg.Append)
	}
	args := []string{
		"-action", "reboot=" + map[bool]string{true: "reset", false: "shutdown"}[v.cfg.Reboot],
		"-name", v.Name + ",debug-threads=off",
		"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(mem), "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", img.Kernel.Vmlinux, "-initrd", img.Initrd,
		"-append", strings.Join(cmdline, " "),
		// ttyS0: the console, to a file.
		"-chardev", "file,id=con0,path=" + v.console + ",append=on",
		"-serial", "chardev:con0",
	}
	if v.c.Cable != nil {
		if a, b := v.c.Cable.Ends(); a == v.Name || b == v.Name {
			// ttyS1: the null-modem cable's end.
			args = append(args,
				"-chardev", "socket,id=ser1,path="+v.sock("ttyS1")+",server=on,wait=off",
				"-serial", "chardev:ser1")
		}
	}
	args = append(args,
		"-netdev", "stream,id=n0,server=off,addr.type=unix,addr.path="+v.netSock,
		"-device", fmt.Sprintf("virtio-net-pci,netdev=n0,mac=52:54:00:12:34:%02x", v.c.index(v.Name)+1),
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=agent0,path="+v.sock("agent")+",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=agent0,name="+proto.PortName,
		"-qmp", "unix:"+v.sock("qmp")+",server=on,wait=off",
	)
	for i, d := range v.disks {
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=virtio,cache=writeback,id=disk%d", d, i))
	}
	return args
}

// start launches QEMU and connects QMP, the agent channel and the serial
// cable. It does not wait for the guest to boot.
func (v *VM) start(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.proc != nil {
		select {
		case <-v.exited:
		default:
			return fmt.Errorf("%s: already running (pid %d)", v.Name, v.proc.Process.Pid)
		}
	}
	for _, s := range []string{"qmp", "agent", "ttyS1"} {
		os.Remove(v.sock(s))
	}
	v.boots++
	appendFile(v.console, fmt.Sprintf("\n===== %s: boot %d, %s =====\n", v.Name, v.boots, time.Now().Format(time.RFC3339Nano)))
	logf, err := os.OpenFile(v.qemuLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("qemu-system-x86_64", v.qemuArgs()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies (go test -timeout, a panic), so does QEMU.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: starting qemu-system-x86_64 (make vmtest-deps installs it): %w", v.Name, err)
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		v.c.logf("%s: QEMU (pid %d) exited: %v", v.Name, cmd.Process.Pid, exitText(err))
		close(exited)
	}()
	v.proc, v.exited, v.started, v.frozen = cmd, exited, time.Now(), false

	fail := func(err error) error {
		cmd.Process.Kill()
		<-exited
		if b, _ := os.ReadFile(v.qemuLog); len(b) > 0 {
			err = fmt.Errorf("%w\nQEMU said:\n%s", err, tail(string(b), 4000))
		}
		return err
	}
	// QEMU creates its sockets within a second or so (longer on a loaded
	// machine: ctx bounds it); if it exits first (bad arguments), say so
	// rather than time out.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-dctx.Done():
		}
	}()
	q, err := dialQMP(dctx, v.Name, v.sock("qmp"), v.event)
	if err != nil {
		return fail(err)
	}
	ac, err := dialUnix(dctx, v.sock("agent"))
	if err != nil {
		q.close()
		return fail(fmt.Errorf("%s: agent socket: %w", v.Name, err))
	}
	if v.c.Cable != nil {
		if a, b := v.c.Cable.Ends(); a == v.Name || b == v.Name {
			sc, err := dialUnix(dctx, v.sock("ttyS1"))
			if err != nil {
				q.close()
				ac.Close()
				return fail(fmt.Errorf("%s: ttyS1 socket: %w", v.Name, err))
			}
			v.c.Cable.plug(v.Name, sc)
		}
	}
	v.qmp = q
	v.guest = newGuest(v.Name, ac, v.c.logf, v.onGuestFrame)
	go func() {
		<-exited
		q.close()
		ac.Close()
		v.fmu.Lock()
		for id, s := range v.fsessions {
			s.queue(nil)
			delete(v.fsessions, id)
		}
		v.fmu.Unlock()
	}()
	return nil
}

func (v *VM) event(name string, data json.RawMessage) {
	appendFile(v.events, fmt.Sprintf("%s %s %s\n", time.Now().Format("15:04:05.000"), name, data))
	switch name {
	case "SHUTDOWN", "RESET", "GUEST_PANICKED", "STOP", "RESUME":
		v.c.logf("%s: QMP event %s %s", v.Name, name, data)
	}
}

// waitBoot waits for the guest agent of the current boot to answer.
func (v *VM) waitBoot(ctx context.Context) error {
	v.mu.Lock()
	g, exited, started := v.guest, v.exited, v.started
	v.mu.Unlock()
	if g == nil {
		return fmt.Errorf("%s: not started", v.Name)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := g.waitReady(ctx); err != nil {
		select {
		case <-exited:
			return fmt.Errorf("%s: QEMU exited while booting (kernel panic? see the console log below or %s)", v.Name, v.console)
		default:
		}
		return fmt.Errorf("%s: booting for %v: %w (see the console log below or %s)", v.Name, time.Since(started).Round(time.Millisecond), err, v.console)
	}
	v.mu.Lock()
	v.bootTime = time.Since(started)
	v.mu.Unlock()
	return nil
}

// PowerOn starts a VM that is off (after PowerCut or Quit) with the same
// disks and waits until it has booted.
func (v *VM) PowerOn(ctx context.Context) error {
	ctx, cancel := withDefault(ctx, v.c.cfg.BootTimeout)
	defer cancel()
	if err := v.start(ctx); err != nil {
		return err
	}
	if err := v.waitBoot(ctx); err != nil {
		return err
	}
	v.c.logf("%s: booted in %v", v.Name, v.BootTime().Round(time.Millisecond))
	return nil
}

// PowerCut kills the QEMU process: the machine loses power at once. The
// peers see silence, no TCP reset. Writes the guest had not yet handed to
// QEMU are lost; the disk images keep the rest.
func (v *VM) PowerCut() error {
	v.mu.Lock()
	proc, exited := v.proc, v.exited
	v.mu.Unlock()
	if proc == nil {
		return fmt.Errorf("%s: PowerCut: never started", v.Name)
	}
	v.c.logf("%s: power cut (SIGKILL to QEMU pid %d)", v.Name, proc.Process.Pid)
	proc.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: QEMU pid %d still running 10s after SIGKILL", v.Name, proc.Process.Pid)
	}
}

// Quit asks QEMU to exit (QMP quit): also an instant power-off for the
// guest, but through QEMU, which flushes its disk caches first.
func (v *VM) Quit(ctx context.Context) error {
	v.mu.Lock()
	exited := v.exited
	v.mu.Unlock()
	if exited == nil {
		return nil
	}
	ctx, cancel := withDefault(ctx, 10*time.Second)
	defer cancel()
	if _, err := v.QMP(ctx, "quit", nil); err != nil {
		select {
		case <-exited:
			return nil
		default:
			return err
		}
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: QEMU did not exit after QMP quit: %w", v.Name, ctx.Err())
	}
}

// QMP runs a QMP command on the VM's QEMU and returns its "return" value.
func (v *VM) QMP(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	v.mu.Lock()
	q := v.qmp
	v.mu.Unlock()
	if q == nil || !v.Running() {
		return nil, fmt.Errorf("%s: QMP %s: %w", v.Name, cmd, ErrDown)
	}
	ctx, cancel := withDefault(ctx, 10*time.Second)
	defer cancel()
	return q.execute(ctx, cmd, args)
}

// Freeze stops the guest's CPUs (QMP stop): a zombie machine. Its clock
// stops too; nothing it sends or receives moves until Thaw.
func (v *VM) Freeze(ctx context.Context) error {
	v.c.logf("%s: freeze", v.Name)
	_, err := v.QMP(ctx, "stop", nil)
	if err == nil {
		v.mu.Lock()
		v.frozen = true
		v.mu.Unlock()
	}
	return err
}

// Thaw resumes a frozen guest (QMP cont).
func (v *VM) Thaw(ctx context.Context) error {
	v.c.logf("%s: thaw", v.Name)
	_, err := v.QMP(ctx, "cont", nil)
	if err == nil {
		v.mu.Lock()
		v.frozen = false
		v.mu.Unlock()
	}
	return err
}

// LinkDown takes the carrier away from the VM's NIC (QMP set_link): the
// guest's eth0 sees its cable pulled. For a silent cut use the Switch.
func (v *VM) LinkDown(ctx context.Context) error {
	v.c.logf("%s: link down", v.Name)
	_, err := v.QMP(ctx, "set_link", map[string]any{"name": "n0", "up": false})
	return err
}

// LinkUp restores the NIC's carrier.
func (v *VM) LinkUp(ctx context.Context) error {
	v.c.logf("%s: link up", v.Name)
	_, err := v.QMP(ctx, "set_link", map[string]any{"name": "n0", "up": true})
	return err
}

// Reset presses the reset button (QMP system_reset) and waits for the
// guest to boot again. Requests in flight fail with ErrRebooted.
func (v *VM) Reset(ctx context.Context) error {
	v.c.logf("%s: reset", v.Name)
	ctx, cancel := withDefault(ctx, v.c.cfg.BootTimeout)
	defer cancel()
	g, err := v.agent()
	if err != nil {
		return fmt.Errorf("%s: reset: %w", v.Name, err)
	}
	g.mu.Lock()
	old := g.bootID
	g.mu.Unlock()
	v.mu.Lock()
	v.started = time.Now()
	exited := v.exited
	v.mu.Unlock()
	// With -action reboot=shutdown (-no-reboot) QEMU turns a reset
	// request into an exit, so allow resets just for this one.
	if !v.cfg.Reboot {
		if _, err := v.QMP(ctx, "set-action", map[string]any{"reboot": "reset"}); err != nil {
			return err
		}
	}
	if _, err := v.QMP(ctx, "system_reset", nil); err != nil {
		return err
	}
	if !v.cfg.Reboot {
		// Only once the new boot is up: the firmware resets the machine
		// itself on the way (seen as a guest reset right after ours).
		defer func() {
			if _, err := v.QMP(context.Background(), "set-action", map[string]any{"reboot": "shutdown"}); err != nil {
				v.c.logf("%s: restoring -no-reboot after the reset: %v", v.Name, err)
			}
		}()
	}
	// The new boot's agent says hello with a new boot ID; ping now and
	// then in case the hello was lost.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastPing := time.Now()
	for {
		g.mu.Lock()
		id := g.bootID
		g.mu.Unlock()
		if id != old {
			v.mu.Lock()
			v.bootTime = time.Since(v.started)
			v.mu.Unlock()
			v.c.logf("%s: rebooted in %v", v.Name, v.BootTime().Round(time.Millisecond))
			return nil
		}
		if time.Since(lastPing) > 2*time.Second {
			lastPing = time.Now()
			go g.call(ctx, &proto.Request{Op: proto.OpPing}, 0)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: no new boot after reset: %w (see the console log %s)", v.Name, ctx.Err(), v.console)
		case <-exited:
			return fmt.Errorf("%s: QEMU exited after reset: %w", v.Name, ErrDown)
		case <-tick.C:
		}
	}
}

// Cmd is a command to run in the guest.
type Cmd struct {
	Args  []string
	Stdin []byte
	Env   []string // extra KEY=VALUE
	Dir   string
}

// Result is what a guest command did.
type Result struct {
	VM       string
	Args     []string
	Stdout   string
	Stderr   string
	Exit     int    // 128+n when killed by signal n
	Signal   string // the signal that killed it, if any
	TimedOut bool   // killed by the agent at the context's deadline
	Elapsed  time.Duration
}

// ExitError is returned by Run when the command ran but did not exit 0.
type ExitError struct{ Result Result }

func (e *ExitError) Error() string {
	r := e.Result
	how := fmt.Sprintf("exit status %d", r.Exit)
	if r.Signal != "" {
		how = "killed by " + r.Signal
	}
	if r.TimedOut {
		how += " (timed out)"
	}
	return fmt.Sprintf("%s: %s: %s\nstdout: %s\nstderr: %s", r.VM, quoteArgs(r.Args), how,
		tail(strings.TrimSpace(r.Stdout), 2000), tail(strings.TrimSpace(r.Stderr), 2000))
}

// DefaultTimeout bounds a guest command whose context has no deadline.
const DefaultTimeout = 2 * time.Minute

// Run runs a command in the guest and waits for it. The error is an
// *ExitError if it exited non-zero, or says why there was no answer (the VM
// is off, frozen past the context's deadline, rebooted). Without a deadline
// on ctx, DefaultTimeout applies.
func (v *VM) Run(ctx context.Context, args ...string) (Result, error) {
	return v.Exec(ctx, Cmd{Args: args})
}

// Sh runs script with sh -c in the guest.
func (v *VM) Sh(ctx context.Context, script string) (Result, error) {
	return v.Exec(ctx, Cmd{Args: []string{"sh", "-c", script}})
}

// Exec is Run with stdin, environment and working directory.
func (v *VM) Exec(ctx context.Context, c Cmd) (Result, error) {
	res := Result{VM: v.Name, Args: c.Args}
	g, err := v.agent()
	if err != nil {
		return res, fmt.Errorf("%s: %s: %w", v.Name, quoteArgs(c.Args), err)
	}
	ctx, cancel := withDefault(ctx, DefaultTimeout)
	defer cancel()
	dl, _ := ctx.Deadline()
	start := time.Now()
	r, err := g.call(ctx, &proto.Request{Op: proto.OpRun, Args: c.Args, Stdin: c.Stdin, Env: c.Env, Dir: c.Dir}, time.Until(dl))
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("%s: %s: no answer after %v%s: %w", v.Name, quoteArgs(c.Args), res.Elapsed.Round(time.Millisecond), v.state(), err)
	}
	res.Stdout, res.Stderr, res.Exit, res.Signal, res.TimedOut = string(r.Stdout), string(r.Stderr), r.Exit, r.Signal, r.TimedOut
	if r.Err != "" {
		return res, fmt.Errorf("%s: %s: %s", v.Name, quoteArgs(c.Args), r.Err)
	}
	if r.Exit != 0 {
		return res, &ExitError{res}
	}
	return res, nil
}

// Spawn starts a background process in the guest (its own session, output
// appended to logPath, or /tmp/NAME.log if empty) and returns its pid at
// once. Use it for daemons; Run waits for the command.
func (v *VM) Spawn(ctx context.Context, logPath string, args ...string) (int, error) {
	r, err := v.request(ctx, &proto.Request{Op: proto.OpStart, Args: args, Path: logPath})
	if err != nil {
		return 0, err
	}
	return r.Pid, nil
}

// Put writes a file in the guest (parent directories created).
func (v *VM) Put(ctx context.Context, path string, data []byte, mode os.FileMode) error {
	_, err := v.request(ctx, &proto.Request{Op: proto.OpPut, Path: path, Data: data, Mode: uint32(mode.Perm())})
	return err
}

// Get reads a file from the guest.
func (v *VM) Get(ctx context.Context, path string) ([]byte, error) {
	r, err := v.request(ctx, &proto.Request{Op: proto.OpGet, Path: path})
	if err != nil {
		return nil, err
	}
	return r.Data, nil
}

// Ping asks the agent to answer and returns the round trip.
func (v *VM) Ping(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	_, err := v.request(ctx, &proto.Request{Op: proto.OpPing})
	return time.Since(start), err
}

func (v *VM) request(ctx context.Context, req *proto.Request) (*proto.Response, error) {
	what := req.Op + " " + req.Path
	if len(req.Args) > 0 {
		what = req.Op + " " + quoteArgs(req.Args)
	}
	g, err := v.agent()
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", v.Name, what, err)
	}
	ctx, cancel := withDefault(ctx, DefaultTimeout)
	defer cancel()
	start := time.Now()
	r, err := g.call(ctx, req, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: no answer after %v%s: %w", v.Name, what, time.Since(start).Round(time.Millisecond), v.state(), err)
	}
	if r.Err != "" {
		return nil, fmt.Errorf("%s: %s: %s", v.Name, what, r.Err)
	}
	return r, nil
}

// state explains a missing answer: " (frozen)", " (off)" or "".
func (v *VM) state() string {
	if !v.Running() {
		return " (VM off)"
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.frozen {
		return " (VM frozen)"
	}
	return ""
}

// Frozen reports whether the VM is stopped by Freeze.
func (v *VM) Frozen() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.frozen
}

func (v *VM) agent() (*guest, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.guest == nil {
		return nil, errors.New("not started")
	}
	select {
	case <-v.exited:
		return nil, ErrDown
	default:
	}
	return v.guest, nil
}

// shutdown stops QEMU for good: QMP quit, then SIGKILL if it lingers.
func (v *VM) shutdown() {
	v.mu.Lock()
	proc, exited := v.proc, v.exited
	v.mu.Unlock()
	if proc == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if v.Quit(ctx) == nil {
		return
	}
	proc.Process.Kill()
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		v.c.logf("%s: QEMU pid %d survived SIGKILL for 10s", v.Name, proc.Process.Pid)
	}
}

func withDefault(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`|&;<>()*?[]{}") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func appendFile(path, s string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	f.WriteString(s)
	f.Close()
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
