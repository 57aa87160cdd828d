package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// hostReport describes the machine the run shared with the service and
// PostgreSQL. The load averages show whether something else competed for
// it; they are 0 where /proc is absent.
type hostReport struct {
	CPUs          int     `json:"cpus"`
	MemoryBytes   int64   `json:"memory_bytes"`
	LoadAvgBefore float64 `json:"load_avg_before"` // 1-minute load average before the run
	LoadAvgAfter  float64 `json:"load_avg_after"`  // and after the measured phase
	// ToolCPUCores is the load tool's own CPU use in the measured phase
	// (CPU seconds per second, stubs included): the share of the machine
	// the measurement itself took.
	ToolCPUCores float64 `json:"tool_cpu_cores"`
}

// readHost returns the CPU count, the memory and the load average now.
func readHost() hostReport {
	h := hostReport{CPUs: runtime.NumCPU(), LoadAvgBefore: readLoadAvg()}
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		h.MemoryBytes = parseMemTotal(raw)
	}
	return h
}

// readLoadAvg returns the 1-minute load average, or 0 when unknown.
func readLoadAvg() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	return parseLoadAvg(raw)
}

// parseLoadAvg returns the first field of /proc/loadavg, or 0.
func parseLoadAvg(raw []byte) float64 {
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return v
}

// parseMemTotal returns MemTotal of /proc/meminfo in bytes, or 0.
func parseMemTotal(raw []byte) int64 {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 2 && f[1] == "kB" {
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				return kb * 1024
			}
		}
		return 0
	}
	return 0
}
