package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"tandem/internal/meta"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// CodecVersion is the first byte of every encoded message. A peer speaking
// another version is refused at the first message rather than misread.
const CodecVersion = 1

// DefaultMaxPayload is the largest data payload a frame may carry unless
// Config.MaxPayload says otherwise: 1 MiB, DRBD's largest request (256
// blocks of 4 KiB). A Bitmap message's run-length bytes count against the
// same bound.
const DefaultMaxPayload = 1 << 20

// Errors a decoder, a frame check or Send can report. Down events and Send
// wrap them with what and where.
var (
	// ErrMalformed: the bytes are not a message of this codec version.
	ErrMalformed = errors.New("malformed message")
	// ErrOversized: a length is over the configured maximum.
	ErrOversized = errors.New("oversized")
)

// field names one encoded field of repl.Msg. A kind's fields are encoded in
// the order of these bits, so the table below is the whole format.
type field uint32

const (
	fSeq field = 1 << iota
	fEpoch
	fBlock
	fCount
	fDigest
	fErr
	fWriterGen
	fNode
	fGen
	fFlags
	fDisk
	fRole
	fBlocks
	fChanges
	fProtocol
	fBools // DiscardMyData, Crashed
	fPrimarySince
	fBitmap
	fPayload   // not a field: the kind may carry a data payload
	fieldCount = iota
)

var fieldNames = [fieldCount]string{"Seq", "Epoch", "Block", "Count", "Digest", "Err",
	"WriterGen", "Node", "Gen", "Flags", "Disk", "Role", "Blocks", "Changes", "Protocol",
	"DiscardMyData/Crashed", "PrimarySince", "Bitmap", "payload"}

func (f field) String() string { return fieldNames[bits.TrailingZeros32(uint32(f))] }

// kindFields is what each message kind carries: the fields the core sets for
// it (internal/repl, see the comments on repl.MsgKind) and reads back.
var kindFields = [...]field{
	repl.MsgHello: fNode | fGen | fFlags | fDisk | fRole | fBlocks | fChanges | fProtocol |
		fBools | fPrimarySince,
	repl.MsgBitmap:      fBitmap,
	repl.MsgState:       fGen | fDisk | fRole,
	repl.MsgData:        fSeq | fEpoch | fBlock | fCount | fWriterGen | fPayload,
	repl.MsgTrim:        fSeq | fEpoch | fBlock | fCount | fWriterGen,
	repl.MsgRecvAck:     fSeq,
	repl.MsgWriteAck:    fSeq,
	repl.MsgNegAck:      fSeq | fErr,
	repl.MsgBarrier:     fEpoch,
	repl.MsgBarrierAck:  fEpoch | fErr,
	repl.MsgReadReq:     fSeq | fBlock | fCount,
	repl.MsgReadReply:   fSeq | fErr | fPayload,
	repl.MsgResyncReq:   fBlock | fCount,
	repl.MsgCsumReq:     fBlock | fCount | fDigest,
	repl.MsgResyncData:  fBlock | fCount | fErr | fPayload,
	repl.MsgInSync:      fBlock | fCount,
	repl.MsgResyncDone:  fSeq | fGen,
	repl.MsgVerifyReq:   fBlock | fCount | fDigest,
	repl.MsgVerifyReply: fBlock | fCount | fErr,
	repl.MsgPing:        0,
	repl.MsgPingAck:     0,
	repl.MsgOutOfSync:   fBlock | fCount,
}

// maxKind is the highest kind the codec knows.
const maxKind = repl.MsgOutOfSync

// maxMsgFixed bounds an encoded message without its Bitmap bytes: version,
// kind, payload length and every field at its widest.
const maxMsgFixed = 2 + 10 + 4*10 + 8 + 1 + 8 + 1 + 32 + 5 + 1 + 1 + 10 + 10 + 1 + 1 + 10 + 10

func knownKind(k repl.MsgKind) bool { return k >= repl.MsgHello && k <= maxKind }

