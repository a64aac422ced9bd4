package disk

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"tandem/internal/meta"
)

// BlockSize is the unit of data I/O: one bit of the out-of-sync bitmap.
const BlockSize = meta.BlockSize

// DefaultALSlots is the activity-log size used when Options.ALSlots is 0:
// the replication core's default al-extents.
const DefaultALSlots = 64

var (
	// ErrLocked: another process (a running daemon, or tandem create-md)
	// holds the disk, or the kernel reports the block device in use (it is
	// mounted or claimed by another exclusive opener).
	ErrLocked = errors.New("disk: in use by another process")
	// ErrRange: a request outside the data area, or not made of whole
	// blocks; a caller's bug, classified as repl.EIO.
	ErrRange = errors.New("disk: request outside the data area")
	// ErrAlignment: a buffer not aligned for O_DIRECT (take buffers from
	// GetBuf or AlignedBuffer); a caller's bug, classified as repl.EIO.
	ErrAlignment = errors.New("disk: buffer not 4096-byte aligned for direct I/O")
)

// Options say how to open a disk.
type Options struct {
	// MetaPath is the external metadata file or device; "" keeps the
	// metadata internal, after the data area at the end of the device.
	MetaPath string
	// ALSlots is the number of activity-log slots the metadata was created
	// with (1 to meta.MaxALSlots); 0 means DefaultALSlots.
	ALSlots int
	// Blocks is the data area in 4 KiB blocks, as given to CreateMD; 0
	// means all the device holds (less the internal metadata). With
	// internal metadata a smaller data area moves the metadata with it, so
	// Open must be told the same value CreateMD was.
	Blocks uint64
	// Direct opens with O_DIRECT, bypassing the page cache, so that what a
	// completed write reports is on the device rather than in this host's
	// memory. A filesystem that refuses O_DIRECT (ramfs, some FUSE) gets
	// buffered I/O instead, with the reason logged; durability then rests
	// on Flush and FUA as always.
	Direct bool
	// ReadOnly opens for reading only, with a shared lock: writes, trims
	// and PersistMeta fail with EROFS.
	ReadOnly bool
	// Logger receives the fallbacks (O_DIRECT, FUA, trim) and what
	// LoadMeta found; nil means slog.Default().
	Logger *slog.Logger
}

// Disk is an open backing device (or file) and its metadata area. ReadAt,
// WriteAt, Flush and Trim may be called from any number of goroutines at
// once; LoadMeta and PersistMeta serialise among themselves.
type Disk struct {
	data, meta  *file // meta == data for internal metadata
	layout      meta.Layout
	readOnly    bool
	log         *slog.Logger
	noDSync     atomic.Bool // pwritev2(RWF_DSYNC) refused: FUA is write + fdatasync
	trimModeBad [2]atomic.Bool

	metaMu  sync.Mutex
	prev    *meta.Record // last durable or decoded record: EncodeDelta's prev; nil forces a full persist
	durable uint64       // Seq of the last durable or decoded header
	known   bool         // durable is set
	report  meta.Report
	scratch []byte // aligned copy of a metadata write, for O_DIRECT
}

// file is one opened backing file or block device.
type file struct {
	path   string
	f      *os.File
	raw    syscall.RawConn
	size   uint64 // bytes
	device bool   // a block device (else a regular file)
	direct bool   // O_DIRECT in effect
}

