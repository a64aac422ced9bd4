package daemon

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"tandem/daemon/config"
	"tandem/daemon/disk"
	"tandem/daemon/fence"
	"tandem/daemon/link"
	"tandem/daemon/nbd"
	"tandem/daemon/resource"
	"tandem/daemon/transport"
	"tandem/internal/meta"
	"tandem/internal/node"
	"tandem/internal/proto"
)

// Options tune Run; the zero value is the production default.
type Options struct {
	// Logger receives everything worth logging; nil means slog.Default().
	Logger *slog.Logger
	// Shutdown, when closed, starts the orderly stop (SIGTERM): hand the
	// group away, wait until Secondary, persist clean metadata, return nil.
	// nil: only cancelling the context stops Run (a crash-like stop).
	Shutdown <-chan struct{}
	// ShutdownTimeout bounds the wait for the group to be handed away.
	// Default 60 s.
	ShutdownTimeout time.Duration
	// Incarnation distinguishes this start from earlier ones in heartbeats;
	// it must grow from one start to the next. 0: the wall clock in
	// nanoseconds.
	Incarnation uint64
	// Seed feeds the core's private random source; 0: crypto/rand.
	Seed uint64
	// DiskWorkers is how many disk operations run at once. Default 8.
	DiskWorkers int
	// Ready, if set, is called once every component is up (after
	// sd_notify READY=1), with the addresses the node actually bound.
	Ready func(Endpoints)
}

// Endpoints are the addresses a running daemon listens on, for tests and the
// demo (ports given as 0 in the configuration are chosen by the kernel).
type Endpoints struct {
	// Link is the replication link's listening address ("" without one).
	Link string
	// NBD is the NBD unix socket ("" without a replicated disk).
	NBD string
	// Control is the control socket.
	Control string
	// Metrics is the Prometheus endpoint's address ("" without one).
	Metrics string
}

// DefaultShutdownTimeout bounds an orderly stop's wait for Secondary.
const DefaultShutdownTimeout = 60 * time.Second

// Run runs the node described by setup until ctx ends (a crash-like stop,
// returning nil) or opts.Shutdown is closed (the orderly stop, returning nil
// once done). It returns an error when a component cannot start (a disk
// without metadata, a port in use, a bad resource spec), saying which.
func Run(ctx context.Context, setup *config.NodeSetup, opts Options) error {
	if setup == nil {
		return errors.New("daemon: no node setup")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.Incarnation == 0 {
		opts.Incarnation = uint64(time.Now().UnixNano())
	}
	if opts.Seed == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("daemon: random seed: %w", err)
		}
		opts.Seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	if opts.DiskWorkers <= 0 {
		opts.DiskWorkers = 8
	}
	d := newLoop(setup, opts)
	defer d.closeAll()
	if err := d.open(); err != nil {
		return err
	}
	return d.run(ctx)
}

// open starts every component; on error the caller's closeAll undoes what
// was started.
func (d *loop) open() error {
	s := d.setup
	cfg := s.Core
	log := d.log
	if cfg.Replication != nil {
		if s.Disk == nil {
			return fmt.Errorf("node %s: replication configured but no disk", s.Name)
		}
		rc := *cfg.Replication
		dk, err := disk.Open(s.Disk.Backing, disk.Options{MetaPath: s.Disk.MetaDisk, ALSlots: rc.ALSlots,
			Blocks: rc.Blocks, Direct: true, Logger: log})
		if err != nil {
			return fmt.Errorf("node %s: open disk: %w", s.Name, err)
		}
		d.disk = dk
		rc.Blocks = dk.Blocks()
		cfg.Replication = &rc
		for range d.opts.DiskWorkers {
			d.wg.Add(1)
			go d.diskWorker()
		}
	}
	n, err := node.New(cfg, d.now(), d.opts.Incarnation, d.opts.Seed)
	if err != nil {
		return fmt.Errorf("node %s: %w", s.Name, err)
	}
	d.n = n
	if cfg.Replication != nil {
		rec, err := d.disk.LoadMeta()
		switch {
		case errors.Is(err, meta.ErrNoMetadata):
			return fmt.Errorf("node %s: %s has no replication metadata: run tandem create-md --disk %s --node %d first",
				s.Name, s.Disk.Backing, s.Disk.Backing, s.ID)
		case err != nil:
			// The core runs Diskless and serves through the peer, as DRBD
			// does with a disk it cannot attach.
			log.Error("metadata unreadable: running diskless", "disk", s.Disk.Backing, "err", err)
			rec = nil
		}
		outs, err := n.AttachReplica(rec, d.opts.Seed^0x9e3779b97f4a7c15)
		if err != nil {
			return fmt.Errorf("node %s: attach %s: %w", s.Name, s.Disk.Backing, err)
		}
		d.pendingOuts = append(d.pendingOuts, outs...)
	}
	if err := d.openAgents(); err != nil {
		return err
	}
	if err := d.openMedia(); err != nil {
		return err
	}
	if cfg.Replication != nil {
		if err := d.openLink(); err != nil {
			return err
		}
		if err := d.openNBD(); err != nil {
			return err
		}
	}
	if err := d.openMetrics(); err != nil {
		return fmt.Errorf("node %s: %w", s.Name, err)
	}
	return d.openControl()
}

