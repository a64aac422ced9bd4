package sim

import (
	"errors"
	"fmt"
	"time"
)

// Disk is a simulated block device in TigerBeetle's style: pristine data plus
// faults, applied by the device as it would apply them, with every random
// choice drawn from one seeded Rand.
//
// # Contents
//
// Blocks are DiskBlockSize bytes, but the simulator stores no bytes: a block
// holds a 64-bit token standing for its contents (0: never written, or
// zeros). Next to the token every stored copy of a block carries what a real
// stack keeps next to the data:
//
//   - the address it was written for (a T10-PI-style reference tag): a copy
//     that landed on another address reads back as ErrMisdirected;
//   - an integrity check (a guard tag, or the per-block checksum a daemon
//     keeps): a copy whose bits changed after it was written reads back as
//     ErrChecksum;
//   - whether the sector is a latent sector error: it reads back as ErrIO.
//
// and, for checkers only, the token the writer intended for this address (see
// Pristine). A successful rewrite (or Trim) of a block replaces the copy and
// with it every fault it carried, like a drive remapping a bad sector.
//
// # Volatile cache and crashes
//
// A write completes into the device's volatile write cache; Flush makes the
// cache durable. Reads see the cache. The medium ("durable" below) may also
// take cached data before any flush, as real drives destage in the
// background; the model is:
//
//   - A block overwritten while still cached (no flush in between) first has
//     its previous cached copy destaged to the medium with probability 1/2.
//   - On Crash, every block still cached independently reaches the medium
//     with probability 1/2 (the latest cached copy) or does not (the medium
//     keeps what it had). The cache is then empty.
//
// So after a crash a block holds its value as of the last flush or the value
// of any write to it since, and nothing else (barring a data fault, which
// travels with the copy it struck). For k writes w1..wk to one block since the
// last flush, the probabilities are wk: 1/2, w(k-1): 1/4, ..., w1: 1/2^k,
// flushed value: 1/2^k — every legal outcome is reachable, the latest the
// most likely. Blocks of one multi-block write are torn independently. The
// metadata area behaves the same at DiskSectorSize (512-byte) granularity: each
// cached sector survives a crash whole or not at all.
//
// # Faults
//
// DiskFaults holds per-operation probabilities; see there for each kind.
// Data faults — latent sector errors, corruption, lost and misdirected writes —
// destroy data silently, so they only strike where the cluster says a good
// copy exists elsewhere (AllowDataFaults, SetDataFaultGate) unless
// DiskFaults.Unrecoverable is set. A data fault is drawn the same way whether
// the gate is open or not (a closed gate only suppresses it, counted in
// DiskStats.Suppressed), so opening or closing the gate never shifts the
// random stream.
//
// # Use
//
// Operations are split into submit and complete: the caller draws the service
// time with Latency at submission, schedules the completion on its event
// queue, and calls Write, Read, Flush, ... at completion, when their effect
// is applied. Read and Write cost O(blocks) and do not allocate in steady
// state (an error from a per-block fault allocates a *BlockError); Flush and
// Crash cost O(cached blocks and sectors). Out-of-range addresses are caller
// bugs and panic. A Disk is not safe for concurrent use.
type Disk struct {
	r   *Rand
	f   DiskFaults
	lat DiskLatency

	blocks uint64
	media  []diskCopy   // per block: the copy on the medium
	slot   []uint32     // per block: 1 + index into cache, 0 = not cached
	cache  []diskCached // cached blocks in the order they were first dirtied

	metaBytes uint64
	meta      []byte   // the medium's meta sectors
	metaCache []byte   // cached sector images (valid where metaDirty)
	metaDirty []bool   // per sector
	metaList  []uint32 // dirty sectors in the order they were first dirtied

	failed bool
	allow  bool
	gate   func(block uint64) bool

	coinBits uint64 // reservoir of random bits for fair coins
	coinN    uint

	st DiskStats
}

// DiskBlockSize is the size of the block a token stands for.
const DiskBlockSize = 4096

// DiskSectorSize is the unit the metadata area is torn at on a crash.
const DiskSectorSize = 512

