package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"tandem/internal/meta"
	"tandem/internal/proto"
)

// ErrHasData: CreateMD found Tandem metadata or a filesystem, volume or
// partition-table signature and was not forced.
var ErrHasData = errors.New("disk: refusing to overwrite existing data")

// CreateOptions say what CreateMD creates.
type CreateOptions struct {
	// MetaPath is the external metadata file or device; "" for internal.
	// A regular file that does not exist is created at the size needed.
	MetaPath string
	// ALSlots is the activity-log size; 0 means DefaultALSlots. Open must
	// be given the same value.
	ALSlots int
	// Node is the id of the node owning this disk: 0 or 1.
	Node proto.NodeID
	// Force writes the metadata over existing metadata or a recognised
	// filesystem signature.
	Force bool
	// Blocks is the data area in 4 KiB blocks; 0 means the whole device
	// (less the internal metadata). Open must be given the same value.
	Blocks uint64
	// Logger: nil means slog.Default().
	Logger *slog.Logger
}

// CreateMD writes fresh metadata for the backing device at path, as DRBD's
// create-md does. The record is what the replication core takes for a disk
// that was never synced: all generations zero, no flags (Inconsistent),
// nothing marked out of sync. Two such disks wait at the handshake for an
// operator's `primary --force`, which starts the first generation; a fresh
// disk meeting one that has a generation gets a full sync. The data area is
// not touched.
//
// Unless opts.Force, it refuses (an error wrapping ErrHasData, saying what
// was found where) when the metadata area already holds Tandem metadata,
// intact or damaged, or the device (or the external metadata device) starts
// with an ext2/3/4, XFS, btrfs, swap, LVM2 or LUKS signature, a GPT or an
// MBR boot signature. It holds the disk's lock throughout, so it refuses a
// disk a daemon is using (ErrLocked).
//
// A crash part way leaves no header to decode (both slots are zeroed and
// flushed first, the new header written and flushed last): rerun it.
func CreateMD(path string, opts CreateOptions) (err error) {
	if opts.ALSlots == 0 {
		opts.ALSlots = DefaultALSlots
	}
	if opts.Node > 1 {
		return fmt.Errorf("create-md %s: node id %d: only the data nodes 0 and 1 have disks", path, opts.Node)
	}
	if opts.MetaPath != "" {
		created, cerr := createMetaFile(path, opts)
		if cerr != nil {
			return fmt.Errorf("create-md %s: %w", path, cerr)
		}
		if created {
			defer func() {
				if err != nil {
					os.Remove(opts.MetaPath)
				}
			}()
		}
	}
	d, err := Open(path, Options{MetaPath: opts.MetaPath, ALSlots: opts.ALSlots, Blocks: opts.Blocks, Direct: true, Logger: opts.Logger})
	if err != nil {
		return fmt.Errorf("create-md: %w", err)
	}
	defer func() { err = errors.Join(err, d.Close()) }()
	if !opts.Force {
		if err := d.refuseData(); err != nil {
			return fmt.Errorf("create-md %s: %w; use --force to write the metadata anyway", path, err)
		}
	}
	rec := &meta.Record{Blocks: d.layout.DataBlocks, Node: uint8(opts.Node), Bitmap: meta.NewBitmap(d.layout.DataBlocks)}
	img := d.layout.EncodeAll(AlignedBuffer(int(d.layout.MetaBytes))[:0], rec)
	if err := d.writeFresh(img); err != nil {
		return fmt.Errorf("create-md %s: %w", path, err)
	}
	return nil
}

// writeFresh writes a whole metadata area so that a crash at any point
// leaves either the old headers or the new one, never the old header over
// new pages: zero both header slots, flush, write everything after them,
// flush, write the header slots, flush.
func (d *Disk) writeFresh(img []byte) error {
	hdr := uint64(2 * meta.HeaderSize) // both slots: the area's first bytes
	steps := []struct {
		data []byte
		off  uint64
	}{
		{AlignedBuffer(int(hdr)), 0},
		{img[hdr:], hdr},
		{img[:hdr], 0},
	}
	for _, s := range steps {
		if err := d.writeMetaAt(s.data, s.off); err != nil {
			return err
		}
		if err := d.meta.fdatasync(); err != nil {
			return fmt.Errorf("flush metadata %s: %w", d.meta.path, err)
		}
	}
	return nil
}

