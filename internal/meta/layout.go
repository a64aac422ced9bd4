package meta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"slices"
)

// Version is the on-disk format version.
const Version = 1

// PageSize is the size of a bitmap page, and the unit of every metadata
// write.
const PageSize = 4096

const (
	headerMagic = "TANDEMMD"
	alMagic     = "TDAL"
	pageMagic   = "TDBM"

	headerLen  = 512 // the used part of a header slot: one sector
	alFixed    = 24  // activity-log area bytes before the extents
	pageHeader = 24  // bitmap page bytes before the bitmap words

	wordsPerPage = (PageSize - pageHeader) / 8

	geoInternal = 1 // header byte 26
)

// HeaderSize is the size of a header slot. Only its first 512-byte sector
// is used, so that a header write is atomic; the rest is written as zeros.
const HeaderSize = 4096

// BitsPerPage is the number of blocks one bitmap page covers (32576: 127.25
// MiB of data).
const BitsPerPage = wordsPerPage * 64

// MaxBlocks bounds the data area: 2^38 blocks is 1 PiB, a 32 GiB bitmap.
const MaxBlocks = 1 << 38

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Layout is where the metadata lives and how large its parts are. Make it
// with NewLayout; Encode and Decode refuse a Layout NewLayout would not have
// made.
type Layout struct {
	DeviceBytes     uint64 // the backing device, as given to NewLayout
	MetaDeviceBytes uint64 // the external metadata device, as given; 0 for internal
	Internal        bool   // metadata at the end of the backing device
	ALSlots         int    // activity-log slots
	DataBlocks      uint64 // the data area: blocks [0, DataBlocks) of the backing device
	// MetaOffset is where the metadata area starts: on the backing device
	// (internal, right after the data area) or on the metadata device
	// (external: 0). Write offsets are relative to it.
	MetaOffset  uint64
	MetaBytes   uint64 // the size of the metadata area
	ALBytes     uint64 // the size of one activity-log area
	BitmapPages uint64 // bitmap pages, after the header slots and activity-log areas
}

// HeaderOffset is where header slot s (0 = A, 1 = B) starts in the metadata
// area.
func (l Layout) HeaderOffset(s int) uint64 { return uint64(s) * HeaderSize }

// ALOffset is where activity-log area s (0 = A, 1 = B) starts in the
// metadata area.
func (l Layout) ALOffset(s int) uint64 { return 2*HeaderSize + uint64(s)*l.ALBytes }

// BitmapOffset is where bitmap page 0 starts in the metadata area.
func (l Layout) BitmapOffset() uint64 { return 2*HeaderSize + 2*l.ALBytes }

func pagesFor(blocks uint64) uint64 { return (blocks + BitsPerPage - 1) / BitsPerPage }

func roundUp(n, to uint64) uint64 { return (n + to - 1) / to * to }

