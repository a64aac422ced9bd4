package membership

import (
	"strings"
	"testing"
	"time"

	"tandem/internal/proto"
)

const (
	deadtime = 10 * time.Second
	warntime = 5 * time.Second
	initdead = 20 * time.Second

	peerA  proto.NodeID   = 1
	net0   proto.MediumID = 0
	serial proto.MediumID = 1
)

// boot is deliberately not zero so that initdead is measured from boot.
var boot = at(3)

func at(s float64) proto.Time { return proto.Time(s * float64(time.Second)) }

// newTracker tracks peer 1 over net0 and serial0.
func newTracker() *Tracker {
	tr := New(boot, deadtime, warntime, initdead)
	tr.AddMedium(peerA, net0, "net0")
	tr.AddMedium(peerA, serial, "serial0")
	return tr
}

// rx is one heartbeat delivered to the tracker.
type rx struct {
	at     proto.Time
	medium proto.MediumID
	inc    uint64
	seq    uint64
}

func (r rx) hb() *proto.Heartbeat {
	return &proto.Heartbeat{From: peerA, Incarnation: r.inc, Seq: r.seq, State: proto.Secondary}
}

func feed(tr *Tracker, rxs []rx) []Observation {
	var obs []Observation
	for _, r := range rxs {
		obs = append(obs, tr.Observe(r.at, r.medium, r.hb()))
	}
	return obs
}

func TestDeadOnlyWhenEveryMediumSilent(t *testing.T) {
	tests := []struct {
		name   string
		rxs    []rx
		now    proto.Time
		dead   bool
		deadAt proto.Time
	}{
		{
			name: "both media silent for deadtime",
			rxs: []rx{
				{at(10), net0, 1, 1}, {at(10), serial, 1, 1},
			},
			now: at(20), dead: true, deadAt: at(20),
		},
		{
			name: "both media silent just under deadtime",
			rxs: []rx{
				{at(10), net0, 1, 1}, {at(10), serial, 1, 1},
			},
			now: at(20) - 1, dead: false, deadAt: at(20),
		},
		{
			name: "net0 silent, serial0 still delivering",
			rxs: []rx{
				{at(10), net0, 1, 1}, {at(10), serial, 1, 1},
				{at(14), serial, 1, 2}, {at(18), serial, 1, 3},
			},
			now: at(25), dead: false, deadAt: at(28),
		},
		{
			name: "serial0 silent, net0 still delivering",
			rxs: []rx{
				{at(10), net0, 1, 1}, {at(10), serial, 1, 1},
				{at(14), net0, 1, 2}, {at(18), net0, 1, 3},
			},
			now: at(25), dead: false, deadAt: at(28),
		},
		{
			name: "last medium goes silent too",
			rxs: []rx{
				{at(10), net0, 1, 1}, {at(10), serial, 1, 1},
				{at(14), serial, 1, 2}, {at(18), serial, 1, 3},
			},
			now: at(28), dead: true, deadAt: at(28),
		},
		{
			name: "only ever heard on one medium",
			rxs: []rx{
				{at(10), serial, 1, 1},
			},
			now: at(19), dead: false, deadAt: at(20),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			feed(tr, tc.rxs)
			if got := tr.DeadAt(peerA); got != tc.deadAt {
				t.Errorf("DeadAt = %v, want %v", got, tc.deadAt)
			}
			if got := tr.Dead(peerA, tc.now); got != tc.dead {
				t.Errorf("Dead(%v) = %v, want %v", tc.now, got, tc.dead)
			}
		})
	}
}

func TestNeverHeardPeerDeadAtInitdead(t *testing.T) {
	tests := []struct {
		now  proto.Time
		dead bool
	}{
		{boot, false},
		{boot.Add(deadtime), false}, // deadtime does not apply before first contact
		{boot.Add(initdead) - 1, false},
		{boot.Add(initdead), true},
		{boot.Add(initdead + time.Hour), true},
	}
	tr := newTracker()
	if got, want := tr.DeadAt(peerA), boot.Add(initdead); got != want {
		t.Fatalf("DeadAt = %v, want boot+initdead = %v", got, want)
	}
	for _, tc := range tests {
		if got := tr.Dead(peerA, tc.now); got != tc.dead {
			t.Errorf("Dead(%v) = %v, want %v", tc.now, got, tc.dead)
		}
	}
}

