package daemon

import (
	"fmt"
	"sync"

	"tandem/daemon/nbd"
	"tandem/internal/meta"
	"tandem/internal/repl"
)

// maxChunk is the most blocks one core request carries: the link's largest
// payload (link.DefaultMaxPayload, 1 MiB) is DRBD's largest request.
const maxChunk = 256

// maxTrimChunk bounds a trim request (no payload crosses the link).
const maxTrimChunk = 1 << 16

// zeroChunk is the source of WRITE_ZEROES; never written to.
var zeroChunk = make([]byte, maxChunk*meta.BlockSize)

// backend is the replicated device as the NBD server sees it: each call
// becomes one or more repl Request inputs on the loop and waits for their
// Complete outputs. It decides nothing; a Secondary's core answers
// NotPrimary, which becomes EPERM.
type backend struct {
	d    *loop
	size uint64
	// rmw serialises read-modify-write of partial blocks (the core works in
	// 4 KiB blocks, NBD in 512-byte sectors), so two sub-block writes to
	// one block cannot undo each other.
	rmw sync.Mutex
}

func (b *backend) Size() uint64   { return b.size }
func (b *backend) ReadOnly() bool { return !b.d.primary.Load() }

// submit hands one request to the loop; the result arrives on q.done.
func (b *backend) submit(q *appReq) bool {
	select {
	case b.d.reqs <- q:
		return true
	case <-b.d.quit:
		return false
	}
}

// run performs op over count blocks from block, split into requests the link
// can carry, all in flight at once; buf (nil for flush and trim) covers the
// range. The first error wins.
func (b *backend) run(op repl.ReqOp, block uint64, count uint64, buf []byte, share bool) error {
	chunk := uint64(maxChunk)
	if op == repl.Trim || op == repl.Flush {
		chunk = maxTrimChunk
	}
	var qs []*appReq
	for done := uint64(0); done < count || (count == 0 && len(qs) == 0); {
		n := min(chunk, count-done)
		q := &appReq{op: op, block: block + done, count: uint32(n), done: make(chan repl.IOError, 1)}
		if buf != nil {
			if share {
				q.buf = buf[:n*meta.BlockSize]
			} else {
				q.buf = buf[done*meta.BlockSize : (done+n)*meta.BlockSize]
			}
		}
		if !b.submit(q) {
			return nbd.ErrShutdown
		}
		qs = append(qs, q)
		done += n
		if count == 0 {
			break
		}
	}
	var first error
	for _, q := range qs {
		select {
		case e := <-q.done:
			if err := errno(e); err != nil && first == nil {
				first = err
			}
		case <-b.d.quit:
			return nbd.ErrShutdown
		}
	}
	return first
}

// errno maps the core's outcome onto the NBD error values.
func errno(e repl.IOError) error {
	switch e {
	case repl.OK:
		return nil
	case repl.NotPrimary:
		return fmt.Errorf("this node is not primary: %w", nbd.ErrReadOnly)
	case repl.NoSpace:
		return fmt.Errorf("backing store full: %w", nbd.ErrNoSpace)
	}
	return fmt.Errorf("%v: %w", e, nbd.ErrIO)
}

// span is the whole blocks covering [off, off+n).
func span(off, n uint64) (first, count uint64) {
	first = off / meta.BlockSize
	end := (off + n + meta.BlockSize - 1) / meta.BlockSize
	return first, end - first
}

func aligned(off, n uint64) bool { return off%meta.BlockSize == 0 && n%meta.BlockSize == 0 }

func (b *backend) ReadAt(p []byte, off uint64) error {
	n := uint64(len(p))
	first, count := span(off, n)
	if aligned(off, n) {
		return b.run(repl.Read, first, count, p, false)
	}
	tmp := make([]byte, count*meta.BlockSize)
	if err := b.run(repl.Read, first, count, tmp, false); err != nil {
		return err
	}
	copy(p, tmp[off-first*meta.BlockSize:])
	return nil
}

func (b *backend) WriteAt(p []byte, off uint64, fua bool) error {
	n := uint64(len(p))
	var err error
	if aligned(off, n) {
		err = b.run(repl.Write, off/meta.BlockSize, n/meta.BlockSize, p, false)
	} else {
		err = b.modify(off, n, func(dst []byte) { copy(dst, p) })
	}
	if err == nil && fua {
		err = b.Flush()
	}
	return err
}

// modify rewrites part of the blocks covering [off, off+n): read, change,
// write back, under the read-modify-write lock.
func (b *backend) modify(off, n uint64, change func(dst []byte)) error {
	first, count := span(off, n)
	b.rmw.Lock()
	defer b.rmw.Unlock()
	tmp := make([]byte, count*meta.BlockSize)
	if err := b.run(repl.Read, first, count, tmp, false); err != nil {
		return err
	}
	change(tmp[off-first*meta.BlockSize : off-first*meta.BlockSize+n])
	return b.run(repl.Write, first, count, tmp, false)
}

func (b *backend) Flush() error { return b.run(repl.Flush, 0, 0, nil, false) }

// Trim discards the whole blocks inside the range; the partial blocks at its
// edges keep their data, which NBD allows (a trimmed range's contents are
// unspecified).
func (b *backend) Trim(off, length uint64) error {
	first := (off + meta.BlockSize - 1) / meta.BlockSize
	end := (off + length) / meta.BlockSize
	if end <= first {
		return nil
	}
	return b.run(repl.Trim, first, end-first, nil, false)
}

// WriteZeroes writes zeroes (never a hole: the range must stay allocated);
// partial blocks at the edges are read, zeroed in part and written back.
func (b *backend) WriteZeroes(off, length uint64, fua bool) error {
	const bs = meta.BlockSize
	end := off + length
	first, last := (off+bs-1)/bs, end/bs // whole blocks: [first, last)
	zero := func(dst []byte) { clear(dst) }
	var err error
	if headEnd := min(first*bs, end); headEnd > off {
		err = b.modify(off, headEnd-off, zero)
	}
	if tail := max(last*bs, first*bs, off); err == nil && end > tail {
		err = b.modify(tail, end-tail, zero)
	}
	if err == nil && last > first {
		err = b.runZeroes(first, last-first)
	}
	if err == nil && fua {
		err = b.Flush()
	}
	return err
}

// runZeroes writes zeroes over count blocks from the shared zero buffer.
func (b *backend) runZeroes(first, count uint64) error {
	for done := uint64(0); done < count; done += maxChunk * 64 {
		n := min(maxChunk*64, count-done)
		if err := b.run(repl.Write, first+done, n, zeroChunk, true); err != nil {
			return err
		}
	}
	return nil
}
