package engine_test

import (
	"context"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/participant"
)

// countingStore counts the writes of a saga.Store.
type countingStore struct {
	saga.Store
	creates atomic.Int64
	applies atomic.Int64
	// renew, when set, replaces RenewLeases.
	renew func(ctx context.Context, owner string, leases map[saga.ID]int64, d time.Duration) ([]saga.ID, error)
}

func (s *countingStore) CreateSaga(ctx context.Context, c saga.NewSaga) (*saga.Saga, bool, error) {
	s.creates.Add(1)
	return s.Store.CreateSaga(ctx, c)
}

func (s *countingStore) Apply(ctx context.Context, t saga.Transition) (saga.Applied, error) {
	s.applies.Add(1)
	return s.Store.Apply(ctx, t)
}

func (s *countingStore) RenewLeases(ctx context.Context, owner string, leases map[saga.ID]int64, d time.Duration) ([]saga.ID, error) {
	if s.renew != nil {
		return s.renew(ctx, owner, leases, d)
	}
	return s.Store.RenewLeases(ctx, owner, leases, d)
}

// A two-step saga that succeeds costs exactly three writes and one
// checkpoint, after its first step, holding the context and that output
// (the write that ends the saga carries none).
func TestTwoStepSagaCostsThreeWrites(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		store := &countingStore{Store: kind.open(t)}
		b := &bundle{store: store, stub: newStub(t)}
		b.coord = startCoordinator(t, store, "engine-a", nil)
		s := wait(t, b.coord, b.submit(t, b.definition("cheap", "a", "b")).ID)
		if s.Status != saga.SagaStatusCompleted {
			t.Fatalf("status = %s", s.Status)
		}
		if c, a := store.creates.Load(), store.applies.Load(); c != 1 || a != 2 {
			t.Errorf("writes: %d creates + %d applies; want 1 + 2", c, a)
		}
		cp, err := store.LatestCheckpoint(context.Background(), s.ID)
		if err != nil || cp == nil {
			t.Fatalf("latest checkpoint = %v, %v", cp, err)
		}
		if cp.StepIndex != 0 || !jsonEqual(cp.Context, `{"context":{"order":"o-17"},"outputs":{"a":{"done":"action a"}}}`) {
			t.Errorf("checkpoint = step %d, %s", cp.StepIndex, cp.Context)
		}
	})
}

// A saga submitted while every worker slot is taken waits Created; a
// cancel requested then is carried out before any of its steps runs.
func TestCreatedSagaCancelledBeforeItRuns(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, func(cfg *engine.Config) { cfg.MaxConcurrentSagas = 1 })
		g := newGate(t)
		b.stub.on("action", "first", g.handler())
		first := b.submit(t, b.definition("first", "first"))
		eventually(t, "the first saga's call", func() bool { return b.stub.count("action", "first") == 1 })
		queued := b.submit(t, b.definition("queued", "second"))
		if queued.Status != saga.SagaStatusCreated || queued.OwnerID != "" {
			t.Fatalf("queued saga: %s owned by %q; want Created, unowned", queued.Status, queued.OwnerID)
		}
		if _, err := b.coord.Control(context.Background(), queued.ID, saga.ControlCancel); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		g.open()
		if s := wait(t, b.coord, first.ID); s.Status != saga.SagaStatusCompleted {
			t.Errorf("first saga %s", s.Status)
		}
		s := wait(t, b.coord, queued.ID)
		if s.Status != saga.SagaStatusCancelled {
			t.Fatalf("queued saga %s; want Cancelled", s.Status)
		}
		assertSteps(t, s, []saga.StepStatus{skipped}, []saga.CompensationStatus{""})
		if n := b.stub.count("action", "second"); n != 0 {
			t.Errorf("the cancelled saga's step ran %d times", n)
		}
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sLeaseTaken, ev(saga.EventStepSkipped, 0), string(saga.EventSagaCancelled),
		})
	})
}

// A saga submitted while the slots are taken runs once one frees.
func TestQueuedSagaRunsWhenSlotFrees(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, func(cfg *engine.Config) {
			cfg.MaxConcurrentSagas = 2
			cfg.ClaimInterval = time.Hour // only the wake-up may claim
		})
		var ids []saga.ID
		for range 6 {
			ids = append(ids, b.submit(t, b.definition("queue", "a", "b")).ID)
		}
		for _, id := range ids {
			if s := wait(t, b.coord, id); s.Status != saga.SagaStatusCompleted {
				t.Errorf("saga %s: %s", id, s.Status)
			}
		}
		if n := b.stub.count("action", "b"); n != 6 {
			t.Errorf("step b ran %d times; want 6", n)
		}
	})
}

// recordingObserver counts the measurements of the engine.
type recordingObserver struct {
	mu        sync.Mutex
	started   int
	ended     map[saga.SagaStatus]int
	attempts  int
	retried   int
	maxFlight int
	flight    int
	leaseLost int
}

