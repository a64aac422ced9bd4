package config

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"

	"tandem/daemon/transport"
	"tandem/internal/proto"
)

// pmedium is one [[heartbeat]] as read.
type pmedium struct {
	path   string
	kind   string
	name   string
	nodes  []proto.NodeID
	iface  map[proto.NodeID]string // per node, after interfaces overrides
	port   int
	addrs  map[proto.NodeID]string // ucast: host:port per node
	group  string
	ttl    int
	loop   bool
	device map[proto.NodeID]string // serial: per node
	baud   int
}

func (m *pmedium) has(id proto.NodeID) bool {
	for _, n := range m.nodes {
		if n == id {
			return true
		}
	}
	return false
}

// foreignKeys refuses keys that are set but belong to another kind.
func (c *checker) foreignKeys(path string, raw any, kind string, allowed []string, always ...string) {
	v := reflect.ValueOf(raw)
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("toml")
		f, ok := v.Field(i).Interface().(value)
		if !ok || !f.set {
			continue
		}
		ok = false
		for _, a := range append(append([]string(nil), always...), allowed...) {
			ok = ok || a == tag
		}
		if !ok {
			c.fail(path+"."+tag, "%s is not a key of kind %q; remove it (kind %q takes: %s)", tag, kind, kind, strings.Join(append(always, allowed...), ", "))
		}
	}
}

// nodeList resolves a list of node names.
func (b *builder) nodeList(f value, path string) ([]proto.NodeID, bool) {
	names, ok := b.c.strList(f, path)
	if !ok {
		return nil, false
	}
	var ids []proto.NodeID
	seen := map[string]bool{}
	for _, s := range names {
		n := b.byName[s]
		switch {
		case n == nil || n.id == proto.NoNode:
			b.c.fail(path, "%q is not a node of this cluster; write %q", s, nearest(s, b.names, b.firstName()))
			return nil, false
		case seen[s]:
			b.c.fail(path, "%q is listed twice; list each node once", s)
			return nil, false
		}
		seen[s] = true
		ids = append(ids, n.id)
	}
	return ids, true
}

// perNode reads a table from node name to string, for the nodes listed.
func (b *builder) perNode(f value, path string, nodes []proto.NodeID) map[proto.NodeID]string {
	keys, m, ok := b.c.strMap(f, path)
	if !ok {
		return nil
	}
	out := map[proto.NodeID]string{}
	for _, k := range keys {
		n := b.byName[k]
		if n == nil || !contains(nodes, n.id) {
			b.c.fail(path+"."+k, "%q is not one of this medium's nodes (%s); write one of those names", k, b.nameList(nodes))
			continue
		}
		out[n.id] = m[k]
	}
	return out
}

