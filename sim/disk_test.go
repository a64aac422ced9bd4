package sim

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// testDisk returns a disk with the data-fault gate open.
func testDisk(seed, blocks uint64, f DiskFaults) *Disk {
	d := NewDisk(DiskOptions{Blocks: blocks, MetaBytes: 4096, Faults: f}, NewRand(seed))
	d.AllowDataFaults(true)
	return d
}

func mustWrite(t *testing.T, d *Disk, block uint64, values ...uint64) {
	t.Helper()
	if err := d.Write(block, values); err != nil {
		t.Fatalf("write %d: %v", block, err)
	}
}

func mustRead(t *testing.T, d *Disk, block uint64, n int) []uint64 {
	t.Helper()
	out := make([]uint64, n)
	if err := d.Read(block, out); err != nil {
		t.Fatalf("read %d+%d: %v", block, n, err)
	}
	return out
}

func TestDiskRoundTrip(t *testing.T) {
	d := testDisk(1, 64, DiskFaults{})
	if got := mustRead(t, d, 0, 64); slices.ContainsFunc(got, func(v uint64) bool { return v != 0 }) {
		t.Fatalf("fresh disk reads %v", got)
	}
	mustWrite(t, d, 10, 101, 102, 103)
	mustWrite(t, d, 63, 6300)
	if got := mustRead(t, d, 9, 5); !slices.Equal(got, []uint64{0, 101, 102, 103, 0}) {
		t.Fatalf("read back %v", got)
	}
	if d.Pristine(11) != 102 || d.Durable(11) != 0 || d.Contents(11) != 102 || d.CachedBlocks() != 4 {
		t.Fatalf("before flush: pristine %d durable %d contents %d cached %d", d.Pristine(11), d.Durable(11), d.Contents(11), d.CachedBlocks())
	}
	mustWrite(t, d, 11, 202) // overwrite while cached
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if d.Durable(11) != 202 || d.Durable(63) != 6300 || d.CachedBlocks() != 0 {
		t.Fatalf("after flush: durable %d %d cached %d", d.Durable(11), d.Durable(63), d.CachedBlocks())
	}
	if err := d.Trim(10, 2); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, d, 10, 3); !slices.Equal(got, []uint64{0, 0, 103}) {
		t.Fatalf("after trim %v", got)
	}
	snap := d.Snapshot(nil)
	if len(snap) != 64 || snap[12] != 103 || snap[63] != 6300 || snap[10] != 0 {
		t.Fatalf("snapshot %v", snap)
	}
	st := d.Stats()
	if st.Writes != 3 || st.BlocksWritten != 5 || st.Reads != 3 || st.BlocksRead != 64+5+3 || st.Flushes != 1 || st.Trims != 1 || st.BlocksTrimmed != 2 {
		t.Fatalf("stats %+v", st)
	}
	if fb := d.FaultyBlocks(nil); len(fb) != 0 {
		t.Fatalf("faulty blocks %v on a perfect disk", fb)
	}
}

func TestDiskFlushThenCrashKeeps(t *testing.T) {
	for seed := range uint64(50) {
		d := testDisk(seed, 32, DiskFaults{})
		for b := range uint64(32) {
			mustWrite(t, d, b, 1000+b)
		}
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
		d.Crash()
		for b := range uint64(32) {
			if got := mustRead(t, d, b, 1)[0]; got != 1000+b {
				t.Fatalf("seed %d block %d: %d after flush+crash", seed, b, got)
			}
		}
		if st := d.Stats(); st.CrashLostBlocks != 0 || st.CrashKeptBlocks != 0 {
			t.Fatalf("crash with empty cache counted %+v", st)
		}
	}
}

// TestDiskCrashTearsBlocks: a crash without flush leaves each block old or
// new, and both happen within one multi-block write.
func TestDiskCrashTearsBlocks(t *testing.T) {
	d := testDisk(7, 64, DiskFaults{})
	vals := make([]uint64, 64)
	for i := range vals {
		vals[i] = uint64(i) + 1
	}
	mustWrite(t, d, 0, vals...)
	d.Crash()
	got := mustRead(t, d, 0, 64)
	kept := 0
	for i, v := range got {
		switch v {
		case vals[i]:
			kept++
		case 0:
		default:
			t.Fatalf("block %d holds %d after crash", i, v)
		}
	}
	st := d.Stats()
	if kept == 0 || kept == 64 || st.CrashKeptBlocks != uint64(kept) || st.CrashLostBlocks != uint64(64-kept) || d.CachedBlocks() != 0 {
		t.Fatalf("kept %d of 64, stats %+v", kept, st)
	}
}

