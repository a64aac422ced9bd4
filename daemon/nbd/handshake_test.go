package nbd

import (
	"bytes"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"
)

const allFlags = FlagHasFlags | FlagSendFlush | FlagSendFUA | FlagSendTrim | FlagSendWriteZeroes

func TestExportNameWithoutZeroes(t *testing.T) {
	b := newMemBackend(1<<20 + 300) // the odd tail is not exported
	s := &Server{Backend: b, ExportName: "tandem"}
	c := dial(t, startServer(t, s))
	c.sendFlags(3) // FIXED_NEWSTYLE | NO_ZEROES
	c.sendOption(1, []byte("tandem"))
	var reply [10]byte
	c.readFull(reply[:])
	if size := binary.BigEndian.Uint64(reply[0:]); size != 1<<20 {
		t.Errorf("size %d, want %d (whole 512-byte blocks)", size, 1<<20)
	}
	if flags := Flags(binary.BigEndian.Uint16(reply[8:])); flags != allFlags {
		t.Errorf("flags %#x, want %#x", flags, allFlags)
	}
	// No padding follows: the very next bytes are a reply to our request.
	if got := c.read(4096, 512); !bytes.Equal(got, b.snapshot(4096, 512)) {
		t.Error("read after NBD_OPT_EXPORT_NAME returned wrong data")
	}
}

func TestExportNameWithZeroes(t *testing.T) {
	b := newMemBackend(1 << 20)
	c := dial(t, startServer(t, &Server{Backend: b, ExportName: "tandem"}))
	c.sendFlags(1) // FIXED_NEWSTYLE only: the 124 zero bytes follow
	c.sendOption(1, nil)
	var reply [134]byte
	c.readFull(reply[:])
	if !bytes.Equal(reply[10:], make([]byte, 124)) {
		t.Error("padding after the export reply is not zero")
	}
	if got := c.read(0, 512); !bytes.Equal(got, b.snapshot(0, 512)) {
		t.Error("read after padded NBD_OPT_EXPORT_NAME returned wrong data")
	}
}

func TestExportNameUnknownClosesTheSession(t *testing.T) {
	s := &Server{Backend: newMemBackend(1 << 20), ExportName: "tandem"}
	c := dial(t, startServer(t, s))
	c.sendFlags(3)
	c.sendOption(1, []byte("other"))
	c.expectClosed()
	if got := s.Counters().HandshakeFailures; got != 1 {
		t.Errorf("HandshakeFailures = %d, want 1", got)
	}
}

func TestGo(t *testing.T) {
	s := &Server{Backend: newMemBackend(8 << 20), ExportName: "tandem", MaxPayload: 1 << 20}
	c := dial(t, startServer(t, s))
	c.sendFlags(1)
	e, final := c.info(7, "tandem", 3, 1)
	if final != 1 {
		t.Fatalf("final reply %#x, want NBD_REP_ACK", final)
	}
	want := export{size: 8 << 20, flags: allFlags, minimum: 512, preferred: 4096, most: 1 << 20, name: "tandem", hasName: true}
	if e != want {
		t.Errorf("NBD_OPT_GO told %+v, want %+v", e, want)
	}
	// In transmission now, with no padding after NBD_REP_ACK.
	c.read(0, 4096)
	if got := s.Counters(); got.Connections != 1 || got.Reads != 1 || got.BytesRead != 4096 {
		t.Errorf("counters %+v: want 1 connection, 1 read of 4096 bytes", got)
	}
}

func TestInfoThenGo(t *testing.T) {
	b := newMemBackend(1 << 20)
	b.readOnly.Store(true)
	c := dial(t, startServer(t, &Server{Backend: b, ExportName: "tandem"}))
	c.sendFlags(3)
	e, final := c.info(6, "", 3) // the default export
	if final != 1 || e.size != 1<<20 || e.flags != allFlags|FlagReadOnly || e.minimum != 512 {
		t.Fatalf("NBD_OPT_INFO: %+v, final %#x", e, final)
	}
	// Still negotiating: another option is answered.
	c.sendOption(3, nil)
	if r := c.readOptionReply(3); r.typ != 2 {
		t.Fatalf("NBD_OPT_LIST after NBD_OPT_INFO: reply %#x", r.typ)
	}
	c.readOptionReply(3) // its NBD_REP_ACK
	if _, final := c.info(7, "tandem"); final != 1 {
		t.Fatalf("NBD_OPT_GO: final reply %#x", final)
	}
	c.read(512, 512)
}

func TestGoErrors(t *testing.T) {
	c := dial(t, startServer(t, &Server{Backend: newMemBackend(1 << 20), ExportName: "tandem"}))
	c.sendFlags(3)
	if _, final := c.info(7, "nope"); final != 1<<31|6 {
		t.Errorf("NBD_OPT_GO of an unknown export: %#x, want NBD_REP_ERR_UNKNOWN", final)
	}
	bad := binary.BigEndian.AppendUint32(nil, 100) // name length overruns the data
	bad = append(bad, "tandem\x00\x00"...)
	c.sendOption(7, bad)
	r := c.readOptionReply(7)
	if r.typ != 1<<31|3 || !strings.Contains(string(r.data), "overruns") {
		t.Errorf("malformed NBD_OPT_GO: reply %#x %q, want NBD_REP_ERR_INVALID with a reason", r.typ, r.data)
	}
	short := infoData("tandem", 3)
	binary.BigEndian.PutUint16(short[10:], 2) // two requests announced, one sent
	c.sendOption(6, short)
	if r := c.readOptionReply(6); r.typ != 1<<31|3 {
		t.Errorf("NBD_OPT_INFO with a short request list: reply %#x, want NBD_REP_ERR_INVALID", r.typ)
	}
	// The session survives all of it.
	if _, final := c.info(7, "tandem"); final != 1 {
		t.Fatalf("NBD_OPT_GO after errors: %#x", final)
	}
	c.read(0, 512)
}

