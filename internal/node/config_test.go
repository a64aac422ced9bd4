package node

import (
	"strings"
	"testing"
	"time"

	"tandem/internal/proto"
)

// validTwoNode is node 0 of a 2-node cluster with a network and a serial medium.
func validTwoNode() Config {
	return Config{
		Self:  0,
		Names: []string{"alpha", "beta"},
		Media: []Medium{
			{ID: 0, Kind: proto.Network, Name: "net0", Peers: []proto.NodeID{1}},
			{ID: 1, Kind: proto.Serial, Name: "serial0", Peers: []proto.NodeID{1}},
		},
		Group: []Resource{{Name: "ip:192.168.1.5/24"}, {Name: "fs:/srv"}},
	}.WithDefaults()
}

// validThreeNode is node self of a cluster with a witness, using witness fencing.
func validThreeNode(self proto.NodeID) Config {
	var peers []proto.NodeID
	for id := proto.NodeID(0); id < 3; id++ {
		if id != self {
			peers = append(peers, id)
		}
	}
	return Config{
		Self:      self,
		Names:     []string{"alpha", "beta", "gamma"},
		IsWitness: self == 2,
		Fencing:   FenceWitness,
		Media: []Medium{
			{ID: 0, Kind: proto.Network, Name: "net0", Peers: peers},
		},
		Group: []Resource{{Name: "ip:192.168.1.5/24"}},
	}.WithDefaults()
}

func TestWithDefaults(t *testing.T) {
	c := Config{Group: []Resource{{Name: "a"}, {Name: "b", StartTimeout: 7 * time.Second}}}.WithDefaults()
	tests := []struct {
		field     string
		got, want any
	}{
		{"Keepalive", c.Keepalive, time.Second},
		{"Deadtime", c.Deadtime, 30 * time.Second},
		{"Warntime", c.Warntime, 15 * time.Second},
		{"Initdead", c.Initdead, 60 * time.Second},
		{"Fencing", c.Fencing, FenceNone},
		{"FenceDelay", c.FenceDelay, 5 * time.Second},
		{"FenceTimeout", c.FenceTimeout, 20 * time.Second},
		{"FenceRetry", c.FenceRetry, 5 * time.Second},
		{"ClockDriftPPM", c.ClockDriftPPM, int64(5000)},
		{"MigrationThreshold", c.MigrationThreshold, 3},
		{"Group[0].StartTimeout", c.Group[0].StartTimeout, 20 * time.Second},
		{"Group[0].StopTimeout", c.Group[0].StopTimeout, 20 * time.Second},
		{"Group[0].MonitorTimeout", c.Group[0].MonitorTimeout, 20 * time.Second},
		{"Group[0].MonitorInterval", c.Group[0].MonitorInterval, time.Duration(0)},
		{"Group[1].StartTimeout (set)", c.Group[1].StartTimeout, 7 * time.Second},
		{"Group[1].StopTimeout", c.Group[1].StopTimeout, 20 * time.Second},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.field, tc.got, tc.want)
		}
	}
}

func TestWithDefaultsDerivesFromDeadtime(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config // only the timing fields are compared
	}{
		{
			name: "deadtime set",
			in:   Config{Deadtime: 10 * time.Second},
			want: Config{Keepalive: time.Second, Deadtime: 10 * time.Second, Warntime: 5 * time.Second, Initdead: 20 * time.Second},
		},
		{
			name: "everything set is kept",
			in:   Config{Keepalive: 2 * time.Second, Deadtime: 12 * time.Second, Warntime: 3 * time.Second, Initdead: 40 * time.Second},
			want: Config{Keepalive: 2 * time.Second, Deadtime: 12 * time.Second, Warntime: 3 * time.Second, Initdead: 40 * time.Second},
		},
		{
			name: "warntime set, initdead derived",
			in:   Config{Warntime: 4 * time.Second},
			want: Config{Keepalive: time.Second, Deadtime: 30 * time.Second, Warntime: 4 * time.Second, Initdead: 60 * time.Second},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.WithDefaults()
			if got.Keepalive != tc.want.Keepalive || got.Deadtime != tc.want.Deadtime ||
				got.Warntime != tc.want.Warntime || got.Initdead != tc.want.Initdead {
				t.Errorf("keepalive/deadtime/warntime/initdead = %v/%v/%v/%v, want %v/%v/%v/%v",
					got.Keepalive, got.Deadtime, got.Warntime, got.Initdead,
					tc.want.Keepalive, tc.want.Deadtime, tc.want.Warntime, tc.want.Initdead)
			}
		})
	}
}

