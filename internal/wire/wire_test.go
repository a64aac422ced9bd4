package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"testing"

	"pgregory.net/rapid"

	"tandem/internal/proto"
)

var (
	testKey  = []byte("tandem test key, 32 bytes long!!")
	otherKey = []byte("tandem test key, 32 bytes long!?")
	longKey  = bytes.Repeat([]byte("k"), 100) // longer than a SHA-256 block: hashed first
)

// keys are the authentication modes every property is checked under.
var keys = []struct {
	name string
	key  []byte
}{
	{"crc", nil},
	{"hmac", testKey},
	{"hmac-long-key", longKey},
	{"hmac-empty-key", []byte{}},
}

var table = []proto.Heartbeat{
	{From: 0, State: proto.Secondary, HandoverTo: proto.NoNode, GrantTo: proto.NoNode},
	{From: 1, Incarnation: 7, Seq: 1, SentAt: 1_500_000_000, State: proto.Primary, Flags: proto.WantVotes,
		Epoch: 3, HandoverTo: proto.NoNode, GrantTo: 1, GrantEcho: 1_400_000_000},
	{From: 2, Incarnation: 1<<64 - 1, Seq: 1<<64 - 1, SentAt: proto.Never, State: proto.Witness,
		Flags: knownFlags, Epoch: 1<<64 - 1, HandoverTo: 2, GrantTo: 0, GrantEcho: -1},
	{From: 0, SentAt: -1 << 63, State: proto.Blocked, Flags: proto.Ineligible, HandoverTo: 1, GrantTo: proto.NoNode},
	{From: 1, State: proto.Starting, Flags: proto.WantGroup, HandoverTo: 0, GrantTo: 2},
	{From: 0, State: proto.Stopping, HandoverTo: 1, GrantTo: 1, Seq: 0xC0DBC0DB, Epoch: 0xDBDBC0C0},
}

// genHeartbeat draws a heartbeat that Validate accepts.
func genHeartbeat(t *rapid.T) proto.Heartbeat {
	peer := rapid.SampledFrom([]proto.NodeID{0, 1, 2, proto.NoNode})
	return proto.Heartbeat{
		From:             proto.NodeID(rapid.IntRange(0, proto.MaxNodes-1).Draw(t, "from")),
		Incarnation:      rapid.Uint64().Draw(t, "incarnation"),
		Seq:              rapid.Uint64().Draw(t, "seq"),
		SentAt:           proto.Time(rapid.Int64().Draw(t, "sentAt")),
		State:            proto.State(rapid.IntRange(int(proto.Secondary), int(proto.Witness)).Draw(t, "state")),
		Flags:            proto.Flags(rapid.IntRange(0, int(knownFlags)).Draw(t, "flags")),
		Epoch:            rapid.Uint64().Draw(t, "epoch"),
		HandoverTo:       peer.Draw(t, "handoverTo"),
		GrantTo:          peer.Draw(t, "grantTo"),
		GrantEcho:        proto.Time(rapid.Int64().Draw(t, "grantEcho")),
		GrantIncarnation: rapid.Uint64().Draw(t, "grantIncarnation"),
	}
}

func roundTrip(t interface {
	Helper()
	Fatalf(string, ...any)
}, hb proto.Heartbeat, key []byte) {
	t.Helper()
	prefix := []byte("prefix")
	pkt := AppendHeartbeat(append([]byte(nil), prefix...), &hb, key)
	if !bytes.Equal(pkt[:len(prefix)], prefix) {
		t.Fatalf("AppendHeartbeat clobbered dst: %q", pkt[:len(prefix)])
	}
	pkt = pkt[len(prefix):]
	want := PacketSizeCRC
	if key != nil {
		want = PacketSizeMAC
	}
	if len(pkt) != want {
		t.Fatalf("packet is %d bytes, want %d", len(pkt), want)
	}
	var got proto.Heartbeat
	if err := DecodeHeartbeat(pkt, &got, key); err != nil {
		t.Fatalf("decode %+v: %v", hb, err)
	}
	if got != hb {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, hb)
	}
}

