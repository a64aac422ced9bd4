package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"tandem/daemon/resource"
	"tandem/daemon/transport"
	"tandem/internal/node"
	"tandem/internal/proto"
	"tandem/internal/repl"
)

// TestTutorialLoads: the example in config.md loads, and each node gets the
// configs the daemon needs, in the form the core and the transports take.
func TestTutorialLoads(t *testing.T) {
	f, err := Load("testdata/tutorial.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.NodeNames(); !reflect.DeepEqual(got, []string{"server1", "server2"}) {
		t.Fatalf("nodes %v", got)
	}
	sum := f.Summary()
	for _, want := range []string{`cluster "mail" ok`, "nodes server1, server2", "bcast eth0, serial /dev/ttyS0",
		"deadtime 30s", "fencing none", "protocol C", "group disk fs:/replicated ip:192.168.1.5/24 service:sendmail"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q: %s", want, sum)
		}
	}
	if strings.Contains(sum, "\n") {
		t.Errorf("summary is not one line: %q", sum)
	}

	s, err := f.Node("server2")
	if err != nil {
		t.Fatal(err)
	}
	c := s.Core
	if c.Self != 1 || c.IsWitness || c.Keepalive != 2*time.Second || c.Deadtime != 30*time.Second ||
		c.Warntime != 10*time.Second || c.Initdead != 120*time.Second || !c.AutoFailback || c.Preferred != 0 || c.Fencing != node.FenceNone {
		t.Errorf("core config: %+v", c)
	}
	wantMedia := []node.Medium{
		{ID: 0, Kind: proto.Network, Name: "bcast eth0", Peers: []proto.NodeID{0}},
		{ID: 1, Kind: proto.Serial, Name: "serial /dev/ttyS0", Peers: []proto.NodeID{0}},
	}
	if !reflect.DeepEqual(c.Media, wantMedia) {
		t.Errorf("media %+v", c.Media)
	}
	var group []string
	for _, r := range c.Group {
		group = append(group, r.Name)
	}
	if !reflect.DeepEqual(group, []string{"disk", "fs:/replicated", "ip:192.168.1.5/24", "service:sendmail"}) {
		t.Errorf("group %v", group)
	}
	if c.Group[2].MonitorInterval != 10*time.Second || c.Group[2].StartTimeout != 20*time.Second {
		t.Errorf("ip resource timings %+v", c.Group[2])
	}
	r := c.Replication
	if r == nil || r.Protocol != repl.ProtocolC || r.ResyncRate != 10<<20/4096 || r.AfterSB0 != repl.DiscardZeroChanges ||
		r.AfterSB1 != repl.DiscardSecondary || r.OnIOError != repl.Detach || r.Blocks != 0 || r.Self != 1 || r.Peer != 0 {
		t.Errorf("replication %+v", r)
	}
	if len(s.UDP) != 1 || len(s.Serial) != 1 {
		t.Fatalf("media configs: %d UDP, %d serial", len(s.UDP), len(s.Serial))
	}
	u, sr := s.UDP[0], s.Serial[0]
	if u.Mode != transport.Broadcast || u.Interface != "eth0" || u.Port != 694 || u.ID != 0 || u.Self != 1 ||
		!reflect.DeepEqual(u.Peers, []transport.Peer{{Node: 0}}) || string(u.Key) != "d1c2f8e0a7b34a5e9c4f6b1d2e3a4b5c" {
		t.Errorf("UDP config %+v", u)
	}
	if sr.Device != "/dev/ttyS0" || sr.Baud != 19200 || sr.ID != 1 {
		t.Errorf("serial config %+v", sr)
	}
	if u.Replay == nil || u.Replay != sr.Replay {
		t.Error("the media do not share one replay filter")
	}
	if again, _ := f.Node("server2"); again.UDP[0].Replay == u.Replay {
		t.Error("two Node calls share a replay filter: two daemons in one process would see each other's heartbeats as replays")
	}
	d := s.Disk
	if d == nil || d.Backing != "/dev/sda3" || d.MetaDisk != "" || d.NBDDevice != "/dev/nbd0" || d.Listen != "10.0.0.2:7788" ||
		d.Peer != "10.0.0.1:7788" || d.NBDSocket != "/run/tandem/mail.nbd" {
		t.Errorf("disk %+v", d)
	}
	wantRes := []ResourceSpec{
		{Name: "disk", Disk: true},
		{Name: "fs:/replicated", Agent: resource.Spec{FS: &resource.FSSpec{Device: "/dev/nbd0", Mountpoint: "/replicated", FSType: "ext4", Options: "noatime"}}},
		{Name: "ip:192.168.1.5/24", Agent: resource.Spec{IP: &resource.IPSpec{Address: "192.168.1.5/24", Interface: "eth0"}}},
		{Name: "service:sendmail", Agent: resource.Spec{Service: &resource.ServiceSpec{Kind: resource.LSB, Name: "sendmail"}}},
	}
	if !reflect.DeepEqual(s.Resources, wantRes) {
		t.Errorf("resources:\n got %s\nwant %s", dump(s.Resources), dump(wantRes))
	}
	checkAgents(t, s)
	if s.ControlSocket != "/run/tandem/mail.sock" || s.MetricsAddress != "" || len(s.Fences) != 0 {
		t.Errorf("control %q metrics %q fences %v", s.ControlSocket, s.MetricsAddress, s.Fences)
	}
	// What the daemon does next must work: the core takes the config.
	if _, err := node.New(s.Core, 0, 1, 1); err != nil {
		t.Fatalf("node.New refuses the config: %v", err)
	}
	if _, err := f.Node("server3"); err == nil || !strings.Contains(err.Error(), "server1, server2") {
		t.Errorf("unknown node: %v", err)
	}
}

