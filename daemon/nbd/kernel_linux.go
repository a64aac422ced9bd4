package nbd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The generic netlink interface of the nbd driver (include/uapi/linux/
// nbd-netlink.h), Linux 4.12 and later.
const (
	nbdGenlFamily  = "nbd"
	nbdGenlVersion = 1

	nbdCmdConnect    = 1
	nbdCmdDisconnect = 2

	nbdAttrIndex           = 1 // u32
	nbdAttrSizeBytes       = 2 // u64
	nbdAttrBlockSizeBytes  = 3 // u64
	nbdAttrTimeout         = 4 // u64 seconds; not sent: no request timeout
	nbdAttrServerFlags     = 5 // u64 transmission flags
	nbdAttrClientFlags     = 6 // u64; not sent
	nbdAttrSockets         = 7 // nested NBD_SOCK_ITEMs
	nbdAttrDeadConnTimeout = 8 // u64 seconds

	nbdSockItem = 1 // nested, inside NBD_ATTR_SOCKETS
	nbdSockFD   = 1 // u32, inside NBD_SOCK_ITEM
)

// The ioctl interface (include/uapi/linux/nbd.h): _IO(0xab, n).
const (
	ioctlSetSock       = 0xab00
	ioctlSetBlockSize  = 0xab01
	ioctlDoIt          = 0xab03
	ioctlClearSock     = 0xab04
	ioctlClearQueue    = 0xab05
	ioctlSetSizeBlocks = 0xab07
	ioctlDisconnect    = 0xab08
	ioctlSetFlags      = 0xab0a
)

// ErrNoKernelModule is returned by AttachKernel when the kernel offers
// neither the "nbd" netlink family nor /dev/nbd* devices.
var ErrNoKernelModule = errors.New("nbd kernel module not loaded (modprobe nbd)")

// KernelConfig describes the block device AttachKernel creates.
type KernelConfig struct {
	// Index is N in /dev/nbdN. -1 lets the kernel pick a free device
	// (netlink) or takes the first free /dev/nbdN (ioctl).
	Index int
	// Size is the device size in bytes, rounded down to BlockSize.
	Size uint64
	// BlockSize is the logical block size: a power of two from 512 to the
	// page size (4096 on x86). Default 512, like most disks.
	BlockSize uint32
	// Flags are the transmission flags, as given to ServeTransmission
	// (usually ExportFlags(backend)). The kernel makes the device read-only
	// for FlagReadOnly and sends flushes, FUA, discards and write-zeroes
	// only for the matching flags. They hold while the device is attached:
	// a device that may be promoted is better attached without
	// FlagReadOnly, its Backend refusing writes (EPERM) while Secondary.
	Flags Flags
	// DeadConnTimeout is how long, in whole seconds, the kernel holds I/O
	// when the daemon's end of the socket is gone before failing it.
	// Default 0: fail at once, so that a crashed daemon does not hang the
	// applications of a node that is about to be fenced anyway.
	DeadConnTimeout time.Duration
}

// Device is a /dev/nbdN attached by AttachKernel.
//
// No request timeout is set: the kernel only logs a "possible stuck
// request" every 30 s, because a write waiting for protocol C's
// acknowledgement may legitimately wait as long as the peer takes.
type Device struct {
	// Index is N in /dev/nbdN.
	Index int

	viaIoctl bool
	file     *os.File      // ioctl: the open /dev/nbdN
	done     chan struct{} // ioctl: closed when NBD_DO_IT returns
	doItErr  error

	mu       sync.Mutex
	detached bool
}

// Path is the device node, /dev/nbdN.
func (d *Device) Path() string { return fmt.Sprintf("/dev/nbd%d", d.Index) }

// KernelSocketPair makes the socket pair for AttachKernel: kernelEnd goes to
// AttachKernel (and may be closed once it returns: the kernel holds its own
// reference), serverEnd to ServeTransmission, which should be running by
// the time AttachKernel returns: udev reads the new device at once.
func KernelSocketPair() (kernelEnd *os.File, serverEnd net.Conn, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("nbd: socketpair: %w", err)
	}
	kernelEnd = os.NewFile(uintptr(fds[0]), "nbd-kernel")
	server := os.NewFile(uintptr(fds[1]), "nbd-server")
	serverEnd, err = net.FileConn(server) // a duplicate; the poller makes deadlines work
	server.Close()
	if err != nil {
		kernelEnd.Close()
		return nil, nil, fmt.Errorf("nbd: socketpair: %w", err)
	}
	return kernelEnd, serverEnd, nil
}