func TestWithDefaultsKeepsExplicitValues(t *testing.T) {
	in := Config{
		Fencing:            FenceStonith,
		FenceDelay:         time.Second,
		FenceTimeout:       2 * time.Second,
		FenceRetry:         3 * time.Second,
		ClockDriftPPM:      100,
		MigrationThreshold: 1,
	}
	got := in.WithDefaults()
	if got.Fencing != FenceStonith || got.FenceDelay != time.Second || got.FenceTimeout != 2*time.Second ||
		got.FenceRetry != 3*time.Second || got.ClockDriftPPM != 100 || got.MigrationThreshold != 1 {
		t.Errorf("explicit values overwritten: %+v", got)
	}
}

func TestWithDefaultsDoesNotAliasGroup(t *testing.T) {
	group := []Resource{{Name: "a"}}
	in := Config{Group: group}
	out := in.WithDefaults()
	if group[0].StartTimeout != 0 {
		t.Errorf("caller's Group modified: StartTimeout = %v", group[0].StartTimeout)
	}
	if out.Group[0].StartTimeout != 20*time.Second {
		t.Errorf("result StartTimeout = %v, want 20s", out.Group[0].StartTimeout)
	}
}

func TestValidateAcceptsValidConfigs(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"2 nodes, node 0", validTwoNode()},
		{"2 nodes, node 1", func() Config {
			c := validTwoNode()
			c.Self = 1
			c.Media[0].Peers = []proto.NodeID{0}
			c.Media[1].Peers = []proto.NodeID{0}
			return c
		}()},
		{"2 nodes, stonith", func() Config { c := validTwoNode(); c.Fencing = FenceStonith; return c }()},
		{"2 nodes, warntime = keepalive", func() Config { c := validTwoNode(); c.Warntime = c.Keepalive; return c }()},
		{"2 nodes, initdead = deadtime", func() Config { c := validTwoNode(); c.Initdead = c.Deadtime; return c }()},
		{"2 nodes, empty group", func() Config { c := validTwoNode(); c.Group = nil; return c }()},
		{"3 nodes, node 0", validThreeNode(0)},
		{"3 nodes, node 1", validThreeNode(1)},
		{"3 nodes, witness", validThreeNode(2)},
		{"3 nodes, no fencing", func() Config { c := validThreeNode(0); c.Fencing = FenceNone; return c }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*Config)
		want  []string // all must appear in the error text; want[0] is the field, which starts a line
	}{
		{
			name: "deadtime equal to 2×keepalive",
			tweak: func(c *Config) {
				c.Keepalive = time.Second
				c.Deadtime = 2 * time.Second
				c.Warntime = 1500 * time.Millisecond
				c.Initdead = 4 * time.Second
			},
			want: []string{"deadtime", "2×keepalive"},
		},
		{
			name: "deadtime below 2×keepalive",
			tweak: func(c *Config) {
				c.Keepalive = 5 * time.Second
				c.Deadtime = 8 * time.Second
				c.Warntime = 6 * time.Second
			},
			want: []string{"deadtime", "2×keepalive", "8s", "10s"},
		},
		{
			name:  "warntime below keepalive",
			tweak: func(c *Config) { c.Warntime = 500 * time.Millisecond },
			want:  []string{"warntime", "500ms", "keepalive", "deadtime"},
		},
		{
			name:  "warntime equal to deadtime",
			tweak: func(c *Config) { c.Warntime = c.Deadtime },
			want:  []string{"warntime", "keepalive", "deadtime"},
		},
		{
			name:  "warntime above deadtime",
			tweak: func(c *Config) { c.Warntime = 45 * time.Second },
			want:  []string{"warntime", "45s", "keepalive", "deadtime"},
		},
		{
			name:  "initdead below deadtime",
			tweak: func(c *Config) { c.Initdead = 20 * time.Second },
			want:  []string{"initdead", "20s", "deadtime", "30s"},
		},
		{
			name:  "witness policy without a third node",
			tweak: func(c *Config) { c.Fencing = FenceWitness },
			want:  []string{"fencing", "witness", "third"},
		},
		{
			name:  "no media",
			tweak: func(c *Config) { c.Media = nil },
			want:  []string{"media", "at least one"},
		},
		{
			name:  "medium naming an unknown peer",
			tweak: func(c *Config) { c.Media[1].Peers = []proto.NodeID{1, 5} },
			want:  []string{"media[1]", "serial0", "peer 5", "not another node"},
		},
		{
			name:  "medium naming self as peer",
			tweak: func(c *Config) { c.Media[0].Peers = []proto.NodeID{0, 1} },
			want:  []string{"media[0]", "net0", "peer 0", "not another node"},
		},
		{
			name: "peer no medium reaches",
			tweak: func(c *Config) {
				c.Media[0].Peers = nil
				c.Media[1].Peers = nil
			},
			want: []string{"media", "no medium reaches beta"},
		},
		{
			name:  "resource without a name",
			tweak: func(c *Config) { c.Group = append(c.Group, Resource{}) },
			want:  []string{"group[2]", "no name"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validTwoNode()
			tc.tweak(&c)
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
			named := false
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, tc.want[0]) {
					named = true
				}
			}
			if !named {
				t.Errorf("Validate() = %q, want a line starting with the field %q", err, tc.want[0])
			}
		})
	}
}

