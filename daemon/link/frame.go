package link

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"sync"

	"tandem/internal/repl"
)

// Frame layout (all integers big endian):
//
//	0  magic "TNDL"
//	4  frame version (1)
//	5  type: 1 message, 2 accept (the deciding node's "this connection")
//	6  2 bytes zero
//	8  message length (bytes)
//	12 payload length (bytes)
//	16 sequence number: 1, 2, 3, ... per connection and direction
//	24 message (AppendMsg), then the CRC32C of the payload (4 bytes), then
//	   the payload, then HMAC-SHA256 (32 bytes) of everything before it,
//	   keyed with the connection's key for this direction.
//
// The lengths sit in the header so that a frame is read whole, and its MAC
// checked, before a byte of the message is parsed: a forged frame is counted
// as a bad MAC, not as a malformed message. The CRC is checked before the
// MAC: a payload damaged between the sender's memory and ours fails both,
// while a forger who fixes up the CRC fails only the MAC, so the counters
// tell corruption from forgery.
const (
	frameMagic   = "TNDL"
	frameVersion = 1
	headerLen    = 24
	crcLen       = 4
	macLen       = sha256.Size

	typeMsg    = 1
	typeAccept = 2
)

var (
	// ErrBadMAC: a frame or handshake proof failed authentication (wrong
	// key, forgery, or a frame of another connection).
	ErrBadMAC = errors.New("authentication failed")
	// ErrBadCRC: a payload does not match its checksum (corrupted in flight
	// or in memory).
	ErrBadCRC = errors.New("payload checksum mismatch")
	// ErrReplayed: an authentic frame arrived out of sequence (replayed,
	// reordered or dropped by someone in between).
	ErrReplayed = errors.New("frame out of sequence")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frame is one outgoing frame: buf holds the header, message and CRC
// (buf[:n]) and, once sealed, the MAC (buf[n:n+macLen]); the payload stays
// the caller's slice and goes to the socket by writev without a copy.
type frame struct {
	buf     []byte
	n       int
	payload []byte
}

var framePool = sync.Pool{New: func() any { return &frame{buf: make([]byte, 0, 256)} }}

// newFrame encodes m and payload as a frame of type typ, without sequence
// number and MAC (seal adds them). The CRC is taken here, in the sender's
// goroutine: a payload changed after Send then fails the receiver's check
// instead of being replicated silently.
func newFrame(typ byte, m *repl.Msg, payload []byte) *frame {
	f := framePool.Get().(*frame)
	b := append(f.buf[:0], frameMagic...)
	b = append(b, frameVersion, typ, 0, 0)
	b = append(b, make([]byte, headerLen-len(b))...)
	if m != nil {
		b = AppendMsg(b, m, len(payload))
	}
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-headerLen))
	binary.BigEndian.PutUint32(b[12:], uint32(len(payload)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(payload, castagnoli))
	f.buf, f.n, f.payload = b, len(b), payload
	return f
}

// size is the frame's length on the wire.
func (f *frame) size() int { return f.n + len(f.payload) + macLen }

// seal sets the sequence number and appends the MAC.
func (f *frame) seal(seq uint64, mac hash.Hash) {
	binary.BigEndian.PutUint64(f.buf[16:], seq)
	mac.Reset()
	mac.Write(f.buf[:f.n])
	mac.Write(f.payload)
	f.buf = mac.Sum(f.buf[:f.n])
}

func (f *frame) free() {
	f.payload = nil
	if cap(f.buf) <= 64<<10 {
		framePool.Put(f)
	}
}

// frameReader reads and checks the frames of one direction of a connection.
type frameReader struct {
	br         *bufio.Reader
	mac        hash.Hash
	next       uint64 // the sequence number expected next
	maxMsg     int
	maxPayload int
	hdr        [headerLen]byte
	body       []byte // message + CRC, reused
	sum, got   [macLen]byte
}