// AttachKernel creates /dev/nbdN on sock, a stream socket whose other end
// the daemon serves with ServeTransmission (no handshake: the kernel takes
// size and flags from cfg). It uses the nbd generic netlink family and
// falls back to the ioctl interface when the family is missing (kernels
// before 4.12). It needs CAP_SYS_ADMIN. sock stays the caller's.
func AttachKernel(cfg KernelConfig, sock *os.File) (*Device, error) {
	cfg, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	d, err := attachNetlink(cfg, sock)
	if !errors.Is(err, errNoFamily) {
		return d, err
	}
	d, err = attachIoctl(cfg, sock)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoKernelModule
	}
	return d, err
}

// normalized checks cfg and applies defaults.
func (cfg KernelConfig) normalized() (KernelConfig, error) {
	if cfg.BlockSize == 0 {
		cfg.BlockSize = MinBlockSize
	}
	bs := cfg.BlockSize
	if bs < 512 || bs > 64<<10 || bs&(bs-1) != 0 {
		return cfg, fmt.Errorf("nbd: block size %d must be a power of two from 512 to 65536 (and at most the page size)", bs)
	}
	if cfg.Index < -1 || cfg.Index > 1<<20 {
		return cfg, fmt.Errorf("nbd: device index %d out of range (-1 for any)", cfg.Index)
	}
	cfg.Size -= cfg.Size % uint64(bs)
	if cfg.Size == 0 {
		return cfg, fmt.Errorf("nbd: device size must hold at least one %d-byte block", bs)
	}
	if cfg.DeadConnTimeout < 0 {
		return cfg, fmt.Errorf("nbd: negative dead connection timeout %v", cfg.DeadConnTimeout)
	}
	cfg.Flags |= FlagHasFlags
	return cfg, nil
}

// errNoFamily: the kernel has no "nbd" generic netlink family.
var errNoFamily = errors.New("nbd: no nbd generic netlink family")

func attachNetlink(cfg KernelConfig, sock *os.File) (*Device, error) {
	c, family, err := dialFamily()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	msg, err := connectMessage(cfg, int(sock.Fd()))
	if err != nil {
		return nil, err
	}
	// The kernel resolves the descriptor in our process while it handles
	// the message, so sock must stay open until Execute returns.
	replies, err := c.Execute(msg, family.ID, netlink.Request|netlink.Acknowledge)
	runtime.KeepAlive(sock)
	if err != nil {
		return nil, fmt.Errorf("nbd: netlink NBD_CMD_CONNECT (index %d, %d bytes): %w", cfg.Index, cfg.Size, err)
	}
	index, ok := connectedIndex(replies)
	if !ok {
		if cfg.Index < 0 {
			return nil, errors.New("nbd: the kernel connected a device but did not say which")
		}
		index = cfg.Index
	}
	return &Device{Index: index}, nil
}

// dialFamily opens a generic netlink socket and looks up the nbd family.
func dialFamily() (*genetlink.Conn, genetlink.Family, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, genetlink.Family{}, fmt.Errorf("nbd: generic netlink: %w", err)
	}
	family, err := c.GetFamily(nbdGenlFamily)
	if err != nil {
		c.Close()
		if errors.Is(err, os.ErrNotExist) {
			return nil, genetlink.Family{}, errNoFamily
		}
		return nil, genetlink.Family{}, fmt.Errorf("nbd: look up generic netlink family %q: %w", nbdGenlFamily, err)
	}
	return c, family, nil
}