// createMetaFile creates a missing external metadata file at the size the
// layout needs; it reports whether it did.
func createMetaFile(path string, opts CreateOptions) (bool, error) {
	if _, err := os.Stat(opts.MetaPath); !errors.Is(err, fs.ErrNotExist) {
		return false, nil // Open reports any other problem
	}
	d, err := Open(path, Options{ReadOnly: true, ALSlots: opts.ALSlots, Logger: opts.Logger})
	if err != nil {
		return false, err
	}
	dataBytes := d.data.size
	d.Close()
	probe := &file{size: 1 << 62} // a metadata device large enough for any layout
	l, err := layoutFor(dataBytes, probe, Options{MetaPath: opts.MetaPath, ALSlots: opts.ALSlots, Blocks: opts.Blocks})
	if err != nil {
		return false, err
	}
	f, err := os.OpenFile(opts.MetaPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("create the metadata file: %w", err)
	}
	err = errors.Join(f.Truncate(int64(l.MetaBytes)), f.Close())
	if err != nil {
		os.Remove(opts.MetaPath)
		return false, fmt.Errorf("size the metadata file %s: %w", opts.MetaPath, err)
	}
	return true, nil
}

// refuseData reports existing metadata or a recognised signature.
func (d *Disk) refuseData() error {
	area, err := d.readMetaArea()
	if err != nil {
		return err
	}
	rec, err := d.layout.Decode(area)
	switch {
	case err == nil:
		return fmt.Errorf("%w: %s already holds Tandem metadata (node %d, %v, %s)",
			ErrHasData, d.meta.path, rec.Node, rec.Gen, rec.Flags)
	case !errors.Is(err, meta.ErrNoMetadata):
		return fmt.Errorf("%w: %s holds Tandem metadata that does not decode here: %v", ErrHasData, d.meta.path, err)
	}
	files := []*file{d.data}
	if d.meta != d.data {
		files = append(files, d.meta)
	}
	for _, fl := range files {
		head := AlignedBuffer(sigBytes)
		n, err := fl.f.ReadAt(head, 0)
		if err != nil && err != io.EOF {
			return fmt.Errorf("read the start of %s: %w", fl.path, unwrapPath(err))
		}
		if what := Signature(head[:n]); what != "" {
			why := "creating internal metadata overwrites the end of it"
			switch {
			case fl == d.meta && d.meta != d.data:
				why = "the metadata would overwrite it"
			case d.meta != d.data:
				why = "its data is kept, but this disk starts Inconsistent and a sync from the peer would overwrite it"
			}
			return fmt.Errorf("%w: %s holds %s: %s", ErrHasData, fl.path, what, why)
		}
	}
	return nil
}

// sigBytes covers every signature Signature looks for.
const sigBytes = 128 << 10

// Signature names the filesystem, volume or partition-table signature at
// the start of a device (head: its first bytes, up to 128 KiB), or "" if it
// recognises none. It is deliberately short: enough not to destroy data by
// accident, not a blkid.
func Signature(head []byte) string {
	at := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	le := binary.LittleEndian
	switch {
	case len(head) >= 1082 && le.Uint16(head[1080:]) == 0xEF53 && le.Uint32(head[1024+24:]) <= 6:
		// s_magic, and s_log_block_size of a 1 to 64 KiB block: a bare
		// 2-byte magic would match random data too often.
		return "an ext2/3/4 filesystem (superblock magic 0xEF53 at byte 1080)"
	case at(0, "XFSB"):
		return `an XFS filesystem ("XFSB" at byte 0)`
	case at(65536+64, "_BHRfS_M"):
		return `a btrfs filesystem ("_BHRfS_M" at byte 65600)`
	case at(4096-10, "SWAPSPACE2"), at(4096-10, "SWAP-SPACE"), at(65536-10, "SWAPSPACE2"):
		return `a swap area ("SWAPSPACE2" at the end of the first page)`
	case at(0, "LUKS\xba\xbe"):
		return "a LUKS encrypted volume (magic at byte 0)"
	case at(512, "EFI PART"), at(4096, "EFI PART"):
		return `a GPT partition table ("EFI PART" in the second sector)`
	}
	for s := 0; s < 4; s++ {
		if at(512*s, "LABELONE") {
			return fmt.Sprintf(`an LVM2 physical volume ("LABELONE" at byte %d)`, 512*s)
		}
	}
	if len(head) >= 512 && bytes.Equal(head[510:512], []byte{0x55, 0xAA}) {
		return "an MBR partition table or boot sector (0x55AA at byte 510)"
	}
	return ""
}

