package nbd

import (
	"errors"
	"syscall"
)

// Backend is the replicated device as the NBD server sees it. The daemon
// implements it on top of the replication core.
//
// The server calls it from many goroutines at once, one per request in
// flight. Requests that overlap and are in flight together arrive in no
// particular order; ordering them is the client's business, as it is for a
// disk. Calls may block for as long as the write takes to be acknowledged
// (protocol A, B or C); the reply is sent when the call returns. Offsets and
// lengths are always multiples of MinBlockSize (512), never empty, and
// inside Size() (trims and write-zeroes may span up to 4 GiB);
// ReadAt and WriteAt get a slice of exactly the requested length, which the
// backend must not keep after returning.
//
// Errors become NBD error values through their syscall.Errno (errors.As):
// EPERM (read-only), EIO, ENOSPC (also EDQUOT, EFBIG), EINVAL, ESHUTDOWN
// (the daemon is stopping), ENOMEM, EOVERFLOW, ENOTSUP; any other error is
// sent as EIO. The sentinel errors below are those Errnos.
type Backend interface {
	// Size is the device size in bytes. Only whole 512-byte blocks are
	// exported.
	Size() uint64
	// ReadOnly reports whether writes are refused now (a Secondary's
	// device). It is consulted for every write, trim and write-zeroes.
	ReadOnly() bool
	// ReadAt fills p with the device's bytes at off.
	ReadAt(p []byte, off uint64) error
	// WriteAt writes p at off; with fua it returns only once the data is on
	// stable storage (as a flush would make it).
	WriteAt(p []byte, off uint64, fua bool) error
	// Flush returns once every write that completed before it was called is
	// on stable storage.
	Flush() error
	// Trim discards a range; its contents are unspecified until written.
	Trim(off, length uint64) error
	// WriteZeroes makes a range read back as zeroes, allocated (never a hole
	// that a later write could fail to fill); with fua, durably.
	WriteZeroes(off, length uint64, fua bool) error
}

// Errors a Backend returns to choose the NBD error value of a reply. Any
// error wrapping one of them (fmt.Errorf("...: %w", nbd.ErrIO)) works too.
var (
	ErrIO       error = syscall.EIO       // NBD_EIO: the I/O failed
	ErrReadOnly error = syscall.EPERM     // NBD_EPERM: the device refuses writes
	ErrNoSpace  error = syscall.ENOSPC    // NBD_ENOSPC: no room (thin backing store)
	ErrInvalid  error = syscall.EINVAL    // NBD_EINVAL: a request the backend cannot serve
	ErrShutdown error = syscall.ESHUTDOWN // NBD_ESHUTDOWN: the daemon is stopping
)

// errorValue maps a backend error to the NBD error value sent in a reply.
func errorValue(err error) uint32 {
	if err == nil {
		return 0
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return errIO
	}
	switch errno {
	case syscall.EPERM, syscall.EROFS, syscall.EACCES:
		return errPerm
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		return errNoSpc
	case syscall.EINVAL:
		return errInval
	case syscall.ESHUTDOWN:
		return errShutdown
	case syscall.ENOMEM:
		return errNoMem
	case syscall.EOVERFLOW:
		return errOverflow
	case syscall.ENOTSUP:
		return errNotSup
	default:
		return errIO
	}
}

// ExportFlags are the transmission flags for b: flush, FUA, trim and
// write-zeroes, plus read-only if b is read-only now. CAN_MULTI_CONN is left
// out: only a backend whose Flush covers writes acknowledged on every
// connection may add it (see Server.MultiConn).
func ExportFlags(b Backend) Flags {
	f := FlagHasFlags | FlagSendFlush | FlagSendFUA | FlagSendTrim | FlagSendWriteZeroes
	if b.ReadOnly() {
		f |= FlagReadOnly
	}
	return f
}
