package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// hb builds histories by hand; times are in milliseconds.
type hb struct {
	h  History
	id uint64
}

func ms(t int) time.Duration { return time.Duration(t) * time.Millisecond }

func (b *hb) add(r Request) uint64 {
	b.id++
	r.ID = b.id
	r.Protocol = 'C'
	b.h.Invoke(r)
	return b.id
}

func (b *hb) write(block uint64, val uint64, inv, comp int, out Outcome) uint64 {
	return b.add(Request{Op: OpWrite, Block: block, Count: 1, Value: val, Invoke: ms(inv), Complete: ms(comp), Outcome: out})
}

func (b *hb) lossy(block uint64, val uint64, inv, comp int) uint64 {
	return b.add(Request{Op: OpWrite, Block: block, Count: 1, Value: val, Invoke: ms(inv), Complete: ms(comp), Outcome: OK, MayBeLost: true})
}

func (b *hb) trim(block uint64, inv, comp int, out Outcome) uint64 {
	return b.add(Request{Op: OpTrim, Block: block, Count: 1, Invoke: ms(inv), Complete: ms(comp), Outcome: out})
}

func (b *hb) read(block uint64, val uint64, inv, comp int) uint64 {
	return b.add(Request{Op: OpRead, Block: block, Count: 1, Read: []uint64{val}, Invoke: ms(inv), Complete: ms(comp), Outcome: OK})
}

func mustPass(t *testing.T, h *History) {
	t.Helper()
	if v := CheckBlocks(h); len(v) > 0 {
		t.Fatalf("legal history rejected:\n%s", violationsText(v))
	}
}

// mustFail checks that there is a violation and that its reasons mention
// every string in want.
func mustFail(t *testing.T, h *History, want ...string) {
	t.Helper()
	v := CheckBlocks(h)
	if len(v) == 0 {
		t.Fatalf("illegal history accepted")
	}
	text := violationsText(v)
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("violation does not mention %q:\n%s", w, text)
		}
	}
	t.Logf("%s", text)
}

func violationsText(v []BlockViolation) string {
	var s strings.Builder
	for _, x := range v {
		s.WriteString(x.String())
		s.WriteByte('\n')
	}
	return s.String()
}

func TestCheckBlocksConcurrentWritesEitherOrder(t *testing.T) {
	for _, seen := range []uint64{0xa1, 0xb1} {
		var b hb
		b.write(7, 0xa1, 0, 10, OK)
		b.write(7, 0xb1, 2, 12, OK)
		b.read(7, seen, 13, 14)
		b.read(7, seen, 15, 16)
		b.h.SetFinal(7, seen)
		mustPass(t, &b.h)
	}
	// ... but not both orders in turn.
	var b hb
	b.write(7, 0xa1, 0, 10, OK)
	b.write(7, 0xb1, 2, 12, OK)
	r1 := b.read(7, 0xb1, 13, 14)
	r2 := b.read(7, 0xa1, 15, 16)
	mustFail(t, &b.h, fmt.Sprintf("#%d", r1), fmt.Sprintf("#%d", r2))
}

func TestCheckBlocksReadsDuringWrite(t *testing.T) {
	// Reads overlapping a write may see old or new; once new is seen by a
	// read that completed, a later read must not see old.
	var b hb
	b.write(1, 0x10, 0, 1, OK)
	b.write(1, 0x20, 5, 20, OK)
	b.read(1, 0x10, 6, 7)
	b.read(1, 0x20, 8, 9)
	b.read(1, 0x20, 10, 30) // overlapping, new
	b.read(1, 0x10, 9, 9)   // tie with the previous read's completion: concurrent
	mustPass(t, &b.h)
}

