package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The stubs' hand-built answers are what json.Encoder writes for their maps.
func TestAppendStepAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		got  []byte
		want map[string]any
	}{
		{"action", appendStepAnswer(nil, `{"done":true,"step":`, "2"), map[string]any{"done": true, "step": "2"}},
		{"compensation", appendStepAnswer(nil, `{"step":`, "1", `,"undone":true`), map[string]any{"undone": true, "step": "1"}},
		{"odd step", appendStepAnswer(nil, `{"done":true,"step":`, `a"<b>`), map[string]any{"done": true, "step": `a"<b>`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var want bytes.Buffer
			if err := json.NewEncoder(&want).Encode(tt.want); err != nil {
				t.Fatal(err)
			}
			if string(tt.got) != want.String() {
				t.Fatalf("answer %q, want %q", tt.got, want.String())
			}
		})
	}
}

func BenchmarkStubAnswer(b *testing.B) {
	b.Run("encoder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var buf bytes.Buffer
			_ = json.NewEncoder(&buf).Encode(map[string]any{"done": true, "step": "1"})
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendStepAnswer(make([]byte, 0, 32), `{"done":true,"step":`, "1")
		}
	})
}