func TestLateHeartbeatsCountedPerMedium(t *testing.T) {
	tests := []struct {
		name    string
		rxs     []rx
		late    [2]uint64
		maxInt  [2]time.Duration
		lastObs time.Duration // Observation.Late of the last heartbeat
	}{
		{
			name: "on time on both media",
			rxs: []rx{
				{at(10), net0, 1, 1}, {at(10), serial, 1, 1},
				{at(11), net0, 1, 2}, {at(11), serial, 1, 2},
				{at(15), net0, 1, 3}, {at(15), serial, 1, 3}, // gap 4s < warntime
			},
		},
		{
			name: "gap exactly warntime is not late",
			rxs: []rx{
				{at(10), net0, 1, 1}, {at(15), net0, 1, 2},
			},
		},
		{
			name: "late on serial0 only",
			rxs: []rx{
				{at(10), net0, 1, 1}, {at(10), serial, 1, 1},
				{at(14), net0, 1, 2},
				{at(18), net0, 1, 3},
				{at(18), serial, 1, 3}, // serial0 gap 8s
			},
			late:    [2]uint64{0, 1},
			maxInt:  [2]time.Duration{0, 8 * time.Second},
			lastObs: 8 * time.Second,
		},
		{
			name: "two late on net0, max interval kept",
			rxs: []rx{
				{at(10), net0, 1, 1},
				{at(17), net0, 1, 2}, // gap 7s
				{at(18), net0, 1, 3}, // on time
				{at(24), net0, 1, 4}, // gap 6s
			},
			late:    [2]uint64{2, 0},
			maxInt:  [2]time.Duration{7 * time.Second, 0},
			lastObs: 6 * time.Second,
		},
		{
			name: "first heartbeat long after boot is not late",
			rxs: []rx{
				{at(100), net0, 1, 1},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			obs := feed(tr, tc.rxs)
			p := tr.Peer(peerA)
			for i, id := range []proto.MediumID{net0, serial} {
				m := p.Media[id]
				if m.Late != tc.late[i] {
					t.Errorf("%s Late = %d, want %d", m.Name, m.Late, tc.late[i])
				}
				if m.MaxInterval != tc.maxInt[i] {
					t.Errorf("%s MaxInterval = %v, want %v", m.Name, m.MaxInterval, tc.maxInt[i])
				}
			}
			if got := obs[len(obs)-1].Late; got != tc.lastObs {
				t.Errorf("last Observation.Late = %v, want %v", got, tc.lastObs)
			}
		})
	}
}

func TestStaleHeartbeats(t *testing.T) {
	tests := []struct {
		name      string
		rxs       []rx
		stale     [2]uint64
		received  [2]uint64
		lastHeard [2]proto.Time
		lastSeq   [2]uint64
		deadAt    proto.Time
	}{
		{
			name: "duplicate on same medium is stale and does not refresh",
			rxs: []rx{
				{at(10), net0, 1, 5},
				{at(15), net0, 1, 5},
			},
			stale:     [2]uint64{1, 0},
			received:  [2]uint64{1, 0},
			lastHeard: [2]proto.Time{at(10), 0},
			lastSeq:   [2]uint64{5, 0},
			deadAt:    at(20),
		},
		{
			name: "reordered older seq is stale and does not refresh",
			rxs: []rx{
				{at(10), net0, 1, 5},
				{at(15), net0, 1, 4},
			},
			stale:     [2]uint64{1, 0},
			received:  [2]uint64{1, 0},
			lastHeard: [2]proto.Time{at(10), 0},
			lastSeq:   [2]uint64{5, 0},
			deadAt:    at(20),
		},
		{
			name: "same seq on a second medium refreshes that medium",
			rxs: []rx{
				{at(10), net0, 1, 5},
				{at(12), serial, 1, 5},
			},
			received:  [2]uint64{1, 1},
			lastHeard: [2]proto.Time{at(10), at(12)},
			lastSeq:   [2]uint64{5, 5},
			deadAt:    at(22),
		},
		{
			name: "older seq on a medium that has not seen it is accepted there",
			rxs: []rx{
				{at(10), net0, 1, 5},
				{at(12), serial, 1, 4},
				{at(13), serial, 1, 4},
			},
			stale:     [2]uint64{0, 1},
			received:  [2]uint64{1, 1},
			lastHeard: [2]proto.Time{at(10), at(12)},
			lastSeq:   [2]uint64{5, 4},
			deadAt:    at(22),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			feed(tr, tc.rxs)
			p := tr.Peer(peerA)
			for i, id := range []proto.MediumID{net0, serial} {
				m := p.Media[id]
				if m.Stale != tc.stale[i] {
					t.Errorf("%s Stale = %d, want %d", m.Name, m.Stale, tc.stale[i])
				}
				if m.Received != tc.received[i] {
					t.Errorf("%s Received = %d, want %d", m.Name, m.Received, tc.received[i])
				}
				if m.LastHeard != tc.lastHeard[i] {
					t.Errorf("%s LastHeard = %v, want %v", m.Name, m.LastHeard, tc.lastHeard[i])
				}
				if m.LastSeq != tc.lastSeq[i] {
					t.Errorf("%s LastSeq = %d, want %d", m.Name, m.LastSeq, tc.lastSeq[i])
				}
			}
			if got := tr.DeadAt(peerA); got != tc.deadAt {
				t.Errorf("DeadAt = %v, want %v", got, tc.deadAt)
			}
		})
	}
}