// setFields is the set of fields of m that are not zero.
func setFields(m *repl.Msg) field {
	var f field
	set := func(b bool, x field) {
		if b {
			f |= x
		}
	}
	set(m.Seq != 0, fSeq)
	set(m.Epoch != 0, fEpoch)
	set(m.Block != 0, fBlock)
	set(m.Count != 0, fCount)
	set(m.Digest != 0, fDigest)
	set(m.Err != 0, fErr)
	set(m.WriterGen != 0, fWriterGen)
	set(m.Node != 0, fNode)
	set(m.Gen != (meta.Generations{}), fGen)
	set(m.Flags != 0, fFlags)
	set(m.Disk != 0, fDisk)
	set(m.Role != 0, fRole)
	set(m.Blocks != 0, fBlocks)
	set(m.Changes != 0, fChanges)
	set(m.Protocol != 0, fProtocol)
	set(m.DiscardMyData || m.Crashed, fBools)
	set(m.PrimarySince != 0, fPrimarySince)
	set(len(m.Bitmap) != 0, fBitmap)
	return f
}

// CheckMsg reports whether m, with a payload of payloadLen bytes, can be
// sent as it is: a known kind, no field set that its kind does not carry
// (AppendMsg would drop it), enumerations in range, and a payload only on
// the kinds that carry one (data, read reply, resync data). Send calls it,
// so that a core that starts using a new field fails loudly here instead of
// losing it on the wire.
func CheckMsg(m *repl.Msg, payloadLen int) error {
	if !knownKind(m.Kind) {
		return fmt.Errorf("link: message kind %d unknown to codec version %d", m.Kind, CodecVersion)
	}
	allowed := kindFields[m.Kind]
	if extra := setFields(m) &^ allowed; extra != 0 {
		return fmt.Errorf("link: %s message has %s set, which codec version %d does not carry for that kind",
			m.Kind, field(extra&-extra), CodecVersion)
	}
	if payloadLen < 0 || (payloadLen > 0 && allowed&fPayload == 0) {
		return fmt.Errorf("link: %s message cannot carry a payload (%d bytes given)", m.Kind, payloadLen)
	}
	switch {
	case m.Err > repl.Suspended:
		return fmt.Errorf("link: %s message: Err %d out of range", m.Kind, m.Err)
	case m.Disk > repl.UpToDate:
		return fmt.Errorf("link: %s message: Disk %d out of range", m.Kind, m.Disk)
	case m.Role > repl.Primary:
		return fmt.Errorf("link: %s message: Role %d out of range", m.Kind, m.Role)
	case !validProtocol(m.Protocol):
		return fmt.Errorf("link: %s message: Protocol %q is not A, B or C", m.Kind, byte(m.Protocol))
	case int(m.Node) >= proto.MaxNodes && allowed&fNode != 0:
		return fmt.Errorf("link: %s message: Node %d out of range", m.Kind, m.Node)
	}
	return nil
}

func validProtocol(p repl.Protocol) bool {
	return p == 0 || p == repl.ProtocolA || p == repl.ProtocolB || p == repl.ProtocolC
}

