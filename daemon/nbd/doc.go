// Package nbd offers the replicated device as a block device, the way DRBD
// offers /dev/drbd0: the Linux kernel's NBD client turns a socket into
// /dev/nbdN, and this package serves the other end of that socket from a
// Backend that the daemon implements on top of replication.
//
// Two ways in share one Server, its limits and its Counters:
//
//   - The kernel: KernelSocketPair, then AttachKernel with one end (generic
//     netlink "nbd", or the old ioctls), then Server.ServeTransmission on
//     the other. There is no handshake; size and flags go to the kernel
//     directly.
//   - Userspace clients (qemu-img, qemu-nbd, nbd-client, nbdkit's tools):
//     Server.Serve on a unix socket, with the fixed-newstyle handshake
//     (NBD_OPT_EXPORT_NAME, GO, INFO, LIST, ABORT; everything else is
//     answered NBD_REP_ERR_UNSUP, structured replies included).
//
// # Transmission
//
// Commands READ, WRITE, FLUSH, TRIM, WRITE_ZEROES (with NO_HOLE) and DISC,
// with FUA, as simple replies. Each request is checked before the backend
// sees it: flags the command does not take or the export did not advertise,
// and unknown commands, fail with EINVAL; writes to a read-only export with
// EPERM; offsets and lengths not aligned to MinBlockSize with EINVAL; READ
// and WRITE longer than MaxPayload with EINVAL, without allocating (a
// refused WRITE's payload is read into io.Discard); requests past the end
// with ENOSPC (writes) or EINVAL (reads, trims), as the spec asks.
//
// Requests are served concurrently, one goroutine each, and replies go out
// as they complete, in any order. A connection takes at most MaxInFlight
// requests and MaxInFlightBytes of data buffers at once; beyond that it
// stops reading, and the socket's backpressure holds the client. Each READ
// or WRITE has exactly one buffer, pooled by size class: a WRITE's payload
// is read straight into it and handed to the backend, a READ's is filled by
// the backend and written after the reply header in one writev.
//
// A connection ends on NBD_CMD_DISC, on the client's hang-up, on a request
// with a bad magic (the stream cannot be trusted: counted as Malformed) or
// on Shutdown; in every case the requests in flight are answered (if the
// socket still takes replies) before it closes.
//
// FLUSH calls Backend.Flush, which must cover every write completed before
// it. FUA on TRIM is a Trim followed by a Flush. CAN_MULTI_CONN is offered
// only when Server.MultiConn says the backend's Flush covers all
// connections.
package nbd
