package config

import (
	"fmt"
	"strings"

	"tandem/internal/node"
	"tandem/internal/proto"
)

// pfence is one [[fence]] as read.
type pfence struct {
	path       string
	kind       FenceKind
	name       string
	targets    []proto.NodeID
	command    string
	agent      string
	options    map[string]string
	peerOption string
	socket     string
	action     string
}

func (b *builder) readFences(raw []rawFence) {
	c := b.c
	for i := range raw {
		r := &raw[i]
		p := fmt.Sprintf("fence[%d]", i)
		if !r.Kind.set {
			c.fail(p, "fence %d has no kind; write kind = \"exec\", \"fence_agent\" or \"qemu\"", i+1)
			continue
		}
		kind, ok := c.oneOf(r.Kind, p+".kind", "exec", "fence_agent", "qemu")
		if !ok {
			continue
		}
		c.foreignKeys(p, *r, kind, fenceKindKeys[kind], "kind", "name")
		f := pfence{path: p}
		f.name, _ = c.str(r.Name, p+".name")
		if r.Targets.set {
			if f.targets, ok = b.nodeList(r.Targets, p+".targets"); !ok {
				continue
			}
			for _, t := range f.targets {
				if b.byID(t).witness {
					c.fail(p+".targets", "%q is the witness, which holds nothing and is never fenced; list data nodes only", b.names[t])
					ok = false
				}
			}
			if !ok {
				continue
			}
		} else {
			for id := range b.names {
				if !b.byID(proto.NodeID(id)).witness {
					f.targets = append(f.targets, proto.NodeID(id))
				}
			}
		}
		switch kind {
		case "exec":
			f.kind = FenceExec
			if f.command, ok = c.str(r.Command, p+".command"); !ok || strings.TrimSpace(f.command) == "" {
				if ok || !r.Command.set {
					c.fail(p, "an exec fence needs a command; write command = \"/usr/local/sbin/power-off {target}\"")
				}
				continue
			}
		case "fence_agent":
			f.kind = FenceAgent
			if f.agent, ok = c.word(r.Agent, p+".agent", "fence agent", "fence_ipmilan"); !ok {
				if !r.Agent.set {
					c.fail(p, "a fence_agent fence needs an agent; write agent = \"fence_ipmilan\"")
				}
				continue
			}
			_, f.options, _ = c.strMap(r.Options, p+".options")
			if _, ok := f.options["action"]; ok {
				c.fail(p+".options.action", "Tandem sets the agent's action itself; remove action from options (use action = \"off\" or \"reboot\" next to agent)")
			}
			f.peerOption, _ = c.word(r.PeerOption, p+".peer_option", "option name", "plug")
			f.action = "off"
			if s, ok := c.oneOf(r.Action, p+".action", "off", "reboot"); ok {
				f.action = s
			}
		case "qemu":
			f.kind = FenceQEMU
			if f.socket, ok = c.absPath(r.QMP, p+".qmp", "/run/tandem/qmp-{target}.sock"); !ok {
				if !r.QMP.set {
					c.fail(p, "a qemu fence needs the QMP socket; write qmp = \"/run/tandem/qmp-{target}.sock\"")
				}
				continue
			}
			if len(f.targets) > 1 && !strings.Contains(f.socket, "{target}") && !strings.Contains(f.socket, "{peer}") {
				c.fail(p+".qmp", "one QMP socket controls one machine, but this fence targets %s; write qmp = %q or targets = [%q]",
					b.nameList(f.targets), strings.TrimSuffix(f.socket, ".sock")+"-{target}.sock", b.names[f.targets[len(f.targets)-1]])
				continue
			}
			// QMP's own command names are accepted too.
			f.action = "off"
			if s, ok := c.oneOf(r.Action, p+".action", "off", "reset", "quit", "system_reset"); ok {
				f.action = map[string]string{"off": "off", "quit": "off", "reset": "reset", "system_reset": "reset"}[s]
			}
		}
		b.fences = append(b.fences, f)
	}
}

// crossChecks are the rules that tie sections together.
func (b *builder) crossChecks() {
	c := b.c
	if c.reported["node"] || c.reported["node.name"] || c.reported["node.witness"] {
		return // ids are not trustworthy
	}
	hasWitness := len(b.names) == 3
	switch b.core.Fencing {
	case node.FenceWitness:
		if !hasWitness {
			c.fail("cluster.fencing", "witness needs a third, diskless node; add [[node]] name = \"witness\" witness = true (with its heartbeat media), or write fencing = \"stonith\" or \"none\"")
		}
	case node.FenceStonith:
		for id := range b.names {
			n := b.byID(proto.NodeID(id))
			if n.witness || n.name == "" {
				continue
			}
			covered := false
			for _, f := range b.fences {
				covered = covered || contains(f.targets, n.id)
			}
			if !covered && !c.reported["fence.targets"] {
				c.fail("cluster.fencing", "stonith needs a way to power off %s, but no [[fence]] targets it; add [[fence]] kind = \"qemu\" (or exec, fence_agent) with targets = [%q], or write fencing = \"none\"", n.name, n.name)
			}
		}
	}
	if b.core.Fencing != node.FenceStonith && len(b.fences) > 0 {
		c.fail(b.fences[0].path, "fence agents are configured but cluster.fencing is %q, so they would never run; write fencing = \"stonith\" in [cluster] or remove the [[fence]] sections", b.core.Fencing)
	}
	if c.reported["heartbeat"] || c.reported["heartbeat.nodes"] || c.reported["heartbeat.kind"] {
		return
	}
	for i := range b.names {
		for j := i + 1; j < len(b.names); j++ {
			linked := false
			for k := range b.media {
				linked = linked || b.media[k].has(proto.NodeID(i)) && b.media[k].has(proto.NodeID(j))
			}
			if !linked && b.names[i] != "" && b.names[j] != "" {
				c.fail("heartbeat", "no heartbeat medium connects %s and %s, so each would think the other dead; add both to the nodes of a [[heartbeat]]", b.names[i], b.names[j])
			}
		}
	}
}
