package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// A database that answers but refuses (unknown role, unknown database) is
// a configuration error: the service does not start, and says DATABASE_URL
// and why, instead of running in memory forever.
func TestServeStopsWhenDatabaseRefuses(t *testing.T) {
	t.Parallel()
	server, err := url.Parse(pgtest.ServerURL())
	if err != nil || server.Host == "" {
		t.Fatalf("TEST_DATABASE_URL %q is not a URL with a host", pgtest.ServerURL())
	}
	unknownRole := *server
	unknownRole.User = url.UserPassword("tracseq_no_such_role", "pw-not-shown")
	unknownDB := *server
	unknownDB.Path = "/tracseq_no_such_database"
	for name, tc := range map[string]struct{ url, reason string }{
		"unknown role":     {unknownRole.String(), "28000"},
		"unknown database": {unknownDB.String(), "3D000"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			m := NewMain()
			var logs bytes.Buffer
			err := m.Run(context.Background(), nil, envOf(map[string]string{
				"DATABASE_URL": tc.url, "HTTP_ADDR": "127.0.0.1:0", "DB_CONNECTION_TIMEOUT_SECONDS": "10",
			}), io.Discard, &logs)
			if err == nil {
				m.Close()
				t.Fatalf("the service started on a database that refuses it; logs:\n%s", logs.String())
			}
			msg := err.Error()
			if !strings.Contains(msg, "DATABASE_URL") || !strings.Contains(msg, tc.reason) || !strings.Contains(msg, "configuration error") {
				t.Errorf("error %q; want it to name DATABASE_URL and SQLSTATE %s", msg, tc.reason)
			}
			if strings.Contains(msg, "pw-not-shown") || strings.Contains(logs.String(), "pw-not-shown") {
				t.Error("the password is shown")
			}
			if strings.Contains(logs.String(), "MEMORY mode") || m.Addr() != "" {
				t.Errorf("the service fell back to memory; logs:\n%s", logs.String())
			}
		})
	}
}

// A repeated submit with a known idempotency key is a replay when it is the
// same request (its JSON reformatted by PostgreSQL's jsonb) and 409 when it
// is another.
func TestIdempotencyKeyReusedOnPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newParticipant(t)
	b := setup(t, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t), "DB_MIN_CONNECTIONS": "1", "DB_MAX_CONNECTIONS": "4"})
	def := p.twoStep("keyed")
	def.IdempotencyKey = "order-A-1"
	def.Context = json.RawMessage(`{ "b" : 2.0, "a": [1, {"x": "y"}] }`)
	first, replayed, err := b.client.Submit(ctx, def, 0)
	if err != nil || replayed {
		t.Fatalf("first submit: replayed %v, %v", replayed, err)
	}
	same := def.Clone()
	same.Context = json.RawMessage(`{"a":[1,{"x":"y"}],"b":2}`)
	again, replayed, err := b.client.Submit(ctx, same, 0)
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("the same request again: %v replayed %v, %v; want saga %s replayed", again, replayed, err, first.ID)
	}
	other := def.Clone()
	other.Steps[1].Action.Body = json.RawMessage(`{"amount": 4200}`)
	_, _, err = b.client.Submit(ctx, other, 0)
	var pr *httpapi.Problem
	if !errors.As(err, &pr) || pr.Status != http.StatusConflict || pr.Field != "idempotency_key" ||
		!strings.Contains(pr.Detail, "idempotency_key reused with a different request") || !strings.Contains(pr.Detail, first.ID) {
		t.Fatalf("another request with the key: %v; want 409 naming idempotency_key and the saga", err)
	}
	page, err := b.client.List(ctx, httpapi.ListQuery{})
	if err != nil || len(page.Sagas) != 1 {
		t.Fatalf("%d sagas stored (%v); want 1", len(page.Sagas), err)
	}
}

