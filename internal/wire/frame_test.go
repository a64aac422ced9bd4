package wire

import (
	"bytes"
	"testing"

	"pgregory.net/rapid"

	"tandem/internal/proto"
)

// drain collects every packet the deframer has ready, copied since Next's
// slices are only valid until the next call.
func drain(d *Deframer) [][]byte {
	var out [][]byte
	for {
		p, ok := d.Next()
		if !ok {
			return out
		}
		out = append(out, bytes.Clone(p))
	}
}

func TestAppendFrameEscapes(t *testing.T) {
	for _, c := range []struct{ pkt, want []byte }{
		{[]byte{}, []byte{0xC0, 0xC0}},
		{[]byte{1, 2}, []byte{0xC0, 1, 2, 0xC0}},
		{[]byte{0xC0}, []byte{0xC0, 0xDB, 0xDC, 0xC0}},
		{[]byte{0xDB}, []byte{0xC0, 0xDB, 0xDD, 0xC0}},
		{[]byte{0xDB, 0xDC, 0xC0, 0xDD}, []byte{0xC0, 0xDB, 0xDD, 0xDC, 0xDB, 0xDC, 0xDD, 0xC0}},
	} {
		got := AppendFrame([]byte("x"), c.pkt)
		if !bytes.Equal(got, append([]byte("x"), c.want...)) {
			t.Errorf("AppendFrame(% x) = % x, want x % x", c.pkt, got, c.want)
		}
	}
}

// genPacket draws packet-like bytes rich in END and ESC.
func genPacket(t *rapid.T, label string) []byte {
	b := rapid.OneOf(rapid.Byte(), rapid.SampledFrom([]byte{slipEnd, slipEsc, slipEscEnd, slipEscEsc}))
	return rapid.SliceOfN(b, 1, MaxPacket).Draw(t, label)
}

// feed writes stream to d in chunks drawn by t, draining after each Write.
func feed(t *rapid.T, d *Deframer, stream []byte) [][]byte {
	var out [][]byte
	for len(stream) > 0 {
		n := rapid.IntRange(1, len(stream)).Draw(t, "chunk")
		d.Write(stream[:n])
		stream = stream[n:]
		out = append(out, drain(d)...)
	}
	return out
}

func TestFrameRoundTrip(t *testing.T) {
	var d Deframer
	var stream []byte
	var want [][]byte
	for _, k := range keys {
		for _, hb := range table {
			pkt := AppendHeartbeat(nil, &hb, k.key)
			want = append(want, pkt)
			stream = AppendFrame(stream, pkt)
		}
	}
	want = append(want, bytes.Repeat([]byte{slipEnd, slipEsc}, MaxPacket/2)) // the largest, all escapes
	stream = AppendFrame(stream, want[len(want)-1])
	d.Write(stream)
	got := drain(&d)
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d:\n got % x\nwant % x", i, got[i], want[i])
		}
	}
	if d.Frames != uint64(len(want)) || d.Dropped != 0 || d.Overruns != 0 {
		t.Errorf("counters: %d frames, %d dropped, %d overruns", d.Frames, d.Dropped, d.Overruns)
	}
}

func TestFrameRoundTripRandom(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pkts := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) []byte { return genPacket(t, "pkt") }), 0, 20).Draw(t, "pkts")
		var stream []byte
		for _, p := range pkts {
			stream = AppendFrame(stream, p)
		}
		var d Deframer
		got := feed(t, &d, stream)
		if len(got) != len(pkts) {
			t.Fatalf("got %d packets, want %d", len(got), len(pkts))
		}
		for i := range pkts {
			if !bytes.Equal(got[i], pkts[i]) {
				t.Fatalf("packet %d:\n got % x\nwant % x", i, got[i], pkts[i])
			}
		}
		if d.Dropped != 0 {
			t.Fatalf("%d drops in a clean stream", d.Dropped)
		}
	})
}

