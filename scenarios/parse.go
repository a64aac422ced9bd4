package scenarios

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Error is one problem in a scenario file, at Pos. Suggest, if set, is the
// valid word nearest to what was written.
type Error struct {
	Pos     Pos
	Msg     string
	Suggest string
}

// Error prints `file:line:col: msg (did you mean "x"?)`.
func (e *Error) Error() string {
	s := e.Pos.String() + ": " + e.Msg
	if e.Suggest != "" {
		s += fmt.Sprintf(" (did you mean %q?)", e.Suggest)
	}
	return s
}

// ErrorList is every problem found in a file, in file order (at most
// MaxErrors, then one saying there were more).
type ErrorList []*Error

// MaxErrors is how many errors Parse reports before it stops looking.
const MaxErrors = 10

// Error prints one error per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

type errList struct {
	list ErrorList
	full bool
}

func (l *errList) add(pos Pos, msg, suggest string) {
	switch {
	case l.full:
	case len(l.list) == MaxErrors:
		l.list = append(l.list, &Error{Pos: pos, Msg: "too many errors; fix the ones above first"})
		l.full = true
	default:
		l.list = append(l.list, &Error{Pos: pos, Msg: msg, Suggest: suggest})
	}
}

// ParseFile reads and parses a scenario file.
func ParseFile(path string) (*Scenario, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return Parse(path, src)
}

// Parse parses the scenario src; name is its file name, used in positions
// and, without directory and ".scn", as the scenario's Name. The error, if
// any, is an ErrorList of every problem found (up to MaxErrors).
func Parse(name string, src []byte) (*Scenario, error) {
	p := &parser{sc: &Scenario{File: name, Name: strings.TrimSuffix(filepath.Base(name), ".scn")}}
	lx := newLexer(name, src, &p.errs)
	stmts := lx.statements()
	p.sc.Doc = strings.Join(lx.doc, "\n")
	for _, st := range stmts {
		p.statement(st)
	}
	if !p.haveCluster && len(stmts) == 0 {
		p.errs.add(Pos{name, len(lx.lines), 1}, "expected a cluster line, got end of file", "")
	}
	if p.clusterOK && len(p.errs.list) == 0 {
		p.checkEnd()
		checkTimeline(p.sc, &p.errs)
	}
	sortErrors(p.errs.list)
	if len(p.errs.list) > 0 {
		return nil, p.errs.list
	}
	return p.sc, nil
}

// parser holds what one statement needs from the ones before it.
type parser struct {
	sc   *Scenario
	errs errList
	// haveCluster: a cluster line was seen; clusterOK: its node names are
	// known, so later lines can be checked against them.
	haveCluster, clusterOK, toldNoCluster bool
	clusterLine                           int
	// lastAt is the time of the latest `at` line (lastAtLine its line).
	lastAt     time.Duration
	lastAtLine int
	endLine    int // line of the `at <time> end` step, 0 if none
	flaps      int // flaps so far, bounded by maxFlaps
}

// bail aborts the statement being parsed after its error was recorded.
type bail struct{}

// line walks the words of one statement.
type line struct {
	p    *parser
	st   statement
	i    int
	prev string // the words consumed so far, for "after ..." in messages
}

func (p *parser) statement(st statement) {
	l := &line{p: p, st: st}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(bail); !ok {
				panic(r)
			}
		}
	}()
	head := l.next("a statement")
	switch fold(head.text) {
	case "cluster":
		l.cluster(head)
		return
	case "at", "expect":
	default:
		for k := Write; k < numStepKinds; k++ {
			if fold(head.text) == stepSpecs[k].verb {
				l.failAt(head, `expected "at <time> %s ...", got %q without a time`, "", stepSpecs[k].verb, head.text)
			}
		}
		l.failAt(head, `expected "cluster", "at" or "expect", got %q`, nearest(head.text, []string{"cluster", "at", "expect"}), head.text)
	}
	if !p.haveCluster {
		if p.toldNoCluster {
			return // once is enough
		}
		p.toldNoCluster = true
		l.failAt(head, fmt.Sprintf(`expected the cluster line first, got %q`, head.text), "")
	}
	if !p.clusterOK {
		return // its node names are unknown: checking this line would only cascade
	}
	if fold(head.text) == "at" {
		l.step(head)
	} else {
		l.expect(head)
	}
}

// ---- reading words ----

func (l *line) done() bool { return l.i >= len(l.st.toks) }

func (l *line) peek() (token, bool) {
	if l.done() {
		return token{}, false
	}
	return l.st.toks[l.i], true
}

