package disk

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Alignment is the memory alignment of every buffer this package hands out:
// O_DIRECT needs buffers aligned to the device's logical block size, which is
// at most 4096 on the devices Open accepts.
const Alignment = 4096

// AlignedBuffer returns a zeroed buffer of n bytes whose first byte is
// Alignment-aligned, with cap == len so that an append cannot move it.
func AlignedBuffer(n int) []byte {
	if n <= 0 {
		return []byte{}
	}
	raw := make([]byte, n+Alignment-1)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) % Alignment); r != 0 {
		off = Alignment - r
	}
	return raw[off : off+n : off+n]
}

// aligned reports whether p starts on an Alignment boundary.
func aligned(p []byte) bool {
	return len(p) == 0 || uintptr(unsafe.Pointer(&p[0]))%Alignment == 0
}

// The pool keeps buffers in size classes of 1, 2, 4 … maxPoolBlocks blocks:
// a replicated write or resync request spans a few blocks to a few hundred,
// and power-of-two classes waste at most half a buffer. Larger buffers are
// allocated on demand and not kept.
const (
	maxPoolClass  = 8 // 2^8 blocks = 1 MiB
	maxPoolBlocks = 1 << maxPoolClass
	// poolBytesMax bounds what idle buffers may pin: enough for a deep
	// queue of 1 MiB requests, small next to a host's page cache.
	poolBytesMax = 64 << 20
)

type bufPool struct {
	mu    sync.Mutex
	free  [maxPoolClass + 1][][]byte
	bytes int // idle bytes held
}

var pool bufPool

// GetBuf returns an Alignment-aligned buffer of blocks*BlockSize bytes
// from the package's pool (contents undefined: not zeroed). The daemon uses
// it for every block buffer, so that data received from the network goes to
// the disk (and back) without a copy. Give it back with PutBuf when done.
// blocks must be at least 1; GetBuf panics otherwise.
func GetBuf(blocks int) []byte {
	if blocks < 1 {
		panic("disk: GetBuf of fewer than 1 block")
	}
	if blocks > maxPoolBlocks {
		return AlignedBuffer(blocks * BlockSize)
	}
	c := bits.Len(uint(blocks - 1)) // smallest class with 1<<c >= blocks
	pool.mu.Lock()
	if n := len(pool.free[c]); n > 0 {
		b := pool.free[c][n-1]
		pool.free[c][n-1] = nil
		pool.free[c] = pool.free[c][:n-1]
		pool.bytes -= cap(b)
		pool.mu.Unlock()
		return b[:blocks*BlockSize]
	}
	pool.mu.Unlock()
	return AlignedBuffer((1 << c) * BlockSize)[:blocks*BlockSize]
}

// PutBuf returns a buffer obtained from GetBuf to the pool. The caller must
// not use it afterwards. Buffers not from GetBuf (wrong size class, not
// aligned, resliced from the front) are ignored, as are buffers beyond the
// pool's bound; the garbage collector takes them.
func PutBuf(b []byte) {
	c := cap(b)
	if c == 0 || c%BlockSize != 0 || !aligned(b[:1]) {
		return
	}
	blocks := c / BlockSize
	if blocks > maxPoolBlocks || blocks&(blocks-1) != 0 {
		return
	}
	class := bits.Len(uint(blocks - 1))
	pool.mu.Lock()
	defer pool.mu.Unlock()
	if pool.bytes+c > poolBytesMax {
		return
	}
	pool.free[class] = append(pool.free[class], b[:c])
	pool.bytes += c
}