// Open opens the backing device or regular file at path (and the external
// metadata at opts.MetaPath) and computes the metadata layout; it does not
// read the metadata (LoadMeta does). It takes an exclusive flock on each
// (shared when ReadOnly), and opens block devices with O_EXCL, so that two
// daemons, or a daemon and a mount, cannot use the same disk: the error then
// wraps ErrLocked. The size comes from the file size or BLKGETSIZE64.
func Open(path string, opts Options) (*Disk, error) {
	if opts.ALSlots == 0 {
		opts.ALSlots = DefaultALSlots
	}
	if opts.ALSlots < 1 || opts.ALSlots > meta.MaxALSlots {
		return nil, fmt.Errorf("open disk %s: %d activity-log slots, want 1..%d", path, opts.ALSlots, meta.MaxALSlots)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	d := &Disk{readOnly: opts.ReadOnly, log: log}
	var err error
	if d.data, err = openFile(path, opts, log); err != nil {
		return nil, err
	}
	d.meta = d.data
	if opts.MetaPath != "" {
		if d.meta, err = openFile(opts.MetaPath, opts, log); err != nil {
			d.data.f.Close()
			return nil, err
		}
		if sameFile(d.data.f, d.meta.f) {
			d.Close()
			return nil, fmt.Errorf("open disk %s: the metadata path %s is the data device itself; leave it empty for internal metadata",
				path, opts.MetaPath)
		}
	}
	if d.layout, err = layoutFor(d.data.size, d.meta, opts); err != nil {
		d.Close()
		return nil, fmt.Errorf("open disk %s: %w", path, err)
	}
	return d, nil
}

func sameFile(a, b *os.File) bool {
	sa, err1 := a.Stat()
	sb, err2 := b.Stat()
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// layoutFor computes the layout for a data device of dataBytes, honouring
// opts.Blocks.
func layoutFor(dataBytes uint64, m *file, opts Options) (meta.Layout, error) {
	internal := opts.MetaPath == ""
	var metaBytes uint64
	if !internal {
		metaBytes = m.size
	}
	if opts.Blocks == 0 {
		return meta.NewLayout(dataBytes, internal, metaBytes, opts.ALSlots)
	}
	if opts.Blocks > dataBytes/BlockSize {
		return meta.Layout{}, fmt.Errorf("a data area of %d blocks does not fit in %d bytes", opts.Blocks, dataBytes)
	}
	if !internal {
		return meta.NewLayout(opts.Blocks*BlockSize, false, metaBytes, opts.ALSlots)
	}
	// The layout of the smallest device whose data area is opts.Blocks:
	// DataBlocks grows by 0 or 1 per block of device, so it takes every
	// value, and the estimate below (metadata sized for opts.Blocks) is at
	// most a few blocks short.
	l, err := meta.NewLayout(1<<30, true, 0, opts.ALSlots) // for BitmapOffset: AL size only
	if err != nil {
		return meta.Layout{}, err
	}
	pages := (opts.Blocks + meta.BitsPerPage - 1) / meta.BitsPerPage
	total := opts.Blocks + l.BitmapOffset()/BlockSize + pages
	for {
		if total*BlockSize > dataBytes {
			return meta.Layout{}, fmt.Errorf("a data area of %d blocks and its internal metadata do not fit in %d bytes", opts.Blocks, dataBytes)
		}
		l, err := meta.NewLayout(total*BlockSize, true, 0, opts.ALSlots)
		if err == nil && l.DataBlocks == opts.Blocks {
			return l, nil
		}
		if err == nil && l.DataBlocks > opts.Blocks {
			return meta.Layout{}, fmt.Errorf("internal error: no device size gives a data area of %d blocks", opts.Blocks)
		}
		total++
	}
}

// openFile opens, locks and sizes one backing file or block device.
func openFile(path string, opts Options, log *slog.Logger) (*file, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open disk: %w", err)
	}
	mode := st.Mode()
	device := mode&fs.ModeDevice != 0 && mode&fs.ModeCharDevice == 0
	if !device && !mode.IsRegular() {
		return nil, fmt.Errorf("open disk %s: %s is neither a block device nor a regular file", path, mode.Type())
	}
	flags := os.O_RDWR
	if opts.ReadOnly {
		flags = os.O_RDONLY
	} else if device {
		// O_EXCL without O_CREAT claims a block device: it fails with EBUSY
		// while the device is mounted or held by another O_EXCL opener.
		flags |= unix.O_EXCL
	}
	fl := &file{path: path, device: device}
	if opts.Direct {
		fl.f, err = os.OpenFile(path, flags|unix.O_DIRECT, 0)
		if errors.Is(err, unix.EINVAL) {
			log.Warn("O_DIRECT refused by the filesystem; using buffered I/O (durability still comes from fdatasync)",
				"path", path, "err", err)
		} else if err == nil {
			fl.direct = true
		}
	}
	if fl.f == nil && (err == nil || errors.Is(err, unix.EINVAL)) {
		fl.f, err = os.OpenFile(path, flags, 0)
	}
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("open disk %s: %w: the block device is mounted or held by another program (%v)", path, ErrLocked, err)
		}
		return nil, fmt.Errorf("open disk: %w", err)
	}
	if fl.raw, err = fl.f.SyscallConn(); err != nil {
		fl.f.Close()
		return nil, fmt.Errorf("open disk %s: %w", path, err)
	}
	if err := fl.setup(opts.ReadOnly, log); err != nil {
		fl.f.Close()
		return nil, err
	}
	return fl, nil
}

