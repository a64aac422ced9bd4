package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// haCfIgnored are ha.cf directives with no Tandem equivalent, and why.
var haCfIgnored = map[string]string{
	"logfacility":             "Tandem logs to standard error (the journal under systemd)",
	"logfile":                 "Tandem logs to standard error (the journal under systemd)",
	"debugfile":               "Tandem logs to standard error (the journal under systemd)",
	"debug":                   "Tandem's log level is set on the daemon's command line",
	"use_logd":                "Tandem logs to standard error (the journal under systemd)",
	"conn_logd_time":          "Tandem logs to standard error (the journal under systemd)",
	"watchdog":                "Tandem does not drive a watchdog device; use systemd's WatchdogSec",
	"ping":                    "ping nodes are not supported; a witness node (fencing = \"witness\") is Tandem's tiebreaker",
	"ping_group":              "ping nodes are not supported; a witness node (fencing = \"witness\") is Tandem's tiebreaker",
	"deadping":                "ping nodes are not supported; a witness node (fencing = \"witness\") is Tandem's tiebreaker",
	"hopfudge":                "Tandem does not relay heartbeats",
	"realtime":                "scheduling priority is set by the service manager",
	"rtprio":                  "scheduling priority is set by the service manager",
	"coredumps":               "core dumps are the service manager's business",
	"compression":             "heartbeats are small and not compressed",
	"traditional_compression": "heartbeats are small and not compressed",
	"compression_threshold":   "heartbeats are small and not compressed",
	"msgfmt":                  "Tandem has one binary message format",
	"uuidfrom":                "nodes are known by name",
	"autojoin":                "the nodes are those of the configuration file",
	"apiauth":                 "Tandem has no client API to authorise; the control socket is root's",
	"max_rexmit_delay":        "heartbeats are not retransmitted",
	"generation_method":       "not needed",
	"memreserve":              "not needed",
	"udp":                     "old synonym of bcast: write the medium by hand",
}

func (im *importer) readHaCf(name string, data []byte) {
	im.cluster = section{header: "[cluster]"}
	im.ucast = map[string][]ucastAddr{}
	type pending struct {
		where string
		f     []string
	}
	var stonith []pending
	for i, line := range strings.Split(string(data), "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, i+1)
		dir, args := strings.ToLower(f[0]), f[1:]
		if len(args) == 0 {
			im.note(where, "%s has no value; skipped", dir)
			continue
		}
		switch dir {
		case "keepalive", "deadtime", "warntime", "initdead":
			d, ok := haTime(args[0])
			if !ok {
				im.note(where, "%s %s: not a time; skipped", dir, args[0])
				continue
			}
			im.cluster.set(dir, quote(d), "ha.cf "+dir+" "+args[0])
		case "udpport":
			im.udpport = args[0]
		case "baud":
			im.baud = args[0]
		case "bcast":
			for _, iface := range args {
				s := section{header: "[[heartbeat]]", comment: "ha.cf bcast " + iface}
				s.set("kind", quote("bcast"), "")
				s.set("interface", quote(iface), "")
				im.media = append(im.media, s)
			}
		case "mcast":
			if len(args) < 5 {
				im.note(where, "mcast wants: interface group port ttl loop; skipped")
				continue
			}
			s := section{header: "[[heartbeat]]", comment: "ha.cf " + strings.Join(f, " ")}
			s.set("kind", quote("mcast"), "")
			s.set("interface", quote(args[0]), "")
			s.set("group", quote(args[1]), "")
			s.set("port", args[2], "")
			s.set("ttl", args[3], "")
			s.set("loop", fmt.Sprint(args[4] == "1"), "")
			im.media = append(im.media, s)
		case "ucast":
			if len(args) < 2 {
				im.note(where, "ucast wants: interface address; skipped")
				continue
			}
			iface := args[0]
			if _, seen := im.ucast[iface]; !seen {
				im.ucastAt = append(im.ucastAt, iface)
			}
			for _, ip := range args[1:] {
				if _, err := netip.ParseAddr(ip); err != nil {
					im.note(where, "ucast %s %s: Tandem wants addresses here, not host names; give the address in the medium's addresses table", iface, ip)
					continue
				}
				im.ucast[iface] = append(im.ucast[iface], ucastAddr{ip: ip, where: where})
			}
		case "serial":
			for _, dev := range args {
				s := section{header: "[[heartbeat]]", comment: "ha.cf serial " + dev}
				s.set("kind", quote("serial"), "")
				s.set("device", quote(dev), "")
				im.media = append(im.media, s)
			}
		case "node":
			im.nodes = append(im.nodes, args...)
			if im.nodeLine == "" {
				im.nodeLine = where
			}
		case "auto_failback":
			switch strings.ToLower(args[0]) {
			case "on", "yes", "true":
				im.cluster.set("auto_failback", "true", "ha.cf auto_failback on")
			case "off", "no", "false":
				im.cluster.set("auto_failback", "false", "ha.cf auto_failback off")
			case "legacy":
				im.cluster.set("auto_failback", "true", "ha.cf auto_failback legacy")
				im.note(where, "auto_failback legacy means on while all nodes run the same version; imported as true")
			default:
				im.note(where, "auto_failback %s: want on or off; skipped", args[0])
			}
		case "nice_failback":
			on := strings.ToLower(args[0]) == "on"
			im.cluster.set("auto_failback", fmt.Sprint(!on), "ha.cf nice_failback "+args[0])
		case "stonith", "stonith_host":
			stonith = append(stonith, pending{where, f})
		case "respawn":
			prog := args[len(args)-1]
			if strings.HasSuffix(prog, "/ipfail") {
				im.note(where, "respawn %s: ipfail (failover on lost ping nodes) has no equivalent; a witness node is Tandem's tiebreaker", prog)
			} else {
				im.note(where, "respawn %s: Tandem does not start other programs; run it as a systemd unit, or as a service in the group if it belongs to the failover", prog)
			}
		case "crm":
			if v := strings.ToLower(args[0]); v != "off" && v != "no" && v != "false" {
				im.note(where, "crm %s: a CRM (Pacemaker) configuration is not imported; Tandem runs haresources-style groups itself", args[0])
			}
		default:
			if why, ok := haCfIgnored[dir]; ok {
				im.note(where, "%s: no equivalent, skipped (%s)", dir, why)
			} else {
				im.note(where, "%s: unknown directive, skipped", dir)
			}
		}
	}
	if im.udpport != "" && im.udpport != "694" {
		for i := range im.media {
			if k, _ := im.media[i].get("kind"); k == quote("bcast") {
				im.media[i].set("port", im.udpport, "ha.cf udpport")
			}
		}
	}
	if im.baud != "" && im.baud != "19200" {
		for i := range im.media {
			if k, _ := im.media[i].get("kind"); k == quote("serial") {
				im.media[i].set("baud", im.baud, "ha.cf baud")
			}
		}
	}
	for _, s := range stonith {
		// Only the plugin's name: the rest of the line often holds a password.
		im.note(s.where, "%s: Heartbeat STONITH plugins have no equivalent, so fencing stays \"none\"; to fence, add a [[fence]] (kind exec, fence_agent or qemu) for each node and set fencing = \"stonith\" in [cluster]", strings.Join(s.f[:min(3, len(s.f))], " "))
	}
	if len(im.nodes) == 0 {
		im.note(name, "no node lines; the node names are taken from drbd.conf's on sections")
	}
}
