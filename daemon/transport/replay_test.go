package transport

import (
	"testing"
	"time"

	"tandem/internal/proto"
)

func TestReplayFilter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	f := NewReplayFilter(5 * time.Second)
	const net0, net1, serial = 0, 1, 2
	steps := []struct {
		what        string
		medium      proto.MediumID
		from        proto.NodeID
		incarnation uint64
		seq         uint64
		after       time.Duration
		want        bool
	}{
		{"first heartbeat of a sender", net0, 1, 7, 100, 0, true},
		{"the same packet again on the same medium", net0, 1, 7, 100, 0, false},
		{"the same heartbeat on another medium: membership needs it there too", serial, 1, 7, 100, 0, true},
		{"and once more there", serial, 1, 7, 100, 0, false},
		{"newer", net0, 1, 7, 101, 0, true},
		{"overtaken within the window, first time on this medium", net1, 1, 7, 60, 0, true},
		{"overtaken, seen already on this medium", net1, 1, 7, 60, 0, false},
		{"overtaken within the window, on the medium that saw the newest", net0, 1, 7, 99, 0, true},
		{"just inside the window", net0, 1, 7, 101 - ReplayWindow + 1, 0, true},
		{"just outside the window", net0, 1, 7, 101 - ReplayWindow, 0, false},
		{"an earlier incarnation is a replay, however new its seq", net0, 1, 6, 1000, 0, false},
		{"another sender has its own window", net0, 2, 1, 5, 0, true},
		{"the newest again but long after it: the sender went silent", net1, 1, 7, 101, 6 * time.Second, false},
		{"an older one as well", serial, 1, 7, 99, 6 * time.Second, false},
		{"a newer one is always fresh", serial, 1, 7, 102, 6 * time.Second, true},
		{"the sender restarted: higher incarnation, seq from 1", net0, 1, 8, 1, 6 * time.Second, true},
		{"its previous life is over", net1, 1, 7, 103, 6 * time.Second, false},
		{"slots of the old life do not leak into the new one", serial, 1, 8, 1, 6 * time.Second, true},
		{"a sender outside the cluster", net0, proto.MaxNodes, 1, 1, 0, false},
		{"a medium beyond MaxMedia", MaxMedia, 1, 9, 1, 0, false},
	}
	for _, s := range steps {
		got := f.Accept(s.medium, beat(s.from, s.incarnation, s.seq), t0.Add(s.after))
		if got != s.want {
			t.Errorf("%s (medium %d node %d incarnation %d seq %d): accepted %v, want %v",
				s.what, s.medium, s.from, s.incarnation, s.seq, got, s.want)
		}
	}
}

// TestReplayFilterRing checks the ring of recent seqs against a naive model
// that remembers every (seq, medium) ever accepted, over a long run with
// reordering and duplicates.
func TestReplayFilterRing(t *testing.T) {
	f := NewReplayFilter(time.Hour)
	now := time.Unix(0, 0)
	seen := map[[2]uint64]bool{}
	var top uint64
	x := uint64(12345)
	for i := 0; i < 20000; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		medium := proto.MediumID(x % 3)
		seq := uint64(i/3) + 1
		if x%5 == 0 && seq > 80 {
			seq -= (x >> 8) % 80 // reordered or replayed, sometimes outside the window
		}
		want := !seen[[2]uint64{seq, uint64(medium)}] && (seq > top || top-seq < ReplayWindow)
		got := f.Accept(medium, beat(1, 1, seq), now)
		if got != want {
			t.Fatalf("step %d: seq %d on medium %d (newest %d): accepted %v, want %v", i, seq, medium, top, got, want)
		}
		if got {
			seen[[2]uint64{seq, uint64(medium)}] = true
			top = max(top, seq)
		}
	}
}
