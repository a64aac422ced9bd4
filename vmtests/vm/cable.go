package vm

import (
	"net"
	"sync"
)

// Cable is the null-modem serial cable between the two data nodes' ttyS1.
// Each end is the VM's "-chardev socket" (QEMU listens, the harness dials
// after every start) and the harness copies bytes across. Cut pulls the
// cable: bytes sent meanwhile are lost, as on a real line.
type Cable struct {
	mu     sync.Mutex
	ends   [2]*cableEnd
	cut    bool
	closed bool
}

type cableEnd struct {
	name string
	out  chan []byte // to this end's VM; dropped when full (no flow control)

	mu   sync.Mutex
	conn net.Conn
}

func newCable(a, b string) *Cable {
	c := &Cable{}
	for i, n := range []string{a, b} {
		e := &cableEnd{name: n, out: make(chan []byte, 256)}
		c.ends[i] = e
		go e.write()
	}
	return c
}

// Ends names the two VMs the cable joins.
func (c *Cable) Ends() (string, string) { return c.ends[0].name, c.ends[1].name }

// plug attaches conn, a new QEMU process's ttyS1 socket, to the end of VM name.
func (c *Cable) plug(name string, conn net.Conn) {
	i := 0
	if c.ends[1].name == name {
		i = 1
	}
	e, other := c.ends[i], c.ends[1-i]
	e.mu.Lock()
	if e.conn != nil {
		e.conn.Close()
	}
	e.conn = conn
	e.mu.Unlock()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				c.mu.Lock()
				if !c.cut && !c.closed {
					select {
					case other.out <- append([]byte(nil), buf[:n]...):
					default:
					}
				}
				c.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
}

func (e *cableEnd) write() {
	for b := range e.out {
		e.mu.Lock()
		c := e.conn
		e.mu.Unlock()
		if c != nil {
			c.Write(b)
		}
	}
}

// Cut pulls the cable out.
func (c *Cable) Cut() { c.mu.Lock(); c.cut = true; c.mu.Unlock() }

// Mend plugs the cable back in.
func (c *Cable) Mend() { c.mu.Lock(); c.cut = false; c.mu.Unlock() }

func (c *Cable) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for _, e := range c.ends {
		e.mu.Lock()
		if e.conn != nil {
			e.conn.Close()
		}
		e.mu.Unlock()
		close(e.out)
	}
}