// base is a small valid file the refusal cases edit.
const base = `[cluster]
keepalive = "1s"
deadtime = "10s"
authkey = "0123456789abcdef"

[[node]]
name = "server1"
address = "10.0.0.1"
disk = "/dev/vdb"
nbd_device = "/dev/nbd0"

[[node]]
name = "server2"
address = "10.0.0.2"
disk = "/dev/vdb"
nbd_device = "/dev/nbd0"

[[heartbeat]]
kind = "ucast"

[replication]
protocol = "C"

[[resource]]
kind = "fs"
mountpoint = "/replicated"
fstype = "ext4"

[[resource]]
kind = "ip"
address = "192.168.1.5/24"
`

const witnessNode = `
[[node]]
name = "witness"
witness = true
address = "10.0.0.3"
`

func TestBaseLoads(t *testing.T) {
	f, err := Parse("base.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := f.Node("server1")
	u := s.UDP[0]
	if u.Mode != transport.Unicast || u.Bind != "10.0.0.1" || u.Port != 694 ||
		!reflect.DeepEqual(u.Peers, []transport.Peer{{Node: 1, Addr: "10.0.0.2:694"}}) {
		t.Errorf("ucast config from node addresses: %+v", u)
	}
	if s.Disk.Listen != "10.0.0.1:7788" || s.Disk.Peer != "10.0.0.2:7788" {
		t.Errorf("default replication port: %+v", s.Disk)
	}
}

// edit applies replacements to base; each pair is old, new.
func edit(t *testing.T, text string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("test bug: %q not in the text", pairs[i])
		}
		text = strings.Replace(text, pairs[i], pairs[i+1], 1)
	}
	return text
}

// lineOfText is the line where marker first appears (0 if marker is "").
func lineOfText(t *testing.T, text, marker string) int {
	t.Helper()
	if marker == "" {
		return 0
	}
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("test bug: marker %q not in the text", marker)
	}
	return strings.Count(text[:i], "\n") + 1
}

// wantErr is one expected error: on the line of the nth occurrence of at
// (nth 0 = first), with key, and a message containing msg.
type wantErr struct {
	at  string
	nth int
	key string
	msg string
}

