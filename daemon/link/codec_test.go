package link

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"tandem/internal/meta"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// genMsg draws a message of any kind with every field its kind carries set
// to an arbitrary value (zero, small or full width), and a payload length
// for the kinds that carry one.
func genMsg(t *rapid.T) (repl.Msg, int) {
	k := repl.MsgKind(rapid.IntRange(int(repl.MsgHello), int(maxKind)).Draw(t, "kind"))
	m := repl.Msg{Kind: k}
	f := kindFields[k]
	u64 := func(name string) uint64 {
		return rapid.OneOf(rapid.Just(uint64(0)), rapid.Uint64Range(0, 1<<14), rapid.Uint64()).Draw(t, name)
	}
	has := func(x field) bool { return f&x != 0 }
	if has(fSeq) {
		m.Seq = u64("seq")
	}
	if has(fEpoch) {
		m.Epoch = u64("epoch")
	}
	if has(fBlock) {
		m.Block = u64("block")
	}
	if has(fCount) {
		m.Count = rapid.Uint32().Draw(t, "count")
	}
	if has(fDigest) {
		m.Digest = u64("digest")
	}
	if has(fErr) {
		m.Err = repl.IOError(rapid.IntRange(0, int(repl.Suspended)).Draw(t, "err"))
	}
	if has(fWriterGen) {
		m.WriterGen = meta.UUID(u64("writergen"))
	}
	if has(fNode) {
		m.Node = proto.NodeID(rapid.IntRange(0, proto.MaxNodes-1).Draw(t, "node"))
	}
	if has(fGen) {
		m.Gen = meta.Generations{Current: meta.UUID(u64("cur")), Bitmap: meta.UUID(u64("bm")),
			History: [2]meta.UUID{meta.UUID(u64("h0")), meta.UUID(u64("h1"))}}
	}
	if has(fFlags) {
		m.Flags = meta.Flags(rapid.Uint32().Draw(t, "flags"))
	}
	if has(fDisk) {
		m.Disk = repl.DiskState(rapid.IntRange(0, int(repl.UpToDate)).Draw(t, "disk"))
	}
	if has(fRole) {
		m.Role = repl.Role(rapid.IntRange(0, int(repl.Primary)).Draw(t, "role"))
	}
	if has(fBlocks) {
		m.Blocks = u64("blocks")
	}
	if has(fChanges) {
		m.Changes = u64("changes")
	}
	if has(fProtocol) {
		m.Protocol = rapid.SampledFrom([]repl.Protocol{0, repl.ProtocolA, repl.ProtocolB, repl.ProtocolC}).Draw(t, "protocol")
	}
	if has(fBools) {
		m.DiscardMyData = rapid.Bool().Draw(t, "discard")
		m.Crashed = rapid.Bool().Draw(t, "crashed")
	}
	if has(fPrimarySince) {
		m.PrimarySince = u64("since")
	}
	if has(fBitmap) {
		if b := rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "bitmap"); len(b) > 0 {
			m.Bitmap = b
		}
	}
	n := 0
	if has(fPayload) {
		n = rapid.OneOf(rapid.Just(0), rapid.IntRange(0, 1<<13), rapid.Just(DefaultMaxPayload)).Draw(t, "payload")
	}
	return m, n
}

// TestRoundTrip: every message of every kind decodes to itself; every
// strict prefix and any trailing byte is refused.
func TestRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m, n := genMsg(t)
		if err := CheckMsg(&m, n); err != nil {
			t.Fatalf("CheckMsg(%+v, %d): %v", m, n, err)
		}
		enc := AppendMsg(nil, &m, n)
		if len(enc) > maxMsgFixed+len(m.Bitmap) {
			t.Fatalf("%s: %d bytes, over the bound %d", m.Kind, len(enc), maxMsgFixed+len(m.Bitmap))
		}
		got, gotN, err := DecodeMsg(enc)
		if err != nil {
			t.Fatalf("decode %+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) || gotN != n {
			t.Fatalf("round trip:\n got %+v, %d\nwant %+v, %d", got, gotN, m, n)
		}
		cut := rapid.IntRange(0, len(enc)-1).Draw(t, "cut")
		if _, _, err := DecodeMsg(enc[:cut]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%d of %d bytes of %s decoded: %v", cut, len(enc), m.Kind, err)
		}
		extra := append(bytes.Clone(enc), rapid.Byte().Draw(t, "extra"))
		if _, _, err := DecodeMsg(extra); !errors.Is(err, ErrMalformed) {
			t.Fatalf("trailing byte after %s accepted: %v", m.Kind, err)
		}
	})
}

