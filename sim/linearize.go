package sim

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// BlockViolation is a block whose client history is not linearizable.
// (Violation, in cluster.go, is a broken cluster property at an instant.)
type BlockViolation struct {
	Block  uint64
	Reason string // names the request ids, their times and values
}

func (v BlockViolation) String() string {
	return fmt.Sprintf("block %d: %s", v.Block, v.Reason)
}

// maxViolationsPerBlock bounds the report for one block; a final entry counts
// the rest.
const maxViolationsPerBlock = 10

// CheckBlocks checks that the history is linearizable per block (DESIGN.md §3,
// properties 2 and 3) and returns what is not, ordered by block.
//
// Each block is an atomic register whose initial value is 0. A request over
// N blocks is N single-block operations with the request's times.
//
//   - A write (token Value+i on block Block+i) that completed OK takes effect
//     at one instant within [Invoke, Complete].
//   - A write that failed, is unknown or still pending may take effect at any
//     instant after its Invoke, or never. A write marked MayBeLost that
//     completed OK takes effect within [Invoke, Complete], or never.
//   - A trim is a write of 0, with the same rules.
//   - A read that completed OK returns, for each block, the value current at
//     one instant within [Invoke, Complete]. Failed, unknown and pending reads
//     and all flushes constrain nothing.
//   - The final value (SetFinal) is read at the end of time, after
//     everything; blocks without one have no final read.
//
// Intervals are closed: an operation that completes at the instant another
// is invoked may be ordered either way.
//
// The algorithm is exact and runs in O(n log n) for n single-block
// operations. Non-zero tokens are unique, so a read names its write:
// grouping a write with the reads that returned its value gives a cluster
// with the Gibbons–Korach zone. A cluster whose earliest completion U comes
// before its latest invocation R (a forward zone) must keep its value
// current throughout (U, R); otherwise (a backward zone [R, U]) it can be
// squeezed into one instant there. Non-zero clusters are linearizable iff no
// read precedes its write, forward zones are pairwise disjoint and no
// backward zone lies inside a forward zone. Zeros have many writers (the
// initial value and every trim); they are settled by a sweep over time
// that keeps the block zero for as long as possible: reads of zero are
// served whenever the block can be zero; while it is zero, writes nobody
// needs to see yet are postponed to their deadline; once non-zero, it is
// cleared by the trim that expires first, as late as the pending reads of
// zero and that trim allow. Optional writes nobody read are never applied.
func CheckBlocks(h *History) []BlockViolation {
	c := linChecker{h: h}
	c.collect()
	finals := h.FinalBlocks()
	ops := c.ops
	fi := 0
	for i := 0; i < len(ops) || fi < len(finals); {
		var b uint64
		switch {
		case i >= len(ops):
			b = finals[fi]
		case fi >= len(finals) || ops[i].block <= finals[fi]:
			b = ops[i].block
		default:
			b = finals[fi]
		}
		j := i
		for j < len(ops) && ops[j].block == b {
			j++
		}
		for fi < len(finals) && finals[fi] <= b {
			fi++
		}
		c.checkBlock(b, ops[i:j])
		i = j
	}
	return c.out
}

// linOp is one single-block operation.
type linOp struct {
	block     uint64
	val       uint64
	inv, comp time.Duration // comp is timeInf for a write that may take effect any time after inv
	req       int32         // index in History.reqs
	kind      uint8         // linWrite or linRead
	must      bool          // write: must take effect
}

const (
	linWrite uint8 = iota
	linRead
)

// linJob is a non-zero cluster: a write and the reads that returned its value.
type linJob struct {
	w       int // index of the write in the block's ops
	L, U, R time.Duration
	uRead   int // read that fixes U; -1: the write's completion
	rRead   int // read that fixes R; -1: none, linFinal: the final value
	nreads  int
}

const linFinal = -2

// linItem is something the zero sweep places in a window [s, e].
type linItem struct {
	s, e time.Duration
	i    int // op index (zero reads: linFinal for the final read), or job index
}

type linZone struct {
	U, R time.Duration
	job  int
}

type linChecker struct {
	h   *History
	ops []linOp
	out []BlockViolation

	// per block
	block  uint64
	bops   []linOp
	nviol  int
	jobs   []linJob
	fwd    []int // forward jobs by U
	pmax   []int // pmax[k]: the job with the largest R among fwd[:k+1]
	merged []linZone
	zr     []linItem // reads of zero
	trims  []linItem
	bw     []linItem
	heapR  []linItem
	heapT  []linItem

	tokens []linTokenRange // lazily: who wrote which token, for messages
}

