package meta

import (
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
)

func mustLayout(t testing.TB, device uint64, internal bool, metaDev uint64, slots int) Layout {
	t.Helper()
	l, err := NewLayout(device, internal, metaDev, slots)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// sameRecord reports how a and b differ ("" if they do not), ignoring the
// suspect note.
func sameRecord(a, b *Record) string {
	switch {
	case a.Seq != b.Seq:
		return "Seq"
	case a.Blocks != b.Blocks:
		return "Blocks"
	case a.Node != b.Node:
		return "Node"
	case a.Gen != b.Gen:
		return "Gen " + a.Gen.String() + " vs " + b.Gen.String()
	case a.Flags != b.Flags:
		return "Flags " + a.Flags.String() + " vs " + b.Flags.String()
	case !slices.Equal(a.AL, b.AL):
		return "AL"
	case !a.Bitmap.Equal(b.Bitmap):
		return "Bitmap " + a.Bitmap.String() + " vs " + b.Bitmap.String()
	}
	return ""
}

// sameHeader is sameRecord for the header fields only.
func sameHeader(a, b *Record) string {
	c := *a
	c.Bitmap = b.Bitmap
	return sameRecord(&c, b)
}

func testRecord(l Layout, seq uint64) *Record {
	r := &Record{
		Seq:    seq,
		Blocks: l.DataBlocks,
		Node:   1,
		Gen:    Generations{Current: 0x1a2b3c4d5e6f7081, Bitmap: 0x77, History: [2]UUID{0x9f00, 0}},
		Flags:  Consistent | WasPrimary,
		Bitmap: NewBitmap(l.DataBlocks),
	}
	for _, e := range []uint32{uint32(ExtentCount(l.DataBlocks) - 1), 0} {
		if len(r.AL) < l.ALSlots && !slices.Contains(r.AL, e) {
			r.AL = append(r.AL, e)
		}
	}
	r.Bitmap.SetRange(0, min(100, l.DataBlocks))
	r.Bitmap.Set(l.DataBlocks - 1)
	return r
}

// apply performs writes on area.
func apply(area []byte, ws []Write) {
	for _, w := range ws {
		copy(area[w.Offset:], w.Data)
	}
}

func TestNewLayout(t *testing.T) {
	// External: the data area is the whole device.
	l := mustLayout(t, 10<<30+123, false, 1<<20, 1237)
	if l.DataBlocks != 10<<30/BlockSize || l.MetaOffset != 0 || l.ALBytes != 8192 || l.ALOffset(1) != 16384 ||
		l.BitmapPages != pagesFor(l.DataBlocks) || l.MetaBytes != 24576+l.BitmapPages*PageSize || l.BitmapOffset() != 24576 {
		t.Fatalf("external layout %+v", l)
	}
	// Internal: metadata at the end, 4 KiB aligned, data area before it.
	l = mustLayout(t, 10<<30+123, true, 0, 61)
	if l.ALBytes != 4096 || l.MetaOffset != l.DataBlocks*BlockSize || l.MetaOffset%PageSize != 0 ||
		l.MetaOffset+l.MetaBytes > l.DeviceBytes || l.BitmapPages != pagesFor(l.DataBlocks) {
		t.Fatalf("internal layout %+v", l)
	}
	if slack := l.DeviceBytes - l.MetaOffset - l.MetaBytes; slack >= PageSize+BlockSize {
		t.Fatalf("internal layout wastes %d bytes: %+v", slack, l)
	}
	// The smallest devices.
	min := uint64(2*HeaderSize + 2*4096 + PageSize + BlockSize)
	if l := mustLayout(t, min, true, 0, 1); l.DataBlocks != 1 {
		t.Fatalf("smallest internal layout %+v", l)
	}
	if l := mustLayout(t, BlockSize, false, 5*PageSize, 1); l.DataBlocks != 1 || l.MetaBytes != 5*PageSize {
		t.Fatalf("smallest external layout %+v", l)
	}
	for _, c := range []struct {
		dev      uint64
		internal bool
		metaDev  uint64
		slots    int
		want     error
		text     string
	}{
		{min - 1, true, 0, 1, ErrTooSmall, "cannot hold"},
		{0, true, 0, 1, ErrTooSmall, ""},
		{BlockSize - 1, false, 1 << 20, 1, ErrTooSmall, "no 4096-byte data block"},
		{1 << 30, false, 3 * PageSize, 1, ErrTooSmall, "metadata device"},
		{1 << 30, true, 1 << 20, 1, ErrLayout, "no metadata device"},
		{1 << 30, true, 0, 0, ErrLayout, "slots"},
		{1 << 30, true, 0, MaxALSlots + 1, ErrLayout, "slots"},
		{(MaxBlocks + 1) * BlockSize, false, 1 << 40, 1, ErrLayout, "maximum"},
		{^uint64(0), true, 0, 1, ErrLayout, "maximum"},
	} {
		_, err := NewLayout(c.dev, c.internal, c.metaDev, c.slots)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("NewLayout(%d, %v, %d, %d) = %v, want %v (%q)", c.dev, c.internal, c.metaDev, c.slots, err, c.want, c.text)
		}
	}
	// Layouts not made by NewLayout are refused.
	l.DataBlocks++
	if _, err := l.Decode(make([]byte, l.MetaBytes)); !errors.Is(err, ErrLayout) {
		t.Fatalf("Decode with a forged layout: %v", err)
	}
	if _, err := (Layout{}).Encode(&Record{}); !errors.Is(err, ErrLayout) {
		t.Fatalf("Encode with a zero layout: %v", err)
	}
}

