package meta

import "testing"

func TestPrimarySinceRoundTrip(t *testing.T) {
	l, err := NewLayout(64<<20, true, 0, 8)
	if err != nil {
		t.Fatal(err)
	}
	r := &Record{Seq: 3, Blocks: l.DataBlocks, Node: 1, Gen: Generations{Current: 9},
		Flags: Consistent, Bitmap: NewBitmap(l.DataBlocks), PrimarySince: 42}
	got, err := l.Decode(l.EncodeAll(nil, r))
	if err != nil {
		t.Fatal(err)
	}
	if got.PrimarySince != 42 {
		t.Fatalf("PrimarySince = %d, want 42", got.PrimarySince)
	}
}
