package scenarios

import (
	"fmt"
	"strings"

	"tandem/internal/repl"
)

// condClass decides which timings make sense for a condition.
type condClass uint8

const (
	// stateClass: true or false at each instant; every timing works.
	stateClass condClass = iota + 1
	// invariant: a "never" over a span: from here, or for a while.
	invariant
	// event: something that happens: from here, or within a while.
	event
	// measureClass: a count over a span: from here, or within a while.
	measureClass
)

var condSpecs = [numCondKinds]struct {
	class condClass
	usage string
}{
	CondPrimary:            {stateClass, "primary <node>|none"},
	CondNoSplitBrain:       {invariant, "no-split-brain"},
	CondSplitBrainDetected: {event, "split-brain-detected"},
	CondSplitBrainResolved: {event, "split-brain-resolved [victim <node>]"},
	CondAckedWritesDurable: {stateClass, "acked-writes-durable"},
	CondDisksIdentical:     {stateClass, "disks-identical"},
	CondNoFailover:         {invariant, "no-failover"},
	CondFailover:           {event, "failover [to <node>]"},
	CondState:              {stateClass, "state <node> [role <role>] [disk <disk state>] [conn <connection state>] [peer-disk <disk state>]"},
	CondMeasure:            {measureClass, "<measure> <op> <value>"},
}

// condHeads are the words that start a condition, for suggestions.
func condHeads() []string {
	var out []string
	for k := CondPrimary; k < CondMeasure; k++ {
		out = append(out, k.String())
	}
	for m := ResyncBytes; m < numMeasures; m++ {
		out = append(out, m.String())
	}
	return out
}

// The state names a `state` condition accepts, from internal/repl's String
// methods so that they are always DRBD's words as the core prints them.
var (
	roleNames = enumNames(func(i int) string { return repl.Role(i).String() }, "Role(")
	diskNames = enumNames(func(i int) string { return repl.DiskState(i).String() }, "Disk(")
	connNames = enumNames(func(i int) string { return repl.ConnState(i).String() }, "Conn(")
)

// expect parses `expect [at <time>|at end] <cond>... [within|for <duration>]`.
func (l *line) expect(head token) {
	p := l.p
	e := Expect{When: FromHere, Anchor: p.lastAt}
	var whenTok token
	if l.peekIs("at") {
		whenTok = l.next("")
		if l.peekIs("end") {
			l.next("")
			e.When = AtEnd
		} else {
			e.When = AtTime
			e.T, _ = l.duration(`a time or "end"`, true)
		}
	}
	var conds []Expect
	for !l.done() && !l.peekIs("within") && !l.peekIs("for") {
		if t, _ := l.peek(); len(conds) > 0 && l.peekIs("at") {
			l.failAt(t, `expected "at" right after "expect" (as in "expect at end disks-identical"), got it after the condition`, "")
		}
		c := e
		l.cond(&c)
		conds = append(conds, c)
	}
	if len(conds) == 0 {
		l.next("a condition such as primary, disks-identical or no-split-brain")
	}
	if !l.done() {
		t := l.next("")
		if e.When != FromHere {
			l.failAt(t, fmt.Sprintf("expected end of line, got %q: %q already fixes the instant", t.text, "at"), "")
		}
		whenTok = t
		e.When = Within
		if fold(t.text) == "for" {
			e.When = For
		}
		e.D, _ = l.duration("a window length", false)
		l.end()
	}
	for _, c := range conds {
		c.When, c.D = e.When, e.D
		l.timingAllowed(&c, whenTok)
		p.sc.Expects = append(p.sc.Expects, c)
	}
}

// timingAllowed fails where a timing makes no sense for a condition.
func (l *line) timingAllowed(e *Expect, t token) {
	var ok []When
	var why string
	switch condSpecs[e.Cond].class {
	case stateClass:
		return
	case invariant:
		ok, why = []When{FromHere, For}, `it must hold over a span: use "for <duration>" or nothing`
	case event:
		ok, why = []When{FromHere, Within}, `it is an event: use "within <duration>" or nothing`
	case measureClass:
		ok, why = []When{FromHere, Within}, `it counts over a span: use "within <duration>" or nothing`
	}
	for _, w := range ok {
		if w == e.When {
			return
		}
	}
	name := e.Cond.String()
	if e.Cond == CondMeasure {
		name = e.Measure.String()
	}
	l.failAt(t, fmt.Sprintf("expected no %q with %q: %s", t.text, name, why), "")
}

