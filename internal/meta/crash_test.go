package meta

import (
	"math/bits"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

const sector = 512

// Crash points within one persist (see the package documentation's rule:
// pages, flush, header, flush).
const (
	crashNone   = iota // the persist completes; no crash
	crashPages         // some page sectors written, the header not
	crashHeader        // pages flushed, some header sectors written
	crashAfter         // everything written, then a crash
	crashPoints
)

// tear applies the sectors of ws that keep says to keep (in sector order
// across ws) and reports whether all were kept.
func tear(t *rapid.T, area []byte, ws []Write, label string) (all bool) {
	all = true
	for _, w := range ws {
		n := len(w.Data) / sector
		keep := rapid.SliceOfN(rapid.Bool(), n, n).Draw(t, label)
		for i, k := range keep {
			if k {
				copy(area[w.Offset+uint64(i*sector):], w.Data[i*sector:(i+1)*sector])
			} else {
				all = false
			}
		}
	}
	return all
}

// mutate changes rec the ways the state machine does between persists.
func mutate(t *rapid.T, l Layout, rec *Record) {
	n := rec.Blocks
	for range rapid.IntRange(0, 4).Draw(t, "bitOps") {
		first := rapid.Uint64Range(0, n-1).Draw(t, "first")
		k := rapid.Uint64Range(0, min(n-first, 3*BitsPerPage/2)).Draw(t, "k")
		switch rapid.IntRange(0, 9).Draw(t, "bitOp") {
		case 0, 1, 2, 3:
			rec.Bitmap.SetRange(first, k)
		case 4, 5, 6, 7:
			rec.Bitmap.ClearRange(first, k) // resync progress
		case 8:
			rec.Bitmap.SetAll()
		case 9:
			rec.Bitmap.ClearAll()
		}
	}
	if rapid.Bool().Draw(t, "newGen") {
		g := &rec.Gen
		g.History[1], g.History[0], g.Bitmap = g.History[0], g.Bitmap, g.Current
		g.Current = UUID(rapid.Uint64().Draw(t, "uuid"))
	}
	rec.Flags = Flags(rapid.Uint32Range(0, uint32(KnownFlags)).Draw(t, "flags"))
	if rapid.Bool().Draw(t, "newAL") {
		all := make([]uint32, ExtentCount(n))
		for i := range all {
			all[i] = uint32(i)
		}
		size := min(l.ALSlots, len(all))
		if rapid.Bool().Draw(t, "partialAL") {
			size = rapid.IntRange(0, size).Draw(t, "alSize")
		}
		rec.AL = rapid.Permutation(all).Draw(t, "al")[:size]
	}
}

// TestCrashSafety is the "crash-consistent metadata" property: persist a
// random sequence of records; now and then crash during a persist, tearing
// its writes at sector granularity where the persisting rule allows; decode;
// carry on from the decoded record, as a restarted node does (reusing the
// crashed persist's Seq). The durable record is the one of the last persist
// that completed. After every crash:
//
//   - Decode succeeds and returns, for the header fields, the durable record
//     or the new one (never a mixture, never older: Seq and generations never
//     go backwards), the new one whenever its header was written whole;
//   - if it returns the new one, the bitmap is exactly the new one;
//   - if the durable one, every bit set in its bitmap is still set, and each
//     bitmap page decodes either exactly as durable or, only if a crashed
//     persist since wrote to it, as all set.
//
// A persist that completes decodes exactly, including the first one after a
// crash, which must repair the pages the crash left behind (stale pages of
// the crashed persist carry the very Seq it reuses).
func TestCrashSafety(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// Shapes: anything (mostly small), many bitmap pages, and headers
		// long enough (AL over 104 extents) to tear across sectors.
		var blocks uint64
		var slots int
		switch rapid.IntRange(0, 2).Draw(t, "shape") {
		case 0:
			blocks, slots = rapid.Uint64Range(1, 320_000).Draw(t, "blocks"), rapid.IntRange(1, 400).Draw(t, "slots")
		case 1:
			blocks, slots = rapid.Uint64Range(5*BitsPerPage, 10*BitsPerPage).Draw(t, "blocks"), rapid.IntRange(1, 20).Draw(t, "slots")
		case 2:
			blocks, slots = rapid.Uint64Range(200*BlocksPerExtent, 320_000).Draw(t, "blocks"), rapid.IntRange(200, 1100).Draw(t, "slots")
		}
		var l Layout
		var err error
		if rapid.Bool().Draw(t, "internal") {
			// The device that leaves about blocks for data.
			tail := rapid.Uint64Range(0, 2*PageSize).Draw(t, "tail")
			metaBlocks := 2 + 2*roundUp(alFixed+4*uint64(slots), PageSize)/BlockSize + pagesFor(blocks)
			l, err = NewLayout((blocks+metaBlocks)*BlockSize+tail, true, 0, slots)
		} else {
			l, err = NewLayout(blocks*BlockSize, false, 1<<30, slots)
		}
		if err != nil {
			t.Fatal(err)
		}

		rec := &Record{
			Seq:    rapid.Uint64Range(0, 1000).Draw(t, "seq0"),
			Blocks: l.DataBlocks,
			Node:   uint8(rapid.IntRange(0, 2).Draw(t, "node")),
			Bitmap: NewBitmap(l.DataBlocks),
		}
		mutate(t, l, rec)
		area := l.EncodeAll(nil, rec)
		// durable is the record of the last persist that completed (its
		// header landed): what a restart must give at least. Records decoded
		// after a crash are not durable themselves: their conservative
		// all-set pages are only in memory until a persist completes.
		durable := rec.Clone()
		touched := map[uint64]bool{} // pages written by crashed persists since durable; only looked up
		prev := rec.Clone()          // EncodeDelta's prev

		for step := range rapid.IntRange(1, 12).Draw(t, "persists") {
			cur := prev.Clone()
			mutate(t, l, cur)
			cur.Seq = durable.Seq + 1
			var ws []Write
			if rapid.IntRange(0, 3).Draw(t, "full") == 0 {
				ws, err = l.Encode(cur)
			} else {
				ws, err = l.EncodeDelta(prev, cur)
			}
			if err != nil {
				t.Fatal(err)
			}
			pages, header := ws[:len(ws)-1], ws[len(ws)-1]
			if header.Offset != l.HeaderOffset(int(cur.Seq&1)) {
				t.Fatalf("the last write is not the header of slot %d", cur.Seq&1)
			}
			for _, w := range pages[1:] { // pages[0] is the activity log
				for o := uint64(0); o < uint64(len(w.Data)); o += PageSize {
					touched[(w.Offset-l.BitmapOffset()+o)/PageSize] = true
				}
			}

			crash := rapid.IntRange(0, crashPoints-1).Draw(t, "crash")
			headerDone := false
			switch crash {
			case crashNone, crashAfter:
				apply(area, ws)
				headerDone = true
			case crashPages:
				tear(t, area, pages, "pageSectors")
			case crashHeader:
				apply(area, pages)
				tear(t, area, []Write{header}, "headerSectors")
				// Only the first sector of a header counts.
				headerDone = string(area[header.Offset:][:headerLen]) == string(header.Data[:headerLen])
			}

			got, rep, err := l.DecodeReport(area)
			if err != nil {
				t.Fatalf("step %d, crash %d: %v", step, crash, err)
			}
			switch got.Seq {
			case cur.Seq:
				if !headerDone {
					t.Fatalf("step %d, crash %d: header %d not written, yet decoded", step, crash, cur.Seq)
				}
				if d := sameRecord(got, cur); d != "" {
					t.Fatalf("step %d, crash %d: decoded the new Seq %d but %s differs", step, crash, cur.Seq, d)
				}
				if rep.BadPages+rep.NewerPages != 0 {
					t.Fatalf("step %d: complete persist reports %+v", step, rep)
				}
			case durable.Seq:
				if headerDone && durable.Seq != cur.Seq {
					t.Fatalf("step %d, crash %d: header %d written whole, decoded %d", step, crash, cur.Seq, got.Seq)
				}
				if d := sameHeader(got, durable); d != "" {
					t.Fatalf("step %d, crash %d: decoded the old Seq %d but %s differs", step, crash, durable.Seq, d)
				}
				if !got.Bitmap.Contains(durable.Bitmap) {
					t.Fatalf("step %d, crash %d: decoded bitmap lost bits of the durable record", step, crash)
				}
				for p := range l.BitmapPages {
					lo, hi := p*wordsPerPage, min((p+1)*wordsPerPage, uint64(len(got.Bitmap.words)))
					same := slices.Equal(got.Bitmap.words[lo:hi], durable.Bitmap.words[lo:hi])
					var set uint64
					for _, w := range got.Bitmap.words[lo:hi] {
						set += uint64(bits.OnesCount64(w))
					}
					full := set == min(BitsPerPage, l.DataBlocks-p*BitsPerPage)
					if !same && (!touched[p] || !full) {
						t.Fatalf("step %d, crash %d: page %d (touched %v) is neither the durable bits nor all set",
							step, crash, p, touched[p])
					}
				}
			default:
				t.Fatalf("step %d, crash %d: decoded Seq %d, persisted %d over durable %d", step, crash, got.Seq, cur.Seq, durable.Seq)
			}

			if got.Seq == cur.Seq {
				durable = cur.Clone()
				clear(touched)
			}
			if crash == crashNone {
				prev = cur.Clone()
			} else {
				// Restart from what is on disk, as a node does: the
				// decoded record (with its note of untrusted pages) is
				// EncodeDelta's next prev.
				again, err := l.Decode(area)
				if err != nil || sameRecord(again, got) != "" {
					t.Fatalf("step %d: decoding again gives another record: %v", step, err)
				}
				prev = got
			}
		}
	})
}