func TestStrings(t *testing.T) {
	g := Generations{Current: 0x1a2b3c4d5e6f7081, History: [2]UUID{0x9f00, 1}}
	if s := g.String(); s != "C:1a2b3c4d5e6f7081 B:0 H:9f00,1" {
		t.Errorf("Generations.String() = %q", s)
	}
	for f, want := range map[Flags]string{
		0:                        "none",
		Consistent | WasPrimary:  "consistent|was-primary",
		KnownFlags:               "consistent|outdated|was-primary|peer-outdated|full-sync|clean-shutdown",
		PeerOutdated | 1<<10 | 1: "consistent|peer-outdated|0x400",
	} {
		if s := f.String(); s != want {
			t.Errorf("Flags(%#x).String() = %q, want %q", uint32(f), s, want)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, l := range []Layout{
		mustLayout(t, 3*BitsPerPage*BlockSize+5*BlockSize, false, 1<<30, 7), // 4 pages, the last short
		mustLayout(t, 1<<30, true, 0, 1237),                                 // 2-page headers
		mustLayout(t, 64*BlockSize, false, 1<<20, 1),                        // one word
	} {
		r := testRecord(l, 6)
		area := l.EncodeAll(nil, r)
		if uint64(len(area)) != l.MetaBytes {
			t.Fatalf("EncodeAll: %d bytes, MetaBytes %d", len(area), l.MetaBytes)
		}
		got, rep, err := l.DecodeReport(area)
		if err != nil {
			t.Fatal(err)
		}
		if d := sameRecord(got, r); d != "" {
			t.Fatalf("EncodeAll/Decode: %s differs", d)
		}
		if rep.Slot != 0 || !errors.Is(rep.Other, ErrNoMetadata) || rep.BadPages != 0 || rep.NewerPages != 0 {
			t.Fatalf("report %+v", rep)
		}
		// Extra bytes after the area are ignored.
		if _, err := l.Decode(append(area, 1, 2, 3)); err != nil {
			t.Fatal(err)
		}

		// A full Encode over the same area: the other slot.
		r2 := r.Clone()
		r2.Seq++
		r2.Gen.Current++
		r2.Bitmap.ClearRange(0, min(50, l.DataBlocks))
		ws, err := l.Encode(r2)
		if err != nil {
			t.Fatal(err)
		}
		if last := ws[len(ws)-1]; last.Offset != HeaderSize || len(last.Data) != HeaderSize {
			t.Fatalf("header write at %d, %d bytes", last.Offset, len(last.Data))
		}
		if ws[0].Offset != l.ALOffset(1) || len(ws[0].Data)%PageSize != 0 {
			t.Fatalf("activity-log write at %d, %d bytes", ws[0].Offset, len(ws[0].Data))
		}
		if len(ws) != 3 || ws[1].Offset != l.BitmapOffset() || uint64(len(ws[1].Data)) != l.BitmapPages*PageSize {
			t.Fatalf("a full Encode should write every page in one run: %d writes", len(ws))
		}
		apply(area, ws)
		got, rep, err = l.DecodeReport(area)
		if err != nil || sameRecord(got, r2) != "" || rep.Slot != 1 || rep.Other != nil {
			t.Fatalf("after Encode: %v, %+v", err, rep)
		}
		// A zero area has no metadata.
		if _, err := l.Decode(make([]byte, l.MetaBytes)); !errors.Is(err, ErrNoMetadata) {
			t.Fatalf("zero area: %v", err)
		}
		if _, err := l.Decode(area[:l.MetaBytes-1]); !errors.Is(err, ErrGeometry) {
			t.Fatalf("short area: %v", err)
		}
	}
}

func TestEncodeDelta(t *testing.T) {
	l := mustLayout(t, 5*BitsPerPage*BlockSize, false, 1<<30, 7) // 5 pages
	r := testRecord(l, 10)
	area := l.EncodeAll(nil, r)
	prev := r.Clone()

	// Header-only change: the activity log and the header.
	r.Seq++
	r.Flags |= Outdated
	ws, err := l.EncodeDelta(prev, r)
	if err != nil || len(ws) != 2 || ws[0].Offset != l.ALOffset(1) || ws[1].Offset != HeaderSize || len(ws[1].Data) != HeaderSize {
		t.Fatalf("header-only delta: %v, %d writes", err, len(ws))
	}
	apply(area, ws)
	prev = r.Clone()

	// Pages 1, 2 and 4 change: two runs, then the header.
	r.Seq++
	r.Bitmap.Set(1 * BitsPerPage)
	r.Bitmap.Clear(3*BitsPerPage - 1) // page 2, clear already
	r.Bitmap.Set(3*BitsPerPage - 2)
	r.Bitmap.Set(l.DataBlocks - 5)
	ws, err = l.EncodeDelta(prev, r)
	if err != nil {
		t.Fatal(err)
	}
	var offs []uint64
	for _, w := range ws {
		offs = append(offs, w.Offset, uint64(len(w.Data)))
	}
	want := []uint64{l.ALOffset(0), PageSize, l.BitmapOffset() + PageSize, 2 * PageSize, l.BitmapOffset() + 4*PageSize, PageSize, 0, HeaderSize}
	if !slices.Equal(offs, want) {
		t.Fatalf("delta writes (offset, length) %v, want %v", offs, want)
	}
	apply(area, ws)
	got, err := l.Decode(area)
	if err != nil || sameRecord(got, r) != "" {
		t.Fatalf("after delta: %v", err)
	}

	// Refusals.
	for _, c := range []struct {
		name     string
		prev, r  *Record
		contains string
	}{
		{"seq", r, r.Clone(), "does not follow"},
		{"shared", &Record{Seq: r.Seq - 1, Blocks: r.Blocks, Bitmap: r.Bitmap}, r, "shares"},
		{"prev invalid", &Record{Seq: r.Seq - 1}, r, "prev"},
	} {
		if _, err := l.EncodeDelta(c.prev, c.r); !errors.Is(err, ErrRecord) || !strings.Contains(err.Error(), c.contains) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if ws, err := l.EncodeDelta(nil, r); err != nil || len(ws) != 3 {
		t.Fatalf("EncodeDelta(nil) is not a full Encode: %v %d", err, len(ws))
	}
}

func TestCheck(t *testing.T) {
	l := mustLayout(t, 3*BlocksPerExtent*BlockSize, false, 1<<20, 2)
	ok := testRecord(l, 1)
	for _, c := range []struct {
		name string
		mod  func(r *Record)
	}{
		{"blocks", func(r *Record) { r.Blocks--; r.Bitmap = NewBitmap(r.Blocks) }},
		{"no bitmap", func(r *Record) { r.Bitmap = nil }},
		{"bitmap size", func(r *Record) { r.Bitmap = NewBitmap(r.Blocks + 1) }},
		{"flags", func(r *Record) { r.Flags |= 1 << 20 }},
		{"AL too long", func(r *Record) { r.AL = []uint32{0, 1, 2} }},
		{"AL past the end", func(r *Record) { r.AL = []uint32{3} }},
		{"AL duplicate", func(r *Record) { r.AL = []uint32{2, 2} }},
	} {
		r := ok.Clone()
		c.mod(r)
		if err := l.Check(r); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: Check = %v", c.name, err)
		}
		if _, err := l.Encode(r); !errors.Is(err, ErrRecord) {
			t.Errorf("%s: Encode = %v", c.name, err)
		}
	}
	if err := l.Check(nil); !errors.Is(err, ErrRecord) {
		t.Error("Check(nil)")
	}
	if err := l.Check(ok); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("EncodeAll of an invalid record did not panic")
		}
	}()
	l.EncodeAll(nil, &Record{})
}