// Errors returned by a Disk. Per-block errors of a read come wrapped in a
// *BlockError; use errors.Is.
var (
	ErrIO          = errors.New("sim: disk I/O error")
	ErrNoSpace     = errors.New("sim: no space left on device")
	ErrChecksum    = errors.New("sim: block integrity check failed")
	ErrMisdirected = errors.New("sim: block address tag mismatch (misdirected write)")
	ErrFailed      = errors.New("sim: disk failed")
)

// BlockError is a read failure of one block: Err is ErrIO (latent sector
// error), ErrChecksum or ErrMisdirected.
type BlockError struct {
	Block uint64
	Err   error
}

func (e *BlockError) Error() string { return fmt.Sprintf("read block %d: %v", e.Block, e.Err) }

// Unwrap returns Err, so that errors.Is(err, ErrChecksum) works.
func (e *BlockError) Unwrap() error { return e.Err }

// DiskFaults are the fault rates of a disk; the zero value is a perfect disk.
// Probabilities are per operation unless said otherwise. Each failed or
// faulty operation is counted in DiskStats.
type DiskFaults struct {
	// Data faults (gated, see Disk).

	LatentError float64 // per block written: the new copy is a latent sector error; reads of it fail with ErrIO until the block is rewritten
	Corrupt     float64 // per block read: a random bit of the copy read flips after its checksum was computed; this and every later read of it fail with ErrChecksum (the flipped data in out) until the block is rewritten
	LostWrite   float64 // a write reports success but changes nothing (reads return the old data, no error: only Pristine knows)
	Misdirected float64 // a write reports success but its blocks land at another address (the whole extent, at a uniform other start, tagged for the intended addresses: ErrMisdirected when read there); the intended blocks keep their old data. Suppressed when the extent fits nowhere else

	// Reported faults (not gated: the caller sees them).

	ReadError  float64 // a read fails transiently with ErrIO (out zeroed); the data is unharmed
	WriteError float64 // a write fails with ErrIO; it is torn: each of its blocks independently landed (in the cache) or not, probability 1/2 each; the same for meta writes per sector
	FlushError float64 // a flush fails with ErrIO; every cached block and meta sector independently reached the medium or was lost (reverting to its durable copy, probability 1/2 each), and the cache is empty — as Linux after a failed fsync
	Stall      float64 // an operation takes StallFor longer (drawn by Latency)
	StallFor   time.Duration
	FullAt     uint64 // > 0: a write touching blocks >= FullAt fails with ErrNoSpace and changes nothing (a thin or file-backed device that is full)

	// Unrecoverable lets data faults strike whether or not the gate is open,
	// for tests of what happens when no good copy exists anywhere.
	Unrecoverable bool
}

// DiskOpLatency is the service-time distribution of one kind of operation:
// Min + Exp(Mean-Min), clamped to Max (as LinkParams), plus PerBlock for every
// block beyond the first. Mean <= Min gives a constant Min; Max <= 0 means no
// cap.
type DiskOpLatency struct {
	Min, Mean, Max time.Duration
	PerBlock       time.Duration
}

// DiskLatency holds the service-time distributions of a disk.
type DiskLatency struct {
	Read, Write, Flush, Trim DiskOpLatency
}

// DiskOptions configure a new Disk.
type DiskOptions struct {
	Blocks    uint64 // number of blocks, 1 .. 2^32-1
	MetaBytes uint64 // size of the metadata area in bytes (stored as real bytes)
	Latency   DiskLatency
	Faults    DiskFaults
}

// DiskOpKind names an operation for Latency.
type DiskOpKind uint8

const (
	DiskRead  DiskOpKind = iota // Read or ReadMeta
	DiskWrite                   // Write or WriteMeta
	DiskFlush                   // Flush; pass CachedBlocks() as blocks to scale with the dirty data
	DiskTrim                    // Trim
)

var diskOpNames = [...]string{"read", "write", "flush", "trim"}

func (k DiskOpKind) String() string {
	if int(k) < len(diskOpNames) {
		return diskOpNames[k]
	}
	return fmt.Sprintf("DiskOpKind(%d)", uint8(k))
}

