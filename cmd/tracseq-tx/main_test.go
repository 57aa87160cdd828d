package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// syncBuffer is a bytes.Buffer safe for the service's concurrent logging.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// call is one request a stub participant received.
type call struct {
	path    string
	headers http.Header
	body    map[string]any
}

// participant is a stub participant service that records its calls. A
// handler registered for a path answers there; other paths answer 200 with
// {"ok": true, "path": ...}.
type participant struct {
	srv *httptest.Server

	mu       sync.Mutex
	calls    []call
	handlers map[string]http.HandlerFunc
}

func newParticipant(t *testing.T) *participant {
	t.Helper()
	p := &participant{handlers: make(map[string]http.HandlerFunc)}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		_ = json.Unmarshal(raw, &body)
		p.mu.Lock()
		p.calls = append(p.calls, call{path: r.URL.Path, headers: r.Header.Clone(), body: body})
		h := p.handlers[r.URL.Path]
		p.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok": true, "path": %q}`, r.URL.Path)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *participant) handle(path string, h http.HandlerFunc) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.handlers[path] = h
}

func (p *participant) paths() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.calls))
	for i, c := range p.calls {
		out[i] = c.path
	}
	return out
}

func (p *participant) callsTo(path string) []call {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []call
	for _, c := range p.calls {
		if c.path == path {
			out = append(out, c)
		}
	}
	return out
}

// twoStep returns a two-step definition on the participant.
func (p *participant) twoStep(name string) saga.Definition {
	req := func(path string, body string) saga.Request {
		r := saga.Request{Method: http.MethodPost, URL: p.srv.URL + path}
		if body != "" {
			r.Body = json.RawMessage(body)
		}
		return r
	}
	undo := func(path string) *saga.Request { r := req(path, ""); return &r }
	return saga.Definition{
		Name:    name,
		Context: json.RawMessage(`{"order_id": "A-1"}`),
		Steps: []saga.StepDefinition{
			{Name: "reserve", Action: req("/inventory/reserve", `{"sku": "X", "qty": 2}`), Compensation: undo("/inventory/release")},
			{Name: "charge", Action: req("/payments/charge", `{"amount": 42}`), Compensation: undo("/payments/refund")},
		},
	}
}

// bundle is a running service and what a test needs to talk to it.
type bundle struct {
	main   *Main
	addr   string
	url    string
	logs   *syncBuffer
	client *httpapi.Client
}

// setup starts the real program in-process on 127.0.0.1:0 with env (plus
// test defaults) and stops it when the test ends.
func setup(t *testing.T, env map[string]string) *bundle {
	t.Helper()
	full := map[string]string{
		"HTTP_ADDR":   "127.0.0.1:0",
		"LOG_LEVEL":   "debug",
		"INSTANCE_ID": "test-" + strings.ReplaceAll(t.Name(), "/", "-"),
	}
	for k, v := range env {
		full[k] = v
	}
	logs := &syncBuffer{}
	m := NewMain()
	if err := m.Run(context.Background(), nil, envOf(full), io.Discard, logs); err != nil {
		t.Fatalf("Run: %v\nlogs:\n%s", err, logs)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("service logs:\n%s", logs)
		}
	})
	addr := m.Addr()
	if addr == "" {
		t.Fatal("Addr is empty after Run")
	}
	url := "http://" + addr
	return &bundle{main: m, addr: addr, url: url, logs: logs,
		client: &httpapi.Client{BaseURL: url, Token: full["API_TOKENS"]}}
}

// cli runs one command of the program against b and returns its output.
func (b *bundle) cli(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	return runCLI(t, map[string]string{"TRACSEQ_URL": b.url}, nil, args...)
}