func TestCheckBlocksFailedWriteVisibleOrNot(t *testing.T) {
	for _, seen := range []uint64{0x10, 0x20} {
		var b hb
		b.write(3, 0x10, 0, 1, OK)
		b.write(3, 0x20, 2, 3, Fail)
		b.read(3, seen, 4, 5)
		b.h.SetFinal(3, seen)
		mustPass(t, &b.h)
	}
	// A failed or unknown write may take effect long after it "completed".
	var b hb
	b.write(3, 0x10, 0, 1, OK)
	b.write(3, 0x20, 2, 3, Fail)
	b.add(Request{Op: OpWrite, Block: 3, Count: 1, Value: 0x30, Invoke: ms(2), Outcome: Unknown})
	b.read(3, 0x10, 100, 101)
	b.read(3, 0x30, 200, 201)
	b.read(3, 0x20, 300, 301)
	b.h.SetFinal(3, 0x20)
	mustPass(t, &b.h)

	// But once seen it stays (unless overwritten).
	var c hb
	c.write(3, 0x10, 0, 1, OK)
	c.write(3, 0x20, 2, 3, Fail)
	c.read(3, 0x20, 4, 5)
	r := c.read(3, 0x10, 6, 7)
	mustFail(t, &c.h, fmt.Sprintf("read #%d", r))
}

func TestCheckBlocksMayBeLost(t *testing.T) {
	var b hb
	b.write(9, 0x10, 0, 1, OK)
	b.lossy(9, 0x20, 2, 3)
	b.h.SetFinal(9, 0x10)
	mustPass(t, &b.h)

	// Without the mark it is a lost acknowledged write.
	var c hb
	c.write(9, 0x10, 0, 1, OK)
	w := c.write(9, 0x20, 2, 3, OK)
	c.h.SetFinal(9, 0x10)
	mustFail(t, &c.h, "final value is write #1's", fmt.Sprintf("acknowledged write #%d", w), "lost")

	// A may-be-lost write that was acknowledged cannot take effect after
	// its completion.
	var d hb
	d.write(9, 0x10, 0, 1, OK)
	d.lossy(9, 0x20, 2, 3)
	d.write(9, 0x30, 4, 5, OK)
	r := d.read(9, 0x20, 6, 7)
	mustFail(t, &d.h, fmt.Sprintf("read #%d", r), "write #3")
}

func TestCheckBlocksStaleRead(t *testing.T) {
	var b hb
	b.write(5, 0x10, 0, 1, OK)
	b.write(5, 0x20, 2, 3, OK)
	b.read(5, 0x10, 4, 5)
	mustFail(t, &b.h, "read #3", "write #1's value", "write #2 (ok, 2ms–3ms) came strictly between")
}

func TestCheckBlocksNeverWritten(t *testing.T) {
	var b hb
	b.add(Request{Op: OpWrite, Block: 4, Count: 2, Value: 0x100, Invoke: ms(0), Complete: ms(1), Outcome: OK})
	b.read(4, 0x100, 2, 3)
	b.read(4, 0x101, 2, 3) // block 5's token, read from block 4
	b.read(4, 0xdead, 3200, 3300)
	b.h.SetFinal(5, 0x777)
	mustFail(t, &b.h, "read #3 (2ms–3ms) returned 0000000000000101, a value never written to this block (it is write #1's token for block 5)",
		"read #4 (3.2s–3.3s) returned 000000000000dead, a value never written",
		"final value 0000000000000777 was never written")
}

func TestCheckBlocksLostWriteInFinal(t *testing.T) {
	var b hb
	b.write(2, 0x10, 0, 1, OK)
	b.write(2, 0x20, 2, 3, OK)
	b.write(2, 0x30, 2, 4, Unknown)
	b.h.SetFinal(2, 0x10)
	mustFail(t, &b.h, "final value is write #1's", "acknowledged write #2 (ok, 2ms–3ms) completed later: it is lost")

	// Final zero after an acknowledged write, and no trim.
	var c hb
	c.write(2, 0x10, 0, 1, OK)
	c.h.SetFinal(2, 0)
	mustFail(t, &c.h, "final value is zero", "write #1")

	// An unknown write may be the final value, after everything.
	var d hb
	d.write(2, 0x10, 0, 1, OK)
	d.write(2, 0x30, 2, 4, Unknown)
	d.write(2, 0x20, 5, 6, OK)
	d.h.SetFinal(2, 0x30)
	mustPass(t, &d.h)
}

func TestCheckBlocksBackwardsAcrossReads(t *testing.T) {
	var b hb
	b.write(0, 0x10, 0, 1, OK)
	b.write(0, 0x20, 2, 3, OK)
	b.read(0, 0x20, 4, 5)
	b.read(0, 0x10, 6, 7)
	mustFail(t, &b.h, "read #4", "read #3")
}