// DiskStats counts what a disk did and every fault it injected. It is
// comparable, so two runs can be compared with ==.
type DiskStats struct {
	// Operations, counted when applied, failed ones included.
	Reads, Writes, Flushes, Trims, MetaReads, MetaWrites uint64
	// Volume of operations that did not fail (a lost or misdirected write
	// counts: it reported success).
	BlocksRead, BlocksWritten, BlocksTrimmed, MetaBytesRead, MetaBytesWritten uint64

	Crashes, Failures, Repairs uint64
	// Destaged counts cached copies written to the medium early because their
	// block was overwritten before a flush (a crash may then leave them).
	Destaged                           uint64
	CrashKeptBlocks, CrashLostBlocks   uint64 // cached blocks that survived / were lost at crashes
	CrashKeptSectors, CrashLostSectors uint64 // the same for meta sectors

	// Injected faults by kind.
	ReadErrors                        uint64 // transient read ErrIO (blocks and meta)
	WriteErrors                       uint64 // failed writes (blocks and meta)
	TornBlocks, TornSectors           uint64 // blocks / meta sectors of failed writes that landed anyway
	FlushErrors                       uint64
	FlushLostBlocks, FlushLostSectors uint64 // cached data lost by failed flushes
	LatentErrors                      uint64 // blocks made latent sector errors
	Corruptions                       uint64 // blocks corrupted
	LostWrites                        uint64 // writes lost
	Misdirected                       uint64 // writes misdirected
	Stalls                            uint64
	NoSpace                           uint64 // writes refused with ErrNoSpace
	FailedOps                         uint64 // operations refused with ErrFailed
	Suppressed                        uint64 // data faults drawn but not applied: the gate was closed

	// Faulty blocks met by reads, by the error they gave.
	LatentReads, ChecksumErrors, MisdirectedReads uint64
}

// diskCopy is one stored copy of a block (on the medium or in the cache).
type diskCopy struct {
	value  uint64 // the token stored
	want   uint64 // the token the writer meant for this address (Pristine)
	misdir uint64 // address written for XOR own address: non-zero = misdirected
	flip   uint8  // 0: intact; k > 0: bit k-1 of value flipped after the write
	latent bool   // latent sector error
}

// data returns what a read of c transfers, corruption included.
func (c *diskCopy) data() uint64 {
	if c.flip != 0 {
		return c.value ^ 1<<(c.flip-1)
	}
	return c.value
}

// fault returns the error a read of c gives, in order of precedence.
func (c *diskCopy) fault() error {
	switch {
	case c.latent:
		return ErrIO
	case c.flip != 0:
		return ErrChecksum
	case c.misdir != 0:
		return ErrMisdirected
	}
	return nil
}

type diskCached struct {
	block uint64
	c     diskCopy
}

// NewDisk returns a blank, working disk. It draws from r, which it keeps:
// pass a Fork of the run's root so that adding a disk perturbs no one else.
func NewDisk(opt DiskOptions, r *Rand) *Disk {
	if opt.Blocks == 0 || opt.Blocks >= 1<<32 {
		panic(fmt.Sprintf("sim: disk of %d blocks", opt.Blocks))
	}
	sectors := (opt.MetaBytes + DiskSectorSize - 1) / DiskSectorSize
	return &Disk{
		r:         r,
		f:         opt.Faults,
		lat:       opt.Latency,
		blocks:    opt.Blocks,
		media:     make([]diskCopy, opt.Blocks),
		slot:      make([]uint32, opt.Blocks),
		metaBytes: opt.MetaBytes,
		meta:      make([]byte, sectors*DiskSectorSize),
		metaCache: make([]byte, sectors*DiskSectorSize),
		metaDirty: make([]bool, sectors),
	}
}

// Blocks returns the number of blocks.
func (d *Disk) Blocks() uint64 { return d.blocks }

// MetaBytes returns the size of the metadata area.
func (d *Disk) MetaBytes() uint64 { return d.metaBytes }

// CachedBlocks returns how many blocks are in the volatile cache.
func (d *Disk) CachedBlocks() int { return len(d.cache) }

// CachedSectors returns how many meta sectors are in the volatile cache.
func (d *Disk) CachedSectors() int { return len(d.metaList) }

// Failed reports whether the device has failed (Fail) and not been replaced.
func (d *Disk) Failed() bool { return d.failed }

// Faults returns the current fault rates.
func (d *Disk) Faults() DiskFaults { return d.f }

// SetFaults changes the fault rates from now on (swarm schedules, the
// liveness phase). Faults already injected stay.
func (d *Disk) SetFaults(f DiskFaults) { d.f = f }