// NewLayout computes the layout for a backing device of deviceBytes bytes
// with alSlots activity-log slots (1 to MaxALSlots).
//
// Internal (metaDeviceBytes must be 0): the metadata area takes the end of
// the device and the data area is the whole 4 KiB blocks before it; a device
// size that is not a multiple of 4096 leaves its tail unused. External: the
// data area is the whole device in 4 KiB blocks, and the metadata area starts
// at offset 0 of a metadata device of metaDeviceBytes bytes.
//
// Errors wrap ErrTooSmall (no room for the metadata plus one data block) or
// ErrLayout (bad alSlots, a metadata device with internal metadata, a data
// area over MaxBlocks).
func NewLayout(deviceBytes uint64, internal bool, metaDeviceBytes uint64, alSlots int) (Layout, error) {
	if alSlots < 1 || alSlots > MaxALSlots {
		return Layout{}, fmt.Errorf("%w: %d activity-log slots, want 1..%d", ErrLayout, alSlots, MaxALSlots)
	}
	if internal && metaDeviceBytes != 0 {
		return Layout{}, fmt.Errorf("%w: internal metadata takes no metadata device (got %d bytes)", ErrLayout, metaDeviceBytes)
	}
	l := Layout{
		DeviceBytes:     deviceBytes,
		MetaDeviceBytes: metaDeviceBytes,
		Internal:        internal,
		ALSlots:         alSlots,
		ALBytes:         roundUp(alFixed+4*uint64(alSlots), PageSize),
	}
	blocks := deviceBytes / BlockSize
	if internal {
		// Size the bitmap for the whole device: an upper bound, since the
		// data area is what the metadata leaves.
		meta := l.BitmapOffset() + pagesFor(min(blocks, MaxBlocks+1))*PageSize
		if blocks*BlockSize < meta+BlockSize {
			return Layout{}, fmt.Errorf("%w: %d bytes cannot hold %d bytes of internal metadata and one %d-byte block",
				ErrTooSmall, deviceBytes, meta, BlockSize)
		}
		blocks = (blocks*BlockSize - meta) / BlockSize
	} else if blocks == 0 {
		return Layout{}, fmt.Errorf("%w: %d bytes hold no %d-byte data block", ErrTooSmall, deviceBytes, BlockSize)
	}
	if blocks > MaxBlocks {
		return Layout{}, fmt.Errorf("%w: a data area of %d blocks is over the %d-block maximum", ErrLayout, blocks, uint64(MaxBlocks))
	}
	l.DataBlocks = blocks
	l.BitmapPages = pagesFor(blocks)
	l.MetaBytes = l.BitmapOffset() + l.BitmapPages*PageSize
	if internal {
		l.MetaOffset = blocks * BlockSize
	} else if metaDeviceBytes < l.MetaBytes {
		return Layout{}, fmt.Errorf("%w: metadata device of %d bytes, %d data blocks need %d",
			ErrTooSmall, metaDeviceBytes, blocks, l.MetaBytes)
	}
	return l, nil
}

// valid checks that l is what NewLayout makes of its own inputs.
func (l Layout) valid() error {
	m, err := NewLayout(l.DeviceBytes, l.Internal, l.MetaDeviceBytes, l.ALSlots)
	if err != nil {
		return err
	}
	if m != l {
		return fmt.Errorf("%w: layout %+v is not what NewLayout makes of its inputs", ErrLayout, l)
	}
	return nil
}

// Record is what is persisted.
type Record struct {
	Seq    uint64 // bumped by one on every persist (also the first after Decode); the newest intact header wins
	Blocks uint64 // data area size in 4 KiB blocks: Layout.DataBlocks
	Node   uint8  // node id that owns this metadata
	Gen    Generations
	Flags  Flags
	AL     []uint32 // hot extents, distinct, each < ExtentCount(Blocks); at most Layout.ALSlots
	Bitmap *Bitmap  // Len() == Blocks
	// PrimarySince is the cluster-wide claim epoch of this node's latest
	// promotion: it orders the two nodes' promotions for the
	// discard-younger/older-primary split-brain policies.
	PrimarySince uint64

	// suspect is a bitset of the bitmap pages Decode did not take verbatim
	// (torn, corrupt, or newer than the header): what is on disk there is
	// not this record's bits, so the next persist rewrites them.
	suspect []uint64
}

// Clone returns a deep copy (a record to keep as EncodeDelta's prev).
func (r *Record) Clone() *Record {
	c := *r
	c.AL = slices.Clone(r.AL)
	if r.Bitmap != nil {
		c.Bitmap = r.Bitmap.Clone()
	}
	c.suspect = slices.Clone(r.suspect)
	return &c
}

func (r *Record) isSuspect(page uint64) bool {
	w := page / 64
	return w < uint64(len(r.suspect)) && r.suspect[w]&(1<<(page%64)) != 0
}