func TestRefused(t *testing.T) {
	cases := []struct {
		name string
		text string
		want []wantErr
	}{
		{"deadtime not above 2×keepalive", edit(t, base, `deadtime = "10s"`, `deadtime = "2s"`),
			[]wantErr{{at: `deadtime = "2s"`, key: "cluster.deadtime", msg: `deadtime 2s must exceed 2×keepalive (1s), or one lost heartbeat declares the peer dead; write deadtime = "4s" or more`}}},
		{"duration without unit", edit(t, base, `deadtime = "10s"`, `deadtime = 30`),
			[]wantErr{{at: "deadtime = 30", key: "cluster.deadtime", msg: `30 has no unit; write deadtime = "30s"`}}},
		{"warntime outside keepalive..deadtime", edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\nwarntime = \"20s\""),
			[]wantErr{{at: "warntime", key: "cluster.warntime", msg: `warntime 20s must lie between keepalive (1s) and deadtime (10s); write warntime = "5s"`}}},
		{"initdead below deadtime", edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\ninitdead = \"5s\""),
			[]wantErr{{at: "initdead", key: "cluster.initdead", msg: `write initdead = "20s"`}}},
		{"unknown key suggests the nearest", edit(t, base, `deadtime = "10s"`, `dedtime = "10s"`),
			[]wantErr{{at: "dedtime", key: "cluster.dedtime", msg: `unknown key "dedtime" in [cluster]; write deadtime instead`}}},
		{"unknown key without a near one", edit(t, base, `deadtime = "10s"`, `colour = "blue"`),
			[]wantErr{{at: "colour", key: "cluster.colour", msg: `unknown key "colour" in [cluster]; remove it or use one of: name, keepalive`}}},
		{"unknown section", edit(t, base, `[cluster]`, `[clustr]`),
			[]wantErr{{at: "[clustr]", key: "clustr", msg: `unknown section or key "clustr" at the top level; write [cluster] instead`},
				{at: "", key: "cluster", msg: "no authentication key"}}},
		{"unknown array section", edit(t, base, `[[heartbeat]]`, `[[heartbeats]]`),
			[]wantErr{{at: "[[heartbeats]]", key: "heartbeats", msg: `unknown section [[heartbeats]] at the top level; write [[heartbeat]] instead`},
				{at: "", key: "heartbeat", msg: "no [[heartbeat]] media"}}},
		{"unknown key in the second node", edit(t, base, `name = "server2"`, "name = \"server2\"\nadress = \"x\""),
			[]wantErr{{at: "adress", key: "node.adress", msg: `unknown key "adress" in [[node]]; write address instead`}}},
		{"two nodes with one name", edit(t, base, `name = "server2"`, `name = "server1"`),
			[]wantErr{{at: `name = "server1"`, nth: 1, key: "node.name", msg: `two nodes are named "server1" (the other at line 6); give each node its own name`}}},
		{"a third data node", base + "\n[[node]]\nname = \"server3\"\n",
			[]wantErr{{at: "[[node]]", nth: 2, key: "node", msg: "a cluster has exactly 2 data nodes, this file has 3"}}},
		{"witness policy without a witness", edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\nfencing = \"witness\""),
			[]wantErr{{at: "fencing", key: "cluster.fencing", msg: `witness needs a third, diskless node; add [[node]] name = "witness" witness = true`}}},
		{"stonith without a fence agent for the peer", edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\nfencing = \"stonith\"") +
			"\n[[fence]]\nkind = \"qemu\"\ntargets = [\"server2\"]\nqmp = \"/run/tandem/qmp-server2.sock\"\n",
			[]wantErr{{at: "fencing", key: "cluster.fencing", msg: `stonith needs a way to power off server1, but no [[fence]] targets it`}}},
		{"fence agents that would never run", base + "\n[[fence]]\nkind = \"exec\"\ncommand = \"/sbin/poweroff-peer {target}\"\n",
			[]wantErr{{at: "[[fence]]", key: "fence", msg: `fence agents are configured but cluster.fencing is "none"`}}},
		{"unknown fencing policy", edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\nfencing = \"stonit\""),
			[]wantErr{{at: "fencing", key: "cluster.fencing", msg: `"stonit" is not one of "none", "stonith" or "witness"; write fencing = "stonith"`}}},
		{"pull-ahead under protocol C", edit(t, base, `protocol = "C"`, "protocol = \"C\"\non_congestion = \"pull-ahead\""),
			[]wantErr{{at: "on_congestion", key: "replication.on_congestion", msg: `pull-ahead only works with protocol A`}}},
		{"pull-ahead under the default protocol", edit(t, base, `protocol = "C"`, `on_congestion = "pull-ahead"`),
			[]wantErr{{at: "on_congestion", key: "replication.on_congestion", msg: `write on_congestion = "block" or protocol = "A"`}}},
		{"bad protocol", edit(t, base, `protocol = "C"`, `protocol = "D"`),
			[]wantErr{{at: "protocol", key: "replication.protocol", msg: `"D" is not a protocol; write protocol = "C"`}}},
		{"split-brain policy typo", edit(t, base, `protocol = "C"`, `after_sb_0pri = "discard-zero-change"`),
			[]wantErr{{at: "after_sb_0pri", key: "replication.after_sb_0pri", msg: `write after_sb_0pri = "discard-zero-changes"`}}},
		{"discard a node that is not there", edit(t, base, `protocol = "C"`, `after_sb_0pri = "discard-node-server3"`),
			[]wantErr{{at: "after_sb_0pri", key: "replication.after_sb_0pri", msg: `"discard-node-server3" names no node of this cluster; write "discard-node-server1"`}}},
		{"after_sb_2pri discarding a primary", edit(t, base, `protocol = "C"`, `after_sb_2pri = "violently-as0p"`),
			[]wantErr{{at: "after_sb_2pri", key: "replication.after_sb_2pri", msg: `write after_sb_2pri = "disconnect"`}}},
		{"resource-and-stonith without cluster fencing", edit(t, base, `protocol = "C"`, `fencing = "resource-and-stonith"`),
			[]wantErr{{at: `fencing = "resource`, key: "replication.fencing", msg: `resource-and-stonith needs a cluster fencing policy`}}},
		{"ping timeout not above the interval", edit(t, base, `protocol = "C"`, "ping_interval = \"2s\"\nping_timeout = \"2s\""),
			[]wantErr{{at: "ping_timeout", key: "replication.ping_timeout", msg: `ping_timeout 2s must exceed ping_interval 2s`}}},
		{"size not in blocks", edit(t, base, `protocol = "C"`, `size = "10000"`),
			[]wantErr{{at: "size", key: "replication.size", msg: `"10000" has no unit; write size = "10G"`}}},
		{"fs resource without a replicated disk",
			edit(t, base, "disk = \"/dev/vdb\"\n", "", "disk = \"/dev/vdb\"\n", "", "[replication]\nprotocol = \"C\"\n", ""),
			[]wantErr{{at: "[[resource]]", key: "resource", msg: `an fs resource mounts the replicated device, but no node has a disk to replicate`}}},
		{"fs resource on another device", edit(t, base, `fstype = "ext4"`, "fstype = \"ext4\"\ndevice = \"/dev/drbd0\""),
			[]wantErr{{at: `device = "/dev/drbd0"`, key: "resource.device", msg: `"/dev/drbd0" is not the replicated device (/dev/nbd0 on server1)`},
				{at: `device = "/dev/drbd0"`, key: "resource.device", msg: `(/dev/nbd0 on server2)`}}},
		{"a node without its disk", edit(t, base, "disk = \"/dev/vdb\"\nnbd_device = \"/dev/nbd0\"\n\n[[heartbeat]]", "nbd_device = \"/dev/nbd0\"\n\n[[heartbeat]]"),
			[]wantErr{{at: "[[node]]", nth: 1, key: "node", msg: `server2 has no disk, but the cluster replicates one; write disk = "/dev/sdb1"`}}},
		{"the disk resource not first", base + "\n[[resource]]\nkind = \"disk\"\n",
			[]wantErr{{at: `kind = "disk"`, key: "resource.kind", msg: `the replicated disk is always the group's first member`}}},
		{"a key of another kind", edit(t, base, `address = "192.168.1.5/24"`, "address = \"192.168.1.5/24\"\nmountpoint = \"/x\""),
			[]wantErr{{at: "mountpoint = \"/x\"", key: "resource.mountpoint", msg: `mountpoint is not a key of kind "ip"; remove it (kind "ip" takes: kind, name,`}}},
		{"ip without prefix length", edit(t, base, `address = "192.168.1.5/24"`, `address = "192.168.1.5"`),
			[]wantErr{{at: `address = "192.168.1.5"`, key: "resource.address", msg: `write address = "192.168.1.5/24"`}}},
		{"two resources with one name", base + "\n[[resource]]\nkind = \"ip\"\naddress = \"192.168.1.5/24\"\n",
			[]wantErr{{at: "[[resource]]", nth: 2, key: "resource", msg: `two resources are named "ip:192.168.1.5/24"`}}},
		{"exec without stop", base + "\n[[resource]]\nkind = \"exec\"\nstart = \"/usr/bin/app start\"\n",
			[]wantErr{{at: "[[resource]]", nth: 2, key: "resource", msg: `an exec resource needs a stop command`}}},
		{"service with two controls", base + "\n[[resource]]\nkind = \"service\"\nlsb = \"sendmail\"\nsystemd = \"sendmail.service\"\n",
			[]wantErr{{at: "[[resource]]", nth: 2, key: "resource", msg: `names exactly one of systemd, lsb and ocf (it has 2)`}}},
		{"boolean as a string", edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\nauto_failback = \"on\""),
			[]wantErr{{at: "auto_failback", key: "cluster.auto_failback", msg: `"on" is a string, not a boolean; write auto_failback = true (no quotes)`}}},
		{"number as a string", edit(t, base, `kind = "ucast"`, "kind = \"ucast\"\nport = \"694\""),
			[]wantErr{{at: "port", key: "heartbeat.port", msg: `"694" is a string; write port = 694 without quotes`}}},
		{"medium naming an unknown node", edit(t, base, `kind = "ucast"`, "kind = \"ucast\"\nnodes = [\"server1\", \"sever2\"]"),
			[]wantErr{{at: "nodes =", key: "heartbeat.nodes", msg: `"sever2" is not a node of this cluster; write "server2"`}}},
		{"udp is not a kind", edit(t, base, `kind = "ucast"`, `kind = "udp"`),
			[]wantErr{{at: `kind = "udp"`, key: "heartbeat.kind", msg: `"udp" is not one of "ucast", "bcast", "mcast" or "serial"`}}},
		{"bcast without interface", edit(t, base, `kind = "ucast"`, `kind = "bcast"`),
			[]wantErr{{at: "[[heartbeat]]", key: "heartbeat.interface", msg: `a bcast medium needs the network interface on server1; write interface = "eth0"`}}},
		{"mcast group that is not multicast", edit(t, base, `kind = "ucast"`, "kind = \"mcast\"\ninterface = \"eth0\"\ngroup = \"10.0.0.9\""),
			[]wantErr{{at: "group", key: "heartbeat.group", msg: `"10.0.0.9" is not an IPv4 multicast group`}}},
		{"serial with a bad speed", edit(t, base, `kind = "ucast"`, "kind = \"serial\"\ndevice = \"/dev/ttyS0\"\nbaud = 19000"),
			[]wantErr{{at: "baud", key: "heartbeat.baud", msg: `19000 is not a supported speed; write baud = 19200`}}},
		{"a witness nobody hears", edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\nfencing = \"witness\"", `kind = "ucast"`, "kind = \"ucast\"\nnodes = [\"server1\", \"server2\"]") + witnessNode +
			"\n[[heartbeat]]\nkind = \"serial\"\ndevice = \"/dev/ttyS0\"\n",
			[]wantErr{{at: "[[heartbeat]]", key: "heartbeat", msg: `no heartbeat medium connects server1 and witness`},
				{at: "[[heartbeat]]", key: "heartbeat", msg: `no heartbeat medium connects server2 and witness`}}},
		{"a witness with a disk", base + witnessNode + "disk = \"/dev/vdb\"\n",
			[]wantErr{{at: "disk = ", nth: 2, key: "node.disk", msg: `witness is a witness and has no disk; remove disk`}}},
		{"no key", edit(t, base, "authkey = \"0123456789abcdef\"\n", ""),
			[]wantErr{{at: "[cluster]", key: "cluster", msg: `no authentication key; write authkey = `}}},
		{"short key", edit(t, base, `authkey = "0123456789abcdef"`, `authkey = "abc"`),
			[]wantErr{{at: "authkey", key: "cluster.authkey", msg: `the key is 3 bytes, too short`}}},
		{"TOML syntax", edit(t, base, `deadtime = "10s"`, `deadtime = "10s`),
			[]wantErr{{at: `deadtime = "10s`, key: "cluster.deadtime", msg: `TOML syntax: strings cannot contain newlines`}}},
		{"a section written as a key", "cluster = \"mail\"\n" + base[strings.Index(base, "[[node]]"):],
			[]wantErr{{at: "cluster =", key: "cluster", msg: `cluster is a section; write [cluster] and its keys on the lines below it`}}},
		{"an array of tables written as a key", "node = \"server3\"\n" + base[:strings.Index(base, "[[node]]")],
			[]wantErr{{at: "node =", key: "node", msg: `node is a section; write [[node]] and its keys on the lines below it`}}},
		{"a table where a string goes", edit(t, base, `name = "server2"`, `name = { first = "server" }`),
			[]wantErr{{at: "name = {", key: "node.name", msg: `name is a table, not a string; write name = "..."`}}},
		{"several errors at once, in line order",
			edit(t, base, `keepalive = "1s"`, `keepalive = "1 s"`, `address = "10.0.0.2"`, `address = "10.0.0.2:99999"`, `protocol = "C"`, `protocol = "E"`),
			[]wantErr{{at: "keepalive", key: "cluster.keepalive", msg: `"1 s" is not a duration (no blanks inside); write keepalive = "1s"`},
				{at: `"10.0.0.2:99999"`, key: "node.address", msg: `has no valid port (1..65535); write address = "10.0.0.2:7788"`},
				{at: `protocol = "E"`, key: "replication.protocol", msg: `"E" is not a protocol`}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(tc.text))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.text)
			}
			got := errorList(t, err)
			if len(got) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				if i >= len(got) {
					break
				}
				g := got[i]
				line := nthLine(t, tc.text, w.at, w.nth)
				if g.File != "test.toml" || g.Line != line || g.Key != w.key || !strings.Contains(g.Msg, w.msg) {
					t.Errorf("error %d:\n got  %s\n want test.toml:%d: %s: ...%s...", i, g, line, w.key, w.msg)
				}
			}
		})
	}
}

