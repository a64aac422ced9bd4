package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRoundTrips(t *testing.T) {
	b := newMemBackend(1 << 20)
	s := &Server{Backend: b}
	c, _ := connect(t, startServer(t, s), "")

	data := pattern(8192, 0x5a)
	if code, _ := c.do(cmdWrite, cmdFlagFUA, 4096, 8192, data); code != 0 {
		t.Fatalf("FUA write: error %d", code)
	}
	if got := c.read(4096, 8192); !bytes.Equal(got, data) {
		t.Fatal("read back differs from what was written")
	}
	if code, _ := c.do(cmdWrite, 0, 65536, 512, data[:512]); code != 0 {
		t.Fatalf("write: error %d", code)
	}
	if code, _ := c.do(cmdFlush, 0, 0, 0, nil); code != 0 {
		t.Fatalf("flush: error %d", code)
	}
	if code, _ := c.do(cmdTrim, 0, 0, 4096, nil); code != 0 {
		t.Fatalf("trim: error %d", code)
	}
	if code, _ := c.do(cmdTrim, cmdFlagFUA, 8192, 4096, nil); code != 0 {
		t.Fatalf("FUA trim: error %d", code)
	}
	if code, _ := c.do(cmdWriteZeroes, cmdFlagNoHole, 4096, 4096, nil); code != 0 {
		t.Fatalf("write zeroes (NO_HOLE): error %d", code)
	}
	if code, _ := c.do(cmdWriteZeroes, cmdFlagFUA, 12288, 512, nil); code != 0 {
		t.Fatalf("FUA write zeroes: error %d", code)
	}
	if got := c.read(4096, 4096); !bytes.Equal(got, make([]byte, 4096)) {
		t.Error("write-zeroed range does not read back as zeroes")
	}
	if got := c.read(8192, 4096); !bytes.Equal(got, data[4096:]) {
		t.Error("data next to the zeroed range changed")
	}
	// FUA on a READ is accepted (the spec says so) and means nothing.
	if code, _ := c.do(cmdRead, cmdFlagFUA, 0, 512, nil); code != 0 {
		t.Errorf("FUA read: error %d", code)
	}
	// Empty requests succeed without troubling the backend.
	for _, typ := range []uint16{cmdRead, cmdWrite, cmdTrim, cmdWriteZeroes} {
		if code, data := c.do(typ, 0, 4096, 0, nil); code != 0 || len(data) != 0 {
			t.Errorf("empty %s: error %d, %d bytes", commandName(typ), code, len(data))
		}
	}

	want := []call{
		{"write", 4096, 8192, true},
		{"write", 65536, 512, false},
		{op: "flush"},
		{"trim", 0, 4096, false},
		{"trim", 8192, 4096, false},
		{op: "flush"}, // FUA on TRIM
		{"zero", 4096, 4096, false},
		{"zero", 12288, 512, true},
	}
	if got := b.recorded(); !slices.Equal(got, want) {
		t.Errorf("backend calls\n got %v\nwant %v", got, want)
	}
	c.disconnect()
	c.expectClosed()
	waitFor(t, func() bool { return s.Counters().Active == 0 }, "the connection to end")
	wantCounters := Counters{
		Connections: 1, Reads: 5, Writes: 3, Flushes: 1, Trims: 3, WriteZeroes: 3, Disconnects: 1,
		BytesRead: 8192 + 4096 + 4096 + 512, BytesWritten: 8192 + 512, BytesTrimmed: 8192, BytesZeroed: 4608,
	}
	if got := s.Counters(); got != wantCounters {
		t.Errorf("counters\n got %+v\nwant %+v", got, wantCounters)
	}
}