// setup locks, sizes and (for O_DIRECT on a file) probes an opened file.
func (fl *file) setup(readOnly bool, log *slog.Logger) error {
	how := unix.LOCK_EX | unix.LOCK_NB
	if readOnly {
		how = unix.LOCK_SH | unix.LOCK_NB
	}
	if err := fl.control(func(fd int) error { return unix.Flock(fd, how) }); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("open disk %s: %w: another process holds its lock (is a tandem daemon using it?)", fl.path, ErrLocked)
		}
		return fmt.Errorf("open disk %s: lock: %w", fl.path, err)
	}
	if fl.device {
		var size uint64
		var sector int
		err := fl.control(func(fd int) error {
			var err error
			if size, err = unix.IoctlGetUint64(fd, unix.BLKGETSIZE64); err != nil {
				return err
			}
			sector, err = unix.IoctlGetInt(fd, unix.BLKSSZGET)
			return err
		})
		if err != nil {
			return fmt.Errorf("open disk %s: size of the block device: %w", fl.path, err)
		}
		if sector > BlockSize || BlockSize%sector != 0 {
			return fmt.Errorf("open disk %s: logical sector size %d does not divide the %d-byte block", fl.path, sector, BlockSize)
		}
		fl.size = size
		return nil
	}
	st, err := fl.f.Stat()
	if err != nil {
		return fmt.Errorf("open disk %s: %w", fl.path, err)
	}
	fl.size = uint64(st.Size())
	if fl.direct && fl.size >= BlockSize {
		// Some filesystems (FUSE, network ones) accept O_DIRECT at open and
		// refuse it at the first I/O; find out now rather than mid-write.
		if _, err := fl.f.ReadAt(AlignedBuffer(BlockSize), 0); errors.Is(err, unix.EINVAL) {
			log.Warn("O_DIRECT I/O refused by the filesystem; using buffered I/O (durability still comes from fdatasync)",
				"path", fl.path, "err", err)
			return fl.reopenBuffered(readOnly)
		}
	}
	return nil
}

// reopenBuffered drops O_DIRECT on an open file (F_SETFL keeps the lock,
// which belongs to the open file description).
func (fl *file) reopenBuffered(readOnly bool) error {
	err := fl.control(func(fd int) error {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			return err
		}
		_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags&^unix.O_DIRECT)
		return err
	})
	if err != nil {
		return fmt.Errorf("open disk %s: clearing O_DIRECT: %w", fl.path, err)
	}
	fl.direct = false
	return nil
}

// control runs fn on the file descriptor, which stays valid (not closed by a
// concurrent Close) for the duration.
func (fl *file) control(fn func(fd int) error) error {
	var ferr error
	if err := fl.raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// Close closes the device and the metadata device, releasing their locks.
// Later calls fail with errors Classify maps to repl.DeviceFailed.
func (d *Disk) Close() error {
	err := d.data.f.Close()
	if d.meta != d.data {
		err = errors.Join(err, d.meta.f.Close())
	}
	return err
}

// Blocks is the size of the data area in 4 KiB blocks.
func (d *Disk) Blocks() uint64 { return d.layout.DataBlocks }

// Layout is where the metadata lives (for status and dump-md).
func (d *Disk) Layout() meta.Layout { return d.layout }

// Direct reports whether data I/O bypasses the page cache (O_DIRECT).
func (d *Disk) Direct() bool { return d.data.direct }

// Path is the backing device's path, as given to Open.
func (d *Disk) Path() string { return d.data.path }

// check validates a data request of n bytes at block.
func (d *Disk) check(op string, p []byte, block uint64) error {
	if len(p) == 0 || len(p)%BlockSize != 0 {
		return fmt.Errorf("%s %s block %d: %w: %d bytes is not a whole number of %d-byte blocks",
			op, d.data.path, block, ErrRange, len(p), BlockSize)
	}
	if err := d.checkRange(op, block, uint64(len(p)/BlockSize)); err != nil {
		return err
	}
	if d.data.direct && !aligned(p) {
		return fmt.Errorf("%s %s block %d: %w", op, d.data.path, block, ErrAlignment)
	}
	return nil
}

func (d *Disk) checkRange(op string, block, count uint64) error {
	if count == 0 || block >= d.layout.DataBlocks || count > d.layout.DataBlocks-block {
		return fmt.Errorf("%s %s: %w: blocks %d+%d, the data area has %d",
			op, d.data.path, ErrRange, block, count, d.layout.DataBlocks)
	}
	return nil
}

// ioErr adds what was being done to err, keeping the errno for Classify.
func ioErr(op, path string, block uint64, n int, err error) error {
	return fmt.Errorf("%s %s blocks %d+%d: %w", op, path, block, n/BlockSize, unwrapPath(err))
}

// unwrapPath drops os's *PathError wrapping (our messages name the path and
// the offset), keeping the errno for Classify.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ReadAt reads len(p) bytes (whole blocks) from the data area at block.
// With O_DIRECT p must be aligned: use GetBuf.
func (d *Disk) ReadAt(p []byte, block uint64) error {
	if err := d.check("read", p, block); err != nil {
		return err
	}
	n, err := d.data.f.ReadAt(p, int64(block*BlockSize))
	if err == io.EOF && n < len(p) {
		// The data area was inside the file at Open: someone shrank it.
		err = fmt.Errorf("short read of %d bytes: the backing file was truncated: %w", n, io.ErrUnexpectedEOF)
	}
	if err != nil && !(err == io.EOF && n == len(p)) {
		return ioErr("read", d.data.path, block, len(p), err)
	}
	return nil
}

// WriteAt writes p (whole blocks) to the data area at block. With fua the
// write is on stable storage when WriteAt returns (pwritev2 with RWF_DSYNC,
// or write then fdatasync where the kernel refuses it); without, only after
// the next Flush. With O_DIRECT p must be aligned: use GetBuf.
func (d *Disk) WriteAt(p []byte, block uint64, fua bool) error {
	if err := d.check("write", p, block); err != nil {
		return err
	}
	if d.readOnly {
		return ioErr("write", d.data.path, block, len(p), unix.EROFS)
	}
	off := int64(block * BlockSize)
	if fua && !d.noDSync.Load() {
		err := d.data.pwriteDSync(p, off)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS):
			if !d.noDSync.Swap(true) {
				d.log.Info("pwritev2(RWF_DSYNC) not supported; FUA writes use write + fdatasync", "path", d.data.path, "err", err)
			}
		default:
			return ioErr("write", d.data.path, block, len(p), err)
		}
	}
	if _, err := d.data.f.WriteAt(p, off); err != nil {
		return ioErr("write", d.data.path, block, len(p), err)
	}
	if fua {
		if err := d.data.fdatasync(); err != nil {
			return ioErr("write (fdatasync for FUA)", d.data.path, block, len(p), err)
		}
	}
	return nil
}