// TestGarbageBetweenFrames: whatever noise arrives between frames, including
// END and ESC bytes and half frames, every good frame still comes through.
func TestGarbageBetweenFrames(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		var stream []byte
		var sent []proto.Heartbeat
		for i := range rapid.IntRange(1, 10).Draw(t, "n") {
			stream = append(stream, genGarbage(t)...)
			hb := genHeartbeat(t)
			hb.Seq = uint64(i)
			sent = append(sent, hb)
			stream = AppendFrame(stream, AppendHeartbeat(nil, &hb, nil))
		}
		stream = append(stream, genGarbage(t)...)
		var d Deframer
		var got []proto.Heartbeat
		for _, p := range feed(t, &d, stream) {
			var hb proto.Heartbeat
			if DecodeHeartbeat(p, &hb, nil) == nil {
				got = append(got, hb)
			}
		}
		if len(got) != len(sent) {
			t.Fatalf("decoded %d heartbeats, sent %d", len(got), len(sent))
		}
		for i := range sent {
			if got[i] != sent[i] {
				t.Fatalf("heartbeat %d: got %+v, want %+v", i, got[i], sent[i])
			}
		}
	})
}

func genGarbage(t *rapid.T) []byte {
	b := rapid.OneOf(rapid.Byte(), rapid.SampledFrom([]byte{slipEnd, slipEsc, slipEscEnd, slipEscEsc}))
	return rapid.SliceOfN(b, 0, 3*MaxPacket).Draw(t, "garbage")
}

// TestNoisyLine is the simulator's serial line: bytes flipped, dropped and
// inserted at random. Packets may be lost, but nothing that was not sent may
// ever decode.
func TestNoisyLine(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		key := rapid.SampledFrom([][]byte{nil, testKey}).Draw(t, "key")
		sent := map[proto.Heartbeat]bool{}
		var stream []byte
		for range rapid.IntRange(1, 20).Draw(t, "n") {
			hb := genHeartbeat(t)
			sent[hb] = true
			stream = AppendFrame(stream, AppendHeartbeat(nil, &hb, key))
		}
		var noisy []byte
		for _, b := range stream {
			switch rapid.IntRange(0, 99).Draw(t, "noise") {
			case 0:
				b ^= 1 << rapid.IntRange(0, 7).Draw(t, "bit")
			case 1:
				continue // dropped
			case 2:
				noisy = append(noisy, rapid.Byte().Draw(t, "inserted"))
			}
			noisy = append(noisy, b)
		}
		var d Deframer
		for _, p := range feed(t, &d, noisy) {
			var hb proto.Heartbeat
			if DecodeHeartbeat(p, &hb, key) == nil && !sent[hb] {
				t.Fatalf("noise produced a heartbeat never sent: %+v", hb)
			}
		}
	})
}

func TestDeframerDrops(t *testing.T) {
	good := AppendHeartbeat(nil, &table[1], nil)
	frame := AppendFrame(nil, good)
	for _, c := range []struct {
		name    string
		stream  []byte
		dropped uint64
	}{
		{"clean", frame, 0},
		{"empty frames", append([]byte{slipEnd, slipEnd, slipEnd}, frame...), 0},
		{"started mid-frame", append([]byte{1, 2, 3}, frame...), 1},
		{"oversized", append(AppendFrame(nil, make([]byte, MaxPacket+1)), frame...), 1},
		{"oversized unterminated", append(make([]byte, 5*MaxPacket), frame...), 1},
		{"bad escape", append([]byte{slipEnd, 1, slipEsc, 7, 2, slipEnd}, frame...), 1},
		{"escape before END", append([]byte{slipEnd, 1, slipEsc}, frame...), 1},
	} {
		var d Deframer
		d.Write(c.stream)
		got := drain(&d)
		if len(got) != 1 || !bytes.Equal(got[0], good) {
			t.Errorf("%s: got %d packets % x, want the good one", c.name, len(got), got)
		}
		if d.Dropped != c.dropped || d.Frames != 1 {
			t.Errorf("%s: %d dropped, %d frames; want %d, 1", c.name, d.Dropped, d.Frames, c.dropped)
		}
	}
	// A packet of exactly MaxPacket bytes is still a frame.
	var d Deframer
	d.Write(AppendFrame(nil, bytes.Repeat([]byte{slipEsc}, MaxPacket)))
	if p, ok := d.Next(); !ok || len(p) != MaxPacket {
		t.Errorf("MaxPacket-byte frame: ok %v, %d bytes", ok, len(p))
	}
}

