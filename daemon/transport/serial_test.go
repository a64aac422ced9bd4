package transport

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/proto"
	"tandem/internal/wire"
)

// openPty opens a pseudo-terminal pair and returns its master and the path
// of its slave, which stands in for a serial port. The master is
// non-blocking so closing it interrupts a pending read.
func openPty(t *testing.T) (*os.File, string) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here (open /dev/ptmx: %v); the serial medium needs one to be tested", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt
		unix.Close(fd)
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN) // ptsname
	if err != nil {
		unix.Close(fd)
		t.Fatalf("ptsname: %v", err)
	}
	master := os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { master.Close() })
	return master, "/dev/pts/" + strconv.Itoa(int(n))
}

// cable joins two pty masters, so the media on their slaves talk as over a
// null-modem cable.
func cable(m1, m2 *os.File) {
	go io.Copy(m1, m2)
	go io.Copy(m2, m1)
}

func openSerial(t *testing.T, cfg SerialConfig, out chan Received) *Serial {
	t.Helper()
	s, err := OpenSerial(cfg, out)
	if err != nil {
		t.Fatal(err)
	}
	closeOnCleanup(t, s)
	return s
}

func serialConfig(self, peer proto.NodeID, device string) SerialConfig {
	return SerialConfig{Common: Common{ID: 1, Self: self, Key: testKey, Peers: []Peer{{Node: peer}}},
		Device: device, Baud: 38400}
}

func TestSerialExchange(t *testing.T) {
	m1, s1 := openPty(t)
	m2, s2 := openPty(t)
	toA, toB := make(chan Received, 16), make(chan Received, 16)
	a := openSerial(t, serialConfig(0, 1, s1), toA)
	b := openSerial(t, serialConfig(1, 0, s2), toB)
	cable(m1, m2)

	// Raw mode is on the slave; a pty master reads and writes its slave's
	// termios.
	for _, m := range []*os.File{m1, m2} {
		tio, err := unix.IoctlGetTermios(int(m.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tio.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG|unix.IEXTEN) != 0:
			t.Errorf("local modes %#o: still canonical, echoing or signalling", tio.Lflag)
		case tio.Oflag&unix.OPOST != 0:
			t.Errorf("output modes %#o: output still post-processed", tio.Oflag)
		case tio.Iflag&(unix.ICRNL|unix.IXON|unix.IXOFF|unix.ISTRIP) != 0:
			t.Errorf("input modes %#o: input still translated or flow controlled", tio.Iflag)
		case tio.Cflag&unix.CSIZE != unix.CS8 || tio.Cflag&(unix.CLOCAL|unix.CREAD) != unix.CLOCAL|unix.CREAD ||
			tio.Cflag&(unix.PARENB|unix.CRTSCTS) != 0:
			t.Errorf("control modes %#o: want 8N1, CLOCAL, CREAD, no RTS/CTS", tio.Cflag)
		case tio.Cflag&(unix.CBAUD|unix.CBAUDEX) != unix.B38400:
			t.Errorf("control modes %#o: speed is not 38400", tio.Cflag)
		}
	}
	if a.Kind() != proto.Serial || a.Name() != "serial "+s1 {
		t.Errorf("kind %v name %q", a.Kind(), a.Name())
	}

	sent := beat(0, 77, 1)
	sent.SentAt = 0x7fC0DB00C0DB // END and ESC bytes: the frame must escape them
	if !bytes.ContainsAny(packet(sent, testKey), "\xc0\xdb") {
		t.Fatal("test heartbeat has no byte to escape")
	}
	if err := a.Send(1, sent); err != nil {
		t.Fatal(err)
	}
	r := receive(t, toB)
	if r.Msg != *sent || r.Medium != 1 || r.From.String() != s2 || r.From.Network() != "serial" {
		t.Errorf("b received %+v from %v on %d, want %+v from %s on 1", r.Msg, r.From, r.Medium, *sent, s2)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := b.Send(0, beat(1, 5, seq)); err != nil {
			t.Fatal(err)
		}
		if r := receive(t, toA); r.Msg.Seq != seq {
			t.Errorf("a received %+v, want seq %d", r.Msg, seq)
		}
	}
	counted(t, a, Counters{Sent: 1, Received: 3})
	counted(t, b, Counters{Sent: 3, Received: 1})
}

