package main

import (
	"syscall"
	"time"
)

// childProcAttr makes the kernel stop the started service (SIGTERM) if this
// process dies without stopping it.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}

// selfCPU returns the CPU time (user + system) this process has used, or 0
// when it cannot be read.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