func nthLine(t *testing.T, text, marker string, nth int) int {
	t.Helper()
	if marker == "" {
		return 0
	}
	off := 0
	for k := 0; k < nth; k++ {
		i := strings.Index(text[off:], marker)
		if i < 0 {
			t.Fatalf("test bug: marker %q occurs fewer than %d times", marker, nth+1)
		}
		off += i + len(marker)
	}
	return lineOfText(t, text[off:], marker) + strings.Count(text[:off], "\n")
}

func errorList(t *testing.T, err error) []*Error {
	t.Helper()
	var out []*Error
	for _, e := range unjoin(err) {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("not a *config.Error: %v", e)
		}
		out = append(out, ce)
	}
	return out
}

// TestAccepted: settings that are easy to refuse by mistake.
func TestAccepted(t *testing.T) {
	cases := []struct{ name, text string }{
		{"pull-ahead under protocol A", edit(t, base, `protocol = "C"`, "protocol = \"A\"\non_congestion = \"pull-ahead\"")},
		{"no replication, no fs", edit(t, base, "disk = \"/dev/vdb\"\n", "", "disk = \"/dev/vdb\"\n", "",
			"[replication]\nprotocol = \"C\"\n", "", "[[resource]]\nkind = \"fs\"\nmountpoint = \"/replicated\"\nfstype = \"ext4\"\n", "")},
		{"witness with its own medium", edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\nfencing = \"witness\"") + witnessNode},
		{"stonith with qemu fences for both", edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\nfencing = \"stonith\"") +
			"\n[[fence]]\nkind = \"qemu\"\nqmp = \"/run/tandem/qmp-{target}.sock\"\n"},
		{"ocf service with params, exec with monitor", base + `
[[resource]]
kind = "service"
ocf = "heartbeat:apache"
params = { configfile = "/etc/apache2/apache2.conf", port = 80 }

[[resource]]
kind = "service"
lsb = "/etc/ha.d/resource.d/MailTo"
args = ["root", "failover"]

[[resource]]
kind = "service"
systemd = "postfix.service"

[[resource]]
kind = "exec"
start = "/usr/local/bin/app start"
stop = "/usr/local/bin/app stop"
monitor = "/usr/local/bin/app status"
monitor_interval = "5s"
`},
		{"multi-line values do not confuse positions", edit(t, base, `kind = "ucast"`, "kind = \"ucast\"\nnodes = [\n  \"server1\", # one\n  \"server2\",\n]\n")},
		{"size in blocks and explicit disk resource", edit(t, base, `protocol = "C"`, "protocol = \"B\"\nblocks = 262144",
			"[[resource]]\nkind = \"fs\"", "[[resource]]\nkind = \"disk\"\nstart_timeout = \"1m\"\n\n[[resource]]\nkind = \"fs\"")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("test.toml", []byte(tc.text))
			if err != nil {
				t.Fatalf("%v\n%s", err, tc.text)
			}
			for _, n := range f.NodeNames() {
				s, err := f.Node(n)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := node.New(s.Core, 0, 1, 1); err != nil {
					t.Fatalf("node.New(%s): %v", n, err)
				}
				checkAgents(t, s)
			}
		})
	}
}