// TestDeframerOverrun: a reader that never calls Next costs bounded memory,
// and after catching up it gets the newest frames.
func TestDeframerOverrun(t *testing.T) {
	var d Deframer
	frame := AppendFrame(nil, AppendHeartbeat(nil, &table[1], nil))
	for range 4 * maxPending / len(frame) {
		d.Write(frame)
	}
	if len(d.in) > maxPending || cap(d.in) > 2*maxPending+len(frame) {
		t.Errorf("pending input %d bytes (cap %d), bound %d", len(d.in), cap(d.in), maxPending)
	}
	got := drain(&d)
	if d.Overruns == 0 {
		t.Error("no overrun counted")
	}
	if min := maxPending/len(frame) - 1; len(got) < min {
		t.Errorf("only %d frames after overrun, want at least %d", len(got), min)
	}
	d.Write(frame)
	if p, ok := d.Next(); !ok || !bytes.Equal(p, frame[1:len(frame)-1]) {
		t.Error("no clean frame after catching up")
	}
}

// FuzzDeframer: on any stream the deframer never panics, yields only packets
// of 1..MaxPacket bytes, yields the same packets and counts however the
// stream is cut into writes, and its packets re-frame and deframe unchanged.
func FuzzDeframer(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendFrame(nil, AppendHeartbeat(nil, &table[1], nil)))
	f.Add(AppendFrame([]byte{1, slipEsc, slipEnd}, []byte{slipEnd, slipEsc, 0}))
	f.Add(append(make([]byte, 2*MaxPacket), AppendFrame(nil, []byte("ok"))...))
	f.Fuzz(func(t *testing.T, stream []byte) {
		if len(stream) > maxPending {
			stream = stream[:maxPending] // beyond, overruns make chunking matter
		}
		var whole Deframer
		whole.Write(stream)
		got := drain(&whole)

		var bytewise Deframer
		var got1 [][]byte
		for i := range stream {
			bytewise.Write(stream[i : i+1])
			got1 = append(got1, drain(&bytewise)...)
		}
		if len(got1) != len(got) || whole.Frames != bytewise.Frames || whole.Dropped != bytewise.Dropped {
			t.Fatalf("whole: %d packets %d/%d; byte by byte: %d packets %d/%d",
				len(got), whole.Frames, whole.Dropped, len(got1), bytewise.Frames, bytewise.Dropped)
		}
		var again []byte
		for i, p := range got {
			if len(p) == 0 || len(p) > MaxPacket {
				t.Fatalf("packet of %d bytes", len(p))
			}
			if !bytes.Equal(p, got1[i]) {
				t.Fatalf("packet %d differs by chunking: % x vs % x", i, p, got1[i])
			}
			again = AppendFrame(again, p)
		}
		var re Deframer
		re.Write(again)
		got2 := drain(&re)
		if len(got2) != len(got) || re.Dropped != 0 {
			t.Fatalf("re-framed: %d packets, %d dropped; want %d, 0", len(got2), re.Dropped, len(got))
		}
		for i := range got {
			if !bytes.Equal(got[i], got2[i]) {
				t.Fatalf("re-framed packet %d: % x, want % x", i, got2[i], got[i])
			}
		}
	})
}

func BenchmarkDeframer(b *testing.B) {
	var stream []byte
	for _, hb := range table {
		stream = AppendFrame(stream, AppendHeartbeat(nil, &hb, testKey))
	}
	var d Deframer
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		d.Write(stream)
		for {
			if _, ok := d.Next(); !ok {
				break
			}
		}
	}
}
