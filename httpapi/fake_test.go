package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// fakeCoordinator is a Coordinator of function fields. A method whose field
// is nil answers an error; every call except InstanceID is recorded, so a
// test can assert that bad input reached nothing.
type fakeCoordinator struct {
	submit     func(ctx context.Context, def saga.Definition) (*saga.Saga, bool, error)
	get        func(ctx context.Context, id saga.ID) (*saga.Saga, error)
	list       func(ctx context.Context, f saga.Filter) (saga.Page, error)
	events     func(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error)
	wait       func(ctx context.Context, id saga.ID) (*saga.Saga, error)
	control    func(ctx context.Context, id saga.ID, a saga.ControlAction) (*saga.Saga, error)
	statistics func(ctx context.Context, window time.Duration) (saga.Stats, error)
	cleanup    func(ctx context.Context) (int, error)
	hold       func(ctx context.Context, id saga.ID, hold bool) (*saga.Saga, error)
	health     func(ctx context.Context) saga.Health
	instanceID string

	mu    sync.Mutex
	calls []string
}

var _ Coordinator = (*fakeCoordinator)(nil)

var errNotConfigured = errors.New("fake coordinator: method not configured")

func (f *fakeCoordinator) record(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
}

// Calls returns the names of the methods called so far.
func (f *fakeCoordinator) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeCoordinator) Submit(ctx context.Context, def saga.Definition) (*saga.Saga, bool, error) {
	f.record("Submit")
	if f.submit == nil {
		return nil, false, errNotConfigured
	}
	return f.submit(ctx, def)
}

func (f *fakeCoordinator) Get(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	f.record("Get")
	if f.get == nil {
		return nil, errNotConfigured
	}
	return f.get(ctx, id)
}

func (f *fakeCoordinator) List(ctx context.Context, fl saga.Filter) (saga.Page, error) {
	f.record("List")
	if f.list == nil {
		return saga.Page{}, errNotConfigured
	}
	return f.list(ctx, fl)
}

func (f *fakeCoordinator) Events(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error) {
	f.record("Events")
	if f.events == nil {
		return nil, errNotConfigured
	}
	return f.events(ctx, id, afterSeq, limit)
}

func (f *fakeCoordinator) Wait(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	f.record("Wait")
	if f.wait == nil {
		return nil, errNotConfigured
	}
	return f.wait(ctx, id)
}

func (f *fakeCoordinator) Control(ctx context.Context, id saga.ID, a saga.ControlAction) (*saga.Saga, error) {
	f.record("Control")
	if f.control == nil {
		return nil, errNotConfigured
	}
	return f.control(ctx, id, a)
}

func (f *fakeCoordinator) Statistics(ctx context.Context, window time.Duration) (saga.Stats, error) {
	f.record("Statistics")
	if f.statistics == nil {
		return saga.Stats{}, errNotConfigured
	}
	return f.statistics(ctx, window)
}

func (f *fakeCoordinator) Cleanup(ctx context.Context) (int, error) {
	f.record("Cleanup")
	if f.cleanup == nil {
		return 0, errNotConfigured
	}
	return f.cleanup(ctx)
}

func (f *fakeCoordinator) SetLegalHold(ctx context.Context, id saga.ID, hold bool) (*saga.Saga, error) {
	f.record("SetLegalHold")
	if f.hold == nil {
		return nil, errNotConfigured
	}
	return f.hold(ctx, id, hold)
}

func (f *fakeCoordinator) Health(ctx context.Context) saga.Health {
	f.record("Health")
	if f.health == nil {
		return saga.Health{Error: errNotConfigured.Error(), Durable: true, Mode: "durable"}
	}
	return f.health(ctx)
}

func (f *fakeCoordinator) InstanceID() string { return f.instanceID }