func dump(rs []ResourceSpec) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "{%s disk=%v", r.Name, r.Disk)
		for _, p := range []any{r.Agent.IP, r.Agent.FS, r.Agent.Service, r.Agent.Exec} {
			if !reflect.ValueOf(p).IsNil() {
				fmt.Fprintf(&b, " %+v", p)
			}
		}
		b.WriteString("} ")
	}
	return b.String()
}

// checkAgents: daemon/resource accepts every spec (building an agent only
// checks it; nothing runs).
func checkAgents(t *testing.T, s *NodeSetup) {
	t.Helper()
	if s.Witness != (s.Resources == nil) {
		t.Errorf("%s: witness %v with %d resources", s.Name, s.Witness, len(s.Resources))
	}
	for i, r := range s.Resources {
		if r.Disk {
			if i != 0 || s.Core.Replication == nil {
				t.Errorf("disk resource at %d", i)
			}
			continue
		}
		if _, err := resource.FromSpec(r.Agent, resource.Hooks{Writable: func() bool { return false }}); err != nil {
			t.Errorf("resource.FromSpec(%s): %v", r.Name, err)
		}
		if r.Name != s.Core.Group[i].Name {
			t.Errorf("resource %d is %s, the core's group says %s", i, r.Name, s.Core.Group[i].Name)
		}
	}
}

