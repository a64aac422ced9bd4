package config

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"tandem/internal/node"
	"tandem/internal/proto"
)

// DefaultReplicationPort is DRBD's customary port for the first resource.
const DefaultReplicationPort = 7788

func (b *builder) readNodes(raw []rawNode) {
	c := b.c
	b.byName = map[string]*pnode{}
	var data, witnesses []*pnode
	// Allocated once: byName points into it.
	b.nodes = make([]pnode, len(raw))
	for i := range raw {
		r := &raw[i]
		n := &b.nodes[i]
		n.path, n.idx = fmt.Sprintf("node[%d]", i), i
		if !r.Name.set {
			c.fail(n.path+".name", "node %d has no name; write name = \"server%d\" (its hostname)", i+1, i+1)
		} else if s, ok := c.str(r.Name, n.path+".name"); ok {
			if !nameRE.MatchString(s) {
				c.fail(n.path+".name", "%q is not a node name (letters, digits, '.', '_', '-'); write name = %q", s, sanitizeName(s))
			} else if prev, dup := b.byName[s]; dup {
				c.fail(n.path+".name", "two nodes are named %q (the other at line %d); give each node its own name", s, c.pos.lineOf(prev.path))
			} else {
				n.name = s
			}
		}
		if w, ok := c.boolean(r.Witness, n.path+".witness"); ok {
			n.witness = w
		}
		if n.name != "" {
			b.byName[n.name] = n
		}
		if n.witness {
			witnesses = append(witnesses, n)
		} else {
			data = append(data, n)
		}
	}
	switch {
	case len(raw) == 0:
		c.fail("node", "no [[node]] sections; add one per machine: [[node]] name = \"server1\" and [[node]] name = \"server2\"")
	case len(data) != 2:
		path := "node"
		if len(data) > 2 {
			path = data[2].path
		}
		c.fail(path, "a cluster has exactly 2 data nodes, this file has %d; write one [[node]] per server (and at most one more with witness = true)", len(data))
	}
	if len(witnesses) > 1 {
		c.fail(witnesses[1].path+".witness", "only one node can be the witness; remove witness = true from all but one")
	}
	// Ids: the data nodes in file order, then the witness (the core wants
	// it as node 2). Nodes beyond those were reported above; they get no
	// id, so that nothing else is reported about them.
	for i := range b.nodes {
		b.nodes[i].id = proto.NoNode
	}
	order := append(append([]*pnode(nil), data[:min(2, len(data))]...), witnesses[:min(1, len(witnesses))]...)
	for id, n := range order {
		n.id = proto.NodeID(id)
		b.names = append(b.names, n.name)
	}
	for i := range raw {
		if b.nodes[i].id != proto.NoNode {
			b.readNodeKeys(&raw[i], &b.nodes[i])
		}
	}
}

func (b *builder) readNodeKeys(r *rawNode, n *pnode) {
	c := b.c
	p := n.path + "."
	if s, ok := c.word(r.Address, p+"address", "host:port address", "10.0.0.1:7788"); ok {
		if a, err := hostPort(s, DefaultReplicationPort); err != nil {
			example := "10.0.0.1:7788"
			if h, _, err := net.SplitHostPort(s); err == nil && h != "" {
				example = net.JoinHostPort(h, "7788")
			}
			c.fail(p+"address", "%v; write address = %q", err, example)
		} else {
			n.address = a
		}
	}
	if n.witness {
		for _, k := range []struct {
			v   value
			key string
		}{{r.Disk, "disk"}, {r.MetaDisk, "meta_disk"}, {r.NBDSocket, "nbd_socket"}, {r.NBDDevice, "nbd_device"}} {
			if k.v.set {
				c.fail(p+k.key, "%s is a witness and has no disk; remove %s", n.name, k.key)
			}
		}
	} else {
		n.disk, _ = c.absPath(r.Disk, p+"disk", "/dev/sdb1")
		if s, ok := c.word(r.MetaDisk, p+"meta_disk", "metadata location", "internal"); ok && s != "internal" {
			if !strings.HasPrefix(s, "/") {
				c.fail(p+"meta_disk", "%q is neither \"internal\" nor an absolute path; write meta_disk = \"internal\" or meta_disk = \"/dev/sdc1\"", s)
			} else {
				n.metaDisk = s
			}
		}
		n.nbdSocket, _ = c.absPath(r.NBDSocket, p+"nbd_socket", "/run/tandem/nbd.sock")
		if s, ok := c.absPath(r.NBDDevice, p+"nbd_device", "/dev/nbd0"); ok {
			if !regexpNBD.MatchString(s) {
				c.fail(p+"nbd_device", "%q is not an NBD device; write nbd_device = \"/dev/nbd0\"", s)
			} else {
				n.nbdDevice = s
			}
		}
	}
	n.control, _ = c.absPath(r.ControlSocket, p+"control_socket", "/run/tandem/tandem.sock")
	if s, ok := c.word(r.MetricsAddress, p+"metrics_address", "host:port address", "127.0.0.1:9640"); ok {
		if _, port, err := net.SplitHostPort(s); err != nil || !validPort(port) {
			c.fail(p+"metrics_address", "%q is not host:port; write metrics_address = \"127.0.0.1:9640\" (or \":9640\" for every address)", s)
		} else {
			n.metrics = s
		}
	}
}

