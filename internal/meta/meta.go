// Package meta is Tandem's replication metadata, as DRBD keeps it: the
// generation identifiers that decide resync direction and detect split
// brain, the state flags, the bitmap of out-of-sync blocks, the activity log
// of hot extents, and the versioned, checksummed, crash-safe on-disk format
// they are persisted in.
//
// Like the rest of internal/ it does no I/O: Layout.Encode says which bytes to
// write where, Layout.Decode reads an area the caller has read back. The
// daemon and the simulator's disks perform the I/O.
//
// # On-disk layout
//
// The metadata area is either internal (the tail of the backing device; the
// data area is what precedes it) or external (the start of a separate device
// or file; the data area is the whole backing device). See NewLayout. All
// integers are little-endian; every offset and write size is a multiple of
// 4096, so the area suits O_DIRECT on 512-byte and 4 KiB sector devices.
//
//	area offset                     size      content
//	0                               4096      header slot A (written by even Seq)
//	4096                            4096      header slot B (written by odd Seq)
//	8192                            ALBytes   activity-log area A (even Seq)
//	8192+ALBytes                    ALBytes   activity-log area B (odd Seq)
//	8192+2*ALBytes + i*PageSize     PageSize  bitmap page i, i < BitmapPages
//
// ALBytes is 24 + 4*ALSlots rounded up to 4096. A header is the first
// 512-byte sector of its slot (the rest is written as zeros), so that a
// header write is atomic:
//
//	off len field
//	  0   8 magic "TANDEMMD"
//	  8   4 format version (1)
//	 12   4 CRC32C of bytes 0..11 and 16..511
//	 16   8 Seq
//	 24   1 slot: 0 = A, 1 = B; always Seq&1
//	 25   1 Node
//	 26   1 geometry flags: 1 = internal metadata
//	 27   1 reserved, 0
//	 28   4 Flags
//	 32   8 Blocks (data area in 4 KiB blocks)  \
//	 40   8 MetaBytes (size of this area)        |  geometry: must match
//	 48   4 ALBytes                              |  the Layout decoding it
//	 52   4 BitmapPages                          |
//	 56   4 ALSlots                             /
//	 60   4 n, the number of activity-log extents (n <= ALSlots)
//	 64   8 Generations.Current
//	 72   8 Generations.Bitmap
//	 80   8 Generations.History[0]
//	 88   8 Generations.History[1]
//	 96   4 the CRC32C of this slot's activity-log area (its bytes 4..7)
//	100   4 reserved, 0
//	104   8 PrimarySince (claim epoch of the latest promotion)
//	112 400 reserved, 0
//
// An activity-log area, written as its first 24+4n bytes rounded up to 4096
// (what lies beyond is stale and ignored):
//
//	off len field
//	  0   4 magic "TDAL"
//	  4   4 CRC32C of bytes 0..3 and 8..23+4n
//	  8   8 Seq
//	 16   4 n
//	 20   4 reserved, 0
//	 24  4n extents, each < ceil(Blocks/BlocksPerExtent), distinct
//
// A bitmap page:
//
//	off  len field
//	  0    4 magic "TDBM"
//	  4    4 CRC32C of bytes 0..3 and 8..4095
//	  8    8 Seq of the persist that wrote this page
//	 16    4 page index
//	 20    4 reserved, 0
//	 24 4072 509 words: bit j of word w is block i*BitsPerPage + 64*w + j;
//	         bits past Blocks are 0
//
// # Persisting, and why a crash is always safe
//
// A persist is the []Write that Layout.Encode (or EncodeDelta) returns: the
// activity-log area of slot Seq&1, the changed bitmap pages, each tagged with
// the record's Seq, and, always last, the header in slot Seq&1. The header
// commits the rest. The caller must follow one rule:
//
//	issue every write but the last (any order, concurrently); flush;
//	then issue the last (the header); flush;
//	and only then start the next persist, whose Seq is this one's plus one.
//
// A crash may tear any write at 512-byte granularity (each sector old or
// new). Decode takes the intact header with the highest Seq, reads the
// activity log from its slot's area (which must carry the checksum the
// header names), and takes each bitmap page only if it is intact (magic,
// checksum, index) and no newer than that header (page Seq <= header Seq);
// any other page counts as ALL BITS SET. Out of sync is the safe direction:
// it costs resync traffic, never data. Let persist N follow the durable
// persist N-1, whose header and activity-log area (slot (N-1)&1) persist N
// never touches:
//
//   - Crash before header N's sector is written: header N-1 is intact and
//     newer than whatever slot N&1 holds, so it wins, with its activity log.
//     Bitmap pages persist N did not reach carry N-1's bits; pages it wrote
//     (Seq N > N-1) and torn ones count as all set. Result: record N-1 with a
//     bitmap that is a superset of N-1's.
//   - Header N's sector written: one sector is written whole or not at all,
//     and everything else of persist N was flushed before it, so record N
//     decodes exactly.
//
// So a restart yields record N-1 or record N, never a mixture of their header
// fields, never an older one, and never a bitmap missing a bit of the record
// it reports: generations never go backwards.
//
// After such a crash the next persist reuses Seq N, which is why the header
// is a single sector: a header spanning sectors could be torn by the second
// attempt into a copy of the first attempt's half-written header that checks
// out (the sectors in which they agree complete it), resurrecting a record
// that was never durable next to the second attempt's bitmap. For the same
// reason bitmap pages the crashed attempt wrote carry Seq N and would pass
// under the next header N: Decode remembers which pages it did not take
// verbatim and EncodeDelta rewrites them when given the decoded record as
// prev. The rule for EncodeDelta's prev: the record of the last persist known
// durable, or the record Decode returned; after a persist that failed or may
// not have completed, use Encode (every page) instead.
//
// An activity-log area that does not match its header can only come from
// corruption; Decode then returns no activity log and all bits set, as any
// extent may have had writes in flight. A slot with the magic but another
// version makes Decode fail with ErrVersion rather than fall back to the
// other slot, which may be older (falling back could move generations
// backwards); likewise an intact header whose geometry disagrees with the
// Layout gives ErrGeometry.
package meta

