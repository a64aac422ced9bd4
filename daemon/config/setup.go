package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"tandem/daemon/transport"
	"tandem/internal/node"
	"tandem/internal/proto"
)

// setup assembles node id's view of the cluster and runs the core's own
// validation over it.
func (b *builder) setup(id proto.NodeID) *NodeSetup {
	me := b.byID(id)
	s := &NodeSetup{Name: me.name, ID: id, Witness: me.witness, Key: b.key,
		ControlSocket: me.control, MetricsAddress: me.metrics}
	if s.ControlSocket == "" {
		s.ControlSocket = "/run/tandem/" + b.cluster + ".sock"
	}
	cfg := b.core
	cfg.Self, cfg.Names, cfg.IsWitness = id, append([]string(nil), b.names...), me.witness
	cfg.Group = append([]node.Resource(nil), b.group...)
	for i := range b.media {
		m := &b.media[i]
		if !m.has(id) {
			continue
		}
		mid := proto.MediumID(i)
		name := b.mediumName(m, id)
		var peers []proto.NodeID
		var tpeers []transport.Peer
		for _, p := range m.nodes {
			if p != id {
				peers = append(peers, p)
				tpeers = append(tpeers, transport.Peer{Node: p, Addr: m.addrs[p]})
			}
		}
		common := transport.Common{ID: mid, Name: name, Self: id, Peers: tpeers, Key: b.key}
		if m.kind == "serial" {
			cfg.Media = append(cfg.Media, node.Medium{ID: mid, Kind: proto.Serial, Name: name, Peers: peers})
			s.Serial = append(s.Serial, transport.SerialConfig{Common: common, Device: m.device[id], Baud: m.baud})
			continue
		}
		cfg.Media = append(cfg.Media, node.Medium{ID: mid, Kind: proto.Network, Name: name, Peers: peers})
		u := transport.UDPConfig{Common: common, Interface: m.iface[id], Port: m.port}
		switch m.kind {
		case "ucast":
			u.Mode = transport.Unicast
			// Listen on our own address from the medium, so that a node
			// with several networks answers on the one its peer uses.
			host, port, _ := net.SplitHostPort(m.addrs[id])
			if _, err := netip.ParseAddr(host); err == nil {
				u.Bind = host
			}
			u.Port, _ = strconv.Atoi(port)
		case "bcast":
			u.Mode = transport.Broadcast
		case "mcast":
			u.Mode, u.Group, u.TTL, u.Loop = transport.Multicast, m.group, m.ttl, m.loop
		}
		s.UDP = append(s.UDP, u)
	}
	if b.replOn && !me.witness {
		cfg.Replication = b.replFor(id)
		peer := b.byID(1 - id)
		s.Disk = &DiskSetup{Backing: me.disk, MetaDisk: me.metaDisk, NBDSocket: me.nbdSocket, NBDDevice: me.nbdDevice,
			Listen: me.address, Peer: peer.address, PullAhead: b.pullAhead, DataIntegrity: b.dataIntegrity}
	}
	s.Core = cfg.WithDefaults()
	b.backstop(s)
	for _, r := range b.specs {
		if me.witness {
			break // it never runs the group
		}
		r = copySpec(r)
		if r.Agent.FS != nil && r.Agent.FS.Device == "" {
			r.Agent.FS.Device = me.nbdDevice
		}
		s.Resources = append(s.Resources, r)
	}
	if b.core.Fencing == node.FenceStonith && !me.witness {
		peer := 1 - id
		for _, f := range b.fences {
			if contains(f.targets, peer) {
				s.Fences = append(s.Fences, b.fenceFor(&f, peer))
			}
		}
	}
	return s
}

// copySpec copies what a caller could change through the spec's pointers.
func copySpec(r ResourceSpec) ResourceSpec {
	a := &r.Agent
	switch {
	case a.IP != nil:
		x := *a.IP
		a.IP = &x
	case a.FS != nil:
		x := *a.FS
		a.FS = &x
	case a.Service != nil:
		x := *a.Service
		x.Params = maps.Clone(x.Params)
		x.Args = append([]string(nil), x.Args...)
		a.Service = &x
	case a.Exec != nil:
		x := *a.Exec
		a.Exec = &x
	}
	return r
}

