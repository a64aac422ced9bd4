package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"tandem/internal/proto"
	"tandem/internal/wire"
)

// DefaultBaud is Heartbeat's default serial speed (baud 19200).
const DefaultBaud = 19200

// bauds maps the supported speeds to their termios constants.
var bauds = map[int]uint32{
	9600:   unix.B9600,
	19200:  unix.B19200,
	38400:  unix.B38400,
	57600:  unix.B57600,
	115200: unix.B115200,
}

// SerialConfig configures a serial medium: a null-modem cable between two
// nodes' serial ports. Common.Peers name the node(s) at the other end,
// without addresses.
type SerialConfig struct {
	Common
	// Device is the serial port, e.g. /dev/ttyS1.
	Device string
	// Baud is the line speed: 9600, 19200, 38400, 57600 or 115200. Both
	// ends must agree. Default DefaultBaud (19200).
	Baud int
}

// SerialAddr is the net.Addr of heartbeats received on a serial line: the
// device's path.
type SerialAddr string

// Network is "serial".
func (SerialAddr) Network() string { return "serial" }

func (a SerialAddr) String() string { return string(a) }

// Serial is a serial-line heartbeat medium. Packets are SLIP-framed
// (wire.AppendFrame, wire.Deframer) so a receiver resynchronises after noise
// or a cut. It implements Medium.
type Serial struct {
	*base
	file    *os.File
	device  string
	timeout time.Duration
}

var _ Medium = (*Serial)(nil)

// OpenSerial opens the serial port, puts it in raw mode at the configured
// speed, and starts its reader and writer; received heartbeats go to out.
// The port is opened exclusively (TIOCEXCL) so a getty or another program
// cannot share it unnoticed. The caller must Close it.
func OpenSerial(cfg SerialConfig, out chan<- Received) (*Serial, error) {
	if cfg.Baud == 0 {
		cfg.Baud = DefaultBaud
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	b, err := newBase(&cfg.Common, proto.Serial, "serial "+cfg.Device, false, out)
	if err != nil {
		return nil, err
	}
	if cfg.Device == "" {
		return nil, fmt.Errorf("%s: no device configured (e.g. /dev/ttyS1)", b.name)
	}
	speed, ok := bauds[cfg.Baud]
	if !ok {
		return nil, fmt.Errorf("%s: unsupported baud rate %d (want 9600, 19200, 38400, 57600 or 115200)", b.name, cfg.Baud)
	}
	// O_NONBLOCK makes os.NewFile put the descriptor in Go's poller, which
	// gives reads that Close can interrupt and writes with deadlines.
	fd, err := unix.Open(cfg.Device, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: open: %w", b.name, err)
	}
	if err := makeRaw(fd, speed); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", b.name, err)
	}
	f := os.NewFile(uintptr(fd), cfg.Device)
	if err := f.SetWriteDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: the device does not support write timeouts (%v); is it a serial port?", b.name, err)
	}
	s := &Serial{base: b, file: f, device: cfg.Device, timeout: cfg.WriteTimeout}
	s.wg.Add(2)
	go s.reader()
	go s.writer(s.write)
	return s, nil
}

// makeRaw puts the line in raw mode, like cfmakeraw(3): no echo, no line
// editing, no signals, no CR/LF translation, 8 data bits, no parity, one
// stop bit; plus CLOCAL (ignore modem control lines: a null-modem cable
// often has no carrier), CREAD (enable the receiver), no hardware or
// software flow control (a stuck flow control would stop heartbeats), and
// reads that return as soon as one byte is there. It then discards stale
// input and claims the port exclusively.
func makeRaw(fd int, speed uint32) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("not a terminal (TCGETS: %w)", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CSTOPB | unix.CRTSCTS | unix.CBAUD | unix.CBAUDEX
	t.Cflag |= unix.CS8 | unix.CLOCAL | unix.CREAD | speed
	t.Ispeed, t.Ospeed = speed, speed
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set raw mode (TCSETS): %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH); err != nil {
		return fmt.Errorf("flush input (TCFLSH): %w", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TIOCEXCL, 0); err != nil {
		return fmt.Errorf("claim exclusively (TIOCEXCL): %w", err)
	}
	return nil
}

// Send queues hb for the other end; see Medium.Send.
func (s *Serial) Send(to proto.NodeID, hb *proto.Heartbeat) error {
	return s.send(to, hb, func(pkt []byte) []byte { return wire.AppendFrame(nil, pkt) })
}

// Close stops the medium; see Medium.Close.
func (s *Serial) Close() error { return s.shutdown(s.file.Close) }

// write sends one frame within the timeout. A write that times out leaves
// part of a frame on the line (the next frame's leading END closes it off
// as garbage) and flushes the output queue, so that when the cable is back
// the peer gets the newest heartbeat rather than a backlog of stale ones.
func (s *Serial) write(_ int, frame []byte) error {
	if err := s.file.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return fmt.Errorf("serial %s: %w", s.device, err)
	}
	_, err := s.file.Write(frame)
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.flushOutput()
		return fmt.Errorf("serial %s: write timed out after %v (no connection or bad cable?)", s.device, s.timeout)
	}
	return fmt.Errorf("serial %s: write: %w", s.device, err)
}

func (s *Serial) flushOutput() {
	rc, err := s.file.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.IoctlSetInt(int(fd), unix.TCFLSH, unix.TCOFLUSH)
	})
}

// reader reads the line until the medium closes, deframes it and checks
// each packet. The deframer's garbage and overrun counts feed Malformed and
// Overrun.
func (s *Serial) reader() {
	defer s.wg.Done()
	var d wire.Deframer
	var dropped, overruns uint64
	from := SerialAddr(s.device)
	buf := make([]byte, 4096)
	failing := false
	for {
		n, err := s.file.Read(buf)
		at := time.Now()
		if n > 0 {
			d.Write(buf[:n])
			// The deframer's counts are taken before each packet it hands
			// out is checked, so they are up to date by the time a later
			// packet is delivered.
			for {
				pkt, ok := d.Next()
				for ; dropped < d.Dropped; dropped++ {
					s.drop(&s.stats.malformed, "garbage on the line (noise, a cut frame or a bad escape)", from, slog.LevelInfo)
				}
				if d.Overruns != overruns {
					s.stats.overrun.Add(d.Overruns - overruns)
					overruns = d.Overruns
				}
				if !ok {
					break
				}
				s.accept(pkt, from, at)
			}
		}
		if err == nil && n > 0 {
			if failing {
				s.log.Info("reading works again")
				failing = false
			}
			continue
		}
		if s.isClosed() {
			return
		}
		// End of file or an error (a pty whose other side closed, a USB
		// adapter unplugged): wait and try again rather than spin; the
		// silence shows up in membership, the reason here.
		if !failing {
			s.log.Warn("read failed; retrying every second", "err", err)
			failing = true
		}
		select {
		case <-s.closed:
			return
		case <-time.After(time.Second):
		}
	}
}
