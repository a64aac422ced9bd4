package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"tandem/daemon/config"
	"tandem/daemon/nbdclient"
	"tandem/internal/proto"
)

// The benchmark's shapes (issue 5 item 12): 64 MiB of sequential 1 MiB
// writes then a flush, and 2000 sequential 4 KiB writes each waited for.
const (
	benchBlocks   = 16384 // 64 MiB data area
	benchSeqReq   = 1 << 20
	benchSeqTotal = benchBlocks * 4096
	benchLatN     = 2000
	benchLatSize  = 4096
	benchRTTN     = 2000
)

// BenchmarkDaemonWrite measures writes through a primary daemon's NBD socket
// (two daemons on 127.0.0.1, file-backed disks, initial sync done) for each
// replication protocol, against the bare backing file in the same run:
//
//   - seq: MB/s of 1 MiB writes then a flush, and vs-bare, the ratio to
//     os.File.WriteAt of the same writes plus one fdatasync (target for C:
//     ≥ 0.90);
//   - 4KiB: p50/p99 latency of one 4 KiB write, beside the bare file's p50
//     (WriteAt without sync: the daemon's write is no fsync either) and one
//     loopback TCP round trip; p50-excess-us = p50 − bare − rtt (target
//     ≤ 50).
func BenchmarkDaemonWrite(b *testing.B) {
	for _, p := range []string{"A", "B", "C"} {
		b.Run(p, func(b *testing.B) {
			pair := newBenchPair(b, p)
			cl, err := nbdclient.Dial(pair.nbd, 5*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			bare := newBareFile(b, filepath.Join(pair.dir, "bare.img"))
			b.Run("seq", func(b *testing.B) { benchSeq(b, pair, cl, bare) })
			pair.quiesce(b)
			b.Run("4KiB", func(b *testing.B) { benchLatency(b, cl, bare) })
			pair.quiesce(b)
			pair.check(b)
		})
	}
}

func benchSeq(b *testing.B, pair *benchPair, cl *nbdclient.Client, bare *os.File) {
	buf := make([]byte, benchSeqReq)
	fillRandom(buf, 7)
	var daemonTime, bareTime time.Duration
	passes := 0
	for b.Loop() {
		b.StopTimer()
		bareTime += bareSeq(b, bare, buf)
		pair.quiesce(b) // the peer has caught up: each pass starts alike
		b.StartTimer()
		start := time.Now()
		for off := 0; off < benchSeqTotal; off += benchSeqReq {
			buf[0] = byte(passes) // a pass never rewrites identical data
			if err := cl.WriteAt(buf, uint64(off)); err != nil {
				b.Fatalf("write at %d: %v", off, err)
			}
		}
		if err := cl.Flush(); err != nil {
			b.Fatalf("flush: %v", err)
		}
		daemonTime += time.Since(start)
		passes++
	}
	mb := float64(passes) * benchSeqTotal / 1e6
	b.ReportMetric(mb/daemonTime.Seconds(), "MB/s")
	b.ReportMetric(mb/bareTime.Seconds(), "bare-MB/s")
	b.ReportMetric(bareTime.Seconds()/daemonTime.Seconds(), "vs-bare")
}

// bareSeq writes what one daemon pass writes to the bare file, then one
// fdatasync: what the backing file alone can do.
func bareSeq(b *testing.B, f *os.File, buf []byte) time.Duration {
	start := time.Now()
	for off := 0; off < benchSeqTotal; off += benchSeqReq {
		if _, err := f.WriteAt(buf, int64(off)); err != nil {
			b.Fatalf("bare write at %d: %v", off, err)
		}
	}
	if err := syscall.Fdatasync(int(f.Fd())); err != nil {
		b.Fatalf("bare fdatasync: %v", err)
	}
	return time.Since(start)
}

func benchLatency(b *testing.B, cl *nbdclient.Client, bare *os.File) {
	buf := make([]byte, benchLatSize)
	fillRandom(buf, 9)
	var lat, bareLat, rtt []time.Duration
	for b.Loop() {
		b.StopTimer()
		for i := range benchLatN {
			start := time.Now()
			if _, err := bare.WriteAt(buf, int64(i)*benchLatSize); err != nil {
				b.Fatalf("bare write %d: %v", i, err)
			}
			bareLat = append(bareLat, time.Since(start))
		}
		rtt = append(rtt, loopbackRTT(b)...)
		b.StartTimer()
		for i := range benchLatN {
			buf[0] = byte(i)
			start := time.Now()
			if err := cl.WriteAt(buf, uint64(i)*benchLatSize); err != nil {
				b.Fatalf("write %d: %v", i, err)
			}
			lat = append(lat, time.Since(start))
		}
	}
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	bp50, r := percentile(bareLat, 50), percentile(rtt, 50)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(lat)), "ns/op")
	b.ReportMetric(us(p50), "p50-us")
	b.ReportMetric(us(p99), "p99-us")
	b.ReportMetric(us(bp50), "bare-p50-us")
	b.ReportMetric(us(r), "rtt-us")
	b.ReportMetric(us(p50-bp50-r), "p50-excess-us")
}