// AllowDataFaults opens (true) or closes (false) the data-fault gate: the
// cluster opens it while the other replica holds a good copy of this disk's
// data, and closes it when this disk is, or may become, the only good copy.
// It starts closed. DiskFaults.Unrecoverable overrides it.
func (d *Disk) AllowDataFaults(on bool) { d.allow = on }

// DataFaultsAllowed reports the gate set by AllowDataFaults.
func (d *Disk) DataFaultsAllowed() bool { return d.allow }

// SetDataFaultGate narrows an open gate to the blocks for which g returns
// true (say, blocks in sync on the peer); nil means every block. g is called
// only when a data fault has been drawn for a block, so it may be slowish.
func (d *Disk) SetDataFaultGate(g func(block uint64) bool) { d.gate = g }

// Stats returns the counters.
func (d *Disk) Stats() DiskStats { return d.st }

// allowed reports whether a drawn data fault may strike block b.
func (d *Disk) allowed(b uint64) bool {
	return d.f.Unrecoverable || (d.allow && (d.gate == nil || d.gate(b)))
}

func (d *Disk) allowedRange(b, n uint64) bool {
	if d.f.Unrecoverable {
		return true
	}
	for i := range n {
		if !d.allowed(b + i) {
			return false
		}
	}
	return true
}

// coin is a fair coin, one random bit at a time from a 64-bit reservoir.
func (d *Disk) coin() bool {
	if d.coinN == 0 {
		d.coinBits = d.r.Uint64()
		d.coinN = 64
	}
	d.coinN--
	c := d.coinBits&1 != 0
	d.coinBits >>= 1
	return c
}

func (d *Disk) checkRange(block, n uint64) {
	if block > d.blocks || n > d.blocks-block {
		panic(fmt.Sprintf("sim: disk access to blocks [%d,+%d) of %d", block, n, d.blocks))
	}
}

func (d *Disk) checkMeta(off, n uint64) {
	if off > d.metaBytes || n > d.metaBytes-off {
		panic(fmt.Sprintf("sim: disk meta access to bytes [%d,+%d) of %d", off, n, d.metaBytes))
	}
}

// Latency draws the service time of an operation on blocks blocks (for
// DiskFlush, pass CachedBlocks()), stall included. Call it at submission.
func (d *Disk) Latency(op DiskOpKind, blocks int) time.Duration {
	var l *DiskOpLatency
	switch op {
	case DiskRead:
		l = &d.lat.Read
	case DiskWrite:
		l = &d.lat.Write
	case DiskFlush:
		l = &d.lat.Flush
	case DiskTrim:
		l = &d.lat.Trim
	default:
		panic("sim: bad DiskOpKind")
	}
	t := l.Min + d.r.Exp(l.Mean-l.Min)
	if l.Max > 0 && t > l.Max {
		t = max(l.Max, l.Min)
	}
	if blocks > 1 {
		t += time.Duration(blocks-1) * l.PerBlock
	}
	if d.r.Chance(d.f.Stall) {
		t += d.f.StallFor
		d.st.Stalls++
	}
	return t
}

// cur returns the copy reads of block b see: cached, else on the medium.
func (d *Disk) cur(b uint64) *diskCopy {
	if s := d.slot[b]; s != 0 {
		return &d.cache[s-1].c
	}
	return &d.media[b]
}

// put stores c as block b's new cached copy.
func (d *Disk) put(b uint64, c diskCopy) {
	if s := d.slot[b]; s != 0 {
		e := &d.cache[s-1]
		if d.coin() {
			d.media[b] = e.c
			d.st.Destaged++
		}
		e.c = c
		return
	}
	d.cache = append(d.cache, diskCached{block: b, c: c})
	d.slot[b] = uint32(len(d.cache))
}

