package node

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"tandem/internal/proto"
)

// harness is a tiny, perfect world for unit tests: fixed latencies, one global
// clock, actions and fences that succeed unless told otherwise. The simulator
// in sim/ is the real test bed; this one keeps core tests readable.
type harness struct {
	t      *testing.T
	now    proto.Time
	nodes  []*Node
	down   []bool
	cut    [proto.MaxNodes][proto.MaxNodes]bool // no messages i -> j
	events []hevent
	seq    int
	log    []string
	// failStart[node][res] makes starts fail.
	failStart map[[2]int]bool
	// failMonitor[node][res] counts monitor failures still to report.
	failMonitor map[[2]int]int
	fenceOK     bool
	primaries   int
}

type hevent struct {
	at   proto.Time
	seq  int
	node int
	in   Input
}

const latency = proto.Time(time.Millisecond)

func testConfig(self proto.NodeID, nodes int, fencing Fencing) Config {
	names := []string{"server1", "server2", "witness"}[:nodes]
	cfg := Config{
		Self: self, Names: names, IsWitness: self == 2,
		Keepalive: 200 * time.Millisecond, Deadtime: 2 * time.Second, Initdead: 4 * time.Second,
		Fencing: fencing, FenceDelay: time.Second, FenceTimeout: 3 * time.Second, FenceRetry: time.Second,
		Preferred: 0,
		Group:     []Resource{{Name: "disk"}, {Name: "fs:/replicated"}, {Name: "ip:192.168.1.5/24"}, {Name: "service:sendmail", MonitorInterval: time.Second}},
	}
	var peers []proto.NodeID
	for i := 0; i < nodes; i++ {
		if proto.NodeID(i) != self {
			peers = append(peers, proto.NodeID(i))
		}
	}
	cfg.Media = []Medium{{ID: 0, Kind: proto.Network, Name: "net0", Peers: peers}}
	if self < 2 {
		cfg.Media = append(cfg.Media, Medium{ID: 1, Kind: proto.Serial, Name: "serial0", Peers: []proto.NodeID{1 - self}})
	}
	return cfg
}

func newHarness(t *testing.T, nodes int, fencing Fencing, tweak func(*Config)) *harness {
	h := &harness{t: t, failStart: map[[2]int]bool{}, failMonitor: map[[2]int]int{}, fenceOK: true}
	for i := 0; i < nodes; i++ {
		cfg := testConfig(proto.NodeID(i), nodes, fencing)
		if tweak != nil {
			tweak(&cfg)
		}
		n, err := New(cfg, 0, 1, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		h.nodes = append(h.nodes, n)
		h.down = append(h.down, false)
		h.push(0, i, Input{Kind: Tick})
	}
	return h
}

func (h *harness) push(at proto.Time, node int, in Input) {
	h.seq++
	h.events = append(h.events, hevent{at, h.seq, node, in})
}

func (h *harness) crash(i int) {
	h.down[i] = true
	h.logf("%v %s CRASH", h.now, h.nodes[i].cfg.Names[i])
}

func (h *harness) logf(format string, args ...any) {
	h.log = append(h.log, fmt.Sprintf(format, args...))
}

// run advances the world to until, checking the single-primary rule.
func (h *harness) run(until proto.Time) {
	for {
		sort.Slice(h.events, func(a, b int) bool {
			if h.events[a].at != h.events[b].at {
				return h.events[a].at < h.events[b].at
			}
			return h.events[a].seq < h.events[b].seq
		})
		if len(h.events) == 0 || h.events[0].at > until {
			h.now = until
			return
		}
		e := h.events[0]
		h.events = h.events[1:]
		h.now = e.at
		if h.down[e.node] {
			continue
		}
		n := h.nodes[e.node]
		outs := n.Step(e.at, e.in)
		for _, o := range outs {
			h.perform(e.node, o)
		}
		h.push(n.Deadline(), e.node, Input{Kind: Tick})
		count := 0
		for i, m := range h.nodes {
			if !h.down[i] && m.AcceptingWrites(h.now) {
				count++
			}
		}
		if count > h.primaries {
			h.primaries = count
		}
	}
}

func (h *harness) perform(from int, o Output) {
	n := h.nodes[from]
	switch o.Kind {
	case Send:
		if !h.cut[from][o.To] {
			h.push(h.now+latency, int(o.To), Input{Kind: Receive, Medium: o.Medium, Msg: o.Msg})
		}
	case Action:
		key := [2]int{from, o.Resource}
		ok := !(o.Op == Start && h.failStart[key])
		if o.Op == Monitor && h.failMonitor[key] > 0 {
			h.failMonitor[key]--
			ok = false
		}
		h.push(h.now+10*latency, from, Input{Kind: ActionDone, ID: o.ID, OK: ok, Err: "simulated failure"})
	case Fence:
		if h.fenceOK {
			h.down[o.Target] = true
		}
		h.push(h.now+100*latency, from, Input{Kind: FenceDone, ID: o.ID, OK: h.fenceOK, Err: "agent said no"})
	case Emit:
		if o.Event.Kind != LateHeartbeat {
			h.logf("%v %s %s %s", h.now, n.cfg.Names[from], o.Event.Kind, o.Event.Reason)
		}
	}
}

func (h *harness) states() string {
	var s []string
	for i, n := range h.nodes {
		st := n.State().String()
		if h.down[i] {
			st = "down"
		}
		s = append(s, st)
	}
	return strings.Join(s, " ")
}

func (h *harness) expect(want string) {
	h.t.Helper()
	if got := h.states(); got != want {
		h.t.Fatalf("at %v states = %q, want %q\n%s", h.now, got, want, strings.Join(h.log, "\n"))
	}
}