// peekIs reports whether the next word is the keyword kw.
func (l *line) peekIs(kw string) bool {
	t, ok := l.peek()
	return ok && !t.quoted && fold(t.text) == kw
}

// next returns the next word, or fails saying what was expected there.
func (l *line) next(what string) token {
	t, ok := l.peek()
	if !ok {
		l.missing(what)
	}
	l.i++
	if l.prev == "" {
		l.prev = t.text
	} else if len(l.prev) < 60 {
		l.prev += " " + t.text
	}
	return t
}

// missing fails at the end of the statement: what was expected is absent.
func (l *line) missing(what string) {
	after := ""
	if l.prev != "" {
		after = fmt.Sprintf(" after %q", l.prev)
	}
	l.p.errs.add(l.st.end, fmt.Sprintf("expected %s%s, got end of line", what, after), "")
	panic(bail{})
}

// expected fails at t: `expected what, got "t"`, suggesting the nearest of
// valid.
func (l *line) expected(t token, what string, valid []string) {
	l.p.errs.add(t.pos, fmt.Sprintf("expected %s, got %q", what, t.text), nearest(t.text, valid))
	panic(bail{})
}

// failAt fails at t with a message of its own.
func (l *line) failAt(t token, msg, suggest string, args ...any) {
	if len(args) > 0 {
		msg = fmt.Sprintf(msg, args...)
	}
	l.p.errs.add(t.pos, msg, suggest)
	panic(bail{})
}

// end fails if words remain; optional are keywords that could have come.
func (l *line) end(optional ...string) {
	if t, ok := l.peek(); ok {
		what := "end of line"
		if len(optional) > 0 {
			what = quoteList(optional, "or") + " or end of line"
		}
		l.expected(t, fmt.Sprintf("%s after %q", what, l.prev), optional)
	}
}

// keyword reads one of valid (compared with fold) and returns it as
// written in valid.
func (l *line) keyword(what string, valid []string) (string, token) {
	t := l.next(what)
	for _, v := range valid {
		if fold(t.text) == fold(v) && !t.quoted {
			return v, t
		}
	}
	l.expected(t, what, valid)
	return "", t
}

// quoteList prints ["a" "b" "c"] as `"a", "b" or "c"`.
func quoteList(words []string, conj string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = fmt.Sprintf("%q", w)
	}
	return joinList(q, conj)
}

// joinList prints [a b c] as "a, b or c".
func joinList(words []string, conj string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " " + conj + " " + words[len(words)-1]
}

// ---- values ----

const durationHint = "a duration such as 200ms, 2s, 1.5m or 1h"

// duration reads a duration; positive unless zeroOK.
func (l *line) duration(what string, zeroOK bool) (time.Duration, token) {
	t := l.next(what)
	d, ok := parseDuration(t.text, false)
	if !ok {
		// A bare number most likely lacks its unit; Go's "1m30s" has a
		// one-unit spelling.
		suggest := ""
		if allDigits(t.text) && t.text != "" {
			suggest = t.text + "s"
		} else if d, err := time.ParseDuration(t.text); err == nil && d > 0 && d <= maxDuration {
			suggest = formatDuration(d)
		}
		l.failAt(t, fmt.Sprintf("expected %s (%s), got %q", what, durationHint, t.text), suggest)
	}
	if d == 0 && !zeroOK {
		l.expected(t, "a positive "+what, nil)
	}
	return d, t
}

// number reads a whole number in [least, most].
func (l *line) number(what string, least, most uint64) (uint64, token) {
	t := l.next(what)
	if !allDigits(t.text) || t.text == "" || len(t.text) > 15 {
		l.expected(t, what, nil)
	}
	var n uint64
	fmt.Sscan(t.text, &n)
	if n < least || n > most {
		l.expected(t, fmt.Sprintf("%s from %d to %d", what, least, most), nil)
	}
	return n, t
}

// blocks reads a size that is a whole number of blocks: "<n> blocks" (or
// "1 block") or "<n><unit>" such as 64MiB. It returns the block count.
func (l *line) blocks(what string) (uint64, token) {
	t := l.next(what)
	if allDigits(t.text) && t.text != "" && len(t.text) <= 15 {
		var n uint64
		fmt.Sscan(t.text, &n)
		l.keyword(`"blocks"`, []string{"blocks", "block"})
		if n == 0 || n > maxBytes/BlockSize {
			l.expected(t, what+" from 1 block up", nil)
		}
		return n, t
	}
	b, ok := parseSize(t.text)
	if !ok {
		l.failAt(t, fmt.Sprintf("expected %s such as 100 blocks or 4MiB (units B, KiB, MiB, GiB, TiB), got %q", what, t.text), binaryUnit(t.text))
	}
	if b == 0 || b%BlockSize != 0 {
		l.expected(t, what+" in whole 4 KiB blocks", nil)
	}
	return b / BlockSize, t
}