func TestStonithFences(t *testing.T) {
	text := edit(t, base, `deadtime = "10s"`, "deadtime = \"10s\"\nfencing = \"stonith\"") + `
[[fence]]
kind = "qemu"
qmp = "/run/tandem/qmp-{target}.sock"
action = "system_reset"

[[fence]]
kind = "fence_agent"
targets = ["server1"]
agent = "fence_virsh"
options = { ip = "10.1.0.1", username = "admin", port = 22 }
peer_option = "plug"
action = "reboot"

[[fence]]
kind = "exec"
command = "/usr/local/sbin/pdu-off {peer} && exit 7"
`
	f, err := Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := f.Node("server2")
	want := []FenceSpec{
		{Kind: FenceQEMU, Name: "qemu server1", Target: 0, TargetName: "server1", Socket: "/run/tandem/qmp-server1.sock", Action: "reset"},
		{Kind: FenceAgent, Name: "fence_agent server1", Target: 0, TargetName: "server1", Agent: "fence_virsh",
			Options: map[string]string{"ip": "10.1.0.1", "username": "admin", "port": "22"}, PeerOption: "plug", Action: "reboot"},
		{Kind: FenceExec, Name: "exec server1", Target: 0, TargetName: "server1", Command: "/usr/local/sbin/pdu-off server1 && exit 7"},
	}
	if !reflect.DeepEqual(s2.Fences, want) {
		t.Errorf("server2 fences:\n got %+v\nwant %+v", s2.Fences, want)
	}
	s1, _ := f.Node("server1")
	if len(s1.Fences) != 2 || s1.Fences[0].Socket != "/run/tandem/qmp-server2.sock" || s1.Fences[1].Kind != FenceExec {
		t.Errorf("server1 fences %+v", s1.Fences)
	}
	if !s1.Core.Replication.Fencing {
		t.Error("stonith cluster, but replication does not suspend I/O on losing the peer")
	}
}

