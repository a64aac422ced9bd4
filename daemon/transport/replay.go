package transport

import (
	"sync"
	"time"

	"tandem/internal/proto"
)

// ReplayWindow is how many sequence numbers below the newest a heartbeat
// may be and still be accepted (once per medium): heartbeats that overtake
// each other, within a medium or across media, are accepted rather than
// dropped. 64 rounds is a minute at the default 1 s keepalive, far more
// reordering than any real medium produces.
const ReplayWindow = 64

// DefaultMaxLag is the default ReplayFilter lag bound: an older sequence
// number is accepted only this soon after the newest was. A slow serial line
// lags the network by tens of milliseconds (a heartbeat frame takes 67 ms at
// 9600 baud), so 5 s is generous for real media while bounding how long
// replays could make a dead node look alive.
const DefaultMaxLag = 5 * time.Second

// MaxMedia bounds medium ids: the filter keeps one bit per medium.
const MaxMedia = 64

// ReplayFilter decides which authentic heartbeats are fresh (see the package
// comment for the rule). One filter is shared by all media of a node; it is
// safe for concurrent use. The zero value is not usable: call
// NewReplayFilter.
type ReplayFilter struct {
	maxLag  time.Duration
	mu      sync.Mutex
	senders [proto.MaxNodes]senderWindow
}

// senderWindow is what one sender's filter remembers.
type senderWindow struct {
	known       bool
	incarnation uint64
	top         uint64    // newest Seq accepted in this incarnation
	topAt       time.Time // when top was accepted
	// slots[s%ReplayWindow] records which media accepted Seq s, for the
	// Seqs in (top-ReplayWindow, top]. A slot holding another Seq is stale.
	slots [ReplayWindow]struct {
		seq   uint64
		media uint64
	}
}

// NewReplayFilter returns an empty filter. maxLag bounds how long after the
// newest heartbeat of a sender an older one is still accepted; 0 means
// DefaultMaxLag.
func NewReplayFilter(maxLag time.Duration) *ReplayFilter {
	if maxLag <= 0 {
		maxLag = DefaultMaxLag
	}
	return &ReplayFilter{maxLag: maxLag}
}

// Accept reports whether hb, received on medium at now, is fresh, and if so
// records it so the same packet is refused next time on that medium.
// Senders outside the cluster and media ids of MaxMedia or more are refused.
func (f *ReplayFilter) Accept(medium proto.MediumID, hb *proto.Heartbeat, now time.Time) bool {
	if int(hb.From) >= proto.MaxNodes || int(medium) >= MaxMedia {
		return false
	}
	bit := uint64(1) << medium
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &f.senders[hb.From]
	switch {
	case !w.known || hb.Incarnation > w.incarnation:
		*w = senderWindow{known: true, incarnation: hb.Incarnation}
		w.advance(hb.Seq, now)
	case hb.Incarnation < w.incarnation:
		return false
	case hb.Seq > w.top:
		w.advance(hb.Seq, now)
	case w.top-hb.Seq >= ReplayWindow, now.Sub(w.topAt) > f.maxLag:
		return false
	}
	slot := &w.slots[hb.Seq%ReplayWindow]
	if slot.seq != hb.Seq {
		slot.seq, slot.media = hb.Seq, 0
	}
	if slot.media&bit != 0 {
		return false
	}
	slot.media |= bit
	return true
}

func (w *senderWindow) advance(seq uint64, now time.Time) {
	w.top, w.topAt = seq, now
}