func TestList(t *testing.T) {
	c := dial(t, startServer(t, &Server{Backend: newMemBackend(1 << 20), ExportName: "tandem"}))
	c.sendFlags(3)
	c.sendOption(3, nil)
	r := c.readOptionReply(3)
	want := append(binary.BigEndian.AppendUint32(nil, 6), "tandem"...)
	if r.typ != 2 || !bytes.Equal(r.data, want) {
		t.Errorf("NBD_OPT_LIST: reply %#x %q, want NBD_REP_SERVER %q", r.typ, r.data, want)
	}
	if r := c.readOptionReply(3); r.typ != 1 {
		t.Errorf("NBD_OPT_LIST: final reply %#x, want NBD_REP_ACK", r.typ)
	}
	c.sendOption(3, []byte("x"))
	if r := c.readOptionReply(3); r.typ != 1<<31|3 {
		t.Errorf("NBD_OPT_LIST with data: %#x, want NBD_REP_ERR_INVALID", r.typ)
	}
}

func TestUnknownOptionsAreUnsupported(t *testing.T) {
	c := dial(t, startServer(t, &Server{Backend: newMemBackend(1 << 20)}))
	c.sendFlags(3)
	for _, opt := range []uint32{5, 8, 10, 11, 999} { // STARTTLS, STRUCTURED_REPLY, SET_META_CONTEXT, EXTENDED_HEADERS, made up
		c.sendOption(opt, []byte("some data"))
		if r := c.readOptionReply(opt); r.typ != 1<<31|1 {
			t.Errorf("option %d: reply %#x, want NBD_REP_ERR_UNSUP", opt, r.typ)
		}
	}
	if _, final := c.info(7, ""); final != 1 {
		t.Fatalf("NBD_OPT_GO after unsupported options: %#x", final)
	}
	c.read(0, 512)
}

func TestAbort(t *testing.T) {
	s := &Server{Backend: newMemBackend(1 << 20)}
	c := dial(t, startServer(t, s))
	c.sendFlags(3)
	c.sendOption(2, nil)
	if r := c.readOptionReply(2); r.typ != 1 {
		t.Errorf("NBD_OPT_ABORT: reply %#x, want NBD_REP_ACK", r.typ)
	}
	c.expectClosed()
	if got := s.Counters(); got.HandshakeFailures != 0 || got.Connections != 0 {
		t.Errorf("after abort: %+v; an abort is neither a failure nor a connection", got)
	}
}

func TestHandshakeViolationsClose(t *testing.T) {
	cases := map[string]func(c *client){
		"unknown client flag": func(c *client) { c.sendFlags(1 << 5) },
		"bad option magic": func(c *client) {
			c.sendFlags(3)
			c.write(make([]byte, 16))
		},
		"option too long": func(c *client) {
			c.sendFlags(3)
			msg := binary.BigEndian.AppendUint64(nil, 0x49484156454F5054)
			msg = binary.BigEndian.AppendUint32(msg, 7)
			msg = binary.BigEndian.AppendUint32(msg, 1<<30)
			c.write(msg)
		},
		"silence past the timeout": func(c *client) {},
	}
	for name, misbehave := range cases {
		t.Run(name, func(t *testing.T) {
			s := &Server{Backend: newMemBackend(1 << 20), HandshakeTimeout: 300 * time.Millisecond}
			c := dial(t, startServer(t, s))
			misbehave(c)
			c.expectClosed()
			waitFor(t, func() bool { return s.Counters().HandshakeFailures == 1 }, "HandshakeFailures == 1")
		})
	}
}

// waitFor polls cond; counters are updated just after the connection closes.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, patience)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestServerConfigErrors(t *testing.T) {
	l, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		s    *Server
		want string
	}{
		{&Server{}, "Backend is nil"},
		{&Server{Backend: newMemBackend(4096), MaxPayload: 1000}, "multiple of 512"},
		{&Server{Backend: newMemBackend(4096), MaxPayload: 1024}, "from 4096"},
		{&Server{Backend: newMemBackend(4096), HandshakeTimeout: -time.Second}, "must be positive"},
		{&Server{Backend: newMemBackend(4096), MaxInFlight: -1}, "must be positive"},
		{&Server{Backend: newMemBackend(4096), MaxPayload: 1 << 20, MaxInFlightBytes: 4096}, "less than MaxPayload"},
		{&Server{Backend: newMemBackend(4096), ExportName: strings.Repeat("x", 4097)}, "at most 4096"},
	}
	for i, tc := range cases {
		if err := tc.s.Serve(l); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: Serve: %v, want an error about %q", i, err, tc.want)
		}
	}
}
