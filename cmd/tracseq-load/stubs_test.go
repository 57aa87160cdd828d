package main

import (
	"bytes"
	"encoding/json"
	"net"
	"testing"
	"time"
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

// A connection opened but never used (a transport's spare dial) does not
// make stopping the stubs fail: it is closed when the grace ends.
func TestStubsCloseWithAnUnusedConnection(t *testing.T) {
	t.Parallel()
	s, err := startStubs(0)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Give the server the moment it takes to accept it: a connection still
	// in the listen queue is simply reset by the close (the test then
	// passes without showing anything).
	time.Sleep(100 * time.Millisecond)
	if err := s.close(); err != nil {
		t.Fatalf("close with an unused connection open: %v", err)
	}
	// The stubs closed the connection: a read ends.
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("the unused connection is still open after close")
	}
}