// In memory mode a SIGTERM (Close) with a saga half done warns loudly and
// waits for the saga to end, instead of dropping it.
func TestMemoryShutdownWaitsForSagas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newParticipant(t)
	release := make(chan struct{})
	p.handle("/inventory/reserve", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"reserved": true}`)
	})
	b := setup(t, map[string]string{"ENABLE_PERSISTENCE": "false"})
	s, _, err := b.client.Submit(ctx, p.twoStep("half-done"), 0)
	if err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the first call", func() bool { return len(p.callsTo("/inventory/reserve")) == 1 })

	closed := make(chan error, 1)
	go func() { closed <- b.main.Close() }()
	pollUntil(t, "the warning", func() bool { return strings.Contains(b.logs.String(), "MEMORY MODE: sagas are still running") })
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a saga held in memory was half done", err)
	default:
	}
	close(release)
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return after the saga could end")
	}
	if n := len(p.callsTo("/payments/charge")); n != 1 {
		t.Errorf("the saga's second step was called %d times before the stop; want 1 (saga %s ran to its end)", n, s.ID)
	}
	logs := b.logs.String()
	if !strings.Contains(logs, "level=ERROR msg=\"MEMORY MODE: sagas are still running") || !strings.Contains(logs, "every running saga ended") ||
		strings.Contains(logs, "timeout reached") {
		t.Errorf("logs:\n%s", logs)
	}
}

// The CLI always submits with an idempotency key, prints it, and a submit
// repeated with it (its answer lost, say) gives back the same saga.
func TestCLISubmitAlwaysSendsAKey(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	b := setup(t, map[string]string{"ENABLE_PERSISTENCE": "false"})
	def, err := json.Marshal(p.twoStep("from-cli"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, map[string]string{"TRACSEQ_URL": b.url}, bytes.NewReader(def), "submit", "-")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	_, key, ok := strings.Cut(strings.TrimSpace(out), "(idempotency key ")
	key = strings.TrimSuffix(key, ")")
	if _, perr := saga.ParseID(key); !ok || perr != nil {
		t.Fatalf("submit output %q names no generated key", out)
	}
	page, err := b.client.List(context.Background(), httpapi.ListQuery{})
	if err != nil || len(page.Sagas) != 1 || page.Sagas[0].IdempotencyKey != key {
		t.Fatalf("sagas %+v (%v); want one with key %s", page, err, key)
	}
	out, err = runCLI(t, map[string]string{"TRACSEQ_URL": b.url}, bytes.NewReader(def), "submit", "-", "--idempotency-key", key)
	if err != nil || !strings.Contains(out, "saga "+page.Sagas[0].ID+" already submitted") {
		t.Fatalf("submit again with the key: %q, %v", out, err)
	}
}

// The experiment of the hostile-input report, on the real service: 260
// sagas calling a hanging path of a host, then 20 sagas calling other
// paths of the same host (PARTICIPANT_MAX_CONNS_PER_HOST at its default,
// 256). The 20 complete while the 260 hang; the test logs how long they
// took.
func TestHangingEndpointDoesNotBlockItsHost(t *testing.T) {
	t.Parallel()
	const hangingSagas, otherSagas = 260, 20
	ctx := context.Background()
	p := newParticipant(t)
	release := make(chan struct{})
	var hanging atomic.Int32
	p.handle("/slow/hang", func(w http.ResponseWriter, r *http.Request) {
		hanging.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok": true}`)
	})
	b := setup(t, map[string]string{"ENABLE_PERSISTENCE": "false", "LOG_LEVEL": "warn"})
	one := func(name, path string) saga.Definition {
		return saga.Definition{Name: name, Steps: []saga.StepDefinition{{Name: "call",
			Action: saga.Request{Method: http.MethodPost, URL: p.srv.URL + path, TimeoutMs: 120_000},
			Retry:  &saga.RetryPolicy{MaxAttempts: 1}}}}
	}
	for i := range hangingSagas {
		if _, _, err := b.client.Submit(ctx, one(fmt.Sprintf("hang-%d", i), "/slow/hang"), 0); err != nil {
			t.Fatal(err)
		}
	}
	// The hanging path holds all it will get.
	pollUntil(t, "the hanging calls", func() bool { return hanging.Load() >= 128 })

	durations := make([]time.Duration, otherSagas)
	var wg sync.WaitGroup
	for i := range otherSagas {
		wg.Go(func() {
			start := time.Now()
			s, _, err := b.client.Submit(ctx, one(fmt.Sprintf("other-%d", i), fmt.Sprintf("/slow/other/%d", i)), 60*time.Second)
			durations[i] = time.Since(start)
			if err != nil || s.Status != saga.SagaStatusCompleted {
				t.Errorf("saga on another path of the host: %v, %v; want Completed while the hanging path hangs", s, err)
			}
		})
	}
	wg.Wait()
	held := hanging.Load()
	close(release)
	slices.Sort(durations)
	t.Logf("%d sagas on a hanging path (%d of their calls in flight, of the host's 256 connections); %d sagas on other paths of the host: median %v, slowest %v",
		hangingSagas, held, otherSagas, durations[otherSagas/2].Round(time.Millisecond), durations[otherSagas-1].Round(time.Millisecond))
	pollUntil(t, "every saga to end", func() bool {
		st, err := b.client.Statistics(ctx, 0)
		return err == nil && st.ByStatus[saga.SagaStatusCompleted] == hangingSagas+otherSagas
	})
}