// runCLI runs a one-shot command of the program.
func runCLI(t *testing.T, env map[string]string, stdin io.Reader, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	m := NewMain()
	m.Stdin = stdin
	err := m.Run(context.Background(), args, envOf(env), &out, &errOut)
	if cerr := m.Close(); cerr != nil {
		t.Errorf("Close after %v: %v", args, cerr)
	}
	if err != nil && errOut.Len() > 0 {
		err = fmt.Errorf("%w (stderr: %s)", err, errOut.String())
	}
	return out.String(), err
}

func eventTypes(events []httpapi.EventJSON) []saga.EventType {
	out := make([]saga.EventType, len(events))
	for i, e := range events {
		out[i] = e.Type
	}
	return out
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// pollUntil calls cond until it returns true or the deadline passes.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeDurable(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	p := newParticipant(t)
	b := setup(t, map[string]string{"DATABASE_URL": dbURL, "DB_MIN_CONNECTIONS": "1", "DB_MAX_CONNECTIONS": "8"})
	ctx := context.Background()

	ready, status, err := b.client.Ready(ctx)
	if err != nil || status != http.StatusOK {
		t.Fatalf("Ready: %v (HTTP %d)", err, status)
	}
	if ready.Persistence != "postgres" || ready.Database == nil || ready.Database.MigrationVersion < 1 {
		t.Fatalf("ready = %+v, want durable with a migrated database", ready)
	}

	s, replayed, err := b.client.Submit(ctx, p.twoStep("checkout"), 30*time.Second)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if replayed || s.Status != saga.SagaStatusCompleted || !s.Durable || s.CompletedSteps != 2 {
		t.Fatalf("submitted saga = %+v (replayed %v), want Completed, durable, 2 steps", s, replayed)
	}
	if got, want := p.paths(), []string{"/inventory/reserve", "/payments/charge"}; !equal(got, want) {
		t.Fatalf("participant calls = %v, want %v", got, want)
	}
	charge := p.callsTo("/payments/charge")[0]
	if got, want := charge.headers.Get("Idempotency-Key"), s.ID+":1:action"; got != want {
		t.Errorf("Idempotency-Key = %q, want %q", got, want)
	}
	if charge.headers.Get("X-Saga-Id") != s.ID || charge.headers.Get("X-Transaction-Id") != s.TransactionID {
		t.Errorf("saga headers = %v", charge.headers)
	}

	events, err := b.client.Events(ctx, s.ID)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	want := []saga.EventType{saga.EventSagaCreated, saga.EventSagaStarted,
		saga.EventStepStarted, saga.EventStepCompleted, saga.EventStepStarted, saga.EventStepCompleted,
		saga.EventSagaCompleted}
	if got := eventTypes(events); !equal(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}

	// The saga is in PostgreSQL, not only in the service's memory.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var dbStatus string
	var nEvents int
	if err := conn.QueryRow(ctx, `SELECT status::text, (SELECT count(*) FROM saga_events WHERE saga_id = $1) FROM sagas WHERE id = $1`, s.ID).Scan(&dbStatus, &nEvents); err != nil {
		t.Fatalf("read saga row: %v", err)
	}
	if dbStatus != "Completed" || nEvents != len(want) {
		t.Fatalf("database holds status %s and %d events, want Completed and %d", dbStatus, nEvents, len(want))
	}

	// Metrics are served and say durable.
	resp, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{"tracseq_persistence_durable 1", "tracseq_sagas_started_total 1", "go_goroutines"} {
		if !strings.Contains(string(metricsText), line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	t.Run("cli", func(t *testing.T) { testCLI(t, b, p, s.ID) })
}

// testCLI runs the operator commands against a running service holding the
// Completed saga id.
func testCLI(t *testing.T, b *bundle, p *participant, id string) {
	out, err := b.cli(t, "list")
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if !strings.Contains(out, id) || !strings.Contains(out, "Completed") || !strings.Contains(out, "2/2") {
		t.Errorf("list output lacks the saga:\n%s", out)
	}

	out, err = b.cli(t, "list", "--status", "Completed", "--json")
	if err != nil {
		t.Fatalf("list --json: %v", err)
	}
	var page httpapi.ListJSON
	if err := json.Unmarshal([]byte(out), &page); err != nil {
		t.Fatalf("list --json is not JSON: %v\n%s", err, out)
	}
	if len(page.Sagas) != 1 || page.Sagas[0].ID != id {
		t.Errorf("list --json = %+v, want the one saga", page)
	}
	out, err = b.cli(t, "list", "--status", "Failed", "--json")
	if err != nil {
		t.Fatalf("list --status Failed: %v", err)
	}
	if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Sagas) != 0 {
		t.Errorf("list --status Failed = %s (%v), want no sagas", out, err)
	}
	if _, err := b.cli(t, "list", "--status", "Nope"); err == nil || exitCode(err) != 2 {
		t.Errorf("list --status Nope: err %v, want a usage error", err)
	}

	out, err = b.cli(t, "show", id)
	if err != nil {
		t.Fatalf("show: %v", err)
	}
	for _, wantText := range []string{id, "Completed", "reserve", "charge", "SagaCreated", "SagaCompleted", `"path":"/payments/charge"`} {
		if !strings.Contains(out, wantText) {
			t.Errorf("show output lacks %q:\n%s", wantText, out)
		}
	}
	out, err = b.cli(t, "show", id, "--json") // flags after the argument
	if err != nil {
		t.Fatalf("show --json: %v", err)
	}
	var shown struct {
		Saga   httpapi.SagaJSON    `json:"saga"`
		Events []httpapi.EventJSON `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("show --json is not JSON: %v\n%s", err, out)
	}
	if shown.Saga.ID != id || len(shown.Saga.Steps) != 2 || len(shown.Events) != 7 {
		t.Errorf("show --json = saga %s with %d steps and %d events", shown.Saga.ID, len(shown.Saga.Steps), len(shown.Events))
	}
	if _, err := b.cli(t, "show", saga.NewID().String()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("show of an unknown saga: err %v, want 404", err)
	}

	out, err = b.cli(t, "stats")
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	if !strings.Contains(out, "Completed") || !strings.Contains(out, "total") {
		t.Errorf("stats output:\n%s", out)
	}
	out, err = b.cli(t, "stats", "--json", "--window", "10m")
	if err != nil {
		t.Fatalf("stats --json: %v", err)
	}
	var st httpapi.StatsJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("stats --json is not JSON: %v\n%s", err, out)
	}
	if st.ByStatus[saga.SagaStatusCompleted] != 1 || st.Total != 1 || st.WindowSeconds != 600 {
		t.Errorf("stats --json = %+v", st)
	}

	// A control action not allowed in the status is refused with 409.
	if _, err := b.cli(t, "pause", id); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("pause of a Completed saga: err %v, want 409", err)
	}

	// submit from standard input, waiting for the end.
	def, _ := json.Marshal(p.twoStep("from-cli"))
	out, err = runCLI(t, map[string]string{"TRACSEQ_URL": b.url}, bytes.NewReader(def), "submit", "-", "--wait", "20s", "--json")
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	var submitted httpapi.SagaJSON
	if err := json.Unmarshal([]byte(out), &submitted); err != nil {
		t.Fatalf("submit --json is not JSON: %v\n%s", err, out)
	}
	if submitted.Status != saga.SagaStatusCompleted || submitted.Name != "from-cli" {
		t.Errorf("submitted = %+v, want Completed from-cli", submitted)
	}
	// An invalid definition is refused before it is sent, naming each field.
	_, err = runCLI(t, map[string]string{"TRACSEQ_URL": b.url}, strings.NewReader(`{"name": "", "steps": []}`), "submit", "-")
	if err == nil || !strings.Contains(err.Error(), "name: must not be empty") || !strings.Contains(err.Error(), "steps: must hold") {
		t.Errorf("submit of an invalid definition: err %v", err)
	}

	out, err = b.cli(t, "cleanup", "--json")
	if err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	var cleaned httpapi.CleanupJSON
	if err := json.Unmarshal([]byte(out), &cleaned); err != nil || cleaned.Deleted != 0 {
		t.Errorf("cleanup --json = %s (%v), want 0 deleted (the sagas are recent)", out, err)
	}

	if out, err := b.cli(t, "health", "--ready"); err != nil || !strings.Contains(out, "persistence postgres)") {
		t.Errorf("health --ready = %q, %v", out, err)
	}
}

func TestCLIControlPauseResume(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	p := newParticipant(t)
	b := setup(t, map[string]string{"DATABASE_URL": dbURL, "DB_MIN_CONNECTIONS": "0", "DB_MAX_CONNECTIONS": "4"})
	ctx := context.Background()

	// The first step blocks until released, so the saga is mid-flight when
	// it is paused.
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	p.handle("/inventory/reserve", func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(entered) })
		<-release
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"reservation_id": "r-1"}`)
	})
	s, _, err := b.client.Submit(ctx, p.twoStep("pausable"), 0)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	<-entered
	out, err := b.cli(t, "pause", s.ID)
	if err != nil {
		t.Fatalf("pause: %v", err)
	}
	if !strings.Contains(out, "pause requested") {
		t.Errorf("pause output: %q", out)
	}
	close(release)
	pollUntil(t, "the saga to pause", func() bool {
		got, err := b.client.Get(ctx, s.ID)
		return err == nil && got.Status == saga.SagaStatusPaused
	})
	if got := p.paths(); !equal(got, []string{"/inventory/reserve"}) {
		t.Fatalf("calls while paused = %v, want only the first step", got)
	}

	out, err = b.cli(t, "resume", s.ID, "--json")
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	var resumed httpapi.SagaJSON
	if err := json.Unmarshal([]byte(out), &resumed); err != nil || resumed.ID != s.ID {
		t.Fatalf("resume --json = %s (%v)", out, err)
	}
	pollUntil(t, "the saga to complete", func() bool {
		got, err := b.client.Get(ctx, s.ID)
		return err == nil && got.Status == saga.SagaStatusCompleted
	})
	events, err := b.client.Events(ctx, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	types := eventTypes(events)
	for _, want := range []saga.EventType{saga.EventSagaPaused, saga.EventSagaResumed, saga.EventSagaCompleted} {
		found := false
		for _, got := range types {
			found = found || got == want
		}
		if !found {
			t.Errorf("events %v lack %s", types, want)
		}
	}
}

