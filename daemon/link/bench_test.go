package link

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"tandem/internal/repl"
)

// BenchmarkThroughput sends b.N 4 KiB data messages one way over loopback
// through two Managers (CRC32C, HMAC-SHA256, a freshly allocated payload per
// frame at the receiver, an event per message) and, in the same run, b.N
// 4 KiB writes over a bare TCP connection; it reports both rates and their
// ratio. ns/op is the link's time per message.
//
//	go test -run XXX -bench Throughput ./daemon/link/
func BenchmarkThroughput(b *testing.B) {
	const block = 4096
	payload := make([]byte, block)
	for i := range payload {
		payload[i] = byte(i * 7)
	}

	// Bare TCP.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	tc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for range b.N {
		if _, err := tc.Write(payload); err != nil {
			b.Fatal(err)
		}
	}
	tc.Close()
	if n := <-got; n != int64(b.N)*block {
		b.Fatalf("tcp: %d bytes arrived of %d", n, b.N*block)
	}
	tcpRate := float64(b.N*block) / time.Since(start).Seconds() / 1e6

	// The link.
	aAddr, bAddr := freeAddr(b), freeAddr(b)
	na := startNodeB(b, benchConfig("alpha", "bravo", aAddr, bAddr))
	nb := startNodeB(b, benchConfig("bravo", "alpha", bAddr, aAddr))
	na.m.SetWanted(true)
	nb.m.SetWanted(true)
	conn := waitUp(b, na.ev)
	waitUp(b, nb.ev)
	done := make(chan int64, 1)
	go func() {
		var bytes int64
		for n := 0; n < b.N; {
			e := <-nb.ev
			if e.Kind != Msg {
				b.Errorf("bravo: %s %v", e.Kind, e.Err)
				break
			}
			bytes += int64(len(e.Payload))
			n++
		}
		done <- bytes
	}()
	b.SetBytes(block)
	b.ResetTimer()
	start = time.Now()
	m := repl.Msg{Kind: repl.MsgData, Count: 1, WriterGen: 0x1234}
	for i := range b.N {
		m.Seq, m.Block = uint64(i+1), uint64(i)
		for {
			err := na.m.Send(conn, &m, payload)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrQueueFull) {
				b.Fatal(err)
			}
			// The core's flow control would wait for acks; here the queue
			// stays busy while we wait a moment.
			time.Sleep(50 * time.Microsecond)
		}
	}
	if n := <-done; n != int64(b.N)*block {
		b.Fatalf("link: %d bytes arrived of %d", n, b.N*block)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	linkRate := float64(b.N*block) / elapsed.Seconds() / 1e6
	b.ReportMetric(linkRate, "link-MB/s")
	b.ReportMetric(tcpRate, "tcp-MB/s")
	b.ReportMetric(linkRate/tcpRate, "link/tcp")
}

func benchConfig(self, peer, listen, peerAddr string) Config {
	return Config{Self: self, Peer: peer, ListenAddr: listen, PeerAddr: peerAddr, Key: testKey,
		ConnectMin: 10 * time.Millisecond}
}

func startNodeB(b *testing.B, cfg Config) *node {
	n := &node{cfg: cfg, ev: make(chan Event, 1024)}
	cfg.Logger = discardLogger()
	m, err := New(cfg, n.ev)
	if err != nil {
		b.Fatal(err)
	}
	n.m = m
	b.Cleanup(m.Shutdown)
	return n
}

func waitUp(b *testing.B, ev chan Event) uint64 {
	select {
	case e := <-ev:
		if e.Kind != Up {
			b.Fatalf("event %s, want up", e.Kind)
		}
		return e.Conn
	case <-time.After(5 * time.Second):
		b.Fatal("no connection")
	}
	return 0
}