// loopbackRTT times round trips over a fresh 127.0.0.1 TCP connection
// shaped like a protocol C write: 4 KiB out, a 16-byte acknowledgement back.
func loopbackRTT(b *testing.B) []time.Duration {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		in, ack := make([]byte, benchLatSize), make([]byte, 16)
		for {
			if _, err := io.ReadFull(c, in); err != nil {
				return
			}
			if _, err := c.Write(ack); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	out, ack := make([]byte, benchLatSize), make([]byte, 16)
	d := make([]time.Duration, 0, benchRTTN)
	for range benchRTTN {
		start := time.Now()
		if _, err := c.Write(out); err != nil {
			b.Fatalf("loopback write: %v", err)
		}
		if _, err := io.ReadFull(c, ack); err != nil {
			b.Fatalf("loopback read: %v", err)
		}
		d = append(d, time.Since(start))
	}
	return d
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func fillRandom(p []byte, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
}

// newBareFile makes the comparison file, written in full once so that its
// blocks are allocated as the synced daemon disks' are.
func newBareFile(b *testing.B, path string) *os.File {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	buf := make([]byte, benchSeqReq)
	bareSeq(b, f, buf)
	return f
}

// benchPair is two daemons in this process on 127.0.0.1 with file-backed
// disks, n1 Primary and n2 Secondary, in sync. (integration_test.go's
// cluster takes a *testing.T, hence this smaller twin for benchmarks.)
type benchPair struct {
	dir     string
	nbd     string
	control map[string]string
	logs    map[string]*lockedBuffer
}

func newBenchPair(b *testing.B, protocol string) *benchPair {
	dir := b.TempDir()
	ports := freePorts(b, 4)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `[cluster]
name = "bench"
keepalive = "100ms"
warntime = "500ms"
deadtime = "1s"
initdead = "2s"
preferred = "n1"
fencing = "none"
authkey = "benchmark-key-0123456789abcdef"
`)
	for i, n := range []string{"n1", "n2"} {
		fmt.Fprintf(&cfg, `
[[node]]
name = %q
address = "127.0.0.1:%d"
disk = "%s/%s.img"
nbd_socket = "%s/%s.nbd"
control_socket = "%s/%s.sock"
`, n, ports[i], dir, n, dir, n, dir, n)
	}
	fmt.Fprintf(&cfg, `
[[heartbeat]]
kind = "ucast"
addresses = { n1 = "127.0.0.1:%d", n2 = "127.0.0.1:%d" }

[replication]
protocol = %q
blocks = %d
resync_rate = "1G"
`, ports[2], ports[3], protocol, benchBlocks)
	path := filepath.Join(dir, "tandem.toml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		b.Fatal(err)
	}
	p := &benchPair{dir: dir, control: map[string]string{}, logs: map[string]*lockedBuffer{}}
	for i, n := range []string{"n1", "n2"} {
		// The data area plus room for the metadata at its end.
		makeDisk(b, filepath.Join(dir, n+".img"), proto.NodeID(i), benchBlocks, benchBlocks*4096+8<<20)
		setup, err := f.Node(n)
		if err != nil {
			b.Fatal(err)
		}
		// Warnings and errors only: debug logging on the write path would
		// be measured too.
		logs := &lockedBuffer{}
		p.logs[n] = logs
		log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan Endpoints, 1)
		done := make(chan error, 1)
		go func() { done <- Run(ctx, setup, Options{Logger: log, Ready: func(e Endpoints) { ready <- e }}) }()
		b.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				b.Errorf("%s: Run: %v", n, err)
			}
			if b.Failed() {
				b.Logf("---- log of %s ----\n%s", n, tail(logs.String(), 60))
			}
		})
		select {
		case ep := <-ready:
			p.control[n] = ep.Control
			if n == "n1" {
				p.nbd = ep.NBD
			}
		case err := <-done:
			done <- err
			b.Fatalf("%s did not start: %v", n, err)
		case <-time.After(10 * time.Second):
			b.Fatalf("%s did not start within 10s", n)
		}
	}
	p.waitFor(b, "the fresh pair to connect", 10*time.Second, func(st map[string]*Status) bool {
		return st["n1"].Replication.Conn == "Connected" && st["n2"].Replication.Conn == "Connected"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := Call(ctx, p.control["n1"], Request{Command: "primary", Force: true})
	if err != nil || !resp.OK {
		b.Fatalf("primary --force on n1: %v %s", err, resp.Error)
	}
	start := time.Now()
	p.waitFor(b, "n1 Primary and the initial sync done", 60*time.Second, func(st map[string]*Status) bool {
		r1, r2 := st["n1"].Replication, st["n2"].Replication
		// The group running, not only the disk promoted: the NBD export
		// takes writes from then on.
		return st["n1"].State == "Primary" && r1.Role == "Primary" && r1.Disk == "UpToDate" && r1.Conn == "Connected" &&
			r2.Role == "Secondary" && r2.Disk == "UpToDate" && r2.Conn == "Connected"
	})
	b.Logf("protocol %s: initial sync of %d MiB took %v", protocol, benchSeqTotal>>20, time.Since(start).Round(time.Millisecond))
	return p
}

// waitFor polls both nodes' status until cond holds.
func (p *benchPair) waitFor(b *testing.B, what string, timeout time.Duration, cond func(map[string]*Status) bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]*Status
	for {
		st := map[string]*Status{}
		for n, sock := range p.control {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := Call(ctx, sock, Request{Command: "status"})
			cancel()
			if err == nil && resp.Status != nil && resp.Status.Replication != nil {
				st[n] = resp.Status
			}
		}
		if len(st) == len(p.control) {
			if cond(st) {
				return
			}
			last = st
		}
		if time.Now().After(deadline) {
			var s strings.Builder
			for n, x := range last {
				fmt.Fprintf(&s, "\n  %s: %s %+v held=%d pending=%d", n, x.State, *x.Replication, x.HeldBuffers, x.PendingRequests)
			}
			b.Fatalf("timed out after %v waiting for %s%s", timeout, what, s.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// quiesce waits until the secondary has every write and neither shell holds
// a buffer or request: under protocols A and B a completed write may still
// be on its way, and the next measurement must not pay for it.
func (p *benchPair) quiesce(b *testing.B) {
	p.waitFor(b, "both nodes quiet and in sync", 30*time.Second, func(st map[string]*Status) bool {
		for _, x := range st {
			if x.Replication.OutOfSyncKiB != 0 || x.HeldBuffers != 0 || x.PendingRequests != 0 ||
				x.Replication.Disk != "UpToDate" || x.Replication.Conn != "Connected" {
				return false
			}
		}
		return true
	})
}

// check asserts that what was measured was real replication: no corrupted
// payload on the link, and the secondary's disk equals the primary's.
func (p *benchPair) check(b *testing.B) {
	p.waitFor(b, "link counters", 5*time.Second, func(st map[string]*Status) bool {
		for n, x := range st {
			if x.Link.BadCRC != 0 {
				b.Fatalf("%s's link: %d bad CRCs", n, x.Link.BadCRC)
			}
		}
		return true
	})
	var data [2][]byte
	for i, n := range []string{"n1", "n2"} {
		f, err := os.Open(filepath.Join(p.dir, n+".img"))
		if err != nil {
			b.Fatal(err)
		}
		data[i] = make([]byte, benchSeqTotal)
		_, err = f.ReadAt(data[i], 0)
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	if !bytes.Equal(data[0], data[1]) {
		b.Fatal("after the benchmark the secondary's disk differs from the primary's")
	}
	if bytes.Equal(data[0][:benchLatSize], make([]byte, benchLatSize)) {
		b.Fatal("the primary's disk does not hold the benchmark's writes")
	}
}
