package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"tandem/daemon"
	"tandem/daemon/disk"
	"tandem/daemon/nbdclient"
	"tandem/internal/meta"
	"tandem/internal/proto"
)

// runDemoCommand is `tandem demo`: the real two-daemon story, or with --sim
// the simulated one (runDemo).
func runDemoCommand(args []string, stdout, stderr io.Writer) int {
	for i, a := range args {
		if a == "--sim" || a == "-sim" {
			return runDemo(append(append([]string(nil), args[:i]...), args[i+1:]...), stdout, stderr)
		}
	}
	return runRealDemo(args, stdout, stderr)
}

// Demo geometry: a 64 MiB data area, 4 MiB of pattern written on the first
// primary, 256 KiB written on the second while the first is away.
const (
	demoBlocks     = 16384
	demoPattern    = 1024
	demoAfterwards = 64
)

// demo is the real demo's state: two `tandem daemon` processes of this very
// binary, with their files in a temporary directory.
type demo struct {
	out     io.Writer
	dir     string
	exe     string
	cfg     string
	verbose bool
	procs   map[string]*proc
	cable   *ptyCable
}

// runRealDemo runs the seed's story for real on 127.0.0.1: two daemons,
// file-backed disks, UDP and a pty "serial cable" for heartbeats, an exec
// service, SIGKILL of the primary, takeover, readback, rejoin and resync.
func runRealDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keep := fs.Bool("keep", false, "keep the temporary directory (configuration, disks, logs)")
	verbose := fs.Bool("v", false, "print the daemons' logs at the end")
	initialSync := fs.Bool("initial-sync", false, "start from fresh disks with `primary --force` and a full initial sync "+
		"(default: the disks start zeroed and identical, as after drbdadm new-current-uuid --clear-bitmap)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: tandem demo [--sim] [--keep] [-v] [--initial-sync]\n\n"+
			"Runs two tandem daemons on 127.0.0.1 and fails the primary over for real (no root needed).\n"+
			"--sim plays the story in the simulator instead.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "tandem demo: cannot find this binary to run the daemons: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "tandem-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "tandem demo: %v\n", err)
		return 1
	}
	d := &demo{out: stdout, dir: dir, exe: exe, verbose: *verbose, procs: map[string]*proc{}}
	defer func() {
		d.stopAll()
		if d.cable != nil {
			d.cable.Close()
		}
		if *keep {
			fmt.Fprintf(stdout, "\nfiles kept in %s\n", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	if err := d.run(ctx, *initialSync); err != nil {
		fmt.Fprintf(stdout, "\nFAILED: %v\n", err)
		d.showLogs(stdout, 30)
		return 1
	}
	if d.verbose {
		d.showLogs(stdout, 0)
	}
	return 0
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demo) run(ctx context.Context, initialSync bool) error {
	started := time.Now()
	d.say("REAL — two tandem daemons on 127.0.0.1 (files in %s)\n", d.dir)
	cable, err := newPtyCable()
	if err != nil {
		return fmt.Errorf("a pty pair for the serial cable: %w", err)
	}
	d.cable = cable
	if err := d.writeConfig(); err != nil {
		return err
	}
	if err := d.makeDisks(initialSync); err != nil {
		return err
	}
	d.say("cluster:   n1 (preferred) and n2; keepalive 100ms, deadtime 1s, fencing none")
	d.say("heartbeat: UDP unicast + serial cable %s <-> %s (a pty pair)", cable.slaves[0], cable.slaves[1])
	d.say("disk:      %d MiB file per node, protocol C over TCP; NBD on a unix socket", demoBlocks*meta.BlockSize>>20)
	d.say("group:     disk, then an exec service that writes %s/service.NODE\n", d.dir)
	for _, n := range []string{"n1", "n2"} {
		if err := d.start(n); err != nil {
			return err
		}
	}
	if initialSync {
		if err := d.waitFor(ctx, "the fresh pair to connect", func() bool {
			return d.is("n1", "", "", "Inconsistent", "Connected") && d.is("n2", "", "", "Inconsistent", "Connected")
		}); err != nil {
			return err
		}
		resp, err := daemon.Call(ctx, d.sock("n1"), daemon.Request{Command: "primary", Force: true})
		if err != nil {
			return err
		}
		if !resp.OK {
			return fmt.Errorf("primary --force on n1 refused: %s", resp.Error)
		}
		d.say("n1: primary --force: full initial sync to n2")
	}
	t0 := time.Now()
	if err := d.waitFor(ctx, "n1 to run the group with n2 in sync", func() bool {
		return d.is("n1", "Primary", "Primary", "UpToDate", "Connected") && d.is("n2", "Secondary", "Secondary", "UpToDate", "Connected")
	}); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(d.dir, "service.n1")); err != nil {
		return fmt.Errorf("n1 runs the group but its service did not start: %v", err)
	}
	d.say("n1 runs the group (%v after start-up, which includes the one-lease abstention); n2 is in sync", time.Since(t0).Round(time.Millisecond))

	// The pattern, through n1's NBD socket.
	c, err := nbdclient.Dial(d.nbd("n1"), 5*time.Second)
	if err != nil {
		return err
	}
	wstart := time.Now()
	for b := uint64(0); b < demoPattern; b += 16 {
		buf := make([]byte, 16*meta.BlockSize)
		for i := range uint64(16) {
			fillBlock(buf[i*meta.BlockSize:(i+1)*meta.BlockSize], b+i, 1)
		}
		if err := c.WriteAt(buf, b*meta.BlockSize); err != nil {
			c.Close()
			return fmt.Errorf("writing the pattern through n1: %w", err)
		}
	}
	if err := c.Flush(); err != nil {
		c.Close()
		return err
	}
	c.Close()
	el := time.Since(wstart)
	d.say("wrote %d blocks (%d KiB) through n1's NBD socket and flushed: %v, %.1f MiB/s (protocol C: each write on both disks)",
		demoPattern, demoPattern*4, el.Round(time.Millisecond), float64(demoPattern*meta.BlockSize)/el.Seconds()/(1<<20))

	// Watch n2's events from before the kill, to time detection and takeover.
	var mu sync.Mutex
	var deadAt, primaryAt time.Time
	evctx, evcancel := context.WithCancel(ctx)
	defer evcancel()
	subscribed := make(chan struct{})
	go daemon.EventsSubscribed(evctx, d.sock("n2"), func() { close(subscribed) }, func(e daemon.Event) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case e.Kind == "peer-dead" && deadAt.IsZero():
			deadAt = e.Time
		case e.Kind == "state" && e.To == "Primary" && primaryAt.IsZero():
			primaryAt = e.Time
		}
		return nil
	})
	select {
	case <-subscribed:
	case <-time.After(10 * time.Second):
		return errors.New("n2's event stream did not accept the subscription within 10s")
	}

	kill := time.Now()
	if err := d.procs["n1"].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-d.procs["n1"].exited
	delete(d.procs, "n1")
	if err := d.cable.release(0); err != nil {
		return fmt.Errorf("freeing n1's end of the serial cable: %w", err)
	}
	d.say("\nSIGKILL n1 (the primary)")
	if err := d.waitFor(ctx, "n2 to take over", func() bool {
		return d.is("n2", "Primary", "Primary", "UpToDate", "")
	}); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(d.dir, "service.n2")); err != nil {
		return fmt.Errorf("n2 runs the group but its service did not start: %v", err)
	}
	// The status can show Primary a moment before the stream delivers the
	// events that say so.
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	_ = d.waitFor(wctx, "n2's event stream to report the takeover", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !deadAt.IsZero() && !primaryAt.IsZero()
	})
	mu.Lock()
	detect, takeover := deadAt.Sub(kill), primaryAt.Sub(kill)
	mu.Unlock()
	if deadAt.IsZero() || primaryAt.IsZero() {
		return errors.New("n2 took over but its event stream did not report the peer's death and the promotion")
	}
	d.say("n2 declared n1 dead %v after the kill (deadtime 1s, counted from n1's last heartbeat)", detect.Round(time.Millisecond))
	d.say("n2 ran the whole group %v after the kill (service started on n2)", takeover.Round(time.Millisecond))

	// Read everything back through the new primary.
	c, err = nbdclient.Dial(d.nbd("n2"), 5*time.Second)
	if err != nil {
		return err
	}
	good := 0
	buf := make([]byte, 16*meta.BlockSize)
	want := make([]byte, meta.BlockSize)
	for b := uint64(0); b < demoPattern; b += 16 {
		if err := c.ReadAt(buf, b*meta.BlockSize); err != nil {
			c.Close()
			return fmt.Errorf("reading back through n2: %w", err)
		}
		for i := range uint64(16) {
			fillBlock(want, b+i, 1)
			if bytes.Equal(buf[i*meta.BlockSize:(i+1)*meta.BlockSize], want) {
				good++
			}
		}
	}
	d.say("%d/%d blocks verified through n2's NBD socket", good, demoPattern)
	if good != demoPattern {
		c.Close()
		return fmt.Errorf("%d acknowledged blocks are missing or wrong on the new primary", demoPattern-good)
	}
	// Changes while n1 is away: what n1 must get back.
	for b := uint64(0); b < demoAfterwards; b++ {
		blk := 2048 + b*64 // spread over the disk: one block in every 256 KiB
		fillBlock(want, blk, 2)
		if err := c.WriteAt(want, blk*meta.BlockSize); err != nil {
			c.Close()
			return fmt.Errorf("writing on n2: %w", err)
		}
	}
	c.Flush()
	c.Close()
	d.say("wrote %d more blocks (%d KiB) on n2 while n1 is down", demoAfterwards, demoAfterwards*4)

	// n1 comes back.
	if err := d.start("n1"); err != nil {
		return err
	}
	back := time.Now()
	if err := d.waitFor(ctx, "n1 to rejoin as secondary, in sync", func() bool {
		return d.is("n1", "Secondary", "Secondary", "UpToDate", "Connected") && d.is("n2", "Primary", "Primary", "UpToDate", "Connected")
	}); err != nil {
		return err
	}
	st, err := d.status(ctx, "n1")
	if err != nil {
		return err
	}
	rs := st.Replication.Stats
	d.say("\nn1 restarted and rejoined as secondary in %v (auto_failback off: n2 keeps the group)", time.Since(back).Round(time.Millisecond))
	d.say("resync: %d bytes copied to n1, %d bytes were dirty: %d written on n2 meanwhile, the rest the extents",
		rs.ResyncReceived*meta.BlockSize, rs.DirtyAtStart*meta.BlockSize, demoAfterwards*meta.BlockSize)
	d.say("        n1's activity log held hot when it was killed (a crashed primary resyncs them)")
	if rs.ResyncReceived >= demoBlocks {
		return fmt.Errorf("the rejoin copied the whole disk (%d blocks): not a minimal resync", rs.ResyncReceived)
	}
	d.say("        not resynced: %d of %d KiB", (demoBlocks-rs.ResyncReceived)*4, demoBlocks*4)

	d.say("\n$ tandem status --node n2")
	if st2, err := d.status(ctx, "n2"); err == nil {
		printStatus(d.out, st2)
	}
	d.say("\n$ tandem status --node n1")
	printStatus(d.out, st)

	// Orderly stop: the secondary first (clean metadata), then the primary.
	for _, n := range []string{"n1", "n2"} {
		if err := d.stop(n); err != nil {
			return err
		}
	}
	d.say("\ndaemons stopped with SIGTERM; demo took %v", time.Since(started).Round(time.Millisecond))
	return nil
}