func TestRoundTripTable(t *testing.T) {
	for _, k := range keys {
		for _, hb := range table {
			roundTrip(t, hb, k.key)
		}
	}
}

func TestRoundTripRandom(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		hb := genHeartbeat(t)
		key := rapid.SampledFrom([][]byte{nil, testKey, longKey}).Draw(t, "key")
		roundTrip(t, hb, key)
	})
}

// TestLayout pins the byte layout the package comment documents: a change
// here breaks mixed-version clusters and must come with a new Version.
func TestLayout(t *testing.T) {
	hb := table[1]
	pkt := AppendHeartbeat(nil, &hb, nil)
	const golden = "54440101400001030100ff01" + // magic, version, kind, length, From, State, Flags, HandoverTo, GrantTo
		"0700000000000000" + "0100000000000000" + // Incarnation, Seq
		"002f685900000000" + "0300000000000000" + "004e725300000000" + // SentAt, Epoch, GrantEcho
		"0000000000000000" + // GrantIncarnation
		"4e53c9cd" // CRC32C
	if got := hex.EncodeToString(pkt); got != golden {
		t.Errorf("encoding changed:\n got %s\nwant %s", got, golden)
	}
	if crc := crc32.Checksum(pkt[:60], crc32.MakeTable(crc32.Castagnoli)); crc != 0xcdc9534e {
		t.Errorf("trailer is not CRC32C of the first 60 bytes: %08x", crc)
	}
	mpkt := AppendHeartbeat(nil, &hb, testKey)
	if mpkt[3] != authHMAC || mpkt[4] != PacketSizeMAC || !bytes.Equal(mpkt[6:60], pkt[6:60]) {
		t.Errorf("HMAC packet header/body differ from the CRC one: % x", mpkt)
	}
	m := hmac.New(sha256.New, testKey)
	m.Write(mpkt[:60])
	if !bytes.Equal(mpkt[60:], m.Sum(nil)[:MACSize]) {
		t.Errorf("trailer is not the truncated HMAC-SHA256 of the first 60 bytes")
	}
}

// TestMACMatchesCryptoHMAC checks the allocation-free HMAC against the
// standard library for keys around the block size, where HMAC changes
// behaviour.
func TestMACMatchesCryptoHMAC(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		key := rapid.SliceOfN(rapid.Byte(), 0, 200).Draw(t, "key")
		msg := rapid.SliceOfN(rapid.Byte(), 0, signedLen).Draw(t, "msg")
		m := hmac.New(sha256.New, key)
		m.Write(msg)
		got := mac(key, msg)
		if !bytes.Equal(got[:], m.Sum(nil)) {
			t.Fatalf("mac(%x, %x) = %x, crypto/hmac says %x", key, msg, got, m.Sum(nil))
		}
	})
}

// TestBitFlipsRejected: noise flipping any one bit of a packet must never
// yield a heartbeat, in either mode.
func TestBitFlipsRejected(t *testing.T) {
	for _, k := range keys {
		for _, hb := range table {
			pkt := AppendHeartbeat(nil, &hb, k.key)
			for bit := 0; bit < 8*len(pkt); bit++ {
				bad := bytes.Clone(pkt)
				bad[bit/8] ^= 1 << (bit % 8)
				var got proto.Heartbeat
				if err := DecodeHeartbeat(bad, &got, k.key); err == nil {
					t.Fatalf("%s: flipping bit %d accepted: %+v", k.name, bit, got)
				}
			}
		}
	}
}

func TestTruncationRejected(t *testing.T) {
	for _, k := range keys {
		pkt := AppendHeartbeat(nil, &table[1], k.key)
		for n := 0; n < len(pkt); n++ {
			var got proto.Heartbeat
			if err := DecodeHeartbeat(pkt[:n], &got, k.key); !errors.Is(err, ErrShort) {
				t.Fatalf("%s: truncated to %d bytes: err %v, want ErrShort", k.name, n, err)
			}
		}
		var got proto.Heartbeat
		if err := DecodeHeartbeat(append(bytes.Clone(pkt), 0), &got, k.key); !errors.Is(err, ErrLength) {
			t.Errorf("%s: trailing byte: err %v, want ErrLength", k.name, err)
		}
	}
}

