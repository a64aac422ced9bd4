// Package wire is the byte encoding of proto.Heartbeat, shared by the daemon's
// transports (UDP, serial) and the simulator's serial line, so both worlds
// exchange exactly the same bytes.
//
// A packet has a fixed little-endian layout:
//
//	off len field
//	  0   2 Magic "TD"
//	  2   1 Version
//	  3   1 auth kind: 1 = CRC32C trailer, 2 = HMAC-SHA256-128 trailer
//	  4   2 total packet length, trailer included
//	  6   1 From
//	  7   1 State
//	  8   2 Flags
//	 10   1 HandoverTo
//	 11   1 GrantTo
//	 12   8 Incarnation
//	 20   8 Seq
//	 28   8 SentAt
//	 36   8 Epoch
//	 44   8 GrantEcho
//	 52   8 GrantIncarnation
//	 60 4|16 CRC32C or truncated HMAC-SHA256 over bytes 0..59
//
// A fixed layout (no optional fields, no varints) means every accepted packet
// has exactly one encoding, which keeps the decoder small and lets the fuzz
// test demand that anything accepted re-encodes to the same bytes.
//
// The wire layer only answers "is this a well-formed, intact (and, with a
// key, authentic) heartbeat?". Replays and stale packets are the node's
// business: it has Incarnation and Seq for that.
package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash/crc32"

	"tandem/internal/proto"
)

// Magic opens every packet, so stray traffic on the port or line is
// recognised before any other check.
const Magic = "TD"

// Version is the layout version. A different version is rejected rather than
// guessed at: both nodes of a cluster are upgraded together.
const Version = 1

// MaxPacket bounds every packet (and every serial frame after unstuffing);
// anything larger is rejected without being looked at further.
const MaxPacket = 512

// MACSize is the length of the HMAC-SHA256 trailer: the first 16 bytes of the
// MAC, as HMAC-SHA-256-128 in RFC 4868. 128 bits leave a forger a 2^-128
// chance per attempt, with no way to test guesses offline, while saving 16
// bytes per heartbeat on a slow serial line (about 17 ms a packet at 9600 baud).
const MACSize = 16

// CRCSize is the length of the CRC32C trailer of an unauthenticated packet.
const CRCSize = 4

const (
	headerLen = 6
	bodyLen   = 54
	signedLen = headerLen + bodyLen // the bytes the CRC or MAC covers
)

// PacketSizeCRC and PacketSizeMAC are the exact sizes of an encoded
// heartbeat without and with a key, for sizing buffers.
const (
	PacketSizeCRC = signedLen + CRCSize
	PacketSizeMAC = signedLen + MACSize
)

// Auth kinds, byte 3. 1 and 2 differ in two bits, so no single bit flip turns
// one into the other.
const (
	authCRC32C = 1
	authHMAC   = 2
)

// Sentinel errors, one per reason, so shells can count drops by reason with
// errors.Is. They are returned bare (not wrapped): a noisy serial line makes
// rejection a hot path too, and these never allocate.
var (
	// ErrShort: the packet ends before its header or before its declared length.
	ErrShort = errors.New("wire: packet too short")
	// ErrMagic: the packet does not start with Magic; not ours.
	ErrMagic = errors.New("wire: bad magic")
	// ErrVersion: the packet has another layout version.
	ErrVersion = errors.New("wire: unsupported version")
	// ErrLength: the packet is larger than MaxPacket, or its length field
	// disagrees with its real size or with the size its auth kind implies.
	ErrLength = errors.New("wire: bad length")
	// ErrChecksum: the CRC32C does not match; the packet was corrupted.
	ErrChecksum = errors.New("wire: bad checksum")
	// ErrAuth: the MAC does not match, the auth kind is unknown, or the packet
	// is authenticated differently from what the receiver expects (MAC without
	// a key, CRC with one).
	ErrAuth = errors.New("wire: authentication failed")
	// ErrField: the packet is intact but a field is out of range.
	ErrField = errors.New("wire: field out of range")
)

// castagnoli is CRC32C: hardware accelerated on amd64/arm64, and it catches
// every single-bit error and every burst of up to 32 bits in a packet.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// knownFlags are the proto.Flags bits this version understands; a packet
// with any other bit is rejected rather than half understood.
const knownFlags = proto.WantVotes | proto.Ineligible | proto.WantGroup | proto.Abstaining |
	proto.OutdateRequest | proto.DiskOutdated | proto.InSync | proto.Outdated0 | proto.Outdated1

// AppendHeartbeat appends the encoded heartbeat to dst and returns the
// extended slice. With a non-nil key the packet carries an HMAC-SHA256
// truncated to MACSize bytes; with a nil key it carries a CRC32C, which
// detects noise but authenticates nothing. (A non-nil empty key is an HMAC
// key everybody knows; the config should refuse it.)
//
// The fields are encoded as they are: a heartbeat that Validate rejects gives
// a packet every receiver rejects. It does not allocate when dst has room.
func AppendHeartbeat(dst []byte, hb *proto.Heartbeat, key []byte) []byte {
	kind, size := byte(authCRC32C), PacketSizeCRC
	if key != nil {
		kind, size = authHMAC, PacketSizeMAC
	}
	start := len(dst)
	if cap(dst)-start < size {
		grown := make([]byte, start, start+size)
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:start+size]
	p := dst[start:]

	p[0], p[1], p[2], p[3] = Magic[0], Magic[1], Version, kind
	binary.LittleEndian.PutUint16(p[4:], uint16(size))
	p[6] = byte(hb.From)
	p[7] = byte(hb.State)
	binary.LittleEndian.PutUint16(p[8:], uint16(hb.Flags))
	p[10] = byte(hb.HandoverTo)
	p[11] = byte(hb.GrantTo)
	binary.LittleEndian.PutUint64(p[12:], hb.Incarnation)
	binary.LittleEndian.PutUint64(p[20:], hb.Seq)
	binary.LittleEndian.PutUint64(p[28:], uint64(hb.SentAt))
	binary.LittleEndian.PutUint64(p[36:], hb.Epoch)
	binary.LittleEndian.PutUint64(p[44:], uint64(hb.GrantEcho))
	binary.LittleEndian.PutUint64(p[52:], hb.GrantIncarnation)

	if key == nil {
		binary.LittleEndian.PutUint32(p[signedLen:], crc32.Checksum(p[:signedLen], castagnoli))
	} else {
		m := mac(key, p[:signedLen])
		copy(p[signedLen:], m[:MACSize])
	}
	return dst
}

