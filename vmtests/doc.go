// Package vmtests runs Tandem on real Linux kernels: QEMU VMs (software
// emulation) booted from Debian's kernel and an initramfs the harness
// builds, joined by a virtual Ethernet and a serial cable, with faults
// injected through QMP. The harness is package vmtests/vm; the guest agent
// it talks to is vmtests/agent.
//
// The tests run only with TANDEM_VMTEST=1 (make vmtest, which also installs
// QEMU and the tools); otherwise they skip, so go test ./... stays fast.
// See "The VM suite" in CONTRIBUTING.md.
package vmtests