// AppendMsg appends the encoding of m, announcing a payload of payloadLen
// bytes, to dst and returns the extended slice.
//
// The encoding is: the codec version, the kind, the payload length as a
// uvarint, then the kind's fields (kindFields) in a fixed order: counters
// (Seq, Epoch, Block, Count, Flags, Blocks, Changes, PrimarySince) as
// minimal uvarints, identifiers and digests (Digest, WriterGen, Gen) as 8
// bytes little endian, enumerations (Err, Node, Disk, Role, Protocol) and the
// booleans as one byte, Bitmap as a uvarint length and its bytes. Zero
// fields are encoded too, so every message has exactly one encoding.
//
// AppendMsg does not validate: fields the kind does not carry are dropped.
// Call CheckMsg first (Send does).
func AppendMsg(dst []byte, m *repl.Msg, payloadLen int) []byte {
	dst = append(dst, CodecVersion, byte(m.Kind))
	dst = binary.AppendUvarint(dst, uint64(payloadLen))
	if !knownKind(m.Kind) {
		return dst
	}
	le := binary.LittleEndian
	for f := range kindFields[m.Kind].each() {
		switch f {
		case fSeq:
			dst = binary.AppendUvarint(dst, m.Seq)
		case fEpoch:
			dst = binary.AppendUvarint(dst, m.Epoch)
		case fBlock:
			dst = binary.AppendUvarint(dst, m.Block)
		case fCount:
			dst = binary.AppendUvarint(dst, uint64(m.Count))
		case fDigest:
			dst = le.AppendUint64(dst, m.Digest)
		case fErr:
			dst = append(dst, byte(m.Err))
		case fWriterGen:
			dst = le.AppendUint64(dst, uint64(m.WriterGen))
		case fNode:
			dst = append(dst, byte(m.Node))
		case fGen:
			dst = le.AppendUint64(dst, uint64(m.Gen.Current))
			dst = le.AppendUint64(dst, uint64(m.Gen.Bitmap))
			dst = le.AppendUint64(dst, uint64(m.Gen.History[0]))
			dst = le.AppendUint64(dst, uint64(m.Gen.History[1]))
		case fFlags:
			dst = binary.AppendUvarint(dst, uint64(m.Flags))
		case fDisk:
			dst = append(dst, byte(m.Disk))
		case fRole:
			dst = append(dst, byte(m.Role))
		case fBlocks:
			dst = binary.AppendUvarint(dst, m.Blocks)
		case fChanges:
			dst = binary.AppendUvarint(dst, m.Changes)
		case fProtocol:
			dst = append(dst, byte(m.Protocol))
		case fBools:
			var b byte
			if m.DiscardMyData {
				b |= 1
			}
			if m.Crashed {
				b |= 2
			}
			dst = append(dst, b)
		case fPrimarySince:
			dst = binary.AppendUvarint(dst, m.PrimarySince)
		case fBitmap:
			dst = binary.AppendUvarint(dst, uint64(len(m.Bitmap)))
			dst = append(dst, m.Bitmap...)
		}
	}
	return dst
}

// each yields the encoded fields of f in encoding order.
func (f field) each() func(func(field) bool) {
	return func(yield func(field) bool) {
		for rest := f &^ fPayload; rest != 0; rest &= rest - 1 {
			if !yield(rest & -rest) {
				return
			}
		}
	}
}

// DecodeMsg decodes one message made by AppendMsg; hdr must hold exactly
// that message. It refuses, with an error wrapping ErrMalformed, anything
// AppendMsg would not have produced from a message CheckMsg accepts: another
// codec version, an unknown kind, a short or over-long field, a non-minimal
// uvarint, an enumeration out of range, unknown boolean bits, a payload on a
// kind without one, trailing bytes. A payload length over DefaultMaxPayload
// wraps ErrOversized. Bitmap aliases hdr.
func DecodeMsg(hdr []byte) (m repl.Msg, payloadLen int, err error) {
	return decodeMsg(hdr, DefaultMaxPayload)
}

