// Package daemon is Tandem's production shell: it runs one node's
// deterministic core (internal/node, with its replicated disk from
// internal/repl) against the real world, as sim/ runs it against a simulated
// one.
//
// # One goroutine owns the core
//
// Run's goroutine owns the *node.Node and everything tied to its state: the
// buffers the core refers to (repl.BufRef), the application requests in
// flight, the event subscribers. Everything that can block runs elsewhere and
// reports back over channels as core inputs:
//
//   - heartbeat media (daemon/transport) deliver Received heartbeats;
//   - the replication link (daemon/link) delivers Up/Msg/Down events;
//   - a small pool of disk workers performs DiskIO and Persist outputs and
//     answers DiskDone/MetaDone;
//   - NBD request goroutines (daemon/nbd) turn READ/WRITE/FLUSH/TRIM into
//     repl Request inputs and block until the matching Complete;
//   - resource actions and fencing agents run one goroutine each and answer
//     ActionDone/FenceDone;
//   - the control socket's admin commands and status queries run as
//     closures on the loop;
//   - a timer ticks the core at its Deadline().
//
// The shell performs, it never decides: every choice (who holds the group,
// when a write completes, what to resync) is the core's.
//
// # Stopping
//
// Cancelling Run's context is a crash: everything is closed at once and the
// metadata is left as the core last persisted it (without CleanShutdown),
// exactly as after a power cut. Options.Shutdown is the orderly stop
// (SIGTERM): the group is handed away (admin standby), the node waits
// (bounded) until it is Secondary, disconnects the replication link, persists
// the metadata with CleanShutdown (repl.Replica.Shutdown) and returns nil.
//
// # Control socket
//
// A unix socket (mode 0600) speaks line-delimited JSON: one Request line, then
// one Response line, or for "events" a stream of Event lines. Call and Events
// are the client side used by `tandem status`, `tandem events` and the admin
// verbs.
//
// # Metrics
//
// With metrics_address set, /metrics serves Prometheus metrics read from the
// loop at each scrape: the alert gauges tandem_split_brain,
// tandem_peer_outdated, tandem_io_suspended and tandem_quorum_lost, the
// states, and the heartbeat, link and NBD counters.
//
// # Resources
//
// Custom (exec) resource commands get TANDEM_NODE=<this node's name> in their
// environment, so one configuration file serves both nodes.
package daemon