// reseal recomputes the checksum of the header in slot s of area.
func reseal(l Layout, area []byte, s int) {
	h := area[l.HeaderOffset(s):][:headerLen]
	binary.LittleEndian.PutUint32(h[12:], headerCRC(h))
}

// resealAL recomputes the checksum of activity-log area s, in the area and
// in its header, then the header's.
func resealAL(l Layout, area []byte, s int) {
	a := area[l.ALOffset(s):][:l.ALBytes]
	n := uint64(binary.LittleEndian.Uint32(a[16:]))
	crc := alCRC(a[:alFixed+4*n])
	binary.LittleEndian.PutUint32(a[4:], crc)
	binary.LittleEndian.PutUint32(area[l.HeaderOffset(s)+96:], crc)
	reseal(l, area, s)
}

func resealPage(l Layout, area []byte, p uint64) {
	pg := area[l.BitmapOffset()+p*PageSize:][:PageSize]
	binary.LittleEndian.PutUint32(pg[4:], pageCRC(pg))
}

func TestDecodeHeaders(t *testing.T) {
	l := mustLayout(t, 2*BitsPerPage*BlockSize, false, 1<<30, 7)
	r := testRecord(l, 4)
	good := l.EncodeAll(nil, r)
	r5 := r.Clone()
	r5.Seq = 5
	r5.Gen.Current = 42
	ws, _ := l.Encode(r5)
	apply(good, ws) // slot A: Seq 4, slot B: Seq 5
	le := binary.LittleEndian

	for _, c := range []struct {
		name    string
		mod     func(a []byte)
		want    error  // nil: decodes
		seq     uint64 // when it decodes
		contain string
	}{
		{"intact", func([]byte) {}, nil, 5, ""},
		{"B torn", func(a []byte) { a[HeaderSize+70] ^= 1 }, nil, 4, ""},
		{"A torn", func(a []byte) { a[20] ^= 1 }, nil, 5, ""},
		{"both torn", func(a []byte) { a[20] ^= 1; a[HeaderSize+70] ^= 1 }, ErrCorrupt, 0, "checksum"},
		{"B wiped", func(a []byte) { clear(a[HeaderSize : 2*HeaderSize]) }, nil, 4, ""},
		{"both wiped", func(a []byte) { clear(a[:2*HeaderSize]) }, ErrNoMetadata, 0, ""},
		{"A wiped, B torn", func(a []byte) { clear(a[:HeaderSize]); a[HeaderSize+70] ^= 1 }, ErrCorrupt, 0, "no magic"},
		{"B version 2", func(a []byte) { le.PutUint32(a[HeaderSize+8:], 2); reseal(l, a, 1) }, ErrVersion, 0, "slot B"},
		{"A version 0, B newer", func(a []byte) { le.PutUint32(a[8:], 0) }, ErrVersion, 0, "slot A"},
		{"B other geometry", func(a []byte) { a[HeaderSize+26] = geoInternal; reseal(l, a, 1) }, ErrGeometry, 0, "internal=true"},
		{"B other blocks", func(a []byte) { le.PutUint64(a[HeaderSize+32:], 5); reseal(l, a, 1) }, ErrGeometry, 0, ""},
		{"B in slot A", func(a []byte) { copy(a, a[HeaderSize:2*HeaderSize]) }, nil, 5, ""},
		{"B misdirected", func(a []byte) { copy(a, a[HeaderSize:2*HeaderSize]); clear(a[HeaderSize : 2*HeaderSize]) }, ErrCorrupt, 0, "slot"},
		{"B unknown flag", func(a []byte) { le.PutUint32(a[HeaderSize+28:], 1<<30); reseal(l, a, 1) }, nil, 4, ""},
		{"B reserved", func(a []byte) { a[HeaderSize+27] = 1; reseal(l, a, 1) }, nil, 4, ""},
		{"B AL count huge", func(a []byte) { le.PutUint32(a[HeaderSize+60:], 1<<31) }, nil, 4, ""},
		{"B AL count > slots", func(a []byte) { le.PutUint32(a[HeaderSize+60:], 8); reseal(l, a, 1) }, nil, 4, ""},
		{"B reserved tail", func(a []byte) { a[HeaderSize+300] = 1; reseal(l, a, 1) }, nil, 4, ""},
		{"B unused sectors", func(a []byte) { a[HeaderSize+600] = 1 }, nil, 5, ""},
	} {
		a := slices.Clone(good)
		c.mod(a)
		got, err := l.Decode(a)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == nil && got.Seq != c.seq:
			t.Errorf("%s: decoded Seq %d, want %d", c.name, got.Seq, c.seq)
		case c.want == nil && c.seq == 4 && sameHeader(got, r) != "":
			t.Errorf("%s: %s differs", c.name, sameHeader(got, r))
		case c.want == nil && !got.Bitmap.Contains(r.Bitmap):
			// Slot B's full persist rewrote every page with Seq 5: under
			// header 4 they count as all set.
			t.Errorf("%s: bitmap lost bits", c.name)
		case c.want != nil && (!errors.Is(err, c.want) || !strings.Contains(err.Error(), c.contain)):
			t.Errorf("%s: %v, want %v (%q)", c.name, err, c.want, c.contain)
		}
	}
	// Another layout reading this area.
	other := mustLayout(t, 2*BitsPerPage*BlockSize, false, 1<<30, 8)
	if _, err := other.Decode(good); !errors.Is(err, ErrGeometry) {
		t.Errorf("other layout: %v", err)
	}
}

