package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type bundle struct {
	srv *Server
	url string
}

func setup(t *testing.T, cfg Config) bundle {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := NewServer(cfg)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return bundle{srv: s, url: ts.URL}
}

// post calls path with an optional idempotency key and returns the status
// and the decoded JSON answer.
func post(t *testing.T, url, key, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode answer of %s: %v", url, err)
	}
	return resp.StatusCode, out
}

func TestRoutesAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	tests := []struct {
		path, field string
	}{
		{"inventory/reserve", "reservation_id"},
		{"inventory/release", "release_id"},
		{"payments/charge", "charge_id"},
		{"payments/refund", "refund_id"},
		{"shipping/schedule", "shipment_id"},
		{"shipping/cancel", "cancellation_id"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			status, out := post(t, b.url+"/"+tt.path, "", `{"input":{"sku":"A1"}}`)
			if status != http.StatusOK {
				t.Fatalf("status = %d, want 200", status)
			}
			if id, _ := out[tt.field].(string); id == "" {
				t.Fatalf("answer %v lacks %q", out, tt.field)
			}
		})
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	url := b.url + "/payments/charge"

	// Concurrent calls with one key: one effect, one answer.
	const n = 8
	answers := make([]map[string]any, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			status, out := post(t, url, "saga-1:1:action", `{}`)
			if status != http.StatusOK {
				t.Errorf("status = %d, want 200", status)
			}
			answers[i] = out
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if answers[i]["charge_id"] != answers[0]["charge_id"] {
			t.Fatalf("answer %d = %v, want %v", i, answers[i], answers[0])
		}
	}
	if got := b.srv.Effects("payments/charge"); got != 1 {
		t.Fatalf("effects = %d, want 1", got)
	}

	// Another key, and no key at all, each take effect.
	_, other := post(t, url, "saga-1:2:action", `{}`)
	if other["charge_id"] == answers[0]["charge_id"] {
		t.Fatalf("another key got the same answer %v", other)
	}
	post(t, url, "", `{}`)
	post(t, url, "", `{}`)
	if got := b.srv.Effects("payments/charge"); got != 4 {
		t.Fatalf("effects = %d, want 4", got)
	}

	// The same key on another route is another operation.
	status, refund := post(t, b.url+"/payments/refund", "saga-1:1:action", `{}`)
	if status != http.StatusOK || refund["refund_id"] == nil {
		t.Fatalf("refund = %d %v", status, refund)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    Config
		path   string
		status int
	}{
		{"fail step refuses", Config{FailSteps: []string{"payments/charge"}}, "payments/charge", http.StatusPaymentRequired},
		{"fail step with slash", Config{FailSteps: []string{"/payments/charge"}}, "payments/charge", http.StatusPaymentRequired},
		{"other steps succeed", Config{FailSteps: []string{"payments/charge"}}, "inventory/reserve", http.StatusOK},
		{"fail rate hit", Config{FailRate: 0.2, Random: func() float64 { return 0.1 }}, "shipping/schedule", http.StatusServiceUnavailable},
		{"fail rate missed", Config{FailRate: 0.2, Random: func() float64 { return 0.5 }}, "shipping/schedule", http.StatusOK},
		{"latency", Config{Latency: time.Millisecond}, "inventory/reserve", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tt.cfg)
			status, out := post(t, b.url+"/"+tt.path, "k1", `{}`)
			if status != tt.status {
				t.Fatalf("status = %d (%v), want %d", status, out, tt.status)
			}
			wantEffects := 0
			if tt.status == http.StatusOK {
				wantEffects = 1
			}
			if got := b.srv.Effects(tt.path); got != wantEffects {
				t.Fatalf("effects = %d, want %d", got, wantEffects)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	status, _ := post(t, b.url+"/inventory/reserve", "", `{not json`)
	if status != http.StatusBadRequest {
		t.Fatalf("invalid JSON: status = %d, want 400", status)
	}
	resp, err := http.Get(b.url + "/inventory/reserve")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: status = %d, want 405", resp.StatusCode)
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	var logs bytes.Buffer
	var logMu sync.Mutex
	go func() {
		errc <- run(ctx, []string{"-addr", "127.0.0.1:0", "-fail-step", "shipping/schedule"},
			lockedWriter{&logMu, &logs}, func(addr string) { addrc <- addr })
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		t.Fatalf("run: %v", err)
	}
	status, _ := post(t, "http://"+addr+"/shipping/schedule", "", `{}`)
	if status != http.StatusPaymentRequired {
		t.Fatalf("status = %d, want 402", status)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run: %v", err)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "route=shipping/schedule") {
		t.Fatalf("call not logged:\n%s", logs.String())
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	t.Parallel()
	tests := [][]string{
		{"-fail-rate", "1.5"},
		{"-latency", "-1s"},
		{"-fail-step", "payments/steal"},
		{"-nope"},
	}
	for _, args := range tests {
		if err := run(t.Context(), args, io.Discard, nil); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
