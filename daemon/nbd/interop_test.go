package nbd

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestQemuInterop has qemu's NBD client, an independent implementation of
// the protocol, write and read the export: qemu-img copies an image in and
// out, qemu-io exercises write-zeroes, discard, FUA and flush.
func TestQemuInterop(t *testing.T) {
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils): no interoperability check")
	}
	const size = 4 << 20
	b := newMemBackend(size)
	s := &Server{Backend: b, ExportName: "tandem"}
	socket := startServer(t, s)
	uri := "nbd+unix:///tandem?socket=" + socket
	dir := t.TempDir()

	image := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range image {
		image[i] = byte(rng.Uint32())
	}
	in := filepath.Join(dir, "in.raw")
	if err := os.WriteFile(in, image, 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, qemuImg, "convert", "-n", "-f", "raw", "-O", "raw", in, uri)
	if !bytes.Equal(b.snapshot(0, size), image) {
		t.Fatal("after qemu-img wrote the image, the backend holds something else")
	}
	out := filepath.Join(dir, "out.raw")
	run(t, qemuImg, "convert", "-f", "raw", "-O", "raw", uri, out)
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, image) {
		t.Fatalf("the image qemu-img read back differs (%v)", err)
	}

	qemuIO, err := exec.LookPath("qemu-io")
	if err != nil {
		t.Log("qemu-io not installed: write-zeroes, discard and FUA not checked through qemu")
		return
	}
	before := s.Counters()
	run(t, qemuIO, "-f", "raw",
		"-c", "write -z 0 1M", // NBD_CMD_WRITE_ZEROES
		"-c", "discard 1M 1M", // NBD_CMD_TRIM
		"-c", "write -f -P 0xab 2M 64k", // FUA write
		"-c", "flush",
		"-c", "read -P 0xab 2M 64k",
		uri)
	if !bytes.Equal(b.snapshot(0, 1<<20), make([]byte, 1<<20)) {
		t.Error("qemu-io's write -z left non-zero data")
	}
	if !bytes.Equal(b.snapshot(2<<20, 64<<10), bytes.Repeat([]byte{0xab}, 64<<10)) {
		t.Error("qemu-io's FUA write did not land")
	}
	after := s.Counters()
	if after.WriteZeroes == before.WriteZeroes || after.Trims == before.Trims || after.Flushes == before.Flushes {
		t.Errorf("qemu-io did not send write-zeroes, trim and flush: before %+v, after %+v", before, after)
	}
	fua := false
	for _, c := range b.recorded() {
		fua = fua || (c.op == "write" && c.off == 2<<20 && c.fua)
	}
	if !fua {
		t.Error("qemu-io's write -f did not reach the backend as FUA")
	}
	if after.Errors != 0 || after.HandshakeFailures != 0 {
		t.Errorf("errors during interoperation: %+v", after)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
	}
}
