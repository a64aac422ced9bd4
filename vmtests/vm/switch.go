package vm

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
)

// Switch is the VMs' Ethernet: a hub in the test process. Each VM's
// virtio-net is a QEMU "-netdev stream" client of one unix socket of the
// switch; frames arrive as a 4-byte big-endian length and the bytes, and go
// out the same way to every other port. Cutting delivery here is a silent
// network fault (a dead switch or cable between the hosts: the NICs keep
// their carrier), unlike VM.LinkDown, which takes the NIC's carrier away.
type Switch struct {
	dir string

	mu    sync.Mutex
	ports map[string]*swPort
	block map[[2]string]bool // from, to -> frames dropped
	logf  func(string, ...any)
}

type swPort struct {
	name string
	path string
	ln   net.Listener
	out  chan []byte // frames to deliver; dropped when full, as a switch would

	mu   sync.Mutex
	conn net.Conn // the current QEMU process, if any
}

// portQueue is how many frames a port buffers while its VM does not read
// (frozen, or booting).
const portQueue = 512

func newSwitch(dir string, logf func(string, ...any)) *Switch {
	return &Switch{dir: dir, ports: map[string]*swPort{}, block: map[[2]string]bool{}, logf: logf}
}

// addPort creates the socket a VM named name connects to and returns its path.
func (s *Switch) addPort(name string) (string, error) {
	p := &swPort{name: name, path: filepath.Join(s.dir, "net-"+name+".sock"), out: make(chan []byte, portQueue)}
	os.Remove(p.path)
	ln, err := net.Listen("unix", p.path)
	if err != nil {
		return "", fmt.Errorf("switch port for %s: %w", name, err)
	}
	p.ln = ln
	s.mu.Lock()
	s.ports[name] = p
	s.mu.Unlock()
	go s.accept(p)
	go p.write()
	return p.path, nil
}

func (s *Switch) accept(p *swPort) {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		// A new QEMU process for this VM (after a power cycle) replaces
		// the old connection.
		p.mu.Lock()
		if p.conn != nil {
			p.conn.Close()
		}
		p.conn = c
		p.mu.Unlock()
		go s.forward(p, c)
	}
}

// forward reads frames from one VM and queues them to every other port.
func (s *Switch) forward(from *swPort, c net.Conn) {
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > 1<<20 {
			s.logf("switch: port %s sent a %d-byte frame: out of sync, dropping the connection", from.name, n)
			c.Close()
			return
		}
		frame := make([]byte, 4+n)
		copy(frame, hdr[:])
		if _, err := io.ReadFull(c, frame[4:]); err != nil {
			return
		}
		s.mu.Lock()
		for name, to := range s.ports {
			if name == from.name || s.block[[2]string{from.name, name}] {
				continue
			}
			select {
			case to.out <- frame:
			default: // queue full: lost
			}
		}
		s.mu.Unlock()
	}
}

func (p *swPort) write() {
	for f := range p.out {
		p.mu.Lock()
		c := p.conn
		p.mu.Unlock()
		if c == nil {
			continue
		}
		if _, err := c.Write(f); err != nil {
			p.mu.Lock()
			if p.conn == c {
				p.conn = nil
			}
			p.mu.Unlock()
			c.Close()
		}
	}
}

// Block drops frames from VM from to VM to (one direction only).
func (s *Switch) Block(from, to string) { s.setBlock(from, to, true) }

// Unblock delivers frames from VM from to VM to again.
func (s *Switch) Unblock(from, to string) { s.setBlock(from, to, false) }

func (s *Switch) setBlock(from, to string, b bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b {
		s.block[[2]string{from, to}] = true
	} else {
		delete(s.block, [2]string{from, to})
	}
}

// Partition cuts a and b apart in both directions.
func (s *Switch) Partition(a, b string) { s.Block(a, b); s.Block(b, a) }

// Heal removes every cut.
func (s *Switch) Heal() {
	s.mu.Lock()
	s.block = map[[2]string]bool{}
	s.mu.Unlock()
}

// Isolate cuts name off from every other VM, both ways.
func (s *Switch) Isolate(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for other := range s.ports {
		if other != name {
			s.block[[2]string{name, other}] = true
			s.block[[2]string{other, name}] = true
		}
	}
}

func (s *Switch) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.ports {
		p.ln.Close()
		p.mu.Lock()
		if p.conn != nil {
			p.conn.Close()
		}
		p.mu.Unlock()
		close(p.out)
	}
	s.ports = map[string]*swPort{}
}
