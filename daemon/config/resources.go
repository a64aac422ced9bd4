package config

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"
	"time"

	"tandem/daemon/resource"
	"tandem/internal/node"
	"tandem/internal/proto"
)

// resourceCommon are the keys every kind of resource takes.
var resourceCommon = []string{"kind", "name", "start_timeout", "stop_timeout", "monitor_timeout", "monitor_interval"}

func (b *builder) readResources(raw []rawResource) {
	c := b.c
	names := map[string]string{} // name → path
	if b.replOn {
		first := len(raw) > 0 && raw[0].Kind.v == "disk"
		if !first {
			// Implicit: the replicated disk leads the group, as
			// datadisk::drbd0 does in haresources.
			b.group = append(b.group, node.Resource{Name: "disk"})
			b.specs = append(b.specs, ResourceSpec{Name: "disk", Disk: true})
			names["disk"] = "resource"
		}
	}
	for i := range raw {
		r := &raw[i]
		p := fmt.Sprintf("resource[%d]", i)
		if !r.Kind.set {
			c.fail(p, "resource %d has no kind; write kind = \"ip\", \"fs\", \"service\", \"exec\" or \"disk\"", i+1)
			continue
		}
		kind, ok := c.oneOf(r.Kind, p+".kind", "disk", "ip", "fs", "service", "exec")
		if !ok {
			continue
		}
		c.foreignKeys(p, *r, kind, resourceKindKeys[kind], resourceCommon...)
		res := node.Resource{}
		res.StartTimeout, _ = c.dur(r.StartTimeout, p+".start_timeout", false)
		res.StopTimeout, _ = c.dur(r.StopTimeout, p+".stop_timeout", false)
		res.MonitorTimeout, _ = c.dur(r.MonitorTimeout, p+".monitor_timeout", false)
		res.MonitorInterval, _ = c.dur(r.MonitorInterval, p+".monitor_interval", true)
		var spec ResourceSpec
		switch kind {
		case "disk":
			spec = b.diskResource(r, p, i)
		case "ip":
			spec = b.ipResource(r, p)
		case "fs":
			spec = b.fsResource(r, p)
		case "service":
			spec = b.serviceResource(r, p)
		case "exec":
			spec = b.execResource(r, p, res.MonitorInterval)
		}
		if spec.Name == "" {
			continue // refused, and reported
		}
		if s, ok := c.word(r.Name, p+".name", "resource name", spec.Name); ok {
			spec.Name = s
		}
		if prev, dup := names[spec.Name]; dup {
			c.fail(p, "two resources are named %q (the other at line %d); write name = %q in one of them", spec.Name, c.pos.lineOf(prev), spec.Name+"-2")
			continue
		}
		names[spec.Name] = p
		res.Name = spec.Name
		b.group = append(b.group, res)
		b.specs = append(b.specs, spec)
	}
}

func (b *builder) diskResource(r *rawResource, p string, i int) ResourceSpec {
	c := b.c
	if i > 0 {
		c.fail(p+".kind", "the replicated disk is always the group's first member (it must be promoted before anything uses it); move this [[resource]] to the top of the group")
		return ResourceSpec{}
	}
	if r.MonitorInterval.set || r.MonitorTimeout.set {
		c.fail(p+".monitor_interval", "the replicated disk is watched by the replication core, not by monitor operations; remove monitor_interval and monitor_timeout")
		return ResourceSpec{}
	}
	return ResourceSpec{Name: "disk", Disk: true}
}