// TestDiskCrashOutcomesOfOverwrite: a block written twice since its last
// flush may end up with the flushed value or either write after a crash, and
// with nothing else.
func TestDiskCrashOutcomesOfOverwrite(t *testing.T) {
	seen := map[uint64]int{}
	for seed := range uint64(400) {
		d := testDisk(seed, 1, DiskFaults{})
		mustWrite(t, d, 0, 1)
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, d, 0, 2)
		mustWrite(t, d, 0, 3)
		d.Crash()
		v := mustRead(t, d, 0, 1)[0]
		if v != d.Pristine(0) || v != d.Durable(0) {
			t.Fatalf("read %d pristine %d durable %d", v, d.Pristine(0), d.Durable(0))
		}
		seen[v]++
	}
	// Expected 1/4, 1/4, 1/2 of 400.
	if len(seen) != 3 || seen[1] < 60 || seen[2] < 60 || seen[3] < 150 {
		t.Fatalf("outcomes %v, want about 1:100 2:100 3:200", seen)
	}
}

// diskModel tracks, per block, the value reads must return and the values a
// crash may leave.
type diskModel struct {
	cur   []uint64
	legal [][]uint64
}

func (m *diskModel) settle(rt *rapid.T, d *Disk, what string) {
	for b := range m.cur {
		p := d.Pristine(uint64(b))
		if !slices.Contains(m.legal[b], p) {
			rt.Fatalf("after %s block %d holds %d, legal %v", what, b, p, m.legal[b])
		}
		if dv := d.Durable(uint64(b)); dv != p {
			rt.Fatalf("after %s block %d: durable %d pristine %d with an empty cache", what, b, dv, p)
		}
		m.cur[b] = p
		m.legal[b] = append(m.legal[b][:0], p)
	}
	if d.CachedBlocks() != 0 {
		rt.Fatalf("after %s %d blocks still cached", what, d.CachedBlocks())
	}
}

// TestDiskCrashProperty runs random sequences of writes, trims, reads,
// flushes and crashes, with transient read, write and flush errors, and
// checks that reads always return the latest write and that flushes and
// crashes leave every block with a legal value.
func TestDiskCrashProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		const blocks = 12
		f := DiskFaults{
			ReadError:  rapid.SampledFrom([]float64{0, 0.1}).Draw(rt, "readErr"),
			WriteError: rapid.SampledFrom([]float64{0, 0.2}).Draw(rt, "writeErr"),
			FlushError: rapid.SampledFrom([]float64{0, 0.3}).Draw(rt, "flushErr"),
		}
		d := testDisk(rapid.Uint64().Draw(rt, "seed"), blocks, f)
		m := &diskModel{cur: make([]uint64, blocks), legal: make([][]uint64, blocks)}
		for b := range m.legal {
			m.legal[b] = []uint64{0}
		}
		token := uint64(1)
		out := make([]uint64, 4)
		for range rapid.IntRange(1, 60).Draw(rt, "ops") {
			n := rapid.IntRange(1, 4).Draw(rt, "n")
			block := rapid.IntRange(0, blocks-n).Draw(rt, "block")
			switch op := rapid.IntRange(0, 9).Draw(rt, "op"); {
			case op < 4: // write
				vals := make([]uint64, n)
				for i := range vals {
					vals[i] = token
					token++
				}
				err := d.Write(uint64(block), vals)
				for i, v := range vals {
					b := block + i
					if err != nil {
						if !errors.Is(err, ErrIO) {
							rt.Fatalf("write: %v", err)
						}
						// Torn: each block landed or not; Pristine says which.
						p := d.Pristine(uint64(b))
						if p != m.cur[b] && p != v {
							rt.Fatalf("torn write left block %d = %d, want %d or %d", b, p, m.cur[b], v)
						}
						if p != v {
							continue
						}
					}
					m.cur[b] = v
					m.legal[b] = append(m.legal[b], v)
				}
			case op == 4: // trim
				if err := d.Trim(uint64(block), uint64(n)); err != nil {
					rt.Fatalf("trim: %v", err)
				}
				for b := block; b < block+n; b++ {
					m.cur[b] = 0
					m.legal[b] = append(m.legal[b], 0)
				}
			case op < 7: // read
				err := d.Read(uint64(block), out[:n])
				for i, v := range out[:n] {
					want := m.cur[block+i]
					if err != nil {
						if !errors.Is(err, ErrIO) {
							rt.Fatalf("read: %v", err)
						}
						want = 0
					}
					if v != want {
						rt.Fatalf("read block %d = %d, want %d (err %v)", block+i, v, want, err)
					}
				}
			case op < 9: // flush
				if err := d.Flush(); err != nil {
					if !errors.Is(err, ErrIO) {
						rt.Fatalf("flush: %v", err)
					}
					m.settle(rt, d, "failed flush")
				} else {
					for b := range m.legal {
						m.legal[b] = append(m.legal[b][:0], m.cur[b])
						if d.Durable(uint64(b)) != m.cur[b] {
							rt.Fatalf("block %d durable %d after flush, want %d", b, d.Durable(uint64(b)), m.cur[b])
						}
					}
				}
			default:
				d.Crash()
				m.settle(rt, d, "crash")
			}
			for b := range m.cur {
				if p, c, e := d.Pristine(uint64(b)), d.Contents(uint64(b)), d.Fault(uint64(b)); p != m.cur[b] || c != m.cur[b] || e != nil {
					rt.Fatalf("block %d: pristine %d contents %d fault %v, model %d", b, p, c, e, m.cur[b])
				}
			}
		}
		if !slices.Equal(d.Snapshot(nil), m.cur) {
			rt.Fatalf("snapshot %v, model %v", d.Snapshot(nil), m.cur)
		}
	})
}

