package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"tandem/daemon/config"
	"tandem/daemon/disk"
	"tandem/daemon/link"
	"tandem/daemon/nbd"
	"tandem/daemon/resource"
	"tandem/daemon/transport"
	"tandem/internal/meta"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// loop is the daemon's state. Fields below "owned by the loop" are touched
// only by the goroutine in run (or, before it starts, by open).
type loop struct {
	setup *config.NodeSetup
	opts  Options
	log   *slog.Logger
	start time.Time
	quit  chan struct{} // closed when Run returns: stops workers and waiters
	wg    sync.WaitGroup

	// Components, set up by open.
	disk      *disk.Disk
	link      *link.Manager
	media     []transport.Medium
	mediaByID map[proto.MediumID]transport.Medium
	agents    []resource.Agent
	fences    []namedFence
	nbd       *nbd.Server
	backend   *backend
	kernelDev *nbd.Device
	kernelErr string
	control   net.Listener
	metrics   *http.Server
	endpoints Endpoints

	actionsCtx    context.Context
	actionsCancel context.CancelFunc

	// Inboxes of the loop.
	hb     chan transport.Received
	linkEv chan link.Event
	done   chan node.Input // disk, metadata, action and fence completions
	reqs   chan *appReq
	calls  chan func()
	jobs   chan diskJob

	// Snapshots for other goroutines, written by the loop after each step.
	primary atomic.Bool // the replica is Primary (resource.Hooks.Writable)

	// Owned by the loop.
	n           *node.Node
	pendingOuts []node.Output
	bufs        map[repl.BufRef][]byte
	app         map[uint64]*appReq
	nextReq     uint64
	nextBuf     uint64
	protocolA   bool
	metaBusy    bool
	subs        map[*subscriber]struct{}
	capture     *[]Event // collects events while an admin verb runs
	obs         observed
	stop        stopState
}

// stopState follows the orderly stop.
type stopState struct {
	phase    int // 0 running, 1 handing the group away, 2 persisting clean metadata, 3 done
	deadline time.Time
	cleanID  uint64 // the Persist carrying CleanShutdown
	refused  string
}

// appReq is one application request (from the NBD backend) in flight.
type appReq struct {
	op    repl.ReqOp
	block uint64
	count uint32
	// buf is the request's data: a write's source, a read's destination,
	// exactly count blocks.
	buf  []byte
	done chan repl.IOError // buffered: the loop never waits for the requester
}

func newLoop(setup *config.NodeSetup, opts Options) *loop {
	d := &loop{setup: setup, opts: opts, log: opts.Logger.With("node", setup.Name), start: time.Now(),
		quit: make(chan struct{}), mediaByID: map[proto.MediumID]transport.Medium{},
		hb: make(chan transport.Received, 64), linkEv: make(chan link.Event, 256),
		done: make(chan node.Input, 1024), reqs: make(chan *appReq, 256), calls: make(chan func()),
		jobs: make(chan diskJob, 1024), bufs: map[repl.BufRef][]byte{}, app: map[uint64]*appReq{},
		subs: map[*subscriber]struct{}{}}
	d.actionsCtx, d.actionsCancel = context.WithCancel(context.Background())
	if r := setup.Core.Replication; r != nil {
		d.protocolA = r.WithDefaults().Protocol == repl.ProtocolA
	}
	return d
}

// now is the core's clock: monotonic nanoseconds since the daemon started.
func (d *loop) now() proto.Time { return proto.Time(time.Since(d.start)) }

// run is the main loop: the only goroutine that touches the core.
func (d *loop) run(ctx context.Context) error {
	outs := d.pendingOuts
	d.pendingOuts = nil
	d.perform(outs)
	d.step(node.Input{Kind: node.Tick})
	notify("READY=1\nSTATUS=running as " + d.setup.Name)
	d.log.Info("started", "incarnation", d.opts.Incarnation, "link", d.endpoints.Link, "nbd", d.endpoints.NBD,
		"control", d.endpoints.Control)
	if d.opts.Ready != nil {
		d.opts.Ready(d.endpoints)
	}
	var watchdog <-chan time.Time
	if iv := watchdogInterval(); iv > 0 {
		t := time.NewTicker(iv / 2)
		defer t.Stop()
		watchdog = t.C
	}
	shutdown := d.opts.Shutdown
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.resetTimer(timer)
		select {
		case <-ctx.Done():
			d.log.Warn("stopped without an orderly shutdown (the metadata says crashed)")
			d.failPending()
			return nil
		case <-shutdown:
			shutdown = nil
			d.beginStop()
		case r := <-d.hb:
			d.step(node.Input{Kind: node.Receive, Medium: r.Medium, Msg: r.Msg})
		case e := <-d.linkEv:
			d.step(node.Input{Kind: node.Replication, Repl: d.linkInput(e)})
		case in := <-d.done:
			d.completed(in)
		case q := <-d.reqs:
			d.request(q)
		case f := <-d.calls:
			f()
		case <-timer.C:
			d.step(node.Input{Kind: node.Tick})
		case <-watchdog:
			notify("WATCHDOG=1")
		}
		if d.stop.phase > 0 && d.advanceStop() {
			d.failPending()
			return nil
		}
	}
}