import (
	"errors"
	"fmt"
	"strings"
)

// BlockSize is the data covered by one bitmap bit.
const BlockSize = 4096

// BlocksPerExtent is the size of an activity-log extent in blocks: 4 MiB.
const BlocksPerExtent = 1024

// UUID is a generation identifier. 0 means none.
type UUID uint64

// Generations are a node's generation identifiers, read as DRBD reads them at
// the handshake: Current names the data as it is now, Bitmap the generation
// the out-of-sync bitmap is relative to (0 when not tracking), History the
// two generations before.
type Generations struct {
	Current, Bitmap UUID
	History         [2]UUID
}

// String is "C:<current> B:<bitmap> H:<history0>,<history1>" in lowercase hex
// without leading zeros, e.g. "C:1a2b3c4d5e6f7081 B:0 H:9f00,0".
func (g Generations) String() string {
	return fmt.Sprintf("C:%x B:%x H:%x,%x", uint64(g.Current), uint64(g.Bitmap),
		uint64(g.History[0]), uint64(g.History[1]))
}

// Flags are the persisted state flags.
type Flags uint32

const (
	// Consistent: the data area is a consistent image (not a half-done
	// resync target).
	Consistent Flags = 1 << iota
	// Outdated: this copy is known to lack the peer's newer writes.
	Outdated
	// WasPrimary: was Primary when last persisted (after a crash, the
	// activity log extents are dirty).
	WasPrimary
	// PeerOutdated: we know the peer's copy is Outdated.
	PeerOutdated
	// FullSync: a full sync is required at the next connect.
	FullSync
	// CleanShutdown: persisted at orderly shutdown; the activity log need
	// not be applied.
	CleanShutdown

	// KnownFlags are the flags this format version understands; a header
	// with any other bit is not accepted.
	KnownFlags = Consistent | Outdated | WasPrimary | PeerOutdated | FullSync | CleanShutdown
)

var flagNames = [...]string{"consistent", "outdated", "was-primary", "peer-outdated", "full-sync", "clean-shutdown"}

// String is the set flags joined by "|", e.g. "consistent|was-primary";
// "none" for no flags, unknown bits as one hex number at the end.
func (f Flags) String() string {
	if f == 0 {
		return "none"
	}
	var parts []string
	for i, name := range flagNames {
		if f&(1<<i) != 0 {
			parts = append(parts, name)
		}
	}
	if rest := f &^ KnownFlags; rest != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(rest)))
	}
	return strings.Join(parts, "|")
}

// Sentinel errors. Returned errors wrap one of them with context (which slot,
// page or field), so test with errors.Is.
var (
	// ErrNoMetadata: neither header slot carries the magic; the area was
	// never initialised (or was wiped).
	ErrNoMetadata = errors.New("meta: no metadata")
	// ErrCorrupt: metadata is there but neither header slot is intact.
	ErrCorrupt = errors.New("meta: corrupt metadata")
	// ErrVersion: a header slot has another format version.
	ErrVersion = errors.New("meta: unsupported metadata version")
	// ErrGeometry: the area is shorter than the layout, or an intact header
	// describes another geometry (size, activity-log slots, internal or
	// external) than the Layout decoding it.
	ErrGeometry = errors.New("meta: geometry mismatch")
	// ErrTooSmall: NewLayout: the device, or the metadata device, cannot hold
	// the metadata and at least one data block.
	ErrTooSmall = errors.New("meta: device too small")
	// ErrLayout: NewLayout got impossible parameters, or a Layout was not made
	// by NewLayout.
	ErrLayout = errors.New("meta: invalid layout")
	// ErrRecord: Encode was given a record that cannot be persisted: bitmap
	// size, activity log, unknown flags, or Seq not following prev.
	ErrRecord = errors.New("meta: invalid record")
	// ErrRuns: DecodeRuns: the run-length encoding is malformed, not
	// canonical, or does not cover exactly the bitmap's length.
	ErrRuns = errors.New("meta: bad bitmap runs")
)
