// Package transport is the daemon's heartbeat media: UDP unicast, broadcast
// and multicast (Heartbeat's `ucast`, `bcast` and `mcast` lines) and a serial
// null-modem cable (`serial /dev/ttyS1`). It moves the bytes of
// internal/wire; it decides nothing about membership.
//
// # Threading model
//
// The daemon runs the deterministic core (internal/node) on one goroutine.
// Media never call into it. Each Medium owns two goroutines of its own:
//
//   - a reader, which blocks on the socket or serial line, checks every packet
//     (size, framing, authentication, sender, replay) and hands the survivors
//     to the core as Received values on the channel given at start-up. The
//     channel is the core's inbox, shared by all media. A reader waits at most
//     Common.DeliverWait for room in it; if the core is that far behind, the
//     heartbeat is dropped and counted as an Overrun. Heartbeats are worthless
//     once stale, and a reader stuck on a full channel would leave the kernel
//     to drop newer packets instead.
//   - a writer, which performs the core's Send outputs. Send itself never
//     blocks: it encodes the heartbeat and leaves it in a mailbox with one slot
//     per destination. When the line is slower than the heartbeats (a serial
//     cable pulled out of a UART that blocks, a full socket buffer), a newer
//     heartbeat replaces the one still waiting and the replaced one is counted
//     as Superseded, so the core's goroutine is never stalled by a medium and a
//     recovering line carries the newest heartbeat, not a backlog (for the
//     same reason a serial write that times out flushes the line's output
//     queue). Each write is bounded by a timeout; failures are counted,
//     logged (the first and then every power of two of the count) and kept,
//     with their time, for LastError.
//
// Send, Counters, LastError and Close are safe to call from any goroutine.
//
// Close stops both goroutines and waits for them; after it returns the medium
// sends nothing on the channel.
//
// # What is dropped and counted
//
// A packet reaches the core only if it is an intact heartbeat, authenticated
// with the shared key, from a peer this medium is configured to hear, and not
// a replay. Everything else is dropped, never acted on, and counted by reason
// (see Counters), because the counts are what an operator needs to tell a bad
// cable (Malformed), a wrong authkeys file or an attacker (BadAuth), a
// misconfigured third machine on the segment (WrongSender) and a daemon that
// cannot keep up (Overrun) apart. Drops are logged at the first occurrence
// and then at every power of two of their count, so a flood cannot fill the
// log but a steady trickle is still seen. Our own broadcasts and multicast
// loopback come back to us; they are counted as Self and never logged.
//
// Authentication is HMAC-SHA256-128 with the shared key (Heartbeat's
// authkeys). A medium refuses to start without a key unless its config says
// CRCOnly, which exists for tests: CRC32C detects noise but anybody can forge
// it.
//
// # The replay rule
//
// An attacker who records authentic heartbeats could replay them to keep a
// dead node looking alive. Each heartbeat carries the sender's Incarnation
// (new at every process start, increasing) and Seq (one more per round), and a
// ReplayFilter shared by all of a node's media remembers, per sender, the
// newest (Incarnation, Seq) accepted on any medium and which media accepted
// each of the last 64 sequence numbers. A heartbeat is accepted when
//
//   - its Incarnation is higher than the highest seen from that sender (the
//     peer restarted: the window starts afresh), or
//   - its Incarnation is the current one and its Seq is newer than any
//     accepted from that sender, or
//   - its Incarnation is the current one, its Seq is within 64 of the newest,
//     this medium has not accepted that Seq yet, and the newest was accepted
//     at most MaxLag ago.
//
// Everything else, in particular any lower Incarnation, is a replay.
//
// The per-medium "not accepted yet" (rather than "not accepted on any
// medium") is deliberate: the core sends the same heartbeat, with the same
// Seq, on every medium, and membership needs to see it on each of them to
// know that each medium works. Sharing the newest Seq across media still
// stops a heartbeat recorded on one medium from being replayed on another
// once the sender has moved on: it is accepted there at most once, only
// within the window, and only while the sender is alive (MaxLag), so a
// replay can never extend a dead node's life by more than MaxLag.
//
// The package is Linux-only: the serial line uses termios ioctls, broadcast
// binds to its interface with SO_BINDTODEVICE.
package transport
