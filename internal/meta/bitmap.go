package meta

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
)

// Bitmap is the out-of-sync bitmap: bit i set means block i (BlockSize
// bytes) may differ from the peer's copy. It keeps the number of set bits up
// to date in every mutator, so Count is O(1). Bits past Len are always zero.
//
// Indexes at or past Len are programming errors and panic, as slice indexes
// do; so do length mismatches between two bitmaps.
type Bitmap struct {
	words []uint64
	n     uint64
	count uint64
}

// NewBitmap returns an all-clear bitmap of blocks bits.
func NewBitmap(blocks uint64) *Bitmap {
	return &Bitmap{words: make([]uint64, (blocks+63)/64), n: blocks}
}

// Len is the number of bits (blocks).
func (b *Bitmap) Len() uint64 { return b.n }

// Count is the number of set bits.
func (b *Bitmap) Count() uint64 { return b.count }

func (b *Bitmap) check(i uint64) {
	if i >= b.n {
		panic(fmt.Sprintf("meta: bit %d out of range [0,%d)", i, b.n))
	}
}

func (b *Bitmap) checkRange(first, n uint64) {
	if first > b.n || n > b.n-first {
		panic(fmt.Sprintf("meta: bit range [%d,+%d) out of range [0,%d)", first, n, b.n))
	}
}

func (b *Bitmap) checkLen(o *Bitmap) {
	if o.n != b.n {
		panic(fmt.Sprintf("meta: bitmap length mismatch: %d vs %d", b.n, o.n))
	}
}

// Test reports whether bit i is set.
func (b *Bitmap) Test(i uint64) bool {
	b.check(i)
	return b.words[i/64]&(1<<(i%64)) != 0
}

// Set sets bit i and reports whether it was clear.
func (b *Bitmap) Set(i uint64) bool {
	b.check(i)
	w, m := &b.words[i/64], uint64(1)<<(i%64)
	if *w&m != 0 {
		return false
	}
	*w |= m
	b.count++
	return true
}

// Clear clears bit i and reports whether it was set.
func (b *Bitmap) Clear(i uint64) bool {
	b.check(i)
	w, m := &b.words[i/64], uint64(1)<<(i%64)
	if *w&m == 0 {
		return false
	}
	*w &^= m
	b.count--
	return true
}

// forRange calls f(word index, mask) for the words covering bits
// [first, first+n), with mask selecting the bits of the range in that word.
func forRange(first, n uint64, f func(w int, mask uint64)) {
	if n == 0 {
		return
	}
	last := first + n - 1
	fw, lw := first/64, last/64
	for w := fw; w <= lw; w++ {
		mask := ^uint64(0)
		if w == fw {
			mask &= ^uint64(0) << (first % 64)
		}
		if w == lw {
			mask &= ^uint64(0) >> (63 - last%64)
		}
		f(int(w), mask)
	}
}

// SetRange sets bits [first, first+n) and returns how many were clear.
func (b *Bitmap) SetRange(first, n uint64) uint64 {
	b.checkRange(first, n)
	var added uint64
	forRange(first, n, func(w int, mask uint64) {
		added += uint64(bits.OnesCount64(mask &^ b.words[w]))
		b.words[w] |= mask
	})
	b.count += added
	return added
}

// ClearRange clears bits [first, first+n) and returns how many were set.
func (b *Bitmap) ClearRange(first, n uint64) uint64 {
	b.checkRange(first, n)
	var removed uint64
	forRange(first, n, func(w int, mask uint64) {
		removed += uint64(bits.OnesCount64(mask & b.words[w]))
		b.words[w] &^= mask
	})
	b.count -= removed
	return removed
}

// SetAll sets every bit.
func (b *Bitmap) SetAll() { b.SetRange(0, b.n) }

// ClearAll clears every bit.
func (b *Bitmap) ClearAll() {
	clear(b.words)
	b.count = 0
}

// ExtentOf is the activity-log extent holding block i.
func ExtentOf(block uint64) uint32 { return uint32(block / BlocksPerExtent) }

// ExtentCount is the number of activity-log extents covering blocks blocks.
func ExtentCount(blocks uint64) uint64 { return (blocks + BlocksPerExtent - 1) / BlocksPerExtent }

// SetExtents sets the bits of every block in the given activity-log extents
// (what a node does with its activity log after a crash as Primary) and
// returns how many were clear. Extents past the end are ignored; the last
// extent may be partial.
func (b *Bitmap) SetExtents(extents []uint32) uint64 {
	var added uint64
	for _, e := range extents {
		first := uint64(e) * BlocksPerExtent
		if first >= b.n {
			continue
		}
		added += b.SetRange(first, min(BlocksPerExtent, b.n-first))
	}
	return added
}

