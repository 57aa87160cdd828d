//go:build !linux

package main

import (
	"syscall"
	"time"
)

// childProcAttr has nothing to add outside Linux.
func childProcAttr() *syscall.SysProcAttr { return nil }

// selfCPU is not measured outside Linux.
func selfCPU() time.Duration { return 0 }
