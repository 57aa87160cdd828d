package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/postgres"
)

// storeKind opens a fresh, empty store for a test.
type storeKind struct {
	name string
	open func(t testing.TB) saga.Store
}

// storeKinds are the stores every scenario runs against.
var storeKinds = []storeKind{
	{"memory", func(testing.TB) saga.Store { return memory.New(memory.Config{}) }},
	{"postgres", openPostgres},
}

// openPostgres opens a migrated PostgreSQL store on a fresh database.
func openPostgres(t testing.TB) saga.Store {
	t.Helper()
	ctx := context.Background()
	st, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatalf("open postgres store: %v", err)
	}
	t.Cleanup(st.Close)
	if _, err := postgres.Migrate(ctx, st.Pool(), nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

// eachStore runs fn as a parallel subtest per store kind.
func eachStore(t *testing.T, fn func(t *testing.T, kind storeKind)) {
	t.Helper()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			fn(t, kind)
		})
	}
}

// stubCall is one call a stub participant received.
type stubCall struct {
	Kind    string // action or compensation
	Step    string
	Attempt int
	Header  http.Header
	Body    struct {
		SagaID        string                     `json:"saga_id"`
		TransactionID string                     `json:"transaction_id"`
		Step          string                     `json:"step"`
		StepIndex     int                        `json:"step_index"`
		Kind          string                     `json:"kind"`
		Attempt       int                        `json:"attempt"`
		Input         json.RawMessage            `json:"input"`
		Context       json.RawMessage            `json:"context"`
		Outputs       map[string]json.RawMessage `json:"outputs"`
	}
}

// handlerFunc answers the nth call (1-based) of one endpoint.
type handlerFunc func(n int, w http.ResponseWriter, r *http.Request)

// stub is a participant service whose endpoints /{kind}/{step} tests script.
// Unscripted endpoints answer 200 {"done": "<kind> <step>"}.
type stub struct {
	server *httptest.Server
	mu     sync.Mutex
	calls  []stubCall
	counts map[string]int
	script map[string]handlerFunc
}

func newStub(t testing.TB) *stub {
	t.Helper()
	s := &stub{counts: map[string]int{}, script: map[string]handlerFunc{}}
	s.server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.server.Close)
	return s
}

func (s *stub) serve(w http.ResponseWriter, r *http.Request) {
	kind, step, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	var c stubCall
	c.Kind, c.Step, c.Header = kind, step, r.Header.Clone()
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &c.Body)
	c.Attempt = c.Body.Attempt
	key := kind + "/" + step
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.counts[key]++
	n := s.counts[key]
	h := s.script[key]
	s.mu.Unlock()
	if h != nil {
		h(n, w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"done":%q}`, kind+" "+step)
}

// on scripts the endpoint of kind ("action" or "compensation") and step.
func (s *stub) on(kind, step string, h handlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script[kind+"/"+step] = h
}

// url returns the endpoint of kind and step.
func (s *stub) url(kind, step string) string { return s.server.URL + "/" + kind + "/" + step }

// sequence returns the calls received so far as "kind step" strings.
func (s *stub) sequence() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.calls))
	for i, c := range s.calls {
		out[i] = c.Kind + " " + c.Step
	}
	return out
}

func (s *stub) received() []stubCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func (s *stub) count(kind, step string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[kind+"/"+step]
}

// status answers with a status code and a small body.
func status(code int) handlerFunc {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"status":%d}`, code)
	}
}

// failFirst answers code to the first n calls, then 200.
func failFirst(n, code int) handlerFunc {
	return func(i int, w http.ResponseWriter, _ *http.Request) {
		if i <= n {
			w.WriteHeader(code)
			return
		}
		fmt.Fprint(w, `{"ok":true}`)
	}
}

// gate holds calls until it is opened.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate(t testing.TB) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// handler waits for the gate (or the caller giving up), then answers 200.
func (g *gate) handler() handlerFunc {
	return func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-g.ch:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, `{"gated":true}`)
	}
}

