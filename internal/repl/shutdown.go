package repl

import (
	"tandem/internal/meta"
	"tandem/internal/proto"
)

// Shutdown records an orderly stop: the metadata is persisted with
// meta.CleanShutdown set, so that the next start does not treat this node as
// crashed (no activity-log resync, no "may have lost cached writes" at the
// handshake). The shell calls it once it is Secondary and disconnected, waits
// for the MetaDone of a Persist whose Record carries CleanShutdown, and then
// exits without stepping the replica again. Any later input clears nothing:
// the flag stays set in memory until the process ends.
func (r *Replica) Shutdown(now proto.Time) []Output {
	r.out = r.out[:0]
	if now > r.now {
		r.now = now
	}
	r.flags |= meta.CleanShutdown
	r.persist()
	return r.out
}
