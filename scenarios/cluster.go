package scenarios

import (
	"fmt"
	"net/netip"
	"path"
	"strings"
	"time"

	"tandem/internal/node"
	"tandem/internal/repl"
)

// clusterOption is one `<key> <value>` of the cluster line.
type clusterOption struct {
	key   string
	parse func(l *line, c *Cluster, key token)
}

// clusterOptions in the order Format prints them.
var clusterOptions []clusterOption

func init() {
	dur := func(field func(*Cluster) *time.Duration) func(*line, *Cluster, token) {
		return func(l *line, c *Cluster, key token) { *field(c), _ = l.duration(key.text, false) }
	}
	clusterOptions = []clusterOption{
		{"witness", func(l *line, c *Cluster, key token) {
			t := l.next("the witness's name")
			l.p.nodeName(l, t, c.Nodes)
			c.Nodes = append(c.Nodes, t.text)
		}},
		{"protocol", func(l *line, c *Cluster, key token) {
			t := l.next("a protocol (A, B or C)")
			p, err := repl.ParseProtocol(t.text)
			if err != nil || t.quoted {
				l.expected(t, "a protocol (A, B or C)", nil)
			}
			c.Protocol = p
		}},
		{"fencing", func(l *line, c *Cluster, key token) {
			names := enumNames(func(i int) string { return node.Fencing(i).String() }, "fencing(")
			t := l.next("a fencing policy")
			f, err := node.ParseFencing(fold(t.text))
			if err != nil {
				l.expected(t, "a fencing policy ("+joinList(names, "or")+")", names)
			}
			c.Fencing = f
		}},
		{"auto_failback", func(l *line, c *Cluster, key token) { c.AutoFailback = l.onOff("auto_failback") }},
		{"serial", func(l *line, c *Cluster, key token) { c.NoSerial = !l.onOff("serial") }},
		{"keepalive", dur(func(c *Cluster) *time.Duration { return &c.Keepalive })},
		{"warntime", dur(func(c *Cluster) *time.Duration { return &c.Warntime })},
		{"deadtime", dur(func(c *Cluster) *time.Duration { return &c.Deadtime })},
		{"initdead", dur(func(c *Cluster) *time.Duration { return &c.Initdead })},
		{"fence-delay", dur(func(c *Cluster) *time.Duration { return &c.FenceDelay })},
		{"fence-timeout", dur(func(c *Cluster) *time.Duration { return &c.FenceTimeout })},
		{"fence-time", dur(func(c *Cluster) *time.Duration { return &c.FenceTime })},
		{"after-sb-0pri", func(l *line, c *Cluster, key token) {
			data := c.Nodes[:2]
			var valid []string
			for _, n := range enumNames(func(i int) string { return repl.SB0(i).String() }, "sb0(") {
				if n != repl.DiscardNode.String() { // written discard-node-NAME
					valid = append(valid, n)
				}
			}
			for _, n := range data {
				valid = append(valid, "discard-node-"+n)
			}
			t := l.next("an after-sb-0pri policy")
			// Keywords ignore case; the node name in discard-node-NAME does not.
			const dn = "discard-node-"
			word := fold(t.text)
			if len(t.text) > len(dn) && fold(t.text[:len(dn)]) == dn {
				word = dn + t.text[len(dn):]
			}
			p, who, err := repl.ParseSB0(word, data)
			if err != nil {
				l.expected(t, "an after-sb-0pri policy ("+joinList(valid, "or")+")", valid)
			}
			c.AfterSB0, c.DiscardNode = p, AnyNode
			if p == repl.DiscardNode {
				c.DiscardNode = int(who)
			}
		}},
		{"after-sb-1pri", func(l *line, c *Cluster, key token) {
			names := enumNames(func(i int) string { return repl.SB1(i).String() }, "sb1(")
			t := l.next("an after-sb-1pri policy")
			p, err := repl.ParseSB1(fold(t.text))
			if err != nil {
				l.expected(t, "an after-sb-1pri policy ("+joinList(names, "or")+")", names)
			}
			c.AfterSB1 = p
		}},
		{"after-sb-2pri", func(l *line, c *Cluster, key token) {
			t := l.next("an after-sb-2pri policy")
			p, err := repl.ParseSB2(fold(t.text))
			if err != nil {
				l.failAt(t, fmt.Sprintf(`expected an after-sb-2pri policy ("disconnect": a running primary's data is never discarded automatically), got %q`, t.text), nearest(t.text, []string{"disconnect"}))
			}
			c.AfterSB2 = p
		}},
		{"on-io-error", func(l *line, c *Cluster, key token) {
			v, _ := l.keyword(`an on-io-error policy ("detach" or "pass_on")`, []string{"detach", "pass_on"})
			c.OnIOError = repl.Detach
			if v == "pass_on" {
				c.OnIOError = repl.PassOn
			}
		}},
		{"disk", func(l *line, c *Cluster, key token) {
			n, _ := l.blocks("a disk size")
			c.DiskBytes = n * BlockSize
		}},
		{"resync-rate", func(l *line, c *Cluster, key token) {
			t := l.next("a resync rate such as 10MiB/s")
			size, perSecond := strings.CutSuffix(t.text, "/s")
			b, ok := parseSize(size)
			if !perSecond || !ok || b == 0 || b%BlockSize != 0 {
				l.expected(t, "a resync rate in whole 4 KiB blocks per second, such as 10MiB/s", nil)
			}
			c.ResyncRate = b
		}},
		{"group", func(l *line, c *Cluster, key token) {
			t := l.next(`a resource group such as "ip:192.168.1.5/24 fs:/replicated service:sendmail"`)
			c.Group = l.group(t)
		}},
	}
}