func decodeMsg(hdr []byte, maxPayload int) (repl.Msg, int, error) {
	d := decoder{b: hdr}
	var m repl.Msg
	if len(hdr) < 2 {
		return m, 0, fmt.Errorf("%w: %d bytes, shorter than version and kind", ErrMalformed, len(hdr))
	}
	if hdr[0] != CodecVersion {
		return m, 0, fmt.Errorf("%w: codec version %d, this node speaks %d", ErrMalformed, hdr[0], CodecVersion)
	}
	m.Kind = repl.MsgKind(hdr[1])
	if !knownKind(m.Kind) {
		return m, 0, fmt.Errorf("%w: unknown message kind %d", ErrMalformed, hdr[1])
	}
	d.b = hdr[2:]
	d.kind = m.Kind
	allowed := kindFields[m.Kind]
	n := d.uvarint(fPayload)
	if d.err == nil && n != 0 && allowed&fPayload == 0 {
		d.fail(fPayload, "%d bytes announced, the kind carries none", n)
	}
	if d.err == nil && n > uint64(maxPayload) {
		return m, 0, fmt.Errorf("%w: %s message announces a %d-byte payload, the maximum is %d",
			ErrOversized, m.Kind, n, maxPayload)
	}
	for f := range allowed.each() {
		if d.err != nil {
			break
		}
		switch f {
		case fSeq:
			m.Seq = d.uvarint(f)
		case fEpoch:
			m.Epoch = d.uvarint(f)
		case fBlock:
			m.Block = d.uvarint(f)
		case fCount:
			m.Count = uint32(d.uvarint32(f))
		case fDigest:
			m.Digest = d.fixed64(f)
		case fErr:
			m.Err = repl.IOError(d.byteMax(f, byte(repl.Suspended)))
		case fWriterGen:
			m.WriterGen = meta.UUID(d.fixed64(f))
		case fNode:
			m.Node = proto.NodeID(d.byteMax(f, proto.MaxNodes-1))
		case fGen:
			m.Gen.Current = meta.UUID(d.fixed64(f))
			m.Gen.Bitmap = meta.UUID(d.fixed64(f))
			m.Gen.History[0] = meta.UUID(d.fixed64(f))
			m.Gen.History[1] = meta.UUID(d.fixed64(f))
		case fFlags:
			m.Flags = meta.Flags(d.uvarint32(f))
		case fDisk:
			m.Disk = repl.DiskState(d.byteMax(f, byte(repl.UpToDate)))
		case fRole:
			m.Role = repl.Role(d.byteMax(f, byte(repl.Primary)))
		case fBlocks:
			m.Blocks = d.uvarint(f)
		case fChanges:
			m.Changes = d.uvarint(f)
		case fProtocol:
			m.Protocol = repl.Protocol(d.byte(f))
			if d.err == nil && !validProtocol(m.Protocol) {
				d.fail(f, "%q is not A, B or C", byte(m.Protocol))
			}
		case fBools:
			b := d.byteMax(f, 3)
			m.DiscardMyData, m.Crashed = b&1 != 0, b&2 != 0
		case fPrimarySince:
			m.PrimarySince = d.uvarint(f)
		case fBitmap:
			n := d.uvarint(f)
			if d.err == nil && n > uint64(len(d.b)) {
				d.fail(f, "%d bytes announced, %d left", n, len(d.b))
			}
			if d.err == nil && n > 0 {
				m.Bitmap, d.b = d.b[:n:n], d.b[n:]
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %s message: %d trailing bytes", ErrMalformed, m.Kind, len(d.b))
	}
	if d.err != nil {
		return repl.Msg{}, 0, d.err
	}
	return m, int(n), nil
}

// decoder reads fields off b; the first failure sticks in err.
type decoder struct {
	b    []byte
	kind repl.MsgKind
	err  error
}

func (d *decoder) fail(f field, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s message, field %s: %s", ErrMalformed, d.kind, f, fmt.Sprintf(format, args...))
	}
}

// uvarint reads a minimal uvarint: a value has exactly one encoding, so a
// decoded message re-encodes to the same bytes.
func (d *decoder) uvarint(f field) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail(f, "truncated")
		return 0
	case n < 0:
		d.fail(f, "uvarint overflows 64 bits")
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.fail(f, "non-minimal uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint32(f field) uint64 {
	v := d.uvarint(f)
	if v > math.MaxUint32 {
		d.fail(f, "%d does not fit 32 bits", v)
		return 0
	}
	return v
}

func (d *decoder) fixed64(f field) uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail(f, "truncated")
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) byte(f field) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail(f, "truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) byteMax(f field, max byte) byte {
	v := d.byte(f)
	if v > max {
		d.fail(f, "%d out of range (at most %d)", v, max)
		return 0
	}
	return v
}
