package faults

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind says what a Step does.
type Kind uint8

// The kinds of fault step. Each undoable fault has its own undo kind so that a
// schedule is a plain list of events, replayable on any backend.
const (
	Crash         Kind = iota + 1 // power off Node (loses all in-memory state)
	Restart                       // power Node back on (a new incarnation)
	Freeze                        // pause Node (SIGSTOP / VM paused): time passes, it runs nothing, packets queue
	Thaw                          // resume a frozen Node
	Partition                     // cut all network media between Node and Peer; OneWay: only Node->Peer direction
	Heal                          // undo Partition between Node and Peer, both directions (Node=-1: heal every link)
	CutSerial                     // cut the serial cable between the data nodes
	RestoreSerial                 // reconnect the serial cable
	ClockDrift                    // set Node's clock rate to PPM parts per million fast (negative: slow)
	ClockJump                     // step Node's wall clock by Delta (monotonic time unaffected)
	FenceBreak                    // Node's fencing agent: Mode "fail" (reports failure), "timeout" (never answers), "ok" (works again)
	ResourceBreak                 // on Node, resource index Resource fails its next Op ("start","stop","monitor") Count times
	Admin                         // operator command Command ("standby","online","takeover","cleanup") on Node
)

// kindVerbs are the scenario-file verbs, indexed by Kind. Kind.String returns
// the same word so that traces and scenario files read alike.
var kindVerbs = [...]string{
	Crash:         "crash",
	Restart:       "restart",
	Freeze:        "freeze",
	Thaw:          "thaw",
	Partition:     "partition",
	Heal:          "heal",
	CutSerial:     "cut-serial",
	RestoreSerial: "restore-serial",
	ClockDrift:    "clock-drift",
	ClockJump:     "clock-jump",
	FenceBreak:    "fence-break",
	ResourceBreak: "resource-break",
	Admin:         "admin",
}

// kindUsage is the argument syntax of each verb, quoted in parse errors.
var kindUsage = [...]string{
	Crash:         "crash <node>",
	Restart:       "restart <node>",
	Freeze:        "freeze <node>",
	Thaw:          "thaw <node>",
	Partition:     "partition <node> <peer> [one-way]",
	Heal:          "heal [<node> <peer>]",
	CutSerial:     "cut-serial",
	RestoreSerial: "restore-serial",
	ClockDrift:    "clock-drift <node> <n>ppm",
	ClockJump:     "clock-jump <node> <±duration>",
	FenceBreak:    "fence-break <node> fail|timeout|ok",
	ResourceBreak: "resource-break <node> <resource-index> start|stop|monitor <count>",
	Admin:         "admin <node> standby|online|takeover|cleanup",
}

// Valid words for the string-valued fields.
var (
	FenceModes    = []string{"fail", "timeout", "ok"}
	ResourceOps   = []string{"start", "stop", "monitor"}
	AdminCommands = []string{"standby", "online", "takeover", "cleanup"}
)

// Kinds lists every Kind in order, for tests and tools that iterate over them.
func Kinds() []Kind {
	out := make([]Kind, 0, len(kindVerbs)-1)
	for k := Crash; k <= Admin; k++ {
		out = append(out, k)
	}
	return out
}

