package config

import (
	"fmt"
	"strings"

	"tandem/internal/meta"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

var (
	sb0Choices = []string{"disconnect", "discard-zero-changes", "discard-younger-primary", "discard-older-primary", "discard-least-changes", "discard-node-NAME"}
	sb1Choices = []string{"disconnect", "consensus", "discard-secondary"}
)

// readReplication reads [replication] and the nodes' disks. The cluster
// replicates a disk when its data nodes have one, when [replication] is
// present, or when the group names the disk resource.
func (b *builder) readReplication(raw *rawFile) {
	c := b.c
	for _, n := range b.nodes {
		if n.id == proto.NoNode {
			continue
		}
		b.replOn = b.replOn || !n.witness && n.disk != "" || c.failed(n.path+".disk")
	}
	b.replOn = b.replOn || raw.Replication != nil
	for _, r := range raw.Resources {
		if s, ok := r.Kind.v.(string); ok && s == "disk" {
			b.replOn = true
		}
	}
	if !b.replOn {
		return
	}
	var addrs = map[string]string{}
	for i := range b.nodes {
		n := &b.nodes[i]
		if n.witness || n.id == proto.NoNode {
			continue
		}
		if n.disk == "" && !c.failed(n.path+".disk") {
			c.fail(n.path, "%s has no disk, but the cluster replicates one; write disk = \"/dev/sdb1\" (the backing device or file) in its [[node]]", b.label(n))
		}
		if n.address == "" && !c.failed(n.path+".address") {
			c.fail(n.path, "%s has no address for the replication link; write address = \"10.0.0.%d:7788\" in its [[node]]", b.label(n), n.id+1)
		}
		if other, dup := addrs[n.address]; dup && n.address != "" {
			c.fail(n.path+".address", "%s and %s both have address %s; each node listens on its own address", other, b.label(n), n.address)
		}
		addrs[n.address] = b.label(n)
		if n.nbdSocket == "" {
			n.nbdSocket = "/run/tandem/" + b.cluster + ".nbd"
		}
	}

	cfg := &b.repl
	rr := raw.Replication
	if rr == nil {
		rr = &rawReplication{}
	}
	const p = "replication."
	if s, ok := c.str(rr.Protocol, p+"protocol"); ok {
		if pr, err := repl.ParseProtocol(strings.ToUpper(s)); err != nil {
			c.fail(p+"protocol", "%q is not a protocol; write protocol = \"C\" (synchronous; or \"A\" asynchronous, \"B\" memory-synchronous)", s)
		} else {
			cfg.Protocol = pr
		}
	}
	b.readSize(rr)
	if s, ok := c.str(rr.ResyncRate, p+"resync_rate"); ok {
		if n, err := parseBytes(s); err != nil || n < meta.BlockSize {
			c.fail(p+"resync_rate", "%q is not a rate in bytes per second with a unit; write resync_rate = \"100M\" (K, M, G: KiB, MiB, GiB per second; at least 4K)", s)
		} else {
			cfg.ResyncRate = n / meta.BlockSize
		}
	}
	if s, ok := c.str(rr.AfterSB0Pri, p+"after_sb_0pri"); ok {
		if pol, who, err := repl.ParseSB0(s, b.names); err != nil {
			if strings.HasPrefix(s, "discard-node-") {
				c.fail(p+"after_sb_0pri", "%q names no node of this cluster; write \"discard-node-%s\"", s, nearest(strings.TrimPrefix(s, "discard-node-"), b.dataNames(), b.firstName()))
			} else {
				c.fail(p+"after_sb_0pri", "%q is not a policy; write after_sb_0pri = %q (choices: %s)", s, nearest(s, sb0Choices, "disconnect"), strings.Join(sb0Choices, ", "))
			}
		} else if pol == repl.DiscardNode && (int(who) >= len(b.names) || b.byID(who).witness) {
			c.fail(p+"after_sb_0pri", "%q names the witness, which has no data; name a data node", s)
		} else {
			cfg.AfterSB0, cfg.DiscardNode = pol, who
		}
	}
	if s, ok := c.str(rr.AfterSB1Pri, p+"after_sb_1pri"); ok {
		if pol, err := repl.ParseSB1(s); err != nil {
			c.fail(p+"after_sb_1pri", "%q is not a policy; write after_sb_1pri = %q (choices: %s)", s, nearest(s, sb1Choices, "disconnect"), strings.Join(sb1Choices, ", "))
		} else {
			cfg.AfterSB1 = pol
		}
	}
	if s, ok := c.str(rr.AfterSB2Pri, p+"after_sb_2pri"); ok {
		if pol, err := repl.ParseSB2(s); err != nil {
			c.fail(p+"after_sb_2pri", "%q is not offered: a running primary's data is never discarded automatically; write after_sb_2pri = \"disconnect\"", s)
		} else {
			cfg.AfterSB2 = pol
		}
	}
	if s, ok := c.oneOf(rr.Fencing, p+"fencing", "dont-care", "resource-only", "resource-and-stonith"); ok {
		switch {
		case s == "resource-only":
			want := "resource-and-stonith"
			if b.core.Fencing == node.FenceNone {
				want = "dont-care"
			}
			c.fail(p+"fencing", "resource-only is not offered: without cluster fencing a primary that loses its peer goes on alone (dont-care), with stonith or witness it suspends I/O until the peer is outdated or fenced (resource-and-stonith); write fencing = %q", want)
		case s == "resource-and-stonith" && b.core.Fencing == node.FenceNone:
			c.fail(p+"fencing", "resource-and-stonith needs a cluster fencing policy, but cluster.fencing is \"none\"; write cluster.fencing = \"stonith\" (with a [[fence]]) or \"witness\", or fencing = \"dont-care\" here")
		case s == "dont-care" && b.core.Fencing != node.FenceNone:
			c.fail(p+"fencing", "with cluster.fencing = %q a primary that loses its peer always suspends I/O until the peer is outdated or fenced; write fencing = \"resource-and-stonith\" (or leave it out)", b.core.Fencing)
		}
	}
	if s, ok := c.oneOf(rr.OnIOError, p+"on_io_error", "detach", "pass_on"); ok {
		cfg.OnIOError = repl.Detach
		if s == "pass_on" {
			cfg.OnIOError = repl.PassOn
		}
	}
	cfg.CsumResync, _ = c.boolean(rr.CsumResync, p+"csum_resync")
	if n, ok := c.integer(rr.ALExtents, p+"al_extents", 1, meta.MaxALSlots); ok {
		cfg.ALSlots = int(n)
	}
	cfg.PingInterval, _ = c.dur(rr.PingInterval, p+"ping_interval", false)
	cfg.Timeout, _ = c.dur(rr.PingTimeout, p+"ping_timeout", false)
	if s, ok := c.oneOf(rr.OnCongestion, p+"on_congestion", "block", "pull-ahead"); ok {
		b.pullAhead = s == "pull-ahead"
	}
	if s, ok := c.oneOf(rr.DataIntegrity, p+"data_integrity", "none", "crc32c"); ok && s != "none" {
		b.dataIntegrity = s
	}
	withDefaults := cfg.WithDefaults()
	if !c.reported["replication.ping_interval"] && !c.reported["replication.ping_timeout"] && withDefaults.Timeout <= withDefaults.PingInterval {
		where := p + "ping_timeout"
		if !rr.PingTimeout.set {
			where = p + "ping_interval"
		}
		c.fail(where, "ping_timeout %v must exceed ping_interval %v, or every late ping breaks the link; write ping_timeout = %q",
			withDefaults.Timeout, withDefaults.PingInterval, (3 * withDefaults.PingInterval).String())
	}
	if b.pullAhead && withDefaults.Protocol != repl.ProtocolA {
		c.fail(p+"on_congestion", "pull-ahead only works with protocol A: under %v a write waits for the peer by definition; write on_congestion = \"block\" or protocol = \"A\"", withDefaults.Protocol)
	}
}

func (b *builder) readSize(rr *rawReplication) {
	c := b.c
	const p = "replication."
	if rr.Size.set && rr.Blocks.set {
		c.fail(p+"blocks", "both size and blocks are set; keep one of them")
		return
	}
	if s, ok := c.str(rr.Size, p+"size"); ok {
		n, err := parseBytes(s)
		switch {
		case err != nil:
			c.fail(p+"size", "%v; write size = \"10G\" (K, M, G, T: binary units) or leave it out to use the whole disk", err)
		case n == 0 || n%meta.BlockSize != 0:
			c.fail(p+"size", "%q is not a whole number of 4 KiB blocks; write size = %q", s, formatBytes((n/meta.BlockSize+1)*meta.BlockSize))
		default:
			b.repl.Blocks = n / meta.BlockSize
		}
	}
	if n, ok := c.integer(rr.Blocks, p+"blocks", 1, int64(meta.MaxBlocks)); ok {
		b.repl.Blocks = uint64(n)
	}
}

// label names a node in messages, even one whose name was refused.
func (b *builder) label(n *pnode) string {
	if n.name != "" {
		return n.name
	}
	return fmt.Sprintf("node %d", n.idx+1)
}

// replFor is the replication config of data node id.
func (b *builder) replFor(id proto.NodeID) *repl.Config {
	rc := b.repl
	rc.Self, rc.Peer, rc.Names = id, 1-id, b.names
	rc.Fencing = b.core.Fencing != node.FenceNone
	rc = rc.WithDefaults()
	return &rc
}
