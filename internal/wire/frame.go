package wire

// Serial framing. A serial line is a byte stream that noise can corrupt,
// drop bytes from or insert bytes into, so packets are wrapped SLIP-style
// (RFC 1055): END delimits frames and END/ESC inside a packet are escaped.
// A receiver that lost track of where it is resynchronises at the next END;
// integrity is left to the packet's own CRC or MAC.

const (
	slipEnd    = 0xC0
	slipEsc    = 0xDB
	slipEscEnd = 0xDC // ESC ESC_END stands for a data END
	slipEscEsc = 0xDD // ESC ESC_ESC stands for a data ESC
)

// maxPending bounds the bytes a Deframer holds between Write and Next, so a
// reader that falls behind costs bounded memory instead of growing forever.
const maxPending = 64 << 10

// AppendFrame appends pkt to dst as one frame for a byte stream and returns
// the extended slice. The frame starts with END as well as ending with one
// (as RFC 1055 suggests) so line noise received before it is closed off as
// its own garbage frame instead of being glued to this packet. A frame takes
// at most 2*len(pkt)+2 bytes. Receivers discard packets over MaxPacket.
func AppendFrame(dst, pkt []byte) []byte {
	if need := len(pkt) + 2; cap(dst)-len(dst) < need {
		grown := make([]byte, len(dst), len(dst)+need+len(pkt)/8)
		copy(grown, dst)
		dst = grown
	}
	dst = append(dst, slipEnd)
	for _, b := range pkt {
		switch b {
		case slipEnd:
			dst = append(dst, slipEsc, slipEscEnd)
		case slipEsc:
			dst = append(dst, slipEsc, slipEscEsc)
		default:
			dst = append(dst, b)
		}
	}
	return append(dst, slipEnd)
}

// Deframer states. The zero value is hunt: a receiver that starts listening
// mid-stream is most likely in the middle of a frame, whose tail is garbage.
const (
	hunt    = iota // discarding until the next END; nothing counted yet
	inFrame        // collecting a frame
	skip           // discarding until the next END; already counted as dropped
)

// Deframer accumulates bytes from a stream and yields the complete, unstuffed
// packets in it. The zero value is ready to use. It keeps at most MaxPacket
// bytes of frame and 64 KiB of unread input, so garbage cannot make it grow:
// a frame that unstuffs to more than MaxPacket bytes (at most 2*MaxPacket on
// the wire) cannot be a packet and is discarded, as is a frame with an
// invalid escape. Empty frames (END END) are frame separators, not drops.
//
// It is not safe for concurrent use; like everything in internal/, it leaves
// goroutines to the caller.
type Deframer struct {
	in    []byte          // written, not yet parsed: in[off:]
	off   int             //
	buf   [MaxPacket]byte // the frame being unstuffed
	n     int             // bytes in buf
	esc   bool            // the previous byte of the frame was ESC
	state int

	// Frames counts packets handed out by Next.
	Frames uint64
	// Dropped counts frames discarded as garbage: oversized, with an invalid
	// escape, or the partial frame a receiver starts listening in.
	Dropped uint64
	// Overruns counts the times Write discarded unread input because more
	// than 64 KiB were waiting for Next; the stream resynchronises at the
	// next END afterwards.
	Overruns uint64
}

// Write feeds stream bytes to the deframer. It copies p, so the caller may
// reuse p at once; call Next until it reports false to collect the packets.
func (d *Deframer) Write(p []byte) {
	pending := len(d.in) - d.off
	if excess := pending + len(p) - maxPending; excess > 0 {
		// The reader fell behind: keep the newest bytes, which are the ones
		// worth having, and resynchronise since the stream now has a gap.
		d.Overruns++
		if excess >= pending {
			p = p[excess-pending:]
			d.in, d.off = d.in[:0], 0
		} else {
			d.off += excess
		}
		d.lose()
	}
	if d.off > 0 {
		d.in = d.in[:copy(d.in, d.in[d.off:])]
		d.off = 0
	}
	d.in = append(d.in, p...)
}

// Next returns the next complete packet, unstuffed. The slice points into
// the deframer and is valid only until the next call to Next. ok is false
// when all bytes written so far have been consumed; a frame still
// incomplete then is kept for the next Write.
func (d *Deframer) Next() (pkt []byte, ok bool) {
	for d.off < len(d.in) {
		b := d.in[d.off]
		d.off++
		if d.state != inFrame {
			switch {
			case b == slipEnd:
				d.state, d.n, d.esc = inFrame, 0, false
			case d.state == hunt:
				d.Dropped++
				d.state = skip
			}
			continue
		}
		if b == slipEnd {
			n, esc := d.n, d.esc
			d.n, d.esc = 0, false
			if esc { // ESC END: the escaped byte was lost; END still delimits
				d.Dropped++
				continue
			}
			if n == 0 {
				continue
			}
			d.Frames++
			return d.buf[:n], true
		}
		if d.esc {
			d.esc = false
			switch b {
			case slipEscEnd:
				b = slipEnd
			case slipEscEsc:
				b = slipEsc
			default:
				d.drop()
				continue
			}
		} else if b == slipEsc {
			d.esc = true
			continue
		}
		if d.n == len(d.buf) {
			d.drop()
			continue
		}
		d.buf[d.n] = b
		d.n++
	}
	d.in, d.off = d.in[:0], 0
	return nil, false
}

// drop discards the current frame, counts it, and skips to the next END.
func (d *Deframer) drop() {
	d.Dropped++
	d.state, d.n, d.esc = skip, 0, false
}

// lose forgets the current frame after a gap in the stream (counted as an
// overrun, not a drop) and hunts for the next END.
func (d *Deframer) lose() {
	d.state, d.n, d.esc = skip, 0, false
}