// Dump writes the metadata as tandem dump-md prints it (in the spirit of
// drbdadm dump-md): where it lives, which header slot was used, the
// generations, flags, sizes, activity log and out-of-sync ranges.
func (d *Disk) Dump(w io.Writer) error {
	rec, err := d.LoadMeta()
	if err != nil {
		return err
	}
	l, rep := d.layout, d.MetaReport()
	where := "internal"
	if !l.Internal {
		where = "external"
	}
	b := &bytes.Buffer{}
	fmt.Fprintf(b, "# Tandem metadata of %s: %s, %d bytes at offset %d of %s\n", d.data.path, where, l.MetaBytes, l.MetaOffset, d.meta.path)
	fmt.Fprintf(b, "# header slot %c used", 'A'+rep.Slot)
	if rep.Other != nil {
		fmt.Fprintf(b, "; slot %c: %v", 'B'-rep.Slot, rep.Other)
	} else {
		fmt.Fprintf(b, "; slot %c holds an older record", 'B'-rep.Slot)
	}
	fmt.Fprintln(b)
	if rep.AL != nil || rep.BadPages > 0 || rep.NewerPages > 0 {
		fmt.Fprintf(b, "# counted as out of sync: activity log unreadable: %v; %d bad and %d newer bitmap pages\n",
			rep.AL != nil, rep.BadPages, rep.NewerPages)
	}
	fmt.Fprintf(b, "version %d;\nnode %d;\nseq %d;\n", meta.Version, rec.Node, rec.Seq)
	g := rec.Gen
	fmt.Fprintf(b, "gen-current 0x%016X;\ngen-bitmap 0x%016X;\ngen-history 0x%016X 0x%016X;\n",
		uint64(g.Current), uint64(g.Bitmap), uint64(g.History[0]), uint64(g.History[1]))
	fmt.Fprintf(b, "flags %s;\nprimary-since %d;\n", rec.Flags, rec.PrimarySince)
	fmt.Fprintf(b, "blocks %d; # %d KiB data area\n", rec.Blocks, rec.Blocks*BlockSize/1024)
	fmt.Fprintf(b, "al-slots %d;\nal-extents {", l.ALSlots)
	for _, e := range rec.AL {
		fmt.Fprintf(b, " %d", e)
	}
	fmt.Fprintf(b, " }; # %d of %d, %d MiB each\n", len(rec.AL), l.ALSlots, meta.BlocksPerExtent*BlockSize>>20)
	fmt.Fprintf(b, "out-of-sync %d; # blocks, %d KiB\nbitmap {", rec.Bitmap.Count(), rec.Bitmap.Count()*BlockSize/1024)
	for i, ok := rec.Bitmap.NextSet(0); ok; i, ok = rec.Bitmap.NextSet(i) {
		end, found := rec.Bitmap.NextClear(i)
		if !found {
			end = rec.Bitmap.Len()
		}
		if end-i == 1 {
			fmt.Fprintf(b, " %d", i)
		} else {
			fmt.Fprintf(b, " %d-%d", i, end-1)
		}
		i = end
	}
	fmt.Fprintln(b, " };")
	_, err = w.Write(b.Bytes())
	return err
}