// String returns the kind's scenario verb, e.g. "cut-serial".
func (k Kind) String() string {
	if k >= Crash && int(k) < len(kindVerbs) {
		return kindVerbs[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind reads a scenario verb.
func ParseKind(verb string) (Kind, bool) {
	for k := Crash; k <= Admin; k++ {
		if kindVerbs[k] == verb {
			return k, true
		}
	}
	return 0, false
}

// Step is one timed fault (or undo of one). Only the fields its Kind uses are
// meaningful; Canonical zeroes the rest.
type Step struct {
	At       time.Duration // since the start of the run
	Kind     Kind
	Node     int // target node index (0,1 data nodes, 2 witness); -1 where "all" makes sense (Heal)
	Peer     int // second node of a Partition or Heal
	OneWay   bool
	PPM      int64
	Delta    time.Duration
	Mode     string
	Resource int
	Op       string
	Count    int
	Command  string
}

// Canonical returns the step with the fields its Kind does not use zeroed, so
// that steps compare equal exactly when they mean the same thing (ParseStep
// always returns canonical steps). A Heal of every link has Node and Peer -1.
func (s Step) Canonical() Step {
	c := Step{At: s.At, Kind: s.Kind}
	switch s.Kind {
	case Crash, Restart, Freeze, Thaw:
		c.Node = s.Node
	case Partition:
		c.Node, c.Peer, c.OneWay = s.Node, s.Peer, s.OneWay
	case Heal:
		c.Node, c.Peer = s.Node, s.Peer
		if s.Node < 0 {
			c.Node, c.Peer = -1, -1
		}
	case CutSerial, RestoreSerial:
	case ClockDrift:
		c.Node, c.PPM = s.Node, s.PPM
	case ClockJump:
		c.Node, c.Delta = s.Node, s.Delta
	case FenceBreak:
		c.Node, c.Mode = s.Node, s.Mode
	case ResourceBreak:
		c.Node, c.Resource, c.Op, c.Count = s.Node, s.Resource, s.Op, s.Count
	case Admin:
		c.Node, c.Command = s.Node, s.Command
	default:
		return s
	}
	return c
}

// Format prints the step as one scenario line, `at <dur> <verb> <args...>`,
// e.g. "at 12.5s crash server1", "at 3s partition server1 server2 one-way",
// "at 4s heal". names[i] names node i; a node without a name prints as "#i".
// ParseStep reads it back.
func (s Step) Format(names []string) string {
	var b strings.Builder
	b.WriteString("at ")
	b.WriteString(FormatDuration(s.At))
	b.WriteByte(' ')
	b.WriteString(s.Kind.String())
	arg := func(a string) {
		if a == "" {
			a = "?" // keep the line one word per argument even when a field is unset
		}
		b.WriteByte(' ')
		b.WriteString(a)
	}
	node := func(i int) { arg(nodeName(i, names)) }
	switch s.Kind {
	case Crash, Restart, Freeze, Thaw:
		node(s.Node)
	case Partition:
		node(s.Node)
		node(s.Peer)
		if s.OneWay {
			arg("one-way")
		}
	case Heal:
		if s.Node >= 0 {
			node(s.Node)
			node(s.Peer)
		}
	case ClockDrift:
		node(s.Node)
		arg(strconv.FormatInt(s.PPM, 10) + "ppm")
	case ClockJump:
		node(s.Node)
		arg(FormatDuration(s.Delta))
	case FenceBreak:
		node(s.Node)
		arg(s.Mode)
	case ResourceBreak:
		node(s.Node)
		arg(strconv.Itoa(s.Resource))
		arg(s.Op)
		arg(strconv.Itoa(s.Count))
	case Admin:
		node(s.Node)
		arg(s.Command)
	}
	return b.String()
}

// String formats the step with node indices, for debugging.
func (s Step) String() string { return s.Format(nil) }

func nodeName(i int, names []string) string {
	if i >= 0 && i < len(names) && names[i] != "" {
		return names[i]
	}
	return "#" + strconv.Itoa(i)
}

// FormatDuration prints d in seconds with only the decimals it needs
// ("0s", "4.1s", "-2s", "0.000001s"): one unit everywhere keeps scenario
// timelines easy to scan, and it is exact, so it parses back to the same
// nanosecond.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	sign := ""
	u := uint64(d)
	if d < 0 {
		sign = "-"
		u = uint64(-d) // for MinInt64 this wraps to the right magnitude
	}
	sec, frac := u/1e9, u%1e9
	if frac == 0 {
		return fmt.Sprintf("%s%ds", sign, sec)
	}
	f := strings.TrimRight(fmt.Sprintf("%09d", frac), "0")
	return fmt.Sprintf("%s%d.%ss", sign, sec, f)
}

// ParseError is what ParseStep returns: which word of the line was wrong and
// what was expected there, so a scenario runner can point at it.
type ParseError struct {
	Word int    // 1-based index of the offending word; one past the end if a word is missing
	Got  string // the offending word ("" if missing)
	Msg  string // what is wrong and what was expected
}

// Error prints `word N "got": msg`.
func (e *ParseError) Error() string {
	if e.Got == "" {
		return fmt.Sprintf("word %d: %s", e.Word, e.Msg)
	}
	return fmt.Sprintf("word %d %q: %s", e.Word, e.Got, e.Msg)
}

// ParseStep parses what Format prints. Node names resolve through names (a
// "#i" index also works); errors say which word was wrong and what was
// expected, suggesting the nearest valid word where there is one.
func ParseStep(line string, names []string) (Step, error) {
	p := parser{words: strings.Fields(line), names: names}
	return p.step()
}

type parser struct {
	words []string
	names []string
	pos   int // index of the next word
	usage string
}

func (p *parser) fail(i int, format string, args ...any) error {
	e := &ParseError{Word: i + 1, Msg: fmt.Sprintf(format, args...)}
	if i < len(p.words) {
		e.Got = p.words[i]
	}
	return e
}

// next returns the next word, or an error naming what was missing.
func (p *parser) next(what string) (string, int, error) {
	i := p.pos
	if i >= len(p.words) {
		if p.usage != "" {
			return "", i, p.fail(i, "missing %s; want \"at <time> %s\"", what, p.usage)
		}
		return "", i, p.fail(i, "missing %s", what)
	}
	p.pos++
	return p.words[i], i, nil
}

func (p *parser) step() (Step, error) {
	var s Step
	w, i, err := p.next(`"at"`)
	if err != nil {
		return s, err
	}
	if w != "at" {
		return s, p.fail(i, `want "at <time> <verb> ..."`)
	}
	if w, i, err = p.next("time after \"at\""); err != nil {
		return s, err
	}
	if s.At, err = parseDur(w); err != nil || s.At < 0 {
		return s, p.fail(i, "bad time; want a duration from the start of the run such as 4.1s, 200ms or 2m")
	}
	if w, i, err = p.next("verb"); err != nil {
		return s, err
	}
	k, ok := ParseKind(w)
	if !ok {
		verbs := make([]string, 0, len(kindVerbs))
		for _, k := range Kinds() {
			verbs = append(verbs, k.String())
		}
		return s, p.fail(i, "unknown verb%s; want one of %s", suggest(w, verbs), strings.Join(verbs, ", "))
	}
	s.Kind = k
	p.usage = kindUsage[k]

	switch k {
	case Crash, Restart, Freeze, Thaw:
		if s.Node, err = p.node("node"); err != nil {
			return s, err
		}
	case Partition:
		if s.Node, s.Peer, err = p.pair(); err != nil {
			return s, err
		}
		if p.pos < len(p.words) {
			if w, i, _ := p.next(""); w == "one-way" {
				s.OneWay = true
			} else {
				return s, p.fail(i, "want \"one-way\" or nothing; usage \"at <time> %s\"", p.usage)
			}
		}
	case Heal:
		if p.pos == len(p.words) {
			s.Node, s.Peer = -1, -1
		} else if s.Node, s.Peer, err = p.pair(); err != nil {
			return s, err
		}
	case CutSerial, RestoreSerial:
	case ClockDrift:
		if s.Node, err = p.node("node"); err != nil {
			return s, err
		}
		if w, i, err = p.next("drift such as 200ppm"); err != nil {
			return s, err
		}
		num, ok := strings.CutSuffix(w, "ppm")
		if s.PPM, err = strconv.ParseInt(num, 10, 64); !ok || err != nil {
			return s, p.fail(i, "bad drift; want parts per million such as 200ppm or -50ppm")
		}
	case ClockJump:
		if s.Node, err = p.node("node"); err != nil {
			return s, err
		}
		if w, i, err = p.next("jump such as +2s or -500ms"); err != nil {
			return s, err
		}
		if s.Delta, err = parseDur(w); err != nil {
			return s, p.fail(i, "bad jump; want a signed duration such as +2s, -500ms or 1h")
		}
	case FenceBreak:
		if s.Node, err = p.node("node"); err != nil {
			return s, err
		}
		if s.Mode, err = p.oneOf("fencing agent mode", FenceModes); err != nil {
			return s, err
		}
	case ResourceBreak:
		if s.Node, err = p.node("node"); err != nil {
			return s, err
		}
		if s.Resource, err = p.count("resource index", 0); err != nil {
			return s, err
		}
		if s.Op, err = p.oneOf("resource action", ResourceOps); err != nil {
			return s, err
		}
		if s.Count, err = p.count("failure count", 1); err != nil {
			return s, err
		}
	case Admin:
		if s.Node, err = p.node("node"); err != nil {
			return s, err
		}
		if s.Command, err = p.oneOf("admin command", AdminCommands); err != nil {
			return s, err
		}
	}
	if p.pos < len(p.words) {
		return s, p.fail(p.pos, "unexpected extra word; want \"at <time> %s\"", p.usage)
	}
	return s, nil
}

// parseDur accepts Go durations ("1.5s", "200ms", "1m30s", "+2s", "0").
func parseDur(w string) (time.Duration, error) { return time.ParseDuration(w) }

func (p *parser) node(what string) (int, error) {
	w, i, err := p.next(what)
	if err != nil {
		return 0, err
	}
	for j, n := range p.names {
		if n == w {
			return j, nil
		}
	}
	if num, ok := strings.CutPrefix(w, "#"); ok {
		j, err := strconv.Atoi(num)
		limit := len(p.names)
		if len(p.names) == 0 {
			limit = 3 // no names given: any index of a cluster of up to 3 nodes
		}
		if err == nil && j >= 0 && j < limit {
			return j, nil
		}
	}
	if len(p.names) == 0 {
		return 0, p.fail(i, "unknown %s; want a node index #0, #1 or #2", what)
	}
	return 0, p.fail(i, "unknown %s%s; want one of %s", what, suggest(w, p.names), strings.Join(p.names, ", "))
}

func (p *parser) pair() (int, int, error) {
	a, err := p.node("node")
	if err != nil {
		return 0, 0, err
	}
	b, err := p.node("peer")
	if err != nil {
		return 0, 0, err
	}
	if a == b {
		return 0, 0, p.fail(p.pos-1, "peer is the node itself; want two different nodes")
	}
	return a, b, nil
}

func (p *parser) oneOf(what string, valid []string) (string, error) {
	w, i, err := p.next(what)
	if err != nil {
		return "", err
	}
	for _, v := range valid {
		if v == w {
			return v, nil
		}
	}
	return "", p.fail(i, "unknown %s%s; want one of %s", what, suggest(w, valid), strings.Join(valid, ", "))
}

func (p *parser) count(what string, least int) (int, error) {
	w, i, err := p.next(what)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(w)
	if err != nil || n < least {
		return 0, p.fail(i, "bad %s; want a whole number ≥ %d", what, least)
	}
	return n, nil
}

// suggest returns ` (did you mean "x"?)` for the valid word nearest to w by
// edit distance, if it is near enough to be a plausible typo, else "".
// Hyphens are ignored when measuring, so "cutserial" finds "cut-serial", and
// a word that is one part of a hyphenated word finds it ("drift" finds
// "clock-drift").
func suggest(w string, valid []string) string {
	for _, v := range valid {
		if strings.Contains(v, "-") && slices.Contains(strings.Split(v, "-"), w) {
			return fmt.Sprintf(" (did you mean %q?)", v)
		}
	}
	best, bestD := "", -1
	for _, v := range valid {
		d := editDistance(strings.ReplaceAll(w, "-", ""), strings.ReplaceAll(v, "-", ""))
		if bestD < 0 || d < bestD {
			best, bestD = v, d
		}
	}
	if bestD < 0 || bestD > max(2, len([]rune(best))/2) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