func TestAuthkeyFile(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "authkeys")
	write := func(content string, mode os.FileMode) {
		if err := os.WriteFile(keys, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(keys, mode)
	}
	text := edit(t, base, `authkey = "0123456789abcdef"`, `authkey_file = "authkeys"`)
	cfgPath := filepath.Join(dir, "tandem.toml")

	write("# comment\nauth 2\n1 crc\n2 sha1 TheQuickBrownFox\n", 0o600)
	f, err := Parse(cfgPath, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := f.Node("server1"); string(s.Key) != "TheQuickBrownFox" {
		t.Errorf("key %q", s.Key)
	}

	for _, tc := range []struct {
		content string
		mode    os.FileMode
		msg     string
	}{
		{"auth 1\n1 sha1 TheQuickBrownFox\n", 0o644, "has mode 0644: other users can read the key; run chmod 600"},
		{"auth 1\n1 crc\n", 0o600, "key 1 is crc, which authenticates nothing"},
		{"auth 3\n1 sha1 TheQuickBrownFox\n", 0o600, "auth 3, but no key 3 is defined"},
		{"1 sha1 TheQuickBrownFox\n", 0o600, `no "auth N" line`},
	} {
		write(tc.content, tc.mode)
		_, err := Parse(cfgPath, []byte(text))
		if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), "tandem.toml:4: cluster.authkey_file: ") {
			t.Errorf("%q mode %o: %v", tc.content, tc.mode, err)
		}
	}
}