// connectMessage encodes NBD_CMD_CONNECT for cfg with one socket, fd.
func connectMessage(cfg KernelConfig, fd int) (genetlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	if cfg.Index >= 0 {
		ae.Uint32(nbdAttrIndex, uint32(cfg.Index))
	}
	ae.Uint64(nbdAttrSizeBytes, cfg.Size)
	ae.Uint64(nbdAttrBlockSizeBytes, uint64(cfg.BlockSize))
	ae.Uint64(nbdAttrServerFlags, uint64(cfg.Flags))
	ae.Uint64(nbdAttrDeadConnTimeout, uint64(cfg.DeadConnTimeout/time.Second))
	ae.Nested(nbdAttrSockets, func(sockets *netlink.AttributeEncoder) error {
		sockets.Nested(nbdSockItem, func(item *netlink.AttributeEncoder) error {
			item.Uint32(nbdSockFD, uint32(fd))
			return nil
		})
		return nil
	})
	data, err := ae.Encode()
	if err != nil {
		return genetlink.Message{}, fmt.Errorf("nbd: encode NBD_CMD_CONNECT: %w", err)
	}
	return genetlink.Message{
		Header: genetlink.Header{Command: nbdCmdConnect, Version: nbdGenlVersion},
		Data:   data,
	}, nil
}

// disconnectMessage encodes NBD_CMD_DISCONNECT for /dev/nbd<index>.
func disconnectMessage(index int) (genetlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(nbdAttrIndex, uint32(index))
	data, err := ae.Encode()
	if err != nil {
		return genetlink.Message{}, fmt.Errorf("nbd: encode NBD_CMD_DISCONNECT: %w", err)
	}
	return genetlink.Message{
		Header: genetlink.Header{Command: nbdCmdDisconnect, Version: nbdGenlVersion},
		Data:   data,
	}, nil
}

// connectedIndex finds NBD_ATTR_INDEX in the kernel's reply to
// NBD_CMD_CONNECT.
func connectedIndex(replies []genetlink.Message) (int, bool) {
	for _, m := range replies {
		if m.Header.Command != nbdCmdConnect {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			continue
		}
		for ad.Next() {
			if ad.Type() == nbdAttrIndex {
				index := ad.Uint32()
				if ad.Err() == nil {
					return int(index), true
				}
			}
		}
	}
	return 0, false
}

// Disconnect asks the kernel to end the device: it sends NBD_CMD_DISC on
// the socket, fails I/O that has not been answered yet, and the device
// reads as empty afterwards. ServeTransmission then returns. The device
// node may still be open (mounted); that is the caller's to prevent.
func (d *Device) Disconnect() error {
	if d.viaIoctl {
		if err := ioctl(d.file, ioctlDisconnect, 0); err != nil {
			return fmt.Errorf("nbd: NBD_DISCONNECT %s: %w", d.Path(), err)
		}
		return nil
	}
	c, family, err := dialFamily()
	if errors.Is(err, errNoFamily) {
		return fmt.Errorf("nbd: disconnect %s: %w", d.Path(), ErrNoKernelModule)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	msg, err := disconnectMessage(d.Index)
	if err != nil {
		return err
	}
	if _, err := c.Execute(msg, family.ID, netlink.Request|netlink.Acknowledge); err != nil {
		return fmt.Errorf("nbd: netlink NBD_CMD_DISCONNECT %s: %w", d.Path(), err)
	}
	return nil
}

// detachPatience is how long Detach waits for the kernel to let go of the
// socket after a disconnect before it pulls the socket itself.
const detachPatience = 5 * time.Second

// Detach disconnects the device and releases what AttachKernel holds. On
// the ioctl path it waits for NBD_DO_IT to return (pulling the socket with
// NBD_CLEAR_SOCK if the kernel lingers) and closes /dev/nbdN. Calling it
// again does nothing.
func (d *Device) Detach() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.detached {
		return nil
	}
	d.detached = true
	err := d.Disconnect()
	if !d.viaIoctl {
		return err
	}
	select {
	case <-d.done:
	case <-time.After(detachPatience):
		ioctl(d.file, ioctlClearSock, 0) // wakes NBD_DO_IT
		<-d.done
	}
	// As nbd-client does after NBD_DO_IT: nothing may stay queued or bound.
	ioctl(d.file, ioctlClearQueue, 0)
	ioctl(d.file, ioctlClearSock, 0)
	if err == nil && d.doItErr != nil {
		err = fmt.Errorf("nbd: NBD_DO_IT on %s ended with: %w", d.Path(), d.doItErr)
	}
	if cerr := d.file.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("nbd: close %s: %w", d.Path(), cerr)
	}
	return err
}