// Write applies a write of values[i] to block+i, into the volatile cache. On
// ErrIO some blocks may have landed (see DiskFaults.WriteError); on
// ErrNoSpace and ErrFailed nothing changed. A nil error may still hide a lost
// or misdirected write.
func (d *Disk) Write(block uint64, values []uint64) error {
	d.st.Writes++
	n := uint64(len(values))
	d.checkRange(block, n)
	if d.failed {
		d.st.FailedOps++
		return ErrFailed
	}
	if n == 0 {
		return nil
	}
	if d.f.FullAt > 0 && block+n > d.f.FullAt {
		d.st.NoSpace++
		return ErrNoSpace
	}
	if d.r.Chance(d.f.WriteError) {
		d.st.WriteErrors++
		for i, v := range values {
			if d.coin() {
				d.st.TornBlocks++
				d.put(block+uint64(i), diskCopy{value: v, want: v})
			}
		}
		return ErrIO
	}
	d.st.BlocksWritten += n
	if d.r.Chance(d.f.LostWrite) {
		if d.allowedRange(block, n) {
			d.st.LostWrites++
			d.retarget(block, values)
			return nil
		}
		d.st.Suppressed++
	}
	if d.r.Chance(d.f.Misdirected) {
		if starts := d.blocks - n + 1; starts >= 2 {
			t := d.r.uint64n(starts - 1)
			if t >= block {
				t++
			}
			if d.allowedRange(block, n) && d.allowedRange(t, n) {
				d.st.Misdirected++
				d.retarget(block, values)
				for i, v := range values {
					b := t + uint64(i)
					d.put(b, diskCopy{value: v, want: d.cur(b).want, misdir: b ^ (block + uint64(i))})
				}
				return nil
			}
		}
		d.st.Suppressed++
	}
	for i, v := range values {
		b := block + uint64(i)
		latent := false
		if d.r.Chance(d.f.LatentError) {
			if d.allowed(b) {
				latent = true
				d.st.LatentErrors++
			} else {
				d.st.Suppressed++
			}
		}
		d.put(b, diskCopy{value: v, want: v, latent: latent})
	}
	return nil
}

// retarget records a write to block+i that did not land: the stored data
// stays, only the writer's intention (Pristine) moves on.
func (d *Disk) retarget(block uint64, values []uint64) {
	for i, v := range values {
		b := block + uint64(i)
		c := *d.cur(b)
		c.want = v
		d.put(b, c)
	}
}

// Read reads blocks block.. into out (cache, else medium). A transient error
// (ErrIO, ErrFailed) zeroes out and is returned as is. Otherwise every block
// is read; a block whose copy is faulty is returned as the device would
// return it — 0 for a latent sector error, the flipped token for a checksum
// failure, the foreign token for a misdirected one — and the first such
// block's error is returned as a *BlockError. The caller decides what to do.
func (d *Disk) Read(block uint64, out []uint64) error {
	return d.ReadBlocks(block, out, nil)
}

// ReadBlocks is Read that also reports each block's error (nil, ErrIO,
// ErrChecksum, ErrMisdirected) in errs, if errs is not nil; it must then be
// as long as out.
func (d *Disk) ReadBlocks(block uint64, out []uint64, errs []error) error {
	d.st.Reads++
	n := uint64(len(out))
	d.checkRange(block, n)
	if errs != nil && len(errs) != len(out) {
		panic("sim: Disk.ReadBlocks: len(errs) != len(out)")
	}
	var opErr error
	if d.failed {
		d.st.FailedOps++
		opErr = ErrFailed
	} else if d.r.Chance(d.f.ReadError) {
		d.st.ReadErrors++
		opErr = ErrIO
	}
	if opErr != nil {
		clear(out)
		for i := range errs {
			errs[i] = opErr
		}
		return opErr
	}
	d.st.BlocksRead += n
	var first error
	for i := range out {
		b := block + uint64(i)
		c := d.cur(b)
		if d.r.Chance(d.f.Corrupt) && c.flip == 0 {
			bit := 1 + uint8(d.r.Uint64()>>58) // drawn before the gate is asked
			if d.allowed(b) {
				c.flip = bit
				d.st.Corruptions++
			} else {
				d.st.Suppressed++
			}
		}
		err := c.fault()
		switch err {
		case nil:
			out[i] = c.value
		case ErrIO:
			out[i] = 0
			d.st.LatentReads++
		case ErrChecksum:
			out[i] = c.data()
			d.st.ChecksumErrors++
		case ErrMisdirected:
			out[i] = c.value
			d.st.MisdirectedReads++
		}
		if errs != nil {
			errs[i] = err
		}
		if err != nil && first == nil {
			first = &BlockError{Block: b, Err: err}
		}
	}
	return first
}