var regexpNBD = regexp.MustCompile(`^/dev/nbd[0-9]+$`)

func sanitizeName(s string) string {
	out := regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(s, "-")
	out = strings.TrimLeft(out, "._-")
	if out == "" {
		return "server1"
	}
	return out
}

// hostPort checks "host", "host:port" or "[v6]:port" and adds def as the
// port when there is none (def 0: a port is required).
func hostPort(s string, def int) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a plain host, or an IPv6 address without brackets.
		if def == 0 || strings.Contains(s, ":") && net.ParseIP(s) == nil {
			return "", fmt.Errorf("%q is not host:port", s)
		}
		host, port = s, strconv.Itoa(def)
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host", s)
	}
	if strings.ContainsAny(host, " /") {
		return "", fmt.Errorf("%q has no valid host", s)
	}
	if !validPort(port) {
		return "", fmt.Errorf("%q has no valid port (1..65535)", s)
	}
	return net.JoinHostPort(host, port), nil
}

func validPort(s string) bool {
	p, err := strconv.Atoi(s)
	return err == nil && p >= 1 && p <= 65535
}

func (b *builder) readCluster(r *rawCluster) {
	c := b.c
	b.cluster = "tandem"
	if s, ok := c.word(r.Name, "cluster.name", "cluster name", "mail"); ok {
		if !nameRE.MatchString(s) {
			c.fail("cluster.name", "%q is not a name (letters, digits, '.', '_', '-'); write name = %q", s, sanitizeName(s))
		} else {
			b.cluster = s
		}
	}
	cfg := &b.core
	cfg.Names = b.names
	cfg.Keepalive, _ = c.dur(r.Keepalive, "cluster.keepalive", false)
	cfg.Warntime, _ = c.dur(r.Warntime, "cluster.warntime", false)
	cfg.Deadtime, _ = c.dur(r.Deadtime, "cluster.deadtime", false)
	cfg.Initdead, _ = c.dur(r.Initdead, "cluster.initdead", false)
	cfg.FenceDelay, _ = c.dur(r.FenceDelay, "cluster.fence_delay", false)
	cfg.FenceTimeout, _ = c.dur(r.FenceTimeout, "cluster.fence_timeout", false)
	cfg.FenceRetry, _ = c.dur(r.FenceRetry, "cluster.fence_retry", false)
	cfg.AutoFailback, _ = c.boolean(r.AutoFailback, "cluster.auto_failback")
	if n, ok := c.integer(r.ClockDriftPPM, "cluster.clock_drift_ppm", 1, 100000); ok {
		cfg.ClockDriftPPM = n
	}
	if n, ok := c.integer(r.MigrationThreshold, "cluster.migration_threshold", 1, 1000000); ok {
		cfg.MigrationThreshold = int(n)
	}
	if s, ok := c.oneOf(r.Fencing, "cluster.fencing", "none", "stonith", "witness"); ok {
		cfg.Fencing, _ = node.ParseFencing(s)
	}
	cfg.Preferred = 0
	if s, ok := c.str(r.Preferred, "cluster.preferred"); ok {
		n := b.byName[s]
		switch {
		case n == nil:
			c.fail("cluster.preferred", "%q is not a node of this cluster; write preferred = %q", s, nearest(s, b.dataNames(), b.firstName()))
		case n.witness:
			c.fail("cluster.preferred", "%q is the witness, which never runs the group; write preferred = %q", s, b.firstName())
		default:
			cfg.Preferred = n.id
		}
	}
	*cfg = cfg.WithDefaults()
	b.readKey(r)
	b.timingChecks(r)
}

// byID is the node with id (its name may be empty if it was refused).
func (b *builder) byID(id proto.NodeID) *pnode {
	for i := range b.nodes {
		if b.nodes[i].id == id {
			return &b.nodes[i]
		}
	}
	return &pnode{id: id}
}

func (b *builder) dataNames() []string {
	var out []string
	for _, n := range b.nodes {
		if !n.witness && n.name != "" && n.id != proto.NoNode {
			out = append(out, n.name)
		}
	}
	return out
}

func (b *builder) firstName() string {
	if d := b.dataNames(); len(d) > 0 {
		return d[0]
	}
	return "server1"
}