// pwriteDSync writes all of p at off with RWF_DSYNC, resuming after short
// writes and EINTR.
func (fl *file) pwriteDSync(p []byte, off int64) error {
	for len(p) > 0 {
		var n int
		err := fl.control(func(fd int) error {
			var err error
			n, err = unix.Pwritev2(fd, [][]byte{p}, off, unix.RWF_DSYNC)
			return err
		})
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

func (fl *file) fdatasync() error {
	for {
		err := fl.control(unix.Fdatasync)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// Flush makes every completed write and trim of the data area durable
// (fdatasync, which also flushes the device's volatile cache). An error is
// final: the kernel may have dropped the unwritten pages, so a retry that
// succeeds proves nothing (never turn it into an acknowledgement).
func (d *Disk) Flush() error {
	if err := d.data.fdatasync(); err != nil {
		return fmt.Errorf("flush %s: %w", d.data.path, err)
	}
	return nil
}

// Trim discards count blocks at block: they read back as zeroes (both
// replicas must read the same bytes after a trim, which a plain BLKDISCARD
// does not promise). A file gets a hole (fallocate PUNCH_HOLE|KEEP_SIZE); a
// block device gets fallocate PUNCH_HOLE too, which the kernel turns into a
// discard or write-zeroes that guarantees zeroes; where neither is
// supported, ZERO_RANGE, and last, zeroes are written. Like a write, a trim
// is durable after the next Flush.
func (d *Disk) Trim(block uint64, count uint32) error {
	if err := d.checkRange("trim", block, uint64(count)); err != nil {
		return err
	}
	n := int(count) * BlockSize
	if d.readOnly {
		return ioErr("trim", d.data.path, block, n, unix.EROFS)
	}
	off, length := int64(block*BlockSize), int64(count)*BlockSize
	modes := [2]uint32{unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_ZERO_RANGE}
	if !d.data.device {
		modes[1] |= unix.FALLOC_FL_KEEP_SIZE
	}
	for i, mode := range modes {
		if d.trimModeBad[i].Load() {
			continue
		}
		err := d.data.control(func(fd int) error { return unix.Fallocate(fd, mode, off, length) })
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
			return ioErr("trim", d.data.path, block, n, err)
		}
		if !d.trimModeBad[i].Swap(true) {
			d.log.Info("fallocate mode not supported for trim; trying the next way", "path", d.data.path, "mode", mode, "err", err)
		}
	}
	return d.writeZeroes(block, uint64(count))
}

var zeroes = sync.OnceValue(func() []byte { return AlignedBuffer(maxPoolBlocks * BlockSize) })

func (d *Disk) writeZeroes(block, count uint64) error {
	z := zeroes()
	for count > 0 {
		k := min(count, uint64(len(z)/BlockSize))
		if _, err := d.data.f.WriteAt(z[:k*BlockSize], int64(block*BlockSize)); err != nil {
			return ioErr("trim (writing zeroes)", d.data.path, block, int(k)*BlockSize, err)
		}
		block, count = block+k, count-k
	}
	return nil
}
