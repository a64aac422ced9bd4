package nbd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// errAborted ends a handshake the client gave up with NBD_OPT_ABORT.
var errAborted = errors.New("nbd: client sent NBD_OPT_ABORT")

// handshake runs the fixed-newstyle negotiation on rw. It returns the
// transmission flags once the client enters transmission (NBD_OPT_GO or
// NBD_OPT_EXPORT_NAME), or an error after which the connection is closed.
func (s *Server) handshake(rw io.ReadWriter) (Flags, error) {
	var greeting [18]byte
	binary.BigEndian.PutUint64(greeting[0:], magicInit)
	binary.BigEndian.PutUint64(greeting[8:], magicOption)
	binary.BigEndian.PutUint16(greeting[16:], handshakeFixedNewstyle|handshakeNoZeroes)
	if _, err := rw.Write(greeting[:]); err != nil {
		return 0, fmt.Errorf("write greeting: %w", err)
	}
	var word [4]byte
	if _, err := io.ReadFull(rw, word[:]); err != nil {
		return 0, fmt.Errorf("read client flags: %w", err)
	}
	clientFlags := binary.BigEndian.Uint32(word[:])
	if clientFlags&^clientKnown != 0 {
		// The spec: the server MUST drop the connection.
		return 0, fmt.Errorf("client flags %#x set bits this server does not know (%#x)", clientFlags, clientFlags&^clientKnown)
	}
	noZeroes := clientFlags&clientNoZeroes != 0

	for {
		var header [16]byte
		if _, err := io.ReadFull(rw, header[:]); err != nil {
			return 0, fmt.Errorf("read option header: %w", err)
		}
		if magic := binary.BigEndian.Uint64(header[0:]); magic != magicOption {
			return 0, fmt.Errorf("option magic %#x is not IHAVEOPT", magic)
		}
		opt := binary.BigEndian.Uint32(header[8:])
		length := binary.BigEndian.Uint32(header[12:])
		if length > maxOptionLength {
			return 0, fmt.Errorf("option %d claims %d bytes of data; at most %d are accepted", opt, length, maxOptionLength)
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(rw, data); err != nil {
			return 0, fmt.Errorf("read option %d data: %w", opt, err)
		}
		flags, enter, err := s.option(rw, opt, data, noZeroes)
		if err != nil || enter {
			return flags, err
		}
	}
}

// option answers one option. enter reports that transmission starts.
func (s *Server) option(w io.Writer, opt uint32, data []byte, noZeroes bool) (flags Flags, enter bool, err error) {
	switch opt {
	case optExportName:
		name := string(data)
		if !s.exports(name) {
			// NBD_OPT_EXPORT_NAME cannot carry an error: the spec says
			// to end the session.
			return 0, false, fmt.Errorf("client asked for export %q; this server exports %q", name, s.ExportName)
		}
		flags = s.exportFlags()
		reply := make([]byte, 10, 10+exportPaddingLength)
		binary.BigEndian.PutUint64(reply[0:], s.exportSize())
		binary.BigEndian.PutUint16(reply[8:], uint16(flags))
		if !noZeroes {
			reply = reply[:10+exportPaddingLength]
		}
		if _, err := w.Write(reply); err != nil {
			return 0, false, fmt.Errorf("write export reply: %w", err)
		}
		return flags, true, nil

	case optAbort:
		// The client may not wait for the acknowledgement: ignore a
		// failure to send it.
		_ = writeOptionReply(w, opt, repAck, nil)
		return 0, false, errAborted

	case optList:
		if len(data) != 0 {
			return 0, false, writeOptionError(w, opt, repErrInvalid, "NBD_OPT_LIST takes no data, got %d bytes", len(data))
		}
		entry := binary.BigEndian.AppendUint32(nil, uint32(len(s.ExportName)))
		entry = append(entry, s.ExportName...)
		if err := writeOptionReply(w, opt, repServer, entry); err != nil {
			return 0, false, err
		}
		return 0, false, writeOptionReply(w, opt, repAck, nil)

	case optInfo, optGo:
		name, requests, problem := parseInfoRequest(data)
		if problem != "" {
			return 0, false, writeOptionError(w, opt, repErrInvalid, "%s", problem)
		}
		if !s.exports(name) {
			return 0, false, writeOptionError(w, opt, repErrUnknown, "no export named %q; this server exports %q", name, s.ExportName)
		}
		flags = s.exportFlags()
		if err := s.writeInfo(w, opt, flags, requests); err != nil {
			return 0, false, err
		}
		if err := writeOptionReply(w, opt, repAck, nil); err != nil {
			return 0, false, err
		}
		return flags, opt == optGo, nil

	default:
		// STARTTLS, STRUCTURED_REPLY, meta contexts, extended headers and
		// anything newer: the client is expected to carry on without.
		return 0, false, writeOptionError(w, opt, repErrUnsup, "option %d is not supported by this server", opt)
	}
}

// exports reports whether name is this server's export ("" is the default).
func (s *Server) exports(name string) bool { return name == "" || name == s.ExportName }

// writeInfo sends the NBD_REP_INFO replies of NBD_OPT_INFO / NBD_OPT_GO:
// always the export's size and flags and its block sizes (the server
// enforces them, so the client learns them even unasked), and the name
// when asked for it.
func (s *Server) writeInfo(w io.Writer, opt uint32, flags Flags, requests []uint16) error {
	export := binary.BigEndian.AppendUint16(nil, infoExport)
	export = binary.BigEndian.AppendUint64(export, s.exportSize())
	export = binary.BigEndian.AppendUint16(export, uint16(flags))
	if err := writeOptionReply(w, opt, repInfo, export); err != nil {
		return err
	}
	sizes := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	sizes = binary.BigEndian.AppendUint32(sizes, MinBlockSize)
	sizes = binary.BigEndian.AppendUint32(sizes, PreferredBlockSize)
	sizes = binary.BigEndian.AppendUint32(sizes, s.maxPayload)
	if err := writeOptionReply(w, opt, repInfo, sizes); err != nil {
		return err
	}
	for _, r := range requests {
		if r == infoName {
			name := binary.BigEndian.AppendUint16(nil, infoName)
			name = append(name, s.ExportName...)
			return writeOptionReply(w, opt, repInfo, name)
		}
	}
	return nil
}

// parseInfoRequest decodes NBD_OPT_INFO / NBD_OPT_GO data: a 32-bit name
// length, the name, a 16-bit count and that many 16-bit information
// requests. problem describes what is wrong, for the client to display.
func parseInfoRequest(data []byte) (name string, requests []uint16, problem string) {
	if len(data) < 6 {
		return "", nil, fmt.Sprintf("option data is %d bytes; at least 6 are needed", len(data))
	}
	nameLength := binary.BigEndian.Uint32(data)
	if uint64(nameLength) > uint64(len(data)-6) {
		return "", nil, fmt.Sprintf("export name length %d overruns the %d bytes of option data", nameLength, len(data))
	}
	name = string(data[4 : 4+nameLength])
	rest := data[4+nameLength:]
	count := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*count {
		return "", nil, fmt.Sprintf("%d information requests announced, %d bytes follow", count, len(rest))
	}
	requests = make([]uint16, count)
	for i := range requests {
		requests[i] = binary.BigEndian.Uint16(rest[2*i:])
	}
	return name, requests, ""
}

// writeOptionReply sends one option reply.
func writeOptionReply(w io.Writer, opt, typ uint32, data []byte) error {
	msg := make([]byte, 20, 20+len(data))
	binary.BigEndian.PutUint64(msg[0:], magicReply)
	binary.BigEndian.PutUint32(msg[8:], opt)
	binary.BigEndian.PutUint32(msg[12:], typ)
	binary.BigEndian.PutUint32(msg[16:], uint32(len(data)))
	msg = append(msg, data...)
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("write reply to option %d: %w", opt, err)
	}
	return nil
}

// writeOptionError sends an error reply with a message for the user; the
// handshake goes on.
func writeOptionError(w io.Writer, opt, typ uint32, format string, args ...any) error {
	return writeOptionReply(w, opt, typ, []byte(fmt.Sprintf(format, args...)))
}