// TestSerialDrops writes line noise and bad frames straight into the line
// towards a medium; a good frame written last shows everything before it
// was processed.
func TestSerialDrops(t *testing.T) {
	master, slave := openPty(t)
	ch := make(chan Received, 16)
	s := openSerial(t, serialConfig(1, 0, slave), ch)
	frame := func(pkt []byte) []byte { return wire.AppendFrame(nil, pkt) }
	good := frame(packet(beat(0, 2, 20), testKey))
	var line []byte
	line = append(line, frame([]byte("+++ATH0 line noise"))...)                // Malformed: not a packet
	line = append(line, 0xC0, 0xDB, 0x01, 0xC0)                                // Malformed: invalid escape
	line = append(line, frame(bytes.Repeat([]byte{'x'}, wire.MaxPacket+1))...) // Malformed: too long a frame
	line = append(line, frame(packet(beat(0, 2, 1), []byte("wrong key")))...)  // BadAuth
	line = append(line, frame(packet(beat(1, 2, 1), testKey))...)              // Self
	line = append(line, frame(packet(beat(2, 2, 1), testKey))...)              // WrongSender
	line = append(line, good...)
	line = append(line, good...) // Replayed
	line = append(line, frame(packet(beat(0, 2, 21), testKey))...)
	if _, err := master.Write(line); err != nil {
		t.Fatal(err)
	}
	for _, want := range []uint64{20, 21} {
		if r := receive(t, ch); r.Msg.Seq != want {
			t.Fatalf("received %+v, want seq %d", r.Msg, want)
		}
	}
	nothingMore(t, ch)
	want := Counters{Received: 2, Malformed: 3, BadAuth: 1, Self: 1, WrongSender: 1, Replayed: 1}
	counted(t, s, want)
}

// TestSerialWriteTimeout: nobody reads the other end of the line, as with
// a UART whose cable is unplugged on hardware that then stops sending. The
// pty's buffer fills, a write times out and is reported in Heartbeat's
// words, and the medium carries on.
func TestSerialWriteTimeout(t *testing.T) {
	master, slave := openPty(t)
	logs := &captureLog{}
	cfg := serialConfig(0, 1, slave)
	cfg.WriteTimeout = 50 * time.Millisecond
	cfg.Logger = slog.New(logs)
	s := openSerial(t, cfg, make(chan Received, 1))

	deadline := time.Now().Add(patience)
	seq := uint64(0)
	for s.Counters().SendErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no write timed out after %d heartbeats (%+v)", seq, s.Counters())
		}
		seq++
		if err := s.Send(1, beat(0, 1, seq)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond) // let the writer keep up until the buffer is full
	}
	want := "serial " + slave + ": write timed out after 50ms (no connection or bad cable?)"
	if err, at := s.LastError(); err == nil || err.Error() != want || at.IsZero() {
		t.Errorf("last error %v at %v, want %q", err, at, want)
	}
	if !logs.has("heartbeat not sent", want) {
		t.Errorf("the timeout was not logged; log:\n%s", logs)
	}
	if c := s.Counters(); c.Sent == 0 {
		t.Errorf("counters %+v: want packets sent before the buffer filled", c)
	}

	// The timed-out write flushed the stale queue, so heartbeats go on
	// filling it although the other end still reads nothing: when the
	// cable comes back, the peer gets recent heartbeats, not a backlog.
	sent := s.Counters().Sent
	for s.Counters().Sent == sent {
		if time.Now().After(deadline.Add(patience)) {
			t.Fatalf("nothing sent after the timeout: %+v", s.Counters())
		}
		seq++
		if err := s.Send(1, beat(0, 1, seq)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	_ = master // never read: that is the point
}

func TestSerialConfigErrors(t *testing.T) {
	_, slave := openPty(t)
	cases := []struct {
		what   string
		change func(*SerialConfig)
		want   string
	}{
		{"no device", func(c *SerialConfig) { c.Device = "" }, "no device"},
		{"an odd speed", func(c *SerialConfig) { c.Baud = 12345 }, "unsupported baud rate 12345"},
		{"a missing device", func(c *SerialConfig) { c.Device = "/dev/tandem-no-such-tty" }, "no such file"},
		{"not a terminal", func(c *SerialConfig) { c.Device = "/dev/null" }, "not a terminal"},
		{"a peer address", func(c *SerialConfig) { c.Peers[0].Addr = "10.0.0.2" }, "only unicast media"},
		{"no key", func(c *SerialConfig) { c.Key = nil }, "authentication key"},
	}
	for _, c := range cases {
		cfg := serialConfig(0, 1, slave)
		c.change(&cfg)
		s, err := OpenSerial(cfg, make(chan Received))
		if err == nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.what, err, c.want)
		}
	}
}
