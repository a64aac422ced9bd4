package disk

import (
	"errors"
	"os"
	"syscall"

	"tandem/internal/repl"
)

// Classify maps an error from this package (or any I/O on a backing device)
// onto the core's repl.IOError kinds, for the DiskDone and MetaDone inputs.
// nil is repl.OK; every other error is a failure, never OK:
//
//   - ENOSPC, EDQUOT, EFBIG: repl.NoSpace (a full thin pool, filesystem or
//     quota under a file-backed disk; the data may fit later).
//   - EILSEQ, EBADMSG: repl.BadChecksum (the device's own integrity check,
//     e.g. T10 PI, failed: what was read is not what was written).
//   - EROFS, ENODEV, ENXIO, ENOMEDIUM, ESHUTDOWN, EBADF, a closed Disk:
//     repl.DeviceFailed (the device is gone or will refuse every write: a
//     filesystem remounted read-only after errors does not come back).
//   - EIO and anything else, the argument errors of this package included:
//     repl.EIO.
func Classify(err error) repl.IOError {
	if err == nil {
		return repl.OK
	}
	if errors.Is(err, os.ErrClosed) {
		return repl.DeviceFailed
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return repl.EIO
	}
	switch errno {
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		return repl.NoSpace
	case syscall.EILSEQ, syscall.EBADMSG:
		return repl.BadChecksum
	case syscall.EROFS, syscall.ENODEV, syscall.ENXIO, syscall.ENOMEDIUM, syscall.ESHUTDOWN, syscall.EBADF:
		return repl.DeviceFailed
	}
	return repl.EIO
}
