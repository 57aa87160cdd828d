package main

import "syscall"

// childProcAttr makes the kernel stop the started service (SIGTERM) if this
// process dies without stopping it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
