package config

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// ImportFiles names the files of a classic DRBD 8 + Heartbeat 1 setup.
// HaCf is required; an empty name means the file is not read.
type ImportFiles struct {
	// HaCf is Heartbeat's /etc/ha.d/ha.cf: timings, media, nodes.
	HaCf string
	// Haresources is /etc/ha.d/haresources: the preferred node and the
	// resource group.
	Haresources string
	// Authkeys is /etc/ha.d/authkeys: the shared key.
	Authkeys string
	// DrbdConf is /etc/drbd.conf (include lines are followed): disks,
	// addresses, protocol, split-brain policies, resync rate.
	DrbdConf string
	// Fstab is /etc/fstab, read only to find the filesystem the old
	// datadisk script mounted for its device.
	Fstab string
}

// Import converts a classic setup into a Tandem configuration file. notes
// say, one per line with the file and line they come from, what could not
// be carried over and why, and what was assumed. err is set when a file
// cannot be read or parsed, or when the result does not load (the TOML is
// then still returned, for the user to finish by hand).
func Import(files ImportFiles) (toml []byte, notes []string, err error) {
	if files.HaCf == "" {
		return nil, nil, fmt.Errorf("import: the ha.cf file is required (--ha-cf)")
	}
	im := &importer{}
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		return b, nil
	}
	data, err := read(files.HaCf)
	if err != nil {
		return nil, nil, err
	}
	im.readHaCf(files.HaCf, data)
	if files.Authkeys != "" {
		data, err := read(files.Authkeys)
		if err != nil {
			return nil, nil, err
		}
		if err := im.readAuthkeys(files.Authkeys, data); err != nil {
			return nil, im.notes, err
		}
	}
	// haresources before drbd.conf: it says which DRBD resource the
	// group uses.
	if files.Haresources != "" {
		data, err := read(files.Haresources)
		if err != nil {
			return nil, nil, err
		}
		im.readHaresources(files.Haresources, data)
	}
	if files.DrbdConf != "" {
		if err := im.readDrbd(files.DrbdConf); err != nil {
			return nil, im.notes, err
		}
	} else if im.diskRes != nil || im.hasFS {
		im.note(files.Haresources, "the group uses a DRBD disk but no drbd.conf was given (--drbd-conf); the nodes' disk and address must be added by hand")
	}
	if files.Fstab != "" {
		data, err := read(files.Fstab)
		if err != nil {
			return nil, nil, err
		}
		im.readFstab(files.Fstab, data)
	}
	out := im.emit()
	if _, err := Parse("imported.toml", out); err != nil {
		return out, im.notes, fmt.Errorf("the converted configuration does not load yet; fix what these say:\n%w", err)
	}
	return out, im.notes, nil
}

// importer gathers the parts of the new file.
type importer struct {
	notes []string

	nodes     []string // ha.cf node order
	nodeLine  string   // where the nodes came from, for notes
	cluster   section
	media     []section
	ucast     map[string][]ucastAddr // by interface
	ucastAt   []string               // interfaces in order of appearance
	udpport   string
	baud      string
	preferred string

	drbd      *drbdResource
	drbdNodes map[string]*drbdHost

	diskRes  *section // explicit disk resource (datadisk/drbddisk)
	diskDev  string   // the DRBD device it names (/dev/drbd0)
	diskFrom string   // "datadisk" or "drbddisk"
	group    []section
	hasFS    bool
	fsDevice string // the device haresources' Filesystem mounts
	fsWhere  string

	key     string
	keyFrom string
}

type ucastAddr struct {
	ip, where string
}

// section is one table of the output, in order, with comments.
type section struct {
	header  string // "[cluster]", "[[node]]"
	comment string
	kvs     []kv
}

type kv struct {
	key, val, comment string
}

func (s *section) set(key, val, comment string) {
	for i := range s.kvs {
		if s.kvs[i].key == key {
			s.kvs[i] = kv{key, val, comment}
			return
		}
	}
	s.kvs = append(s.kvs, kv{key, val, comment})
}

func (s *section) get(key string) (string, bool) {
	for _, x := range s.kvs {
		if x.key == key {
			return x.val, true
		}
	}
	return "", false
}

func (im *importer) note(where, format string, args ...any) {
	im.notes = append(im.notes, where+": "+fmt.Sprintf(format, args...))
}

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func quoteAll(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func inlineTable(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" = "+quote(m[k]))
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func (im *importer) readAuthkeys(name string, data []byte) error {
	ak, err := parseAuthkeys(data)
	if err != nil {
		if strings.Contains(err.Error(), "is crc") {
			// crc authenticates nothing: make a real key rather than
			// carry the hole over.
			var b [24]byte
			if _, err := rand.Read(b[:]); err != nil {
				return fmt.Errorf("import: %w", err)
			}
			im.key, im.keyFrom = hex.EncodeToString(b[:]), name
			im.note(name, "%v; a new random key was generated (it is in the file: copy the same file to every node)", err)
			return nil
		}
		return fmt.Errorf("import: %s: %w", name, err)
	}
	im.key, im.keyFrom = string(ak.key), name
	if ak.method != "sha1" {
		im.note(name, "key %d used %s; Tandem authenticates with HMAC-SHA256 using the same secret", ak.index, ak.method)
	}
	return nil
}

// readFstab finds the mount of the old datadisk's device.
func (im *importer) readFstab(name string, data []byte) {
	if im.diskFrom != "datadisk" || im.hasFS {
		return
	}
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(strings.SplitN(line, "#", 2)[0])
		if len(f) < 3 || f[0] != im.diskDev {
			continue
		}
		where := fmt.Sprintf("%s:%d", name, i+1)
		fs := section{header: "[[resource]]", comment: "from " + where + " (datadisk mounted it)"}
		fs.set("kind", quote("fs"), "")
		fs.set("mountpoint", quote(f[1]), "")
		fs.set("fstype", quote(f[2]), "")
		if len(f) > 3 {
			if opts := mountOptions(f[3]); opts != "" {
				fs.set("options", quote(opts), "")
			}
		}
		// Right after the disk: datadisk mounted it as part of promoting.
		im.group = append([]section{fs}, im.group...)
		im.hasFS = true
		im.note(where, "%s on %s is now a [[resource]] kind = \"fs\" after the disk; make the fstab line noauto (or remove it) so the boot does not mount the device", im.diskDev, f[1])
		return
	}
}

