//go:build !purego

package kernels

import (
	"syscall"

	"golang.org/x/sys/cpu"
)

// amxPermitted reports whether this process may use the AMX tile state:
// Linux keeps it off until a process asks for it, and a tile instruction
// without it raises SIGILL. The request is made once, at start-up, and
// only on a CPU that has AMX.
var amxPermitted = requestAMX()

// requestAMX asks Linux for the AMX tile data state
// (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)), which fails on a
// kernel that does not support it.
func requestAMX() bool {
	if !cpu.X86.HasAMXTile {
		return false
	}
	const (
		archReqXcompPerm  = 0x1023
		xfeatureXtiledata = 18
	)
	_, _, errno := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archReqXcompPerm, xfeatureXtiledata, 0)
	return errno == 0
}
