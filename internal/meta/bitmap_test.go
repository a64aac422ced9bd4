package meta

import (
	"bytes"
	"errors"
	"math/bits"
	"testing"

	"pgregory.net/rapid"
)

// check verifies b's invariants: Count matches the bits, padding is clear.
func check(t interface{ Fatalf(string, ...any) }, b *Bitmap) {
	var n uint64
	for _, w := range b.words {
		n += uint64(bits.OnesCount64(w))
	}
	if n != b.Count() {
		t.Fatalf("Count() = %d, %d bits are set", b.Count(), n)
	}
	if uint64(len(b.words)) != (b.n+63)/64 {
		t.Fatalf("%d words for %d bits", len(b.words), b.n)
	}
	if tail := b.n % 64; tail != 0 && b.words[len(b.words)-1]>>tail != 0 {
		t.Fatalf("bits set past Len %d: %#x", b.n, b.words[len(b.words)-1])
	}
}

func TestBitmapBasics(t *testing.T) {
	b := NewBitmap(130)
	if b.Len() != 130 || b.Count() != 0 {
		t.Fatalf("new bitmap: Len %d Count %d", b.Len(), b.Count())
	}
	if !b.Set(0) || b.Set(0) || !b.Set(129) || !b.Set(64) {
		t.Fatal("Set reports change wrongly")
	}
	if b.Count() != 3 || !b.Test(0) || !b.Test(64) || !b.Test(129) || b.Test(1) || b.Test(63) {
		t.Fatalf("after Set: Count %d", b.Count())
	}
	if !b.Clear(64) || b.Clear(64) || b.Count() != 2 || b.Test(64) {
		t.Fatal("Clear")
	}
	if got := b.SetRange(60, 10); got != 10 || b.Count() != 12 {
		t.Fatalf("SetRange(60,10) = %d, Count %d", got, b.Count())
	}
	if got := b.SetRange(0, 130); got != 130-12 || b.Count() != 130 {
		t.Fatalf("SetRange all = %d, Count %d", got, b.Count())
	}
	check(t, b)
	if got := b.ClearRange(1, 128); got != 128 || b.Count() != 2 || !b.Test(0) || !b.Test(129) {
		t.Fatalf("ClearRange(1,128) = %d, Count %d", got, b.Count())
	}
	if got := b.ClearRange(5, 0); got != 0 {
		t.Fatal("empty ClearRange cleared bits")
	}
	b.SetAll()
	check(t, b)
	if b.Count() != 130 {
		t.Fatalf("SetAll: Count %d", b.Count())
	}
	b.ClearAll()
	if b.Count() != 0 {
		t.Fatal("ClearAll")
	}
	check(t, b)
	if s := b.String(); s != "0/130" {
		t.Fatalf("String %q", s)
	}
}

func TestBitmapEmpty(t *testing.T) {
	b := NewBitmap(0)
	b.SetAll()
	b.ClearAll()
	if b.Count() != 0 || b.SetRange(0, 0) != 0 {
		t.Fatal("empty bitmap")
	}
	if _, ok := b.NextSet(0); ok {
		t.Fatal("NextSet in an empty bitmap")
	}
	if got := AppendRuns(nil, b); len(got) != 0 {
		t.Fatalf("runs of an empty bitmap: % x", got)
	}
	if d, err := DecodeRuns(nil, 0); err != nil || d.Len() != 0 {
		t.Fatal(err)
	}
}

func TestBitmapPanics(t *testing.T) {
	b := NewBitmap(100)
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"Test", func() { b.Test(100) }},
		{"Set", func() { b.Set(100) }},
		{"Clear", func() { b.Clear(1 << 40) }},
		{"SetRange", func() { b.SetRange(50, 51) }},
		{"SetRange-overflow", func() { b.SetRange(2, ^uint64(0)) }},
		{"ClearRange", func() { b.ClearRange(101, 0) }},
		{"Or", func() { b.Or(NewBitmap(101)) }},
		{"CopyFrom", func() { b.CopyFrom(NewBitmap(99)) }},
		{"Contains", func() { b.Contains(NewBitmap(64)) }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", c.name)
				}
			}()
			c.f()
		}()
	}
}