// mountOptions drops fstab-only words that mean nothing to mount -o.
func mountOptions(s string) string {
	var keep []string
	for _, o := range strings.Split(s, ",") {
		switch o {
		case "defaults", "auto", "noauto", "nofail", "_netdev", "user", "nouser", "users", "":
		default:
			keep = append(keep, o)
		}
	}
	return strings.Join(keep, ",")
}

// emit writes the TOML text.
func (im *importer) emit() []byte {
	var b strings.Builder
	b.WriteString("# Tandem configuration converted by `tandem import` from a Heartbeat + DRBD setup.\n")
	b.WriteString("# Check the notes it printed, then run `tandem check --config FILE`.\n")
	b.WriteString("# The same file goes on every node (mode 0600: it holds the key).\n")
	if im.key != "" {
		im.cluster.set("authkey", quote(im.key), "from "+im.keyFrom)
	}
	// The cluster's name first, where a reader looks for it.
	sort.SliceStable(im.cluster.kvs, func(i, j int) bool { return im.cluster.kvs[i].key == "name" && im.cluster.kvs[j].key != "name" })
	secs := []section{im.cluster}
	secs = append(secs, im.nodeSections()...)
	secs = append(secs, im.media...)
	secs = append(secs, im.ucastMedia()...)
	if im.drbd != nil {
		secs = append(secs, im.drbd.repl)
	}
	if im.diskRes != nil {
		secs = append(secs, *im.diskRes)
	}
	secs = append(secs, im.group...)
	for _, s := range secs {
		if len(s.kvs) == 0 && s.header != "[[resource]]" {
			continue
		}
		b.WriteString("\n")
		if s.comment != "" {
			b.WriteString("# " + s.comment + "\n")
		}
		b.WriteString(s.header + "\n")
		for _, x := range s.kvs {
			line := x.key + " = " + x.val
			if x.comment != "" {
				line += " # " + x.comment
			}
			b.WriteString(line + "\n")
		}
	}
	return []byte(b.String())
}

func (im *importer) nodeSections() []section {
	var out []section
	for _, n := range im.nodes {
		s := section{header: "[[node]]"}
		s.set("name", quote(n), "")
		if h := im.drbdNodes[n]; h != nil {
			if h.address != "" {
				s.set("address", quote(h.address), "replication link ("+h.addressAt+")")
			}
			if h.disk != "" {
				s.set("disk", quote(h.disk), "backing device")
			}
			if h.metaDisk != "" {
				s.set("meta_disk", quote(h.metaDisk), "")
			}
			if h.nbd != "" {
				s.set("nbd_device", quote(h.nbd), "replaces "+h.device)
			}
		}
		out = append(out, s)
	}
	return out
}

// ucastMedia turns ucast lines into one medium per interface, placing
// each address at the node whose replication address it is.
func (im *importer) ucastMedia() []section {
	var out []section
	for _, iface := range im.ucastAt {
		s := section{header: "[[heartbeat]]", comment: "ucast " + iface}
		s.set("kind", quote("ucast"), "")
		s.set("interface", quote(iface), "")
		if im.udpport != "" {
			s.set("port", im.udpport, "udpport")
		}
		addrs := map[string]string{}
		for _, a := range im.ucast[iface] {
			owner := ""
			for _, n := range im.nodes {
				if h := im.drbdNodes[n]; h != nil && h.host == a.ip {
					owner = n
				}
			}
			if owner == "" {
				im.note(a.where, "ucast %s %s: no node has this address in drbd.conf, so which node it belongs to is unknown; it was left out: add it to the medium's addresses = { NODE = %q }", iface, a.ip, a.ip)
				continue
			}
			addrs[owner] = a.ip
		}
		for _, n := range im.nodes {
			if _, ok := addrs[n]; !ok && len(addrs) > 0 && im.drbdNodes[n] != nil && im.drbdNodes[n].host != "" {
				im.note("ucast "+iface, "no ucast address for %s on %s; Tandem uses the host of its replication address (%s)", n, iface, im.drbdNodes[n].host)
			}
		}
		if len(addrs) == 0 {
			im.note("ucast "+iface, "no address of a node is known on %s; the medium was left out", iface)
			continue
		}
		s.set("addresses", inlineTable(addrs), "")
		out = append(out, s)
	}
	return out
}

// haTime converts a Heartbeat time ("2", "500ms", "1.5") to a duration.
func haTime(s string) (string, bool) {
	switch {
	case strings.HasSuffix(s, "ms"), strings.HasSuffix(s, "us"):
		if _, err := strconv.ParseFloat(s[:len(s)-2], 64); err == nil {
			return s, true
		}
	case strings.HasSuffix(s, "s"):
		if _, err := strconv.ParseFloat(s[:len(s)-1], 64); err == nil {
			return s, true
		}
	default:
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return s + "s", true
		}
	}
	return "", false
}