// enumNames lists an enum's names from its String method, from value 1 up
// to the first value that prints as unknown (its String starts with bad).
func enumNames(name func(int) string, bad string) []string {
	var out []string
	for i := 1; i < 256; i++ {
		s := name(i)
		if strings.HasPrefix(s, bad) {
			break
		}
		out = append(out, s)
	}
	return out
}

func optionKeys() []string {
	keys := make([]string, len(clusterOptions))
	for i, o := range clusterOptions {
		keys[i] = o.key
	}
	return keys
}

// reserved words cannot name nodes: they would make lines ambiguous.
var reserved = []string{"none", "end", "all", "any", "on", "off", "blocks", "block", "to", "victim",
	"role", "disk", "conn", "peer-disk", "within", "for", "at", "one-way", "every", "down", "from", "times"}

// nodeName checks a new node name.
func (p *parser) nodeName(l *line, t token, taken []string) {
	ok := t.text != "" && !t.quoted
	for i, c := range t.text {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')) {
			ok = false
		}
	}
	if !ok {
		l.failAt(t, fmt.Sprintf("expected a node name (a letter, then letters, digits, '-', '_' or '.'), got %q", t.text), "")
	}
	for _, r := range append(reserved, optionKeys()...) {
		if fold(t.text) == fold(r) {
			l.failAt(t, fmt.Sprintf("expected a node name, got the keyword %q", t.text), "")
		}
	}
	for _, n := range taken {
		if n == t.text {
			l.failAt(t, fmt.Sprintf("expected a node name not used yet, got %q again", t.text), "")
		}
	}
}

// cluster parses `cluster <node> <node> <option>...`.
func (l *line) cluster(head token) {
	p := l.p
	if p.haveCluster {
		l.failAt(head, fmt.Sprintf("expected one cluster line, got a second (the first is on line %d)", p.clusterLine), "")
	}
	p.haveCluster, p.clusterLine = true, head.pos.Line
	c := &p.sc.Cluster
	*c = Cluster{Pos: head.pos, DiscardNode: AnyNode}
	for range 2 {
		t := l.next("a node name")
		p.nodeName(l, t, c.Nodes)
		c.Nodes = append(c.Nodes, t.text)
	}
	// From here on the node names are known; an error in an option still
	// lets the rest of the file be checked.
	p.clusterOK = true
	seen := map[string]token{}
	var witnessTok, fencingTok token
	for !l.done() {
		key := l.next("")
		var opt *clusterOption
		for i := range clusterOptions {
			if fold(key.text) == fold(clusterOptions[i].key) && !key.quoted {
				opt = &clusterOptions[i]
			}
		}
		if opt == nil {
			l.expected(key, "a cluster option", optionKeys())
		}
		if first, dup := seen[opt.key]; dup {
			l.failAt(key, fmt.Sprintf("expected each option once, got a second %q (the first is at column %d)", key.text, first.pos.Col), "")
		}
		seen[opt.key] = key
		switch opt.key {
		case "witness":
			witnessTok = key
		case "fencing":
			fencingTok = key
		}
		opt.parse(l, c, key)
	}
	switch {
	case c.HasWitness() && c.Fencing != node.FenceWitness:
		l.failAt(witnessTok, `expected a witness only with "fencing witness": it has no other use`, "")
	case !c.HasWitness() && c.Fencing == node.FenceWitness:
		l.failAt(fencingTok, `expected "witness <name>" with "fencing witness": the policy needs a third node`, "")
	}
	l.checkTimings(seen)
}

