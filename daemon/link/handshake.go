package link

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// The handshake, on every new TCP connection, before any frame:
//
//  1. Both sides send a hello: magic "TNDH", version, their own name, the
//     name they expect at the other end and a fresh 32-byte random nonce.
//  2. Each checks the names in the peer's hello, then sends its proof:
//     HMAC-SHA256(key, "tandem-link-1 proof " + role + transcript), where
//     role is "dialer" or "acceptor" and the transcript is the dialer's hello
//     followed by the acceptor's, byte for byte.
//  3. Each checks the peer's proof. The connection's two frame keys are
//     HMAC-SHA256(key, "tandem-link-1 key " + direction + transcript).
//
// The peer's proof covers our fresh nonce, so a recorded old handshake
// replayed at us fails it; the role label keeps our own proof from being
// reflected back as the peer's; per-connection keys make a frame recorded on
// another connection fail the MAC here, and the sequence numbers do the same
// for a frame replayed within this one.
const (
	helloMagic   = "TNDH"
	helloVersion = 1
	nonceLen     = 32
	// MaxNameLen bounds a node name in bytes.
	MaxNameLen = 64
)

// errPeerName: the other end is not the configured peer (or does not take
// us for its peer): a misconfiguration, refused before authentication.
var errPeerName = errors.New("wrong node names")

// hello is one side's opening message.
type hello struct {
	from, to string
	nonce    [nonceLen]byte
}

func (h *hello) appendTo(dst []byte) []byte {
	dst = append(dst, helloMagic...)
	dst = append(dst, helloVersion, byte(len(h.from)), byte(len(h.to)))
	dst = append(dst, h.from...)
	dst = append(dst, h.to...)
	return append(dst, h.nonce[:]...)
}

// readHello reads one hello and returns it with its bytes.
func readHello(r io.Reader) (hello, []byte, error) {
	var h hello
	fixed := make([]byte, 7, 7+2*MaxNameLen+nonceLen)
	if _, err := io.ReadFull(r, fixed); err != nil {
		return h, nil, fmt.Errorf("read hello: %w", err)
	}
	if string(fixed[:4]) != helloMagic {
		return h, nil, fmt.Errorf("%w: hello: bad magic %q (not a tandem link, or an old version)", ErrMalformed, fixed[:4])
	}
	if fixed[4] != helloVersion {
		return h, nil, fmt.Errorf("%w: hello version %d, this node speaks %d", ErrMalformed, fixed[4], helloVersion)
	}
	nf, nt := int(fixed[5]), int(fixed[6])
	if nf == 0 || nt == 0 || nf > MaxNameLen || nt > MaxNameLen {
		return h, nil, fmt.Errorf("%w: hello: name lengths %d and %d (1 to %d)", ErrMalformed, nf, nt, MaxNameLen)
	}
	b := fixed[:7+nf+nt+nonceLen]
	if _, err := io.ReadFull(r, b[7:]); err != nil {
		return h, nil, fmt.Errorf("read hello: %w", noEOF(err))
	}
	p := b[7:]
	h.from, h.to = string(p[:nf]), string(p[nf:nf+nt])
	p = p[nf+nt:]
	copy(h.nonce[:], p)
	return h, b, nil
}

// session is what a completed handshake yields.
type session struct {
	peer    hello
	sendKey []byte
	recvKey []byte
}

// handshake runs the exchange above on rw (reads through br, which may keep
// read-ahead for the frames that follow). self and peer are our name and the
// name we expect; dialer says which end of the TCP connection we are.
func handshake(rw io.Writer, br *bufio.Reader, key []byte, mine hello, peer string, dialer bool) (session, error) {
	var s session
	myBytes := mine.appendTo(nil)
	if _, err := rw.Write(myBytes); err != nil {
		return s, fmt.Errorf("send hello: %w", err)
	}
	ph, peerBytes, err := readHello(br)
	if err != nil {
		return s, err
	}
	if ph.from != peer || ph.to != mine.from {
		return s, fmt.Errorf("%w: the other end says it is %q and expects %q; this node is %q and expects %q",
			errPeerName, ph.from, ph.to, mine.from, peer)
	}
	transcript := append(append([]byte(nil), peerBytes...), myBytes...)
	myRole, peerRole := "acceptor", "dialer"
	if dialer {
		transcript = append(append([]byte(nil), myBytes...), peerBytes...)
		myRole, peerRole = peerRole, myRole
	}
	if _, err := rw.Write(labelled(key, "proof "+myRole, transcript)); err != nil {
		return s, fmt.Errorf("send proof: %w", err)
	}
	var got [macLen]byte
	if _, err := io.ReadFull(br, got[:]); err != nil {
		return s, fmt.Errorf("read proof: %w", err)
	}
	if !hmac.Equal(got[:], labelled(key, "proof "+peerRole, transcript)) {
		return s, fmt.Errorf("%w: %s's handshake proof does not match (different keys?)", ErrBadMAC, peer)
	}
	s.peer = ph
	s.sendKey = labelled(key, "key from "+myRole, transcript)
	s.recvKey = labelled(key, "key from "+peerRole, transcript)
	return s, nil
}

// labelled is HMAC-SHA256(key, "tandem-link-1 " + label + data).
func labelled(key []byte, label string, data []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("tandem-link-1 " + label))
	h.Write(data)
	return h.Sum(nil)
}

func newNonce() (n [nonceLen]byte) {
	rand.Read(n[:]) // never fails (crypto/rand since Go 1.24)
	return n
}
