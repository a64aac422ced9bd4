package scenarios

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics; every error it reports has a position in
// the file; and whatever it accepts, Format prints as text that parses back
// to the same scenario and formats to the same text. The seed corpus is
// testdata/fuzz/FuzzParse plus the library.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("library/*.scn")
	for _, path := range files {
		if src, err := os.ReadFile(path); err == nil {
			f.Add(src)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		s, err := Parse("fuzz.scn", src)
		if err != nil {
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 || len(list) > MaxErrors+1 {
				t.Fatalf("error %v is not a non-empty ErrorList of at most %d", err, MaxErrors+1)
			}
			lines := bytes.Count(src, []byte("\n")) + 1
			for _, e := range list {
				if e.Pos.File != "fuzz.scn" || e.Pos.Line < 1 || e.Pos.Line > lines || e.Pos.Col < 1 || e.Msg == "" {
					t.Fatalf("error without a sound position: %#v", e)
				}
			}
			return
		}
		_ = s.Timeline()
		_ = s.Horizon()
		text := Format(s)
		back, err := Parse("fuzz.scn", text)
		if err != nil {
			t.Fatalf("Format output does not parse:\n%s\n%v", text, err)
		}
		if !reflect.DeepEqual(stripPos(back), stripPos(s)) {
			t.Fatalf("Parse(Format(s)) != s\ntext:\n%s\ngot:  %+v\nwant: %+v", text, stripPos(back), stripPos(s))
		}
		if again := Format(back); !bytes.Equal(again, text) {
			t.Fatalf("Format is not stable:\n%s\nthen:\n%s", text, again)
		}
	})
}
