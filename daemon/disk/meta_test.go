package disk

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"tandem/internal/meta"
	"tandem/internal/repl"
)

// onDisk decodes the metadata as it is on the device now, bypassing d (a
// plain open: flock is advisory).
func onDisk(t *testing.T, d *Disk) (*meta.Record, meta.Report) {
	t.Helper()
	f, err := os.Open(d.meta.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	area := make([]byte, d.layout.MetaBytes)
	if _, err := f.ReadAt(area, int64(d.layout.MetaOffset)); err != nil {
		t.Fatal(err)
	}
	rec, rep, err := d.layout.DecodeReport(area)
	if err != nil {
		t.Fatalf("decode the metadata on %s: %v", d.meta.path, err)
	}
	return rec, rep
}

// zeroPage overwrites bitmap page p on the device behind d's back: a page no
// persist rewrote since shows up as bad when decoded.
func zeroPage(t *testing.T, d *Disk, p uint64) {
	t.Helper()
	f, err := os.OpenFile(d.meta.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := d.layout.MetaOffset + d.layout.BitmapOffset() + p*meta.PageSize
	if _, err := f.WriteAt(make([]byte, meta.PageSize), int64(off)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func sameRecord(t *testing.T, what string, got, want *meta.Record) {
	t.Helper()
	if got.Seq != want.Seq || got.Node != want.Node || got.Gen != want.Gen || got.Flags != want.Flags ||
		got.Blocks != want.Blocks || got.PrimarySince != want.PrimarySince || !slices.Equal(got.AL, want.AL) ||
		!got.Bitmap.Equal(want.Bitmap) {
		t.Fatalf("%s: got Seq %d node %d %v %v blocks %d since %d AL %v bitmap %v; want Seq %d node %d %v %v blocks %d since %d AL %v bitmap %v",
			what, got.Seq, got.Node, got.Gen, got.Flags, got.Blocks, got.PrimarySince, got.AL, got.Bitmap,
			want.Seq, want.Node, want.Gen, want.Flags, want.Blocks, want.PrimarySince, want.AL, want.Bitmap)
	}
}

// record makes the record of persist seq, different in every field.
func record(blocks, seq uint64, node uint8) *meta.Record {
	bm := meta.NewBitmap(blocks)
	bm.SetRange((seq*7919)%blocks, min(100, blocks-(seq*7919)%blocks))
	bm.Set(blocks - 1)
	extents := meta.ExtentCount(blocks)
	al := []uint32{uint32(seq % extents)}
	if e := uint32((seq + 1) % extents); e != al[0] {
		al = append(al, e)
	}
	return &meta.Record{Seq: seq, Blocks: blocks, Node: node,
		Gen:   meta.Generations{Current: meta.UUID(0x1000 + seq), Bitmap: meta.UUID(seq), History: [2]meta.UUID{7, 8}},
		Flags: meta.Consistent | meta.WasPrimary, AL: al, Bitmap: bm, PrimarySince: seq * 3}
}

func TestMetaRoundTrip(t *testing.T) {
	for kind, make := range backings(t) {
		for _, external := range []bool{false, true} {
			name := kind + "/internal"
			if external {
				name = kind + "/external"
			}
			t.Run(name, func(t *testing.T) {
				path := make(t)
				var metaPath string
				if external {
					metaPath = filepath.Join(t.TempDir(), "md") // create-md creates it
				}
				if err := CreateMD(path, CreateOptions{MetaPath: metaPath, Node: 1}); err != nil {
					t.Fatal(err)
				}
				d := openT(t, path, Options{MetaPath: metaPath, Direct: true})
				if d.Layout().Internal == external {
					t.Fatalf("layout internal=%t for external=%t", d.Layout().Internal, external)
				}
				rec, err := d.LoadMeta()
				if err != nil {
					t.Fatal(err)
				}
				fresh := &meta.Record{Blocks: d.Blocks(), Node: 1, Bitmap: meta.NewBitmap(d.Blocks())}
				sameRecord(t, "fresh", rec, fresh)
				if rep := d.MetaReport(); rep.Slot != 0 || !errors.Is(rep.Other, meta.ErrNoMetadata) {
					t.Fatalf("fresh report %+v: want slot A, slot B empty", rep)
				}
				// A fresh record is what the core treats as a never-synced disk.
				r, err := repl.New(repl.Config{Self: 1, Peer: 0, Names: []string{"a", "b"}, Blocks: d.Blocks()}, rec, 0, 1)
				if err != nil {
					t.Fatal(err)
				}
				if r.Disk() != repl.Inconsistent || r.Promotable() {
					t.Fatalf("core reads a fresh disk as %v (promotable %t), want Inconsistent, only with --force", r.Disk(), r.Promotable())
				}
				if ok, why := r.CanPromote(true); !ok {
					t.Fatalf("core refuses `primary --force` on a fresh disk: %s", why)
				}
				// The core's first output persists the record it attached with.
				persisted := false
				for _, o := range r.Start() {
					if o.Kind == repl.Persist {
						if err := d.PersistMeta(o.Record, false); err != nil {
							t.Fatalf("persist the core's first record: %v", err)
						}
						persisted = true
					}
				}
				if got, _ := onDisk(t, d); !persisted || got.Seq != 1 {
					t.Fatalf("the core's first persist (made %t) left Seq %d on disk", persisted, got.Seq)
				}
				// The last data block is next to internal metadata: it must
				// survive every persist.
				last := GetBuf(1)
				pattern(last, d.Blocks()-1, 5)
				if err := d.WriteAt(last, d.Blocks()-1, true); err != nil {
					t.Fatal(err)
				}
				var want *meta.Record
				for seq := uint64(2); seq <= 6; seq++ {
					want = record(d.Blocks(), seq, 1)
					if err := d.PersistMeta(want.Clone(), seq == 4); err != nil {
						t.Fatalf("persist Seq %d: %v", seq, err)
					}
					got, rep := onDisk(t, d)
					sameRecord(t, "after persist", got, want)
					if rep.Slot != int(seq&1) || rep.Other != nil || rep.BadPages+rep.NewerPages != 0 {
						t.Fatalf("Seq %d: report %+v", seq, rep)
					}
				}
				// A Seq not past the durable one would be shadowed: refused.
				for _, seq := range []uint64{6, 2} {
					if err := d.PersistMeta(record(d.Blocks(), seq, 1), false); !errors.Is(err, meta.ErrRecord) {
						t.Fatalf("persist stale Seq %d: %v, want ErrRecord", seq, err)
					}
				}
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
				d = openT(t, path, Options{MetaPath: metaPath, Direct: true})
				rec, err = d.LoadMeta()
				if err != nil {
					t.Fatal(err)
				}
				sameRecord(t, "reloaded", rec, want)
				got := GetBuf(1)
				if err := d.ReadAt(got, d.Blocks()-1); err != nil || !bytes.Equal(got, last) {
					t.Fatalf("last data block after persists: err %v, intact %t", err, bytes.Equal(got, last))
				}
				// The next persist follows the loaded record.
				if err := d.PersistMeta(record(d.Blocks(), 7, 1), false); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// bigFile is a sparse file with three bitmap pages of data area.
func bigFile(t *testing.T) string { return sparseFile(t, 300<<20) }

// TestPersistDelta: a delta persist writes only the pages that changed, a
// full one all of them, and pages LoadMeta could not trust are rewritten.
func TestPersistDelta(t *testing.T) {
	path := bigFile(t)
	if err := CreateMD(path, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d := openT(t, path, Options{Direct: true})
	if d.Layout().BitmapPages < 3 {
		t.Fatalf("%d bitmap pages, the test needs 3", d.Layout().BitmapPages)
	}
	if _, err := d.LoadMeta(); err != nil {
		t.Fatal(err)
	}
	n := d.Blocks()
	rec := &meta.Record{Seq: 1, Blocks: n, Flags: meta.Consistent, Bitmap: meta.NewBitmap(n)}
	rec.Bitmap.Set(5)
	rec.Bitmap.Set(2*meta.BitsPerPage + 5)
	if err := d.PersistMeta(rec.Clone(), false); err != nil {
		t.Fatal(err)
	}
	// Page 1 is the same in Seq 1 and 2: a delta does not rewrite it.
	zeroPage(t, d, 1)
	rec.Seq = 2
	rec.Bitmap.Set(2*meta.BitsPerPage + 6)
	if err := d.PersistMeta(rec.Clone(), false); err != nil {
		t.Fatal(err)
	}
	if _, rep := onDisk(t, d); rep.BadPages != 1 {
		t.Fatalf("after a delta persist: %d bad pages, want page 1 (not rewritten)", rep.BadPages)
	}
	rec.Seq = 3
	if err := d.PersistMeta(rec.Clone(), true); err != nil {
		t.Fatal(err)
	}
	got, rep := onDisk(t, d)
	if rep.BadPages != 0 {
		t.Fatalf("after a full persist: %d bad pages", rep.BadPages)
	}
	sameRecord(t, "full persist", got, rec)

	// A page LoadMeta could not trust is rewritten by the next delta.
	zeroPage(t, d, 1)
	d.Close()
	d = openT(t, path, Options{Direct: true})
	loaded, err := d.LoadMeta()
	if err != nil {
		t.Fatal(err)
	}
	if rep := d.MetaReport(); rep.BadPages != 1 || loaded.Bitmap.Count() < meta.BitsPerPage {
		t.Fatalf("load with page 1 zeroed: report %+v, %d bits set; want page 1 counted all out of sync", rep, loaded.Bitmap.Count())
	}
	rec.Seq = 4 // the core's next record: page 1 clear again, as it was
	if err := d.PersistMeta(rec.Clone(), false); err != nil {
		t.Fatal(err)
	}
	got, rep = onDisk(t, d)
	if rep.BadPages != 0 {
		t.Fatalf("a delta after a load with a bad page left %d bad pages", rep.BadPages)
	}
	sameRecord(t, "delta after a bad page", got, rec)
}

// TestPersistAfterFailure: a persist that failed half way (ENOSPC under the
// metadata file) leaves the previous record durable, and the next persist
// writes every page, not just the delta.
func TestPersistAfterFailure(t *testing.T) {
	dir := mountFS(t, "tmpfs", "size=1m")
	path := bigFile(t)
	metaPath := filepath.Join(dir, "md")
	if err := CreateMD(path, CreateOptions{MetaPath: metaPath}); err != nil {
		t.Fatal(err)
	}
	d := openT(t, path, Options{MetaPath: metaPath, Direct: true})
	base, err := d.LoadMeta()
	if err != nil {
		t.Fatal(err)
	}
	// Give page 0's space back to the filesystem, then fill it.
	pg0 := int64(d.layout.BitmapOffset())
	if err := d.meta.control(func(fd int) error {
		return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, pg0, meta.PageSize)
	}); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = f.Write(make([]byte, 64<<10))
	}
	f.Close()
	rec := base.Clone()
	rec.Seq = 1
	rec.Gen.Current = 0x51
	rec.Bitmap.Set(3) // page 0 changes
	err = d.PersistMeta(rec.Clone(), false)
	if Classify(err) != repl.NoSpace {
		t.Fatalf("persist on a full filesystem: %v (%v), want ENOSPC", err, Classify(err))
	}
	if got, _ := onDisk(t, d); got.Seq != 0 || got.Gen.Current != 0 {
		t.Fatalf("after the failed persist the disk holds Seq %d %v, want the fresh record", got.Seq, got.Gen)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	zeroPage(t, d, 2) // unchanged since the durable record: only a full persist rewrites it
	if err := d.PersistMeta(rec.Clone(), false); err != nil {
		t.Fatalf("retry: %v", err)
	}
	got, rep := onDisk(t, d)
	if rep.BadPages != 0 {
		t.Fatalf("the persist after a failure left %d bad pages: it was not a full persist", rep.BadPages)
	}
	sameRecord(t, "after the retry", got, rec)
}

func TestLoadMetaErrors(t *testing.T) {
	path := sparseFile(t, testBytes)
	d := openT(t, path, Options{})
	if _, err := d.LoadMeta(); !errors.Is(err, meta.ErrNoMetadata) || !strings.Contains(err.Error(), "create-md") {
		t.Fatalf("LoadMeta of a blank disk: %v, want ErrNoMetadata pointing at create-md", err)
	}
	d.Close()
	if err := CreateMD(path, CreateOptions{ALSlots: 100}); err != nil {
		t.Fatal(err)
	}
	d = openT(t, path, Options{})
	if _, err := d.LoadMeta(); !errors.Is(err, meta.ErrGeometry) {
		t.Fatalf("LoadMeta with other AL slots: %v, want ErrGeometry", err)
	}
	d.Close()
	d = openT(t, path, Options{ALSlots: 100, ReadOnly: true})
	if _, err := d.LoadMeta(); err != nil {
		t.Fatal(err)
	}
	if err := d.PersistMeta(record(d.Blocks(), 1, 0), false); !errors.Is(err, unix.EROFS) {
		t.Fatalf("persist on a read-only disk: %v, want EROFS", err)
	}
}

func TestBlocksOption(t *testing.T) {
	path := sparseFile(t, testBytes)
	if err := CreateMD(path, CreateOptions{Blocks: 10000}); err != nil {
		t.Fatal(err)
	}
	d := openT(t, path, Options{Blocks: 10000})
	if l := d.Layout(); l.DataBlocks != 10000 || l.MetaOffset != 10000*BlockSize {
		t.Fatalf("layout %+v: want 10000 data blocks with the metadata right after them", l)
	}
	if _, err := d.LoadMeta(); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d = openT(t, path, Options{})
	if _, err := d.LoadMeta(); !errors.Is(err, meta.ErrNoMetadata) {
		t.Fatalf("LoadMeta without the size create-md was given: %v, want ErrNoMetadata", err)
	}
	// Every size has a layout, around page boundaries too.
	dev := uint64(1) << 40
	sizes := []uint64{1, 2, 63, 64, 1023, 1024}
	for _, k := range []uint64{1, 2, 3, 100} {
		for _, delta := range []int64{-2, -1, 0, 1, 2} {
			sizes = append(sizes, uint64(int64(k*meta.BitsPerPage)+delta))
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		sizes = append(sizes, 1+rnd.Uint64N(dev/BlockSize/2))
	}
	for _, slots := range []int{1, 64, 1500} {
		for _, b := range sizes {
			l, err := layoutFor(dev, nil, Options{ALSlots: slots, Blocks: b})
			if err != nil || l.DataBlocks != b || l.MetaOffset+l.MetaBytes > dev || l.MetaOffset != b*BlockSize {
				t.Fatalf("layoutFor(%d blocks, %d slots): %+v, %v", b, slots, l, err)
			}
		}
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// ext4Image makes a file holding an ext4 filesystem: mkfs.ext4 where it is
// installed, else the superblock fields Signature checks, written by hand.
func ext4Image(t *testing.T) string {
	t.Helper()
	path := sparseFile(t, testBytes)
	if _, err := exec.LookPath("mkfs.ext4"); err == nil {
		run(t, "mkfs.ext4", "-q", "-F", path)
		return path
	}
	t.Log("mkfs.ext4 not installed: writing the ext4 superblock magic by hand")
	sb := make([]byte, 1024)
	sb[24] = 2                  // s_log_block_size: 4 KiB
	sb[56], sb[57] = 0x53, 0xEF // s_magic
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(sb, 1024); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCreateMDRefuses(t *testing.T) {
	t.Run("ext4", func(t *testing.T) {
		img := ext4Image(t)
		before := fileHash(t, img)
		for _, metaPath := range []string{"", filepath.Join(t.TempDir(), "md")} {
			err := CreateMD(img, CreateOptions{MetaPath: metaPath})
			if !errors.Is(err, ErrHasData) || !strings.Contains(err.Error(), "ext2/3/4") || !strings.Contains(err.Error(), "--force") {
				t.Fatalf("create-md (meta %q) on ext4: %v, want ErrHasData naming ext4 and --force", metaPath, err)
			}
			if metaPath != "" {
				if _, err := os.Stat(metaPath); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the metadata file create-md made was left behind after refusing: %v", err)
				}
			}
		}
		if fileHash(t, img) != before {
			t.Fatal("a refused create-md changed the image")
		}
		if err := CreateMD(img, CreateOptions{Force: true}); err != nil {
			t.Fatalf("create-md --force: %v", err)
		}
		d := openT(t, img, Options{})
		if _, err := d.LoadMeta(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("existing metadata", func(t *testing.T) {
		path := sparseFile(t, testBytes)
		if err := CreateMD(path, CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		d := openT(t, path, Options{})
		if _, err := d.LoadMeta(); err != nil {
			t.Fatal(err)
		}
		if err := d.PersistMeta(record(d.Blocks(), 1, 0), false); err != nil {
			t.Fatal(err)
		}
		if err := CreateMD(path, CreateOptions{Force: true}); !errors.Is(err, ErrLocked) {
			t.Fatalf("create-md on a disk in use: %v, want ErrLocked", err)
		}
		d.Close()
		err := CreateMD(path, CreateOptions{})
		if !errors.Is(err, ErrHasData) || !strings.Contains(err.Error(), "already holds Tandem metadata") ||
			!strings.Contains(err.Error(), "C:1001") {
			t.Fatalf("create-md over metadata: %v, want ErrHasData with its generations", err)
		}
		// Damaged metadata is still metadata.
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		l := d.Layout()
		for s := range 2 {
			if _, err := f.WriteAt([]byte{0xFF}, int64(l.MetaOffset+l.HeaderOffset(s)+40)); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
		err = CreateMD(path, CreateOptions{})
		if !errors.Is(err, ErrHasData) || !strings.Contains(err.Error(), "does not decode") {
			t.Fatalf("create-md over damaged metadata: %v, want ErrHasData", err)
		}
		if err := CreateMD(path, CreateOptions{Force: true, Node: 1}); err != nil {
			t.Fatal(err)
		}
		d = openT(t, path, Options{})
		rec, err := d.LoadMeta()
		if err != nil {
			t.Fatal(err)
		}
		sameRecord(t, "forced", rec, &meta.Record{Blocks: d.Blocks(), Node: 1, Bitmap: meta.NewBitmap(d.Blocks())})
		if rep := d.MetaReport(); !errors.Is(rep.Other, meta.ErrNoMetadata) {
			t.Fatalf("slot B after a forced create-md: %v, want zeroed", rep.Other)
		}
	})
	t.Run("loop ext4", func(t *testing.T) {
		dev := loopDevice(t, 0, ext4Image(t))
		if err := CreateMD(dev, CreateOptions{}); !errors.Is(err, ErrHasData) {
			t.Fatalf("create-md on an ext4 loop device: %v, want ErrHasData", err)
		}
		if err := CreateMD(dev, CreateOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("node", func(t *testing.T) {
		if err := CreateMD(sparseFile(t, testBytes), CreateOptions{Node: 2}); err == nil || !strings.Contains(err.Error(), "node id 2") {
			t.Fatalf("create-md for node 2: %v", err)
		}
	})
}

func TestSignature(t *testing.T) {
	put := func(off int, s string) []byte {
		b := make([]byte, sigBytes)
		copy(b[off:], s)
		return b
	}
	cases := map[string][]byte{
		"ext2/3/4": put(1080, "\x53\xEF"),
		"XFS":      put(0, "XFSB"),
		"btrfs":    put(65600, "_BHRfS_M"),
		"swap":     put(4086, "SWAPSPACE2"),
		"LUKS":     put(0, "LUKS\xba\xbe"),
		"GPT":      put(512, "EFI PART"),
		"LVM2":     put(512, "LABELONE"),
		"MBR":      put(510, "\x55\xAA"),
	}
	for want, head := range cases {
		if got := Signature(head); !strings.Contains(got, want) {
			t.Errorf("Signature with %s: %q", want, got)
		}
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	noise := make([]byte, sigBytes)
	for i := range noise {
		noise[i] = byte(rnd.Uint32())
	}
	for name, head := range map[string][]byte{"zeroes": make([]byte, sigBytes), "noise": noise, "empty": nil,
		"short": []byte("XFS"), "ext magic, absurd block size": put(1080, "\x53\xEF")} {
		if name == "ext magic, absurd block size" {
			head[1024+24] = 40
		}
		if got := Signature(head); got != "" {
			t.Errorf("Signature(%s) = %q, want none", name, got)
		}
	}
}

func TestDump(t *testing.T) {
	path := sparseFile(t, testBytes)
	if err := CreateMD(path, CreateOptions{Node: 1}); err != nil {
		t.Fatal(err)
	}
	d := openT(t, path, Options{})
	if _, err := d.LoadMeta(); err != nil {
		t.Fatal(err)
	}
	bm := meta.NewBitmap(d.Blocks())
	bm.Set(5)
	bm.SetRange(10, 10)
	bm.Set(d.Blocks() - 1)
	rec := &meta.Record{Seq: 1, Blocks: d.Blocks(), Node: 1, Flags: meta.Consistent | meta.PeerOutdated,
		Gen: meta.Generations{Current: 0xABCDEF, Bitmap: 0x12, History: [2]meta.UUID{0x34, 0}}, AL: []uint32{3, 1},
		Bitmap: bm, PrimarySince: 9}
	if err := d.PersistMeta(rec, false); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := d.Dump(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"internal, 20480 bytes at offset 67088384",
		"header slot B used; slot A holds an older record",
		"node 1;\nseq 1;\n",
		"gen-current 0x0000000000ABCDEF;\ngen-bitmap 0x0000000000000012;\ngen-history 0x0000000000000034 0x0000000000000000;\n",
		"flags consistent|peer-outdated;\nprimary-since 9;\n",
		"blocks 16379; # 65516 KiB data area\n",
		"al-extents { 3 1 }; # 2 of 64, 4 MiB each\n",
		"out-of-sync 12; # blocks, 48 KiB\nbitmap { 5 10-19 16378 };\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("dump lacks %q:\n%s", want, out.String())
		}
	}
}