func (d *loop) openAgents() error {
	s := d.setup
	hooks := resource.Hooks{Writable: d.primary.Load, Log: d.log}
	d.agents = make([]resource.Agent, len(s.Resources))
	for i, r := range s.Resources {
		if r.Disk {
			continue // the core promotes and demotes the replicated disk itself
		}
		spec := r.Agent
		if spec.Exec != nil {
			// Custom commands learn which node runs them, so one
			// configuration file can serve both nodes.
			e := *spec.Exec
			e.Env = append(append([]string(nil), e.Env...), "TANDEM_NODE="+s.Name)
			spec.Exec = &e
		}
		a, err := resource.FromSpec(spec, hooks)
		if err != nil {
			return fmt.Errorf("node %s: resource %s: %w", s.Name, r.Name, err)
		}
		d.agents[i] = a
	}
	for _, f := range s.Fences {
		a, err := fence.FromSpec(fenceSpec(f))
		if err != nil {
			return fmt.Errorf("node %s: fence agent %s: %w", s.Name, f.Name, err)
		}
		d.fences = append(d.fences, namedFence{name: f.Name, target: f.Target, agent: a})
	}
	return nil
}

// fenceSpec unflattens the configuration's fence spec.
func fenceSpec(f config.FenceSpec) fence.Spec {
	switch f.Kind {
	case config.FenceExec:
		return fence.Spec{Exec: &fence.ExecSpec{Command: f.Command}}
	case config.FenceAgent:
		return fence.Spec{FenceAgent: &fence.FenceAgentSpec{Agent: f.Agent, Options: f.Options, PeerOption: f.PeerOption, Action: f.Action}}
	case config.FenceQEMU:
		return fence.Spec{QEMU: &fence.QEMUSpec{Socket: f.Socket, Action: f.Action}}
	}
	return fence.Spec{}
}

func (d *loop) openMedia() error {
	s := d.setup
	for _, c := range s.UDP {
		c.Logger = d.log
		if c.Key == nil {
			c.Key = s.Key
		}
		m, err := transport.ListenUDP(c, d.hb)
		if err != nil {
			return fmt.Errorf("node %s: heartbeat medium %d: %w", s.Name, c.ID, err)
		}
		d.media = append(d.media, m)
	}
	for _, c := range s.Serial {
		c.Logger = d.log
		if c.Key == nil {
			c.Key = s.Key
		}
		m, err := transport.OpenSerial(c, d.hb)
		if err != nil {
			return fmt.Errorf("node %s: heartbeat medium %d: %w", s.Name, c.ID, err)
		}
		d.media = append(d.media, m)
	}
	for _, m := range d.media {
		d.mediaByID[m.ID()] = m
	}
	return nil
}

func (d *loop) openLink() error {
	s := d.setup
	names := s.Core.Names
	peer := names[s.Core.DataPeer()]
	m, err := link.New(link.Config{Self: s.Name, Peer: peer, ListenAddr: s.Disk.Listen, PeerAddr: s.Disk.Peer,
		Key: s.Key, Logger: d.log}, d.linkEv)
	if err != nil {
		return fmt.Errorf("node %s: replication link on %s: %w", s.Name, s.Disk.Listen, err)
	}
	d.link = m
	d.endpoints.Link = m.Addr().String()
	return nil
}