// Check reports whether Encode would accept r: an error wrapping ErrRecord
// (or ErrLayout) saying what is wrong.
func (l Layout) Check(r *Record) error {
	if err := l.valid(); err != nil {
		return err
	}
	switch {
	case r == nil:
		return fmt.Errorf("%w: nil", ErrRecord)
	case r.Blocks != l.DataBlocks:
		return fmt.Errorf("%w: %d blocks, the layout has %d", ErrRecord, r.Blocks, l.DataBlocks)
	case r.Bitmap == nil:
		return fmt.Errorf("%w: no bitmap", ErrRecord)
	case r.Bitmap.Len() != r.Blocks:
		return fmt.Errorf("%w: bitmap of %d bits for %d blocks", ErrRecord, r.Bitmap.Len(), r.Blocks)
	case r.Flags&^KnownFlags != 0:
		return fmt.Errorf("%w: unknown flags %#x", ErrRecord, uint32(r.Flags&^KnownFlags))
	case len(r.AL) > l.ALSlots:
		return fmt.Errorf("%w: %d activity-log extents, the layout has %d slots", ErrRecord, len(r.AL), l.ALSlots)
	}
	if err := checkAL(r.AL, ExtentCount(r.Blocks)); err != nil {
		return fmt.Errorf("%w: %v", ErrRecord, err)
	}
	return nil
}

// checkAL: every extent below extents, no duplicates.
func checkAL(al []uint32, extents uint64) error {
	for i, e := range al {
		if uint64(e) >= extents {
			return fmt.Errorf("activity-log extent %d (entry %d) past the %d extents of the data area", e, i, extents)
		}
	}
	s := slices.Clone(al)
	slices.Sort(s)
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			return fmt.Errorf("activity-log extent %d listed twice", s[i])
		}
	}
	return nil
}

// Write is one contiguous write into the metadata area; Offset is relative
// to Layout.MetaOffset.
type Write struct {
	Offset uint64
	Data   []byte
}

// Encode returns the writes of one persist of r, writing every bitmap page:
// first the activity-log area of slot r.Seq&1, then the bitmap pages
// (adjacent pages merged into one Write), and always last the header. Issue
// them as the package documentation says: all but the last, flush, the last,
// flush. r.Seq must be one more than the Seq of the last durable (or
// decoded) record.
//
// Encode drops the note Decode keeps in a decoded record about pages it
// could not read back (they are all written now).
func (l Layout) Encode(r *Record) ([]Write, error) {
	if err := l.Check(r); err != nil {
		return nil, err
	}
	return l.encode(nil, r), nil
}

// EncodeDelta is Encode writing only the bitmap pages that differ between
// prev and r, plus those Decode could not read back, plus the header. prev
// must be the record of the last persist whose writes are all durable, or
// the record Decode returned (a Clone of either), and r.Seq must be
// prev.Seq+1; prev must not share r's Bitmap. With prev nil it is Encode.
func (l Layout) EncodeDelta(prev, r *Record) ([]Write, error) {
	if err := l.Check(r); err != nil {
		return nil, err
	}
	if prev != nil {
		if err := l.Check(prev); err != nil {
			return nil, fmt.Errorf("prev: %w", err)
		}
		if r.Seq != prev.Seq+1 {
			return nil, fmt.Errorf("%w: Seq %d does not follow prev's %d", ErrRecord, r.Seq, prev.Seq)
		}
		if r.Bitmap == prev.Bitmap {
			return nil, fmt.Errorf("%w: prev shares r's bitmap (keep a Clone as prev)", ErrRecord)
		}
	}
	return l.encode(prev, r), nil
}

func (l Layout) encode(prev, r *Record) []Write {
	slot := int(r.Seq & 1)
	al := l.appendAL(nil, r)
	writes := []Write{{Offset: l.ALOffset(slot), Data: al}}
	words := r.Bitmap.words
	var run []byte // the pages of the current run of changed pages
	var runStart uint64
	for p := range l.BitmapPages {
		lo, hi := p*wordsPerPage, min((p+1)*wordsPerPage, uint64(len(words)))
		if prev != nil && !prev.isSuspect(p) && !r.isSuspect(p) && slices.Equal(prev.Bitmap.words[lo:hi], words[lo:hi]) {
			if run != nil {
				writes = append(writes, Write{Offset: l.BitmapOffset() + runStart*PageSize, Data: run})
				run = nil
			}
			continue
		}
		if run == nil {
			runStart = p
		}
		run = appendPage(run, p, r.Seq, words[lo:hi])
	}
	if run != nil {
		writes = append(writes, Write{Offset: l.BitmapOffset() + runStart*PageSize, Data: run})
	}
	writes = append(writes, Write{Offset: l.HeaderOffset(slot), Data: l.appendHeader(nil, r, al)})
	r.suspect = nil
	return writes
}

