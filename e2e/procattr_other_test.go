//go:build !linux

package e2e

import "syscall"

// childProcAttr has nothing to add outside Linux: the test cleanups stop
// the instances.
func childProcAttr() *syscall.SysProcAttr { return nil }