// logBuffer collects JSON log lines safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// entries returns the log lines decoded.
func (b *logBuffer) entries(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(b.buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// waitForLog polls the log until an entry satisfies match.
func (b *logBuffer) waitForLog(t *testing.T, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, e := range b.entries(t) {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching log entry; log:\n%s", b.buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testBundle is what setup gives a test.
type testBundle struct {
	fake   *fakeCoordinator
	server *Server
	http   *httptest.Server
	client *Client
	logs   *logBuffer
}

// setup starts a real HTTP server on the fake coordinator. mutate adjusts
// the configuration before the server is built.
func setup(t *testing.T, fake *fakeCoordinator, mutate ...func(*Config)) *testBundle {
	t.Helper()
	if fake == nil {
		fake = &fakeCoordinator{}
	}
	if fake.instanceID == "" {
		fake.instanceID = "test-instance"
	}
	logs := &logBuffer{}
	cfg := Config{
		Coordinator: fake,
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:     "test",
	}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	token := ""
	if len(cfg.Tokens) > 0 {
		_, token, _ = ParseToken(cfg.Tokens[0], 1)
	}
	return &testBundle{
		fake:   fake,
		server: srv,
		http:   hs,
		client: &Client{BaseURL: hs.URL, Token: token, HTTP: hs.Client()},
		logs:   logs,
	}
}

// do sends a raw request and returns the answer with its body read.
func (b *testBundle) do(t *testing.T, method, path, contentType string, body []byte, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.http.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := b.http.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(resp.Body); err != nil {
		t.Fatalf("read answer of %s %s: %v", method, path, err)
	}
	return resp, out.Bytes()
}

// decodeProblem decodes a problem answer, checking its media type.
func decodeProblem(t *testing.T, resp *http.Response, body []byte) *Problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != contentTypeProblem {
		t.Fatalf("Content-Type = %q, want %q; body %s", ct, contentTypeProblem, body)
	}
	var p Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", body, err)
	}
	if p.Status != resp.StatusCode {
		t.Errorf("problem status %d, HTTP status %d", p.Status, resp.StatusCode)
	}
	if p.Title == "" || !strings.HasPrefix(p.Type, ProblemTypePrefix) {
		t.Errorf("problem lacks a title or a type of ours: %+v", p)
	}
	if p.RequestID == "" || p.RequestID != resp.Header.Get("X-Request-Id") {
		t.Errorf("problem request_id %q, header X-Request-Id %q", p.RequestID, resp.Header.Get("X-Request-Id"))
	}
	return &p
}

// Fixed values of the sample data.
var (
	sampleID    = mustID("0190f1c2-7a3b-7c4d-8e5f-0123456789ab")
	sampleTxID  = mustID("0190f1c2-7a3b-7c4d-8e5f-0000000000aa")
	sampleUser  = mustID("0190f1c2-7a3b-7c4d-8e5f-0000000000bb")
	sampleZone  = time.FixedZone("UTC+2", 2*60*60)
	sampleStart = time.Date(2026, 5, 1, 14, 0, 0, 123456000, sampleZone)
)

func mustID(s string) saga.ID {
	id, err := saga.ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func ptr[T any](v T) *T { return &v }

// sampleSaga returns a saga of two steps, the first compensated, with
// times in a zone other than UTC.
func sampleSaga(status saga.SagaStatus) *saga.Saga {
	t0 := sampleStart
	t1 := t0.Add(time.Second)
	t2 := t0.Add(2 * time.Second)
	return &saga.Saga{
		ID:             sampleID,
		Name:           "order",
		Status:         status,
		TransactionID:  sampleTxID,
		UserID:         ptr(sampleUser),
		Context:        json.RawMessage(`{"order":42}`),
		IdempotencyKey: "order-42",
		CompletedSteps: 1,
		TotalSteps:     2,
		Error:          "",
		Deadline:       ptr(t0.Add(time.Hour)),
		OwnerID:        "instance-a",
		Durable:        true,
		CreatedAt:      t0,
		UpdatedAt:      t2,
		StartedAt:      ptr(t0),
		Steps: []saga.Step{
			{
				Index: 0, Name: "reserve", Status: saga.StepStatusCompleted, Attempts: 1,
				Input: json.RawMessage(`{"sku":"A"}`), Output: json.RawMessage(`{"reservation":"r1"}`),
				StartedAt: ptr(t0), CompletedAt: ptr(t1),
				Compensation: &saga.Compensation{
					StepIndex: 0, Status: saga.CompensationStatusCompleted, Attempts: 2,
					Output: json.RawMessage(`{"released":true}`), StartedAt: ptr(t1), CompletedAt: ptr(t2),
				},
			},
			{Index: 1, Name: "charge", Status: saga.StepStatusPending},
		},
	}
}

// validDefinition is a definition that passes validation.
const validDefinition = `{"name":"order","steps":[{"name":"reserve",` +
	`"action":{"method":"POST","url":"http://inventory.local/reserve","body":{"sku":"A"}},` +
	`"compensation":{"method":"POST","url":"http://inventory.local/release"}}]}`
