package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
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

// Found by the simulator (package sim): an operator request that arrives
// during a call makes the runner write a probe once the call is back, to
// learn of it. The probe wrote the fields every transition writes as
// zero: completed_steps 0, no error, no compensate_to.
func TestProbeKeepsTheSagaRow(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		held := make(chan struct{})
		release := newGate(t)
		b.stub.on("action", "b", func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				close(held)
			}
			select {
			case <-release.ch:
			case <-r.Context().Done():
				return
			}
			w.WriteHeader(http.StatusConflict)
		})
		s := b.submit(t, b.definition("probe", "a", "b"))
		select {
		case <-held:
		case <-time.After(20 * time.Second):
			t.Fatal("the call of step b never came")
		}
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlPause); err != nil {
			t.Fatalf("pause: %v", err)
		}
		release.open()
		end := wait(t, b.coord, s.ID)
		if end.Status != saga.SagaStatusCompensated || end.CompletedSteps != 1 || end.Error == "" {
			t.Errorf("saga ended %s with completed_steps %d and error %q, want Compensated, 1 (step a) and the refusal",
				end.Status, end.CompletedSteps, end.Error)
		}
	})
}

// poisonStore fails for good every attempt of the first transition that
// completes step 0 (a write the database keeps refusing), and only that
// one: the writes of whoever takes the saga next are new transitions.
type poisonStore struct {
	saga.Store
	mu       sync.Mutex
	poisoned saga.ID // the first event id of the poisoned transition
	refused  int
}

func (s *poisonStore) Apply(ctx context.Context, t saga.Transition) (saga.Applied, error) {
	s.mu.Lock()
	for _, e := range t.Events {
		if s.poisoned.IsZero() && e.Type == saga.EventStepCompleted && *e.StepIndex == 0 {
			s.poisoned = t.Events[0].ID
		}
	}
	if len(t.Events) > 0 && t.Events[0].ID == s.poisoned {
		s.refused++
		s.mu.Unlock()
		return saga.Applied{}, errors.New("the database refuses this write every time")
	}
	s.mu.Unlock()
	return s.Store.Apply(ctx, t)
}

// Found by the simulator: a write that fails for good was retried for as
// long as the lease lasted, and the lease renewer kept the lease alive
// meanwhile: the saga was held for ever. The retries now last as long as
// the lease the write began under; then the runner lets go, the lease
// runs out and a claim takes the saga on with a transition of its own.
func TestWriteFailingForGoodLetsTheSagaGo(t *testing.T) {
	t.Parallel()
	store := &poisonStore{Store: memory.New(memory.Config{})}
	b := &bundle{store: store, stub: newStub(t)}
	b.coord = startCoordinator(t, store, "engine-a", func(c *engine.Config) {
		// Longer than the longest backoff between retries (1 s), which
		// alone ended them before.
		c.LeaseDuration = 2 * time.Second
		c.ClaimInterval = 20 * time.Millisecond
	})
	s := b.submit(t, shortCalls(b.definition("poisoned", "a", "b")))
	end := wait(t, b.coord, s.ID)
	store.mu.Lock()
	refused := store.refused
	store.mu.Unlock()
	if end.Status != saga.SagaStatusCompleted || refused == 0 {
		t.Errorf("saga ended %s after %d refused attempts, want Completed after some", end.Status, refused)
	}
}

// pausingStore plays engine-a standing still (a long pause of its
// process) from the moment it writes the start of step 1: that write is
// answered only once engine-b has claimed the saga, and engine-a's lease
// renewer, paused too, renews nothing any more.
type pausingStore struct {
	saga.Store
	paused  atomic.Bool
	claimed chan struct{} // closed when engine-b claims a saga
	once    sync.Once
}

func (s *pausingStore) Apply(ctx context.Context, t saga.Transition) (saga.Applied, error) {
	starts := false
	for _, e := range t.Events {
		starts = starts || e.Type == saga.EventStepStarted && *e.StepIndex == 1
	}
	if !starts || t.Lease.Owner != "engine-a" {
		return s.Store.Apply(ctx, t)
	}
	s.paused.Store(true)
	a, err := s.Store.Apply(ctx, t)
	select {
	case <-s.claimed:
	case <-ctx.Done():
	}
	return a, err
}

func (s *pausingStore) RenewLeases(ctx context.Context, owner string, leases map[saga.ID]int64, d time.Duration) ([]saga.ID, error) {
	if owner == "engine-a" && s.paused.Load() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.Store.RenewLeases(ctx, owner, leases, d)
}

func (s *pausingStore) ClaimSagas(ctx context.Context, owner string, d time.Duration, n int) ([]*saga.Saga, error) {
	got, err := s.Store.ClaimSagas(ctx, owner, d, n)
	if owner == "engine-b" && len(got) > 0 {
		s.once.Do(func() { close(s.claimed) })
	}
	return got, err
}

// Found by the simulator: a runner that stood still between the write
// that started a call and the call (a pause of the process longer than
// its lease) made the call when it moved again, although another
// instance held the saga by then. A call now goes out only under a fresh
// lease; a runner whose lease may have run out writes a probe first,
// which the store refuses when the saga was taken.
func TestNoCallAfterTheLeaseRanOut(t *testing.T) {
	t.Parallel()
	store := &pausingStore{Store: memory.New(memory.Config{}), claimed: make(chan struct{})}
	b := &bundle{store: store, stub: newStub(t)}
	quickLease := func(c *engine.Config) {
		c.LeaseDuration = 300 * time.Millisecond
		c.ClaimInterval = 20 * time.Millisecond
	}
	b.coord = startCoordinator(t, store, "engine-a", quickLease)
	s := b.submit(t, shortCalls(b.definition("paused-writer", "a", "b")))
	other := startCoordinator(t, store, "engine-b", quickLease)
	end := wait(t, other, s.ID)
	if end.Status != saga.SagaStatusCompleted {
		t.Fatalf("saga ended %s, want Completed", end.Status)
	}
	for _, c := range b.stub.received() {
		if c.Kind == "action" && c.Step == "b" && c.Attempt == 1 {
			t.Errorf("step b's attempt 1 was sent by engine-a after its lease ran out (engine-b held the saga)")
		}
	}
}