// Trim discards blocks block..block+n-1: they read back as 0, with no fault.
// Like a write it goes through the cache (a crash may undo it). It fails only
// on a failed disk.
func (d *Disk) Trim(block, n uint64) error {
	d.st.Trims++
	d.checkRange(block, n)
	if d.failed {
		d.st.FailedOps++
		return ErrFailed
	}
	d.st.BlocksTrimmed += n
	for i := range n {
		d.put(block+i, diskCopy{})
	}
	return nil
}

// Flush makes the volatile cache (blocks and meta) durable. On ErrIO the
// cache is gone and each of its blocks and sectors may or may not have
// reached the medium (see DiskFaults.FlushError).
func (d *Disk) Flush() error {
	d.st.Flushes++
	if d.failed {
		d.st.FailedOps++
		return ErrFailed
	}
	if d.r.Chance(d.f.FlushError) {
		d.st.FlushErrors++
		lb, ls := d.drop()
		d.st.FlushLostBlocks += lb
		d.st.FlushLostSectors += ls
		return ErrIO
	}
	for i := range d.cache {
		e := &d.cache[i]
		d.media[e.block] = e.c
		d.slot[e.block] = 0
	}
	d.cache = d.cache[:0]
	for _, s := range d.metaList {
		o := uint64(s) * DiskSectorSize
		copy(d.meta[o:o+DiskSectorSize], d.metaCache[o:o+DiskSectorSize])
		d.metaDirty[s] = false
	}
	d.metaList = d.metaList[:0]
	return nil
}

// drop empties the cache, each block and sector reaching the medium or not
// by a fair coin, in the order they were first dirtied. It returns how many
// blocks and sectors were lost.
func (d *Disk) drop() (lostBlocks, lostSectors uint64) {
	for i := range d.cache {
		e := &d.cache[i]
		if d.coin() {
			d.media[e.block] = e.c
		} else {
			lostBlocks++
		}
		d.slot[e.block] = 0
	}
	d.cache = d.cache[:0]
	for _, s := range d.metaList {
		if d.coin() {
			o := uint64(s) * DiskSectorSize
			copy(d.meta[o:o+DiskSectorSize], d.metaCache[o:o+DiskSectorSize])
		} else {
			lostSectors++
		}
		d.metaDirty[s] = false
	}
	d.metaList = d.metaList[:0]
	return lostBlocks, lostSectors
}

// Crash is a power loss: each cached block and meta sector independently
// reaches the medium or is lost, and the cache is empty (see Disk). The
// disk's failed state and faults stay.
func (d *Disk) Crash() {
	d.st.Crashes++
	nb, ns := uint64(len(d.cache)), uint64(len(d.metaList))
	lb, ls := d.drop()
	d.st.CrashLostBlocks += lb
	d.st.CrashKeptBlocks += nb - lb
	d.st.CrashLostSectors += ls
	d.st.CrashKeptSectors += ns - ls
}

// Fail kills the device: every later operation returns ErrFailed until
// Repair. Checker accessors (Pristine, Snapshot, ...) still answer.
func (d *Disk) Fail() {
	d.st.Failures++
	d.failed = true
}

// Repair replaces the device with a blank, working one: every block 0 with
// no fault, meta all zero, cache empty. Fault rates, the gate and the
// counters stay.
func (d *Disk) Repair() {
	d.st.Repairs++
	d.failed = false
	clear(d.media)
	for i := range d.cache {
		d.slot[d.cache[i].block] = 0
	}
	d.cache = d.cache[:0]
	clear(d.meta)
	for _, s := range d.metaList {
		d.metaDirty[s] = false
	}
	d.metaList = d.metaList[:0]
}

// WriteMeta writes data at byte offset off of the metadata area, into the
// volatile cache (torn per 512-byte sector by a crash or a failed flush). On
// ErrIO each touched sector independently took its part of the write or not.
// Data faults do not apply to metadata.
func (d *Disk) WriteMeta(off uint64, data []byte) error {
	d.st.MetaWrites++
	d.checkMeta(off, uint64(len(data)))
	if d.failed {
		d.st.FailedOps++
		return ErrFailed
	}
	torn := d.r.Chance(d.f.WriteError)
	if torn {
		d.st.WriteErrors++
	} else {
		d.st.MetaBytesWritten += uint64(len(data))
	}
	for len(data) > 0 {
		s := off / DiskSectorSize
		in := off % DiskSectorSize
		k := min(uint64(len(data)), DiskSectorSize-in)
		if !torn || d.coin() {
			if torn {
				d.st.TornSectors++
			}
			d.metaPut(s, in, data[:k])
		}
		data = data[k:]
		off += k
	}
	if torn {
		return ErrIO
	}
	return nil
}