func TestCheckBlocksVisibleBeforeInvoke(t *testing.T) {
	var b hb
	b.read(0, 0x10, 1, 2)
	b.write(0, 0x10, 5, 6, OK)
	mustFail(t, &b.h, "read #1 (1ms–2ms) returned write #2's value, but write #2 was invoked only at 5ms")
	// Overlapping is fine.
	var c hb
	c.read(0, 0x10, 1, 5)
	c.write(0, 0x10, 5, 6, OK)
	mustPass(t, &c.h)
}

func TestCheckBlocksZeros(t *testing.T) {
	// Never written: zeros.
	var a hb
	a.read(0, 0, 0, 1)
	a.write(0, 0x10, 0, 5, OK)
	a.read(0, 0, 4, 6)
	a.h.SetFinal(0, 0x10)
	a.h.SetFinal(1, 0)
	mustPass(t, &a.h)

	// Zeros after an acknowledged write need a trim.
	var b hb
	b.write(0, 0x10, 0, 1, OK)
	r := b.read(0, 0, 2, 3)
	mustFail(t, &b.h, fmt.Sprintf("read #%d (2ms–3ms) returned zeros", r), "write #1")

	for _, out := range []Outcome{OK, Fail, Unknown} {
		var c hb
		c.write(0, 0x10, 0, 1, OK)
		c.trim(0, 1, 2, out)
		c.read(0, 0, 2, 3)
		c.h.SetFinal(0, 0)
		mustPass(t, &c.h)
	}
	// A trim invoked after the read does not help.
	var d hb
	d.write(0, 0x10, 0, 1, OK)
	d.read(0, 0, 2, 3)
	d.trim(0, 4, 5, OK)
	mustFail(t, &d.h, "read #2")

	// One trim serves one gap: write, trim, read 0, write, read 0 fails.
	var e hb
	e.write(0, 0x10, 0, 1, OK)
	e.trim(0, 2, 3, OK)
	e.read(0, 0, 4, 5)
	e.write(0, 0x20, 6, 7, OK)
	r = e.read(0, 0, 8, 9)
	mustFail(t, &e.h, fmt.Sprintf("read #%d", r))

	// An acknowledged trim cannot hide inside a span a value must cover.
	var f hb
	f.write(0, 0x10, 0, 1, OK)
	tr := f.trim(0, 2, 3, OK)
	f.read(0, 0x10, 4, 5)
	mustFail(t, &f.h, fmt.Sprintf("trim #%d", tr))

	// Zeros read while a value had to be current.
	var g hb
	g.write(0, 0x10, 0, 1, OK)
	g.trim(0, 0, 10, Unknown)
	z := g.read(0, 0, 2, 3)
	g.read(0, 0x10, 4, 5)
	mustFail(t, &g.h, fmt.Sprintf("read #%d (2ms–3ms) returned zeros, but write #1's value had to stay current", z))
}

func TestCheckBlocksMultiBlock(t *testing.T) {
	var b hb
	b.add(Request{Op: OpWrite, Block: 10, Count: 3, Value: 100, Invoke: ms(0), Complete: ms(1), Outcome: OK})
	b.add(Request{Op: OpRead, Block: 10, Count: 3, Read: []uint64{100, 101, 102}, Invoke: ms(2), Complete: ms(3), Outcome: OK})
	b.add(Request{Op: OpRead, Block: 9, Count: 5, Read: []uint64{0, 100, 0, 102, 0}, Invoke: ms(4), Complete: ms(5), Outcome: OK})
	b.add(Request{Op: OpRead, Block: 10, Count: 3, Read: []uint64{1, 2, 3}, Invoke: ms(4), Complete: ms(5), Outcome: Fail})
	b.add(Request{Op: OpFlush, Invoke: ms(4), Complete: ms(5), Outcome: OK})
	for _, blk := range b.h.WrittenBlocks() {
		b.h.SetFinal(blk, 100+blk-10)
	}
	v := CheckBlocks(&b.h)
	if len(v) != 1 || v[0].Block != 11 || !strings.Contains(v[0].Reason, "read #3 (4ms–5ms) returned zeros") {
		t.Fatalf("want one violation on block 11, got:\n%s", violationsText(v))
	}
}