// binaryUnit offers the binary unit for a decimal one ("4MB" → "4MiB"):
// sizes are powers of two here, as they are for block devices.
func binaryUnit(w string) string {
	num := strings.TrimRightFunc(w, func(r rune) bool { return r < '0' || r > '9' })
	if num == "" || !allDigits(num) {
		return ""
	}
	unit := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(w[len(num):], "B"), "b"))
	switch unit {
	case "K", "M", "G", "T":
		return num + unit + "iB"
	case "KI", "MI", "GI", "TI":
		return num + unit[:1] + "iB"
	}
	return ""
}

// onOff reads on or off.
func (l *line) onOff(what string) bool {
	v, _ := l.keyword(what+` ("on" or "off")`, []string{"on", "off"})
	return v == "on"
}

// ---- nodes ----

// node reads a node name; data: only a data node will do.
func (l *line) node(data bool) int {
	names := l.p.sc.Cluster.Nodes
	valid, what := names, "a node"
	if data {
		valid, what = names[:2], "a data node"
	}
	t := l.next(what)
	for i, n := range valid {
		if n == t.text && !t.quoted {
			return i
		}
	}
	if data && len(names) == 3 && t.text == names[2] {
		l.failAt(t, fmt.Sprintf("expected a data node (%s), got the witness %q: it has no disk and never runs the group", joinList(valid, "or"), t.text), "")
	}
	l.expected(t, fmt.Sprintf("%s (%s)", what, joinList(valid, "or")), valid)
	return 0
}

// pair reads two different nodes.
func (l *line) pair() (int, int) {
	a := l.node(false)
	t, _ := l.peek()
	b := l.node(false)
	if a == b {
		l.failAt(t, fmt.Sprintf("expected a node other than %q: a link joins two nodes", t.text), "")
	}
	return a, b
}

// blockRange reads "<first>", "<first>-<last>" or "<first>-" (to the end).
func (l *line) blockRange() Range {
	t := l.next("a block range such as 100-199, 42 or 3000-")
	bad := func() {
		l.expected(t, "a block range such as 100-199, 42 or 3000-", nil)
	}
	first, last, dash := strings.Cut(t.text, "-")
	if !allDigits(first) || first == "" || !allDigits(last) || len(first) > 15 || len(last) > 15 {
		bad()
	}
	var r Range
	fmt.Sscan(first, &r.First)
	blocks := l.p.sc.Cluster.DiskBlocks()
	if r.First >= blocks {
		l.expected(t, fmt.Sprintf("a block range within the disk (blocks 0-%d)", blocks-1), nil)
	}
	switch {
	case !dash:
		r.Count = 1
	case last != "":
		var n uint64
		fmt.Sscan(last, &n)
		if n < r.First {
			l.expected(t, "a block range whose last block is not before its first", nil)
		}
		if n >= blocks {
			l.expected(t, fmt.Sprintf("a block range within the disk (blocks 0-%d)", blocks-1), nil)
		}
		r.Count = n - r.First + 1
	}
	return r
}

// optRange reads an optional "blocks <range>" (default: the whole disk).
func (l *line) optRange() Range {
	if l.peekIs("blocks") || l.peekIs("block") {
		l.next("")
		return l.blockRange()
	}
	return Range{}
}

// ---- the time line ----

// checkEnd: an End step ends the run, so no expectation may look past it.
func (p *parser) checkEnd() {
	var end time.Duration
	found := false
	for _, st := range p.sc.Steps {
		if st.Kind == End {
			end, found = st.At, true
		}
	}
	if !found {
		return
	}
	for _, e := range p.sc.Expects {
		w := e.Window()
		if w.To != EndOfRun && w.To > end {
			p.errs.add(e.Pos, fmt.Sprintf("expected %q to be judged by the end of the run (%s, line %d), but its window ends at %s",
				e.Cond.String(), formatDuration(end), p.endLine, formatDuration(w.To)), "")
		}
	}
}

func sortErrors(l ErrorList) {
	// Insertion sort: the list is short and almost sorted (timeline errors
	// come after the line-by-line ones); "too many errors" stays last.
	n := len(l)
	if n > 0 && strings.HasPrefix(l[n-1].Msg, "too many errors") {
		n--
	}
	for i := 1; i < n; i++ {
		for j := i; j > 0 && before(l[j].Pos, l[j-1].Pos); j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}

func before(a, b Pos) bool { return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col }