func (b *builder) fenceFor(f *pfence, target proto.NodeID) FenceSpec {
	name := b.names[target]
	sub := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, "{target}", name), "{peer}", name)
	}
	out := FenceSpec{Kind: f.kind, Name: f.name, Target: target, TargetName: name, Command: sub(f.command),
		Agent: f.agent, PeerOption: f.peerOption, Socket: sub(f.socket), Action: f.action}
	if f.options != nil {
		out.Options = map[string]string{}
		for k, v := range f.options {
			out.Options[k] = sub(v)
		}
	}
	if out.Name == "" {
		out.Name = f.kind.String() + " " + name
	} else {
		out.Name = sub(out.Name)
	}
	return out
}

// withReplay copies a node's media configs and gives them one shared
// replay filter, as transport.Common.Replay asks.
func withReplay(n *NodeSetup) ([]transport.UDPConfig, []transport.SerialConfig) {
	f := transport.NewReplayFilter(0)
	udp := append([]transport.UDPConfig(nil), n.UDP...)
	ser := append([]transport.SerialConfig(nil), n.Serial...)
	for i := range udp {
		udp[i].Replay = f
	}
	for i := range ser {
		ser[i].Replay = f
	}
	return udp, ser
}

// coreKeys translates the core's field names into the file's keys.
var coreKeys = map[string]string{
	"nodes": "node", "self": "node", "witness": "node.witness",
	"keepalive": "cluster.keepalive", "deadtime": "cluster.deadtime", "warntime": "cluster.warntime",
	"initdead": "cluster.initdead", "fencing": "cluster.fencing", "clock_drift_ppm": "cluster.clock_drift_ppm",
	"preferred": "cluster.preferred", "migration_threshold": "cluster.migration_threshold",
	"media": "heartbeat", "group": "resource",
	"replication nodes": "node", "replication size": "replication.size", "replication protocol": "replication.protocol",
	"replication after-sb-0pri": "replication.after_sb_0pri", "replication al-extents": "replication.al_extents",
	"replication app-share": "replication", "replication timeout": "replication.ping_timeout",
}

// backstop runs node.Config.Validate and repl.Config.Validate, which the
// daemon will run again in node.New: whatever they refuse that the checks
// above did not already report is reported under the file's key.
func (b *builder) backstop(s *NodeSetup) {
	var errs []error
	if err := s.Core.Validate(); err != nil {
		errs = append(errs, unjoin(err)...)
	}
	if rc := s.Core.Replication; rc != nil {
		r := *rc
		if r.Blocks == 0 {
			r.Blocks = 1 // taken from the disk at start-up
		}
		if err := r.Validate(); err != nil {
			errs = append(errs, unjoin(err)...)
		}
	}
	for _, err := range errs {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		key := "cluster"
		for f, k := range coreKeys {
			if field == f || strings.HasPrefix(field, f+"[") {
				key = k
			}
		}
		if b.c.reported[key] {
			continue
		}
		b.c.fail(key, "%s (refused by the core's validation for node %s); change %s", msg, s.Name, key)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// summary is the one line `tandem check` prints.
func (b *builder) summary() string {
	var parts []string
	var nodes []string
	for id, n := range b.names {
		if b.byID(proto.NodeID(id)).witness {
			n += " (witness)"
		}
		nodes = append(nodes, n)
	}
	parts = append(parts, "nodes "+strings.Join(nodes, ", "))
	var media []string
	for i := range b.media {
		media = append(media, b.mediumName(&b.media[i], b.media[i].nodes[0]))
	}
	parts = append(parts, "heartbeat "+strings.Join(media, ", "))
	cfg := b.core
	parts = append(parts, fmt.Sprintf("keepalive %v deadtime %v", cfg.Keepalive, cfg.Deadtime))
	parts = append(parts, "fencing "+cfg.Fencing.String())
	if b.replOn {
		r := b.replFor(0)
		size := "whole disk"
		if r.Blocks > 0 {
			size = formatBytes(r.Blocks * 4096)
		}
		parts = append(parts, fmt.Sprintf("replication protocol %v (%s)", r.Protocol, size))
	}
	var group []string
	for _, r := range b.group {
		group = append(group, r.Name)
	}
	if len(group) == 0 {
		group = []string{"(empty)"}
	}
	parts = append(parts, "group "+strings.Join(group, " "))
	fb := "off"
	if cfg.AutoFailback {
		fb = "on"
	}
	parts = append(parts, fmt.Sprintf("preferred %s, auto_failback %s", b.names[cfg.Preferred], fb))
	return fmt.Sprintf("%s: cluster %q ok: %s", b.file, b.cluster, strings.Join(parts, "; "))
}
