package proto

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	in := Request{ID: 7, Op: OpRun, Args: []string{"echo", "hi"}, Stdin: []byte{0, 1, 2}}
	if err := Write(&buf, &in); err != nil {
		t.Fatal(err)
	}
	var out Request
	if err := Read(&buf, &out); err != nil {
		t.Fatal(err)
	}
	if out.ID != 7 || out.Op != OpRun || strings.Join(out.Args, " ") != "echo hi" || !bytes.Equal(out.Stdin, in.Stdin) {
		t.Fatalf("round trip: %+v", out)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxFrame+1)
	if err := Read(bytes.NewReader(hdr[:]), &out); err == nil {
		t.Fatal("oversized frame accepted")
	}
}
