package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// drbd.conf, DRBD 8.x syntax: statements of words ended by ';', sections
// of words followed by { ... }, '#' comments, "quoted strings", and
// include "glob"; lines (relative to the including file's directory).

type drbdStmt struct {
	words   []string
	isBlock bool
	block   []*drbdStmt
	where   string // file:line
}

type drbdToken struct {
	text   string
	quoted bool
	line   int
}

func tokenizeDrbd(name string, data []byte) ([]drbdToken, error) {
	var out []drbdToken
	s := string(data)
	line := 1
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{' || c == '}' || c == ';':
			out = append(out, drbdToken{text: string(c), line: line})
			i++
		case c == '"':
			start := line
			var b strings.Builder
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				if s[i] == '\n' {
					line++
				}
				b.WriteByte(s[i])
				i++
			}
			if i >= len(s) {
				return nil, fmt.Errorf("%s:%d: a string is not closed", name, start)
			}
			i++
			out = append(out, drbdToken{text: b.String(), quoted: true, line: start})
		default:
			start := i
			for i < len(s) && !strings.ContainsRune(" \t\r\n{};\"#", rune(s[i])) {
				i++
			}
			out = append(out, drbdToken{text: s[start:i], line: line})
		}
	}
	return out, nil
}

// parseDrbdFile reads a file and, recursively, what it includes.
func parseDrbdFile(name string, depth int) ([]*drbdStmt, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%s: includes nest too deep (a loop?)", name)
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	toks, err := tokenizeDrbd(name, data)
	if err != nil {
		return nil, err
	}
	p := &drbdParser{name: name, toks: toks}
	stmts, err := p.block(false)
	if err != nil {
		return nil, err
	}
	return expandIncludes(name, stmts, depth)
}

func expandIncludes(name string, stmts []*drbdStmt, depth int) ([]*drbdStmt, error) {
	var out []*drbdStmt
	for _, st := range stmts {
		if st.isBlock {
			inner, err := expandIncludes(name, st.block, depth)
			if err != nil {
				return nil, err
			}
			st.block = inner
		}
		if st.isBlock || len(st.words) != 2 || st.words[0] != "include" {
			out = append(out, st)
			continue
		}
		pat := st.words[1]
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(filepath.Dir(name), pat)
		}
		matches, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("%s: include %q: %v", st.where, st.words[1], err)
		}
		sort.Strings(matches)
		for _, m := range matches {
			inc, err := parseDrbdFile(m, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, inc...)
		}
	}
	return out, nil
}

type drbdParser struct {
	name string
	toks []drbdToken
	i    int
}

func (p *drbdParser) block(inner bool) ([]*drbdStmt, error) {
	var out []*drbdStmt
	var cur *drbdStmt
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		p.i++
		if t.quoted {
			if cur == nil {
				cur = &drbdStmt{where: fmt.Sprintf("%s:%d", p.name, t.line)}
			}
			cur.words = append(cur.words, t.text)
			continue
		}
		switch t.text {
		case ";":
			if cur != nil {
				out = append(out, cur)
				cur = nil
			}
		case "{":
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: a section without a name", p.name, t.line)
			}
			sub, err := p.block(true)
			if err != nil {
				return nil, err
			}
			cur.isBlock, cur.block = true, sub
			out = append(out, cur)
			cur = nil
		case "}":
			if !inner {
				return nil, fmt.Errorf("%s:%d: a '}' closes nothing", p.name, t.line)
			}
			if cur != nil {
				return nil, fmt.Errorf("%s: %q lacks its ';'", cur.where, strings.Join(cur.words, " "))
			}
			return out, nil
		default:
			if cur == nil {
				cur = &drbdStmt{where: fmt.Sprintf("%s:%d", p.name, t.line)}
			}
			cur.words = append(cur.words, t.text)
		}
	}
	if inner {
		return nil, fmt.Errorf("%s: a section is not closed with '}'", p.name)
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: %q lacks its ';'", cur.where, strings.Join(cur.words, " "))
	}
	return out, nil
}

// drbdOpt is one option of a resource after merging common into it.
type drbdOpt struct {
	args  []string
	where string
}