func TestIncarnation(t *testing.T) {
	tests := []struct {
		name      string
		rxs       []rx
		last      Observation
		inc       uint64
		maxSeq    uint64
		stale     uint64 // on net0
		lastHeard proto.Time
	}{
		{
			name:      "first incarnation is not a restart",
			rxs:       []rx{{at(10), net0, 7, 100}},
			last:      Observation{Fresh: true},
			inc:       7,
			maxSeq:    100,
			lastHeard: at(10),
		},
		{
			name: "new incarnation resets sequence tracking",
			rxs: []rx{
				{at(10), net0, 7, 100},
				{at(11), net0, 8, 1},
			},
			last:      Observation{Fresh: true, Restarted: true},
			inc:       8,
			maxSeq:    1,
			lastHeard: at(11),
		},
		{
			name: "old seq numbers accepted after restart",
			rxs: []rx{
				{at(10), net0, 7, 100},
				{at(11), net0, 8, 1},
				{at(12), net0, 8, 2},
			},
			last:      Observation{Fresh: true},
			inc:       8,
			maxSeq:    2,
			lastHeard: at(12),
		},
		{
			name: "older incarnation is stale",
			rxs: []rx{
				{at(10), net0, 8, 1},
				{at(11), net0, 7, 100},
			},
			last:      Observation{},
			inc:       8,
			maxSeq:    1,
			stale:     1,
			lastHeard: at(10),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			obs := feed(tr, tc.rxs)
			if got := obs[len(obs)-1]; got != tc.last {
				t.Errorf("last Observation = %+v, want %+v", got, tc.last)
			}
			p := tr.Peer(peerA)
			if p.Incarnation != tc.inc {
				t.Errorf("Incarnation = %d, want %d", p.Incarnation, tc.inc)
			}
			if p.MaxSeq != tc.maxSeq {
				t.Errorf("MaxSeq = %d, want %d", p.MaxSeq, tc.maxSeq)
			}
			if got := p.Media[net0].Stale; got != tc.stale {
				t.Errorf("net0 Stale = %d, want %d", got, tc.stale)
			}
			if p.LastHeard != tc.lastHeard {
				t.Errorf("LastHeard = %v, want %v", p.LastHeard, tc.lastHeard)
			}
		})
	}
}

func TestRestartResetsEveryMedium(t *testing.T) {
	tr := newTracker()
	feed(tr, []rx{
		{at(10), net0, 7, 100}, {at(10), serial, 7, 100},
		{at(11), net0, 8, 1},
	})
	// serial0 must accept seq 1 of the new incarnation, not drop it as stale.
	obs := tr.Observe(at(11), serial, rx{at(11), serial, 8, 1}.hb())
	m := tr.Peer(peerA).Media[serial]
	if m.Stale != 0 || m.LastSeq != 1 || m.LastHeard != at(11) {
		t.Errorf("serial0 after restart: Stale=%d LastSeq=%d LastHeard=%v, want 0, 1, %v",
			m.Stale, m.LastSeq, m.LastHeard, at(11))
	}
	if obs.Fresh || obs.Restarted {
		t.Errorf("second copy of restart heartbeat: %+v, want neither Fresh nor Restarted", obs)
	}
}

