package meta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

var updateCorpus = flag.Bool("update", false, "rewrite the committed fuzz seed corpus under testdata/fuzz")

// fuzzLayout is the geometry FuzzDecode decodes against: 2 bitmap pages (the
// second one short), 7 activity-log slots; the area is 6 blocks of 4 KiB:
// headers A and B, activity logs A and B, pages 0 and 1.
func fuzzLayout() Layout {
	l, err := NewLayout((BitsPerPage+1000)*BlockSize, false, 1<<20, 7)
	if err != nil {
		panic(err)
	}
	return l
}

const fuzzParts = 6

// fuzzArea lays the six parts (headers A, B, activity logs A, B, pages 0, 1)
// out as an area of l, each cut or zero padded to its 4 KiB block.
func fuzzArea(l Layout, parts [fuzzParts][]byte) []byte {
	area := make([]byte, l.MetaBytes)
	for i, p := range parts {
		copy(area[i*PageSize:(i+1)*PageSize], p)
	}
	return area
}

// fuzzSplit is the inverse of fuzzArea, with trailing zeros trimmed so that
// corpus files stay small.
func fuzzSplit(area []byte) [fuzzParts][]byte {
	var parts [fuzzParts][]byte
	for i := range parts {
		if i*PageSize < len(area) {
			parts[i] = bytes.Clone(bytes.TrimRight(area[i*PageSize:min((i+1)*PageSize, len(area))], "\x00"))
		}
	}
	return parts
}

// resealArea recomputes every checksum in area that can be recomputed, so
// that the fuzzer's mutations reach the field checks behind them.
func resealArea(l Layout, area []byte) {
	le := binary.LittleEndian
	for s := range 2 {
		a := area[l.ALOffset(s):][:l.ALBytes]
		if n := uint64(le.Uint32(a[16:])); alFixed+4*n <= uint64(len(a)) {
			crc := alCRC(a[:alFixed+4*n])
			le.PutUint32(a[4:], crc)
			le.PutUint32(area[l.HeaderOffset(s)+96:], crc)
		}
		reseal(l, area, s)
	}
	for p := range l.BitmapPages {
		resealPage(l, area, p)
	}
}

var sentinels = []error{ErrNoMetadata, ErrCorrupt, ErrVersion, ErrGeometry, ErrLayout}

// checkDecode: Decode fails only with a sentinel; whatever it accepts is a
// record Encode accepts, with a consistent bitmap, and survives a round trip.
func checkDecode(t *testing.T, l Layout, area []byte) {
	r, rep, err := l.DecodeReport(area)
	if err != nil {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error %v is not a sentinel", err)
	}
	if err := l.Check(r); err != nil {
		t.Fatalf("decoded a record Encode refuses: %v", err)
	}
	check(t, r.Bitmap)
	if rep.Slot != int(r.Seq&1) {
		t.Fatalf("Seq %d from slot %d", r.Seq, rep.Slot)
	}
	again, err := l.Decode(area)
	if err != nil || sameRecord(again, r) != "" {
		t.Fatalf("Decode is not a function of the area: %v", err)
	}
	back, err := l.Decode(l.EncodeAll(nil, r))
	if err != nil || sameRecord(back, r) != "" {
		t.Fatalf("round trip: %v", err)
	}
}

// FuzzDecode: on any area, Decode never panics, fails only with a sentinel,
// and what it accepts is a valid record that round-trips. Each input is also
// tried with every checksum recomputed (random bytes almost never carry a
// good CRC), as one unpadded concatenation (wrong lengths), and against
// other layouts.
func FuzzDecode(f *testing.F) {
	l := fuzzLayout()
	others := []Layout{
		mustLayout(f, (BitsPerPage+1000+6)*BlockSize, true, 0, 7), // same area, internal
		mustLayout(f, (BitsPerPage+1000)*BlockSize, false, 1<<20, 8),
		mustLayout(f, 100*BlockSize, false, 1<<20, 1),
	}
	f.Fuzz(func(t *testing.T, hA, hB, alA, alB, p0, p1 []byte) {
		parts := [fuzzParts][]byte{hA, hB, alA, alB, p0, p1}
		area := fuzzArea(l, parts)
		checkDecode(t, l, area)
		checkDecode(t, l, bytes.Join(parts[:], nil))
		for _, o := range others {
			checkDecode(t, o, area)
		}
		resealArea(l, area)
		checkDecode(t, l, area)
	})
}

// FuzzDecodeRuns: DecodeRuns never panics, fails only with ErrRuns, and what
// it accepts re-encodes to the very same bytes (one bitmap, one encoding).
func FuzzDecodeRuns(f *testing.F) {
	f.Fuzz(func(t *testing.T, src []byte, blocks uint16) {
		b, err := DecodeRuns(src, uint64(blocks))
		if err != nil {
			if !errors.Is(err, ErrRuns) {
				t.Fatalf("error %v is not ErrRuns", err)
			}
			return
		}
		check(t, b)
		if again := AppendRuns(nil, b); !bytes.Equal(again, src) {
			t.Fatalf("accepted % x\nre-encodes to % x", src, again)
		}
	})
}