func TestRefusedRequests(t *testing.T) {
	const size = 1 << 20
	b := newMemBackend(size)
	s := &Server{Backend: b, MaxPayload: 64 << 10}
	c, _ := connect(t, startServer(t, s), "")
	cases := []struct {
		name    string
		typ     uint16
		flags   uint16
		off     uint64
		length  uint32
		payload bool
		want    uint32
	}{
		{"read past the end", cmdRead, 0, size - 512, 1024, false, errInval},
		{"read at offset overflow", cmdRead, 0, 1<<64 - 512, 1024, false, errInval},
		{"write past the end", cmdWrite, 0, size, 512, true, errNoSpc},
		{"write zeroes past the end", cmdWriteZeroes, 0, size - 512, 4096, false, errNoSpc},
		{"trim past the end", cmdTrim, 0, size + 4096, 512, false, errInval},
		{"unaligned offset", cmdRead, 0, 100, 512, false, errInval},
		{"unaligned length", cmdWrite, 0, 0, 1000, true, errInval},
		{"oversized read", cmdRead, 0, 0, 128 << 10, false, errInval},
		{"oversized write", cmdWrite, 0, 0, 128 << 10, true, errInval},
		{"unknown flag", cmdWrite, 1 << 7, 0, 512, true, errInval},
		{"NO_HOLE on a write", cmdWrite, cmdFlagNoHole, 0, 512, true, errInval},
		{"DF without structured replies", cmdRead, cmdFlagDF, 0, 512, false, errInval},
		{"FAST_ZERO not advertised", cmdWriteZeroes, cmdFlagFastZero, 0, 512, false, errInval},
		{"NBD_CMD_CACHE", cmdCache, 0, 0, 512, false, errInval},
		{"NBD_CMD_BLOCK_STATUS", cmdBlockStatus, 0, 0, 512, false, errInval},
		{"command 42", 42, 0, 0, 512, false, errInval},
	}
	for _, tc := range cases {
		var payload []byte
		if tc.payload {
			payload = pattern(int(tc.length), 1)
		}
		if code, _ := c.do(tc.typ, tc.flags, tc.off, tc.length, payload); code != tc.want {
			t.Errorf("%s: error %d, want %d", tc.name, code, tc.want)
		}
	}
	// Refused payloads were consumed: the stream is still in step.
	if got := c.read(0, 512); !bytes.Equal(got, b.snapshot(0, 512)) {
		t.Error("read after refused requests returned wrong data")
	}
	if calls := b.recorded(); len(calls) != 0 {
		t.Errorf("refused requests reached the backend: %v", calls)
	}
	got := s.Counters()
	if n := uint64(len(cases)); got.Rejected != n || got.Errors != n || got.Unknown != 3 {
		t.Errorf("counters %+v: want %d rejected and errors, 3 unknown", got, n)
	}
}

func TestUnadvertisedCommandsRefused(t *testing.T) {
	b := newMemBackend(1 << 20)
	kernelEnd, serverEnd := socketPairConn(t)
	done := make(chan error, 1)
	go func() { done <- ServeTransmission(serverEnd, b, FlagHasFlags) }() // nothing offered
	c := wrap(t, kernelEnd)
	for _, typ := range []uint16{cmdFlush, cmdTrim, cmdWriteZeroes} {
		if code, _ := c.do(typ, 0, 0, 512, nil); code != errInval {
			t.Errorf("%s not advertised: error %d, want EINVAL", commandName(typ), code)
		}
	}
	if code, _ := c.do(cmdWrite, cmdFlagFUA, 0, 512, make([]byte, 512)); code != errInval {
		t.Errorf("FUA not advertised: error %d, want EINVAL", code)
	}
	c.disconnect()
	if err := <-done; err != nil {
		t.Errorf("ServeTransmission after NBD_CMD_DISC: %v", err)
	}
}