// EncodeAll appends the whole metadata area for r to dst (MetaBytes bytes:
// what create-md writes): the header and activity log in slot r.Seq&1, the
// other slot zeroed, every bitmap page. It panics if Check(r) fails.
func (l Layout) EncodeAll(dst []byte, r *Record) []byte {
	if err := l.Check(r); err != nil {
		panic(err)
	}
	slot := int(r.Seq & 1)
	start := len(dst)
	dst = slices.Grow(dst, int(l.MetaBytes))
	dst = append(dst, make([]byte, l.BitmapOffset())...)
	al := l.appendAL(dst[start+int(l.ALOffset(slot)):][:0], r)
	l.appendHeader(dst[start+int(l.HeaderOffset(slot)):][:0], r, al)
	words := r.Bitmap.words
	for p := range l.BitmapPages {
		dst = appendPage(dst, p, r.Seq, words[p*wordsPerPage:min((p+1)*wordsPerPage, uint64(len(words)))])
	}
	r.suspect = nil
	return dst
}

// appendAL appends r's activity-log area: alFixed+4n bytes zero padded to a
// multiple of PageSize.
func (l Layout) appendAL(dst []byte, r *Record) []byte {
	n := uint64(len(r.AL))
	start := len(dst)
	dst = append(dst, make([]byte, roundUp(alFixed+4*n, PageSize))...)
	a := dst[start:]
	le := binary.LittleEndian
	copy(a, alMagic)
	le.PutUint64(a[8:], r.Seq)
	le.PutUint32(a[16:], uint32(n))
	for i, e := range r.AL {
		le.PutUint32(a[alFixed+4*i:], e)
	}
	le.PutUint32(a[4:], alCRC(a[:alFixed+4*n]))
	return dst
}

// appendHeader appends r's header: one HeaderSize block of which only the
// first sector (headerLen bytes) is used; the rest is zero. al is r's
// activity-log area, whose checksum the header carries.
func (l Layout) appendHeader(dst []byte, r *Record, al []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	h := dst[start:]
	le := binary.LittleEndian
	copy(h, headerMagic)
	le.PutUint32(h[8:], Version)
	le.PutUint64(h[16:], r.Seq)
	h[24] = byte(r.Seq & 1)
	h[25] = r.Node
	if l.Internal {
		h[26] = geoInternal
	}
	le.PutUint32(h[28:], uint32(r.Flags))
	le.PutUint64(h[32:], r.Blocks)
	le.PutUint64(h[40:], l.MetaBytes)
	le.PutUint32(h[48:], uint32(l.ALBytes))
	le.PutUint32(h[52:], uint32(l.BitmapPages))
	le.PutUint32(h[56:], uint32(l.ALSlots))
	le.PutUint32(h[60:], uint32(len(r.AL)))
	le.PutUint64(h[64:], uint64(r.Gen.Current))
	le.PutUint64(h[72:], uint64(r.Gen.Bitmap))
	le.PutUint64(h[80:], uint64(r.Gen.History[0]))
	le.PutUint64(h[88:], uint64(r.Gen.History[1]))
	le.PutUint32(h[96:], le.Uint32(al[4:]))
	le.PutUint64(h[104:], r.PrimarySince)
	le.PutUint32(h[12:], headerCRC(h[:headerLen]))
	return dst
}

// Checksums skip their own field: bytes 4..7 of an activity-log area or a
// page, 12..15 of a header.
func headerCRC(h []byte) uint32 {
	return crc32.Update(crc32.Checksum(h[:12], castagnoli), castagnoli, h[16:headerLen])
}