func TestServeMemoryWhenPersistenceDisabled(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	b := setup(t, map[string]string{"ENABLE_PERSISTENCE": "false", "DATABASE_URL": "postgres://127.0.0.1:1/never"})
	ctx := context.Background()

	if !strings.Contains(b.logs.String(), "persistence disabled: sagas live in memory only") {
		t.Errorf("no persistence-disabled log line:\n%s", b.logs)
	}
	ready, status, err := b.client.Ready(ctx)
	if err != nil || status != http.StatusOK || ready.Persistence != "memory" {
		t.Fatalf("Ready = %+v, HTTP %d, %v; want 200 memory", ready, status, err)
	}
	s, _, err := b.client.Submit(ctx, p.twoStep("in-memory"), 30*time.Second)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if s.Status != saga.SagaStatusCompleted || s.Durable {
		t.Fatalf("saga = %s durable=%v, want Completed and not durable", s.Status, s.Durable)
	}
}

func TestServeFallsBackToMemoryWhenDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	b := setup(t, map[string]string{"DATABASE_URL": "postgres://tracseq@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"})
	ctx := context.Background()

	if !strings.Contains(b.logs.String(), "DATABASE UNREACHABLE") {
		t.Errorf("no loud warning about the database:\n%s", b.logs)
	}
	ready, status, err := b.client.Ready(ctx)
	if err != nil || status != http.StatusOK {
		t.Fatalf("Ready: %v (HTTP %d)", err, status)
	}
	if ready.Persistence != "memory" || ready.Warning == "" {
		t.Fatalf("ready = %+v, want persistence memory with a warning", ready)
	}
	s, _, err := b.client.Submit(ctx, p.twoStep("while-db-away"), 30*time.Second)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if s.Status != saga.SagaStatusCompleted || s.Durable {
		t.Fatalf("saga = %s durable=%v, want Completed and durable=false", s.Status, s.Durable)
	}
	resp, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "tracseq_persistence_durable 0") {
		t.Errorf("/metrics does not report persistence_durable 0")
	}
}