// TestDiskMetaCrashProperty: the metadata area is torn at 512-byte sectors by
// crashes and failed flushes; every sector ends up as one of its images since
// the last flush, never a mix.
func TestDiskMetaCrashProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		const metaBytes = 1500 // 3 sectors, the last one partial
		f := DiskFaults{
			WriteError: rapid.SampledFrom([]float64{0, 0.2}).Draw(rt, "writeErr"),
			FlushError: rapid.SampledFrom([]float64{0, 0.3}).Draw(rt, "flushErr"),
		}
		d := NewDisk(DiskOptions{Blocks: 1, MetaBytes: metaBytes, Faults: f}, NewRand(rapid.Uint64().Draw(rt, "seed")))
		cur := make([]byte, metaBytes)
		var legal [][][]byte // per sector: the images a crash may leave
		sectorOf := func(b []byte, s int) []byte { return b[s*DiskSectorSize : min(len(b), (s+1)*DiskSectorSize)] }
		for s := 0; s*DiskSectorSize < metaBytes; s++ {
			legal = append(legal, [][]byte{slices.Clone(sectorOf(cur, s))})
		}
		actual := make([]byte, metaBytes)
		readAll := func() {
			if err := d.ReadMeta(0, actual); err != nil {
				rt.Fatal(err)
			}
		}
		settle := func(what string) {
			readAll()
			durable := make([]byte, metaBytes)
			d.DurableMeta(0, durable)
			if !bytes.Equal(durable, actual) || d.CachedSectors() != 0 {
				rt.Fatalf("after %s: durable differs from contents, %d sectors cached", what, d.CachedSectors())
			}
			for s := range legal {
				img := sectorOf(actual, s)
				if !slices.ContainsFunc(legal[s], func(l []byte) bool { return bytes.Equal(l, img) }) {
					rt.Fatalf("after %s sector %d holds an image never written", what, s)
				}
				legal[s] = [][]byte{slices.Clone(img)}
			}
			copy(cur, actual)
		}
		fill := byte(1)
		for range rapid.IntRange(1, 40).Draw(rt, "ops") {
			switch op := rapid.IntRange(0, 5).Draw(rt, "op"); {
			case op < 3:
				off := rapid.IntRange(0, metaBytes-1).Draw(rt, "off")
				n := rapid.IntRange(1, metaBytes-off).Draw(rt, "len")
				data := bytes.Repeat([]byte{fill}, n)
				fill++
				err := d.WriteMeta(uint64(off), data)
				if err != nil && !errors.Is(err, ErrIO) {
					rt.Fatal(err)
				}
				next := slices.Clone(cur)
				copy(next[off:], data)
				readAll()
				for s := off / DiskSectorSize; s*DiskSectorSize < off+n; s++ {
					got, old, nw := sectorOf(actual, s), sectorOf(cur, s), sectorOf(next, s)
					switch {
					case bytes.Equal(got, nw):
						legal[s] = append(legal[s], slices.Clone(nw))
					case err != nil && bytes.Equal(got, old):
					default:
						rt.Fatalf("sector %d after write (err %v) is neither old nor new", s, err)
					}
				}
				if err == nil && !bytes.Equal(actual, next) {
					rt.Fatalf("meta read back differs from the write")
				}
				copy(cur, actual)
			case op < 5:
				if err := d.Flush(); err != nil {
					settle("failed flush")
				} else {
					for s := range legal {
						legal[s] = [][]byte{slices.Clone(sectorOf(cur, s))}
					}
				}
			default:
				d.Crash()
				settle("crash")
			}
		}
	})
}