func (d *loop) openNBD() error {
	s := d.setup
	d.backend = &backend{d: d, size: d.disk.Blocks() * meta.BlockSize}
	d.nbd = &nbd.Server{Backend: d.backend, Logger: d.log}
	if s.Disk.NBDSocket != "" {
		l, err := listenUnix(s.Disk.NBDSocket, 0o600)
		if err != nil {
			return fmt.Errorf("node %s: NBD socket: %w", s.Name, err)
		}
		d.endpoints.NBD = s.Disk.NBDSocket
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := d.nbd.Serve(l); err != nil && !errors.Is(err, nbd.ErrServerClosed) {
				d.log.Error("NBD server stopped", "socket", s.Disk.NBDSocket, "err", err)
			}
		}()
	}
	if s.Disk.NBDDevice != "" {
		d.attachKernel(s.Disk.NBDDevice)
	}
	return nil
}

// attachKernel offers the device as /dev/nbdN. A host without the nbd
// module still runs the node (the unix socket serves); the error is logged
// and shown in status.
func (d *loop) attachKernel(path string) {
	idx := -1
	if _, err := fmt.Sscanf(filepath.Base(path), "nbd%d", &idx); err != nil {
		d.kernelErr = fmt.Sprintf("nbd_device %s: not a /dev/nbdN path", path)
		d.log.Error("kernel block device not attached", "reason", d.kernelErr)
		return
	}
	kernelEnd, serverEnd, err := nbd.KernelSocketPair()
	if err != nil {
		d.kernelErr = err.Error()
		d.log.Error("kernel block device not attached", "device", path, "err", err)
		return
	}
	flags := nbd.ExportFlags(d.backend) &^ nbd.FlagReadOnly
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.nbd.ServeTransmission(serverEnd, flags); err != nil && !errors.Is(err, nbd.ErrServerClosed) {
			d.log.Warn("kernel NBD transmission ended", "device", path, "err", err)
		}
	}()
	dev, err := nbd.AttachKernel(nbd.KernelConfig{Index: idx, Size: d.backend.size, BlockSize: 4096, Flags: flags}, kernelEnd)
	kernelEnd.Close()
	if err != nil {
		serverEnd.Close()
		d.kernelErr = err.Error()
		d.log.Error("kernel block device not attached; the NBD socket still serves", "device", path, "err", err)
		return
	}
	d.kernelDev = dev
	d.log.Info("kernel block device attached", "device", dev.Path())
}

func (d *loop) openControl() error {
	s := d.setup
	if s.ControlSocket == "" {
		return nil
	}
	l, err := listenUnix(s.ControlSocket, 0o600)
	if err != nil {
		return fmt.Errorf("node %s: control socket: %w", s.Name, err)
	}
	d.control = l
	d.endpoints.Control = s.ControlSocket
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.serveControl(l)
	}()
	return nil
}

// listenUnix listens on a unix socket at path with the given mode, replacing
// a stale socket file (a crashed daemon's) but nothing else.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; remove it or configure another path", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is in use by a running process (another daemon?)", path)
		}
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// closeAll stops every component that was started, in reverse order.
func (d *loop) closeAll() {
	close(d.quit)
	if d.control != nil {
		d.control.Close()
	}
	if d.metrics != nil {
		d.metrics.Close()
	}
	if d.nbd != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		d.nbd.Shutdown(ctx)
		cancel()
	}
	if d.kernelDev != nil {
		d.kernelDev.Detach()
	}
	if d.link != nil {
		d.link.Shutdown()
	}
	for _, m := range d.media {
		m.Close()
	}
	d.actionsCancel()
	d.wg.Wait()
	if d.disk != nil {
		d.disk.Close()
	}
	if d.control != nil {
		os.Remove(d.setup.ControlSocket)
	}
	if d.endpoints.NBD != "" {
		os.Remove(d.endpoints.NBD)
	}
}

type namedFence struct {
	name   string
	target proto.NodeID
	agent  fence.Agent
}

// errText is an error's text for the core's inputs ("" for nil).
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