func TestServeRequiresTokenWhenConfigured(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"ENABLE_PERSISTENCE": "false", "API_TOKENS": "s3cret,other"})
	if strings.Contains(b.logs.String(), "the API is OPEN") {
		t.Errorf("warned about an open API although tokens are set")
	}
	env := map[string]string{"TRACSEQ_URL": b.url}
	if _, err := runCLI(t, env, nil, "list"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("list without token: err %v, want 401", err)
	}
	if _, err := runCLI(t, env, nil, "list", "--token", "wrong"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("list with a wrong token: err %v, want 401", err)
	}
	if _, err := runCLI(t, env, nil, "list", "--token", "other"); err != nil {
		t.Errorf("list --token other: %v", err)
	}
	env["TRACSEQ_TOKEN"] = "s3cret"
	if _, err := runCLI(t, env, nil, "stats"); err != nil {
		t.Errorf("stats with TRACSEQ_TOKEN: %v", err)
	}
	// Liveness stays open.
	if _, err := runCLI(t, map[string]string{"TRACSEQ_URL": b.url}, nil, "health"); err != nil {
		t.Errorf("health without token: %v", err)
	}
}

func TestServeOpenAPIWarnsWithoutTokens(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"ENABLE_PERSISTENCE": "false"})
	if !strings.Contains(b.logs.String(), "API_TOKENS is empty: the API is OPEN") {
		t.Errorf("no warning about the open API:\n%s", b.logs)
	}
	if !strings.Contains(b.logs.String(), "listening on "+b.addr) {
		t.Errorf("no log line with the listening address %s", b.addr)
	}
}

