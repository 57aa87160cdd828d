package main

import (
	"runtime/debug"
	"testing"
)

// Not parallel: the GC target is process-wide.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	tests := []struct {
		name string
		env  map[string]string
		want int
	}{
		{"default when GOGC unset", nil, gcPercentDefault},
		{"GOGC set keeps the runtime's", map[string]string{"GOGC": "150"}, 150},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			debug.SetGCPercent(150) // what the runtime made of GOGC=150
			got := tuneGC(func(k string) string { return tt.env[k] })
			if got != tt.want {
				t.Fatalf("tuneGC = %d, want %d", got, tt.want)
			}
			if cur := debug.SetGCPercent(got); cur != tt.want {
				t.Fatalf("GC percent in effect %d, want %d", cur, tt.want)
			}
		})
	}
}
