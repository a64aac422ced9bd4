package scenarios

import (
	"fmt"
	"strconv"
	"strings"

	"tandem/internal/node"
)

// stepSpec is what the parser, the checker and Format know about a kind.
type stepSpec struct {
	verb  string
	usage string // the arguments after the verb, for LANGUAGE.md and messages
	// undo is the kind that ends a `for` window (see Step.Undo); workload
	// kinds spread over the window instead; noFor says why any other kind
	// cannot take one.
	undo     StepKind
	workload bool
	noFor    string
}

var stepSpecs = [numStepKinds]stepSpec{
	Write:         {verb: "write", usage: "<n> blocks | <size> | blocks <range>  [on <node>]", workload: true},
	Read:          {verb: "read", usage: "<n> blocks | <size> | blocks <range>  [on <node>]", workload: true},
	Flush:         {verb: "flush", usage: "[on <node>]", noFor: "a flush is one request"},
	Crash:         {verb: "crash", usage: "<node>", undo: Restart},
	Restart:       {verb: "restart", usage: "<node>"},
	Freeze:        {verb: "freeze", usage: "<node>", undo: Thaw},
	Thaw:          {verb: "thaw", usage: "<node>"},
	Stop:          {verb: "stop", usage: "<node>", undo: Start},
	Start:         {verb: "start", usage: "<node>"},
	Partition:     {verb: "partition", usage: "<node> <node> [one-way]", undo: Heal},
	Heal:          {verb: "heal", usage: "[<node> <node>]"},
	Drop:          {verb: "drop", usage: "<percent>% <node> <node> [one-way]", undo: Drop},
	Duplicate:     {verb: "duplicate", usage: "<percent>% <node> <node> [one-way]", undo: Duplicate},
	Delay:         {verb: "delay", usage: "<duration> <node> <node> [one-way]", undo: Delay},
	Flap:          {verb: "flap", usage: "<node> <node> every <duration> down <duration>"},
	CutSerial:     {verb: "cut-serial", usage: "", undo: RestoreSerial},
	RestoreSerial: {verb: "restore-serial", usage: ""},
	DiskFail:      {verb: "disk-fail", usage: "<node>", noFor: "a dead disk does not come back; put in a new one with disk-replace"},
	DiskReplace:   {verb: "disk-replace", usage: "<node>"},
	DiskHeal:      {verb: "disk-heal", usage: "<node>"},
	ReadErrors:    {verb: "read-errors", usage: "<node> [blocks <range>]", undo: DiskHeal},
	WriteErrors:   {verb: "write-errors", usage: "<node> [blocks <range>]", undo: DiskHeal},
	Corrupt:       {verb: "corrupt", usage: "<node> blocks <range>", noFor: "corrupted blocks stay corrupted until rewritten"},
	LoseWrites:    {verb: "lose-writes", usage: "<node> [blocks <range>]", undo: DiskHeal},
	Stall:         {verb: "stall", usage: "<node>", undo: DiskHeal},
	DiskFull:      {verb: "disk-full", usage: "<node> [from block <n>]", undo: DiskHeal},
	ClockJump:     {verb: "clock-jump", usage: "<node> <±duration>", noFor: "a jump happens at an instant"},
	ClockDrift:    {verb: "clock-drift", usage: "<node> <n>ppm", undo: ClockDrift},
	FenceAgent:    {verb: "fence-agent", usage: "<node> fail|timeout|ok", undo: FenceAgent},
	ResourceFail:  {verb: "resource-fail", usage: "<node> <resource> start|stop|monitor [<n> times]", noFor: "it counts failures, not time"},
	Primary:       {verb: "primary", usage: "<node> [--force]"},
	Secondary:     {verb: "secondary", usage: "<node>"},
	Connect:       {verb: "connect", usage: "<node> [--discard-my-data]"},
	Disconnect:    {verb: "disconnect", usage: "<node>"},
	Verify:        {verb: "verify", usage: "<node>"},
	Invalidate:    {verb: "invalidate", usage: "<node>"},
	Detach:        {verb: "detach", usage: "<node>"},
	PauseSync:     {verb: "pause-sync", usage: "<node>"},
	ResumeSync:    {verb: "resume-sync", usage: "<node>"},
	Standby:       {verb: "standby", usage: "<node>", undo: Online},
	Online:        {verb: "online", usage: "<node>"},
	Takeover:      {verb: "takeover", usage: "<node>"},
	Cleanup:       {verb: "cleanup", usage: "<node>"},
	End:           {verb: "end", usage: "", noFor: "the run ends there"},
}

// isAdmin: an operator's command, typed on the node, which must be running.
func (k StepKind) isAdmin() bool { return k >= Primary && k <= Cleanup }