func TestServeCloseIsGraceful(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	m := NewMain()
	env := envOf(map[string]string{"HTTP_ADDR": "127.0.0.1:0", "ENABLE_PERSISTENCE": "false"})
	if err := m.Run(context.Background(), []string{"serve"}, env, io.Discard, logs); err != nil {
		t.Fatalf("Run: %v", err)
	}
	url := "http://" + m.Addr()
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if m.Addr() != "" {
		t.Errorf("Addr after Close = %q", m.Addr())
	}
	if _, err := http.Get(url + "/health"); err == nil {
		t.Errorf("the server still answers after Close")
	}
	if !strings.Contains(logs.String(), "msg=stopped") {
		t.Errorf("no stopped log line:\n%s", logs)
	}
}

func TestServeWaitReturnsOnContextDone(t *testing.T) {
	t.Parallel()
	m := NewMain()
	env := envOf(map[string]string{"HTTP_ADDR": "127.0.0.1:0", "ENABLE_PERSISTENCE": "false"})
	if err := m.Run(context.Background(), nil, env, io.Discard, io.Discard); err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Wait(ctx) }()
	cancel() // what SIGTERM does in main
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

func TestServeRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	m := NewMain()
	var logs bytes.Buffer
	err := m.Run(context.Background(), nil, envOf(map[string]string{"DB_MAX_CONNECTIONS": "abc", "HTTP_ADDR": "127.0.0.1:0"}), io.Discard, &logs)
	if err == nil || !strings.Contains(err.Error(), `DB_MAX_CONNECTIONS="abc": must be a positive integer`) {
		t.Fatalf("Run with a bad value: err %v", err)
	}
	if m.Addr() != "" {
		t.Errorf("the service listens on %s despite the bad configuration", m.Addr())
	}
}

