package bench

import (
	"os/exec"
	"syscall"
)

// killWithParent has the kernel kill cmd's process if this one dies first,
// so that no server outlives a benchmark that crashed or was killed.
func killWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