func (o *recordingObserver) SagaStarted(string) { o.mu.Lock(); o.started++; o.mu.Unlock() }
func (o *recordingObserver) SagaEnded(_ string, st saga.SagaStatus, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended == nil {
		o.ended = map[saga.SagaStatus]int{}
	}
	o.ended[st]++
}
func (o *recordingObserver) StepAttempt(participant.Kind, participant.Outcome, time.Duration) {
	o.mu.Lock()
	o.attempts++
	o.mu.Unlock()
}
func (o *recordingObserver) StepRetried(participant.Kind) { o.mu.Lock(); o.retried++; o.mu.Unlock() }
func (o *recordingObserver) InFlight(n int) {
	o.mu.Lock()
	o.maxFlight = max(o.maxFlight, n)
	o.flight = n
	o.mu.Unlock()
}
func (o *recordingObserver) LeaseLost() { o.mu.Lock(); o.leaseLost++; o.mu.Unlock() }

// invokerFunc adapts a function to engine.Invoker.
type invokerFunc func(ctx context.Context, call participant.Call) participant.Result

func (f invokerFunc) Invoke(ctx context.Context, call participant.Call) participant.Result {
	return f(ctx, call)
}

// A runner whose lease is not renewed stops at once and makes no further
// call.
func TestLeaseLostStopsRunner(t *testing.T) {
	t.Parallel()
	store := &countingStore{Store: memory.New(memory.Config{})}
	store.renew = func(context.Context, string, map[saga.ID]int64, time.Duration) ([]saga.ID, error) {
		return nil, nil // every lease lost
	}
	obs := &recordingObserver{}
	var calls atomic.Int64
	inv := invokerFunc(func(ctx context.Context, _ participant.Call) participant.Result {
		calls.Add(1)
		<-ctx.Done() // a long call, abandoned when the lease is lost
		return participant.Result{Outcome: participant.OutcomeTransient, Uncertain: true, Error: ctx.Err().Error()}
	})
	c := startCoordinator(t, store, "engine-a", func(cfg *engine.Config) {
		cfg.LeaseDuration = 300 * time.Millisecond
		cfg.ClaimInterval = time.Hour // no claim may take the saga back
		cfg.Invoker = inv
		cfg.Observer = obs
	})
	b := &bundle{store: store, coord: c, stub: newStub(t)}
	s := b.submit(t, b.definition("lost", "a", "b"))
	eventually(t, "the lease loss", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.leaseLost == 1
	})
	eventually(t, "the runner gone", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.maxFlight == 1 && obs.flight == 0 && obs.attempts == 1
	})
	if n := calls.Load(); n != 1 {
		t.Errorf("%d calls; want 1", n)
	}
	if n := store.applies.Load(); n != 0 {
		t.Errorf("%d writes after the lease was lost; want 0", n)
	}
	got, err := c.Get(context.Background(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != saga.SagaStatusExecuting || got.Steps[0].Status != saga.StepStatusExecuting {
		t.Errorf("saga %s, step 0 %s; want both left Executing", got.Status, got.Steps[0].Status)
	}
}

// Stop leaves no goroutine behind.
func TestStopLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	store := memory.New(memory.Config{})
	obs := &recordingObserver{}
	inv := invokerFunc(func(_ context.Context, call participant.Call) participant.Result {
		if call.StepName == "b" && call.Kind == participant.KindAction && call.Attempt == 1 {
			return participant.Result{Outcome: participant.OutcomeTransient, StatusCode: 503, Error: "HTTP 503"}
		}
		return participant.Result{Outcome: participant.OutcomeSuccess, StatusCode: 200, Output: []byte(`{}`)}
	})
	c, err := engine.New(store, engine.Config{InstanceID: "leaks", Invoker: inv, Observer: obs, ClaimInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	def := saga.Definition{Name: "g", Steps: []saga.StepDefinition{
		{Name: "a", Action: saga.Request{Method: "POST", URL: "http://p.test/a"}},
		{Name: "b", Action: saga.Request{Method: "POST", URL: "http://p.test/b"}, Retry: quick(3)},
	}}
	var ids []saga.ID
	for range 20 {
		s, _, err := c.Submit(context.Background(), def)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	for _, id := range ids {
		if s := wait(t, c, id); s.Status != saga.SagaStatusCompleted {
			t.Fatalf("saga %s", s.Status)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.started != 20 || obs.ended[saga.SagaStatusCompleted] != 20 || obs.retried != 20 || obs.attempts != 60 {
		t.Errorf("observer: started %d, ended %v, retried %d, attempts %d", obs.started, obs.ended, obs.retried, obs.attempts)
	}
}

// A retry wait longer than half the lease releases the saga; the claim
// loop takes it again when it is due.
func TestLongBackoffReleasesSaga(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, func(cfg *engine.Config) { cfg.LeaseDuration = 400 * time.Millisecond })
		b.stub.on("action", "a", func(n int, w http.ResponseWriter, _ *http.Request) {
			if n == 1 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			_, _ = w.Write([]byte(`{}`))
		})
		s := b.submit(t, b.definition("patient", "a"))
		released := waitStatus(t, b.coord, s.ID, saga.SagaStatusExecuting)
		eventually(t, "the release", func() bool {
			var err error
			released, err = b.coord.Get(context.Background(), s.ID)
			if err != nil {
				t.Fatal(err)
			}
			return released.Steps[0].Status == saga.StepStatusRetrying && released.OwnerID == ""
		})
		if released.NextRunAt == nil || released.NextRunAt.Sub(released.UpdatedAt) < 900*time.Millisecond {
			t.Errorf("released until %v (updated %v); want about 1 s later (Retry-After)", released.NextRunAt, released.UpdatedAt)
		}
		s = wait(t, b.coord, s.ID)
		if s.Status != saga.SagaStatusCompleted || s.Steps[0].Attempts != 2 {
			t.Fatalf("status %s, attempts %d", s.Status, s.Steps[0].Attempts)
		}
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted, ev(saga.EventStepStarted, 0), ev(saga.EventStepRetrying, 0),
			sLeaseTaken, ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0), sCompleted,
		})
	})
}