func TestDecodeActivityLog(t *testing.T) {
	l := mustLayout(t, 4*BitsPerPage*BlockSize, false, 1<<30, 300)
	r := testRecord(l, 4)
	for e := range uint32(126) { // 128 extents: a 2-sector activity log
		if !slices.Contains(r.AL, e) {
			r.AL = append(r.AL, e)
		}
	}
	good := l.EncodeAll(nil, r)
	le := binary.LittleEndian
	al := func(a []byte) []byte { return a[l.ALOffset(0):][:l.ALBytes] }
	for _, c := range []struct {
		name string
		mod  func(a []byte)
		lost bool
	}{
		{"intact", func([]byte) {}, false},
		{"stale bytes past the log", func(a []byte) { al(a)[alFixed+4*len(r.AL)+1] = 7 }, false},
		{"torn", func(a []byte) { al(a)[520] ^= 1 }, true},
		{"no magic", func(a []byte) { al(a)[0] = 'X'; resealAL(l, a, 0) }, true},
		{"other Seq", func(a []byte) { le.PutUint64(al(a)[8:], 2); resealAL(l, a, 0) }, true},
		{"other count", func(a []byte) { le.PutUint32(al(a)[16:], 1); resealAL(l, a, 0) }, true},
		{"reserved", func(a []byte) { al(a)[20] = 1; resealAL(l, a, 0) }, true},
		{"duplicate", func(a []byte) { copy(al(a)[alFixed+4:][:4], al(a)[alFixed:]); resealAL(l, a, 0) }, true},
		{"past the end", func(a []byte) { le.PutUint32(al(a)[alFixed:], 128); resealAL(l, a, 0) }, true},
		{"header names another", func(a []byte) { a[96] ^= 1; reseal(l, a, 0) }, true},
	} {
		a := slices.Clone(good)
		c.mod(a)
		got, rep, err := l.DecodeReport(a)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if d := sameRecord(got, r); !c.lost && (d != "" || rep.AL != nil) {
			t.Errorf("%s: %s differs, %v", c.name, d, rep.AL)
		}
		if c.lost && (!errors.Is(rep.AL, ErrCorrupt) || got.AL != nil || got.Bitmap.Count() != got.Blocks || sameHeader(got, r) != "AL") {
			t.Errorf("%s: AL %v, report %v, %v bits set, header %s", c.name, got.AL, rep.AL, got.Bitmap, sameHeader(got, r))
		}
		if c.lost {
			// The next persist puts the all-set bitmap on disk.
			next := got.Clone()
			next.Seq++
			ws, err := l.EncodeDelta(got, next)
			if err != nil {
				t.Fatal(err)
			}
			apply(a, ws)
			if again, err := l.Decode(a); err != nil || sameRecord(again, next) != "" {
				t.Errorf("%s: after the next persist: %v", c.name, err)
			}
		}
	}
}