func TestNextSetAcrossWords(t *testing.T) {
	b := NewBitmap(1000)
	for _, i := range []uint64{3, 64, 127, 128, 500, 999} {
		b.Set(i)
	}
	want := []struct {
		from, at uint64
		ok       bool
	}{
		{0, 3, true}, {3, 3, true}, {4, 64, true}, {65, 127, true}, {128, 128, true},
		{129, 500, true}, {501, 999, true}, {999, 999, true}, {1000, 0, false}, {1 << 62, 0, false},
	}
	for _, w := range want {
		if at, ok := b.NextSet(w.from); at != w.at || ok != w.ok {
			t.Errorf("NextSet(%d) = %d,%v want %d,%v", w.from, at, ok, w.at, w.ok)
		}
	}
	b.Clear(999)
	if _, ok := b.NextSet(501); ok {
		t.Error("NextSet past the last set bit")
	}
	// NextClear, with the padding past Len (1000 is not a multiple of 64)
	// never reported as clear.
	b.SetAll()
	if _, ok := b.NextClear(0); ok {
		t.Error("NextClear in a full bitmap")
	}
	b.Clear(700)
	if at, ok := b.NextClear(3); at != 700 || !ok {
		t.Errorf("NextClear(3) = %d,%v", at, ok)
	}
	if _, ok := b.NextClear(701); ok {
		t.Error("NextClear reported padding")
	}
}

func TestBitmapOrCopyEqual(t *testing.T) {
	a, b := NewBitmap(200), NewBitmap(200)
	a.SetRange(0, 10)
	b.SetRange(5, 100)
	b.Set(199)
	a.Or(b)
	check(t, a)
	if a.Count() != 106 || !a.Test(199) || !a.Test(0) || a.Test(105) {
		t.Fatalf("Or: Count %d", a.Count())
	}
	if !a.Contains(b) || b.Contains(a) {
		t.Fatal("Contains")
	}
	c := a.Clone()
	if !c.Equal(a) {
		t.Fatal("Clone not Equal")
	}
	c.Clear(0)
	if c.Equal(a) || !a.Test(0) {
		t.Fatal("Clone shares storage")
	}
	c.CopyFrom(a)
	if !c.Equal(a) || c.Count() != a.Count() {
		t.Fatal("CopyFrom")
	}
	if NewBitmap(199).Equal(NewBitmap(200)) {
		t.Fatal("Equal ignores length")
	}
}

func TestSetExtents(t *testing.T) {
	b := NewBitmap(2*BlocksPerExtent + 10) // the third extent is partial
	if got := b.SetExtents([]uint32{2, 0, 7, NoExtent}); got != BlocksPerExtent+10 {
		t.Fatalf("SetExtents = %d", got)
	}
	if b.Test(BlocksPerExtent) || !b.Test(BlocksPerExtent-1) || !b.Test(2*BlocksPerExtent+9) {
		t.Fatal("wrong bits")
	}
	if got := b.SetExtents([]uint32{0, 1}); got != BlocksPerExtent {
		t.Fatalf("SetExtents again = %d", got)
	}
	if ExtentOf(BlocksPerExtent-1) != 0 || ExtentOf(BlocksPerExtent) != 1 || ExtentCount(1) != 1 || ExtentCount(BlocksPerExtent) != 1 || ExtentCount(BlocksPerExtent+1) != 2 {
		t.Fatal("ExtentOf/Extents")
	}
}