// seedCorpus is the committed seed corpus: file name -> fuzz arguments.
func seedCorpus(t testing.TB) map[string][]any {
	l := fuzzLayout()
	seeds := map[string][]any{}
	addArea := func(name string, area []byte) {
		parts := fuzzSplit(area)
		args := make([]any, len(parts))
		for i, p := range parts {
			args[i] = p
		}
		seeds[name] = args
	}
	r := &Record{
		Seq: 2, Blocks: l.DataBlocks, Node: 1,
		Gen:    Generations{Current: 0xC0FFEE, Bitmap: 0xBEEF, History: [2]UUID{0xAB, 0xCD}},
		Flags:  Consistent | WasPrimary,
		AL:     []uint32{31, 0, 7},
		Bitmap: NewBitmap(l.DataBlocks),
	}
	r.Bitmap.SetRange(100, 300)
	r.Bitmap.Set(l.DataBlocks - 1)
	validA := l.EncodeAll(nil, r)
	addArea("valid_a", validA)

	r3 := r.Clone()
	r3.Seq = 3
	r3.Flags = Consistent | CleanShutdown
	r3.AL = nil
	r3.Bitmap.ClearRange(100, 50)
	r3.Bitmap.Set(20000) // page 0, second half
	r3.Bitmap.Set(BitsPerPage + 5)
	ws, err := l.Encode(r3)
	if err != nil {
		t.Fatal(err)
	}
	validAB := bytes.Clone(validA)
	apply(validAB, ws)
	addArea("valid_ab", validAB)

	// Crash during the pages of persist 3: page 0 torn, page 1 newer.
	torn := bytes.Clone(validA)
	apply(torn, ws[:len(ws)-1])
	copy(torn[l.BitmapOffset()+2048:][:2048], validA[l.BitmapOffset()+2048:])
	addArea("torn_pages", torn)

	// Header B's sector half old, half new (its checksum fails).
	tornHeader := bytes.Clone(validAB)
	copy(tornHeader[HeaderSize+256:][:256], validA[HeaderSize+256:])
	tornHeader[HeaderSize+300] = 0x5a
	addArea("torn_header", tornHeader)

	alBad := bytes.Clone(validAB)
	alBad[l.ALOffset(1)+8]++
	addArea("al_mismatch", alBad)

	v2 := bytes.Clone(validA)
	binary.LittleEndian.PutUint32(v2[8:], 2)
	reseal(l, v2, 0)
	addArea("version2", v2)

	other := mustLayout(t, 100*BlockSize, false, 1<<20, 1)
	o := &Record{Seq: 1, Blocks: other.DataBlocks, Bitmap: NewBitmap(other.DataBlocks)}
	addArea("other_geometry", other.EncodeAll(nil, o))

	addArea("empty", make([]byte, l.MetaBytes))

	// Random bytes at the start of every block (keeping the corpus small).
	garbage := make([]byte, l.MetaBytes)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range garbage {
		if i%PageSize < 600 {
			garbage[i] = byte(rng.Uint32())
		}
	}
	addArea("garbage", garbage)
	resealArea(l, garbage)
	copy(garbage, headerMagic)
	binary.LittleEndian.PutUint32(garbage[8:], Version)
	reseal(l, garbage, 0)
	addArea("garbage_with_magic", garbage)
	return seeds
}

func seedRuns() map[string][]any {
	b := NewBitmap(1000)
	b.SetRange(10, 100)
	b.Set(999)
	return map[string][]any{
		"bitmap":      {AppendRuns(nil, b), uint16(1000)},
		"all_set":     {[]byte{0, 0xe8, 0x07}, uint16(1000)},
		"empty":       {[]byte{}, uint16(0)},
		"non_minimal": {[]byte{0x8a, 0x00}, uint16(10)},
		"overflow":    {[]byte{3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, uint16(10)},
	}
}

func marshalCorpus(args []any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		default:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		}
	}
	return b.Bytes()
}

// TestSeedCorpus keeps the committed corpus under testdata/fuzz in step with
// the format: it regenerates it and compares. After a deliberate format
// change: go test ./internal/meta -run TestSeedCorpus -update
func TestSeedCorpus(t *testing.T) {
	for _, c := range []struct {
		target string
		seeds  map[string][]any
	}{
		{"FuzzDecode", seedCorpus(t)},
		{"FuzzDecodeRuns", seedRuns()},
	} {
		dir := filepath.Join("testdata", "fuzz", c.target)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(c.seeds)) {
			want := marshalCorpus(c.seeds[name])
			path := filepath.Join(dir, name)
			if *updateCorpus {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v): run go test ./internal/meta -run TestSeedCorpus -update", path, err)
			}
		}
	}
}

// TestSeedCorpusDecodes pins what the interesting seeds decode to.
func TestSeedCorpusDecodes(t *testing.T) {
	l := fuzzLayout()
	seeds := seedCorpus(t)
	decode := func(name string) (*Record, Report, error) {
		var parts [fuzzParts][]byte
		for i, a := range seeds[name] {
			parts[i] = a.([]byte)
		}
		return l.DecodeReport(fuzzArea(l, parts))
	}
	for _, c := range []struct {
		name       string
		seq        uint64
		err        error
		bad, newer uint64
		alLost     bool
	}{
		{"valid_a", 2, nil, 0, 0, false},
		{"valid_ab", 3, nil, 0, 0, false},
		{"torn_pages", 2, nil, 1, 1, false},
		{"torn_header", 2, nil, 0, 2, false},
		{"al_mismatch", 3, nil, 0, 0, true},
		{"version2", 0, ErrVersion, 0, 0, false},
		{"other_geometry", 0, ErrGeometry, 0, 0, false},
		{"empty", 0, ErrNoMetadata, 0, 0, false},
		{"garbage", 0, ErrNoMetadata, 0, 0, false},
		{"garbage_with_magic", 0, ErrCorrupt, 0, 0, false},
	} {
		r, rep, err := decode(c.name)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("%s: %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil || r.Seq != c.seq || rep.BadPages != c.bad || rep.NewerPages != c.newer || (rep.AL != nil) != c.alLost {
			t.Errorf("%s: %v, Seq %d, report %+v", c.name, err, r.Seq, rep)
		}
	}
}