func TestAuthMismatch(t *testing.T) {
	hb := table[1]
	var got proto.Heartbeat
	for _, c := range []struct {
		name        string
		enc, dec    []byte
		wantErrAuth bool
	}{
		{"wrong key", testKey, otherKey, true},
		{"key vs long key", testKey, longKey, true},
		{"MAC packet, no key", testKey, nil, true},
		{"CRC packet, key", nil, testKey, true},
		{"CRC packet, empty key", nil, []byte{}, true},
		{"empty-key packet, no key", []byte{}, nil, true},
	} {
		pkt := AppendHeartbeat(nil, &hb, c.enc)
		if err := DecodeHeartbeat(pkt, &got, c.dec); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: err %v, want ErrAuth", c.name, err)
		}
	}
}

func TestHeaderErrors(t *testing.T) {
	good := AppendHeartbeat(nil, &table[1], nil)
	edit := func(f func(p []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, c := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"oversized", make([]byte, MaxPacket+1), ErrLength},
		{"oversized with good header", append(bytes.Clone(good), make([]byte, MaxPacket)...), ErrLength},
		{"magic", edit(func(p []byte) []byte { p[0] = 'X'; return p }), ErrMagic},
		{"version 0", edit(func(p []byte) []byte { p[2] = 0; return p }), ErrVersion},
		{"version 2", edit(func(p []byte) []byte { p[2] = 2; return p }), ErrVersion},
		{"auth kind 0", edit(func(p []byte) []byte { p[3] = 0; return p }), ErrAuth},
		{"auth kind 3", edit(func(p []byte) []byte { p[3] = 3; return p }), ErrAuth},
		{"length says longer", edit(func(p []byte) []byte { p[4]++; return p }), ErrShort},
		{"length says shorter", edit(func(p []byte) []byte { p[4]--; return p }), ErrLength},
		{"length consistent but wrong for kind", edit(func(p []byte) []byte { p[4]++; return append(p, 0) }), ErrLength},
		{"checksum", edit(func(p []byte) []byte { p[len(p)-1] ^= 0x80; return p }), ErrChecksum},
		{"body", edit(func(p []byte) []byte { p[20] ^= 1; return p }), ErrChecksum},
	} {
		var got proto.Heartbeat
		if err := DecodeHeartbeat(c.pkt, &got, nil); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

// TestFieldErrors encodes heartbeats with one field out of range: the packet
// is intact, so only the field check can catch them.
func TestFieldErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*proto.Heartbeat)
	}{
		{"state 0", func(h *proto.Heartbeat) { h.State = 0 }},
		{"state 7", func(h *proto.Heartbeat) { h.State = proto.Witness + 1 }},
		{"state 255", func(h *proto.Heartbeat) { h.State = 255 }},
		{"from 3", func(h *proto.Heartbeat) { h.From = proto.MaxNodes }},
		{"from NoNode", func(h *proto.Heartbeat) { h.From = proto.NoNode }},
		{"handover 3", func(h *proto.Heartbeat) { h.HandoverTo = proto.MaxNodes }},
		{"handover 254", func(h *proto.Heartbeat) { h.HandoverTo = proto.NoNode - 1 }},
		{"grant 3", func(h *proto.Heartbeat) { h.GrantTo = proto.MaxNodes }},
		{"flag 1<<3", func(h *proto.Heartbeat) { h.Flags |= knownFlags + 1 }},
		{"flag 1<<15", func(h *proto.Heartbeat) { h.Flags |= 1 << 15 }},
	} {
		hb := table[1]
		c.edit(&hb)
		if err := Validate(&hb); !errors.Is(err, ErrField) {
			t.Errorf("%s: Validate: %v, want ErrField", c.name, err)
		}
		for _, k := range keys {
			pkt := AppendHeartbeat(nil, &hb, k.key)
			got := table[0]
			if err := DecodeHeartbeat(pkt, &got, k.key); !errors.Is(err, ErrField) {
				t.Errorf("%s/%s: err %v, want ErrField", c.name, k.name, err)
			}
			if got != table[0] {
				t.Errorf("%s/%s: failed decode wrote %+v", c.name, k.name, got)
			}
		}
	}
}