func (d *loop) resetTimer(t *time.Timer) {
	wait := time.Hour
	if dl := d.n.Deadline(); dl != proto.Never {
		wait = max(0, dl.Sub(d.now()))
	}
	if d.stop.phase > 0 {
		wait = min(wait, max(0, time.Until(d.stop.deadline)))
	}
	t.Reset(wait)
}

// step feeds one input to the core and performs what it returns.
func (d *loop) step(in node.Input) {
	d.perform(d.n.Step(d.now(), in))
}

// perform carries out the core's outputs. It copies them first: the core
// reuses its slice at the next Step.
func (d *loop) perform(outs []node.Output) {
	if len(outs) == 0 {
		d.publish()
		return
	}
	outs = slices.Clone(outs)
	for i := range outs {
		o := &outs[i]
		switch o.Kind {
		case node.Send:
			if m := d.mediaByID[o.Medium]; m != nil {
				if err := m.Send(o.To, &o.Msg); err != nil {
					d.log.Debug("heartbeat not sent", "medium", m.Name(), "err", err)
				}
			}
		case node.Action:
			d.action(o)
		case node.Fence:
			d.fence(o)
		case node.Emit:
			d.nodeEvent(&o.Event)
		case node.Replicate:
			d.replicate(&o.Repl)
		}
	}
	d.publish()
}

// publish refreshes the snapshots other goroutines read.
func (d *loop) publish() {
	if r := d.n.Replica(); r != nil {
		d.primary.Store(r.Role() == repl.Primary)
	}
}

// completed feeds a worker's completion back, with the bookkeeping the shell
// keeps about it.
func (d *loop) completed(in node.Input) {
	switch in.Kind {
	case node.ActionDone:
		d.obs.actionDone(in)
	case node.Replication:
		if in.Repl.Kind == repl.MetaDone {
			d.metaBusy = false
			if d.stop.phase == 2 && in.Repl.ID == d.stop.cleanID {
				if in.Repl.Err != repl.OK {
					d.log.Error("clean-shutdown metadata not written", "err", in.Repl.Err)
				}
				d.stop.phase = 3
			}
		}
	}
	d.step(in)
}

// linkInput translates a link event; a payload becomes a RecvBuf.
func (d *loop) linkInput(e link.Event) repl.Input {
	switch e.Kind {
	case link.Up:
		return repl.Input{Kind: repl.LinkUp, Conn: e.Conn}
	case link.Down:
		d.log.Info("replication link down", "conn", e.Conn, "err", e.Err)
		return repl.Input{Kind: repl.LinkDown, Conn: e.Conn}
	}
	in := repl.Input{Kind: repl.Receive, Conn: e.Conn, Msg: e.Msg}
	if e.Payload != nil {
		d.nextBuf++
		in.Buf = d.nextBuf
		d.bufs[repl.BufRef{Kind: repl.RecvBuf, ID: d.nextBuf}] = e.Payload
	}
	return in
}

// request hands an application request to the core.
func (d *loop) request(q *appReq) {
	if d.stop.phase >= 2 {
		q.done <- repl.Suspended
		return
	}
	d.nextReq++
	id := d.nextReq
	d.app[id] = q
	d.step(node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.Request, ID: id, Op: q.op, Block: q.block, Count: q.count}})
}

// failPending answers every request still waiting: the daemon is going away.
func (d *loop) failPending() {
	for id, q := range d.app {
		q.done <- repl.Suspended
		delete(d.app, id)
	}
}

// buf is the bytes of a buffer the core named.
func (d *loop) buf(b repl.BufRef) []byte {
	if b.Kind == repl.AppBuf {
		if q := d.app[b.ID]; q != nil {
			return q.buf
		}
		return nil
	}
	return d.bufs[b]
}

// replicate performs one output of the replicated disk.
func (d *loop) replicate(o *repl.Output) {
	switch o.Kind {
	case repl.DiskIO:
		d.diskIO(o)
	case repl.Persist:
		d.metaBusy = true
		if o.Record.Flags&meta.CleanShutdown != 0 {
			d.stop.cleanID = o.ID
		}
		d.submit(diskJob{persist: true, id: o.ID, rec: o.Record})
	case repl.Send:
		payload := d.buf(o.Buf)
		if d.protocolA && o.Buf.Kind == repl.AppBuf && payload != nil {
			// Protocol A completes before the frame is written, and the
			// NBD server reuses the request's buffer after completion.
			payload = append([]byte(nil), payload...)
		}
		if err := d.link.Send(o.Conn, &o.Msg, payload); err != nil && !errors.Is(err, link.ErrNotConnected) {
			// A message the core counted as sent is lost: close the
			// connection so the core sees the break instead of a gap.
			d.log.Error("replication message not sent; closing the connection", "msg", o.Msg.Kind, "err", err)
			d.link.Close(o.Conn)
		}
	case repl.Complete:
		d.complete(o)
	case repl.Release:
		// Buffers are not pooled: one handed to the link may still be
		// queued for writing, so reuse is left to the garbage collector.
		delete(d.bufs, o.Buf)
	case repl.WantLink:
		if o.Conn != 0 {
			d.link.Close(o.Conn)
		} else {
			d.link.SetWanted(o.Connect)
		}
	case repl.Emit:
		d.replEvent(&o.Event)
	}
}