// attachIoctl attaches through the ioctl interface. Every ioctl up to
// NBD_DO_IT runs on one locked OS thread, because the kernel remembers the
// thread that gave the socket and refuses the device to any other.
func attachIoctl(cfg KernelConfig, sock *os.File) (*Device, error) {
	if cfg.Index >= 0 {
		return attachIoctlIndex(cfg, cfg.Index, sock)
	}
	for index := 0; ; index++ {
		if _, err := os.Stat(fmt.Sprintf("/sys/block/nbd%d/pid", index)); err == nil {
			continue // served by another process
		}
		d, err := attachIoctlIndex(cfg, index, sock)
		if errors.Is(err, syscall.EBUSY) {
			continue
		}
		if errors.Is(err, fs.ErrNotExist) && index > 0 {
			return nil, fmt.Errorf("nbd: all %d /dev/nbd* devices are busy", index)
		}
		return d, err
	}
}

func attachIoctlIndex(cfg KernelConfig, index int, sock *os.File) (*Device, error) {
	d := &Device{Index: index, viaIoctl: true, done: make(chan struct{})}
	file, err := os.OpenFile(d.Path(), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("nbd: %w", err)
	}
	d.file = file
	setup := make(chan error, 1)
	go d.run(cfg, sock, setup)
	if err := <-setup; err != nil {
		file.Close()
		return nil, err
	}
	return d, nil
}

// run configures the device and then serves as NBD_DO_IT's thread until
// the device is disconnected. The thread is never unlocked: it exits with
// the goroutine, and its blocked signals with it.
func (d *Device) run(cfg KernelConfig, sock *os.File, setup chan<- error) {
	defer close(d.done)
	runtime.LockOSThread()
	// NBD_DO_IT sleeps interruptibly and shuts the device down if a signal
	// arrives, and Go delivers signals (preemption, SIGCHLD, ...) to any
	// thread. Only faults stay deliverable: blocking them would kill us.
	var set unix.Sigset_t
	for i := range set.Val {
		set.Val[i] = ^set.Val[i]
	}
	bitsPerWord := uint(unsafe.Sizeof(set.Val[0]) * 8)
	for _, sig := range []unix.Signal{unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP} {
		set.Val[uint(sig-1)/bitsPerWord] &^= 1 << (uint(sig-1) % bitsPerWord)
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
		setup <- fmt.Errorf("nbd: block signals for NBD_DO_IT: %w", err)
		return
	}
	steps := []struct {
		name    string
		request uintptr
		arg     uintptr
	}{
		{"NBD_SET_SOCK", ioctlSetSock, sock.Fd()},
		{"NBD_SET_BLKSIZE", ioctlSetBlockSize, uintptr(cfg.BlockSize)},
		{"NBD_SET_SIZE_BLOCKS", ioctlSetSizeBlocks, uintptr(cfg.Size / uint64(cfg.BlockSize))},
		{"NBD_SET_FLAGS", ioctlSetFlags, uintptr(cfg.Flags)},
	}
	for i, step := range steps {
		if err := ioctl(d.file, step.request, step.arg); err != nil {
			if i > 0 {
				ioctl(d.file, ioctlClearSock, 0)
			}
			setup <- fmt.Errorf("nbd: %s on %s: %w", step.name, d.Path(), err)
			return
		}
	}
	runtime.KeepAlive(sock)
	setup <- nil
	d.doItErr = ioctl(d.file, ioctlDoIt, 0)
}

func ioctl(f *os.File, request, arg uintptr) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), request, arg)
	if errno != 0 {
		return errno
	}
	return nil
}