// hang answers only when the caller gives up.
func hang(_ int, _ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// bundle is what setup gives a test.
type bundle struct {
	store saga.Store
	coord *engine.Coordinator
	stub  *stub
}

// testLogger logs to t until the test ends.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testConfig is the engine configuration of the tests: quick claims.
func testConfig(t testing.TB, instance string) engine.Config {
	return engine.Config{
		InstanceID:    instance,
		LeaseDuration: 5 * time.Second,
		ClaimInterval: 50 * time.Millisecond,
		Logger:        testLogger(t),
		Random:        func() float64 { return 0.5 },
	}
}

// setup opens a store of kind and starts a coordinator on it, stopped when
// the test ends. tweak may change the configuration.
func setup(t *testing.T, kind storeKind, tweak func(*engine.Config)) *bundle {
	t.Helper()
	b := &bundle{store: kind.open(t), stub: newStub(t)}
	b.coord = startCoordinator(t, b.store, "engine-a", tweak)
	return b
}

func startCoordinator(t testing.TB, store saga.Store, instance string, tweak func(*engine.Config)) *engine.Coordinator {
	t.Helper()
	cfg := testConfig(t, instance)
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := engine.New(store, cfg)
	if err != nil {
		t.Fatalf("new coordinator: %v", err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("start coordinator: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("stop coordinator: %v", err)
		}
	})
	return c
}

// quick is a retry policy with short backoffs.
func quick(maxAttempts int) *saga.RetryPolicy {
	return &saga.RetryPolicy{MaxAttempts: maxAttempts, InitialBackoffMs: 2, MaxBackoffMs: 10, Multiplier: 2}
}

// definition builds a saga whose steps call the stub: step name → action
// /action/name and compensation /compensation/name.
func (b *bundle) definition(name string, steps ...string) saga.Definition {
	def := saga.Definition{Name: name, Context: json.RawMessage(`{"order":"o-17"}`)}
	for _, s := range steps {
		def.Steps = append(def.Steps, saga.StepDefinition{
			Name:         s,
			Action:       saga.Request{Method: http.MethodPost, URL: b.stub.url("action", s), Body: json.RawMessage(fmt.Sprintf(`{"item":%q}`, s))},
			Compensation: &saga.Request{Method: http.MethodPost, URL: b.stub.url("compensation", s)},
			Retry:        quick(3),
		})
	}
	return def
}

// submit submits def and fails the test on error.
func (b *bundle) submit(t testing.TB, def saga.Definition) *saga.Saga {
	t.Helper()
	s, existed, err := b.coord.Submit(context.Background(), def)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if existed {
		t.Fatalf("submit: saga existed")
	}
	return s
}

// wait waits for the saga to end and returns it.
func wait(t testing.TB, c *engine.Coordinator, id saga.ID) *saga.Saga {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := c.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if !s.Status.Terminal() {
		t.Fatalf("saga %s still %s after 20 s", id, s.Status)
	}
	// Wait may answer from the runner's copy instead of reading the saga
	// back: that copy must be the stored saga, field for field.
	stored, err := c.Get(ctx, id)
	if err != nil {
		t.Fatalf("get saga after wait: %v", err)
	}
	if got, want := normalized(t, s), normalized(t, stored); got != want {
		t.Fatalf("Wait answered a saga that differs from the stored one:\nwait:   %s\nstored: %s", got, want)
	}
	return s
}

// normalized renders a saga as canonical JSON: raw JSON fields are
// re-encoded, so PostgreSQL's jsonb formatting does not count as a difference.
func normalized(t testing.TB, s *saga.Saga) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("marshal saga: %v", err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("unmarshal saga: %v", err)
	}
	b, err = json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal saga: %v", err)
	}
	return string(b)
}

// eventually polls cond until it holds, failing the test after 20 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitStatus polls the saga until it has status st.
func waitStatus(t testing.TB, c *engine.Coordinator, id saga.ID, st saga.SagaStatus) *saga.Saga {
	t.Helper()
	var s *saga.Saga
	eventually(t, fmt.Sprintf("saga status %s", st), func() bool {
		var err error
		s, err = c.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("get saga: %v", err)
		}
		return s.Status == st
	})
	return s
}

// eventTypes returns the saga's event types in order, as
// "Type" or "Type@index" for events about a step.
func eventTypes(t testing.TB, c *engine.Coordinator, id saga.ID) []string {
	t.Helper()
	evs, err := c.Events(context.Background(), id, 0, 0)
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	out := make([]string, 0, len(evs))
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Errorf("event %d has seq %d", i, e.Seq)
		}
		switch e.Type {
		case saga.EventControlRequested, saga.EventOperatorRequested, saga.EventOperatorRequestSuperseded,
			saga.EventOperatorRequestCarriedOut:
			continue // written by the store on a request, not by the engine
		}
		s := string(e.Type)
		if e.StepIndex != nil {
			s += fmt.Sprintf("@%d", *e.StepIndex)
		}
		out = append(out, s)
	}
	return out
}

func assertEqual[T comparable](t testing.TB, what string, got, want []T) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %v\n want %v", what, got, want)
	}
}

// assertSteps checks the step statuses and compensation statuses ("" for
// none) of s.
func assertSteps(t testing.TB, s *saga.Saga, steps []saga.StepStatus, comps []saga.CompensationStatus) {
	t.Helper()
	var gotSteps []saga.StepStatus
	var gotComps []saga.CompensationStatus
	for _, st := range s.Steps {
		gotSteps = append(gotSteps, st.Status)
		if st.Compensation == nil {
			gotComps = append(gotComps, "")
		} else {
			gotComps = append(gotComps, st.Compensation.Status)
		}
	}
	assertEqual(t, "step statuses", gotSteps, steps)
	assertEqual(t, "compensation statuses", gotComps, comps)
}

// ev is shorthand for "Type@index".
func ev(t saga.EventType, index int) string { return fmt.Sprintf("%s@%d", t, index) }

// jsonEqual reports whether raw holds the same JSON value as want
// (PostgreSQL's jsonb does not keep the formatting).
func jsonEqual(raw json.RawMessage, want string) bool {
	var a, b any
	if json.Unmarshal(raw, &a) != nil || json.Unmarshal([]byte(want), &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}