// TestBitmapModel runs random mutators against a []bool model: every return
// value, Count, Test and NextSet agree after every step.
func TestBitmapModel(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.Uint64Range(0, 300).Draw(t, "n")
		b, m := NewBitmap(n), make([]bool, n)
		count := func() (c uint64) {
			for _, v := range m {
				if v {
					c++
				}
			}
			return c
		}
		idx := rapid.Uint64Range(0, max(n, 1)-1)
		for range rapid.IntRange(0, 40).Draw(t, "steps") {
			if n == 0 {
				break
			}
			i := idx.Draw(t, "i")
			switch rapid.IntRange(0, 7).Draw(t, "op") {
			case 0:
				if b.Set(i) == m[i] {
					t.Fatalf("Set(%d) change report wrong", i)
				}
				m[i] = true
			case 1:
				if b.Clear(i) != m[i] {
					t.Fatalf("Clear(%d) change report wrong", i)
				}
				m[i] = false
			case 2, 3:
				k := rapid.Uint64Range(0, n-i).Draw(t, "k")
				set := rapid.Bool().Draw(t, "set")
				var want uint64
				for j := i; j < i+k; j++ {
					if m[j] != set {
						want++
					}
					m[j] = set
				}
				var got uint64
				if set {
					got = b.SetRange(i, k)
				} else {
					got = b.ClearRange(i, k)
				}
				if got != want {
					t.Fatalf("range(%d,%d,%v) = %d, want %d", i, k, set, got, want)
				}
			case 4:
				o := NewBitmap(n)
				for range rapid.IntRange(0, 5).Draw(t, "orbits") {
					j := idx.Draw(t, "j")
					o.Set(j)
					m[j] = true
				}
				b.Or(o)
			case 5:
				if rapid.Bool().Draw(t, "all") {
					b.SetAll()
					for j := range m {
						m[j] = true
					}
				} else {
					b.ClearAll()
					clear(m)
				}
			case 6:
				c := NewBitmap(n)
				c.CopyFrom(b)
				b = c.Clone()
			case 7:
				e := uint32(rapid.Uint64Range(0, ExtentCount(n)).Draw(t, "extent"))
				b.SetExtents([]uint32{e})
				for j := uint64(e) * BlocksPerExtent; j < min(n, uint64(e+1)*BlocksPerExtent); j++ {
					m[j] = true
				}
			}
			check(t, b)
			if b.Count() != count() {
				t.Fatalf("Count %d, model %d", b.Count(), count())
			}
			for j := range m {
				if b.Test(uint64(j)) != m[j] {
					t.Fatalf("bit %d: %v, model %v", j, b.Test(uint64(j)), m[j])
				}
			}
			from := idx.Draw(t, "from")
			want, wantOK := uint64(0), false
			for j := from; j < n; j++ {
				if m[j] {
					want, wantOK = j, true
					break
				}
			}
			if got, ok := b.NextSet(from); got != want || ok != wantOK {
				t.Fatalf("NextSet(%d) = %d,%v, model %d,%v", from, got, ok, want, wantOK)
			}
			runs := AppendRuns(nil, b)
			d, err := DecodeRuns(runs, n)
			if err != nil || !d.Equal(b) {
				t.Fatalf("runs round trip: %v", err)
			}
		}
	})
}

func TestRuns(t *testing.T) {
	mk := func(n uint64, set ...uint64) *Bitmap {
		b := NewBitmap(n)
		for _, i := range set {
			b.Set(i)
		}
		return b
	}
	full := NewBitmap(1 << 30)
	full.SetAll()
	for _, c := range []struct {
		b    *Bitmap
		want []byte
	}{
		{NewBitmap(10), []byte{10}},
		{mk(10, 0), []byte{0, 1, 9}},
		{mk(10, 9), []byte{9, 1}},
		{mk(10, 0, 1, 2, 5), []byte{0, 3, 2, 1, 4}},
		{mk(300, 299), []byte{0xab, 0x02, 1}},
		{full, []byte{0, 0x80, 0x80, 0x80, 0x80, 0x04}},
	} {
		got := AppendRuns([]byte{0xee}, c.b)
		if !bytes.Equal(got[1:], c.want) || got[0] != 0xee {
			t.Errorf("AppendRuns(%v) = % x, want % x", c.b, got[1:], c.want)
			continue
		}
		d, err := DecodeRuns(c.want, c.b.Len())
		if err != nil || !d.Equal(c.b) {
			t.Errorf("DecodeRuns(% x): %v", c.want, err)
		}
	}
	for _, c := range []struct {
		src    []byte
		blocks uint64
	}{
		{nil, 10},                // covers nothing
		{[]byte{9}, 10},          // short
		{[]byte{11}, 10},         // past the end
		{[]byte{10, 0}, 10},      // trailing zero run
		{[]byte{5, 0, 5}, 10},    // zero run in the middle
		{[]byte{10, 1}, 10},      // trailing run
		{[]byte{0}, 0},           // an empty bitmap encodes to nothing
		{[]byte{0x8a, 0x00}, 10}, // non-minimal varint
		{[]byte{0x80}, 10},       // truncated varint
		{[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, 10}, // varint overflow
		{[]byte{3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 10},    // run sum overflow
	} {
		if _, err := DecodeRuns(c.src, c.blocks); !errors.Is(err, ErrRuns) {
			t.Errorf("DecodeRuns(% x, %d) = %v, want ErrRuns", c.src, c.blocks, err)
		}
	}
}

func BenchmarkAppendRuns(b *testing.B) {
	bm := NewBitmap(1 << 28) // 1 TiB
	for i := uint64(0); i < bm.Len(); i += 1 << 14 {
		bm.SetRange(i, 100)
	}
	var buf []byte
	for b.Loop() {
		buf = AppendRuns(buf[:0], bm)
	}
}
