package nbd

import (
	"bytes"
	"math/big"
	"math/rand/v2"
	"testing"
)

// expectedError is a deliberately naive statement of what the server must
// answer a request with, written from the spec rather than from check().
func expectedError(typ, flags uint16, off uint64, length uint32, size uint64, maxPayload uint32, readOnly bool) uint32 {
	takes := map[uint16]uint16{
		cmdRead:        cmdFlagFUA,
		cmdWrite:       cmdFlagFUA,
		cmdFlush:       cmdFlagFUA,
		cmdTrim:        cmdFlagFUA,
		cmdWriteZeroes: cmdFlagFUA | cmdFlagNoHole,
	}
	allowed, known := takes[typ]
	switch {
	case !known, flags|allowed != allowed:
		return errInval
	case typ == cmdFlush:
		return 0
	case readOnly && (typ == cmdWrite || typ == cmdTrim || typ == cmdWriteZeroes):
		return errPerm
	case off%512 != 0, length%512 != 0:
		return errInval
	case (typ == cmdRead || typ == cmdWrite) && length > maxPayload:
		return errInval
	}
	end := new(big.Int).Add(new(big.Int).SetUint64(off), big.NewInt(int64(length)))
	if end.Cmp(new(big.Int).SetUint64(size)) > 0 {
		if typ == cmdWrite || typ == cmdWriteZeroes {
			return errNoSpc
		}
		return errInval
	}
	return 0
}

// TestRandomRequestsAgainstModel sends thousands of random requests, valid
// and not, one at a time, and checks every reply against expectedError and
// every read against a shadow copy of the device.
func TestRandomRequestsAgainstModel(t *testing.T) {
	const (
		size       = 1 << 20
		maxPayload = 64 << 10
		requests   = 3000
	)
	b := newMemBackend(size)
	shadow := b.snapshot(0, size)
	s := &Server{Backend: b, MaxPayload: maxPayload}
	c, _ := connect(t, startServer(t, s), "")
	rng := rand.New(rand.NewPCG(5, 11))

	offsets := func() uint64 {
		switch rng.IntN(6) {
		case 0:
			return uint64(rng.IntN(size)) // usually unaligned
		case 1:
			return size - 512*uint64(rng.IntN(4))
		case 2:
			return ^uint64(0) - 511 - 512*uint64(rng.IntN(4))
		default:
			return 512 * uint64(rng.IntN(size/512))
		}
	}
	lengths := func() uint32 {
		switch rng.IntN(6) {
		case 0:
			return uint32(rng.IntN(8192))
		case 1:
			return maxPayload + 512*uint32(rng.IntN(3))
		case 2:
			return 0
		default:
			return 512 * uint32(1+rng.IntN(16))
		}
	}
	types := []uint16{cmdRead, cmdRead, cmdWrite, cmdWrite, cmdFlush, cmdTrim, cmdWriteZeroes, cmdCache, cmdBlockStatus, 9, 300}

	seen := map[uint32]int{}
	succeeded := map[uint16]int{}
	for i := range requests {
		readOnly := rng.IntN(10) == 0
		b.readOnly.Store(readOnly)
		typ := types[rng.IntN(len(types))]
		var flags uint16
		if rng.IntN(3) == 0 {
			flags = uint16(1) << rng.IntN(6)
		}
		off, length := offsets(), lengths()
		var payload []byte
		if typ == cmdWrite {
			payload = pattern(int(length), byte(i))
		}
		want := expectedError(typ, flags, off, length, size, maxPayload, readOnly)
		code, data := c.do(typ, flags, off, length, payload)
		if code != want {
			t.Fatalf("request %d: %s flags %#x offset %d length %d (read-only %v): error %d, want %d",
				i, commandName(typ), flags, off, length, readOnly, code, want)
		}
		seen[code]++
		if code != 0 {
			continue
		}
		succeeded[typ]++
		switch typ {
		case cmdRead:
			if !bytes.Equal(data, shadow[off:off+uint64(length)]) {
				t.Fatalf("request %d: read %d@%d differs from the model", i, length, off)
			}
		case cmdWrite:
			copy(shadow[off:], payload)
		case cmdWriteZeroes:
			clear(shadow[off : off+uint64(length)])
		}
	}
	if !bytes.Equal(b.snapshot(0, size), shadow) {
		t.Error("the device differs from the model at the end")
	}
	// The draw must cover both spaces: every outcome, every command served.
	for _, code := range []uint32{0, errInval, errPerm, errNoSpc} {
		if seen[code] == 0 {
			t.Errorf("no request drew error %d; the generator misses a case", code)
		}
	}
	for _, typ := range types[:7] {
		if succeeded[typ] == 0 {
			t.Errorf("no %s succeeded; the generator misses a case", commandName(typ))
		}
	}
	t.Logf("outcomes %v, successes by command %v", seen, succeeded)
}
