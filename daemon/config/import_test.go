package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"tandem/daemon/resource"
	"tandem/daemon/transport"
	"tandem/internal/node"
	"tandem/internal/repl"
)

func classic(fstab bool) ImportFiles {
	f := ImportFiles{
		HaCf:        "testdata/classic/ha.cf",
		Haresources: "testdata/classic/haresources",
		Authkeys:    "testdata/classic/authkeys",
		DrbdConf:    "testdata/classic/drbd.conf",
	}
	if fstab {
		f.Fstab = "testdata/classic/fstab"
	}
	return f
}

// importAndLoad imports and loads the result, failing the test on either.
func importAndLoad(t *testing.T, files ImportFiles) (*File, []string, string) {
	t.Helper()
	out, notes, err := Import(files)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	f, err := Parse("imported.toml", out)
	if err != nil {
		t.Fatalf("the import does not load: %v\n%s", err, out)
	}
	return f, notes, string(out)
}

func wantNotes(t *testing.T, notes []string, want ...string) {
	t.Helper()
	all := strings.Join(notes, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			t.Errorf("no note says %q; notes:\n%s", w, all)
		}
	}
}

// TestImportSeed: the tutorial's classic setup — server1/server2,
// `server1 IPaddr::192.168.1.5/24 datadisk::drbd0 sendmail`, deadtime 120,
// bcast eth0 and serial /dev/ttyS0 — converts into a file that loads and
// says the same things.
func TestImportSeed(t *testing.T) {
	f, notes, text := importAndLoad(t, classic(false))
	if !reflect.DeepEqual(f.NodeNames(), []string{"server1", "server2"}) || f.Cluster != "r0" {
		t.Fatalf("nodes %v cluster %q", f.NodeNames(), f.Cluster)
	}
	s, err := f.Node("server1")
	if err != nil {
		t.Fatal(err)
	}
	c := s.Core
	if c.Keepalive != 2*time.Second || c.Deadtime != 120*time.Second || c.Warntime != 10*time.Second ||
		c.Initdead != 240*time.Second || !c.AutoFailback || c.Preferred != 0 || c.Fencing != node.FenceNone {
		t.Errorf("timings and policy: %+v", c)
	}
	if len(s.UDP) != 1 || s.UDP[0].Mode != transport.Broadcast || s.UDP[0].Interface != "eth0" || s.UDP[0].Port != 694 {
		t.Errorf("bcast medium: %+v", s.UDP)
	}
	if len(s.Serial) != 1 || s.Serial[0].Device != "/dev/ttyS0" || s.Serial[0].Baud != 19200 {
		t.Errorf("serial medium: %+v", s.Serial)
	}
	var group []string
	for _, r := range c.Group {
		group = append(group, r.Name)
	}
	if !reflect.DeepEqual(group, []string{"disk", "ip:192.168.1.5/24", "service:sendmail"}) {
		t.Errorf("group %v", group)
	}
	if svc := s.Resources[2].Agent.Service; svc == nil || svc.Kind != resource.LSB || svc.Name != "sendmail" {
		t.Errorf("sendmail: %+v", s.Resources[2])
	}
	r := c.Replication
	if r.Protocol != repl.ProtocolC || r.ResyncRate != 10<<20/4096 || r.AfterSB0 != repl.DiscardZeroChanges ||
		r.AfterSB1 != repl.DiscardSecondary || r.AfterSB2 != repl.SB2Disconnect || r.OnIOError != repl.Detach ||
		r.PingInterval != 2*time.Second || r.Timeout != 6*time.Second {
		t.Errorf("replication %+v", r)
	}
	if d := s.Disk; d.Backing != "/dev/sda3" || d.MetaDisk != "" || d.NBDDevice != "/dev/nbd0" || d.Listen != "10.0.0.1:7788" || d.Peer != "10.0.0.2:7788" {
		t.Errorf("disk %+v", d)
	}
	if string(s.Key) != "PutYourSuperSecretKeyHere" {
		t.Errorf("key %q", s.Key)
	}
	wantNotes(t, notes,
		"ha.cf:2: logfacility: no equivalent",
		"ha.cf:14: respawn /usr/lib/heartbeat/ipfail: ipfail",
		"ha.cf:15: ping: no equivalent",
		"haresources:2: datadisk::drbd0 moved to the front of the group",
		"pass --fstab",
		"sendmail: imported as the init script /etc/init.d/sendmail",
		"drbd.conf:39: startup wfc-timeout",
		"drbd.conf:43: handlers split-brain",
		"drbd.conf:33: shared-secret: the replication link is authenticated with the cluster key from authkeys",
	)
	if !strings.Contains(text, "deadtime = \"120s\" # ha.cf deadtime 120") {
		t.Errorf("the output does not say where deadtime came from:\n%s", text)
	}
}