// slowStartStore commits slowly the write that starts step a's second
// attempt (a slow database): meanwhile step b's retry falls due.
type slowStartStore struct {
	saga.Store
	once sync.Once
}

func (s *slowStartStore) Apply(ctx context.Context, t saga.Transition) (saga.Applied, error) {
	for _, u := range t.Steps {
		if u.Index == 0 && u.Status == saga.StepStatusExecuting && u.Attempts == 2 {
			// Slow to commit: the store's clock moves past b's retry.
			s.once.Do(func() { time.Sleep(100 * time.Millisecond) })
		}
	}
	return s.Store.Apply(ctx, t)
}

// pairInvoker fails the first attempts of steps a and b together (each
// waits for the other), then succeeds.
type pairInvoker struct {
	both  sync.WaitGroup
	mu    sync.Mutex
	calls []participant.Call
}

func (p *pairInvoker) Invoke(ctx context.Context, c participant.Call) participant.Result {
	p.mu.Lock()
	p.calls = append(p.calls, c)
	p.mu.Unlock()
	if c.Attempt == 1 && c.Kind == participant.KindAction {
		p.both.Done()
		p.both.Wait()
		return participant.Result{Outcome: participant.OutcomeTransient, StatusCode: 503, Error: "HTTP 503", Uncertain: true}
	}
	return participant.Result{Outcome: participant.OutcomeSuccess, StatusCode: 200, Output: json.RawMessage(`{}`)}
}

// Found by the simulator: a decision of a graph that both sends calls
// (started by the write before) and starts others (a retry fell due
// meanwhile) had its sends dropped by the runner. The next decision took
// the unsent steps for calls abandoned by a previous owner and made them
// again, dropping the sends of that decision in turn: the saga wrote
// SagaRecovered and StepStarted for ever.
func TestSendsBesideStartsGoOut(t *testing.T) {
	t.Parallel()
	store := &slowStartStore{Store: memory.New(memory.Config{})}
	inv := &pairInvoker{}
	inv.both.Add(2)
	b := &bundle{store: store, stub: newStub(t)}
	b.coord = startCoordinator(t, store, "engine-a", func(c *engine.Config) { c.Invoker = inv })
	def := shortCalls(b.definition("graph", "a", "b"))
	def.MaxParallel = 2
	for i := range def.Steps {
		def.Steps[i].DependsOn = []string{}
	}
	def.Steps[0].Retry = &saga.RetryPolicy{MaxAttempts: 3, InitialBackoffMs: 2}  // due after 1 ms
	def.Steps[1].Retry = &saga.RetryPolicy{MaxAttempts: 3, InitialBackoffMs: 40} // due after 20 ms
	s := b.submit(t, def)
	end := wait(t, b.coord, s.ID)
	if end.Status != saga.SagaStatusCompleted || end.Steps[0].Attempts != 2 || end.Steps[1].Attempts != 2 {
		t.Errorf("saga ended %s with attempts %d and %d, want Completed with 2 each", end.Status, end.Steps[0].Attempts, end.Steps[1].Attempts)
	}
	for _, e := range eventTypes(t, b.coord, s.ID) {
		if strings.HasPrefix(e, string(saga.EventSagaRecovered)) {
			t.Fatalf("events %v: a call of this runner was taken for one in flight at recovery", eventTypes(t, b.coord, s.ID))
		}
	}
}

// Found by the simulator: the write that started a short call after a
// long one (whose timeout outlasts the lease, so that it was leased for
// the whole call) leased the saga for the short call alone. The store
// sets the lease, so it shortened it; the runner still believed the long
// one and, after a pause, sent a call under a lease run out. No write now
// shortens the lease a call was allowed under.
func TestWriteKeepsTheLeaseOfALongCall(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, func(c *engine.Config) { c.LeaseDuration = 300 * time.Millisecond })
		held := make(chan struct{})
		release := newGate(t)
		b.stub.on("action", "b", func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				close(held)
			}
			release.handler()(n, w, r)
		})
		def := b.definition("long-then-short", "a", "b")
		def.Steps[0].Action.TimeoutMs = 60_000 // leased for the whole call: a minute and more
		def.Steps[1].Action.TimeoutMs = 50
		s := b.submit(t, def)
		select {
		case <-held:
		case <-time.After(20 * time.Second):
			t.Fatal("the call of step b never came")
		}
		got, err := b.store.GetSaga(context.Background(), s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.LeaseExpiresAt == nil || got.LeaseExpiresAt.Before(time.Now().Add(30*time.Second)) {
			t.Errorf("lease expires at %v, during step b; want the minute step a was leased for kept", got.LeaseExpiresAt)
		}
		release.open()
		if end := wait(t, b.coord, s.ID); end.Status != saga.SagaStatusCompleted {
			t.Errorf("saga ended %s, want Completed", end.Status)
		}
	})
}

// shortCalls gives def's calls a timeout within the lease of these
// tests, so that the writes that start them lease the saga for the lease
// duration, not for the whole call.
func shortCalls(def saga.Definition) saga.Definition {
	for i := range def.Steps {
		def.Steps[i].Action.TimeoutMs = 50
	}
	return def
}