func TestCheckBlocksDuplicateToken(t *testing.T) {
	var b hb
	b.write(0, 0x10, 0, 1, OK)
	b.write(0, 0x10, 2, 3, OK)
	mustFail(t, &b.h, "both wrote token")
}

func TestCheckBlocksManyViolationsCapped(t *testing.T) {
	var b hb
	for i := 0; i < 30; i++ {
		b.read(0, 0xbad, i, i+1)
	}
	v := CheckBlocks(&b.h)
	if len(v) != maxViolationsPerBlock+1 || !strings.Contains(v[len(v)-1].Reason, "20 more") {
		t.Fatalf("got %d:\n%s", len(v), violationsText(v))
	}
}

func TestCheckBlocksDeterministic(t *testing.T) {
	h := genBench(rand.New(rand.NewPCG(1, 2)), 5000, 50)
	if v := CheckBlocks(h); len(v) > 0 {
		t.Fatalf("legal history rejected:\n%s", violationsText(v))
	}
	// Break it in a few places.
	reqs := h.Requests()
	n := 0
	for i := range reqs {
		if reqs[i].Op == OpRead && reqs[i].Outcome == OK && i%7 == 0 {
			reqs[i].Read[0] ^= 1
			n++
		}
	}
	a := CheckBlocks(h)
	b := CheckBlocks(h)
	if len(a) == 0 || !slices.Equal(a, b) {
		t.Fatalf("%d mutations, %d/%d violations, equal %v", n, len(a), len(b), slices.Equal(a, b))
	}
}

// ---- generated histories ----

// genLegal builds a history from a sequential model: each operation gets a
// linearization point (points never decrease; equal points happen), an
// interval around it, and its value from the model. Writes that fail, are
// unknown or may be lost take effect or not; failed and unknown ones may take
// effect after they "complete". rnd(n) draws from [0, n).
func genLegal(rnd func(n int) int, blocks, nops, maxCount, slack int) *History {
	type gen struct {
		r      Request
		effect bool
		p      time.Duration
	}
	model := map[uint64]uint64{}
	var all []Request
	tok := uint64(1)
	p := time.Duration(0)
	for i := 0; i < nops; i++ {
		p += ms(rnd(3))
		blk := uint64(rnd(blocks))
		cnt := 1 + rnd(maxCount)
		r := Request{Node: rnd(2), Block: blk, Count: cnt, Protocol: "ABC"[rnd(3)]}
		r.Invoke = p - ms(rnd(slack+1))
		r.Complete = p + ms(rnd(slack+1))
		effect := true
		switch k := rnd(10); {
		case k < 4:
			r.Op = OpWrite
		case k < 5:
			r.Op = OpTrim
		case k < 9:
			r.Op = OpRead
		default:
			r.Op = OpFlush
		}
		if r.Op == OpWrite || r.Op == OpTrim {
			switch rnd(8) {
			case 0:
				r.Outcome = Fail
				effect = rnd(2) == 0
				r.Complete = r.Invoke + ms(rnd(2*slack+1)) // may be before p
			case 1:
				r.Outcome = Unknown
				effect = rnd(2) == 0
			case 2:
				r.Outcome, r.MayBeLost = OK, true
				effect = rnd(2) == 0
			default:
				r.Outcome = OK
			}
			if r.Op == OpWrite {
				r.Value = tok
				tok += uint64(cnt) + uint64(rnd(3))
			}
			if effect {
				for k := 0; k < cnt; k++ {
					if r.Op == OpWrite {
						model[blk+uint64(k)] = r.Value + uint64(k)
					} else {
						model[blk+uint64(k)] = 0
					}
				}
			}
		}
		if r.Op == OpRead {
			switch rnd(8) {
			case 0:
				r.Outcome = Fail
				r.Read = []uint64{12345} // ignored
			case 1:
				r.Outcome = Unknown
			default:
				r.Outcome = OK
				r.Read = make([]uint64, cnt)
				for k := range r.Read {
					r.Read[k] = model[blk+uint64(k)]
				}
			}
		}
		if r.Op == OpFlush {
			r.Block, r.Count, r.Outcome = 0, 0, OK
		}
		all = append(all, r)
	}
	slices.SortStableFunc(all, func(a, b Request) int { return int(a.Invoke - b.Invoke) })
	h := &History{}
	for i := range all {
		all[i].ID = uint64(i + 1)
		h.Invoke(all[i])
	}
	for _, b := range h.WrittenBlocks() {
		if rnd(4) != 0 {
			h.SetFinal(b, model[b])
		}
	}
	return h
}

