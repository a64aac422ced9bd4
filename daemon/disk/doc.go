// Package disk is the daemon's backing store: the local block device (or
// regular file) that holds this node's copy of the replicated data, and its
// replication metadata (internal/meta), stored internally at the end of the
// device or externally on a separate file or device. It performs for real
// what the replication core (internal/repl) asks for:
//
//	core output                 call                          core input
//	DiskIO Read   (Block,Count) ReadAt(GetBuf(Count), Block)  DiskDone{Err: Classify(err)}
//	DiskIO Write                WriteAt(buf, Block, false)    DiskDone
//	DiskIO Flush                Flush()                       DiskDone
//	DiskIO Trim                 Trim(Block, Count)            DiskDone
//	Persist       (Record)      PersistMeta(Record, false)    MetaDone{Err: Classify(err)}
//
// and at attach, LoadMeta gives the record for repl.New. Every block buffer
// comes from GetBuf and goes back with PutBuf, so that a block received from
// the peer is written to the disk from the buffer it arrived in.
//
// # Durability
//
// A completed WriteAt or Trim is durable only after the next Flush (or, for
// WriteAt with fua, at once). Flush is fdatasync, which also flushes the
// device's volatile write cache. A Flush error is final: the kernel may have
// dropped the pages it could not write, and a later Flush that succeeds says
// nothing about them. PersistMeta is durable when it returns nil: it issues
// the metadata writes in the order internal/meta requires (everything but
// the header, fdatasync, the header, fdatasync).
//
// With Options.Direct the data bypasses the page cache (O_DIRECT): buffers
// must then be 4096-byte aligned, which GetBuf's and AlignedBuffer's are.
//
// # Concurrency
//
// ReadAt, WriteAt, Flush and Trim may run from many goroutines at once
// (positioned I/O on one descriptor); issue independent DiskIO outputs
// concurrently, as the core allows, for throughput. LoadMeta and PersistMeta
// serialise among themselves; the core has at most one Persist in flight.
//
// # Exclusion
//
// Open takes an exclusive flock on the device and the metadata device, and
// opens block devices with O_EXCL (which fails while the device is mounted),
// so that two daemons, or a daemon and create-md, never share a disk.
//
// Nothing here decides anything: errors are returned, classified by
// Classify into the core's repl.IOError kinds, and never swallowed.
package disk
