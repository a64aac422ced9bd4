package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// attr is one raw netlink attribute, parsed by hand so that the encoding is
// checked against the wire format and not against the library that wrote
// it.
type attr struct {
	typ    uint16 // with NLA_F_NESTED (0x8000) kept
	values []byte
}

func parseAttrs(t *testing.T, b []byte) []attr {
	t.Helper()
	var attrs []attr
	for len(b) > 0 {
		if len(b) < 4 {
			t.Fatalf("%d trailing bytes are not an attribute", len(b))
		}
		length := int(binary.NativeEndian.Uint16(b))
		if length < 4 || length > len(b) {
			t.Fatalf("attribute length %d with %d bytes left", length, len(b))
		}
		attrs = append(attrs, attr{typ: binary.NativeEndian.Uint16(b[2:]), values: b[4:length]})
		b = b[min((length+3)&^3, len(b)):]
	}
	return attrs
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }

func TestConnectMessage(t *testing.T) {
	cfg := KernelConfig{Index: 3, Size: 1 << 30, BlockSize: 4096, Flags: FlagHasFlags | FlagSendFlush | FlagReadOnly, DeadConnTimeout: 30 * time.Second}
	msg, err := connectMessage(cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	// Numbers from include/uapi/linux/nbd-netlink.h.
	if msg.Header.Command != 1 || msg.Header.Version != 1 {
		t.Errorf("header %+v, want NBD_CMD_CONNECT (1), version 1", msg.Header)
	}
	attrs := parseAttrs(t, msg.Data)
	want := []attr{
		{1, u32(3)},         // NBD_ATTR_INDEX
		{2, u64(1 << 30)},   // NBD_ATTR_SIZE_BYTES
		{3, u64(4096)},      // NBD_ATTR_BLOCK_SIZE_BYTES
		{5, u64(1 | 4 | 2)}, // NBD_ATTR_SERVER_FLAGS
		{8, u64(30)},        // NBD_ATTR_DEAD_CONN_TIMEOUT, seconds
		{0x8000 | 7, nil},   // NBD_ATTR_SOCKETS, nested
	}
	if len(attrs) != len(want) {
		t.Fatalf("got %d attributes, want %d", len(attrs), len(want))
	}
	for i, w := range want[:5] {
		if attrs[i].typ != w.typ || !bytes.Equal(attrs[i].values, w.values) {
			t.Errorf("attribute %d: type %d value %x, want type %d value %x", i, attrs[i].typ, attrs[i].values, w.typ, w.values)
		}
	}
	sockets := attrs[5]
	if sockets.typ != 0x8000|7 {
		t.Fatalf("last attribute type %#x, want nested NBD_ATTR_SOCKETS", sockets.typ)
	}
	items := parseAttrs(t, sockets.values)
	if len(items) != 1 || items[0].typ != 0x8000|1 { // NBD_SOCK_ITEM, nested
		t.Fatalf("NBD_ATTR_SOCKETS holds %+v, want one nested NBD_SOCK_ITEM", items)
	}
	fd := parseAttrs(t, items[0].values)
	if len(fd) != 1 || fd[0].typ != 1 || !bytes.Equal(fd[0].values, u32(42)) { // NBD_SOCK_FD
		t.Errorf("NBD_SOCK_ITEM holds %+v, want NBD_SOCK_FD 42", fd)
	}

	cfg.Index = -1
	msg, err = connectMessage(cfg, 42)
	if err != nil {
		t.Fatal(err)
	}
	if attrs := parseAttrs(t, msg.Data); attrs[0].typ == 1 {
		t.Error("index -1 still sent NBD_ATTR_INDEX; the kernel must choose")
	}
}

func TestDisconnectMessage(t *testing.T) {
	msg, err := disconnectMessage(7)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Command != 2 || msg.Header.Version != 1 { // NBD_CMD_DISCONNECT
		t.Errorf("header %+v, want NBD_CMD_DISCONNECT (2), version 1", msg.Header)
	}
	if attrs := parseAttrs(t, msg.Data); len(attrs) != 1 || attrs[0].typ != 1 || !bytes.Equal(attrs[0].values, u32(7)) {
		t.Errorf("attributes %+v, want NBD_ATTR_INDEX 7", attrs)
	}
}

func TestConnectedIndex(t *testing.T) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(1, 5)
	data, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	reply := genetlink.Message{Header: genetlink.Header{Command: 1, Version: 1}, Data: data}
	if index, ok := connectedIndex([]genetlink.Message{reply}); !ok || index != 5 {
		t.Errorf("connectedIndex = %d, %v; want 5, true", index, ok)
	}
	other := genetlink.Message{Header: genetlink.Header{Command: 2}, Data: data}
	if _, ok := connectedIndex([]genetlink.Message{other}); ok {
		t.Error("connectedIndex took the index from a reply that is not NBD_CMD_CONNECT's")
	}
}

