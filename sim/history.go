package sim

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// OpKind is what a client request asks of the replicated block device.
type OpKind uint8

const (
	OpWrite OpKind = iota + 1
	OpRead
	OpFlush
	OpTrim
	OpFinal // not a request: the value a block holds after the liveness phase (JSON export only)
)

var opKindNames = [...]string{OpWrite: "write", OpRead: "read", OpFlush: "flush", OpTrim: "trim", OpFinal: "final"}

func (k OpKind) String() string {
	if int(k) < len(opKindNames) && opKindNames[k] != "" {
		return opKindNames[k]
	}
	return "OpKind(" + strconv.Itoa(int(k)) + ")"
}

// Outcome is how a request ended.
type Outcome uint8

const (
	// Pending: invoked, not (yet) completed. Checkers treat it as Unknown.
	Pending Outcome = iota
	// OK: the device acknowledged the request.
	OK
	// Fail: the device reported an error. A failed write may still have
	// taken effect (in part or on one node only).
	Fail
	// Unknown: the serving node died or the request never completed.
	Unknown
)

var outcomeNames = [...]string{Pending: "pending", OK: "ok", Fail: "fail", Unknown: "unknown"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Request is one client request to the replicated device and its outcome.
type Request struct {
	ID    uint64
	Node  int    // index of the node that served it
	Op    OpKind // OpWrite, OpRead, OpFlush or OpTrim
	Block uint64 // first 4 KiB block
	Count int    // number of blocks
	// Value is, for a write, the token of block Block; block Block+i holds
	// Value+uint64(i). Tokens are unique in a run and never 0. A trim writes
	// zeros (token 0) and ignores Value.
	Value uint64
	// Read holds, for a read that completed OK, the token returned for each
	// block (len Count). The history owns the slice.
	Read []uint64
	// Invoke and Complete are global simulated times. Complete is meaningless
	// while Pending or Unknown.
	Invoke, Complete time.Duration
	Outcome          Outcome
	Protocol         byte   // 'A', 'B' or 'C'
	Gen              uint64 // the generation a write was accepted under (a read: the server's current one), 0 if unknown
	// MayBeLost is set by the cluster on an acknowledged write inside the
	// documented protocol A/B loss window, or discarded by a reported
	// split-brain resolution: it may be missing afterwards without that
	// being a violation.
	MayBeLost bool
	// SplitView is set on a read served by one side of a split brain (both
	// nodes Primary and apart, or under a generation a resolution later
	// discarded): it saw a timeline that is not the cluster's, so it
	// constrains nothing.
	SplitView bool
}

// History is the client history of one run: every request in invoke order,
// and after the liveness phase the value each block finally holds.
//
// Invoke returns an index, not a pointer: the requests live in a growing
// slice, so pointers into it would dangle after the next Invoke. At(i) gives
// a pointer that is valid until the next Invoke.
//
// Requests are looked up by ID without allocating while IDs increase in
// invoke order (the usual case: a counter); the first out-of-order ID switches
// to a map.
type History struct {
	reqs   []Request
	byID   map[uint64]int // nil while IDs increase with the index
	final  map[uint64]uint64
	finals []uint64 // blocks with a final value, in SetFinal order (sorted on export)
}

// Invoke records a new request (normally Outcome Pending) and returns its
// index. A duplicate ID panics: it would make the history ambiguous.
func (h *History) Invoke(r Request) int {
	i := len(h.reqs)
	if h.byID == nil && i > 0 && r.ID <= h.reqs[i-1].ID {
		h.byID = make(map[uint64]int, 2*i)
		for j := range h.reqs {
			h.byID[h.reqs[j].ID] = j
		}
	}
	if h.byID != nil {
		if _, dup := h.byID[r.ID]; dup {
			panic(fmt.Sprintf("sim: History.Invoke: duplicate request id %d", r.ID))
		}
		h.byID[r.ID] = i
	}
	h.reqs = append(h.reqs, r)
	return i
}

// Index returns the index of the request with the given ID.
func (h *History) Index(id uint64) (int, bool) {
	if h.byID != nil {
		i, ok := h.byID[id]
		return i, ok
	}
	i, ok := slices.BinarySearchFunc(h.reqs, id, func(r Request, id uint64) int {
		switch {
		case r.ID < id:
			return -1
		case r.ID > id:
			return 1
		}
		return 0
	})
	return i, ok
}

// At returns the request at index i (as returned by Invoke), for the cluster
// to fill in Gen or MayBeLost. The pointer is valid until the next Invoke.
func (h *History) At(i int) *Request { return &h.reqs[i] }

// Complete records the outcome of the pending request id at time at. For a
// read that completed OK, read holds one token per block; the history keeps
// the slice (the caller must not reuse it). It returns false, changing
// nothing, if there is no such request or it is no longer pending.
func (h *History) Complete(id uint64, at time.Duration, out Outcome, read []uint64) bool {
	i, ok := h.Index(id)
	if !ok || h.reqs[i].Outcome != Pending {
		return false
	}
	r := &h.reqs[i]
	r.Complete, r.Outcome = at, out
	if r.Op == OpRead {
		r.Read = read
	}
	return true
}

// AbandonPending marks every request still pending as Unknown (the end of a
// run) and returns how many there were.
func (h *History) AbandonPending() int {
	n := 0
	for i := range h.reqs {
		if h.reqs[i].Outcome == Pending {
			h.reqs[i].Outcome = Unknown
			n++
		}
	}
	return n
}

// SetFinal records the value block holds after the liveness phase (the
// surviving primary's copy). Setting a block twice keeps the last value.
func (h *History) SetFinal(block uint64, value uint64) {
	if h.final == nil {
		h.final = make(map[uint64]uint64)
	}
	if _, ok := h.final[block]; !ok {
		h.finals = append(h.finals, block)
	}
	h.final[block] = value
}

// Final returns the final value of block, if one was set.
func (h *History) Final(block uint64) (uint64, bool) {
	v, ok := h.final[block]
	return v, ok
}

// FinalBlocks returns the blocks that have a final value, in ascending order.
func (h *History) FinalBlocks() []uint64 {
	b := slices.Clone(h.finals)
	slices.Sort(b)
	return b
}

// WrittenBlocks returns, in ascending order, every block some write or trim
// (whatever its outcome) touched: the blocks that need a final value.
func (h *History) WrittenBlocks() []uint64 {
	var b []uint64
	for i := range h.reqs {
		r := &h.reqs[i]
		if r.Op != OpWrite && r.Op != OpTrim {
			continue
		}
		for k := 0; k < r.Count; k++ {
			b = append(b, r.Block+uint64(k))
		}
	}
	slices.Sort(b)
	return slices.Compact(b)
}

// Len is the number of requests.
func (h *History) Len() int { return len(h.reqs) }

// Requests returns the requests in invoke order. The slice is the history's
// own: read it, do not modify it.
func (h *History) Requests() []Request { return h.reqs }

// WriteJSON exports the history as JSON lines: one JSON object per line.
//
// For every request, in invoke order, one line per block it covers (a
// request over blocks B..B+N-1 gives N consecutive lines, for blocks B, B+1,
// ... B+N-1, that share its id and times), so that each line is a
// single-block operation and the file can be checked per block by any tool;
// a flush gives one line with the block and count it was issued with:
//
//	{"node":"server1","op":"write","block":12,"count":1,"value":"000000000000a001","invoke_ns":1500000,"complete_ns":2750000,"result":"ok","protocol":"C","id":7,"gen":3}
//
// The fields, always in this order:
//   - node: names[Node] (or "node<N>" when names has no entry)
//   - op: "write", "read", "flush" or "trim"
//   - block: this line's block; count: 1 (a flush: as issued, usually 0)
//   - value: the 64-bit token as 16 lower-case hex digits: for a write what it
//     wrote to this block, for a trim "0000000000000000", for a read that
//     completed ok the token it returned for this block; "" for a flush and
//     for a read that failed or whose outcome is unknown
//   - invoke_ns, complete_ns: global simulated time in nanoseconds;
//     complete_ns is null when the result is "unknown"
//   - result: "ok", "fail" or "unknown" (the node died or the request never
//     completed; a request still pending at export is "unknown")
//   - protocol: "A", "B" or "C" ("" if not set)
//   - id: the request id (what checker reports name as #id)
//   - gen: the writer's generation, present only when known (non-zero)
//   - may_be_lost: true, present only on writes the cluster marked as allowed
//     to be lost (protocol A/B loss window, discarded split-brain data)
//
// Then, one line per block with a final value, in ascending block order:
//
//	{"op":"final","block":12,"value":"000000000000a001"}
//
// The output is a pure function of the history: the same run exports the
// same bytes.
func (h *History) WriteJSON(w io.Writer, names []string) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	quoted := make([][]byte, len(names))
	for i, n := range names {
		q, err := json.Marshal(n)
		if err != nil {
			return err
		}
		quoted[i] = q
	}
	var buf []byte
	for i := range h.reqs {
		r := &h.reqs[i]
		if r.Op == OpFlush || (r.Op != OpWrite && r.Op != OpRead && r.Op != OpTrim) {
			buf = appendJSONLine(buf[:0], r, quoted, r.Block, r.Count, false, 0)
			if _, err := bw.Write(buf); err != nil {
				return err
			}
			continue
		}
		for k := 0; k < r.Count; k++ {
			var v uint64
			has := true
			switch r.Op {
			case OpWrite:
				v = r.Value + uint64(k)
			case OpRead:
				has = r.Outcome == OK && k < len(r.Read)
				if has {
					v = r.Read[k]
				}
			}
			buf = appendJSONLine(buf[:0], r, quoted, r.Block+uint64(k), 1, has, v)
			if _, err := bw.Write(buf); err != nil {
				return err
			}
		}
	}
	for _, b := range h.FinalBlocks() {
		buf = append(buf[:0], `{"op":"final","block":`...)
		buf = strconv.AppendUint(buf, b, 10)
		buf = append(buf, `,"value":"`...)
		buf = appendToken(buf, h.final[b])
		buf = append(buf, "\"}\n"...)
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func appendJSONLine(buf []byte, r *Request, names [][]byte, block uint64, count int, hasValue bool, v uint64) []byte {
	buf = append(buf, `{"node":`...)
	if r.Node >= 0 && r.Node < len(names) {
		buf = append(buf, names[r.Node]...)
	} else {
		buf = append(buf, `"node`...)
		buf = strconv.AppendInt(buf, int64(r.Node), 10)
		buf = append(buf, '"')
	}
	buf = append(buf, `,"op":"`...)
	buf = append(buf, r.Op.String()...)
	buf = append(buf, `","block":`...)
	buf = strconv.AppendUint(buf, block, 10)
	buf = append(buf, `,"count":`...)
	buf = strconv.AppendInt(buf, int64(count), 10)
	buf = append(buf, `,"value":"`...)
	if hasValue {
		buf = appendToken(buf, v)
	}
	buf = append(buf, `","invoke_ns":`...)
	buf = strconv.AppendInt(buf, int64(r.Invoke), 10)
	buf = append(buf, `,"complete_ns":`...)
	out := r.Outcome
	if out == Pending {
		out = Unknown
	}
	if out == Unknown {
		buf = append(buf, "null"...)
	} else {
		buf = strconv.AppendInt(buf, int64(r.Complete), 10)
	}
	buf = append(buf, `,"result":"`...)
	buf = append(buf, out.String()...)
	buf = append(buf, `","protocol":"`...)
	if r.Protocol >= 'A' && r.Protocol <= 'Z' {
		buf = append(buf, r.Protocol)
	}
	buf = append(buf, `","id":`...)
	buf = strconv.AppendUint(buf, r.ID, 10)
	if r.Gen != 0 {
		buf = append(buf, `,"gen":`...)
		buf = strconv.AppendUint(buf, r.Gen, 10)
	}
	if r.MayBeLost {
		buf = append(buf, `,"may_be_lost":true`...)
	}
	return append(buf, "}\n"...)
}

func appendToken(buf []byte, v uint64) []byte {
	const hex = "0123456789abcdef"
	for s := 60; s >= 0; s -= 4 {
		buf = append(buf, hex[(v>>uint(s))&15])
	}
	return buf
}

// timeInf and timeNegInf stand for the ends of time in the checkers.
const (
	timeInf    = time.Duration(math.MaxInt64)
	timeNegInf = time.Duration(math.MinInt64)
)