type linTokenRange struct {
	first uint64
	n     uint64
	req   int
}

func (c *linChecker) collect() {
	reqs := c.h.reqs
	n := 0
	for i := range reqs {
		r := &reqs[i]
		switch r.Op {
		case OpWrite, OpTrim:
			n += max(r.Count, 0)
		case OpRead:
			if r.Outcome == OK && !r.SplitView {
				n += min(max(r.Count, 0), len(r.Read))
			}
		}
	}
	c.ops = make([]linOp, 0, n)
	for i := range reqs {
		r := &reqs[i]
		switch r.Op {
		case OpWrite, OpTrim:
			comp := timeInf
			if r.Outcome == OK {
				comp = r.Complete
			}
			must := r.Outcome == OK && !r.MayBeLost
			for k := 0; k < r.Count; k++ {
				var v uint64
				if r.Op == OpWrite {
					v = r.Value + uint64(k)
				}
				c.ops = append(c.ops, linOp{block: r.Block + uint64(k), val: v, inv: r.Invoke, comp: comp,
					req: int32(i), kind: linWrite, must: must})
			}
		case OpRead:
			if r.Outcome != OK || r.SplitView {
				continue
			}
			for k := 0; k < r.Count && k < len(r.Read); k++ {
				c.ops = append(c.ops, linOp{block: r.Block + uint64(k), val: r.Read[k], inv: r.Invoke, comp: r.Complete,
					req: int32(i), kind: linRead})
			}
		}
	}
	// Group by block (stable: each block's operations stay in invoke order),
	// then by value within each block.
	c.ops = linRadixByBlock(c.ops)
	for i := 0; i < len(c.ops); {
		j := i + 1
		for j < len(c.ops) && c.ops[j].block == c.ops[i].block {
			j++
		}
		slices.SortStableFunc(c.ops[i:j], func(a, b linOp) int {
			if c := cmp.Compare(a.val, b.val); c != 0 {
				return c
			}
			return cmp.Compare(a.kind, b.kind)
		})
		i = j
	}
}

// linRadixByBlock sorts ops by block, stably, with an LSD radix sort that
// skips the bytes all blocks share.
func linRadixByBlock(ops []linOp) []linOp {
	if len(ops) < 2 {
		return ops
	}
	var diff uint64
	for i := range ops {
		diff |= ops[i].block ^ ops[0].block
	}
	buf := make([]linOp, len(ops))
	src, dst := ops, buf
	for shift := uint(0); shift < 64; shift += 8 {
		if (diff>>shift)&0xff == 0 {
			continue
		}
		var count [257]int
		for i := range src {
			count[(src[i].block>>shift)&0xff+1]++
		}
		for b := 1; b < 257; b++ {
			count[b] += count[b-1]
		}
		for i := range src {
			b := (src[i].block >> shift) & 0xff
			dst[count[b]] = src[i]
			count[b]++
		}
		src, dst = dst, src
	}
	return src
}

func (c *linChecker) violate(format string, args ...any) {
	c.nviol++
	if c.nviol <= maxViolationsPerBlock {
		c.out = append(c.out, BlockViolation{Block: c.block, Reason: fmt.Sprintf(format, args...)})
	}
}