func TestOversizedRequestsDoNotAllocate(t *testing.T) {
	c, _ := connect(t, startServer(t, &Server{Backend: newMemBackend(1 << 20)}), "")
	huge := make([]byte, 40<<20) // over the default 32 MiB maximum
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if code, _ := c.do(cmdRead, 0, 0, 0xFFFFFE00, nil); code != errInval {
		t.Errorf("4 GiB read: error %d, want EINVAL", code)
	}
	if code, _ := c.do(cmdWrite, 0, 0, uint32(len(huge)), huge); code != errInval {
		t.Errorf("40 MiB write: error %d, want EINVAL", code)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4<<20 {
		t.Errorf("refusing oversized requests allocated %d bytes", grew)
	}
	c.read(0, 512)
}

func TestReadOnly(t *testing.T) {
	b := newMemBackend(1 << 20)
	b.readOnly.Store(true)
	s := &Server{Backend: b}
	c, e := connect(t, startServer(t, s), "")
	if e.flags&FlagReadOnly == 0 {
		t.Fatalf("flags %#x of a read-only backend lack READ_ONLY", e.flags)
	}
	check := func(when string) {
		t.Helper()
		if code, _ := c.do(cmdWrite, 0, 0, 512, make([]byte, 512)); code != errPerm {
			t.Errorf("%s: write error %d, want EPERM", when, code)
		}
		if code, _ := c.do(cmdTrim, 0, 0, 512, nil); code != errPerm {
			t.Errorf("%s: trim error %d, want EPERM", when, code)
		}
		if code, _ := c.do(cmdWriteZeroes, 0, 0, 512, nil); code != errPerm {
			t.Errorf("%s: write-zeroes error %d, want EPERM", when, code)
		}
		if got := c.read(0, 512); !bytes.Equal(got, b.snapshot(0, 512)) {
			t.Errorf("%s: read returned wrong data", when)
		}
	}
	check("read-only backend")
	// The flag was advertised, so writes stay refused after a promotion
	// until the client reconnects.
	b.readOnly.Store(false)
	check("READ_ONLY advertised")
	if calls := b.recorded(); len(calls) != 0 {
		t.Errorf("refused writes reached the backend: %v", calls)
	}

	// A backend that turns read-only under a writable connection (a
	// demotion) refuses writes at once.
	c2, e2 := connect(t, startServer(t, &Server{Backend: b}), "")
	if e2.flags&FlagReadOnly != 0 {
		t.Fatalf("writable backend advertised READ_ONLY")
	}
	if code, _ := c2.do(cmdWrite, 0, 0, 512, make([]byte, 512)); code != 0 {
		t.Fatalf("write while writable: error %d", code)
	}
	b.readOnly.Store(true)
	if code, _ := c2.do(cmdWrite, 0, 0, 512, make([]byte, 512)); code != errPerm {
		t.Errorf("write after demotion: error %d, want EPERM", code)
	}
}

// errBackend fails reads with the error stored for the offset.
type errBackend struct {
	*memBackend
	errs map[uint64]error
}

func (e *errBackend) ReadAt(p []byte, off uint64) error {
	if err := e.errs[off]; err != nil {
		return err
	}
	return e.memBackend.ReadAt(p, off)
}

func TestBackendErrors(t *testing.T) {
	cases := []struct {
		err  error
		want uint32
	}{
		{ErrIO, 5},
		{fmt.Errorf("replica: %w", ErrNoSpace), 28},
		{syscall.EDQUOT, 28},
		{ErrReadOnly, 1},
		{ErrInvalid, 22},
		{ErrShutdown, 108},
		{errors.New("anything else"), 5},
	}
	b := &errBackend{memBackend: newMemBackend(1 << 20), errs: map[uint64]error{}}
	for i, tc := range cases {
		b.errs[uint64(i)*4096] = tc.err
	}
	s := &Server{Backend: b}
	c, _ := connect(t, startServer(t, s), "")
	for i, tc := range cases {
		if code, data := c.do(cmdRead, 0, uint64(i)*4096, 4096, nil); code != tc.want || data != nil {
			t.Errorf("backend error %v: reply error %d with %d bytes, want %d and no data", tc.err, code, len(data), tc.want)
		}
	}
	c.read(64<<10, 512) // the stream is in step: failed reads carried no data
	if got := s.Counters(); got.Errors != uint64(len(cases)) || got.Rejected != 0 {
		t.Errorf("counters %+v: want %d errors, none rejected", got, len(cases))
	}
}

func TestOutOfOrderCompletion(t *testing.T) {
	b := newGatedBackend(1 << 20)
	c, _ := connect(t, startServer(t, &Server{Backend: b}), "")
	const n = 8
	lengths := map[uint64]uint32{}
	for i := range n {
		cookie := uint64(100 + i)
		lengths[cookie] = 4096
		c.send(cmdRead, 0, cookie, uint64(i)*4096, 4096, nil)
	}
	// All n are inside the backend at once before any completes.
	gates := map[uint64]*gate{}
	for range n {
		g := b.next(t)
		gates[g.off] = g
	}
	// Complete them last to first; each reply must follow its completion.
	for i := n - 1; i >= 0; i-- {
		off := uint64(i) * 4096
		close(gates[off].release)
		cookie, code, data := c.reply(lengths)
		if cookie != uint64(100+i) || code != 0 {
			t.Fatalf("reply cookie %d error %d, want cookie %d", cookie, code, 100+i)
		}
		if !bytes.Equal(data, b.snapshot(int(off), 4096)) {
			t.Fatalf("reply to cookie %d carries the wrong data", cookie)
		}
	}
}

func TestInFlightBounded(t *testing.T) {
	t.Run("requests", func(t *testing.T) {
		b := newGatedBackend(1 << 20)
		s := &Server{Backend: b, MaxInFlight: 3}
		c, _ := connect(t, startServer(t, s), "")
		checkBound(t, c, b, s, 6, 512, 3)
	})
	t.Run("bytes", func(t *testing.T) {
		b := newGatedBackend(1 << 20)
		s := &Server{Backend: b, MaxPayload: 64 << 10, MaxInFlightBytes: 128 << 10}
		c, _ := connect(t, startServer(t, s), "")
		checkBound(t, c, b, s, 5, 64<<10, 2)
	})
}

// checkBound sends total writes of length bytes and checks that only bound
// reach the backend at a time.
func checkBound(t *testing.T, c *client, b *gatedBackend, s *Server, total int, length uint32, bound int) {
	// The server stops reading once the bound is reached, so the requests
	// are written from another goroutine, as a real client's queue would.
	var stream []byte
	for i := range total {
		stream = append(stream, requestBytes(cmdWrite, 0, uint64(i), uint64(i)*uint64(length), length)...)
		stream = append(stream, pattern(int(length), byte(i))...)
	}
	sent := make(chan error, 1)
	go func() {
		_, err := c.conn.Write(stream)
		sent <- err
	}()
	defer func() {
		if err := <-sent; err != nil {
			t.Errorf("send requests: %v", err)
		}
	}()
	var held []*gate
	for range bound {
		held = append(held, b.next(t))
	}
	b.noMore(t)
	if got := s.Counters().InFlight; got != uint64(bound) {
		t.Errorf("InFlight = %d, want %d", got, bound)
	}
	for done := 0; done < total; done++ {
		close(held[0].release)
		held = held[1:]
		if _, code, _ := c.reply(nil); code != 0 {
			t.Fatalf("write error %d", code)
		}
		if done+bound < total {
			held = append(held, b.next(t)) // a slot freed, the next one enters
		}
	}
}

func TestDisconnectDrainsInFlight(t *testing.T) {
	b := newGatedBackend(1 << 20)
	kernelEnd, serverEnd := socketPairConn(t)
	s := &Server{Backend: b}
	done := make(chan error, 1)
	go func() { done <- s.ServeTransmission(serverEnd, ExportFlags(b)) }()
	c := wrap(t, kernelEnd)
	for i := range 3 {
		c.send(cmdWrite, 0, uint64(i), uint64(i)*4096, 4096, pattern(4096, byte(i)))
	}
	var held []*gate
	for range 3 {
		held = append(held, b.next(t))
	}
	c.disconnect()
	select {
	case err := <-done:
		t.Fatalf("ServeTransmission returned (%v) with writes in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	for _, g := range held {
		close(g.release)
	}
	for range 3 {
		if _, code, _ := c.reply(nil); code != 0 {
			t.Errorf("in-flight write failed: %d", code)
		}
	}
	c.expectClosed()
	if err := <-done; err != nil {
		t.Errorf("ServeTransmission after NBD_CMD_DISC: %v", err)
	}
	for i := range 3 {
		if !bytes.Equal(b.snapshot(i*4096, 4096), pattern(4096, byte(i))) {
			t.Errorf("write %d did not reach the backend", i)
		}
	}
}

func TestBadMagicClosesAfterDraining(t *testing.T) {
	b := newGatedBackend(1 << 20)
	kernelEnd, serverEnd := socketPairConn(t)
	s := &Server{Backend: b}
	done := make(chan error, 1)
	go func() { done <- s.ServeTransmission(serverEnd, ExportFlags(b)) }()
	c := wrap(t, kernelEnd)
	c.send(cmdRead, 0, 7, 0, 512, nil)
	g := b.next(t)
	garbage := make([]byte, 28)
	copy(garbage, "GET / HTTP/1.1\r\n")
	c.write(garbage)
	// The reader has given up on the stream before the read completes.
	waitFor(t, func() bool { return s.Counters().Malformed == 1 }, "the bad magic to be counted")
	close(g.release)
	if cookie, code, _ := c.reply(map[uint64]uint32{7: 512}); cookie != 7 || code != 0 {
		t.Errorf("in-flight read: cookie %d error %d", cookie, code)
	}
	c.expectClosed()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "magic") {
		t.Errorf("ServeTransmission: %v, want an error about the magic", err)
	}
	if got := s.Counters(); got.Malformed != 1 || got.Active != 0 {
		t.Errorf("counters %+v: want 1 malformed, none active", got)
	}
}

func TestClientHangUp(t *testing.T) {
	kernelEnd, serverEnd := socketPairConn(t)
	done := make(chan error, 1)
	go func() { done <- ServeTransmission(serverEnd, newMemBackend(4096), FlagHasFlags) }()
	kernelEnd.Close()
	if err := <-done; !errors.Is(err, io.EOF) {
		t.Errorf("ServeTransmission after hang-up: %v, want io.EOF", err)
	}
}

func TestShutdownDrainsInFlight(t *testing.T) {
	b := newGatedBackend(1 << 20)
	s := &Server{Backend: b}
	path := startServer(t, s)
	c, _ := connect(t, path, "")
	idle := dial(t, path) // still negotiating
	c.send(cmdWrite, 0, 1, 0, 4096, pattern(4096, 9))
	g := b.next(t)

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	idle.expectClosed()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a write in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(g.release)
	if _, code, _ := c.reply(nil); code != 0 {
		t.Errorf("in-flight write failed: %d", code)
	}
	c.expectClosed()
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Error("a new connection was accepted after Shutdown")
	}
	if got := s.Counters(); got.HandshakeFailures != 0 {
		t.Errorf("a handshake cut by Shutdown counted as a failure: %+v", got)
	}
}