func TestDiskMetaTornOnCrash(t *testing.T) {
	oldData := bytes.Repeat([]byte{0xaa}, 4096)
	newData := bytes.Repeat([]byte{0x55}, 4096)
	mixed := 0
	for seed := range uint64(20) {
		d := testDisk(seed, 1, DiskFaults{})
		if err := d.WriteMeta(0, oldData); err != nil {
			t.Fatal(err)
		}
		if err := d.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := d.WriteMeta(0, newData); err != nil {
			t.Fatal(err)
		}
		// A partial-sector write keeps the rest of its sector.
		if err := d.WriteMeta(1000, []byte{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 4096)
		if err := d.ReadMeta(0, got); err != nil || got[999] != 0x55 || got[1000] != 1 || got[1002] != 3 || got[1003] != 0x55 {
			t.Fatalf("meta read back wrong (%v)", err)
		}
		d.Crash()
		if err := d.ReadMeta(0, got); err != nil {
			t.Fatal(err)
		}
		kept := 0
		for s := range 8 {
			sec := got[s*512 : (s+1)*512]
			switch {
			case bytes.Equal(sec, oldData[:512]):
			case bytes.Equal(sec, newData[:512]) && s != 1:
				kept++
			case s == 1 && (bytes.Equal(sec[:488], newData[:488]) && sec[488] == 1 || bytes.Equal(sec, newData[:512])):
				kept++ // sector 1 holds bytes 512..1023: either write may have been destaged
			default:
				t.Fatalf("seed %d: sector %d torn inside: %x", seed, s, sec[:16])
			}
		}
		if kept > 0 && kept < 8 {
			mixed++
		}
	}
	if mixed == 0 {
		t.Fatal("no crash tore the 8-sector write")
	}
}

func TestDiskCorruption(t *testing.T) {
	d := testDisk(3, 16, DiskFaults{Corrupt: 1})
	mustWrite(t, d, 5, 555)
	out := make([]uint64, 1)
	err := d.Read(5, out)
	var be *BlockError
	if !errors.Is(err, ErrChecksum) || !errors.As(err, &be) || be.Block != 5 {
		t.Fatalf("read of corrupted block: %v", err)
	}
	if out[0] == 555 || d.Contents(5) != out[0] || d.Pristine(5) != 555 || !errors.Is(d.Fault(5), ErrChecksum) {
		t.Fatalf("corrupted read %d contents %d pristine %d", out[0], d.Contents(5), d.Pristine(5))
	}
	// Sticky, across flush and crash, until rewritten.
	d.SetFaults(DiskFaults{})
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	d.Crash()
	if err := d.Read(5, out); !errors.Is(err, ErrChecksum) {
		t.Fatalf("second read: %v", err)
	}
	if fb := d.FaultyBlocks(nil); !slices.Equal(fb, []uint64{5}) {
		t.Fatalf("faulty blocks %v", fb)
	}
	mustWrite(t, d, 5, 556)
	if got := mustRead(t, d, 5, 1)[0]; got != 556 {
		t.Fatalf("after rewrite %d", got)
	}
	// Per-block errors of a multi-block read.
	d.SetFaults(DiskFaults{Corrupt: 1})
	mustWrite(t, d, 0, 1, 2, 3)
	errs := make([]error, 3)
	if err := d.ReadBlocks(0, make([]uint64, 3), errs); !errors.Is(err, ErrChecksum) || !errors.Is(errs[2], ErrChecksum) {
		t.Fatalf("ReadBlocks: %v %v", err, errs)
	}
	st := d.Stats()
	if st.Corruptions != 4 || st.ChecksumErrors != 5 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDiskDataFaultGate(t *testing.T) {
	f := DiskFaults{Corrupt: 1, LatentError: 1, LostWrite: 1, Misdirected: 1}
	d := NewDisk(DiskOptions{Blocks: 8, Faults: f}, NewRand(1))
	mustWrite(t, d, 2, 22)
	if got := mustRead(t, d, 2, 1)[0]; got != 22 {
		t.Fatalf("closed gate: read %d", got)
	}
	if st := d.Stats(); st.Suppressed != 4 || st.Corruptions+st.LatentErrors+st.LostWrites+st.Misdirected != 0 {
		t.Fatalf("closed gate stats %+v", st)
	}
	// A per-block gate: faults strike only where it says.
	d.AllowDataFaults(true)
	d.SetDataFaultGate(func(b uint64) bool { return b == 7 })
	d.SetFaults(DiskFaults{Corrupt: 1})
	mustRead(t, d, 2, 1)
	if err := d.Read(7, make([]uint64, 1)); !errors.Is(err, ErrChecksum) {
		t.Fatalf("gated-in block: %v", err)
	}
	// Unrecoverable overrides a closed gate.
	d.AllowDataFaults(false)
	d.SetFaults(DiskFaults{LatentError: 1, Unrecoverable: true})
	mustWrite(t, d, 3, 33)
	if err := d.Read(3, make([]uint64, 1)); !errors.Is(err, ErrIO) {
		t.Fatalf("unrecoverable latent error: %v", err)
	}
}

func TestDiskLatentError(t *testing.T) {
	d := testDisk(4, 8, DiskFaults{LatentError: 1})
	mustWrite(t, d, 1, 11, 12)
	d.SetFaults(DiskFaults{})
	out := make([]uint64, 2)
	if err := d.Read(1, out); !errors.Is(err, ErrIO) || out[0] != 0 || out[1] != 0 {
		t.Fatalf("latent read: %v %v", err, out)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d.Read(2, out[:1]); !errors.Is(err, ErrIO) {
		t.Fatalf("latent read after flush: %v", err)
	}
	mustWrite(t, d, 2, 22)
	if got := mustRead(t, d, 2, 1)[0]; got != 22 {
		t.Fatalf("rewritten latent block reads %d", got)
	}
	if st := d.Stats(); st.LatentErrors != 2 || st.LatentReads != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDiskLostWrite(t *testing.T) {
	d := testDisk(5, 8, DiskFaults{})
	mustWrite(t, d, 3, 30)
	d.SetFaults(DiskFaults{LostWrite: 1})
	mustWrite(t, d, 3, 31) // reports success
	if got := mustRead(t, d, 3, 1)[0]; got != 30 {
		t.Fatalf("lost write: read %d, want the old 30", got)
	}
	if d.Pristine(3) != 31 || d.Fault(3) != nil {
		t.Fatalf("pristine %d fault %v", d.Pristine(3), d.Fault(3))
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if d.Durable(3) != 31 || d.Contents(3) != 30 {
		t.Fatalf("durable %d contents %d", d.Durable(3), d.Contents(3))
	}
	if st := d.Stats(); st.LostWrites != 1 || st.BlocksWritten != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDiskMisdirectedWrite(t *testing.T) {
	for seed := range uint64(20) {
		d := testDisk(seed, 16, DiskFaults{})
		for b := range uint64(16) {
			mustWrite(t, d, b, 100+b)
		}
		d.SetFaults(DiskFaults{Misdirected: 1})
		mustWrite(t, d, 4, 900, 901) // reports success
		d.SetFaults(DiskFaults{})
		fb := d.FaultyBlocks(nil)
		if len(fb) != 2 || fb[1] != fb[0]+1 || fb[0] == 4 {
			t.Fatalf("seed %d: misdirected to %v", seed, fb)
		}
		target := fb[0]
		// The intended blocks keep their old data, unless the shifted
		// extent overlaps them; Pristine holds what the writer meant.
		got, errs := make([]uint64, 2), make([]error, 2)
		_ = d.ReadBlocks(4, got, errs)
		for i, b := range []uint64{4, 5} {
			if slices.Contains(fb, b) {
				if !errors.Is(errs[i], ErrMisdirected) {
					t.Fatalf("seed %d: overlapped block %d: %v", seed, b, errs[i])
				}
			} else if errs[i] != nil || got[i] != 100+b {
				t.Fatalf("seed %d: intended block %d reads %d %v, want the old %d", seed, b, got[i], errs[i], 100+b)
			}
			if d.Pristine(b) != 896+b {
				t.Fatalf("seed %d: pristine %d = %d", seed, b, d.Pristine(b))
			}
		}
		out := make([]uint64, 2)
		err := d.Read(target, out)
		var be *BlockError
		if !errors.Is(err, ErrMisdirected) || !errors.As(err, &be) || be.Block != target || !slices.Equal(out, []uint64{900, 901}) {
			t.Fatalf("seed %d: read at target %d: %v %v", seed, target, err, out)
		}
		for _, b := range fb {
			if b != 4 && b != 5 && d.Pristine(b) != 100+b {
				t.Fatalf("seed %d: target %d pristine %d", seed, b, d.Pristine(b))
			}
		}
		overlap := 0
		for _, b := range fb {
			if b == 4 || b == 5 {
				overlap++
			}
		}
		if st := d.Stats(); st.Misdirected != 1 || st.MisdirectedReads != uint64(2+overlap) {
			t.Fatalf("stats %+v", st)
		}
		// Rewriting the target clears it.
		mustWrite(t, d, target, 1, 2)
		if fb := d.FaultyBlocks(nil); len(fb) != 0 {
			t.Fatalf("still faulty %v", fb)
		}
	}
}

func TestDiskReadError(t *testing.T) {
	d := testDisk(6, 8, DiskFaults{})
	mustWrite(t, d, 0, 7, 8)
	d.SetFaults(DiskFaults{ReadError: 1})
	out := []uint64{99, 99}
	if err := d.Read(0, out); err != ErrIO || out[0] != 0 || out[1] != 0 {
		t.Fatalf("read error: %v %v", err, out)
	}
	if err := d.ReadMeta(0, make([]byte, 10)); err != ErrIO {
		t.Fatalf("meta read error: %v", err)
	}
	d.SetFaults(DiskFaults{})
	if got := mustRead(t, d, 0, 2); !slices.Equal(got, []uint64{7, 8}) {
		t.Fatalf("transient error harmed data: %v", got)
	}
	if st := d.Stats(); st.ReadErrors != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDiskWriteErrorTorn(t *testing.T) {
	d := testDisk(8, 64, DiskFaults{WriteError: 1})
	vals := make([]uint64, 64)
	for i := range vals {
		vals[i] = 1 + uint64(i)
	}
	if err := d.Write(0, vals); err != ErrIO {
		t.Fatalf("write error: %v", err)
	}
	landed := 0
	for i, v := range d.Snapshot(nil) {
		switch v {
		case vals[i]:
			landed++
		case 0:
		default:
			t.Fatalf("block %d = %d after torn write", i, v)
		}
		if d.Pristine(uint64(i)) != v {
			t.Fatalf("pristine %d != contents %d", d.Pristine(uint64(i)), v)
		}
	}
	if st := d.Stats(); landed == 0 || landed == 64 || st.TornBlocks != uint64(landed) || st.WriteErrors != 1 || st.BlocksWritten != 0 {
		t.Fatalf("landed %d, stats %+v", landed, st)
	}
}

func TestDiskFlushErrorThenCrashLoses(t *testing.T) {
	d := testDisk(9, 64, DiskFaults{})
	for b := range uint64(64) {
		mustWrite(t, d, b, 1)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	for b := range uint64(64) {
		mustWrite(t, d, b, 2)
	}
	d.SetFaults(DiskFaults{FlushError: 1})
	if err := d.Flush(); err != ErrIO {
		t.Fatalf("flush: %v", err)
	}
	d.SetFaults(DiskFaults{})
	before := d.Snapshot(nil)
	d.Crash()
	after := d.Snapshot(nil)
	if !slices.Equal(before, after) {
		t.Fatal("crash after a failed flush changed something: the cache should be empty")
	}
	lost := 0
	for b, v := range after {
		if v == 1 {
			lost++
		} else if v != 2 {
			t.Fatalf("block %d = %d", b, v)
		}
	}
	if st := d.Stats(); lost == 0 || lost == 64 || st.FlushErrors != 1 || st.FlushLostBlocks != uint64(lost) {
		t.Fatalf("lost %d, stats %+v", lost, st)
	}
}

func TestDiskNoSpace(t *testing.T) {
	d := testDisk(10, 16, DiskFaults{FullAt: 8})
	mustWrite(t, d, 7, 70)
	if err := d.Write(8, []uint64{80}); err != ErrNoSpace {
		t.Fatalf("write at FullAt: %v", err)
	}
	if err := d.Write(6, []uint64{60, 61, 62}); err != ErrNoSpace {
		t.Fatalf("write across FullAt: %v", err)
	}
	if got := mustRead(t, d, 6, 3); !slices.Equal(got, []uint64{0, 70, 0}) {
		t.Fatalf("ENOSPC changed data: %v", got)
	}
	if err := d.Trim(8, 8); err != nil {
		t.Fatalf("trim on a full device: %v", err)
	}
	if st := d.Stats(); st.NoSpace != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDiskFailAndRepair(t *testing.T) {
	d := testDisk(11, 8, DiskFaults{})
	mustWrite(t, d, 1, 10)
	if err := d.WriteMeta(0, []byte("meta")); err != nil {
		t.Fatal(err)
	}
	d.Fail()
	for name, err := range map[string]error{
		"write":     d.Write(1, []uint64{11}),
		"read":      d.Read(1, make([]uint64, 1)),
		"flush":     d.Flush(),
		"trim":      d.Trim(0, 1),
		"writemeta": d.WriteMeta(0, []byte("x")),
		"readmeta":  d.ReadMeta(0, make([]byte, 4)),
	} {
		if err != ErrFailed {
			t.Errorf("%s on a failed disk: %v", name, err)
		}
	}
	if !d.Failed() || d.Stats().FailedOps != 6 || d.Pristine(1) != 10 {
		t.Fatalf("failed %v stats %+v pristine %d", d.Failed(), d.Stats(), d.Pristine(1))
	}
	d.Repair()
	if d.Failed() || d.CachedBlocks() != 0 || d.CachedSectors() != 0 {
		t.Fatal("repaired disk not blank and working")
	}
	if got := mustRead(t, d, 0, 8); slices.ContainsFunc(got, func(v uint64) bool { return v != 0 }) {
		t.Fatalf("repaired disk reads %v", got)
	}
	m := make([]byte, 4)
	if err := d.ReadMeta(0, m); err != nil || !bytes.Equal(m, make([]byte, 4)) {
		t.Fatalf("repaired meta %q %v", m, err)
	}
	mustWrite(t, d, 1, 12)
	if st := d.Stats(); st.Failures != 1 || st.Repairs != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDiskLatency(t *testing.T) {
	lat := DiskLatency{
		Read:  DiskOpLatency{Min: 100 * time.Microsecond, Mean: 200 * time.Microsecond, Max: 2 * time.Millisecond, PerBlock: 10 * time.Microsecond},
		Write: DiskOpLatency{Min: 50 * time.Microsecond},
		Flush: DiskOpLatency{Min: time.Millisecond, Mean: 5 * time.Millisecond, Max: 3 * time.Millisecond},
	}
	d := NewDisk(DiskOptions{Blocks: 4, Latency: lat}, NewRand(12))
	var sum time.Duration
	const n = 20000
	for range n {
		l := d.Latency(DiskRead, 1)
		if l < lat.Read.Min || l > lat.Read.Max {
			t.Fatalf("read latency %v", l)
		}
		sum += l
	}
	if mean := sum / n; mean < 190*time.Microsecond || mean > 210*time.Microsecond {
		t.Fatalf("mean read latency %v, want about 200µs", mean)
	}
	if l := d.Latency(DiskWrite, 3); l != 50*time.Microsecond {
		t.Fatalf("constant write latency %v", l)
	}
	if l := d.Latency(DiskRead, 5); l < 140*time.Microsecond {
		t.Fatalf("5-block read %v below Min+4*PerBlock", l)
	}
	if l := d.Latency(DiskFlush, 0); l < time.Millisecond || l > 3*time.Millisecond {
		t.Fatalf("flush latency %v", l)
	}
	d.SetFaults(DiskFaults{Stall: 1, StallFor: time.Second})
	if l := d.Latency(DiskWrite, 1); l != time.Second+50*time.Microsecond {
		t.Fatalf("stalled write %v", l)
	}
	if st := d.Stats(); st.Stalls != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// diskWorkload drives d with a random mix of everything, faults included.
func diskWorkload(d *Disk, seed uint64) {
	w := NewRand(seed ^ 0xabcdef)
	vals := make([]uint64, 4)
	out := make([]uint64, 4)
	meta := make([]byte, 700)
	for i := range 20000 {
		n := 1 + w.Intn(4)
		b := uint64(w.Intn(int(d.Blocks()) - n + 1))
		switch k := w.Intn(100); {
		case k < 40:
			for j := range n {
				vals[j] = uint64(i*4 + j + 1)
			}
			_ = d.Write(b, vals[:n])
		case k < 75:
			_ = d.Read(b, out[:n])
		case k < 80:
			_ = d.Trim(b, uint64(n))
		case k < 85:
			_ = d.WriteMeta(uint64(w.Intn(4096-700)), meta[:1+w.Intn(700)])
		case k < 88:
			_ = d.ReadMeta(uint64(w.Intn(4096-700)), meta)
		case k < 97:
			d.Latency(DiskOpKind(w.Intn(4)), n)
			_ = d.Flush()
		default:
			d.Crash()
		}
	}
}

func TestDiskDeterminism(t *testing.T) {
	f := DiskFaults{
		LatentError: 0.01, ReadError: 0.01, WriteError: 0.02, FlushError: 0.05, Corrupt: 0.01,
		LostWrite: 0.01, Misdirected: 0.01, Stall: 0.05, StallFor: time.Second, FullAt: 250,
	}
	run := func(seed uint64) (DiskStats, []uint64, []byte) {
		d := testDisk(seed, 256, f)
		diskWorkload(d, 1)
		m := make([]byte, 4096)
		d.DurableMeta(0, m)
		return d.Stats(), d.Snapshot(nil), m
	}
	s1, c1, m1 := run(42)
	s2, c2, m2 := run(42)
	if s1 != s2 || !slices.Equal(c1, c2) || !bytes.Equal(m1, m2) {
		t.Fatalf("same seed, different runs:\n%+v\n%+v", s1, s2)
	}
	s3, _, _ := run(43)
	if s1 == s3 {
		t.Fatal("different seeds, same stats")
	}
	// Every kind of fault happened.
	for name, v := range map[string]uint64{
		"latent": s1.LatentErrors, "read": s1.ReadErrors, "write": s1.WriteErrors, "flush": s1.FlushErrors,
		"corrupt": s1.Corruptions, "lost": s1.LostWrites, "misdirected": s1.Misdirected, "stall": s1.Stalls,
		"nospace": s1.NoSpace, "torn": s1.TornBlocks + s1.TornSectors, "crash lost": s1.CrashLostBlocks + s1.CrashLostSectors,
		"destaged": s1.Destaged, "checksum": s1.ChecksumErrors, "misdirected reads": s1.MisdirectedReads, "latent reads": s1.LatentReads,
	} {
		if v == 0 {
			t.Errorf("no %s fault in %+v", name, s1)
		}
	}
}

func TestDiskNoAllocSteadyState(t *testing.T) {
	d := testDisk(13, 1024, DiskFaults{ReadError: 0.01, WriteError: 0.01, FlushError: 0.01, Stall: 0.01})
	vals, out := []uint64{1, 2, 3, 4}, make([]uint64, 4)
	meta := make([]byte, 600)
	var b uint64
	step := func() {
		b = (b + 37) % 1020
		_ = d.Write(b, vals)
		_ = d.Read(b, out)
		_ = d.WriteMeta(b, meta)
		_ = d.ReadMeta(b, meta)
		d.Latency(DiskWrite, 4)
		if b%8 == 0 {
			_ = d.Flush()
		}
		if b%64 == 1 {
			d.Crash()
		}
	}
	for range 5000 {
		step()
	}
	if allocs := testing.AllocsPerRun(2000, step); allocs != 0 {
		t.Fatalf("disk operations allocate %v times per step", allocs)
	}
}

// BenchmarkDiskWriteRead: one single-block write and one read per op, a
// flush every 16 ops, on a 64 Ki-block disk with (rare) faults configured.
func BenchmarkDiskWriteRead(b *testing.B) {
	d := testDisk(1, 1<<16, DiskFaults{ReadError: 1e-4, WriteError: 1e-4, FlushError: 1e-4, LatentError: 1e-5, Corrupt: 1e-5, LostWrite: 1e-5, Misdirected: 1e-5})
	w := NewRand(2)
	vals, out := make([]uint64, 1), make([]uint64, 1)
	var i uint64
	b.ReportAllocs()
	for b.Loop() {
		i++
		blk := w.Uint64() & (1<<16 - 1)
		vals[0] = i
		_ = d.Write(blk, vals)
		_ = d.Read(blk, out)
		if i%16 == 0 {
			_ = d.Flush()
		}
	}
}