func TestKernelConfigChecks(t *testing.T) {
	good := KernelConfig{Index: -1, Size: 1<<20 + 100, BlockSize: 4096}
	got, err := good.normalized()
	if err != nil {
		t.Fatal(err)
	}
	if got.Size != 1<<20 || got.Flags != FlagHasFlags {
		t.Errorf("normalized %+v: size should round down to the block, HAS_FLAGS be set", got)
	}
	if got, _ := (KernelConfig{Size: 4096}).normalized(); got.BlockSize != 512 {
		t.Errorf("default block size %d, want 512", got.BlockSize)
	}
	bad := map[string]KernelConfig{
		"power of two":  {Size: 1 << 20, BlockSize: 1000},
		"from 512":      {Size: 1 << 20, BlockSize: 256},
		"at least one":  {Size: 100, BlockSize: 512},
		"out of range":  {Index: -2, Size: 1 << 20},
		"negative dead": {Size: 1 << 20, DeadConnTimeout: -time.Second},
	}
	for want, cfg := range bad {
		if _, err := cfg.normalized(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want an error saying %q", cfg, err, want)
		}
		if _, err := AttachKernel(cfg, os.Stdin); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("AttachKernel(%+v): %v, want an error saying %q", cfg, err, want)
		}
	}
}

func TestAttachKernelWithoutModule(t *testing.T) {
	if _, err := os.Stat("/sys/module/nbd"); err == nil {
		t.Skip("the nbd module is loaded on this host: the missing-module error cannot be provoked (the VM suite attaches for real)")
	}
	if _, err := os.Stat("/dev/nbd0"); err == nil {
		t.Skip("/dev/nbd0 exists on this host: the missing-module error cannot be provoked")
	}
	kernelEnd, serverEnd, err := KernelSocketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer kernelEnd.Close()
	defer serverEnd.Close()
	d, err := AttachKernel(KernelConfig{Index: 0, Size: 1 << 20, Flags: FlagSendFlush}, kernelEnd)
	if !errors.Is(err, ErrNoKernelModule) || err.Error() != "nbd kernel module not loaded (modprobe nbd)" {
		t.Fatalf("AttachKernel without the module: %v, %v; want %q", d, err, ErrNoKernelModule)
	}
	if err := (&Device{Index: 0}).Disconnect(); !errors.Is(err, ErrNoKernelModule) {
		t.Errorf("Disconnect without the module: %v, want ErrNoKernelModule", err)
	}
}

// The kernel's end of the pair behaves like the kernel's socket: the
// server runs on the other end without a handshake, and Shutdown stops it
// through the read deadline, not by closing it under in-flight replies.
func TestKernelSocketPairTransmission(t *testing.T) {
	b := newGatedBackend(1 << 20)
	s := &Server{Backend: b}
	kernel, server := socketPairConn(t)
	done := make(chan error, 1)
	go func() { done <- s.ServeTransmission(server, ExportFlags(b)) }()
	c := wrap(t, kernel)
	c.send(cmdWrite, cmdFlagFUA, 1, 4096, 4096, pattern(4096, 3))
	g := b.next(t)
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	close(g.release)
	if cookie, code, _ := c.reply(nil); cookie != 1 || code != 0 {
		t.Errorf("reply cookie %d error %d, want 1 and 0", cookie, code)
	}
	c.expectClosed()
	if err := <-done; err != nil {
		t.Errorf("ServeTransmission after Shutdown: %v", err)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if !bytes.Equal(b.snapshot(4096, 4096), pattern(4096, 3)) {
		t.Error("the write did not reach the backend")
	}
}
