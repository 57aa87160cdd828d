package main

import "runtime/debug"

// gcPercentDefault is the garbage collector's target when GOGC is not set.
// Go's default of 100 collects each time the live heap doubles; the
// service's live heap is small (a few MiB of sagas in flight and buffers)
// and nearly everything it allocates dies within a request, so a target of
// 400 collects a quarter as often for a few more MiB of memory. GOGC set in
// the environment (including GOGC=off) is left to the runtime, and so is
// GOMEMLIMIT: under a memory limit the collector runs as often as needed to
// stay below it whatever the target.
const gcPercentDefault = 400

// tuneGC applies gcPercentDefault unless GOGC is set, and returns the
// target in effect (-1 when collection is off).
func tuneGC(getenv func(string) string) int {
	if getenv("GOGC") != "" {
		cur := debug.SetGCPercent(-1)
		debug.SetGCPercent(cur)
		return cur
	}
	debug.SetGCPercent(gcPercentDefault)
	return gcPercentDefault
}