func TestObserveIgnoresUnknown(t *testing.T) {
	tests := []struct {
		name   string
		from   proto.NodeID
		medium proto.MediumID
	}{
		{"peer without media", 2, net0},
		{"self", 0, net0},
		{"node id out of range", proto.MaxNodes, net0},
		{"no node", proto.NoNode, net0},
		{"medium not reaching peer", peerA, 2},
		{"medium id out of range", peerA, MaxMedia},
		{"medium id far out of range", peerA, 255},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			hb := &proto.Heartbeat{From: tc.from, Incarnation: 1, Seq: 1}
			if obs := tr.Observe(at(10), tc.medium, hb); obs != (Observation{}) {
				t.Errorf("Observe = %+v, want zero", obs)
			}
			for id := proto.NodeID(0); id < proto.MaxNodes; id++ {
				p := tr.Peer(id)
				if p.Heard || p.Incarnation != 0 || p.MaxSeq != 0 {
					t.Errorf("peer %d changed: Heard=%v Incarnation=%d MaxSeq=%d", id, p.Heard, p.Incarnation, p.MaxSeq)
				}
				for i := range p.Media {
					if m := p.Media[i]; m.Heard || m.Received != 0 || m.Stale != 0 {
						t.Errorf("peer %d medium %d changed: %+v", id, i, m)
					}
				}
			}
			if got, want := tr.DeadAt(peerA), boot.Add(initdead); got != want {
				t.Errorf("DeadAt = %v, want %v", got, want)
			}
		})
	}
}

func TestSilence(t *testing.T) {
	tests := []struct {
		name string
		rxs  []rx
		now  proto.Time
		want []string
		not  []string
	}{
		{
			name: "never heard at all",
			now:  at(8),
			want: []string{"never heard", "5s", "initdead 20s"},
		},
		{
			name: "heard on net0 only",
			rxs:  []rx{{at(10), net0, 1, 1}},
			now:  at(12),
			want: []string{"net0 silent 2s", "serial0 never heard"},
		},
		{
			name: "heard on both",
			rxs: []rx{
				{at(10), net0, 1, 1},
				{at(10.5), serial, 1, 1},
			},
			now:  at(12.003),
			want: []string{"net0 silent 2.003s", "serial0 silent 1.503s"},
			not:  []string{"never heard"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			feed(tr, tc.rxs)
			s := tr.Silence(peerA, tc.now)
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("Silence = %q, want it to contain %q", s, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(s, n) {
					t.Errorf("Silence = %q, must not contain %q", s, n)
				}
			}
		})
	}
}

func TestFresh(t *testing.T) {
	tests := []struct {
		name  string
		rxs   []rx
		fresh []bool
	}{
		{
			name:  "increasing on one medium",
			rxs:   []rx{{at(10), net0, 1, 1}, {at(11), net0, 1, 2}, {at(12), net0, 1, 3}},
			fresh: []bool{true, true, true},
		},
		{
			name:  "same seq on second medium is not fresh",
			rxs:   []rx{{at(10), net0, 1, 1}, {at(10), serial, 1, 1}},
			fresh: []bool{true, false},
		},
		{
			name:  "lower seq on other medium is not fresh",
			rxs:   []rx{{at(10), net0, 1, 5}, {at(10), serial, 1, 3}},
			fresh: []bool{true, false},
		},
		{
			name:  "higher seq on other medium is fresh",
			rxs:   []rx{{at(10), net0, 1, 5}, {at(11), serial, 1, 6}, {at(11), net0, 1, 6}},
			fresh: []bool{true, true, false},
		},
		{
			name:  "duplicate is not fresh",
			rxs:   []rx{{at(10), net0, 1, 5}, {at(11), net0, 1, 5}},
			fresh: []bool{true, false},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker()
			obs := feed(tr, tc.rxs)
			var maxSeq uint64
			for i, o := range obs {
				if o.Fresh != tc.fresh[i] {
					t.Errorf("heartbeat %d (%s seq %d): Fresh = %v, want %v",
						i, tr.Peer(peerA).Media[tc.rxs[i].medium].Name, tc.rxs[i].seq, o.Fresh, tc.fresh[i])
				}
				if tc.fresh[i] {
					maxSeq = tc.rxs[i].seq
				}
			}
			p := tr.Peer(peerA)
			if p.MaxSeq != maxSeq || p.Last.Seq != maxSeq {
				t.Errorf("MaxSeq = %d, Last.Seq = %d, want both %d", p.MaxSeq, p.Last.Seq, maxSeq)
			}
		})
	}
}