// Pause during a retry wait takes effect at once; a paused saga whose
// deadline passes times out.
func TestPausedSagaTimesOut(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "b", status(http.StatusServiceUnavailable))
		def := b.definition("paused-late", "a", "b")
		def.TimeoutMs = 600
		def.Steps[1].Retry = &saga.RetryPolicy{MaxAttempts: 5, InitialBackoffMs: 2000, MaxBackoffMs: 2000}
		s := b.submit(t, def)
		eventually(t, "step b retrying", func() bool { return b.stub.count("action", "b") == 1 })
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlPause); err != nil {
			t.Fatalf("pause: %v", err)
		}
		paused := waitStatus(t, b.coord, s.ID, saga.SagaStatusPaused)
		if paused.NextRunAt == nil || !paused.NextRunAt.Equal(*paused.Deadline) {
			t.Errorf("paused saga wakes at %v; want its deadline %v", paused.NextRunAt, paused.Deadline)
		}
		s = wait(t, b.coord, s.ID)
		if s.Status != saga.SagaStatusTimedOut {
			t.Fatalf("status %s; want TimedOut", s.Status)
		}
		assertSteps(t, s, []saga.StepStatus{completed, failed}, []saga.CompensationStatus{cDone, cDone})
		assertEqual(t, "calls", b.stub.sequence(), []string{"action a", "action b", "compensation b", "compensation a"})
	})
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	store := memory.New(memory.Config{})
	tests := []struct {
		name  string
		cfg   engine.Config
		field string
	}{
		{"no instance", engine.Config{}, "InstanceID (INSTANCE_ID)"},
		{"short lease", engine.Config{InstanceID: "i", LeaseDuration: time.Millisecond}, "LeaseDuration (LEASE_SECONDS)"},
		{"negative slots", engine.Config{InstanceID: "i", MaxConcurrentSagas: -1}, "MaxConcurrentSagas (MAX_CONCURRENT_SAGAS)"},
		{"negative cleanup", engine.Config{InstanceID: "i", CleanupAfter: -time.Hour}, "CleanupAfter (CLEANUP_AFTER_HOURS)"},
		{"bad host", engine.Config{InstanceID: "i", AllowedHosts: []string{"http://x/"}}, "AllowedHosts[0] (PARTICIPANT_ALLOWED_HOSTS)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := engine.New(store, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("New error = %v; want it to name %s", err, tt.field)
			}
		})
	}
	if _, err := engine.New(nil, engine.Config{InstanceID: "i"}); err == nil {
		t.Error("New accepted a nil store")
	}
	c, err := engine.New(store, engine.Config{InstanceID: "i"})
	if err != nil || c.InstanceID() != "i" {
		t.Fatalf("New = %v, %v", c, err)
	}
}

func TestControlRefusesUnknownAction(t *testing.T) {
	t.Parallel()
	c, err := engine.New(memory.New(memory.Config{}), engine.Config{InstanceID: "i"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Control(context.Background(), saga.NewID(), "restart")
	var se *saga.Error
	if !errors.As(err, &se) || se.Code != saga.ECodeInvalid || se.Field != "action" {
		t.Errorf("Control(restart) = %v", err)
	}
	if _, err := c.Control(context.Background(), saga.NewID(), saga.ControlPause); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("Control on an unknown saga = %v; want ErrNotFound", err)
	}
}