func alCRC(a []byte) uint32 {
	return crc32.Update(crc32.Checksum(a[:4], castagnoli), castagnoli, a[8:])
}

func pageCRC(p []byte) uint32 {
	return crc32.Update(crc32.Checksum(p[:4], castagnoli), castagnoli, p[8:PageSize])
}

// appendPage appends bitmap page index p holding words (at most
// wordsPerPage; the rest are zero), tagged with seq.
func appendPage(dst []byte, p, seq uint64, words []uint64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, PageSize)...)
	pg := dst[start:]
	le := binary.LittleEndian
	copy(pg, pageMagic)
	le.PutUint64(pg[8:], seq)
	le.PutUint32(pg[16:], uint32(p))
	for i, w := range words {
		le.PutUint64(pg[pageHeader+8*i:], w)
	}
	le.PutUint32(pg[4:], pageCRC(pg))
	return dst
}

// Report says how Decode arrived at its record, for logs and status.
type Report struct {
	Slot int // the header slot decoded: 0 (A) or 1 (B)
	// Other is why the other slot was not used: nil if it is intact but
	// older, otherwise an error wrapping ErrNoMetadata (empty) or ErrCorrupt.
	Other error
	// AL is why the activity log could not be read (nil if it was): its
	// area does not match the header, which the persisting rule rules out
	// short of corruption. Decode then returns no activity log and ALL bits
	// set, since any extent may have had writes in flight.
	AL error
	// BadPages are bitmap pages that failed their checks (torn, corrupt,
	// misplaced); NewerPages were written by a persist whose header never
	// became durable. Decode sets all bits of both kinds.
	BadPages, NewerPages uint64
}

// Decode reads the record back from area, the whole metadata area as read
// from disk (at least MetaBytes bytes; anything after is ignored). It takes
// the intact header with the highest Seq and counts every bitmap page it
// cannot trust as all bits set; see the package documentation. Errors wrap
// ErrNoMetadata, ErrCorrupt, ErrVersion, ErrGeometry or ErrLayout. It never
// panics, and allocates no more than about the size of area.
func (l Layout) Decode(area []byte) (*Record, error) {
	r, _, err := l.DecodeReport(area)
	return r, err
}

// DecodeReport is Decode, also saying which slot it used and what it could
// not read back.
func (l Layout) DecodeReport(area []byte) (*Record, Report, error) {
	if err := l.valid(); err != nil {
		return nil, Report{}, err
	}
	if uint64(len(area)) < l.MetaBytes {
		return nil, Report{}, fmt.Errorf("%w: area of %d bytes, the layout needs %d", ErrGeometry, len(area), l.MetaBytes)
	}
	var hs [2]header
	var errs [2]error
	for s := range hs {
		hs[s], errs[s] = l.parseHeader(area[l.HeaderOffset(s):][:headerLen], s)
	}
	// An intact header of another version or geometry could be the newer
	// one: falling back to the other slot might move generations backwards.
	for _, refuse := range []error{ErrVersion, ErrGeometry} {
		for s, err := range errs {
			if errors.Is(err, refuse) {
				return nil, Report{}, fmt.Errorf("slot %c: %w", 'A'+s, err)
			}
		}
	}
	s := -1
	switch {
	case errs[0] == nil && errs[1] == nil:
		s = 0
		if hs[1].seq > hs[0].seq {
			s = 1
		}
	case errs[0] == nil:
		s = 0
	case errs[1] == nil:
		s = 1
	case errors.Is(errs[0], ErrNoMetadata) && errors.Is(errs[1], ErrNoMetadata):
		return nil, Report{}, fmt.Errorf("%w: neither header slot has the magic", ErrNoMetadata)
	default:
		return nil, Report{}, fmt.Errorf("%w: no intact header: slot A: %v; slot B: %v", ErrCorrupt, errs[0], errs[1])
	}
	h := &hs[s]
	rep := Report{Slot: s, Other: errs[1-s]}
	r := &Record{
		Seq:          h.seq,
		Blocks:       l.DataBlocks,
		Node:         h.node,
		Gen:          h.gen,
		PrimarySince: h.since,
		Flags:        h.flags,
		Bitmap:       NewBitmap(l.DataBlocks),
	}
	r.AL, rep.AL = l.readAL(area[l.ALOffset(s):][:l.ALBytes], h)
	b := r.Bitmap
	for p := range l.BitmapPages {
		pg := area[l.BitmapOffset()+p*PageSize:][:PageSize]
		lo, hi := p*wordsPerPage, min((p+1)*wordsPerPage, uint64(len(b.words)))
		switch err := l.readPage(pg, p, h.seq, b.words[lo:hi]); err {
		case nil:
			for _, w := range b.words[lo:hi] {
				b.count += uint64(bits.OnesCount64(w))
			}
			continue
		case errNewer:
			rep.NewerPages++
		default:
			rep.BadPages++
		}
		clear(b.words[lo:hi]) // readPage may have left garbage
		first := p * BitsPerPage
		b.SetRange(first, min(BitsPerPage, b.n-first))
		if r.suspect == nil {
			r.suspect = make([]uint64, (l.BitmapPages+63)/64)
		}
		r.suspect[p/64] |= 1 << (p % 64)
	}
	if rep.AL != nil {
		// Any extent may have had writes in flight; and the next persist
		// must put that on disk, not just the pages that differ.
		b.SetAll()
		r.suspect = make([]uint64, (l.BitmapPages+63)/64)
		for p := range l.BitmapPages {
			r.suspect[p/64] |= 1 << (p % 64)
		}
	}
	return r, rep, nil
}

