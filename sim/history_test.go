package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOpKindOutcomeStrings(t *testing.T) {
	for k, want := range map[OpKind]string{OpWrite: "write", OpRead: "read", OpFlush: "flush", OpTrim: "trim", OpFinal: "final", 0: "OpKind(0)", 99: "OpKind(99)"} {
		if k.String() != want {
			t.Errorf("%d: %q, want %q", k, k.String(), want)
		}
	}
	for o, want := range map[Outcome]string{Pending: "pending", OK: "ok", Fail: "fail", Unknown: "unknown", 9: "Outcome(9)"} {
		if o.String() != want {
			t.Errorf("%d: %q, want %q", o, o.String(), want)
		}
	}
}

func TestHistoryInvokeComplete(t *testing.T) {
	var h History
	for _, ids := range [][]uint64{{1, 2, 3, 10}, {20, 5, 7}} {
		for _, id := range ids {
			i := h.Invoke(Request{ID: id, Op: OpRead, Block: id, Count: 1, Invoke: time.Duration(id)})
			if h.At(i).ID != id {
				t.Fatalf("At(%d) = %d, want %d", i, h.At(i).ID, id)
			}
		}
	}
	if h.Len() != 7 {
		t.Fatalf("Len %d", h.Len())
	}
	for i, r := range h.Requests() {
		if j, ok := h.Index(r.ID); !ok || j != i {
			t.Errorf("Index(%d) = %d, %v; want %d", r.ID, j, ok, i)
		}
	}
	if _, ok := h.Index(4); ok {
		t.Error("Index(4) found")
	}
	if !h.Complete(7, 100, OK, []uint64{42}) {
		t.Fatal("Complete(7) refused")
	}
	if h.Complete(7, 200, Fail, nil) {
		t.Error("completed twice")
	}
	if h.Complete(99, 200, Fail, nil) {
		t.Error("completed an unknown id")
	}
	i, _ := h.Index(7)
	if r := h.At(i); r.Outcome != OK || r.Complete != 100 || !slices.Equal(r.Read, []uint64{42}) {
		t.Errorf("request 7: %+v", *r)
	}
	if n := h.AbandonPending(); n != 6 {
		t.Errorf("AbandonPending = %d, want 6", n)
	}
	for _, r := range h.Requests() {
		if r.Outcome == Pending {
			t.Errorf("request %d still pending", r.ID)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("duplicate id accepted")
		}
	}()
	h.Invoke(Request{ID: 5})
}

func TestHistoryIndexWhileIncreasingNoAlloc(t *testing.T) {
	var h History
	for id := uint64(1); id <= 1000; id++ {
		h.Invoke(Request{ID: id * 2, Op: OpWrite})
	}
	if h.byID != nil {
		t.Fatal("map built for increasing ids")
	}
	i, ok := h.Index(1000)
	if !ok || i != 499 {
		t.Fatalf("Index(1000) = %d, %v", i, ok)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if !h.Complete(1000, 5, OK, nil) {
			t.Fatal("Complete refused")
		}
		h.At(i).Outcome = Pending
	})
	if allocs != 0 {
		t.Errorf("Complete allocates: %v", allocs)
	}
}

func TestHistoryBlocks(t *testing.T) {
	var h History
	h.Invoke(Request{ID: 1, Op: OpWrite, Block: 9, Count: 2, Value: 1})
	h.Invoke(Request{ID: 2, Op: OpRead, Block: 100, Count: 2})
	h.Invoke(Request{ID: 3, Op: OpTrim, Block: 3, Count: 1, Outcome: Fail})
	h.Invoke(Request{ID: 4, Op: OpWrite, Block: 10, Count: 1, Value: 7})
	if got := h.WrittenBlocks(); !slices.Equal(got, []uint64{3, 9, 10}) {
		t.Errorf("WrittenBlocks %v", got)
	}
	h.SetFinal(10, 7)
	h.SetFinal(3, 0)
	h.SetFinal(10, 8)
	if got := h.FinalBlocks(); !slices.Equal(got, []uint64{3, 10}) {
		t.Errorf("FinalBlocks %v", got)
	}
	if v, ok := h.Final(10); !ok || v != 8 {
		t.Errorf("Final(10) = %d, %v", v, ok)
	}
	if _, ok := h.Final(9); ok {
		t.Error("Final(9) set")
	}
}