func rapidRnd(t *rapid.T) func(int) int {
	return func(n int) int { return rapid.IntRange(0, n-1).Draw(t, "r") }
}

func dumpHistory(h *History) string {
	var s strings.Builder
	for _, r := range h.Requests() {
		fmt.Fprintf(&s, "#%d %s b%d+%d v%x read%x [%v,%v] %s lost=%v\n", r.ID, r.Op, r.Block, r.Count, r.Value, r.Read, r.Invoke, r.Complete, r.Outcome, r.MayBeLost)
	}
	for _, b := range h.FinalBlocks() {
		v, _ := h.Final(b)
		fmt.Fprintf(&s, "final b%d = %x\n", b, v)
	}
	return s.String()
}

func TestCheckBlocksRapidLegal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		blocks := rapid.IntRange(1, 4).Draw(t, "blocks")
		nops := rapid.IntRange(1, 60).Draw(t, "ops")
		maxCount := rapid.IntRange(1, 3).Draw(t, "maxCount")
		slack := rapid.IntRange(0, 8).Draw(t, "slack")
		h := genLegal(rapidRnd(t), blocks, nops, maxCount, slack)
		if v := CheckBlocks(h); len(v) > 0 {
			t.Fatalf("legal history rejected:\n%s\nhistory:\n%s", violationsText(v), dumpHistory(h))
		}
	})
}

// bruteLinearizable decides block 0 of h by trying every subset of the
// optional writes and every order of the operations that respects real time
// (a precedes b iff a completes strictly before b is invoked).
func bruteLinearizable(h *History) bool {
	type op struct {
		write    bool
		val      uint64
		inv, cmp time.Duration
		optional bool
	}
	var ops []op
	for _, r := range h.Requests() {
		if r.Block != 0 || r.Count < 1 {
			continue
		}
		switch r.Op {
		case OpWrite, OpTrim:
			o := op{write: true, inv: r.Invoke, cmp: timeInf, optional: r.Outcome != OK || r.MayBeLost}
			if r.Op == OpWrite {
				o.val = r.Value
			}
			if r.Outcome == OK {
				o.cmp = r.Complete
			}
			ops = append(ops, o)
		case OpRead:
			if r.Outcome == OK {
				ops = append(ops, op{val: r.Read[0], inv: r.Invoke, cmp: r.Complete})
			}
		}
	}
	if v, ok := h.Final(0); ok {
		ops = append(ops, op{val: v, inv: timeInf, cmp: timeInf})
	}
	n := len(ops)
	var opt []int
	for i, o := range ops {
		if o.optional {
			opt = append(opt, i)
		}
	}
	pred := make([]uint32, n) // pred[i]: ops that must come before i
	for i := range ops {
		for j := range ops {
			if ops[j].cmp < ops[i].inv {
				pred[i] |= 1 << j
			}
		}
	}
	for sub := 0; sub < 1<<len(opt); sub++ {
		var skip uint32
		for k, i := range opt {
			if sub&(1<<k) != 0 {
				skip |= 1 << i
			}
		}
		full := uint32(1)<<n - 1
		seen := map[[2]uint64]bool{}
		var dfs func(done uint32, val uint64) bool
		dfs = func(done uint32, val uint64) bool {
			if done == full {
				return true
			}
			key := [2]uint64{uint64(done), val}
			if seen[key] {
				return false
			}
			seen[key] = true
			for i := range ops {
				if done&(1<<i) != 0 || pred[i]&^done != 0 {
					continue
				}
				if ops[i].write {
					if dfs(done|1<<i, ops[i].val) {
						return true
					}
				} else if ops[i].val == val && dfs(done|1<<i, val) {
					return true
				}
			}
			return false
		}
		if dfs(skip, 0) {
			return true
		}
	}
	return false
}