func TestDecodePages(t *testing.T) {
	l := mustLayout(t, 2*BitsPerPage*BlockSize+100*BlockSize, false, 1<<30, 7) // 3 pages
	r := testRecord(l, 8)
	good := l.EncodeAll(nil, r)
	le := binary.LittleEndian
	page := func(a []byte, p uint64) []byte { return a[l.BitmapOffset()+p*PageSize:][:PageSize] }

	for _, c := range []struct {
		name       string
		mod        func(a []byte)
		bad, newer uint64
		allSet     []uint64 // pages that must decode as all set
	}{
		{"intact", func([]byte) {}, 0, 0, nil},
		{"torn page 1", func(a []byte) { page(a, 1)[600] = 1 }, 1, 0, []uint64{1}},
		{"page 0 newer", func(a []byte) { le.PutUint64(page(a, 0)[8:], 9); resealPage(l, a, 0) }, 0, 1, []uint64{0}},
		{"page 0 older", func(a []byte) { le.PutUint64(page(a, 0)[8:], 7); resealPage(l, a, 0) }, 0, 0, nil},
		{"pages swapped", func(a []byte) {
			p0 := slices.Clone(page(a, 0))
			copy(page(a, 0), page(a, 1))
			copy(page(a, 1), p0)
		}, 2, 0, []uint64{0, 1}},
		{"page 2 wiped", func(a []byte) { clear(page(a, 2)) }, 1, 0, []uint64{2}},
		{"page 2 padding bit", func(a []byte) {
			pg := page(a, 2)
			pg[pageHeader+8*((100+63)/64+1)] = 1
			resealPage(l, a, 2)
		}, 1, 0, []uint64{2}},
		{"page 2 tail bit", func(a []byte) {
			pg := page(a, 2)
			pg[pageHeader+8*(100/64)+7] |= 0x80 // bit 127 of the page, block 2*BitsPerPage+127
			resealPage(l, a, 2)
		}, 1, 0, []uint64{2}},
		{"reserved", func(a []byte) { page(a, 1)[20] = 1; resealPage(l, a, 1) }, 1, 0, []uint64{1}},
	} {
		a := slices.Clone(good)
		c.mod(a)
		got, rep, err := l.DecodeReport(a)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if rep.BadPages != c.bad || rep.NewerPages != c.newer {
			t.Errorf("%s: report %+v", c.name, rep)
		}
		check(t, got.Bitmap)
		if !got.Bitmap.Contains(r.Bitmap) {
			t.Errorf("%s: decoded bitmap lost bits", c.name)
		}
		want := r.Bitmap.Clone()
		for _, p := range c.allSet {
			first := p * BitsPerPage
			want.SetRange(first, min(BitsPerPage, want.Len()-first))
		}
		if !got.Bitmap.Equal(want) {
			t.Errorf("%s: bitmap %v, want %v", c.name, got.Bitmap, want)
		}
		// The next delta persist rewrites exactly the pages Decode did not
		// trust, even if the bits there do not change.
		next := got.Clone()
		next.Seq++
		ws, err := l.EncodeDelta(got, next)
		if err != nil {
			t.Fatal(err)
		}
		var pages []uint64
		for _, w := range ws[1 : len(ws)-1] {
			for o := uint64(0); o < uint64(len(w.Data)); o += PageSize {
				pages = append(pages, (w.Offset-l.BitmapOffset()+o)/PageSize)
			}
		}
		if !slices.Equal(pages, c.allSet) {
			t.Errorf("%s: delta rewrote pages %v, want %v", c.name, pages, c.allSet)
		}
		if next.suspect != nil {
			t.Errorf("%s: Encode kept the suspect note", c.name)
		}
		apply(a, ws)
		again, rep, err := l.DecodeReport(a)
		if err != nil || sameRecord(again, next) != "" || rep.BadPages+rep.NewerPages != 0 {
			t.Errorf("%s: after the repairing persist: %v %+v", c.name, err, rep)
		}
	}
}

func BenchmarkEncodeDelta(b *testing.B) {
	l := mustLayout(b, 1<<40, true, 0, 1237) // 1 TiB
	r := testRecord(l, 1)
	prev := r.Clone()
	for b.Loop() {
		r.Seq = prev.Seq + 1
		r.Bitmap.Set(r.Seq % r.Blocks)
		if _, err := l.EncodeDelta(prev, r); err != nil {
			b.Fatal(err)
		}
		prev.Seq = r.Seq
		prev.Bitmap.CopyFrom(r.Bitmap)
	}
}