func TestServeFailsWhenAddressTaken(t *testing.T) {
	t.Parallel()
	first := setup(t, map[string]string{"ENABLE_PERSISTENCE": "false"})
	m := NewMain()
	err := m.Run(context.Background(), nil, envOf(map[string]string{"HTTP_ADDR": first.addr, "ENABLE_PERSISTENCE": "false"}), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") {
		t.Fatalf("Run on a taken address: err %v, want one naming HTTP_ADDR", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close after a failed start: %v", err)
	}
}

func TestPprofListener(t *testing.T) {
	t.Parallel()
	// Both listeners on port 0: the OS picks two free ports.
	b := setup(t, map[string]string{"ENABLE_PERSISTENCE": "false", "PPROF_ADDR": "127.0.0.1:0"})
	logs := b.logs.String()
	i := strings.Index(logs, "pprof listening on ")
	if i < 0 {
		t.Fatalf("no pprof log line:\n%s", logs)
	}
	addr := strings.Fields(logs[i+len("pprof listening on "):])[0]
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatalf("GET pprof: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pprof answered %d", resp.StatusCode)
	}
	// pprof is not on the API listener.
	resp, err = http.Get(b.url + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("pprof is served on the API address")
	}
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	env := map[string]string{"DATABASE_URL": dbURL}

	out, err := runCLI(t, env, nil, "migrate", "status")
	if err != nil {
		t.Fatalf("migrate status: %v", err)
	}
	if !strings.Contains(out, "00001_init.sql") || !strings.Contains(out, "no") {
		t.Fatalf("migrate status on an empty database:\n%s", out)
	}

	out, err = runCLI(t, env, nil, "migrate")
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	var version int64
	if _, err := fmt.Sscanf(out, "database schema at version %d", &version); err != nil || version < 1 {
		t.Fatalf("migrate output: %q", out)
	}
	// Applying again changes nothing.
	if out, err = runCLI(t, env, nil, "migrate", "up", "--json"); err != nil || !strings.Contains(out, fmt.Sprintf(`"version": %d`, version)) {
		t.Fatalf("migrate up --json again: %q, %v; want version %d", out, err, version)
	}

	out, err = runCLI(t, env, nil, "migrate", "status", "--json")
	if err != nil {
		t.Fatalf("migrate status --json: %v", err)
	}
	var st struct {
		Migrations []migrationJSON `json:"migrations"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("migrate status --json is not JSON: %v\n%s", err, out)
	}
	if len(st.Migrations) == 0 {
		t.Fatal("no migrations listed")
	}
	for _, m := range st.Migrations {
		if !m.Applied || m.AppliedAt == nil {
			t.Errorf("migration %d %s not applied after migrate", m.Version, m.Name)
		}
	}
	if last := st.Migrations[len(st.Migrations)-1].Version; last != version {
		t.Errorf("migrate reported version %d; the newest migration is %d", version, last)
	}

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tables int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'
		AND tablename IN ('sagas', 'saga_steps', 'saga_compensations', 'saga_checkpoints', 'saga_events')`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 5 {
		t.Fatalf("%d of the 5 tables exist after migrate", tables)
	}

	if _, err := runCLI(t, env, nil, "migrate", "sideways"); err == nil || exitCode(err) != 2 {
		t.Errorf("migrate sideways: err %v, want a usage error", err)
	}
	if _, err := runCLI(t, map[string]string{"DATABASE_URL": "postgres://tracseq@127.0.0.1:1/x?connect_timeout=2"}, nil, "migrate"); err == nil {
		t.Errorf("migrate against an unreachable database succeeded")
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args     []string
		wantOut  string // substring of stdout
		wantErr  string // substring of the error; "" for success
		exitCode int
	}{
		{[]string{"help"}, "Commands:", "", 0},
		{[]string{"-h"}, "Commands:", "", 0},
		{[]string{"version"}, "tracseq-tx ", "", 0},
		{[]string{"version", "extra"}, "", "no arguments", 2},
		{[]string{"frobnicate"}, "", `unknown command "frobnicate"`, 2},
		{[]string{"show"}, "", "exactly one saga id", 2},
		{[]string{"show", "not-a-uuid"}, "", "is not a UUID", 2},
		{[]string{"pause", "a", "b"}, "", "exactly one saga id", 2},
		{[]string{"list", "--limit", "x"}, "", "invalid value", 2},
		{[]string{"list", "--created-after", "yesterday"}, "", "neither an RFC 3339 time", 2},
		{[]string{"submit"}, "", "one definition file", 2},
		{[]string{"submit", "/nonexistent/def.json"}, "", "read definition", 1},
		{[]string{"serve", "extra"}, "", "takes no arguments", 2},
		{[]string{"list", "--url", "http://127.0.0.1:1"}, "", "connection refused", 1},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			t.Parallel()
			out, err := runCLI(t, nil, nil, tt.args...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("%v: %v", tt.args, err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%v: err %v, want one containing %q", tt.args, err, tt.wantErr)
				}
				if got := exitCode(err); got != tt.exitCode {
					t.Errorf("%v: exit code %d, want %d", tt.args, got, tt.exitCode)
				}
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("%v: output %q lacks %q", tt.args, out, tt.wantOut)
			}
		})
	}
}

func TestReadDefinitionRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	m := &Main{Stdin: strings.NewReader(`{"name": "x", "stepz": []}`)}
	_, err := m.readDefinition("-")
	if err == nil || !strings.Contains(err.Error(), "stepz") {
		t.Fatalf("readDefinition: err %v, want one naming the unknown field", err)
	}
	m = &Main{Stdin: strings.NewReader(`{"name": "x", "steps": []} {}`)}
	if _, err := m.readDefinition("-"); err == nil || !strings.Contains(err.Error(), "single JSON value") {
		t.Fatalf("readDefinition of two values: err %v", err)
	}
	// Every unknown field, with its path and a suggestion.
	m = &Main{Stdin: strings.NewReader(`{"nmae": "x", "steps": [{"name": "s", "compensaton": {}, "retyr": {}}]}`)}
	_, err = m.readDefinition("-")
	for _, want := range []string{`nmae: unknown field "nmae" (did you mean "name"?)`,
		`steps[0].compensaton: unknown field "compensaton" (did you mean "compensation"?)`,
		`steps[0].retyr: unknown field "retyr" (did you mean "retry"?)`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("readDefinition: err %v, want it to contain %q", err, want)
		}
	}
}

func TestParseTimeOrAgo(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"2025-02-28T10:00:00Z", time.Date(2025, 2, 28, 10, 0, 0, 0, time.UTC), false},
		{"2025-02-28T10:00:00+02:00", time.Date(2025, 2, 28, 8, 0, 0, 0, time.UTC), false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"0s", now, false},
		{"-1h", time.Time{}, true},
		{"yesterday", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := parseTimeOrAgo(tt.in, now)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseTimeOrAgo(%q): err %v", tt.in, err)
			continue
		}
		if !tt.wantErr && !got.Equal(tt.want) {
			t.Errorf("parseTimeOrAgo(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	if got := exitCode(usagef("x")); got != 2 {
		t.Errorf("usage error: %d", got)
	}
	if got := exitCode(fmt.Errorf("wrapped: %w", usagef("x"))); got != 2 {
		t.Errorf("wrapped usage error: %d", got)
	}
	if got := exitCode(errors.New("boom")); got != 1 {
		t.Errorf("other error: %d", got)
	}
}