func TestBruteLinearizableSelfCheck(t *testing.T) {
	var b hb
	b.write(0, 0x10, 0, 1, OK)
	b.write(0, 0x20, 2, 3, OK)
	b.read(0, 0x10, 4, 5)
	if bruteLinearizable(&b.h) {
		t.Fatal("stale read accepted")
	}
	var c hb
	c.write(0, 0x10, 0, 10, OK)
	c.write(0, 0x20, 2, 3, OK)
	c.read(0, 0x10, 4, 5)
	if !bruteLinearizable(&c.h) {
		t.Fatal("legal history rejected")
	}
}

// mutate changes one thing in a single-block history: a read's value, the
// final value, a time, or an outcome.
func mutate(rnd func(int) int, h *History) string {
	reqs := h.Requests()
	var vals []uint64
	for _, r := range reqs {
		if r.Op == OpWrite {
			vals = append(vals, r.Value)
		}
	}
	vals = append(vals, 0, 0xbad)
	i := rnd(len(reqs) + 1)
	if i == len(reqs) {
		v := vals[rnd(len(vals))]
		h.SetFinal(0, v)
		return fmt.Sprintf("final := %x", v)
	}
	r := &reqs[i]
	switch k := rnd(4); {
	case k == 0 && r.Op == OpRead && r.Outcome == OK:
		r.Read = []uint64{vals[rnd(len(vals))]}
		return fmt.Sprintf("#%d read := %x", r.ID, r.Read[0])
	case k == 1:
		d := ms(rnd(9) - 4)
		r.Invoke += d
		if r.Invoke > r.Complete {
			r.Complete = r.Invoke
		}
		return fmt.Sprintf("#%d invoke += %v", r.ID, d)
	case k == 2:
		d := ms(rnd(9) - 4)
		r.Complete += d
		if r.Complete < r.Invoke {
			r.Invoke = r.Complete
		}
		return fmt.Sprintf("#%d complete += %v", r.ID, d)
	default:
		if r.Op == OpRead {
			if r.Outcome == OK {
				r.Read = []uint64{vals[rnd(len(vals))]}
				return fmt.Sprintf("#%d read := %x", r.ID, r.Read[0])
			}
			return "nothing"
		}
		if r.MayBeLost {
			r.MayBeLost = false
			return fmt.Sprintf("#%d not lossy", r.ID)
		}
		r.Outcome = OK
		return fmt.Sprintf("#%d ok", r.ID)
	}
}

func TestCheckBlocksRapidMutationsAgainstBruteForce(t *testing.T) {
	legal, illegal := 0, 0
	rapid.Check(t, func(t *rapid.T) {
		nops := rapid.IntRange(1, 8).Draw(t, "ops")
		slack := rapid.IntRange(0, 6).Draw(t, "slack")
		rnd := rapidRnd(t)
		h := genLegal(rnd, 1, nops, 1, slack)
		if !bruteLinearizable(h) {
			t.Fatalf("generator made an illegal history:\n%s", dumpHistory(h))
		}
		what := "nothing"
		if rapid.Bool().Draw(t, "mutate") {
			what = mutate(rnd, h)
		}
		want := bruteLinearizable(h)
		if want {
			legal++
		} else {
			illegal++
		}
		got := CheckBlocks(h)
		if want != (len(got) == 0) {
			t.Fatalf("mutation %s: brute force says linearizable=%v, CheckBlocks says:\n%s\nhistory:\n%s",
				what, want, violationsText(got), dumpHistory(h))
		}
	})
	t.Logf("%d legal, %d illegal", legal, illegal)
	if illegal == 0 {
		t.Error("no illegal history generated")
	}
}