// NextSet returns the first set bit at or after from, scanning a word at a
// time; ok is false if there is none.
func (b *Bitmap) NextSet(from uint64) (uint64, bool) {
	if from >= b.n {
		return 0, false
	}
	w := from / 64
	word := b.words[w] & (^uint64(0) << (from % 64))
	for {
		if word != 0 {
			return w*64 + uint64(bits.TrailingZeros64(word)), true // bits past n are 0
		}
		w++
		if w >= uint64(len(b.words)) {
			return 0, false
		}
		word = b.words[w]
	}
}

// NextClear returns the first clear bit at or after from; ok is false if
// there is none.
func (b *Bitmap) NextClear(from uint64) (uint64, bool) {
	if from >= b.n {
		return 0, false
	}
	w := from / 64
	word := ^b.words[w] & (^uint64(0) << (from % 64))
	for {
		if word != 0 {
			i := w*64 + uint64(bits.TrailingZeros64(word))
			return i, i < b.n // the padding past n reads as clear
		}
		w++
		if w >= uint64(len(b.words)) {
			return 0, false
		}
		word = ^b.words[w]
	}
}

// Or sets every bit that is set in o.
func (b *Bitmap) Or(o *Bitmap) {
	b.checkLen(o)
	var count uint64
	for i, w := range o.words {
		b.words[i] |= w
		count += uint64(bits.OnesCount64(b.words[i]))
	}
	b.count = count
}

// CopyFrom makes b equal to o, which must have the same length.
func (b *Bitmap) CopyFrom(o *Bitmap) {
	b.checkLen(o)
	copy(b.words, o.words)
	b.count = o.count
}

// Clone returns an independent copy.
func (b *Bitmap) Clone() *Bitmap {
	return &Bitmap{words: slices.Clone(b.words), n: b.n, count: b.count}
}

// Equal reports whether o has the same length and bits.
func (b *Bitmap) Equal(o *Bitmap) bool {
	return b.n == o.n && b.count == o.count && slices.Equal(b.words, o.words)
}

// Contains reports whether every bit set in o is set in b (lengths must
// match).
func (b *Bitmap) Contains(o *Bitmap) bool {
	b.checkLen(o)
	for i, w := range o.words {
		if w&^b.words[i] != 0 {
			return false
		}
	}
	return true
}

// String is "<count>/<len>", for logs.
func (b *Bitmap) String() string { return fmt.Sprintf("%d/%d", b.count, b.n) }

// AppendRuns appends the compact transfer form of b to dst: the lengths of
// alternating runs of clear and set bits, starting with a clear run (0 if
// bit 0 is set), each as a uvarint (encoding/binary). Only the first run may
// be 0; the runs add up to Len; an empty bitmap encodes to nothing. The
// encoding is canonical: every bitmap has exactly one.
//
// Each run takes 1 byte below 128 blocks, 2 below 2^14, 3 below 2^21 (8 GiB),
// so an all-clear or all-set bitmap of any size is a few bytes.
func AppendRuns(dst []byte, b *Bitmap) []byte {
	var pos uint64
	set := false
	for pos < b.n {
		var next uint64
		var ok bool
		if set {
			next, ok = b.NextClear(pos)
		} else {
			next, ok = b.NextSet(pos)
		}
		if !ok {
			next = b.n
		}
		dst = binary.AppendUvarint(dst, next-pos)
		pos, set = next, !set
	}
	return dst
}

// DecodeRuns decodes the form AppendRuns makes into a bitmap of blocks bits.
// It fails with ErrRuns unless src is exactly one canonical encoding of a
// bitmap of that length. Work is bounded by len(src) runs and blocks bits;
// blocks is the caller's own size, not read from src.
func DecodeRuns(src []byte, blocks uint64) (*Bitmap, error) {
	b := NewBitmap(blocks)
	var pos uint64
	set := false
	for i := 0; len(src) > 0; i++ {
		v, k := binary.Uvarint(src)
		if k <= 0 {
			return nil, fmt.Errorf("%w: run %d: bad varint", ErrRuns, i)
		}
		if k > 1 && src[k-1] == 0 {
			return nil, fmt.Errorf("%w: run %d: non-minimal varint", ErrRuns, i)
		}
		src = src[k:]
		if v == 0 && (i > 0 || blocks == 0) {
			return nil, fmt.Errorf("%w: run %d: empty run", ErrRuns, i)
		}
		if v > blocks-pos {
			return nil, fmt.Errorf("%w: run %d: %d bits past the end at %d of %d", ErrRuns, i, v, pos, blocks)
		}
		if set {
			b.SetRange(pos, v)
		}
		pos, set = pos+v, !set
	}
	if pos != blocks {
		return nil, fmt.Errorf("%w: runs cover %d of %d bits", ErrRuns, pos, blocks)
	}
	return b, nil
}
