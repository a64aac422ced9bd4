package link

import (
	"bytes"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"tandem/internal/meta"
	"tandem/internal/repl"
)

var updateCorpus = flag.Bool("update", false, "rewrite the committed fuzz seed corpus under testdata/fuzz")

// FuzzDecodeMsg: the decoder never panics, and whatever it accepts is a
// message Send would send, encoded exactly as AppendMsg encodes it (one
// encoding per message: nothing else gets through).
func FuzzDecodeMsg(f *testing.F) {
	for _, seed := range seedMsgs() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := DecodeMsg(b)
		if err != nil {
			return
		}
		if err := CheckMsg(&m, n); err != nil {
			t.Fatalf("decoded %+v, which CheckMsg refuses: %v", m, err)
		}
		if again := AppendMsg(nil, &m, n); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, m, again)
		}
	})
}

// realMsgs are messages as internal/repl builds them (same kinds, same
// fields set, typical values), one or more per kind, with payload lengths.
func realMsgs() map[string]struct {
	m repl.Msg
	n int
} {
	gen := meta.Generations{Current: 0x6a09e667f3bcc909, Bitmap: 0xbb67ae8584caa73b,
		History: [2]meta.UUID{0x3c6ef372fe94f82b, 0}}
	bm := meta.NewBitmap(100_000)
	bm.SetRange(4096, 300)
	bm.Set(77_777)
	type mn = struct {
		m repl.Msg
		n int
	}
	return map[string]mn{
		"hello": {repl.Msg{Kind: repl.MsgHello, Node: 1, Gen: gen, Flags: meta.Consistent | meta.WasPrimary,
			Disk: repl.UpToDate, Role: repl.Primary, Blocks: 262_144, Changes: 301, Protocol: repl.ProtocolC,
			Crashed: true, PrimarySince: 17}, 0},
		"hello_fresh":  {repl.Msg{Kind: repl.MsgHello, Disk: repl.Inconsistent, Role: repl.Secondary, Blocks: 4096, Protocol: repl.ProtocolA, DiscardMyData: true}, 0},
		"bitmap":       {repl.Msg{Kind: repl.MsgBitmap, Bitmap: meta.AppendRuns(nil, bm)}, 0},
		"state":        {repl.Msg{Kind: repl.MsgState, Disk: repl.Outdated, Role: repl.Secondary, Gen: gen}, 0},
		"data":         {repl.Msg{Kind: repl.MsgData, Seq: 4242, Epoch: 66, Block: 123_456, Count: 8, WriterGen: gen.Current}, 8 * 4096},
		"trim":         {repl.Msg{Kind: repl.MsgTrim, Seq: 4243, Epoch: 66, Block: 0, Count: 256, WriterGen: gen.Current}, 0},
		"recv_ack":     {repl.Msg{Kind: repl.MsgRecvAck, Seq: 4242}, 0},
		"write_ack":    {repl.Msg{Kind: repl.MsgWriteAck, Seq: 4242}, 0},
		"neg_ack":      {repl.Msg{Kind: repl.MsgNegAck, Seq: 4243, Err: repl.EIO}, 0},
		"barrier":      {repl.Msg{Kind: repl.MsgBarrier, Epoch: 66}, 0},
		"barrier_ack":  {repl.Msg{Kind: repl.MsgBarrierAck, Epoch: 66, Err: repl.NoData}, 0},
		"read_req":     {repl.Msg{Kind: repl.MsgReadReq, Seq: 9, Block: 77, Count: 1}, 0},
		"read_reply":   {repl.Msg{Kind: repl.MsgReadReply, Seq: 9}, 4096},
		"resync_req":   {repl.Msg{Kind: repl.MsgResyncReq, Block: 4096, Count: 8}, 0},
		"csum_req":     {repl.Msg{Kind: repl.MsgCsumReq, Block: 4104, Count: 8, Digest: 0xcbf29ce484222325}, 0},
		"resync_data":  {repl.Msg{Kind: repl.MsgResyncData, Block: 4096, Count: 8}, 8 * 4096},
		"resync_error": {repl.Msg{Kind: repl.MsgResyncData, Block: 4096, Count: 8, Err: repl.NoData}, 0},
		"in_sync":      {repl.Msg{Kind: repl.MsgInSync, Block: 4104, Count: 8}, 0},
		"resync_done":  {repl.Msg{Kind: repl.MsgResyncDone, Seq: 1, Gen: gen}, 0},
		"verify_req":   {repl.Msg{Kind: repl.MsgVerifyReq, Block: 42, Count: 1, Digest: 0x84222325cbf29ce4}, 0},
		"verify_reply": {repl.Msg{Kind: repl.MsgVerifyReply, Block: 42, Count: 1, Err: repl.BadChecksum}, 0},
		"ping":         {repl.Msg{Kind: repl.MsgPing}, 0},
		"ping_ack":     {repl.Msg{Kind: repl.MsgPingAck}, 0},
		"out_of_sync":  {repl.Msg{Kind: repl.MsgOutOfSync, Block: 99, Count: 3}, 0},
	}
}

// seedMsgs is the committed seed corpus: the real messages encoded, plus a
// few near misses that reach the checks behind the first ones.
func seedMsgs() map[string][]byte {
	seeds := map[string][]byte{}
	for name, c := range realMsgs() {
		seeds[name] = AppendMsg(nil, &c.m, c.n)
	}
	hello := seeds["hello"]
	seeds["bad_version"] = append([]byte{CodecVersion + 1}, hello[1:]...)
	seeds["bad_protocol"] = bytes.Replace(bytes.Clone(hello), []byte{'C'}, []byte{'Z'}, 1)
	seeds["non_minimal"] = []byte{CodecVersion, byte(repl.MsgRecvAck), 0, 0x80, 0x00}
	seeds["trailing"] = append(bytes.Clone(seeds["ping"]), 0)
	seeds["oversized"] = AppendMsg(nil, &repl.Msg{Kind: repl.MsgData}, DefaultMaxPayload+1)
	return seeds
}

// TestRealMsgsValid: the seeds named after kinds are what Send accepts.
func TestRealMsgsValid(t *testing.T) {
	kinds := map[repl.MsgKind]bool{}
	for name, c := range realMsgs() {
		if err := CheckMsg(&c.m, c.n); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		kinds[c.m.Kind] = true
	}
	for k := repl.MsgHello; k <= maxKind; k++ {
		if !kinds[k] {
			t.Errorf("no real message of kind %s in the corpus", k)
		}
	}
}

// TestSeedCorpus keeps testdata/fuzz/FuzzDecodeMsg in step with the codec.
// After a deliberate format change: go test ./daemon/link -run TestSeedCorpus -update
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeMsg")
	seeds := seedMsgs()
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(seeds)) {
		want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", seeds[name])
		path := filepath.Join(dir, name)
		if *updateCorpus {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale (%v): run go test ./daemon/link -run TestSeedCorpus -update", path, err)
		}
	}
}