func (b *builder) ipResource(r *rawResource, p string) ResourceSpec {
	c := b.c
	s, ok := c.str(r.Address, p+".address")
	if !ok {
		if !r.Address.set {
			c.fail(p, "an ip resource needs an address; write address = \"192.168.1.5/24\"")
		}
		return ResourceSpec{}
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		if a, err2 := netip.ParseAddr(s); err2 == nil {
			bits := 24
			if a.Is6() {
				bits = 64
			}
			c.fail(p+".address", "%q has no prefix length, and guessing the netmask is how two sites end up with different broadcasts; write address = \"%s/%d\" (or the right length)", s, a, bits)
		} else {
			c.fail(p+".address", "%q is not an address with a prefix length; write address = \"192.168.1.5/24\"", s)
		}
		return ResourceSpec{}
	}
	spec := &resource.IPSpec{Address: pfx.String()}
	if s, ok := c.str(r.Interface, p+".interface"); ok {
		if !validIface(s) {
			c.fail(p+".interface", "%q is not a network interface name; write interface = \"eth0\" or leave it out", s)
		}
		spec.Interface = s
	}
	return ResourceSpec{Name: "ip:" + pfx.String(), Agent: resource.Spec{IP: spec}}
}

func (b *builder) fsResource(r *rawResource, p string) ResourceSpec {
	c := b.c
	if b.fsLine == "" {
		b.fsLine = p
	}
	spec := &resource.FSSpec{}
	var ok bool
	if spec.Mountpoint, ok = c.absPath(r.Mountpoint, p+".mountpoint", "/replicated"); !ok {
		if !r.Mountpoint.set {
			c.fail(p, "an fs resource needs a mountpoint; write mountpoint = \"/replicated\"")
		}
		return ResourceSpec{}
	}
	if spec.FSType, ok = c.word(r.FSType, p+".fstype", "filesystem type", "ext4"); !ok {
		if !r.FSType.set {
			c.fail(p, "an fs resource needs its filesystem type; write fstype = \"ext4\"")
		}
		return ResourceSpec{}
	}
	spec.Options, _ = c.word(r.Options, p+".options", "list of mount options", "noatime")
	spec.Fsck, _ = c.boolean(r.Fsck, p+".fsck")
	spec.ForceUnmount, _ = c.boolean(r.ForceUnmount, p+".force_unmount")
	spec.Device, _ = c.absPath(r.Device, p+".device", "/dev/nbd0")
	if !b.replOn {
		c.fail(p, "an fs resource mounts the replicated device, but no node has a disk to replicate; write disk = \"/dev/sdb1\" and nbd_device = \"/dev/nbd0\" in each data [[node]]")
		return ResourceSpec{}
	}
	for i := range b.nodes {
		n := &b.nodes[i]
		switch {
		case n.witness || n.id == proto.NoNode:
		case n.nbdDevice == "" && c.failed(n.path+".nbd_device"):
		case n.nbdDevice == "" && spec.Device != "" && regexpNBD.MatchString(spec.Device):
			// The fs names the device: that is the node's NBD device.
			n.nbdDevice = spec.Device
		case n.nbdDevice == "":
			c.fail(n.path, "%s has no nbd_device, but the fs resource at line %d mounts the replicated device; write nbd_device = \"/dev/nbd0\" in its [[node]]", b.label(n), c.pos.lineOf(p))
		case spec.Device != "" && spec.Device != n.nbdDevice:
			c.fail(p+".device", "%q is not the replicated device (%s on %s): a filesystem elsewhere would not follow the data; write device = %q or leave it out", spec.Device, n.nbdDevice, b.label(n), n.nbdDevice)
		}
	}
	return ResourceSpec{Name: "fs:" + spec.Mountpoint, Agent: resource.Spec{FS: spec}}
}