func TestShutdownDeadline(t *testing.T) {
	b := newGatedBackend(1 << 20)
	s := &Server{Backend: b}
	c, _ := connect(t, startServer(t, s), "")
	c.send(cmdRead, 0, 1, 0, 512, nil)
	g := b.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a stuck backend: %v, want DeadlineExceeded", err)
	}
	c.expectClosed()
	close(g.release) // let the request goroutine finish
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := s.ServeTransmission(nopConn{}, FlagHasFlags); !errors.Is(err, ErrServerClosed) {
		t.Errorf("ServeTransmission after Shutdown: %v", err)
	}
}

// nopConn is a connection that was never used.
type nopConn struct{}

func (nopConn) Read([]byte) (int, error)    { return 0, io.EOF }
func (nopConn) Write(p []byte) (int, error) { return len(p), nil }
func (nopConn) Close() error                { return nil }

func TestErrorValue(t *testing.T) {
	cases := map[error]uint32{
		nil: 0, syscall.EPERM: 1, syscall.EROFS: 1, syscall.EIO: 5, syscall.ENOMEM: 12,
		syscall.EINVAL: 22, syscall.ENOSPC: 28, syscall.EFBIG: 28, syscall.EOVERFLOW: 75,
		syscall.ENOTSUP: 95, syscall.ESHUTDOWN: 108, syscall.ENOENT: 5, io.ErrUnexpectedEOF: 5,
	}
	for err, want := range cases {
		if got := errorValue(err); got != want {
			t.Errorf("errorValue(%v) = %d, want %d", err, got, want)
		}
	}
}