func (d *loop) complete(o *repl.Output) {
	q := d.app[o.ID]
	if q == nil {
		return
	}
	delete(d.app, o.ID)
	if o.Err == repl.OK && q.op == repl.Read && o.Buf.Kind != repl.NoBuf && o.Buf != (repl.BufRef{Kind: repl.AppBuf, ID: o.ID}) {
		copy(q.buf, d.bufs[o.Buf]) // served by the peer
	}
	q.done <- o.Err
}

// action runs a resource action in its own goroutine.
func (d *loop) action(o *node.Output) {
	d.obs.actionStarted(o, d.setup)
	var a resource.Agent
	if o.Resource < len(d.agents) {
		a = d.agents[o.Resource]
	}
	id, op, timeout := o.ID, o.Op, o.Timeout
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		var err error
		if a == nil {
			// The replicated disk: the core watches it itself.
			err = nil
		} else {
			ctx, cancel := context.WithTimeout(d.actionsCtx, timeout)
			err = resource.Do(ctx, a, op)
			cancel()
		}
		if err != nil {
			d.log.Warn("resource action failed", "op", op, "err", err)
		}
		d.deliver(node.Input{Kind: node.ActionDone, ID: id, OK: err == nil, Err: errText(err)})
	}()
}

// fence runs the fencing agents for the target in turn, until one succeeds
// or the core's timeout runs out.
func (d *loop) fence(o *node.Output) {
	id, target, timeout := o.ID, o.Target, o.Timeout
	name := d.setup.Core.Names[target]
	var agents []namedFence
	for _, f := range d.fences {
		if f.target == target {
			agents = append(agents, f)
		}
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(d.actionsCtx, timeout)
		defer cancel()
		in := node.Input{Kind: node.FenceDone, ID: id, Err: "no fencing agent configured for " + name}
		var errs []string
		for _, f := range agents {
			r := f.agent.Fence(ctx, name)
			d.log.Info("fencing", "agent", f.name, "target", name, "result", r.String())
			if r.OK() {
				in.OK, in.Err = true, r.String()
				break
			}
			errs = append(errs, f.name+": "+r.String())
		}
		if !in.OK && len(errs) > 0 {
			in.Err = fmt.Sprint(errs)
		}
		d.deliver(in)
	}()
}

// deliver hands a completion to the loop unless the daemon is gone.
func (d *loop) deliver(in node.Input) {
	select {
	case d.done <- in:
	case <-d.quit:
	}
}

// call runs f on the loop goroutine and waits for it; false if the daemon
// stopped first.
func (d *loop) call(f func()) bool {
	ran := make(chan struct{})
	select {
	case d.calls <- func() { f(); close(ran) }:
	case <-d.quit:
		return false
	}
	select {
	case <-ran:
		return true
	case <-d.quit:
		return false
	}
}

// ---- the orderly stop ----

func (d *loop) beginStop() {
	notify("STOPPING=1")
	d.stop.phase = 1
	d.stop.deadline = time.Now().Add(d.opts.ShutdownTimeout)
	d.log.Info("orderly shutdown: handing the group away")
	if d.n.State().Holds() {
		d.step(node.Input{Kind: node.AdminCommand, Admin: node.Standby})
	}
}

// advanceStop moves the orderly stop on; true when Run may return.
func (d *loop) advanceStop() bool {
	s := &d.stop
	r := d.n.Replica()
	if s.phase == 1 {
		holds := d.n.State().Holds() || (r != nil && r.Role() == repl.Primary)
		switch {
		case !holds:
		case s.refused != "":
			d.log.Error("orderly shutdown: the core refused to hand the group away; stopping anyway, metadata left as crashed",
				"reason", s.refused)
			return true
		case time.Now().After(s.deadline):
			d.log.Error("orderly shutdown: still holding the group; stopping anyway, metadata left as crashed",
				"after", d.opts.ShutdownTimeout)
			return true
		default:
			return false
		}
		if r == nil {
			return true
		}
		s.phase = 2
		s.deadline = time.Now().Add(10 * time.Second)
		d.step(node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.Admin, Admin: repl.CmdDisconnect}})
		outs := r.Shutdown(d.now())
		for _, o := range slices.Clone(outs) {
			d.replicate(&o)
		}
		if s.cleanID == 0 && !d.metaBusy {
			return true // diskless: nothing to persist
		}
		return false
	}
	if s.phase == 2 && time.Now().After(s.deadline) {
		d.log.Error("orderly shutdown: the clean metadata write did not finish in time")
		return true
	}
	if s.phase == 3 {
		d.log.Info("orderly shutdown complete: metadata marked clean")
		return true
	}
	return false
}
