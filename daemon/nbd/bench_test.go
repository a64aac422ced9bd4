package nbd

import (
	"encoding/binary"
	"io"
	"sync"
	"testing"
	"time"
)

// memDevice is the plainest in-memory Backend, for benchmarks: no call log.
type memDevice struct {
	mu   sync.Mutex
	data []byte
}

func (d *memDevice) Size() uint64   { return uint64(len(d.data)) }
func (d *memDevice) ReadOnly() bool { return false }
func (d *memDevice) ReadAt(p []byte, off uint64) error {
	d.mu.Lock()
	copy(p, d.data[off:])
	d.mu.Unlock()
	return nil
}
func (d *memDevice) WriteAt(p []byte, off uint64, fua bool) error {
	d.mu.Lock()
	copy(d.data[off:], p)
	d.mu.Unlock()
	return nil
}
func (d *memDevice) Flush() error                                   { return nil }
func (d *memDevice) Trim(off, length uint64) error                  { return nil }
func (d *memDevice) WriteZeroes(off, length uint64, fua bool) error { return nil }

// BenchmarkServerWrite4K measures 4 KiB writes through the server over a
// unix socket, 32 in flight as the kernel would keep them, against the same
// writes straight into the backend in the same run. ns/op and MB/s are the
// NBD path's; "nbd/direct" is its throughput as a fraction of the backend's.
func BenchmarkServerWrite4K(b *testing.B) {
	const (
		block = 4096
		depth = 32
		span  = 64 << 20 // written round and round
	)
	dev := &memDevice{data: make([]byte, span)}
	c, _ := connect(b, startServer(b, &Server{Backend: dev}), "")
	c.conn.SetDeadline(time.Time{})
	payload := pattern(block, 7)
	offset := func(i int) uint64 { return uint64(i*block) % span }

	b.SetBytes(block)
	b.ResetTimer()
	start := time.Now()
	slots := make(chan struct{}, depth)
	sendErr := make(chan error, 1)
	go func() {
		request := make([]byte, requestHeaderLength+block)
		copy(request, requestBytes(cmdWrite, 0, 0, 0, block))
		copy(request[requestHeaderLength:], payload)
		for i := range b.N {
			slots <- struct{}{}
			binary.BigEndian.PutUint64(request[8:], uint64(i))
			binary.BigEndian.PutUint64(request[16:], offset(i))
			if _, err := c.conn.Write(request); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	var reply [replyHeaderLength]byte
	for range b.N {
		if _, err := io.ReadFull(c.conn, reply[:]); err != nil {
			b.Fatalf("read reply: %v", err)
		}
		if code := binary.BigEndian.Uint32(reply[4:]); code != 0 {
			b.Fatalf("write failed: NBD error %d", code)
		}
		<-slots
	}
	if err := <-sendErr; err != nil {
		b.Fatalf("send: %v", err)
	}
	viaNBD := time.Since(start)
	b.StopTimer()

	start = time.Now()
	for i := range b.N {
		dev.WriteAt(payload, offset(i), false)
	}
	direct := time.Since(start)
	mb := float64(b.N) * block / 1e6
	b.ReportMetric(mb/direct.Seconds(), "direct-MB/s")
	b.ReportMetric(direct.Seconds()/viaNBD.Seconds(), "nbd/direct")
}