func (c *linChecker) checkBlock(block uint64, ops []linOp) {
	c.block, c.bops, c.nviol = block, ops, 0
	c.jobs, c.zr, c.trims = c.jobs[:0], c.zr[:0], c.trims[:0]
	finalVal, hasFinal := c.h.final[block]
	finalDone := !hasFinal

	// Clusters.
	for i := 0; i < len(ops); {
		v := ops[i].val
		j, nw := i, 0
		for j < len(ops) && ops[j].val == v {
			if ops[j].kind == linWrite {
				nw++
			}
			j++
		}
		final := hasFinal && finalVal == v
		if final {
			finalDone = true
		}
		if v == 0 {
			for k := i; k < j; k++ {
				if ops[k].kind == linWrite {
					c.trims = append(c.trims, linItem{s: ops[k].inv, e: ops[k].comp, i: k})
				} else {
					c.zr = append(c.zr, linItem{s: ops[k].inv, e: ops[k].comp, i: k})
				}
			}
			if final {
				c.zr = append(c.zr, linItem{s: timeInf, e: timeInf, i: linFinal})
			}
			i = j
			continue
		}
		switch {
		case nw == 0:
			for k := i; k < j; k++ {
				c.violate("%s returned %016x, a value never written to this block%s", c.descRead(k), v, c.whose(v))
			}
			if final {
				c.violate("final value %016x was never written to this block%s", v, c.whose(v))
			}
		case nw > 1:
			c.violate("%s and %s both wrote token %016x: tokens must be unique, so reads of it cannot be checked",
				c.descWrite(i), c.descWrite(i+1), v)
		default:
			c.addJob(i, j, final)
		}
		i = j
	}
	if !finalDone {
		if finalVal != 0 {
			c.violate("final value %016x was never written to this block%s", finalVal, c.whose(finalVal))
		} else {
			c.zr = append(c.zr, linItem{s: timeInf, e: timeInf, i: linFinal})
		}
	}

	// Forward zones: pairwise disjoint.
	c.fwd = c.fwd[:0]
	for k := range c.jobs {
		if c.jobs[k].U < c.jobs[k].R {
			c.fwd = append(c.fwd, k)
		}
	}
	slices.SortFunc(c.fwd, func(a, b int) int {
		ja, jb := &c.jobs[a], &c.jobs[b]
		if c := cmp.Compare(ja.U, jb.U); c != 0 {
			return c
		}
		if c := cmp.Compare(ja.R, jb.R); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	c.pmax = c.pmax[:0]
	c.merged = c.merged[:0]
	for n, k := range c.fwd {
		j := &c.jobs[k]
		if n > 0 {
			m := c.pmax[n-1]
			if j.U < c.jobs[m].R {
				c.overlap(m, k)
			}
			if c.jobs[m].R >= j.R {
				k = m
			}
		}
		c.pmax = append(c.pmax, k)
		if last := len(c.merged) - 1; last >= 0 && j.U < c.merged[last].R {
			c.merged[last].R = max(c.merged[last].R, j.R)
		} else {
			c.merged = append(c.merged, linZone{U: j.U, R: j.R, job: c.fwd[n]})
		}
	}

	// Backward zones and writes that must take effect: not inside a forward zone.
	c.bw = c.bw[:0]
	for k := range c.jobs {
		j := &c.jobs[k]
		if j.U < j.R {
			continue
		}
		x, y := max(j.L, j.R), j.U
		if f, in := c.inside(x, y); in {
			c.between(k, -1, x, y, f)
		}
		c.bw = append(c.bw, linItem{s: x, e: y, i: k})
	}
	for _, t := range c.trims {
		if ops[t.i].must {
			if f, in := c.inside(t.s, t.e); in {
				c.between(-1, t.i, t.s, t.e, f)
			}
		}
	}

	if len(c.zr) > 0 {
		c.sweep()
	}
	if c.nviol > maxViolationsPerBlock {
		c.out = append(c.out, BlockViolation{Block: block,
			Reason: fmt.Sprintf("%d more violations on this block not listed", c.nviol-maxViolationsPerBlock)})
	}
}

// addJob makes the cluster of the write ops[i] and its reads ops[i+1:j].
func (c *linChecker) addJob(i, j int, final bool) {
	ops := c.bops
	w := &ops[i]
	if !w.must && j == i+1 && !final {
		return // an optional write nobody saw: it never took effect
	}
	job := linJob{w: i, L: w.inv, U: w.comp, uRead: -1, R: timeNegInf, rRead: -1, nreads: j - i - 1}
	for k := i + 1; k < j; k++ {
		if ops[k].comp < job.U {
			job.U, job.uRead = ops[k].comp, k
		}
		if ops[k].inv > job.R {
			job.R, job.rRead = ops[k].inv, k
		}
	}
	if final {
		job.R, job.rRead = timeInf, linFinal
	}
	if job.U < job.L && job.uRead < 0 {
		c.violate("%s is recorded as completing before it was invoked", c.descWrite(i))
		return
	}
	if job.U < job.L {
		c.violate("%s returned %s's value, but %s was invoked only at %s, after the read completed",
			c.descRead(job.uRead), c.name(i), c.name(i), linT(w.inv))
		return
	}
	c.jobs = append(c.jobs, job)
}

// inside reports a forward zone (U, R) with U < x and y < R, if any.
func (c *linChecker) inside(x, y time.Duration) (int, bool) {
	n, _ := slices.BinarySearchFunc(c.fwd, x, func(k int, x time.Duration) int {
		if c.jobs[k].U < x {
			return -1
		}
		return 1
	})
	if n == 0 {
		return 0, false
	}
	f := c.pmax[n-1]
	return f, y < c.jobs[f].R
}

// clamp shrinks [s, e] to start and end outside the merged forward zones.
func (c *linChecker) clamp(s, e time.Duration) (time.Duration, time.Duration) {
	find := func(t time.Duration) int { // last zone with U < t, or -1
		n, _ := slices.BinarySearchFunc(c.merged, t, func(z linZone, t time.Duration) int {
			if z.U < t {
				return -1
			}
			return 1
		})
		return n - 1
	}
	if z := find(s); z >= 0 && s < c.merged[z].R {
		s = c.merged[z].R
	}
	if z := find(e); z >= 0 && e < c.merged[z].R {
		e = c.merged[z].U
	}
	return s, e
}

// sweep decides whether every read of zero can see zeros (the initial value
// or a trim's), given the non-zero clusters. It assumes the forward zones
// are merged (c.merged) and visits times in order, keeping the block zero
// whenever that can help:
//
//   - zero: every read of zero whose window has opened is served at once;
//     backward clusters wait for their deadline, when one of them makes the
//     block non-zero (all open ones are applied together); a trim about to
//     expire absorbs the open backward clusters (they take effect just
//     before it), keeping the block zero.
//   - non-zero: backward clusters are applied as soon as their window opens
//     (they cost nothing); the block is cleared by the trim that expires
//     first, at the first deadline of a pending read of zero or when that
//     trim expires, whichever comes first.
//   - at the start of a forward zone the block becomes non-zero, and nothing
//     happens inside it (windows were clamped out of it).
//
// Each choice is dominant (exchange arguments: being zero is never worse
// than being non-zero with the same trims left; clearing later absorbs more
// writes; the trim expiring first is the one to spend), so a read of zero
// that cannot be served is a violation.
func (c *linChecker) sweep() {
	clampAll := func(items []linItem) []linItem {
		out := items[:0]
		for _, it := range items {
			it.s, it.e = c.clamp(it.s, it.e)
			if it.s <= it.e {
				out = append(out, it)
			}
		}
		slices.SortFunc(out, func(a, b linItem) int {
			if c := cmp.Compare(a.s, b.s); c != 0 {
				return c
			}
			if c := cmp.Compare(a.e, b.e); c != 0 {
				return c
			}
			return cmp.Compare(a.i, b.i)
		})
		return out
	}
	// Reads of zero inside a forward zone can never be served.
	zr := c.zr[:0]
	for _, it := range c.zr {
		if f, in := c.inside(it.s, it.e); in {
			c.zeroInside(it.i, f)
			continue
		}
		zr = append(zr, it)
	}
	zr = clampAll(zr)
	trims := clampAll(c.trims)
	bw := clampAll(c.bw)
	c.heapR, c.heapT = c.heapR[:0], c.heapT[:0]

	zero := true
	dist := -1 // job that last made the block non-zero
	var distZone bool
	var bwN int
	bwMin, bwMinJob := timeInf, -1
	ai, ti, bi, fi := 0, 0, 0, 0
	for {
		t, have := timeInf, false
		consider := func(x time.Duration) {
			if !have || x < t {
				t, have = x, true
			}
		}
		if ai < len(zr) {
			consider(zr[ai].s)
		}
		if ti < len(trims) {
			consider(trims[ti].s)
		}
		if bi < len(bw) {
			consider(bw[bi].s)
		}
		if len(c.heapR) > 0 {
			consider(c.heapR[0].e)
		}
		if len(c.heapT) > 0 {
			consider(c.heapT[0].e)
		}
		if bwN > 0 {
			consider(bwMin)
		}
		if fi < len(c.merged) {
			consider(c.merged[fi].U)
		}
		if !have {
			break
		}
		// 1. Open the windows starting now.
		for ; ai < len(zr) && zr[ai].s == t; ai++ {
			c.heapR = linPush(c.heapR, zr[ai])
		}
		for ; ti < len(trims) && trims[ti].s == t; ti++ {
			c.heapT = linPush(c.heapT, trims[ti])
		}
		for ; bi < len(bw) && bw[bi].s == t; bi++ {
			if zero {
				bwN++
				if bw[bi].e < bwMin {
					bwMin, bwMinJob = bw[bi].e, bw[bi].i
				}
			}
		}
		// 2. Zero: serve every open read of zero.
		if zero {
			c.heapR = c.heapR[:0]
		}
		// 3. A postponed cluster reached its deadline.
		if zero && bwN > 0 && bwMin == t {
			zero, dist, distZone = false, bwMinJob, false
			bwN, bwMin = 0, timeInf
		}
		// 4. Non-zero: clear it when a read of zero or a trim cannot wait.
		if !zero && ((len(c.heapR) > 0 && c.heapR[0].e == t) || (len(c.heapT) > 0 && c.heapT[0].e == t)) {
			if len(c.heapT) > 0 {
				c.heapT = linPop(c.heapT)
				zero = true
				c.heapR = c.heapR[:0]
			} else {
				for len(c.heapR) > 0 && c.heapR[0].e == t {
					c.zeroLost(c.heapR[0].i, dist, distZone)
					c.heapR = linPop(c.heapR)
				}
			}
		}
		// 5. Zero: a trim about to expire absorbs the postponed clusters.
		if zero && bwN > 0 && len(c.heapT) > 0 && c.heapT[0].e == t {
			c.heapT = linPop(c.heapT)
			bwN, bwMin = 0, timeInf
		}
		// 6. A forward zone starts: non-zero, and nothing happens inside.
		if fi < len(c.merged) && c.merged[fi].U == t {
			zero, dist, distZone = false, c.merged[fi].job, true
			bwN, bwMin = 0, timeInf
			fi++
		}
		// 7. Expired trims are gone.
		for len(c.heapT) > 0 && c.heapT[0].e == t {
			c.heapT = linPop(c.heapT)
		}
		if t == timeInf {
			break
		}
	}
}

// linPush and linPop keep a binary min-heap of items by (e, i).
func linLess(a, b linItem) bool { return a.e < b.e || (a.e == b.e && a.i < b.i) }

func linPush(h []linItem, it linItem) []linItem {
	h = append(h, it)
	for k := len(h) - 1; k > 0; {
		p := (k - 1) / 2
		if !linLess(h[k], h[p]) {
			break
		}
		h[k], h[p] = h[p], h[k]
		k = p
	}
	return h
}

func linPop(h []linItem) []linItem {
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	for k := 0; ; {
		l, m := 2*k+1, k
		if l < n && linLess(h[l], h[m]) {
			m = l
		}
		if l+1 < n && linLess(h[l+1], h[m]) {
			m = l + 1
		}
		if m == k {
			break
		}
		h[k], h[m] = h[m], h[k]
		k = m
	}
	return h
}

// Messages.

func linT(t time.Duration) string {
	switch t {
	case timeInf:
		return "the end"
	case timeNegInf:
		return "the start"
	}
	return t.String()
}

func (c *linChecker) req(k int) *Request { return &c.h.reqs[c.bops[k].req] }

// name is "write #12" or "trim #12".
func (c *linChecker) name(k int) string {
	r := c.req(k)
	if r.Op == OpTrim {
		return fmt.Sprintf("trim #%d", r.ID)
	}
	return fmt.Sprintf("write #%d", r.ID)
}

// descWrite is "write #12 (ok, 1s–2s)".
func (c *linChecker) descWrite(k int) string {
	r := c.req(k)
	switch {
	case r.Outcome == OK && r.MayBeLost:
		return fmt.Sprintf("%s (ok but may be lost, %s–%s)", c.name(k), linT(r.Invoke), linT(r.Complete))
	case r.Outcome == OK || r.Outcome == Fail:
		return fmt.Sprintf("%s (%s, %s–%s)", c.name(k), r.Outcome, linT(r.Invoke), linT(r.Complete))
	}
	return fmt.Sprintf("%s (unknown, invoked %s)", c.name(k), linT(r.Invoke))
}

func (c *linChecker) descRead(k int) string {
	r := c.req(k)
	return fmt.Sprintf("read #%d (%s–%s)", r.ID, linT(r.Invoke), linT(r.Complete))
}

// from says why a cluster's value was current by job.U.
func (c *linChecker) from(j *linJob) string {
	if j.uRead < 0 {
		return fmt.Sprintf("%s (%s completed)", linT(j.U), c.name(j.w))
	}
	return fmt.Sprintf("%s (read #%d returned it by then)", linT(j.U), c.req(j.uRead).ID)
}

// until says why a cluster's value had to stay current until job.R.
func (c *linChecker) until(j *linJob) string {
	if j.rRead == linFinal {
		return "the end (it is the final value)"
	}
	return fmt.Sprintf("%s (read #%d invoked)", linT(j.R), c.req(j.rRead).ID)
}

func (c *linChecker) overlap(a, b int) {
	ja, jb := &c.jobs[a], &c.jobs[b]
	if ja.rRead == linFinal {
		c.violate("final value is %s's, in effect by %s, but %s's value had to be current later, from %s until %s: the block went back to an older value",
			c.name(ja.w), c.from(ja), c.name(jb.w), c.from(jb), c.until(jb))
		return
	}
	c.violate("%s's value had to stay current from %s until %s, and %s's value from %s until %s: both cannot hold, so a read returned a stale value",
		c.name(ja.w), c.from(ja), c.until(ja), c.name(jb.w), c.from(jb), c.until(jb))
}

// between reports a write (job b, or the trim op t) that had to take effect
// within [x, y], strictly inside forward zone f.
func (c *linChecker) between(b, t int, x, y time.Duration, f int) {
	jf := &c.jobs[f]
	var what string
	plain := true
	if b >= 0 {
		jb := &c.jobs[b]
		what = c.descWrite(jb.w)
		if jb.nreads > 0 || jb.rRead == linFinal {
			plain = false
			what = fmt.Sprintf("%s, whose value was read, had to take effect between %s and %s and", what, linT(x), linT(y))
		}
	} else {
		what = c.descWrite(t)
	}
	if jf.rRead == linFinal {
		if plain {
			c.violate("final value is %s's, in effect by %s, but acknowledged %s completed later: it is lost",
				c.name(jf.w), c.from(jf), what)
		} else {
			c.violate("final value is %s's, in effect by %s, but %s so came later: the block went back to an older value",
				c.name(jf.w), c.from(jf), what)
		}
		return
	}
	if plain {
		c.violate("read #%d (invoked %s) returned %s's value, but %s came strictly between: %s's value was current by %s",
			c.req(jf.rRead).ID, linT(jf.R), c.name(jf.w), what, c.name(jf.w), c.from(jf))
		return
	}
	c.violate("read #%d (invoked %s) returned %s's value, but %s so came strictly between: %s's value was current by %s",
		c.req(jf.rRead).ID, linT(jf.R), c.name(jf.w), what, c.name(jf.w), c.from(jf))
}

func (c *linChecker) zeroInside(z, f int) {
	jf := &c.jobs[f]
	if z == linFinal {
		c.violate("final value is zero, but %s's value had to stay current from %s until %s",
			c.name(jf.w), c.from(jf), c.until(jf))
		return
	}
	c.violate("%s returned zeros, but %s's value had to stay current throughout it, from %s until %s",
		c.descRead(z), c.name(jf.w), c.from(jf), c.until(jf))
}

func (c *linChecker) zeroLost(z, dist int, zone bool) {
	var by string
	if dist >= 0 {
		j := &c.jobs[dist]
		if zone {
			by = fmt.Sprintf("%s's value was current from %s until %s", c.name(j.w), c.from(j), c.until(j))
		} else {
			by = fmt.Sprintf("%s had taken effect by %s", c.descWrite(j.w), linT(j.U))
		}
	}
	if z == linFinal {
		c.violate("final value is zero, but %s and no trim could have cleared the block afterwards", by)
		return
	}
	c.violate("%s returned zeros, but %s and no trim could have cleared the block before the read completed",
		c.descRead(z), by)
}

// whose names the write that produced token v elsewhere, if any.
func (c *linChecker) whose(v uint64) string {
	if c.tokens == nil {
		c.tokens = []linTokenRange{}
		for i := range c.h.reqs {
			r := &c.h.reqs[i]
			if r.Op == OpWrite && r.Count > 0 {
				c.tokens = append(c.tokens, linTokenRange{first: r.Value, n: uint64(r.Count), req: i})
			}
		}
		slices.SortStableFunc(c.tokens, func(a, b linTokenRange) int { return cmp.Compare(a.first, b.first) })
	}
	n, _ := slices.BinarySearchFunc(c.tokens, v, func(t linTokenRange, v uint64) int {
		if t.first <= v {
			return -1
		}
		return 1
	})
	var found []string
	for k := n - 1; k >= 0 && len(found) < 3; k-- {
		t := c.tokens[k]
		if v-t.first < t.n {
			r := &c.h.reqs[t.req]
			found = append(found, fmt.Sprintf("write #%d's token for block %d", r.ID, r.Block+(v-t.first)))
		}
		if v-t.first > 1<<20 {
			break
		}
	}
	if len(found) == 0 {
		return ""
	}
	return " (it is " + strings.Join(found, ", ") + ")"
}