// metaPut writes p at offset in of meta sector s, in the cache.
func (d *Disk) metaPut(s, in uint64, p []byte) {
	o := s * DiskSectorSize
	sector := d.metaCache[o : o+DiskSectorSize]
	if !d.metaDirty[s] {
		copy(sector, d.meta[o:o+DiskSectorSize])
		d.metaDirty[s] = true
		d.metaList = append(d.metaList, uint32(s))
	} else if d.coin() {
		copy(d.meta[o:o+DiskSectorSize], sector)
		d.st.Destaged++
	}
	copy(sector[in:], p)
}

// ReadMeta reads len(out) bytes at byte offset off of the metadata area
// (cache, else medium). On ErrIO or ErrFailed out is zeroed.
func (d *Disk) ReadMeta(off uint64, out []byte) error {
	d.st.MetaReads++
	d.checkMeta(off, uint64(len(out)))
	var opErr error
	if d.failed {
		d.st.FailedOps++
		opErr = ErrFailed
	} else if d.r.Chance(d.f.ReadError) {
		d.st.ReadErrors++
		opErr = ErrIO
	}
	if opErr != nil {
		clear(out)
		return opErr
	}
	d.st.MetaBytesRead += uint64(len(out))
	for len(out) > 0 {
		s := off / DiskSectorSize
		k := min(uint64(len(out)), DiskSectorSize-off%DiskSectorSize)
		src := d.meta
		if d.metaDirty[s] {
			src = d.metaCache
		}
		copy(out[:k], src[off:off+k])
		out = out[k:]
		off += k
	}
	return nil
}

// DurableMeta copies what the medium holds at off into out, ignoring the
// cache: what a crash that lost the whole cache would leave. For checkers;
// no faults, not counted.
func (d *Disk) DurableMeta(off uint64, out []byte) {
	d.checkMeta(off, uint64(len(out)))
	copy(out, d.meta[off:])
}

// Pristine returns the token the writer last meant block to hold, among the
// writes that reached the block's current copy (cached or durable): what it
// would read back had no data fault (lost or misdirected write, latent error,
// corruption) struck. Torn writes, failed flushes and crashes do change it,
// exactly as they change the data. For checkers; not counted.
func (d *Disk) Pristine(block uint64) uint64 {
	d.checkRange(block, 1)
	return d.cur(block).want
}

// Durable is Pristine for the copy on the medium, ignoring the cache: what
// the block would hold after a crash that lost the whole cache. It is the
// value of the last flush or, after destaging, of a later write.
func (d *Disk) Durable(block uint64) uint64 {
	d.checkRange(block, 1)
	return d.media[block].want
}

// Contents returns what block holds now (cached, else durable), as a read
// would transfer it — corruption and misdirected data included, latent
// errors not (see Fault) — without drawing any fault. For checkers.
func (d *Disk) Contents(block uint64) uint64 {
	d.checkRange(block, 1)
	return d.cur(block).data()
}

// Fault returns the error a read of block would give because of a fault
// already injected (ErrIO for a latent sector error, ErrChecksum,
// ErrMisdirected), or nil. For checkers; draws nothing.
func (d *Disk) Fault(block uint64) error {
	d.checkRange(block, 1)
	return d.cur(block).fault()
}

// Snapshot appends Contents of every block to dst[:0] and returns it: for
// "disks byte-identical" checks (together with FaultyBlocks).
func (d *Disk) Snapshot(dst []uint64) []uint64 {
	dst = dst[:0]
	for b := range d.blocks {
		dst = append(dst, d.cur(b).data())
	}
	return dst
}

// FaultyBlocks appends to dst[:0] the blocks for which Fault is not nil, in
// address order.
func (d *Disk) FaultyBlocks(dst []uint64) []uint64 {
	dst = dst[:0]
	for b := range d.blocks {
		if d.cur(b).fault() != nil {
			dst = append(dst, b)
		}
	}
	return dst
}