type drbdResource struct {
	name  string
	where string
	opts  map[string]drbdOpt // "net.after-sb-0pri", "protocol"
	order []string           // option keys in the order first seen
	hosts []*drbdHost
	repl  section
}

type drbdHost struct {
	name, where            string
	device, disk, metaDisk string
	address, host          string
	addressAt              string
	nbd                    string
}

func (r *drbdResource) setOpt(key string, st *drbdStmt) {
	if _, ok := r.opts[key]; !ok {
		r.order = append(r.order, key)
	}
	r.opts[key] = drbdOpt{args: st.words[1:], where: st.where}
}

// options collects a section's options (net, disk, syncer, ...) under
// "section.option"; top-level ones (protocol) keep their name.
func (r *drbdResource) options(prefix string, stmts []*drbdStmt) {
	for _, st := range stmts {
		if st.isBlock {
			switch st.words[0] {
			case "net", "disk", "syncer", "startup", "handlers", "options", "proxy":
				r.options(st.words[0]+".", st.block)
			}
			continue
		}
		r.setOpt(prefix+st.words[0], st)
	}
}

var (
	drbdMinorRE = regexp.MustCompile(`^/dev/drbd([0-9]+)$`)
	drbdIndexRE = regexp.MustCompile(`^(.*?)\s*\[\s*([0-9]+)\s*\]$`)
)

// readDrbd parses drbd.conf and converts the resource the group uses.
func (im *importer) readDrbd(name string) error {
	stmts, err := parseDrbdFile(name, 0)
	if err != nil {
		return err
	}
	var common []*drbdStmt
	var resources []*drbdStmt
	for _, st := range stmts {
		switch {
		case st.isBlock && st.words[0] == "common":
			common = append(common, st.block...)
		case st.isBlock && st.words[0] == "resource" && len(st.words) == 2:
			resources = append(resources, st)
		case st.isBlock && st.words[0] == "global":
			for _, g := range st.block {
				im.note(g.where, "global %s: no equivalent, skipped", g.words[0])
			}
		default:
			im.note(st.where, "%s: not understood at the top level of drbd.conf, skipped", st.words[0])
		}
	}
	if len(resources) == 0 {
		return fmt.Errorf("import: %s: no resource sections", name)
	}
	var res []*drbdResource
	for _, st := range resources {
		r := &drbdResource{name: st.words[1], where: st.where, opts: map[string]drbdOpt{}}
		r.options("", common)
		im.readDrbdResource(r, st.block)
		res = append(res, r)
	}
	r := im.pickResource(res)
	im.drbd = r
	im.cluster.set("name", quote(r.name), "the DRBD resource's name")
	if len(im.nodes) == 0 {
		for _, h := range r.hosts {
			im.nodes = append(im.nodes, h.name)
		}
	}
	im.drbdNodes = map[string]*drbdHost{}
	for _, h := range r.hosts {
		if !contains2(im.nodes, h.name) {
			im.note(h.where, "on %s: not one of ha.cf's nodes (%s); its disk and address were not imported (the names must be the same, as uname -n says)", h.name, strings.Join(im.nodes, ", "))
			continue
		}
		im.drbdNodes[h.name] = h
		if im.fsDevice != "" && h.device != "" && im.fsDevice != h.device {
			im.note(im.fsWhere, "Filesystem mounts %s, but on %s the resource's device is %s; the fs resource mounts the replicated device", im.fsDevice, h.name, h.device)
		}
		if im.diskFrom == "datadisk" && im.diskDev != "" && h.device != "" && im.diskDev != h.device {
			im.note(h.where, "datadisk names %s, but on %s the resource's device is %s", im.diskDev, h.name, h.device)
		}
	}
	for _, n := range im.nodes {
		if im.drbdNodes[n] == nil {
			im.note(r.where, "resource %s has no on %s section; that node's disk and address must be added by hand", r.name, n)
		}
	}
	im.convertOptions(r)
	return nil
}