// timingChecks are node.Config.Validate's rules on the timers, with the
// line and the value to write.
func (b *builder) timingChecks(r *rawCluster) {
	c, cfg := b.c, &b.core
	if c.reported["cluster.keepalive"] || c.reported["cluster.deadtime"] || c.reported["cluster.warntime"] || c.reported["cluster.initdead"] {
		return // a bad value was already reported; comparing with a default would mislead
	}
	at := func(key string, v value) string {
		if v.set {
			return "cluster." + key
		}
		return "cluster"
	}
	if cfg.Deadtime <= 2*cfg.Keepalive {
		where := at("deadtime", r.Deadtime)
		if !r.Deadtime.set {
			where = at("keepalive", r.Keepalive)
		}
		c.fail(where, "deadtime %v must exceed 2×keepalive (%v), or one lost heartbeat declares the peer dead; write deadtime = %q or more",
			cfg.Deadtime, cfg.Keepalive, (4 * cfg.Keepalive).String())
		return
	}
	if cfg.Warntime < cfg.Keepalive || cfg.Warntime >= cfg.Deadtime {
		c.fail(at("warntime", r.Warntime), "warntime %v must lie between keepalive (%v) and deadtime (%v); write warntime = %q",
			cfg.Warntime, cfg.Keepalive, cfg.Deadtime, (cfg.Deadtime / 2).String())
	}
	if cfg.Initdead < cfg.Deadtime {
		c.fail(at("initdead", r.Initdead), "initdead %v is shorter than deadtime (%v): boots are slower than heartbeats; write initdead = %q",
			cfg.Initdead, cfg.Deadtime, (2 * cfg.Deadtime).String())
	}
}

// readKey reads the shared authentication key.
func (b *builder) readKey(r *rawCluster) {
	c := b.c
	switch {
	case r.Authkey.set && r.AuthkeyFile.set:
		c.fail("cluster.authkey_file", "both authkey and authkey_file are set; keep one of them")
	case r.Authkey.set:
		if s, ok := c.str(r.Authkey, "cluster.authkey"); ok {
			b.key = []byte(s)
		}
	case r.AuthkeyFile.set:
		p, ok := c.word(r.AuthkeyFile, "cluster.authkey_file", "path", "/etc/ha.d/authkeys")
		if !ok {
			return
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(b.file), p)
		}
		st, err := os.Stat(p)
		if err != nil {
			c.fail("cluster.authkey_file", "%v; write the path of Heartbeat's authkeys file, or authkey = \"...\" instead", err)
			return
		}
		if st.Mode().Perm()&0o077 != 0 {
			c.fail("cluster.authkey_file", "%s has mode %04o: other users can read the key; run chmod 600 %s", p, st.Mode().Perm(), p)
			return
		}
		data, err := os.ReadFile(p)
		if err != nil {
			c.fail("cluster.authkey_file", "%v", err)
			return
		}
		ak, err := parseAuthkeys(data)
		if err != nil {
			c.fail("cluster.authkey_file", "%s: %v", p, err)
			return
		}
		b.key = ak.key
	default:
		c.fail("cluster", "no authentication key; write authkey = \"a long random secret\" (e.g. from openssl rand -hex 32) or authkey_file = \"/etc/ha.d/authkeys\"")
		return
	}
	if b.key != nil && len(b.key) < 8 {
		where := "cluster.authkey"
		if r.AuthkeyFile.set {
			where = "cluster.authkey_file"
		}
		c.fail(where, "the key is %d bytes, too short to resist guessing; use at least 8 (e.g. openssl rand -hex 32)", len(b.key))
	}
}

// authkeys is Heartbeat's authkeys file, the selected entry.
type authkeys struct {
	index  int
	method string
	key    []byte
}

// parseAuthkeys reads Heartbeat's authkeys: "auth N" selects the line
// "N method secret". sha1 and md5 secrets are used as Tandem's key (it
// authenticates with HMAC-SHA256 whatever the old method was); crc has no
// secret and is refused.
func parseAuthkeys(data []byte) (authkeys, error) {
	sel := -1
	selLine := 0
	entries := map[int]authkeys{}
	lines := map[int]int{}
	for i, line := range strings.Split(string(data), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if f[0] == "auth" {
			if len(f) != 2 {
				return authkeys{}, fmt.Errorf("line %d: want \"auth N\"", i+1)
			}
			n, err := strconv.Atoi(f[1])
			if err != nil {
				return authkeys{}, fmt.Errorf("line %d: %q is not a key number", i+1, f[1])
			}
			sel, selLine = n, i+1
			continue
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || len(f) < 2 {
			return authkeys{}, fmt.Errorf("line %d: want \"N method secret\", e.g. \"1 sha1 SECRET\"", i+1)
		}
		a := authkeys{index: n, method: strings.ToLower(f[1])}
		if len(f) > 2 {
			a.key = []byte(strings.Join(f[2:], " "))
		}
		entries[n], lines[n] = a, i+1
	}
	if sel < 0 {
		return authkeys{}, fmt.Errorf("no \"auth N\" line says which key to use")
	}
	a, ok := entries[sel]
	if !ok {
		return authkeys{}, fmt.Errorf("line %d: auth %d, but no key %d is defined", selLine, sel, sel)
	}
	switch a.method {
	case "sha1", "md5":
		if len(a.key) == 0 {
			return authkeys{}, fmt.Errorf("line %d: key %d has no secret", lines[sel], sel)
		}
	case "crc":
		return authkeys{}, fmt.Errorf("line %d: key %d is crc, which authenticates nothing; write \"%d sha1 SECRET\" with a long random secret", lines[sel], sel, sel)
	default:
		return authkeys{}, fmt.Errorf("line %d: unknown method %q; write sha1", lines[sel], a.method)
	}
	return a, nil
}
