package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"tandem/daemon/disk"
	"tandem/internal/meta"
)

// notifySocket listens where sd_notify messages go and collects them.
func notifySocket(t *testing.T) func() []string {
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	var mu sync.Mutex
	var got []string
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			if err != nil {
				return
			}
			mu.Lock()
			got = append(got, string(b[:n]))
			mu.Unlock()
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

func hasPrefix(msgs []string, p string) bool {
	for _, m := range msgs {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return false
}

// TestAloneBackendAndControl runs one node whose peer never comes: after
// `primary --force` it takes the group after initdead, serves sub-block NBD
// requests as a disk would (checked against a model), streams its events,
// refuses what the core refuses, tells systemd READY and STOPPING, and its
// orderly stop returns although the core will not hand the group away.
func TestAloneBackendAndControl(t *testing.T) {
	notes := notifySocket(t)
	c := newCluster(t)
	n1 := c.start("n1")
	for i := 0; i < 50 && !hasPrefix(notes(), "READY=1"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !hasPrefix(notes(), "READY=1") {
		t.Errorf("no READY=1 for systemd; got %q", notes())
	}

	var mu sync.Mutex
	var events []Event
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- Events(ctx, n1.ep.Control, func(e Event) error {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
			return nil
		})
	}()
	time.Sleep(100 * time.Millisecond)

	if resp := c.admin("n1", Request{Command: "frobnicate"}); resp.OK || !strings.Contains(resp.Error, "unknown command") {
		t.Errorf("unknown command: %+v", resp)
	}
	if resp := c.admin("n1", Request{Command: "primary", Force: true}); !resp.OK || len(resp.Events) == 0 {
		t.Fatalf("primary --force: %+v", resp)
	}
	c.waitFor("n1 to take the group alone", 10*time.Second, c.is("n1", "Primary", "Primary", "UpToDate", ""))
	if resp := c.admin("n1", Request{Command: "standby"}); resp.OK || resp.Error == "" {
		t.Errorf("standby with no peer to take over was not refused: %+v", resp)
	}

	cl := dialNBD(t, n1.ep.NBD)
	const size = testBlocks * meta.BlockSize
	model := make([]byte, size)
	known := make([]bool, size) // trimmed bytes are unspecified until written
	for i := range known {
		known[i] = true // the data area starts zeroed (a sparse file)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	sector := func(max int) (uint64, int) {
		off := uint64(rnd.IntN(size/512-1)) * 512
		n := 512 * (1 + rnd.IntN(max))
		if off+uint64(n) > size {
			n = int(size - off)
		}
		return off, n
	}
	for i := range 400 {
		switch op := rnd.IntN(10); {
		case op < 5:
			off, n := sector(40)
			p := make([]byte, n)
			for j := range p {
				p[j] = byte(rnd.Uint32())
			}
			if err := cl.WriteAt(p, off); err != nil {
				t.Fatalf("op %d: write %d bytes at %d: %v", i, n, off, err)
			}
			copy(model[off:], p)
			for j := range n {
				known[int(off)+j] = true
			}
		case op < 6:
			off, n := sector(40)
			if err := cl.WriteZeroes(off, uint32(n)); err != nil {
				t.Fatalf("op %d: write-zeroes %d bytes at %d: %v", i, n, off, err)
			}
			clear(model[off : off+uint64(n)])
			for j := range n {
				known[int(off)+j] = true
			}
		case op < 7:
			off, n := sector(40)
			if err := cl.Trim(off, uint32(n)); err != nil {
				t.Fatalf("op %d: trim %d bytes at %d: %v", i, n, off, err)
			}
			for j := range n {
				known[int(off)+j] = false
			}
		case op < 8:
			if err := cl.Flush(); err != nil {
				t.Fatalf("op %d: flush: %v", i, err)
			}
		default:
			off, n := sector(40)
			got := make([]byte, n)
			if err := cl.ReadAt(got, off); err != nil {
				t.Fatalf("op %d: read %d bytes at %d: %v", i, n, off, err)
			}
			for j := range n {
				if known[int(off)+j] && got[j] != model[int(off)+j] {
					t.Fatalf("op %d: read %d bytes at %d: byte %d is %#x, want %#x", i, n, off, int(off)+j, got[j], model[int(off)+j])
				}
			}
		}
	}
	all := readAll(t, cl)
	for j := range all {
		if known[j] && all[j] != model[j] {
			t.Fatalf("final read: byte %d is %#x, want %#x", j, all[j], model[j])
		}
	}
	// An oversized request for the core is split (the link carries at most
	// 1 MiB): 3 MiB in one NBD write.
	big := bytes.Repeat([]byte{0x5a}, 3<<20)
	if err := cl.WriteAt(big, 1<<20); err != nil {
		t.Fatalf("3 MiB write: %v", err)
	}
	back := make([]byte, len(big))
	if err := cl.ReadAt(back, 1<<20); err != nil || !bytes.Equal(back, big) {
		t.Fatalf("3 MiB read back: %v (equal %v)", err, bytes.Equal(back, big))
	}
	cl.Close()

	c.waitFor("every buffer released", 5*time.Second, func() bool {
		st, err := c.statusQuiet("n1")
		return err == nil && st.HeldBuffers == 0 && st.PendingRequests == 0
	})
	st := c.status("n1")
	if st.NBD == nil || st.NBD.Writes == 0 || st.NBD.Errors != 0 {
		t.Errorf("NBD counters: %+v", st.NBD)
	}
	if st.Replication.Conn != "Connecting" || st.PeerAlive {
		t.Errorf("alone: conn %s, peer alive %v", st.Replication.Conn, st.PeerAlive)
	}

	// The orderly stop: the core will not hand the group to a dead peer,
	// so the daemon says so and stops anyway, metadata left as crashed.
	close(n1.shutdown)
	select {
	case err := <-n1.done:
		if err != nil {
			t.Fatalf("orderly stop: %v", err)
		}
		n1.done <- nil
	case <-time.After(15 * time.Second):
		t.Fatal("orderly stop did not return")
	}
	for i := 0; i < 50 && !hasPrefix(notes(), "STOPPING=1"); i++ {
		time.Sleep(10 * time.Millisecond) // the datagram is sent; the reader may lag
	}
	if !hasPrefix(notes(), "STOPPING=1") {
		t.Errorf("no STOPPING=1 for systemd; got %q", notes())
	}
	select {
	case err := <-streamDone:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("event stream ended with %v, want the daemon's hang-up", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the event stream did not end with the daemon")
	}
	mu.Lock()
	kinds := map[string]bool{}
	for _, e := range events {
		kinds[e.Source+" "+e.Kind] = true
	}
	mu.Unlock()
	for _, k := range []string{"repl role", "repl new-generation", "node peer-dead", "node acquired", "node state", "node admin-refused"} {
		if !kinds[k] {
			t.Errorf("event stream lacks %q; got %v", k, kinds)
		}
	}
	dk, err := disk.Open(filepath.Join(c.dir, "n1.img"), disk.Options{Blocks: testBlocks, ReadOnly: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Close()
	rec, err := dk.LoadMeta()
	if err != nil {
		t.Fatal(err)
	}
	if rec.Flags&meta.CleanShutdown != 0 {
		t.Errorf("a primary that stopped without handing over marked its metadata clean: %v", rec.Flags)
	}
}