// isDisk: a fault of the node's disk (the node may be up or down).
func (k StepKind) isDisk() bool { return k >= DiskFail && k <= DiskFull }

// stepVerbs lists every verb, for suggestions.
func stepVerbs() []string {
	out := make([]string, 0, numStepKinds)
	for k := Write; k < numStepKinds; k++ {
		out = append(out, stepSpecs[k].verb)
	}
	return out
}

// FenceModes and ResourceOps are the words of fence-agent and resource-fail.
var (
	FenceModes  = []string{"fail", "timeout", "ok"}
	ResourceOps = []string{"start", "stop", "monitor"}
)

// maxFlaps bounds the flaps of a scenario (see Flap).
const maxFlaps = 10000

// maxPPM is node.Config's bound on clock drift.
const maxPPM = 100000

// step parses `at <time> [for <duration>] <verb> <args>`.
func (l *line) step(head token) {
	p := l.p
	if p.endLine != 0 {
		l.failAt(head, fmt.Sprintf(`expected no step after the end of the run (line %d), got "at"`, p.endLine), "")
	}
	at, atTok := l.duration("a time since the start", true)
	if at < p.lastAt {
		l.failAt(atTok, fmt.Sprintf("expected a time at or after %s (the \"at\" on line %d), got %q", formatDuration(p.lastAt), p.lastAtLine, atTok.text), "")
	}
	p.lastAt, p.lastAtLine = at, head.pos.Line
	s := Step{Pos: head.pos, At: at, Node: AnyNode, Peer: AnyNode}
	var forTok token
	if l.peekIs("for") {
		forTok = l.next("")
		s.For, _ = l.duration("a window length", false)
	}
	verb := l.next("a step such as write, crash, partition or primary")
	for k := Write; k < numStepKinds; k++ {
		if fold(verb.text) == stepSpecs[k].verb && !verb.quoted {
			s.Kind = k
		}
	}
	if s.Kind == 0 {
		l.expected(verb, "a step such as write, crash, partition or primary", stepVerbs())
	}
	spec := stepSpecs[s.Kind]
	s.Pos = verb.pos
	switch {
	case s.Kind == Flap && s.For == 0:
		l.failAt(verb, `expected "at <time> for <duration> flap ...", got no "for": flapping needs a window`, "")
	case s.For > 0 && s.Kind != Flap && spec.undo == 0 && !spec.workload:
		why := spec.noFor
		if why == "" {
			why = "it has no undo"
		}
		l.failAt(forTok, fmt.Sprintf("expected no \"for\" on %q: %s", spec.verb, why), "")
	}
	l.stepArgs(&s, verb)
	if s.Kind == End {
		p.endLine = head.pos.Line
	}
	p.sc.Steps = append(p.sc.Steps, s)
}

