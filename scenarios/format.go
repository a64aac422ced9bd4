package scenarios

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"tandem/internal/repl"
)

// Format prints s as canonical scenario text: the header comment, the
// cluster line (continued over several lines, options in a fixed order,
// defaults left out), then steps and expectations one per line with their
// timing aligned. Parse reads it back to the same Scenario, positions aside,
// provided each expectation's Anchor is 0 or the time of a step (as Parse
// leaves it).
func Format(s *Scenario) []byte {
	var b strings.Builder
	if s.Doc != "" {
		for _, line := range strings.Split(s.Doc, "\n") {
			if line == "" {
				b.WriteString("#\n")
			} else {
				b.WriteString("# " + line + "\n")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString(formatCluster(&s.Cluster))
	b.WriteString("\n")

	type row struct{ prefix, rest string }
	var rows []row
	ei := 0
	flush := func(upTo func(e *Expect) bool) {
		for ; ei < len(s.Expects) && upTo(&s.Expects[ei]); ei++ {
			e := &s.Expects[ei]
			prefix := "expect"
			switch e.When {
			case AtTime:
				prefix += " at " + formatDuration(e.T)
			case AtEnd:
				prefix += " at end"
			}
			rows = append(rows, row{prefix, formatCond(e, s.Cluster.Nodes)})
		}
	}
	for i := range s.Steps {
		st := &s.Steps[i]
		// An expectation goes after every step at or before its anchor.
		flush(func(e *Expect) bool { return e.Anchor < st.At })
		prefix := "at " + formatDuration(st.At)
		if st.For > 0 {
			prefix += " for " + formatDuration(st.For)
		}
		rows = append(rows, row{prefix, formatStep(st, &s.Cluster)})
	}
	flush(func(*Expect) bool { return true })

	width := 0
	for _, r := range rows {
		width = max(width, len(r.prefix))
	}
	if len(rows) > 0 {
		b.WriteString("\n")
	}
	for _, r := range rows {
		line := r.prefix + strings.Repeat(" ", width+2-len(r.prefix)) + r.rest
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	return []byte(b.String())
}

// formatCluster prints the cluster line, one group of options per line.
func formatCluster(c *Cluster) string {
	head := "cluster " + strings.Join(c.Nodes[:min(2, len(c.Nodes))], " ")
	if c.HasWitness() {
		head += " witness " + c.Nodes[2]
	}
	var groups [][]string
	add := func(g *[]string, key, value string) { *g = append(*g, key+" "+value) }
	var basics []string
	if c.Protocol != 0 {
		add(&basics, "protocol", c.Protocol.String())
	}
	if c.Fencing != 0 {
		add(&basics, "fencing", c.Fencing.String())
	}
	add(&basics, "auto_failback", map[bool]string{true: "on", false: "off"}[c.AutoFailback])
	if c.NoSerial {
		add(&basics, "serial", "off")
	}
	groups = append(groups, basics)

	var timings, fencing []string
	for _, o := range []struct {
		g   *[]string
		key string
		d   time.Duration
	}{
		{&timings, "keepalive", c.Keepalive}, {&timings, "warntime", c.Warntime},
		{&timings, "deadtime", c.Deadtime}, {&timings, "initdead", c.Initdead},
		{&fencing, "fence-delay", c.FenceDelay}, {&fencing, "fence-timeout", c.FenceTimeout},
		{&fencing, "fence-time", c.FenceTime},
	} {
		if o.d != 0 {
			add(o.g, o.key, formatDuration(o.d))
		}
	}
	groups = append(groups, timings, fencing)

	var policies []string
	if c.AfterSB0 != 0 {
		p := c.AfterSB0.String()
		if c.AfterSB0 == repl.DiscardNode && c.DiscardNode >= 0 && c.DiscardNode < len(c.Nodes) {
			p = "discard-node-" + c.Nodes[c.DiscardNode]
		}
		add(&policies, "after-sb-0pri", p)
	}
	if c.AfterSB1 != 0 {
		add(&policies, "after-sb-1pri", c.AfterSB1.String())
	}
	if c.AfterSB2 != 0 {
		add(&policies, "after-sb-2pri", c.AfterSB2.String())
	}
	if c.OnIOError != 0 {
		add(&policies, "on-io-error", c.OnIOError.String())
	}
	groups = append(groups, policies)

	var disk []string
	if c.DiskBytes != 0 {
		add(&disk, "disk", formatSize(c.DiskBytes))
	}
	if c.ResyncRate != 0 {
		add(&disk, "resync-rate", formatSize(c.ResyncRate)+"/s")
	}
	groups = append(groups, disk)
	if len(c.Group) > 0 {
		groups = append(groups, []string{`group "` + strings.Join(c.Group, " ") + `"`})
	}

	var b strings.Builder
	b.WriteString(head)
	for _, g := range groups {
		if len(g) > 0 {
			b.WriteString(" \\\n        " + strings.Join(g, " "))
		}
	}
	return b.String()
}

// formatStep prints a step's verb and arguments.
func formatStep(s *Step, c *Cluster) string {
	name := func(i int) string {
		if i >= 0 && i < len(c.Nodes) {
			return c.Nodes[i]
		}
		return "?" // not a node: Format of a hand-built Scenario with a bad index
	}
	w := []string{s.Kind.String()}
	arg := func(a ...string) { w = append(w, a...) }
	pair := func() {
		arg(name(s.Node), name(s.Peer))
		if s.OneWay {
			arg("one-way")
		}
	}
	switch k := s.Kind; {
	case k == Write || k == Read:
		switch {
		case s.Blocks == 1:
			arg("1 block")
		case s.Blocks > 0:
			arg(strconv.FormatUint(s.Blocks, 10) + " blocks")
		default:
			arg("blocks", formatRange(s.Range))
		}
		if s.Node >= 0 {
			arg("on", name(s.Node))
		}
	case k == Flush:
		if s.Node >= 0 {
			arg("on", name(s.Node))
		}
	case k == Partition:
		pair()
	case k == Heal:
		if s.Node >= 0 {
			arg(name(s.Node), name(s.Peer))
		}
	case k == Drop || k == Duplicate:
		arg(strconv.FormatFloat(s.Percent, 'f', -1, 64) + "%")
		pair()
	case k == Delay:
		arg(formatDuration(s.Delay))
		pair()
	case k == Flap:
		arg(name(s.Node), name(s.Peer), "every", formatDuration(s.Every), "down", formatDuration(s.Down))
	case k == CutSerial || k == RestoreSerial || k == End:
	case k == ReadErrors || k == WriteErrors || k == LoseWrites:
		arg(name(s.Node))
		if s.Range != (Range{}) {
			arg("blocks", formatRange(s.Range))
		}
	case k == Corrupt:
		arg(name(s.Node), "blocks", formatRange(s.Range))
	case k == DiskFull:
		arg(name(s.Node))
		if s.Range.First > 0 {
			arg("from block", strconv.FormatUint(s.Range.First, 10))
		}
	case k == ClockJump:
		d := formatDuration(s.Delta)
		if s.Delta > 0 {
			d = "+" + d
		}
		arg(name(s.Node), d)
	case k == ClockDrift:
		arg(name(s.Node), strconv.FormatInt(s.PPM, 10)+"ppm")
	case k == FenceAgent:
		arg(name(s.Node), s.Mode)
	case k == ResourceFail:
		res := "?"
		if s.Resource >= 0 && s.Resource < len(c.Group) {
			res = c.Group[s.Resource]
		}
		arg(name(s.Node), res, s.Mode)
		if s.Count != 1 {
			arg(strconv.Itoa(s.Count), "times")
		}
	default: // one node: power, disk, operator commands
		arg(name(s.Node))
		if s.Force {
			arg("--force")
		}
		if s.DiscardMyData {
			arg("--discard-my-data")
		}
	}
	return strings.Join(w, " ")
}

func formatRange(r Range) string {
	first := strconv.FormatUint(r.First, 10)
	switch r.Count {
	case 0:
		return first + "-"
	case 1:
		return first
	}
	return first + "-" + strconv.FormatUint(r.First+r.Count-1, 10)
}

// formatCond prints a condition and its window.
func formatCond(e *Expect, nodes []string) string {
	name := func(i int) string {
		if i >= 0 && i < len(nodes) {
			return nodes[i]
		}
		return "?"
	}
	w := []string{e.Cond.String()}
	switch e.Cond {
	case CondPrimary:
		if e.Node < 0 {
			w = append(w, "none")
		} else {
			w = append(w, name(e.Node))
		}
	case CondSplitBrainResolved:
		if e.Node >= 0 {
			w = append(w, "victim", name(e.Node))
		}
	case CondFailover:
		if e.Node >= 0 {
			w = append(w, "to", name(e.Node))
		}
	case CondState:
		w = append(w, name(e.Node))
		if e.Role != 0 {
			w = append(w, "role", e.Role.String())
		}
		if e.Disk != 0 {
			w = append(w, "disk", e.Disk.String())
		}
		if e.Conn != 0 {
			w = append(w, "conn", e.Conn.String())
		}
		if e.PeerDisk != 0 {
			w = append(w, "peer-disk", e.PeerDisk.String())
		}
	case CondMeasure:
		v := strconv.FormatUint(e.Value, 10)
		if e.Measure == ResyncBytes {
			v = formatSize(e.Value)
		}
		w = []string{e.Measure.String(), e.Op.String(), v}
	}
	switch e.When {
	case Within:
		w = append(w, "within", formatDuration(e.D))
	case For:
		w = append(w, "for", formatDuration(e.D))
	}
	return strings.Join(w, " ")
}

// String prints the step as one scenario line, e.g. "at 5s crash server1",
// with node indices for names (Format has the names).
func (s Step) String() string {
	c := &Cluster{Nodes: []string{"#0", "#1", "#2"}}
	prefix := "at " + formatDuration(s.At)
	if s.For > 0 {
		prefix += " for " + formatDuration(s.For)
	}
	return fmt.Sprintf("%s %s", prefix, formatStep(&s, c))
}