// DecodeHeartbeat parses one packet (exactly one: trailing bytes are an
// error) into hb. It returns one of the sentinel errors for anything short,
// oversized, of another version, corrupted, unauthentic or out of range, and
// then leaves hb untouched. A packet authenticated with a key is rejected
// when decoding without one, and vice versa, so a misconfigured peer is
// noticed instead of silently downgrading to CRC.
//
// The checks run cheapest and most telling first: size, magic, version, then
// layout, then integrity, and fields last because they mean nothing until
// the packet is known to be intact.
func DecodeHeartbeat(pkt []byte, hb *proto.Heartbeat, key []byte) error {
	if len(pkt) > MaxPacket {
		return ErrLength
	}
	if len(pkt) < headerLen {
		return ErrShort
	}
	if pkt[0] != Magic[0] || pkt[1] != Magic[1] {
		return ErrMagic
	}
	if pkt[2] != Version {
		return ErrVersion
	}
	n := int(binary.LittleEndian.Uint16(pkt[4:]))
	if n > len(pkt) {
		return ErrShort
	}
	if n < len(pkt) {
		return ErrLength
	}
	var size int
	switch pkt[3] {
	case authCRC32C:
		if key != nil {
			return ErrAuth
		}
		size = PacketSizeCRC
	case authHMAC:
		if key == nil {
			return ErrAuth
		}
		size = PacketSizeMAC
	default:
		return ErrAuth
	}
	if n != size {
		return ErrLength
	}
	if key == nil {
		if binary.LittleEndian.Uint32(pkt[signedLen:]) != crc32.Checksum(pkt[:signedLen], castagnoli) {
			return ErrChecksum
		}
	} else {
		m := mac(key, pkt[:signedLen])
		if !hmac.Equal(m[:MACSize], pkt[signedLen:size]) { // constant time: no timing oracle for forgers
			return ErrAuth
		}
	}

	d := proto.Heartbeat{
		From:             proto.NodeID(pkt[6]),
		State:            proto.State(pkt[7]),
		Flags:            proto.Flags(binary.LittleEndian.Uint16(pkt[8:])),
		HandoverTo:       proto.NodeID(pkt[10]),
		GrantTo:          proto.NodeID(pkt[11]),
		Incarnation:      binary.LittleEndian.Uint64(pkt[12:]),
		Seq:              binary.LittleEndian.Uint64(pkt[20:]),
		SentAt:           proto.Time(binary.LittleEndian.Uint64(pkt[28:])),
		Epoch:            binary.LittleEndian.Uint64(pkt[36:]),
		GrantEcho:        proto.Time(binary.LittleEndian.Uint64(pkt[44:])),
		GrantIncarnation: binary.LittleEndian.Uint64(pkt[52:]),
	}
	if err := Validate(&d); err != nil {
		return err
	}
	*hb = d
	return nil
}

// Validate reports ErrField if hb has a field DecodeHeartbeat would refuse:
// State outside Secondary..Witness, From not a node, HandoverTo or GrantTo
// neither a node nor NoNode, or unknown Flags bits. Senders can call it
// before AppendHeartbeat to catch their own bugs at the source.
func Validate(hb *proto.Heartbeat) error {
	switch {
	case hb.State < proto.Secondary || hb.State > proto.Witness,
		hb.From >= proto.MaxNodes,
		!nodeOrNone(hb.HandoverTo),
		!nodeOrNone(hb.GrantTo),
		hb.Flags&^knownFlags != 0:
		return ErrField
	}
	return nil
}

func nodeOrNone(n proto.NodeID) bool { return n < proto.MaxNodes || n == proto.NoNode }

// mac is HMAC-SHA256 (RFC 2104) of msg, written out over sha256.Sum256 with
// stack buffers because hmac.New allocates two hash states per call and
// heartbeats are the hot path. wire_test checks it against crypto/hmac.
// msg is at most signedLen bytes.
func mac(key, msg []byte) [sha256.Size]byte {
	const block = sha256.BlockSize
	var k [block]byte
	if len(key) > block {
		s := sha256.Sum256(key)
		copy(k[:], s[:])
	} else {
		copy(k[:], key)
	}
	var buf [block + signedLen]byte
	for i, b := range k {
		buf[i] = b ^ 0x36
	}
	n := copy(buf[block:], msg)
	inner := sha256.Sum256(buf[:block+n])
	for i, b := range k {
		buf[i] = b ^ 0x5c
	}
	copy(buf[block:], inner[:])
	return sha256.Sum256(buf[:block+sha256.Size])
}
