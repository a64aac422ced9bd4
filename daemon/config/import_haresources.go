package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// heartbeatScripts are the scripts Heartbeat shipped in
// /etc/ha.d/resource.d; a name not among them is an init script.
var heartbeatScripts = map[string]bool{
	"AudibleAlarm": true, "Delay": true, "ICP": true, "IPsrcaddr": true, "IPv6addr": true, "LVM": true,
	"LinuxSCSI": true, "MailTo": true, "OCF": true, "Raid1": true, "SendArp": true, "ServeRAID": true,
	"WAS": true, "WinPopup": true, "Xinetd": true, "apache": true, "db2": true, "ids": true, "portblock": true,
}

func (im *importer) readHaresources(name string, data []byte) {
	groups := 0
	lines := strings.Split(string(data), "\n")
	for i := 0; i < len(lines); i++ {
		start := i
		line := lines[i]
		// A trailing backslash continues the line.
		for strings.HasSuffix(strings.TrimRight(line, " \t"), "\\") && i+1 < len(lines) {
			line = strings.TrimSuffix(strings.TrimRight(line, " \t"), "\\") + " " + lines[i+1]
			i++
		}
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, start+1)
		groups++
		if groups > 1 {
			im.note(where, "a second resource group (preferring %s): Tandem runs one group per cluster; not imported — give it a cluster of its own", f[0])
			continue
		}
		if len(im.nodes) > 0 && !contains2(im.nodes, f[0]) {
			im.note(where, "%s is not one of ha.cf's nodes (%s)", f[0], strings.Join(im.nodes, ", "))
		}
		im.preferred = f[0]
		im.cluster.set("preferred", quote(f[0]), "first word of haresources")
		for k, tok := range f[1:] {
			im.resource(where, tok, k)
		}
	}
	if groups == 0 {
		im.note(name, "no resource group; the file has an empty group")
	}
}

// resource converts one haresources word.
func (im *importer) resource(where, tok string, pos int) {
	parts := strings.Split(tok, "::")
	name, args := parts[0], parts[1:]
	switch name {
	case "IPaddr", "IPaddr2":
		im.ipResource(where, tok, args)
	case "datadisk", "drbddisk":
		if im.diskRes != nil {
			im.note(where, "%s: a second replicated disk; Tandem replicates one disk per cluster; not imported", tok)
			return
		}
		s := section{header: "[[resource]]", comment: "haresources " + tok + ": the replicated disk, always first"}
		s.set("kind", quote("disk"), "")
		im.diskRes, im.diskFrom = &s, name
		if len(args) > 0 {
			im.diskDev = args[0]
			if name == "datadisk" && !strings.HasPrefix(im.diskDev, "/") {
				im.diskDev = "/dev/" + im.diskDev
			}
		}
		if pos > 0 {
			im.note(where, "%s moved to the front of the group: the replicated disk must be promoted before anything else starts", tok)
		}
		if name == "datadisk" {
			im.note(where, "datadisk also mounted the filesystem that /etc/fstab lists for %s; Tandem needs it as a [[resource]] kind = \"fs\" (pass --fstab to take it from there)", im.diskDev)
		}
	case "Filesystem":
		if len(args) < 3 {
			im.note(where, "%s: want Filesystem::device::mountpoint::fstype; not imported", tok)
			return
		}
		s := section{header: "[[resource]]", comment: "haresources " + tok}
		s.set("kind", quote("fs"), "")
		if !strings.HasPrefix(args[0], "/dev/drbd") {
			im.note(where, "%s: %s is not a DRBD device, and Tandem mounts only the replicated device; not imported", tok, args[0])
			return
		}
		s.set("mountpoint", quote(args[1]), "")
		s.set("fstype", quote(args[2]), "")
		if len(args) > 3 {
			s.set("options", quote(strings.Join(args[3:], ",")), "")
		}
		im.group = append(im.group, s)
		im.hasFS = true
		im.fsDevice, im.fsWhere = args[0], where
	default:
		s := section{header: "[[resource]]", comment: "haresources " + tok}
		s.set("kind", quote("service"), "")
		if heartbeatScripts[name] {
			s.set("lsb", quote("/etc/ha.d/resource.d/"+name), "")
			im.note(where, "%s: Heartbeat's own resource script, run as an LSB script from /etc/ha.d/resource.d (keep that directory, or replace it)", tok)
		} else {
			s.set("lsb", quote(name), "/etc/init.d/"+name)
			im.note(where, "%s: imported as the init script /etc/init.d/%s; if it runs under systemd, write systemd = %q instead of lsb", tok, name, name+".service")
		}
		if len(args) > 0 {
			s.set("args", quoteAll(args), "")
		}
		im.group = append(im.group, s)
	}
}

// ipResource reads IPaddr's argument: address[/netmask[/interface[/broadcast]]].
func (im *importer) ipResource(where, tok string, args []string) {
	if len(args) == 0 {
		im.note(where, "%s: no address; not imported", tok)
		return
	}
	f := strings.Split(args[0], "/")
	addr, err := netip.ParseAddr(f[0])
	if err != nil {
		im.note(where, "%s: %q is not an address; not imported", tok, f[0])
		return
	}
	bits := -1
	if len(f) > 1 && f[1] != "" {
		if n, err := strconv.Atoi(f[1]); err == nil {
			bits = n
		} else if m, err := netip.ParseAddr(f[1]); err == nil && m.Is4() {
			bits = maskBits(m)
		}
		if bits < 0 || bits > addr.BitLen() {
			im.note(where, "%s: %q is not a netmask; not imported", tok, f[1])
			return
		}
	}
	if bits < 0 {
		bits = 24
		if addr.Is6() {
			bits = 64
		}
		im.note(where, "%s: no netmask given (Heartbeat took it from the interface's network); assumed /%d — check it", tok, bits)
	}
	s := section{header: "[[resource]]", comment: "haresources " + tok}
	s.set("kind", quote("ip"), "")
	s.set("address", quote(netip.PrefixFrom(addr, bits).String()), "")
	if len(f) > 2 && f[2] != "" {
		s.set("interface", quote(f[2]), "")
	}
	if len(f) > 3 {
		im.note(where, "%s: the broadcast address %s is not configurable; Tandem derives it from the prefix", tok, f[3])
	}
	im.group = append(im.group, s)
}

// maskBits is the prefix length of a dotted netmask, or -1.
func maskBits(m netip.Addr) int {
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n := 0
	for v&(1<<31) != 0 {
		n++
		v <<= 1
	}
	if v != 0 {
		return -1
	}
	return n
}