// Fully random small histories: values, times and outcomes drawn freely.
func TestCheckBlocksRapidRandomAgainstBruteForce(t *testing.T) {
	legal, illegal := 0, 0
	rapid.Check(t, func(t *rapid.T) {
		var b hb
		n := rapid.IntRange(1, 8).Draw(t, "ops")
		nw := 0
		for i := 0; i < n; i++ {
			inv := rapid.IntRange(0, 10).Draw(t, "inv")
			comp := inv + rapid.IntRange(0, 6).Draw(t, "len")
			out := rapid.SampledFrom([]Outcome{OK, OK, OK, Fail, Unknown}).Draw(t, "out")
			switch rapid.IntRange(0, 5).Draw(t, "kind") {
			case 0, 1:
				nw++
				if out == OK && rapid.IntRange(0, 3).Draw(t, "lossy") == 0 {
					b.lossy(0, uint64(nw), inv, comp)
				} else {
					b.write(0, uint64(nw), inv, comp, out)
				}
			case 2:
				b.trim(0, inv, comp, out)
			default:
				b.read(0, uint64(rapid.IntRange(0, 4).Draw(t, "val")), inv, comp)
			}
		}
		if f := rapid.IntRange(-1, 4).Draw(t, "final"); f >= 0 {
			b.h.SetFinal(0, uint64(f))
		}
		want := bruteLinearizable(&b.h)
		if want {
			legal++
		} else {
			illegal++
		}
		got := CheckBlocks(&b.h)
		if want != (len(got) == 0) {
			t.Fatalf("brute force says linearizable=%v, CheckBlocks says:\n%s\nhistory:\n%s",
				want, violationsText(got), dumpHistory(&b.h))
		}
	})
	t.Logf("%d legal, %d illegal", legal, illegal)
}

func newBenchRand() *rand.Rand { return rand.New(rand.NewPCG(7, 8)) }

// Many small random histories, weighted towards trims and reads of zero
// (which rapid's generators reach less often), against the brute force.
func TestCheckBlocksRandomAgainstBruteForce(t *testing.T) {
	n := 30000
	if testing.Short() {
		n = 3000
	}
	r := rand.New(rand.NewPCG(99, 1))
	legal := 0
	for it := 0; it < n; it++ {
		var b hb
		nops := 1 + r.IntN(10)
		nw := 0
		grid := 4 + r.IntN(12)
		for i := 0; i < nops; i++ {
			inv := r.IntN(grid)
			comp := inv + r.IntN(grid/2+1)
			out := []Outcome{OK, OK, OK, Fail, Unknown}[r.IntN(5)]
			lossy := out == OK && r.IntN(4) == 0
			switch k := r.IntN(10); {
			case k < 3:
				nw++
				b.add(Request{Op: OpWrite, Block: 0, Count: 1, Value: uint64(nw), Invoke: ms(inv), Complete: ms(comp), Outcome: out, MayBeLost: lossy})
			case k < 5:
				b.add(Request{Op: OpTrim, Block: 0, Count: 1, Invoke: ms(inv), Complete: ms(comp), Outcome: out, MayBeLost: lossy})
			default:
				v := 0
				if r.IntN(2) == 0 {
					v = r.IntN(nw + 2)
				}
				b.read(0, uint64(v), inv, comp)
			}
		}
		if f := r.IntN(nw+3) - 1; f >= 0 {
			if r.IntN(2) == 0 {
				f = 0
			}
			b.h.SetFinal(0, uint64(f))
		}
		want := bruteLinearizable(&b.h)
		if want {
			legal++
		}
		if got := CheckBlocks(&b.h); want != (len(got) == 0) {
			t.Fatalf("case %d: brute force says linearizable=%v, CheckBlocks says:\n%s\nhistory:\n%s",
				it, want, violationsText(got), dumpHistory(&b.h))
		}
	}
	t.Logf("%d legal, %d illegal", legal, n-legal)
}

// genBench makes a legal history of n requests over the given number of
// blocks, with up to 8 blocks per request and a few requests in flight.
func genBench(r *rand.Rand, n, blocks int) *History {
	return genLegal(func(k int) int { return r.IntN(k) }, blocks, n, 8, 6)
}

// BenchmarkCheckBlocks checks a legal 100k-request history spread over many
// blocks (about 200 operations per block) and over few (about 20,000).
func BenchmarkCheckBlocks(b *testing.B) {
	for _, blocks := range []int{2000, 20} {
		b.Run(fmt.Sprintf("blocks=%d", blocks), func(b *testing.B) {
			h := genBench(newBenchRand(), 100_000, blocks)
			ops := 0
			for _, r := range h.Requests() {
				if r.Op != OpFlush {
					ops += r.Count
				}
			}
			if v := CheckBlocks(h); len(v) > 0 {
				b.Fatalf("benchmark history is not legal:\n%s", violationsText(v))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				CheckBlocks(h)
			}
			b.ReportMetric(float64(ops), "block-ops")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(ops), "ns/block-op")
		})
	}
}
