package e2e

import "syscall"

// childProcAttr makes the kernel kill a started instance if the test
// process dies without stopping it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
