package nbd

import "sync/atomic"

// Counters are a server's totals since it was created, for `tandem status`
// and the metrics endpoint. Each field is read atomically, but a snapshot is
// not one atomic whole.
type Counters struct {
	// Connections: transmission phases started (handshakes that reached
	// transmission, and kernel sockets given to ServeTransmission).
	Connections uint64
	// Active: connections in the transmission phase now.
	Active uint64
	// HandshakeFailures: connections closed during the handshake for a
	// protocol violation, an unknown export on NBD_OPT_EXPORT_NAME, an I/O
	// error or a timeout (NBD_OPT_ABORT is not a failure).
	HandshakeFailures uint64
	// Malformed: connections closed in transmission because a request
	// broke the framing (bad magic); the stream cannot be trusted after it.
	Malformed uint64

	// Requests received, by command.
	Reads, Writes, Flushes, Trims, WriteZeroes, Disconnects uint64
	// Unknown: requests with a command this server does not implement
	// (answered with EINVAL).
	Unknown uint64

	// Errors: replies that carried an error, whatever the cause.
	Errors uint64
	// Rejected: the subset of Errors refused by the server itself before
	// the backend saw them: bad flags, misaligned, out of range, oversized,
	// unknown command, or a write to a read-only export.
	Rejected uint64

	// Payload bytes of successful requests.
	BytesRead, BytesWritten, BytesTrimmed, BytesZeroed uint64

	// InFlight: requests accepted and not yet answered, on all connections.
	InFlight uint64
}

// counters are the live form of Counters.
type counters struct {
	connections, active, handshakeFailures, malformed       atomic.Uint64
	reads, writes, flushes, trims, writeZeroes, disconnects atomic.Uint64
	unknown, errors, rejected                               atomic.Uint64
	bytesRead, bytesWritten, bytesTrimmed, bytesZeroed      atomic.Uint64
	inFlight                                                atomic.Int64
}

func (c *counters) snapshot() Counters {
	return Counters{
		Connections:       c.connections.Load(),
		Active:            c.active.Load(),
		HandshakeFailures: c.handshakeFailures.Load(),
		Malformed:         c.malformed.Load(),
		Reads:             c.reads.Load(),
		Writes:            c.writes.Load(),
		Flushes:           c.flushes.Load(),
		Trims:             c.trims.Load(),
		WriteZeroes:       c.writeZeroes.Load(),
		Disconnects:       c.disconnects.Load(),
		Unknown:           c.unknown.Load(),
		Errors:            c.errors.Load(),
		Rejected:          c.rejected.Load(),
		BytesRead:         c.bytesRead.Load(),
		BytesWritten:      c.bytesWritten.Load(),
		BytesTrimmed:      c.bytesTrimmed.Load(),
		BytesZeroed:       c.bytesZeroed.Load(),
		InFlight:          uint64(max(c.inFlight.Load(), 0)),
	}
}

// received counts a request by its command.
func (c *counters) received(typ uint16) {
	switch typ {
	case cmdRead:
		c.reads.Add(1)
	case cmdWrite:
		c.writes.Add(1)
	case cmdFlush:
		c.flushes.Add(1)
	case cmdTrim:
		c.trims.Add(1)
	case cmdWriteZeroes:
		c.writeZeroes.Add(1)
	case cmdDisc:
		c.disconnects.Add(1)
	default:
		c.unknown.Add(1)
	}
}

// succeeded counts the payload of a request that completed without error.
func (c *counters) succeeded(typ uint16, length uint32) {
	n := uint64(length)
	switch typ {
	case cmdRead:
		c.bytesRead.Add(n)
	case cmdWrite:
		c.bytesWritten.Add(n)
	case cmdTrim:
		c.bytesTrimmed.Add(n)
	case cmdWriteZeroes:
		c.bytesZeroed.Add(n)
	}
}