// stepArgs parses the arguments of s.Kind.
func (l *line) stepArgs(s *Step, verb token) {
	c := &l.p.sc.Cluster
	switch k := s.Kind; {
	case k == Write || k == Read:
		if l.peekIs("blocks") || l.peekIs("block") {
			l.next("")
			s.Range = l.blockRange()
		} else {
			s.Blocks, _ = l.blocks("a number of blocks")
		}
		s.Node = l.optOn()
	case k == Flush:
		s.Node = l.optOn()
	case k >= Crash && k <= Start:
		s.Node = l.node(false)
	case k == Partition:
		s.Node, s.Peer = l.pair()
		s.OneWay = l.optKeyword("one-way")
	case k == Heal:
		if !l.done() {
			s.Node, s.Peer = l.pair()
		}
	case k == Drop || k == Duplicate:
		s.Percent = l.percent()
		s.Node, s.Peer = l.pair()
		s.OneWay = l.optKeyword("one-way")
	case k == Delay:
		s.Delay, _ = l.duration("an added delay", true)
		s.Node, s.Peer = l.pair()
		s.OneWay = l.optKeyword("one-way")
	case k == Flap:
		s.Node, s.Peer = l.pair()
		l.keyword(`"every"`, []string{"every"})
		s.Every, _ = l.duration("a flap period", false)
		l.keyword(`"down"`, []string{"down"})
		var downTok token
		s.Down, downTok = l.duration("an outage length", false)
		if s.Down >= s.Every {
			l.failAt(downTok, fmt.Sprintf("expected an outage shorter than the period (%s), got %q", formatDuration(s.Every), downTok.text), "")
		}
		// Each flap becomes two steps of the timeline; bound them so that
		// a typo ("every 1ms") cannot make a scenario that never loads.
		n := int((s.For + s.Every - 1) / s.Every)
		if l.p.flaps+n > maxFlaps {
			l.failAt(downTok, fmt.Sprintf("expected at most %d flaps in the whole scenario, got %d more here: write a longer period or a shorter window", maxFlaps, n), "")
		}
		l.p.flaps += n
	case k == CutSerial || k == RestoreSerial:
		if c.NoSerial {
			l.failAt(verb, fmt.Sprintf(`expected a serial cable for %q, but the cluster line says "serial off"`, verb.text), "")
		}
	case k == ReadErrors || k == WriteErrors || k == LoseWrites:
		s.Node = l.node(true)
		s.Range = l.optRange()
	case k == Corrupt:
		s.Node = l.node(true)
		l.keyword(`"blocks"`, []string{"blocks", "block"})
		s.Range = l.blockRange()
	case k == DiskFull:
		s.Node = l.node(true)
		if l.optKeyword("from") {
			l.keyword(`"block"`, []string{"block", "blocks"})
			n, t := l.number("a block number", 0, maxBytes)
			if n >= c.DiskBlocks() {
				l.expected(t, fmt.Sprintf("a block within the disk (0-%d)", c.DiskBlocks()-1), nil)
			}
			s.Range.First = n
		}
	case k.isDisk():
		s.Node = l.node(true)
	case k == ClockJump:
		s.Node = l.node(false)
		t := l.next("a signed jump such as +2s or -500ms")
		d, ok := parseDuration(t.text, true)
		if !ok || d == 0 {
			l.expected(t, "a non-zero signed jump such as +2s or -500ms", nil)
		}
		s.Delta = d
	case k == ClockDrift:
		s.Node = l.node(false)
		t := l.next("a drift such as 200ppm")
		num, ok := strings.CutSuffix(t.text, "ppm")
		n, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil || n < -maxPPM || n > maxPPM {
			l.expected(t, fmt.Sprintf("a drift from -%dppm to %dppm such as 200ppm", maxPPM, maxPPM), nil)
		}
		s.PPM = n
	case k == FenceAgent:
		if f := c.WithDefaults().Fencing; f != node.FenceStonith {
			l.failAt(verb, fmt.Sprintf(`expected "fencing stonith" for %q: with fencing %s no agent runs`, verb.text, f), "")
		}
		s.Node = l.node(true)
		s.Mode, _ = l.keyword("a fencing agent mode ("+joinList(FenceModes, "or")+")", FenceModes)
	case k == ResourceFail:
		s.Node = l.node(true)
		s.Resource = l.resource()
		s.Mode, _ = l.keyword("a resource action ("+joinList(ResourceOps, "or")+")", ResourceOps)
		s.Count = 1
		if !l.done() {
			n, _ := l.number("a failure count", 1, 1000)
			l.keyword(`"times"`, []string{"times", "time"})
			s.Count = int(n)
		}
	case k.isAdmin():
		s.Node = l.node(true)
		switch k {
		case Primary:
			s.Force = l.optKeyword("--force")
		case Connect:
			s.DiscardMyData = l.optKeyword("--discard-my-data")
		}
	}
	l.end()
}

// optOn reads an optional "on <data node>" (AnyNode without).
func (l *line) optOn() int {
	if l.optKeyword("on") {
		return l.node(true)
	}
	l.end("on")
	return AnyNode
}

// optKeyword consumes kw if it comes next; otherwise only kw or nothing may.
func (l *line) optKeyword(kw string) bool {
	if l.peekIs(kw) {
		l.next("")
		return true
	}
	l.end(kw)
	return false
}

// percent reads "<p>%" with 0 <= p <= 100.
func (l *line) percent() float64 {
	t := l.next("a percentage such as 30%")
	num, ok := strings.CutSuffix(t.text, "%")
	whole, frac, _ := strings.Cut(num, ".")
	if !ok || whole == "" || !allDigits(whole) || !allDigits(frac) || len(num) > 20 {
		l.expected(t, "a percentage such as 30% or 0.5%", nil)
	}
	p, err := strconv.ParseFloat(num, 64)
	if err != nil || p > 100 {
		l.expected(t, "a percentage from 0% to 100%", nil)
	}
	return p
}

// resource reads a member of the cluster's group.
func (l *line) resource() int {
	g := l.p.sc.Cluster.Group
	t := l.next("a resource of the group")
	if len(g) == 0 {
		l.failAt(t, fmt.Sprintf("expected a resource of the group, got %q, but the cluster line has no group", t.text), "")
	}
	for i, r := range g {
		if r == t.text {
			return i
		}
	}
	l.expected(t, "a resource of the group ("+joinList(g, "or")+")", g)
	return 0
}