type header struct {
	seq   uint64
	node  uint8
	flags Flags
	gen   Generations
	n     uint32 // activity-log extents
	alCRC uint32 // checksum of the activity-log area
	since uint64 // PrimarySince
}

// parseHeader checks and parses the header sector of slot s. The error
// wraps ErrNoMetadata (no magic), ErrVersion, ErrGeometry or ErrCorrupt.
func (l Layout) parseHeader(h []byte, s int) (header, error) {
	le := binary.LittleEndian
	if string(h[:8]) != headerMagic {
		return header{}, fmt.Errorf("%w: no magic", ErrNoMetadata)
	}
	if v := le.Uint32(h[8:]); v != Version {
		return header{}, fmt.Errorf("%w: version %d, this is version %d", ErrVersion, v, Version)
	}
	if le.Uint32(h[12:]) != headerCRC(h) {
		return header{}, fmt.Errorf("%w: bad checksum", ErrCorrupt)
	}
	d := header{
		seq:   le.Uint64(h[16:]),
		node:  h[25],
		flags: Flags(le.Uint32(h[28:])),
		since: le.Uint64(h[104:]),
		n:     le.Uint32(h[60:]),
		gen: Generations{
			Current: UUID(le.Uint64(h[64:])),
			Bitmap:  UUID(le.Uint64(h[72:])),
			History: [2]UUID{UUID(le.Uint64(h[80:])), UUID(le.Uint64(h[88:]))},
		},
		alCRC: le.Uint32(h[96:]),
	}
	switch {
	case h[24] != byte(s) || d.seq&1 != uint64(s):
		return header{}, fmt.Errorf("%w: Seq %d with slot byte %d found in slot %d", ErrCorrupt, d.seq, h[24], s)
	case h[26]&^geoInternal != 0 || h[27] != 0 || slices.ContainsFunc(h[100:104], func(b byte) bool { return b != 0 }) ||
		slices.ContainsFunc(h[112:], func(b byte) bool { return b != 0 }):
		return header{}, fmt.Errorf("%w: reserved bits set", ErrCorrupt)
	case d.flags&^KnownFlags != 0:
		return header{}, fmt.Errorf("%w: unknown flags %#x", ErrCorrupt, uint32(d.flags&^KnownFlags))
	}
	internal := h[26]&geoInternal != 0
	blocks, metaBytes := le.Uint64(h[32:]), le.Uint64(h[40:])
	alBytes, pages, slots := le.Uint32(h[48:]), le.Uint32(h[52:]), le.Uint32(h[56:])
	if internal != l.Internal || blocks != l.DataBlocks || metaBytes != l.MetaBytes ||
		uint64(alBytes) != l.ALBytes || uint64(pages) != l.BitmapPages || uint64(slots) != uint64(l.ALSlots) {
		return header{}, fmt.Errorf("%w: metadata for internal=%t, %d blocks, %d-byte area, %d-byte activity logs, %d pages, %d AL slots; "+
			"the layout has internal=%t, %d, %d, %d, %d, %d", ErrGeometry, internal, blocks, metaBytes, alBytes, pages, slots,
			l.Internal, l.DataBlocks, l.MetaBytes, l.ALBytes, l.BitmapPages, l.ALSlots)
	}
	if uint64(d.n) > uint64(l.ALSlots) {
		return header{}, fmt.Errorf("%w: %d activity-log extents for %d slots", ErrCorrupt, d.n, l.ALSlots)
	}
	return d, nil
}

