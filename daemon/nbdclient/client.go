// Package nbdclient is a minimal NBD client (fixed newstyle handshake with
// NBD_OPT_EXPORT_NAME, then one request at a time) for the daemon's
// integration tests and `tandem demo`: enough to write and read back blocks
// through a daemon's NBD unix socket without the kernel's nbd module.
package nbdclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

const (
	optMagic     = 0x49484156454F5054 // "IHAVEOPT"
	requestMagic = 0x25609513
	replyMagic   = 0x67446698

	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1

	optExportName = 1

	cmdRead  = 0
	cmdWrite = 1
	cmdDisc  = 2
	cmdFlush = 3
	cmdTrim  = 4
	cmdZero  = 6
)

// Client is one NBD connection. It is not safe for concurrent use.
type Client struct {
	conn   net.Conn
	size   uint64
	flags  uint16
	handle uint64
	hdr    [28]byte
}

// Error is an error value the server sent in a reply.
type Error struct {
	Op    string
	Off   uint64
	Errno syscall.Errno
}

func (e *Error) Error() string {
	return fmt.Sprintf("nbd %s at byte %d: %v", e.Op, e.Off, e.Errno)
}

// Unwrap lets errors.Is(err, syscall.EPERM) work.
func (e *Error) Unwrap() error { return e.Errno }

// Dial connects to an NBD server on a unix socket and negotiates the
// default export.
func Dial(path string, timeout time.Duration) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	c := &Client{conn: conn}
	conn.SetDeadline(time.Now().Add(timeout))
	if err := c.handshake(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("nbd handshake on %s: %w", path, err)
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

func (c *Client) handshake() error {
	var hello [18]byte
	if _, err := io.ReadFull(c.conn, hello[:]); err != nil {
		return err
	}
	if string(hello[:8]) != "NBDMAGIC" || binary.BigEndian.Uint64(hello[8:16]) != optMagic {
		return errors.New("not a newstyle NBD server")
	}
	server := binary.BigEndian.Uint16(hello[16:])
	client := uint32(flagFixedNewstyle)
	if server&flagNoZeroes != 0 {
		client |= flagNoZeroes
	}
	var b []byte
	b = binary.BigEndian.AppendUint32(b, client)
	b = binary.BigEndian.AppendUint64(b, optMagic)
	b = binary.BigEndian.AppendUint32(b, optExportName)
	b = binary.BigEndian.AppendUint32(b, 0) // the default export: ""
	if _, err := c.conn.Write(b); err != nil {
		return err
	}
	var info [10]byte
	if _, err := io.ReadFull(c.conn, info[:]); err != nil {
		return err
	}
	c.size = binary.BigEndian.Uint64(info[:8])
	c.flags = binary.BigEndian.Uint16(info[8:])
	if client&flagNoZeroes == 0 {
		var zero [124]byte
		if _, err := io.ReadFull(c.conn, zero[:]); err != nil {
			return err
		}
	}
	return nil
}

// Size is the export's size in bytes.
func (c *Client) Size() uint64 { return c.size }

// ReadOnly reports whether the server announced a read-only export.
func (c *Client) ReadOnly() bool { return c.flags&(1<<1) != 0 }

func (c *Client) request(cmd uint16, off uint64, length uint32, data []byte) error {
	c.handle++
	h := c.hdr[:]
	binary.BigEndian.PutUint32(h[0:], requestMagic)
	binary.BigEndian.PutUint16(h[4:], 0)
	binary.BigEndian.PutUint16(h[6:], cmd)
	binary.BigEndian.PutUint64(h[8:], c.handle)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	bufs := net.Buffers{h}
	if data != nil {
		bufs = append(bufs, data)
	}
	if _, err := bufs.WriteTo(c.conn); err != nil {
		return err
	}
	return nil
}

func (c *Client) reply(op string, off uint64, into []byte) error {
	var r [16]byte
	if _, err := io.ReadFull(c.conn, r[:]); err != nil {
		return fmt.Errorf("nbd %s at byte %d: reading the reply: %w", op, off, err)
	}
	if binary.BigEndian.Uint32(r[:4]) != replyMagic || binary.BigEndian.Uint64(r[8:]) != c.handle {
		return fmt.Errorf("nbd %s at byte %d: malformed reply", op, off)
	}
	if e := binary.BigEndian.Uint32(r[4:8]); e != 0 {
		return &Error{Op: op, Off: off, Errno: syscall.Errno(e)}
	}
	if into != nil {
		if _, err := io.ReadFull(c.conn, into); err != nil {
			return fmt.Errorf("nbd %s at byte %d: reading the data: %w", op, off, err)
		}
	}
	return nil
}

// ReadAt reads len(p) bytes at off.
func (c *Client) ReadAt(p []byte, off uint64) error {
	if err := c.request(cmdRead, off, uint32(len(p)), nil); err != nil {
		return err
	}
	return c.reply("read", off, p)
}

// WriteAt writes p at off; it returns once the server acknowledged it.
func (c *Client) WriteAt(p []byte, off uint64) error {
	if err := c.request(cmdWrite, off, uint32(len(p)), p); err != nil {
		return err
	}
	return c.reply("write", off, nil)
}

// Flush asks the server to make every acknowledged write durable.
func (c *Client) Flush() error {
	if err := c.request(cmdFlush, 0, 0, nil); err != nil {
		return err
	}
	return c.reply("flush", 0, nil)
}

// Trim discards length bytes at off.
func (c *Client) Trim(off uint64, length uint32) error {
	if err := c.request(cmdTrim, off, length, nil); err != nil {
		return err
	}
	return c.reply("trim", off, nil)
}

// WriteZeroes makes length bytes at off read back as zeroes.
func (c *Client) WriteZeroes(off uint64, length uint32) error {
	if err := c.request(cmdZero, off, length, nil); err != nil {
		return err
	}
	return c.reply("write-zeroes", off, nil)
}

// SetDeadline bounds the requests that follow (zero: none).
func (c *Client) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// Close says goodbye (NBD_CMD_DISC) and closes the connection.
func (c *Client) Close() error {
	c.request(cmdDisc, 0, 0, nil)
	return c.conn.Close()
}