func TestValidateRejectsWitnessPeerUnreached(t *testing.T) {
	c := validThreeNode(0)
	c.Media[0].Peers = []proto.NodeID{1}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "no medium reaches gamma") {
		t.Errorf("Validate() = %v, want error naming gamma", err)
	}
}

func TestValidateReportsAllErrors(t *testing.T) {
	c := validTwoNode()
	c.Deadtime = 2 * time.Second  // = 2×keepalive
	c.Warntime = 15 * time.Second // >= deadtime
	c.Initdead = time.Second      // < deadtime
	c.Fencing = FenceWitness
	c.Media = nil
	c.Group = []Resource{{}}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate() = nil, want errors")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate() error %T is not a joined error", err)
	}
	var fields []string
	for _, e := range joined.Unwrap() {
		field, _, _ := strings.Cut(e.Error(), ":")
		fields = append(fields, field)
	}
	want := []string{"deadtime", "warntime", "initdead", "fencing", "media", "media", "group[0]"}
	if strings.Join(fields, ",") != strings.Join(want, ",") {
		t.Errorf("error fields = %v, want %v\nerror: %v", fields, want, err)
	}
	// errors.Join puts each error on its own line.
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("error has %d lines, want %d:\n%v", n, len(want), err)
	}
}

func TestParseFencing(t *testing.T) {
	tests := []struct {
		in   string
		want Fencing
		ok   bool
	}{
		{"none", FenceNone, true},
		{"stonith", FenceStonith, true},
		{"witness", FenceWitness, true},
		{"", 0, false},
		{"?", 0, false},
		{"quorum", 0, false},
		{"STONITH", 0, false},
		{" none", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseFencing(tc.in)
			if tc.ok {
				if err != nil || got != tc.want {
					t.Errorf("ParseFencing(%q) = %v, %v; want %v, nil", tc.in, got, err, tc.want)
				}
				if got.String() != tc.in {
					t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseFencing(%q) = %v, nil; want error", tc.in, got)
			}
			for _, w := range []string{"none", "stonith", "witness"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ParseFencing(%q) error %q does not list %q", tc.in, err, w)
				}
			}
			if !strings.Contains(err.Error(), tc.in) {
				t.Errorf("ParseFencing(%q) error %q does not quote the input", tc.in, err)
			}
		})
	}
}
