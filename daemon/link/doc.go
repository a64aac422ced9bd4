// Package link is the replication link: one authenticated TCP connection
// between the two data nodes that carries the replication core's messages
// (repl.Msg) and their data payloads, what DRBD's data and meta sockets do.
//
// The daemon wires it to the core (internal/repl) like this:
//
//	Output WantLink{Connect}, Conn 0     -> Manager.SetWanted(Connect)
//	Output WantLink{Conn} with Conn != 0 -> Manager.Close(Conn) only
//	Output Send{Conn, Msg, Buf}          -> Manager.Send(Conn, &Msg, bytes of Buf)
//	Event Up / Msg / Down                -> Input LinkUp / Receive / LinkDown
//
// (The core follows a WantLink that closes a connection with one that says
// whether it wants the link; treating the first as SetWanted(false) would
// close a newer connection the core has not heard of yet.) A Msg event's
// Payload becomes the core's RecvBuf; release it when the core says so.
//
// Connection ids are this node's own (1, 2, 3, ...; the peer numbers its
// side separately), so a message of an old connection can never be taken
// for one of the new.
//
// # Wire format
//
// A connection opens with a handshake (handshake.go): both sides send a
// nonce and prove knowledge of the shared key over both nonces and both
// names; each direction then gets its own key derived from that exchange.
// Frames follow (frame.go): a header with lengths and a sequence number,
// the message (codec.go: AppendMsg/DecodeMsg, versioned, strict), a CRC32C
// of the payload, the payload, and an HMAC-SHA256 over all of it. A frame
// that fails any check closes the connection and is counted by reason
// (Counters), so an operator can tell a bad NIC (BadCRC), a wrong key or an
// attacker (BadMAC), a replay (Replayed) and a version mismatch (Malformed)
// apart. Nothing of a frame is acted on before its MAC is checked.
//
// # Goroutines
//
// A Manager runs an accept loop and a dial loop; each connection has a
// reader (which also emits the connection's events) and a writer, which
// batches queued frames into one writev so that payloads go to the socket
// without a copy. The deterministic core never waits for the network: Send
// only queues.
package link