func newFrameReader(br *bufio.Reader, key []byte, maxPayload int) *frameReader {
	return &frameReader{br: br, mac: hmac.New(sha256.New, key), next: 1,
		maxMsg: maxPayload + maxMsgFixed, maxPayload: maxPayload}
}

// frameIn is one checked frame. msg aliases the reader's buffer until the
// next read; payload is freshly allocated and belongs to the caller.
type frameIn struct {
	typ     byte
	seq     uint64
	msg     []byte
	payload []byte
	size    int
}

// read returns the next intact, authentic, in-sequence frame. Its errors
// wrap ErrMalformed, ErrOversized, ErrBadCRC, ErrBadMAC or ErrReplayed for
// bad frames; anything else is the connection's own error (io.EOF at a
// frame boundary: the peer closed). Lengths are checked against the
// maximum before anything is allocated for them.
func (r *frameReader) read() (frameIn, error) {
	var in frameIn
	if _, err := io.ReadFull(r.br, r.hdr[:]); err != nil {
		return in, err
	}
	h := r.hdr[:]
	be := binary.BigEndian
	switch {
	case string(h[:4]) != frameMagic:
		return in, fmt.Errorf("%w: frame %d: bad magic %q", ErrMalformed, r.next, h[:4])
	case h[4] != frameVersion:
		return in, fmt.Errorf("%w: frame %d: frame version %d, this node speaks %d", ErrMalformed, r.next, h[4], frameVersion)
	case h[5] != typeMsg && h[5] != typeAccept:
		return in, fmt.Errorf("%w: frame %d: unknown frame type %d", ErrMalformed, r.next, h[5])
	case h[6] != 0 || h[7] != 0:
		return in, fmt.Errorf("%w: frame %d: reserved bytes set", ErrMalformed, r.next)
	}
	msgLen, payloadLen := uint64(be.Uint32(h[8:])), uint64(be.Uint32(h[12:]))
	if msgLen > uint64(r.maxMsg) || payloadLen > uint64(r.maxPayload) {
		return in, fmt.Errorf("%w: frame %d announces a %d-byte message and a %d-byte payload, the maximum is %d and %d",
			ErrOversized, r.next, msgLen, payloadLen, r.maxMsg, r.maxPayload)
	}
	if cap(r.body) < int(msgLen)+crcLen {
		r.body = make([]byte, int(msgLen)+crcLen)
	}
	r.body = r.body[:int(msgLen)+crcLen]
	if _, err := io.ReadFull(r.br, r.body); err != nil {
		return in, noEOF(err)
	}
	if payloadLen > 0 {
		in.payload = make([]byte, payloadLen)
		if _, err := io.ReadFull(r.br, in.payload); err != nil {
			return in, noEOF(err)
		}
	}
	if _, err := io.ReadFull(r.br, r.got[:]); err != nil {
		return in, noEOF(err)
	}
	seq := be.Uint64(h[16:])
	if crc32.Checksum(in.payload, castagnoli) != be.Uint32(r.body[msgLen:]) {
		return in, fmt.Errorf("%w: frame %d (%d-byte payload)", ErrBadCRC, seq, payloadLen)
	}
	r.mac.Reset()
	r.mac.Write(h)
	r.mac.Write(r.body)
	r.mac.Write(in.payload)
	if !hmac.Equal(r.mac.Sum(r.sum[:0]), r.got[:]) {
		return in, fmt.Errorf("%w: frame %d", ErrBadMAC, seq)
	}
	if seq != r.next {
		return in, fmt.Errorf("%w: got frame %d, expected %d", ErrReplayed, seq, r.next)
	}
	r.next++
	in.typ, in.seq, in.msg = h[5], seq, r.body[:msgLen]
	in.size = headerLen + int(msgLen) + crcLen + int(payloadLen) + macLen
	return in, nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF: the peer (or
// someone) cut a frame short.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