// fillBlock writes the demo's content for block b in generation g: the block
// number and generation, then a hash chain, so a misplaced or stale block
// never matches.
func fillBlock(p []byte, b, g uint64) {
	seed := sha256.Sum256(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, b), g))
	for off := 0; off < len(p); off += len(seed) {
		copy(p[off:], seed[:])
		seed = sha256.Sum256(seed[:])
	}
	binary.LittleEndian.PutUint64(p, b)
	binary.LittleEndian.PutUint64(p[8:], g)
}

func (d *demo) sock(n string) string { return filepath.Join(d.dir, n+".sock") }
func (d *demo) nbd(n string) string  { return filepath.Join(d.dir, n+".nbd") }

func (d *demo) writeConfig() error {
	ports, err := demoPorts(4)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# written by tandem demo
[cluster]
name = "demo"
keepalive = "100ms"
warntime = "500ms"
deadtime = "1s"
initdead = "3s"
preferred = "n1"
auto_failback = false
fencing = "none"
authkey = "tandem-demo-not-a-secret-key"
`)
	for i, n := range []string{"n1", "n2"} {
		fmt.Fprintf(&b, `
[[node]]
name = %q
address = "127.0.0.1:%d"
disk = %q
nbd_socket = %q
control_socket = %q
`, n, ports[i], filepath.Join(d.dir, n+".img"), d.nbd(n), d.sock(n))
	}
	fmt.Fprintf(&b, `
[[heartbeat]]
kind = "ucast"
addresses = { n1 = "127.0.0.1:%d", n2 = "127.0.0.1:%d" }

[[heartbeat]]
kind = "serial"
devices = { n1 = %q, n2 = %q }
baud = 115200

[replication]
protocol = "C"
blocks = %d
ping_interval = "250ms"

[[resource]]
kind = "exec"
name = "service"
start = "echo started > %s/service.$TANDEM_NODE"
stop = "rm -f %s/service.$TANDEM_NODE"
monitor = "test -f %s/service.$TANDEM_NODE || exit 7"
monitor_interval = "1s"
`, ports[2], ports[3], d.cable.slaves[0], d.cable.slaves[1], demoBlocks, d.dir, d.dir, d.dir)
	d.cfg = filepath.Join(d.dir, "tandem.toml")
	return os.WriteFile(d.cfg, []byte(b.String()), 0o600)
}

// makeDisks creates the two backing files with metadata. Without initial
// sync both start zeroed with one shared generation, which is true of two
// new sparse files (drbdadm new-current-uuid --clear-bitmap).
func (d *demo) makeDisks(initialSync bool) error {
	quiet := slog.New(slog.DiscardHandler)
	gen := meta.UUID(uint64(time.Now().UnixNano())<<1 | 1)
	for i, n := range []string{"n1", "n2"} {
		img := filepath.Join(d.dir, n+".img")
		f, err := os.Create(img)
		if err != nil {
			return err
		}
		err = f.Truncate(demoBlocks*meta.BlockSize + 8<<20)
		f.Close()
		if err != nil {
			return err
		}
		if err := disk.CreateMD(img, disk.CreateOptions{Node: proto.NodeID(i), Blocks: demoBlocks, Logger: quiet}); err != nil {
			return err
		}
		if initialSync {
			continue
		}
		dk, err := disk.Open(img, disk.Options{Blocks: demoBlocks, Logger: quiet})
		if err != nil {
			return err
		}
		rec, err := dk.LoadMeta()
		if err == nil {
			rec.Seq++
			rec.Gen = meta.Generations{Current: gen}
			rec.Flags = meta.Consistent | meta.CleanShutdown
			err = dk.PersistMeta(rec, true)
		}
		dk.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", img, err)
		}
	}
	return nil
}

// proc is one daemon process; exited closes once it has been reaped.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// start runs `tandem daemon` for node n and waits until it answers.
func (d *demo) start(n string) error {
	logf, err := os.OpenFile(filepath.Join(d.dir, n+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.exe, "daemon", "--config", d.cfg, "--node", n, "--log-level", "info")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the demo
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("starting the %s daemon: %w", n, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	d.procs[n] = p
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := daemon.Call(ctx, d.sock(n), daemon.Request{Command: "status"})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			delete(d.procs, n)
			return fmt.Errorf("the %s daemon exited at start-up (%v; see its log below)", n, cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("the %s daemon did not answer on %s within 10s", n, d.sock(n))
}

// stop sends SIGTERM and waits for an orderly exit with status 0.
func (d *demo) stop(n string) error {
	p := d.procs[n]
	if p == nil {
		return nil
	}
	delete(d.procs, n)
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if !p.cmd.ProcessState.Success() {
			return fmt.Errorf("the %s daemon's orderly stop ended with %v", n, p.cmd.ProcessState)
		}
		return nil
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("the %s daemon did not stop within 15s of SIGTERM", n)
	}
}

func (d *demo) stopAll() {
	for n, p := range d.procs {
		p.cmd.Process.Kill()
		<-p.exited
		delete(d.procs, n)
	}
}

func (d *demo) status(ctx context.Context, n string) (*daemon.Status, error) {
	resp, err := daemon.Call(ctx, d.sock(n), daemon.Request{Command: "status"})
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("status of %s: %s", n, resp.Error)
	}
	return resp.Status, nil
}

func (d *demo) is(n, state, role, dsk, conn string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := d.status(ctx, n)
	if err != nil || st.Replication == nil {
		return false
	}
	r := st.Replication
	return (state == "" || st.State == state) && (role == "" || r.Role == role) &&
		(dsk == "" || r.Disk == dsk) && (conn == "" || r.Conn == conn)
}

func (d *demo) waitFor(ctx context.Context, what string, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			var b strings.Builder
			for _, n := range []string{"n1", "n2"} {
				c2, cancel := context.WithTimeout(context.Background(), time.Second)
				if st, err := d.status(c2, n); err == nil && st.Replication != nil {
					fmt.Fprintf(&b, "\n  %s: %s, %s/%s/%s", n, st.State, st.Replication.Role, st.Replication.Disk, st.Replication.Conn)
				}
				cancel()
			}
			return fmt.Errorf("gave up waiting for %s%s", what, b.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// showLogs prints the last lines of each daemon's log (all with lines 0).
func (d *demo) showLogs(w io.Writer, lines int) {
	for _, n := range []string{"n1", "n2"} {
		b, err := os.ReadFile(filepath.Join(d.dir, n+".log"))
		if err != nil {
			continue
		}
		l := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if lines > 0 && len(l) > lines {
			l = l[len(l)-lines:]
		}
		fmt.Fprintf(w, "\n---- %s's log ----\n%s\n", n, strings.Join(l, "\n"))
	}
}

// demoPorts finds n free ports on 127.0.0.1, each free for TCP and UDP.
func demoPorts(n int) ([]int, error) {
	var ports []int
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for tries := 0; len(ports) < n && tries < 100; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			l.Close()
			continue
		}
		closers = append(closers, l, u)
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, errors.New("no free ports on 127.0.0.1")
	}
	return ports, nil
}

// ptyCable is a null-modem cable made of two pseudo-terminals: whatever one
// slave's owner writes, the other slave's owner reads. The demo holds both
// masters and copies between them; a daemon that is killed and restarts
// reopens its slave.
type ptyCable struct {
	masters [2]*os.File
	slaves  [2]string
	// held are the slaves, open here too: the line stays up (and raw) while
	// a daemon is dead, and the exclusive-use flag the dead daemon set can be
	// cleared (TIOCNXCL) so that it may open its port again without root.
	held [2]*os.File
	done chan struct{}
	wg   sync.WaitGroup
}

func newPtyCable() (*ptyCable, error) {
	c := &ptyCable{done: make(chan struct{})}
	for i := range 2 {
		fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("open /dev/ptmx: %w", err)
		}
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt
			unix.Close(fd)
			c.Close()
			return nil, fmt.Errorf("unlockpt: %w", err)
		}
		n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN) // ptsname
		if err != nil {
			unix.Close(fd)
			c.Close()
			return nil, fmt.Errorf("ptsname: %w", err)
		}
		c.masters[i] = os.NewFile(uintptr(fd), "/dev/ptmx")
		c.slaves[i] = "/dev/pts/" + strconv.Itoa(int(n))
		sfd, err := unix.Open(c.slaves[i], unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("open %s: %w", c.slaves[i], err)
		}
		c.held[i] = os.NewFile(uintptr(sfd), c.slaves[i])
		if tio, err := unix.IoctlGetTermios(sfd, unix.TCGETS); err == nil {
			// Raw from the start, so nothing is echoed back down the cable
			// before the daemon opens its end.
			tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
			tio.Iflag &^= unix.ICRNL | unix.INLCR | unix.IGNCR | unix.IXON | unix.ISTRIP
			tio.Oflag &^= unix.OPOST
			unix.IoctlSetTermios(sfd, unix.TCSETS, tio)
		}
	}
	c.wg.Add(2)
	go c.copy(c.masters[1], c.masters[0])
	go c.copy(c.masters[0], c.masters[1])
	return c, nil
}

// copy moves bytes from one master to the other. A master reads EIO while
// its slave is closed (the daemon was killed, or has not opened it yet):
// the cable waits for it to come back, as a real cable would.
func (c *ptyCable) copy(dst, src *os.File) {
	defer c.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			dst.Write(buf[:n])
		}
		if err != nil {
			select {
			case <-c.done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// release clears the exclusive-use flag a killed daemon left on end i.
func (c *ptyCable) release(i int) error {
	return unix.IoctlSetInt(int(c.held[i].Fd()), unix.TIOCNXCL, 0)
}

func (c *ptyCable) Close() {
	select {
	case <-c.done:
		return
	default:
	}
	close(c.done)
	for _, f := range append(c.masters[:], c.held[:]...) {
		if f != nil {
			f.Close()
		}
	}
}