// TestCheckMsgRefusesForeignFields: a field a kind does not carry is
// refused by CheckMsg (and so by Send), never silently dropped.
func TestCheckMsgRefusesForeignFields(t *testing.T) {
	for k := repl.MsgHello; k <= maxKind; k++ {
		for f := field(1); f < fPayload; f <<= 1 {
			if kindFields[k]&f != 0 {
				continue
			}
			m := repl.Msg{Kind: k}
			setField(&m, f)
			err := CheckMsg(&m, 0)
			if err == nil || !strings.Contains(err.Error(), f.String()) {
				t.Errorf("%s with %s: %v, want an error naming the field", k, f, err)
			}
		}
		if kindFields[k]&fPayload == 0 {
			if err := CheckMsg(&repl.Msg{Kind: k}, 1); err == nil {
				t.Errorf("%s with a payload accepted", k)
			}
		}
	}
}

// setField sets field f of m to a valid non-zero value.
func setField(m *repl.Msg, f field) {
	switch f {
	case fSeq:
		m.Seq = 1
	case fEpoch:
		m.Epoch = 1
	case fBlock:
		m.Block = 1
	case fCount:
		m.Count = 1
	case fDigest:
		m.Digest = 1
	case fErr:
		m.Err = repl.EIO
	case fWriterGen:
		m.WriterGen = 1
	case fNode:
		m.Node = 1
	case fGen:
		m.Gen.History[1] = 1
	case fFlags:
		m.Flags = 1
	case fDisk:
		m.Disk = repl.UpToDate
	case fRole:
		m.Role = repl.Primary
	case fBlocks:
		m.Blocks = 1
	case fChanges:
		m.Changes = 1
	case fProtocol:
		m.Protocol = repl.ProtocolC
	case fBools:
		m.Crashed = true
	case fPrimarySince:
		m.PrimarySince = 1
	case fBitmap:
		m.Bitmap = []byte{1}
	default:
		panic(f)
	}
}

// TestDecodeRefuses pins the strict decoder's refusals, each with the
// sentinel and a message naming what is wrong.
func TestDecodeRefuses(t *testing.T) {
	ping := []byte{CodecVersion, byte(repl.MsgPing), 0}
	data := AppendMsg(nil, &repl.Msg{Kind: repl.MsgData, Seq: 300, Count: 1}, 4096)
	hello := AppendMsg(nil, &repl.Msg{Kind: repl.MsgHello, Protocol: repl.ProtocolC}, 0)
	for _, c := range []struct {
		name string
		in   []byte
		err  error
		says string
	}{
		{"empty", nil, ErrMalformed, "shorter"},
		{"version", []byte{2, byte(repl.MsgPing), 0}, ErrMalformed, "codec version 2"},
		{"kind 0", []byte{CodecVersion, 0, 0}, ErrMalformed, "unknown message kind 0"},
		{"kind past the last", []byte{CodecVersion, byte(maxKind) + 1, 0}, ErrMalformed, "unknown message kind"},
		{"no payload length", ping[:2], ErrMalformed, "truncated"},
		{"payload on a ping", []byte{CodecVersion, byte(repl.MsgPing), 1}, ErrMalformed, "carries none"},
		{"non-minimal uvarint", []byte{CodecVersion, byte(repl.MsgPing), 0x80, 0x00}, ErrMalformed, "non-minimal"},
		{"uvarint overflow", append([]byte{CodecVersion, byte(repl.MsgRecvAck), 0}, bytes.Repeat([]byte{0xff}, 11)...), ErrMalformed, "overflows"},
		{"oversized payload", AppendMsg(nil, &repl.Msg{Kind: repl.MsgData}, DefaultMaxPayload+1), ErrOversized, "maximum"},
		{"trailing", append(bytes.Clone(ping), 0), ErrMalformed, "trailing"},
		{"truncated data", data[:len(data)-9], ErrMalformed, "truncated"},
		{"count over 32 bits", []byte{CodecVersion, byte(repl.MsgInSync), 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10}, ErrMalformed, "32 bits"},
		{"err out of range", []byte{CodecVersion, byte(repl.MsgNegAck), 0, 1, byte(repl.Suspended) + 1}, ErrMalformed, "out of range"},
		{"protocol D", bytes.Replace(hello, []byte{'C'}, []byte{'D'}, 1), ErrMalformed, "not A, B or C"},
		{"bitmap longer than message", []byte{CodecVersion, byte(repl.MsgBitmap), 0, 5, 1, 2}, ErrMalformed, "5 bytes announced"},
	} {
		_, _, err := DecodeMsg(c.in)
		if !errors.Is(err, c.err) || err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %v saying %q", c.name, err, c.err, c.says)
		}
	}
}

func BenchmarkAppendDecodeData(b *testing.B) {
	m := repl.Msg{Kind: repl.MsgData, Seq: 123456, Epoch: 789, Block: 1 << 20, Count: 1, WriterGen: 0x1234567890abcdef}
	buf := make([]byte, 0, 64)
	for b.Loop() {
		buf = AppendMsg(buf[:0], &m, 4096)
		if _, _, err := DecodeMsg(buf); err != nil {
			b.Fatal(err)
		}
	}
}