func (b *builder) serviceResource(r *rawResource, p string) ResourceSpec {
	c := b.c
	n := 0
	for _, v := range []value{r.Systemd, r.LSB, r.OCF} {
		if v.set {
			n++
		}
	}
	if n != 1 {
		c.fail(p, "a service resource names exactly one of systemd, lsb and ocf (it has %d); write e.g. systemd = \"sendmail.service\" or lsb = \"sendmail\"", n)
		return ResourceSpec{}
	}
	spec := &resource.ServiceSpec{}
	switch {
	case r.Systemd.set:
		s, ok := c.word(r.Systemd, p+".systemd", "systemd unit", "sendmail.service")
		if !ok {
			return ResourceSpec{}
		}
		if strings.Contains(s, "/") {
			c.fail(p+".systemd", "%q is a path, not a unit name; write systemd = %q", s, path.Base(s))
			return ResourceSpec{}
		}
		spec.Kind, spec.Name = resource.Systemd, s
	case r.LSB.set:
		s, ok := c.word(r.LSB, p+".lsb", "init script", "sendmail")
		if !ok {
			return ResourceSpec{}
		}
		if strings.Contains(s, "/") && !strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") {
			c.fail(p+".lsb", "%q is neither a script name under /etc/init.d nor an absolute path; write lsb = %q", s, path.Base(s))
			return ResourceSpec{}
		}
		spec.Kind, spec.Name = resource.LSB, path.Base(s)
		if strings.HasPrefix(s, "/") {
			spec.Dir = path.Dir(s)
		}
	default:
		s, ok := c.word(r.OCF, p+".ocf", "OCF agent", "heartbeat:apache")
		if !ok {
			return ResourceSpec{}
		}
		prov, typ, found := strings.Cut(strings.TrimPrefix(s, "ocf:"), ":")
		if !found || prov == "" || typ == "" || strings.ContainsAny(prov+typ, ":/") {
			c.fail(p+".ocf", "%q is not PROVIDER:TYPE; write ocf = \"heartbeat:%s\"", s, path.Base(strings.ReplaceAll(s, ":", "/")))
			return ResourceSpec{}
		}
		spec.Kind, spec.Provider, spec.Name = resource.OCF, prov, typ
	}
	if r.Args.set {
		if spec.Kind != resource.LSB {
			c.fail(p+".args", "args are for LSB scripts only (Heartbeat's name::arg1::arg2); remove them")
			return ResourceSpec{}
		}
		spec.Args, _ = c.strList(r.Args, p+".args")
	}
	if r.Params.set {
		if spec.Kind != resource.OCF {
			c.fail(p+".params", "params are for OCF agents only; remove them or use ocf = \"PROVIDER:TYPE\"")
			return ResourceSpec{}
		}
		var keys []string
		keys, spec.Params, _ = c.strMap(r.Params, p+".params")
		for _, k := range keys {
			if !ocfParamRE.MatchString(k) {
				c.fail(p+".params."+k, "%q cannot be an environment variable (OCF_RESKEY_%s); use letters, digits and '_'", k, k)
			}
		}
	}
	return ResourceSpec{Name: "service:" + strings.TrimSuffix(spec.Name, ".service"), Agent: resource.Spec{Service: spec}}
}

var ocfParamRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (b *builder) execResource(r *rawResource, p string, monitorEvery time.Duration) ResourceSpec {
	c := b.c
	spec := &resource.ExecSpec{}
	var ok bool
	for _, k := range []struct {
		v   value
		key string
		dst *string
	}{{r.Start, "start", &spec.Start}, {r.Stop, "stop", &spec.Stop}, {r.Monitor, "monitor", &spec.Monitor}} {
		if !k.v.set {
			continue
		}
		if *k.dst, ok = c.str(k.v, p+"."+k.key); ok && strings.TrimSpace(*k.dst) == "" {
			c.fail(p+"."+k.key, "the %s command is empty; write %s = \"/usr/local/bin/myservice %s\"", k.key, k.key, k.key)
		}
	}
	for _, k := range []struct {
		v   value
		key string
	}{{r.Start, "start"}, {r.Stop, "stop"}} {
		if !k.v.set {
			c.fail(p, "an exec resource needs a %s command; write %s = \"/usr/local/bin/myservice %s\"", k.key, k.key, k.key)
		}
	}
	if monitorEvery > 0 && !r.Monitor.set {
		c.fail(p+".monitor_interval", "there is no monitor command to run; write monitor = \"/usr/local/bin/myservice status\" or remove monitor_interval")
	}
	if spec.Start == "" || spec.Stop == "" {
		return ResourceSpec{}
	}
	spec.Name = path.Base(strings.Fields(spec.Start)[0])
	return ResourceSpec{Name: "exec:" + spec.Name, Agent: resource.Spec{Exec: spec}}
}
