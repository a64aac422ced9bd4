// Package vm is the VM suite's harness: it boots QEMU VMs (TCG, no KVM)
// from Debian's kernel and an initramfs it builds, joins them with a
// virtual Ethernet and a serial cable, and gives a test control of each
// guest and of the faults a real machine suffers.
//
//	c := vm.Pair(t)                    // server1 + server2, booted; stopped in t.Cleanup
//	s1 := c.Node("server1")
//	r, err := s1.Run(ctx, "uname", "-r") // stdout, stderr, exit status
//	s1.Spawn(ctx, "/tmp/d.log", "tandem", "daemon", "-config", "/etc/tandem.conf")
//	s1.PowerCut()                      // SIGKILL QEMU; PowerOn boots the same disks
//	s1.Freeze(ctx); s1.Thaw(ctx)       // QMP stop / cont
//	c.Switch.Partition("server1", "server2"); c.Cable.Cut()
//
// Pieces:
//
//   - Image (image.go, kernel.go, cpio.go): the kernel package that
//     linux-image-amd64 depends on, fetched with apt-get download into
//     CacheDir and unpacked, its ELF vmlinux extracted (PVH boot skips the
//     decompression); an initramfs in newc format written here: busybox,
//     static tandem and tandem-agent, e2fsprogs and dmsetup with their
//     libraries, the modules of DefaultModules in insmod order, busybox init
//     running /etc/rc then the agent.
//   - VM (machine.go): one QEMU process. ttyS0 goes to a console file;
//     ttyS1 is an end of the Cable; eth0 is a port of the Switch; a
//     virtio-serial port carries the agent protocol (vmtests/agent/proto);
//     QMP gives power cut, freeze, link and reset.
//   - Switch (switch.go): a hub in the test process that the VMs' "-netdev
//     stream" connect to; it can drop frames per direction (silent cuts).
//   - Cable (cable.go): the null-modem between two nodes' ttyS1, relayed
//     by the test process; Cut and Mend.
//   - Fence devices (fence.go): QMP sockets inside fencing nodes, served by
//     the harness as the targets' power switches, breakable on purpose.
//   - Cluster (cluster.go): the set of VMs one test owns; cleanup stops
//     every QEMU and dumps consoles into the log when the test failed.
package vm