func TestNoAllocs(t *testing.T) {
	buf := make([]byte, 0, MaxPacket)
	frame := make([]byte, 0, 2*MaxPacket+2)
	var d Deframer
	for _, k := range keys {
		hb := table[2]
		var got proto.Heartbeat
		allocs := testing.AllocsPerRun(100, func() {
			pkt := AppendHeartbeat(buf[:0], &hb, k.key)
			if err := DecodeHeartbeat(pkt, &got, k.key); err != nil {
				t.Fatal(err)
			}
			pkt[20] ^= 1
			if err := DecodeHeartbeat(pkt, &got, k.key); err == nil {
				t.Fatal("corrupt packet accepted")
			}
			pkt[20] ^= 1
			d.Write(AppendFrame(frame[:0], pkt))
			if p, ok := d.Next(); !ok || !bytes.Equal(p, pkt) {
				t.Fatal("frame lost")
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per encode/decode/frame/deframe, want 0", k.name, allocs)
		}
	}
}

// FuzzDecodeHeartbeat: decoding never panics, fails only with a sentinel,
// and whatever it accepts is valid and re-encodes to the very same bytes (so
// one heartbeat has one encoding). Random bytes almost never carry a good
// CRC, so each input is also tried with its trailer recomputed, which sends
// the fuzzer into the field checks.
func FuzzDecodeHeartbeat(f *testing.F) {
	for _, hb := range table {
		f.Add(AppendHeartbeat(nil, &hb, nil))
		f.Add(AppendHeartbeat(nil, &hb, testKey))
	}
	f.Add([]byte{})
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, key := range [][]byte{nil, testKey} {
			checkDecode(t, pkt, key)
			checkDecode(t, reseal(pkt, key), key)
		}
	})
}

var sentinels = []error{ErrShort, ErrMagic, ErrVersion, ErrLength, ErrChecksum, ErrAuth, ErrField}

func checkDecode(t *testing.T, pkt, key []byte) {
	var hb proto.Heartbeat
	err := DecodeHeartbeat(pkt, &hb, key)
	if err != nil {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error %v is not a sentinel", err)
	}
	if err := Validate(&hb); err != nil {
		t.Fatalf("accepted an invalid heartbeat %+v", hb)
	}
	if again := AppendHeartbeat(nil, &hb, key); !bytes.Equal(again, pkt) {
		t.Fatalf("accepted % x\nre-encodes to % x", pkt, again)
	}
}

// reseal returns a copy of pkt with the trailer recomputed for key, when pkt
// is long enough to have one.
func reseal(pkt, key []byte) []byte {
	p := bytes.Clone(pkt)
	if len(p) < signedLen+CRCSize {
		return p
	}
	if key == nil {
		crc := crc32.Checksum(p[:signedLen], castagnoli)
		p[signedLen], p[signedLen+1], p[signedLen+2], p[signedLen+3] = byte(crc), byte(crc>>8), byte(crc>>16), byte(crc>>24)
	} else if len(p) >= PacketSizeMAC {
		m := mac(key, p[:signedLen])
		copy(p[signedLen:], m[:MACSize])
	}
	return p
}

func BenchmarkEncodeDecode(b *testing.B) {
	for _, k := range keys[:2] {
		b.Run(k.name, func(b *testing.B) {
			buf := make([]byte, 0, MaxPacket)
			hb := table[1]
			var got proto.Heartbeat
			b.ReportAllocs()
			for b.Loop() {
				hb.Seq++
				pkt := AppendHeartbeat(buf[:0], &hb, k.key)
				if err := DecodeHeartbeat(pkt, &got, k.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