// readAL reads the activity-log area a that header h refers to.
func (l Layout) readAL(a []byte, h *header) ([]uint32, error) {
	le := binary.LittleEndian
	n := uint64(h.n) // <= ALSlots: fits a
	switch {
	case string(a[:4]) != alMagic:
		return nil, fmt.Errorf("%w: activity log: no magic", ErrCorrupt)
	case alCRC(a[:alFixed+4*n]) != h.alCRC || le.Uint32(a[4:]) != h.alCRC:
		return nil, fmt.Errorf("%w: activity log: checksum does not match the header's", ErrCorrupt)
	case le.Uint64(a[8:]) != h.seq || uint64(le.Uint32(a[16:])) != n || le.Uint32(a[20:]) != 0:
		return nil, fmt.Errorf("%w: activity log: Seq %d with %d extents, the header has Seq %d with %d",
			ErrCorrupt, le.Uint64(a[8:]), le.Uint32(a[16:]), h.seq, n)
	}
	al := make([]uint32, n)
	for i := range al {
		al[i] = le.Uint32(a[alFixed+4*i:])
	}
	if err := checkAL(al, ExtentCount(l.DataBlocks)); err != nil {
		return nil, fmt.Errorf("%w: activity log: %v", ErrCorrupt, err)
	}
	return al, nil
}

// errNewer: a bitmap page was written after the header being decoded.
var errNewer = errors.New("meta: page newer than header")

// readPage checks bitmap page p and decodes its words into words (exactly the
// bitmap's words for this page); it must be no newer than seq. On error
// words may hold garbage: the caller overwrites them.
func (l Layout) readPage(pg []byte, p, seq uint64, words []uint64) error {
	le := binary.LittleEndian
	switch {
	case string(pg[:4]) != pageMagic:
		return fmt.Errorf("%w: page %d: no magic", ErrCorrupt, p)
	case le.Uint32(pg[4:]) != pageCRC(pg):
		return fmt.Errorf("%w: page %d: bad checksum", ErrCorrupt, p)
	case uint64(le.Uint32(pg[16:])) != p || le.Uint32(pg[20:]) != 0:
		return fmt.Errorf("%w: page %d: holds page %d", ErrCorrupt, p, le.Uint32(pg[16:]))
	case le.Uint64(pg[8:]) > seq:
		return errNewer
	}
	for i := range words {
		words[i] = le.Uint64(pg[pageHeader+8*i:])
	}
	for i := len(words); i < wordsPerPage; i++ {
		if le.Uint64(pg[pageHeader+8*i:]) != 0 {
			return fmt.Errorf("%w: page %d: bits past the end", ErrCorrupt, p)
		}
	}
	if tail := l.DataBlocks % 64; tail != 0 && p == l.BitmapPages-1 && words[len(words)-1]>>tail != 0 {
		return fmt.Errorf("%w: page %d: bits past the end", ErrCorrupt, p)
	}
	return nil
}
