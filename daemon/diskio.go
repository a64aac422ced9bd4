package daemon

import (
	"hash/crc64"
	"unsafe"

	"tandem/daemon/disk"
	"tandem/internal/meta"
	"tandem/internal/node"
	"tandem/internal/repl"
)

// diskJob is one DiskIO or Persist output for the disk workers.
type diskJob struct {
	persist bool
	rec     *meta.Record
	id      uint64
	op      repl.ReqOp
	block   uint64
	count   uint32
	buf     []byte
	digest  bool // a read whose digest the core wants (resync, verify)
}

// digestTable: both nodes must compute the same digest of the same data
// (checksum-based resync and online verify compare them).
var digestTable = crc64.MakeTable(crc64.ECMA)

// diskIO prepares a DiskIO output's buffer on the loop and queues it.
func (d *loop) diskIO(o *repl.Output) {
	j := diskJob{id: o.ID, op: o.Op, block: o.Block, count: o.Count}
	size := int(o.Count) * meta.BlockSize
	switch o.Op {
	case repl.Read:
		if o.Buf.Kind == repl.AppBuf {
			j.buf = d.buf(o.Buf)
		}
		if j.buf == nil || len(j.buf) != size {
			j.buf = disk.AlignedBuffer(size)
			if o.Buf.Kind != repl.AppBuf {
				d.bufs[o.Buf] = j.buf
			}
		}
		// An unaligned application buffer is read through an aligned
		// one by the worker.
		j.digest = o.Buf.Kind != repl.AppBuf
	case repl.Write:
		j.buf = d.buf(o.Buf)
		if len(j.buf) != size {
			d.log.Error("core wrote from a buffer of the wrong size", "buf", o.Buf, "have", len(j.buf), "want", size)
			d.deliver(node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.DiskDone, ID: o.ID, Op: o.Op,
				Block: o.Block, Count: o.Count, Err: repl.EIO}})
			return
		}
	}
	d.submit(j)
}

// aligned reports whether b may be handed to the disk as is.
func (d *loop) aligned(b []byte) bool {
	return !d.disk.Direct() || len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))%disk.Alignment == 0
}

// submit queues a job for the workers without ever blocking the loop: the
// core bounds what it has in flight, so the rare overflow waits in a
// goroutine of its own.
func (d *loop) submit(j diskJob) {
	select {
	case d.jobs <- j:
	default:
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			select {
			case d.jobs <- j:
			case <-d.quit:
			}
		}()
	}
}

// diskWorker performs disk jobs and reports them as DiskDone/MetaDone.
func (d *loop) diskWorker() {
	defer d.wg.Done()
	for {
		var j diskJob
		select {
		case j = <-d.jobs:
		case <-d.quit:
			return
		}
		if j.persist {
			err := d.disk.PersistMeta(j.rec, false)
			d.log.Debug("metadata written", "seq", j.rec.Seq, "gen", j.rec.Gen.String(), "flags", j.rec.Flags,
				"out_of_sync_blocks", j.rec.Bitmap.Count(), "err", err)
			if err != nil {
				d.log.Error("metadata write failed", "err", err)
			}
			d.deliver(node.Input{Kind: node.Replication, Repl: repl.Input{Kind: repl.MetaDone, ID: j.id, Err: disk.Classify(err)}})
			continue
		}
		in := repl.Input{Kind: repl.DiskDone, ID: j.id, Op: j.op, Block: j.block, Count: j.count}
		var err error
		switch j.op {
		case repl.Read:
			p := j.buf
			if !d.aligned(p) {
				p = disk.AlignedBuffer(len(j.buf))
			}
			err = d.disk.ReadAt(p, j.block)
			if &p[0] != &j.buf[0] {
				copy(j.buf, p)
			}
			if err == nil && j.digest {
				in.Digest = crc64.Checksum(j.buf, digestTable)
			}
		case repl.Write:
			p := j.buf
			if !d.aligned(p) {
				p = disk.AlignedBuffer(len(j.buf))
				copy(p, j.buf)
			}
			err = d.disk.WriteAt(p, j.block, false)
		case repl.Flush:
			err = d.disk.Flush()
		case repl.Trim:
			err = d.disk.Trim(j.block, j.count)
		}
		if err != nil {
			d.log.Error("disk I/O failed", "op", j.op, "block", j.block, "count", j.count, "err", err)
		}
		in.Err = disk.Classify(err)
		d.deliver(node.Input{Kind: node.Replication, Repl: in})
	}
}