// pickResource chooses the resource haresources names, else the first.
func (im *importer) pickResource(res []*drbdResource) *drbdResource {
	pick := res[0]
	for _, r := range res {
		switch {
		case im.diskFrom == "drbddisk" && im.diskDev == r.name:
			pick = r
		case im.diskFrom == "datadisk" || im.fsDevice != "":
			for _, h := range r.hosts {
				if h.device != "" && (h.device == im.diskDev || h.device == im.fsDevice) {
					pick = r
				}
			}
		}
	}
	for _, r := range res {
		if r != pick {
			im.note(r.where, "resource %s: Tandem replicates one disk per cluster and the group uses %s; not imported", r.name, pick.name)
		}
	}
	return pick
}

func (im *importer) readDrbdResource(r *drbdResource, stmts []*drbdStmt) {
	shared := &drbdHost{} // device, disk, meta-disk given for all hosts (8.4)
	var hosts []*drbdStmt
	for _, st := range stmts {
		switch {
		case st.isBlock && st.words[0] == "on" && len(st.words) == 2:
			hosts = append(hosts, st)
		case st.isBlock && (st.words[0] == "floating" || st.words[0] == "stacked-on-top-of"):
			im.note(st.where, "%s sections: not supported (Tandem's two nodes are named by on sections); skipped", st.words[0])
		case st.isBlock && st.words[0] == "volume":
			im.hostKeys(shared, st.block, st.where)
		case st.isBlock:
			r.options(st.words[0]+".", st.block)
		case st.words[0] == "device" || st.words[0] == "disk" || st.words[0] == "meta-disk" || st.words[0] == "flexible-meta-disk":
			im.hostKeys(shared, []*drbdStmt{st}, st.where)
		default:
			r.setOpt(st.words[0], st)
		}
	}
	for _, st := range hosts {
		h := &drbdHost{name: st.words[1], where: st.where, device: shared.device, disk: shared.disk, metaDisk: shared.metaDisk}
		volumes := 0
		for _, sub := range st.block {
			if sub.isBlock && sub.words[0] == "volume" {
				volumes++
				if volumes > 1 {
					im.note(sub.where, "volume %s: Tandem replicates one volume; only the first is imported", strings.Join(sub.words[1:], " "))
					continue
				}
				im.hostKeys(h, sub.block, sub.where)
				continue
			}
			im.hostKeys(h, []*drbdStmt{sub}, sub.where)
		}
		if m := drbdMinorRE.FindStringSubmatch(h.device); m != nil {
			h.nbd = "/dev/nbd" + m[1]
		}
		r.hosts = append(r.hosts, h)
	}
}

// hostKeys reads device, disk, meta-disk and address statements.
func (im *importer) hostKeys(h *drbdHost, stmts []*drbdStmt, where string) {
	for _, st := range stmts {
		if st.isBlock || len(st.words) < 2 {
			if !st.isBlock {
				im.note(st.where, "%s has no value; skipped", st.words[0])
			}
			continue
		}
		args := st.words[1:]
		switch st.words[0] {
		case "device":
			// "/dev/drbd0", "/dev/drbd0 minor 0", "minor 0"
			if args[0] == "minor" && len(args) > 1 {
				h.device = "/dev/drbd" + args[1]
			} else {
				h.device = args[0]
				if len(args) > 2 && args[1] == "minor" {
					h.device = "/dev/drbd" + args[2]
				}
			}
		case "disk":
			if args[0] == "none" {
				im.note(st.where, "disk none (diskless): a Tandem data node has a disk; write it by hand")
				continue
			}
			h.disk = args[0]
		case "meta-disk", "flexible-meta-disk":
			v := strings.Join(args, " ")
			if v == "internal" {
				h.metaDisk = "internal"
				continue
			}
			if m := drbdIndexRE.FindStringSubmatch(v); m != nil {
				im.note(st.where, "meta-disk %s: indexed external metadata has no equivalent; Tandem's external metadata starts at offset 0 of %s (give it a device of its own, and run create-md)", v, m[1])
				v = m[1]
			}
			h.metaDisk = v
		case "address":
			a := args[len(args)-1]
			if len(args) > 1 && args[0] != "ipv4" && args[0] != "ipv6" {
				im.note(st.where, "address family %s: not supported; the address was imported as plain TCP", args[0])
			}
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				im.note(st.where, "address %s: not host:port; skipped", a)
				continue
			}
			h.address, h.host, h.addressAt = a, host, st.where
		default:
			im.note(st.where, "%s in an on section: no equivalent, skipped", st.words[0])
		}
	}
}