// TestImportSeedWithFstab: datadisk's filesystem comes from fstab.
func TestImportSeedWithFstab(t *testing.T) {
	f, notes, _ := importAndLoad(t, classic(true))
	s, _ := f.Node("server2")
	if len(s.Resources) != 4 || s.Resources[1].Name != "fs:/replicated" {
		t.Fatalf("resources %+v", s.Resources)
	}
	want := resource.FSSpec{Device: "/dev/nbd0", Mountpoint: "/replicated", FSType: "ext4", Options: "noatime"}
	if *s.Resources[1].Agent.FS != want {
		t.Errorf("fs %+v", *s.Resources[1].Agent.FS)
	}
	wantNotes(t, notes, "fstab:3: /dev/drbd0 on /replicated is now a [[resource]] kind = \"fs\"")
}

// TestImportDrbd84: includes, common merged under the resource's own
// options, 8.4 spellings, ucast and mcast, and what cannot be carried over.
func TestImportDrbd84(t *testing.T) {
	dir := "testdata/classic/drbd84/"
	f, notes, text := importAndLoad(t, ImportFiles{HaCf: dir + "ha.cf", Haresources: dir + "haresources",
		Authkeys: dir + "authkeys", DrbdConf: dir + "drbd.conf"})
	s, err := f.Node("beta")
	if err != nil {
		t.Fatal(err)
	}
	c := s.Core
	if c.Keepalive != 500*time.Millisecond || c.Deadtime != 5*time.Second || c.Preferred != 0 || !c.AutoFailback {
		t.Errorf("cluster %+v", c)
	}
	r := c.Replication
	if r.Protocol != repl.ProtocolB || r.ALSlots != 1237 || r.ResyncRate != 40<<20/4096 || !r.CsumResync {
		t.Errorf("replication %+v", r)
	}
	if d := s.Disk; d.MetaDisk != "/dev/vdc" || d.NBDDevice != "/dev/nbd1" || d.Listen != "192.168.122.12:7789" || d.PullAhead || d.DataIntegrity != "crc32c" {
		t.Errorf("disk %+v", d)
	}
	var modes []string
	for _, u := range s.UDP {
		modes = append(modes, u.Mode.String()+" "+u.Interface)
	}
	if !reflect.DeepEqual(modes, []string{"mcast eth0", "ucast eth1"}) {
		t.Errorf("media %v", modes)
	}
	if u := s.UDP[1]; u.Bind != "192.168.122.12" || !reflect.DeepEqual(u.Peers, []transport.Peer{{Node: 0, Addr: "192.168.122.11:694"}}) {
		t.Errorf("ucast %+v", u)
	}
	wantRes := []string{"disk", "fs:/srv", "ip:10.0.0.50/24", "service:apache"}
	var got []string
	for _, r := range s.Resources {
		got = append(got, r.Name)
	}
	if !reflect.DeepEqual(got, wantRes) {
		t.Errorf("group %v", got)
	}
	if ip := s.Resources[2].Agent.IP; ip.Interface != "eth0" {
		t.Errorf("ip %+v", ip)
	}
	if svc := s.Resources[3].Agent.Service; svc.Dir != "/etc/ha.d/resource.d" || svc.Name != "apache" ||
		!reflect.DeepEqual(svc.Args, []string{"/etc/apache2/apache2.conf"}) {
		t.Errorf("apache %+v", svc)
	}
	if len(s.Key) != 48 {
		t.Errorf("crc authkeys should give a fresh 24-byte hex key, got %q", s.Key)
	}
	wantNotes(t, notes,
		"ha.cf:7: auto_failback legacy",
		"ha.cf:8: stonith_host * external/ipmi: Heartbeat STONITH plugins have no equivalent",
		"haresources:4: a second resource group (preferring beta)",
		"r0.res:3: meta-disk /dev/vdc[0]: indexed external metadata",
		"global_common.conf:10: fencing resource-only",
		"global_common.conf:14: on-congestion pull-ahead: only meaningful with protocol A (this resource uses B)",
		"global_common.conf:17: net allow-two-primaries",
		"global_common.conf:4: handlers fence-peer",
		"authkeys: line 2: key 3 is crc",
		"ha.cf:5: ucast eth2 10.9.9.9: no node has this address",
		"no address of a node is known on eth2; the medium was left out",
	)
	if strings.Contains(strings.Join(notes, "\n"), "secretpassword") || strings.Contains(text, "secretpassword") {
		t.Error("the STONITH password was copied into the notes or the file")
	}
}

func TestImportRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hacf := write("ha.cf", "node a b\nbcast eth0\n")
	for _, tc := range []struct {
		name  string
		files ImportFiles
		msg   string
		toml  bool // the TOML is still returned
	}{
		{"no ha.cf", ImportFiles{}, "the ha.cf file is required", false},
		{"missing file", ImportFiles{HaCf: filepath.Join(dir, "nope")}, "no such file", false},
		{"drbd.conf section not closed", ImportFiles{HaCf: hacf, DrbdConf: write("d1.conf", "resource r0 {\n on a {\n disk /dev/sdb;\n")}, "d1.conf: a section is not closed", false},
		{"drbd.conf statement without ;", ImportFiles{HaCf: hacf, DrbdConf: write("d2.conf", "resource r0 {\n protocol C\n}\n")}, `d2.conf:2: "protocol C" lacks its ';'`, false},
		{"drbd.conf unclosed string", ImportFiles{HaCf: hacf, DrbdConf: write("d3.conf", "resource r0 {\n net { shared-secret \"abc; }\n}\n")}, `d3.conf:2: a string is not closed`, false},
		{"drbd.conf include loop", ImportFiles{HaCf: hacf, DrbdConf: write("d4.conf", "include \"d4.conf\";\n")}, `includes nest too deep`, false},
		{"authkeys without auth", ImportFiles{HaCf: hacf, Authkeys: write("ak", "1 sha1 abcdefghij\n")}, `no "auth N" line`, false},
		{"no key anywhere", ImportFiles{HaCf: hacf}, "no authentication key", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := Import(tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want %q", err, tc.msg)
			}
			if (out != nil) != tc.toml {
				t.Errorf("TOML returned: %v, want %v", out != nil, tc.toml)
			}
		})
	}
}

// TestImportHeartbeatOnly: ha.cf and authkeys alone make a cluster
// without replication.
func TestImportHeartbeatOnly(t *testing.T) {
	dir := t.TempDir()
	hacf := filepath.Join(dir, "ha.cf")
	os.WriteFile(hacf, []byte("keepalive 1\ndeadtime 10\nnode a\nnode b\nserial /dev/ttyS1\nbaud 38400\nudpport 695\nbcast eth1 eth2\n"), 0o600)
	ak := filepath.Join(dir, "authkeys")
	os.WriteFile(ak, []byte("auth 2\n2 md5 a-secret-of-some-length\n"), 0o600)
	f, notes, _ := importAndLoad(t, ImportFiles{HaCf: hacf, Authkeys: ak})
	s, _ := f.Node("b")
	if s.Disk != nil || s.Core.Replication != nil || len(s.Serial) != 1 || s.Serial[0].Baud != 38400 || len(s.UDP) != 2 || s.UDP[1].Port != 695 {
		t.Errorf("setup %+v", s)
	}
	wantNotes(t, notes, "key 2 used md5; Tandem authenticates with HMAC-SHA256 using the same secret")
}

func TestHaTimeMaskBytes(t *testing.T) {
	for in, want := range map[string]int{"255.255.255.0": 24, "255.255.0.0": 16, "0.0.0.0": 0, "255.0.255.0": -1} {
		if got := maskBits(netip.MustParseAddr(in)); got != want {
			t.Errorf("maskBits(%s) = %d, want %d", in, got, want)
		}
	}
	for in, want := range map[string]string{"2": "2s", "0.5": "0.5s", "500ms": "500ms", "3s": "3s", "x": ""} {
		if got, _ := haTime(in); got != want {
			t.Errorf("haTime(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		s string
		n uint64
	}{{"10M", 10 << 20}, {"100", 100 << 10}, {"8s", 4096}, {"1G", 1 << 30}} {
		if n, ok := drbdBytes(tc.s, 'k'); !ok || n != tc.n {
			t.Errorf("drbdBytes(%q) = %d, want %d", tc.s, n, tc.n)
		}
	}
}