func contains(ids []proto.NodeID, id proto.NodeID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func (b *builder) nameList(ids []proto.NodeID) string {
	var s []string
	for _, id := range ids {
		if int(id) < len(b.names) {
			s = append(s, b.names[id])
		}
	}
	return strings.Join(s, ", ")
}

func validIface(s string) bool {
	return s != "" && len(s) <= 15 && !strings.ContainsAny(s, "/ \t:") && s != "." && s != ".."
}

var bauds = []string{"9600", "19200", "38400", "57600", "115200"}

func (b *builder) readMedia(raw []rawHeartbeat) {
	c := b.c
	if len(raw) == 0 {
		c.fail("heartbeat", "no [[heartbeat]] media; add at least one, better two (a network and a serial cable): [[heartbeat]] kind = \"bcast\" interface = \"eth0\"")
		return
	}
	if len(raw) > transport.MaxMedia {
		c.fail(fmt.Sprintf("heartbeat[%d]", transport.MaxMedia), "at most %d heartbeat media; remove some", transport.MaxMedia)
		return
	}
	for i := range raw {
		r := &raw[i]
		m := pmedium{path: fmt.Sprintf("heartbeat[%d]", i)}
		p := m.path + "."
		if !r.Kind.set {
			c.fail(m.path, "medium %d has no kind; write kind = \"bcast\", \"ucast\", \"mcast\" or \"serial\"", i+1)
			continue
		}
		kind, ok := c.oneOf(r.Kind, p+"kind", "ucast", "bcast", "mcast", "serial")
		if !ok {
			continue
		}
		m.kind = kind
		c.foreignKeys(m.path, *r, kind, heartbeatKindKeys[kind], "kind", "name")
		m.name, _ = c.str(r.Name, p+"name")
		if r.Nodes.set {
			m.nodes, ok = b.nodeList(r.Nodes, p+"nodes")
			if !ok {
				continue
			}
		} else {
			for id := range b.names {
				if kind != "serial" || !b.byID(proto.NodeID(id)).witness {
					m.nodes = append(m.nodes, proto.NodeID(id))
				}
			}
		}
		if len(m.nodes) < 2 {
			c.fail(p+"nodes", "a medium connects at least two nodes, this one lists %d; write nodes = [%q, %q]", len(m.nodes), b.firstName(), "server2")
			continue
		}
		switch kind {
		case "serial":
			b.readSerial(r, &m)
		default:
			b.readUDP(r, &m)
		}
		b.media = append(b.media, m)
	}
}

func (b *builder) readUDP(r *rawHeartbeat, m *pmedium) {
	c, p := b.c, m.path+"."
	m.port = transport.DefaultPort
	if n, ok := c.integer(r.Port, p+"port", 1, 65535); ok {
		m.port = int(n)
	}
	m.iface = map[proto.NodeID]string{}
	iface, _ := c.str(r.Interface, p+"interface")
	over := b.perNode(r.Interfaces, p+"interfaces", m.nodes)
	for _, id := range m.nodes {
		s := iface
		if o, ok := over[id]; ok {
			s = o
		}
		if s == "" && m.kind == "ucast" {
			continue
		}
		if s == "" {
			c.fail(p+"interface", "a %s medium needs the network interface on %s; write interface = \"eth0\" (or interfaces = { %s = \"eth1\" } where it differs)", m.kind, b.names[id], b.names[id])
			return
		}
		if !validIface(s) {
			c.fail(p+"interface", "%q is not a network interface name; write interface = \"eth0\"", s)
			return
		}
		m.iface[id] = s
	}
	switch m.kind {
	case "ucast":
		b.readUcast(r, m)
	case "mcast":
		s, ok := c.str(r.Group, p+"group")
		if !ok {
			if !r.Group.set {
				c.fail(m.path, "an mcast medium needs a group; write group = \"225.0.0.1\"")
			}
			return
		}
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() || !a.IsMulticast() {
			c.fail(p+"group", "%q is not an IPv4 multicast group (224.0.0.0/4); write group = \"225.0.0.1\"", s)
			return
		}
		m.group = s
		m.ttl = 1
		if n, ok := c.integer(r.TTL, p+"ttl", 1, 255); ok {
			m.ttl = int(n)
		}
		m.loop, _ = c.boolean(r.Loop, p+"loop")
	}
}

// readUcast reads each node's unicast address; a node without one in
// addresses uses the host of its replication address.
func (b *builder) readUcast(r *rawHeartbeat, m *pmedium) {
	c, p := b.c, m.path+"."
	given := b.perNode(r.Addresses, p+"addresses", m.nodes)
	m.addrs = map[proto.NodeID]string{}
	for _, id := range m.nodes {
		s, ok := given[id]
		if !ok {
			n := b.byID(id)
			if b.c.failed(n.path + ".address") {
				continue // already reported
			}
			if n.address == "" {
				c.fail(p+"addresses", "no unicast address for %s; write addresses = { %s = \"10.0.0.1\", ... } or give the node an address", b.names[id], b.names[id])
				continue
			}
			s, _, _ = net.SplitHostPort(n.address)
		}
		a, err := hostPort(s, m.port)
		if err != nil {
			c.fail(p+"addresses."+b.names[id], "%v; write %s = \"10.0.0.1\" (port %d is the default)", err, b.names[id], m.port)
			continue
		}
		m.addrs[id] = a
	}
}

func (b *builder) readSerial(r *rawHeartbeat, m *pmedium) {
	c, p := b.c, m.path+"."
	if len(m.nodes) != 2 {
		c.fail(p+"nodes", "a serial cable has two ends, this medium lists %d nodes; write nodes = [%q, %q]", len(m.nodes), b.names[m.nodes[0]], b.names[m.nodes[1]])
		return
	}
	m.baud = transport.DefaultBaud
	if r.Baud.set {
		if n, ok := c.integer(r.Baud, p+"baud", 1, 1<<30); ok {
			if !contains2(bauds, fmt.Sprint(n)) {
				c.fail(p+"baud", "%d is not a supported speed; write baud = %s (or one of %s)", n, nearest(fmt.Sprint(n), bauds, "19200"), strings.Join(bauds, ", "))
			} else {
				m.baud = int(n)
			}
		}
	}
	dev, _ := c.absPath(r.Device, p+"device", "/dev/ttyS0")
	over := b.perNode(r.Devices, p+"devices", m.nodes)
	m.device = map[proto.NodeID]string{}
	for _, id := range m.nodes {
		s := dev
		if o, ok := over[id]; ok {
			if !strings.HasPrefix(o, "/") || strings.ContainsAny(o, " \t") {
				c.fail(p+"devices."+b.names[id], "%q is not a device path; write %s = \"/dev/ttyS1\"", o, b.names[id])
				continue
			}
			s = o
		}
		if s == "" {
			if !c.failed(p + "device") {
				c.fail(m.path, "no serial device for %s; write device = \"/dev/ttyS0\" (or devices = { %s = \"/dev/ttyS1\" } where it differs)", b.names[id], b.names[id])
			}
			continue
		}
		m.device[id] = s
	}
}

func contains2(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// mediumName is how node id's logs name medium m.
func (b *builder) mediumName(m *pmedium, id proto.NodeID) string {
	if m.name != "" {
		return m.name
	}
	switch m.kind {
	case "serial":
		return "serial " + m.device[id]
	case "mcast":
		return "mcast " + m.iface[id] + " " + m.group
	case "bcast":
		return "bcast " + m.iface[id]
	}
	if s := m.iface[id]; s != "" {
		return "ucast " + s
	}
	return "ucast " + m.addrs[id]
}