// cond parses one condition into e.
func (l *line) cond(e *Expect) {
	t := l.next("a condition")
	e.Pos, e.Node = t.pos, AnyNode
	w := fold(t.text)
	for m := ResyncBytes; m < numMeasures; m++ {
		if w == m.String() && !t.quoted {
			e.Cond, e.Measure = CondMeasure, m
			l.measure(e)
			return
		}
	}
	for k := CondPrimary; k < CondMeasure; k++ {
		if w == k.String() && !t.quoted {
			e.Cond = k
		}
	}
	switch e.Cond {
	case 0:
		l.expected(t, "a condition such as primary, disks-identical or no-split-brain", condHeads())
	case CondPrimary:
		if l.peekIs("none") {
			l.next("")
		} else {
			e.Node = l.node(true)
		}
	case CondSplitBrainResolved:
		if l.peekIs("victim") {
			l.next("")
			e.Node = l.node(true)
		}
	case CondFailover:
		if l.peekIs("to") {
			l.next("")
			e.Node = l.node(true)
		}
	case CondState:
		e.Node = l.node(true)
		l.stateFields(e)
	}
}

// stateFields parses the `role`, `disk`, `conn` and `peer-disk` of a state
// condition, at least one.
func (l *line) stateFields(e *Expect) {
	keys := []string{"role", "disk", "conn", "peer-disk"}
	seen := map[string]bool{}
	for {
		t, ok := l.peek()
		if !ok || t.quoted {
			break
		}
		key := ""
		for _, k := range keys {
			if fold(t.text) == k {
				key = k
			}
		}
		if key == "" {
			break
		}
		l.next("")
		if seen[key] {
			l.failAt(t, fmt.Sprintf("expected each of role, disk, conn and peer-disk once, got a second %q", t.text), "")
		}
		seen[key] = true
		switch key {
		case "role":
			e.Role = repl.Role(l.stateName("a role", roleNames))
		case "disk":
			e.Disk = repl.DiskState(l.stateName("a disk state", diskNames))
		case "conn":
			e.Conn = repl.ConnState(l.stateName("a connection state", connNames))
		case "peer-disk":
			e.PeerDisk = repl.DiskState(l.stateName("a disk state", diskNames))
		}
	}
	if len(seen) == 0 {
		if t, ok := l.peek(); ok {
			l.expected(t, "role, disk, conn or peer-disk", keys)
		}
		l.missing("role, disk, conn or peer-disk")
	}
}

// stateName reads one of names (any case) and returns its value (1-based).
func (l *line) stateName(what string, names []string) uint8 {
	t := l.next(what)
	for i, n := range names {
		if strings.EqualFold(n, t.text) && !t.quoted {
			return uint8(i + 1)
		}
	}
	l.expected(t, what+" ("+joinList(names, "or")+")", names)
	return 0
}

var cmpOps = []CmpOp{LE, LT, EQ, GE, GT}

// measure parses `<op> <value>` after a measure's name.
func (l *line) measure(e *Expect) {
	t := l.next("a comparison (<=, <, ==, >= or >)")
	for _, o := range cmpOps {
		if t.text == o.String() {
			e.Op = o
		}
	}
	if e.Op == 0 {
		l.expected(t, "a comparison (<=, <, ==, >= or >)", []string{"<=", "<", "==", ">=", ">"})
	}
	if e.Measure == ResyncBytes {
		e.Value = l.bytes()
		return
	}
	e.Value, _ = l.number("a count", 0, maxBytes)
	if e.Measure == VerifyMismatches && (l.peekIs("blocks") || l.peekIs("block")) {
		l.next("")
	}
}

// bytes reads a byte count: "<n>" (bytes), "<n> blocks" or "<n><unit>".
func (l *line) bytes() uint64 {
	if t, ok := l.peek(); ok && allDigits(t.text) {
		n, _ := l.number("a size", 0, maxBytes)
		if l.peekIs("blocks") || l.peekIs("block") {
			l.next("")
			if n > maxBytes/BlockSize {
				l.expected(t, "a smaller size", nil)
			}
			return n * BlockSize
		}
		return n
	}
	t := l.next("a size such as 4MiB or 100 blocks")
	b, good := parseSize(t.text)
	if !good {
		l.failAt(t, fmt.Sprintf("expected a size such as 4MiB or 100 blocks (units B, KiB, MiB, GiB, TiB), got %q", t.text), binaryUnit(t.text))
	}
	return b
}