// drbdBytes reads a DRBD number with an optional unit suffix (s = 512-byte
// sectors, k, m, g, t binary); def is the unit of a bare number.
func drbdBytes(s string, def byte) (uint64, bool) {
	unit := def
	if n := len(s); n > 0 && strings.ContainsRune("sSkKmMgGtT", rune(s[n-1])) {
		unit, s = s[n-1]|0x20, s[:n-1]
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false
	}
	shift := map[byte]uint{'s': 9, 'k': 10, 'm': 20, 'g': 30, 't': 40}[unit]
	return v << shift, true
}

// convertOptions maps the resource's options onto [replication].
func (im *importer) convertOptions(r *drbdResource) {
	s := section{header: "[replication]", comment: "from drbd.conf resource " + r.name}
	one := func(key string) (string, string, bool) {
		o, ok := r.opts[key]
		if !ok || len(o.args) == 0 {
			return "", "", false
		}
		return o.args[0], o.where, true
	}
	// 8.3 says protocol at the resource's top, 8.4 in net.
	for _, k := range []string{"protocol", "net.protocol"} {
		if v, _, ok := one(k); ok {
			s.set("protocol", quote(strings.ToUpper(v)), "")
		}
	}
	for _, k := range []string{"0", "1", "2"} {
		v, where, ok := one("net.after-sb-" + k + "pri")
		if !ok {
			continue
		}
		switch {
		case k == "2" && v != "disconnect",
			k == "1" && !contains2(sb1Choices, v),
			k == "0" && !contains2(sb0Choices[:5], v) && !strings.HasPrefix(v, "discard-node-"):
			im.note(where, "after-sb-%spri %s: not offered (Tandem never discards a primary's data on its own); left at disconnect", k, v)
		default:
			s.set("after_sb_"+k+"pri", quote(v), "")
		}
	}
	pingInt := ""
	if v, where, ok := one("net.ping-int"); ok {
		if _, err := strconv.Atoi(v); err == nil {
			pingInt = v
			s.set("ping_interval", quote(v+"s"), "ping-int")
		} else {
			im.note(where, "ping-int %s: not a number of seconds; skipped", v)
		}
	}
	if v, where, ok := one("net.timeout"); ok {
		tenths, err := strconv.Atoi(v)
		pi, _ := strconv.Atoi(pingInt)
		if pingInt == "" {
			pi = 1
		}
		switch {
		case err != nil:
			im.note(where, "timeout %s: not a number of tenths of a second; skipped", v)
		case tenths <= pi*10:
			im.note(where, "timeout %s (%.1fs): Tandem's ping_timeout must exceed ping_interval (%ds); left at its default, 3× ping_interval", v, float64(tenths)/10, pi)
		default:
			s.set("ping_timeout", quote((time.Duration(tenths) * 100 * time.Millisecond).String()), "timeout "+v)
		}
	}
	for _, k := range []string{"syncer.rate", "disk.resync-rate"} {
		if v, where, ok := one(k); ok {
			if n, ok := drbdBytes(v, 'k'); ok && n >= 4096 {
				s.set("resync_rate", quote(formatBytes(n)), strings.TrimPrefix(strings.TrimPrefix(k, "syncer."), "disk.")+" "+v)
			} else {
				im.note(where, "rate %s: not a rate of at least 4K; skipped", v)
			}
		}
	}
	for _, k := range []string{"syncer.al-extents", "disk.al-extents"} {
		if v, where, ok := one(k); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 65534 {
				s.set("al_extents", v, "")
			} else {
				im.note(where, "al-extents %s: out of range; skipped", v)
			}
		}
	}
	if v, where, ok := one("disk.size"); ok {
		if n, ok := drbdBytes(v, 's'); ok && n > 0 && n%4096 == 0 {
			s.set("size", quote(formatBytes(n)), "size "+v)
		} else {
			im.note(where, "size %s: not a whole number of 4 KiB blocks; left out (the whole disk is used)", v)
		}
	}
	if v, where, ok := one("disk.on-io-error"); ok {
		switch v {
		case "detach", "pass_on":
			s.set("on_io_error", quote(v), "")
		default:
			im.note(where, "on-io-error %s: handlers are not run; Tandem detaches", v)
			s.set("on_io_error", quote("detach"), "")
		}
	}
	for _, k := range []string{"disk.fencing", "net.fencing"} {
		if v, where, ok := one(k); ok && v != "dont-care" {
			im.note(where, "fencing %s: needs fence agents, which were not imported; left at dont-care — add [[fence]] sections and fencing = \"stonith\" in [cluster], and Tandem then suspends I/O as resource-and-stonith does", v)
		}
	}
	for _, k := range []string{"net.csums-alg", "syncer.csums-alg"} {
		if v, where, ok := one(k); ok {
			s.set("csum_resync", "true", "csums-alg "+v)
			if v != "crc32c" {
				im.note(where, "csums-alg %s: Tandem's checksum-based resync uses its own digest", v)
			}
		}
	}
	if v, where, ok := one("net.data-integrity-alg"); ok {
		s.set("data_integrity", quote("crc32c"), "data-integrity-alg "+v)
		if v != "crc32c" {
			im.note(where, "data-integrity-alg %s: Tandem offers crc32c", v)
		}
	}
	if v, where, ok := one("net.on-congestion"); ok {
		switch v {
		case "block":
			s.set("on_congestion", quote(v), "")
		case "pull-ahead":
			if p, _ := s.get("protocol"); p != `"A"` {
				if p == "" {
					p = "C, the default"
				}
				im.note(where, "on-congestion pull-ahead: only meaningful with protocol A (this resource uses %s); left at block", strings.Trim(p, `"`))
			} else {
				s.set("on_congestion", quote(v), "")
			}
		default:
			im.note(where, "on-congestion %s: not offered (block or pull-ahead); left at block", v)
		}
	}
	if _, where, ok := one("net.shared-secret"); ok {
		if im.key == "" {
			im.key, im.keyFrom = strings.Join(r.opts["net.shared-secret"].args, " "), where
			im.note(where, "shared-secret is used as the cluster key (it authenticates heartbeats and the replication link)")
		} else {
			im.note(where, "shared-secret: the replication link is authenticated with the cluster key from authkeys")
		}
	}
	done := map[string]bool{"protocol": true, "net.protocol": true, "net.after-sb-0pri": true, "net.after-sb-1pri": true, "net.after-sb-2pri": true,
		"net.ping-int": true, "net.timeout": true, "syncer.rate": true, "disk.resync-rate": true, "syncer.al-extents": true,
		"disk.al-extents": true, "disk.size": true, "disk.on-io-error": true, "disk.fencing": true, "net.fencing": true,
		"net.csums-alg": true, "syncer.csums-alg": true, "net.data-integrity-alg": true, "net.on-congestion": true,
		"net.shared-secret": true, "net.cram-hmac-alg": true}
	for _, k := range r.order {
		if done[k] {
			continue
		}
		o := r.opts[k]
		im.note(o.where, "%s: %s", strings.ReplaceAll(k, ".", " "), drbdWhy(k))
	}
	r.repl = s
}

// drbdWhy says why an option was not carried over.
func drbdWhy(key string) string {
	section, opt, _ := strings.Cut(key, ".")
	switch {
	case opt == "allow-two-primaries":
		return "dual-primary is not supported; skipped"
	case strings.Contains(opt, "flush") || strings.Contains(opt, "barrier") || opt == "no-disk-drain":
		return "Tandem always flushes and orders writes; skipped"
	case opt == "verify-alg":
		return "online verify uses Tandem's own checksums; skipped"
	case opt == "fence-peer" || opt == "outdate-peer":
		return "handlers are not run; to fence with this script add [[fence]] kind = \"exec\" command = \"...\" and fencing = \"stonith\" in [cluster]"
	case section == "handlers":
		return "handlers are not run; Tandem reports the event in its log and event stream instead"
	case section == "startup":
		return "start-up waits are decided by membership (initdead); skipped"
	case opt == "ping-timeout":
		return "the link's timeout is ping_timeout; skipped"
	}
	return "no equivalent (tuning); skipped"
}