// checkTimings applies node.Config's rules between the heartbeat timings,
// pointing at the option to change.
func (l *line) checkTimings(seen map[string]token) {
	c := l.p.sc.Cluster.WithDefaults()
	at := func(keys ...string) token {
		for _, k := range keys {
			if t, ok := seen[k]; ok {
				return t
			}
		}
		return token{pos: l.p.sc.Cluster.Pos}
	}
	switch {
	case c.Deadtime <= 2*c.Keepalive:
		l.failAt(at("deadtime", "keepalive"), fmt.Sprintf("expected deadtime (%s) to exceed 2×keepalive (%s): one lost heartbeat would declare the peer dead",
			formatDuration(c.Deadtime), formatDuration(c.Keepalive)), "")
	case c.Warntime < c.Keepalive || c.Warntime >= c.Deadtime:
		l.failAt(at("warntime", "keepalive", "deadtime"), fmt.Sprintf("expected warntime (%s) from keepalive (%s) up to, not including, deadtime (%s)",
			formatDuration(c.Warntime), formatDuration(c.Keepalive), formatDuration(c.Deadtime)), "")
	case c.Initdead < c.Deadtime:
		l.failAt(at("initdead", "deadtime"), fmt.Sprintf("expected initdead (%s) of at least deadtime (%s): boots are slower than heartbeats",
			formatDuration(c.Initdead), formatDuration(c.Deadtime)), "")
	}
}

// groupKinds are the resource kinds a group member may be.
var groupKinds = []string{"ip", "fs", "service"}

// group splits and checks the resource group, pointing at a bad member.
func (l *line) group(t token) []string {
	var out []string
	col := t.pos.Col
	if t.quoted {
		col++ // past the opening quote
	}
	rest := t.text
	for len(rest) > 0 {
		trimmed := strings.TrimLeft(rest, " \t")
		col += len(rest) - len(trimmed)
		rest = trimmed
		if rest == "" {
			break
		}
		w, _, _ := strings.Cut(strings.ReplaceAll(rest, "\t", " "), " ")
		m := token{text: w, pos: Pos{t.pos.File, t.pos.Line, col}}
		l.member(m)
		for _, o := range out {
			if o == w {
				l.failAt(m, fmt.Sprintf("expected each group member once, got %q again", w), "")
			}
		}
		out = append(out, w)
		col += len(w)
		rest = rest[len(w):]
	}
	if len(out) == 0 {
		l.expected(t, "at least one resource in the group", nil)
	}
	return out
}

// member checks one group member: ip:<address>/<prefix>, fs:<absolute
// path> or service:<name>.
func (l *line) member(m token) {
	kind, arg, ok := strings.Cut(m.text, ":")
	known := false
	for _, k := range groupKinds {
		known = known || k == kind
	}
	if !ok || !known {
		l.failAt(m, fmt.Sprintf(`expected a resource such as "ip:192.168.1.5/24", "fs:/replicated" or "service:sendmail", got %q`, m.text),
			withKind(kind, arg, ok))
	}
	switch kind {
	case "ip":
		if _, err := netip.ParsePrefix(arg); err != nil {
			l.failAt(m, fmt.Sprintf("expected an address with prefix length such as ip:192.168.1.5/24, got %q", m.text), "")
		}
	case "fs":
		if !strings.HasPrefix(arg, "/") || path.Clean(arg) != arg {
			l.failAt(m, fmt.Sprintf("expected a clean absolute mount point such as fs:/replicated, got %q", m.text), "")
		}
	case "service":
		if arg == "" {
			l.failAt(m, fmt.Sprintf("expected a service name such as service:sendmail, got %q", m.text), "")
		}
	}
}

// withKind suggests the nearest resource kind for a misspelt one.
func withKind(kind, arg string, hadColon bool) string {
	if !hadColon {
		return ""
	}
	if k := nearest(kind, groupKinds); k != "" {
		return k + ":" + arg
	}
	return ""
}