func TestPositions(t *testing.T) {
	text := `# comment [not.a.table]
top = 1
[a]
x = """multi
line = 1
"""
y = [
  "a", # [x]
  { k = 1 },
]
z = { p = "}", q = { r = 2 } }
[[b]]
m = 1
[[b]]
m = 2
[b.c]
n = 'lit # not a comment'
"quoted.key" = 3
`
	p := scanPositions([]byte(text))
	for path, line := range map[string]int{
		"top": 2, "a": 3, "a.x": 4, "a.y": 7, "a.z": 11, "a.z.p": 11, "a.z.q.r": 11,
		"b[0]": 12, "b[0].m": 13, "b[1]": 14, "b[1].m": 15, "b[1].c": 16, "b[1].c.n": 17, "b[1].c.quoted.key": 18,
		"b[1].c.missing": 16, "b": 12, "nothing": 0,
	} {
		if got := p.lineOf(path); got != line {
			t.Errorf("%s: line %d, want %d", path, got, line)
		}
	}
	if _, ok := p.line["line"]; ok {
		t.Error("a line inside a multi-line string was taken for a key")
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"deadtime", "dedtime", 1}, {"keepalive", "keeaplive", 1}, {"abc", "xyz", 3}, {"", "abc", 3}} {
		if got := editDistance(tc.a, tc.b); got != tc.d {
			t.Errorf("%q %q: %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
	if s, ok := closest("Dead-Time", []string{"keepalive", "deadtime"}); !ok || s != "deadtime" {
		t.Errorf("closest: %q %v", s, ok)
	}
	if _, ok := closest("colour", []string{"keepalive", "deadtime"}); ok {
		t.Error("closest suggested a different word")
	}
}

// TestNodeByHostname: without a name, Node finds this machine by hostname.
func TestNodeByHostname(t *testing.T) {
	h, err := os.Hostname()
	short, _, _ := strings.Cut(h, ".")
	if err != nil || !nameRE.MatchString(short) || short == "server2" {
		t.Skipf("this machine's hostname %q (%v) cannot stand in for server1", h, err)
	}
	f, err := Parse("test.toml", []byte(strings.Replace(base, `name = "server1"`, `name = "`+short+`"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Node("")
	if err != nil || s.Name != short || s.ID != 0 {
		t.Fatalf("Node(\"\") = %+v, %v", s, err)
	}
}