func TestHistoryWriteJSON(t *testing.T) {
	var h History
	ms := time.Millisecond
	h.Invoke(Request{ID: 1, Node: 0, Op: OpWrite, Block: 5, Count: 2, Value: 0xa0, Invoke: 1 * ms, Complete: 2 * ms, Outcome: OK, Protocol: 'C', Gen: 3})
	h.Invoke(Request{ID: 2, Node: 1, Op: OpRead, Block: 5, Count: 2, Invoke: 3 * ms, Protocol: 'C'})
	h.Invoke(Request{ID: 3, Node: 1, Op: OpTrim, Block: 6, Count: 1, Invoke: 3 * ms, Protocol: 'B'})
	h.Invoke(Request{ID: 4, Node: 0, Op: OpFlush, Invoke: 4 * ms, Protocol: 'A'})
	h.Invoke(Request{ID: 5, Node: 0, Op: OpRead, Block: 9, Count: 1, Invoke: 5 * ms})
	h.Invoke(Request{ID: 6, Node: 7, Op: OpWrite, Block: 6, Count: 1, Value: 0xffffffffffffffff, Invoke: 6 * ms, Protocol: 'A'})
	h.Complete(2, 4*ms, OK, []uint64{0xa0, 0xa1})
	h.Complete(3, 5*ms, Unknown, nil)
	h.Complete(4, 5*ms, Fail, nil)
	h.Complete(5, 6*ms, Fail, nil)
	h.At(5).MayBeLost = true
	h.SetFinal(6, 0)
	h.SetFinal(5, 0xa0)
	h.SetFinal(1, 0) // never written, still exported

	var out bytes.Buffer
	if err := h.WriteJSON(&out, []string{"server1", `ser"ver2`}); err != nil {
		t.Fatal(err)
	}
	want := `{"node":"server1","op":"write","block":5,"count":1,"value":"00000000000000a0","invoke_ns":1000000,"complete_ns":2000000,"result":"ok","protocol":"C","id":1,"gen":3}
{"node":"server1","op":"write","block":6,"count":1,"value":"00000000000000a1","invoke_ns":1000000,"complete_ns":2000000,"result":"ok","protocol":"C","id":1,"gen":3}
{"node":"ser\"ver2","op":"read","block":5,"count":1,"value":"00000000000000a0","invoke_ns":3000000,"complete_ns":4000000,"result":"ok","protocol":"C","id":2}
{"node":"ser\"ver2","op":"read","block":6,"count":1,"value":"00000000000000a1","invoke_ns":3000000,"complete_ns":4000000,"result":"ok","protocol":"C","id":2}
{"node":"ser\"ver2","op":"trim","block":6,"count":1,"value":"0000000000000000","invoke_ns":3000000,"complete_ns":null,"result":"unknown","protocol":"B","id":3}
{"node":"server1","op":"flush","block":0,"count":0,"value":"","invoke_ns":4000000,"complete_ns":5000000,"result":"fail","protocol":"A","id":4}
{"node":"server1","op":"read","block":9,"count":1,"value":"","invoke_ns":5000000,"complete_ns":6000000,"result":"fail","protocol":"","id":5}
{"node":"node7","op":"write","block":6,"count":1,"value":"ffffffffffffffff","invoke_ns":6000000,"complete_ns":null,"result":"unknown","protocol":"A","id":6,"may_be_lost":true}
{"op":"final","block":1,"value":"0000000000000000"}
{"op":"final","block":5,"value":"00000000000000a0"}
{"op":"final","block":6,"value":"0000000000000000"}
`
	if out.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", out.String(), want)
	}
	for _, line := range strings.SplitAfter(out.String(), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("invalid JSON %q: %v", line, err)
		}
	}
	// Same history, same bytes.
	var again bytes.Buffer
	h.WriteJSON(&again, []string{"server1", `ser"ver2`})
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Error("export not deterministic")
	}
}

type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestHistoryWriteJSONError(t *testing.T) {
	var h History
	for i := uint64(1); i <= 2000; i++ {
		h.Invoke(Request{ID: i, Op: OpWrite, Block: i, Count: 1, Value: i, Outcome: OK})
	}
	if err := h.WriteJSON(&failWriter{n: 100 << 10}, nil); err == nil {
		t.Error("write error lost")
	}
}

func BenchmarkHistoryWriteJSON(b *testing.B) {
	h := genBench(newBenchRand(), 100_000, 2000)
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := h.WriteJSON(&buf, []string{"server1", "server2"}); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(buf.Len()))
}
