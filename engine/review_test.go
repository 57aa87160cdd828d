package engine_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/participant"
)

// A renewal sent for a runner that has since let the saga go must not stop
// the runner of the same saga that a later claim started on this instance.
func TestStaleRenewalSparesReclaimedRunner(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		store := &countingStore{Store: kind.open(t)}
		var (
			watched   atomic.Value // saga.ID whose first renewal is held
			held      atomic.Bool
			entered   = make(chan struct{})
			release   = make(chan struct{})
			releaseMu sync.Once
			renewals  atomic.Int64 // renewals begun after the held one
		)
		store.renew = func(ctx context.Context, owner string, leases map[saga.ID]int64, d time.Duration) ([]saga.ID, error) {
			id, _ := watched.Load().(saga.ID)
			if _, ok := leases[id]; ok && !held.Swap(true) {
				close(entered)
				select {
				case <-release:
				case <-ctx.Done():
				}
			} else if held.Load() {
				renewals.Add(1)
			}
			return store.Store.RenewLeases(ctx, owner, leases, d)
		}
		t.Cleanup(func() { releaseMu.Do(func() { close(release) }) })
		obs := &recordingObserver{}
		b := &bundle{store: store, stub: newStub(t)}
		b.coord = startCoordinator(t, store, "engine-a", func(cfg *engine.Config) {
			cfg.LeaseDuration = 1500 * time.Millisecond
			cfg.Observer = obs
		})
		gateA, gateB := newGate(t), newGate(t)
		b.stub.on("action", "a", gateA.handler())
		b.stub.on("action", "b", gateB.handler())

		def := b.definition("reclaimed", "a", "b")
		s, _, err := b.coord.Submit(context.Background(), def)
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		watched.Store(s.ID)
		eventually(t, "the call of step a", func() bool { return b.stub.count("action", "a") == 1 })
		select {
		case <-entered: // a renewal of epoch 1 is on its way
		case <-time.After(20 * time.Second):
			t.Fatal("no renewal of the saga's lease")
		}
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlPause); err != nil {
			t.Fatalf("pause: %v", err)
		}
		gateA.open()
		waitStatus(t, b.coord, s.ID, saga.SagaStatusPaused)
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlResume); err != nil {
			t.Fatalf("resume: %v", err)
		}
		// Claimed again here (epoch 2), its runner is in the call of step b.
		eventually(t, "the call of step b", func() bool { return b.stub.count("action", "b") == 1 })
		releaseMu.Do(func() { close(release) })
		// The next renewal begins after the held one was handled.
		eventually(t, "the next renewal", func() bool { return renewals.Load() > 0 })
		obs.mu.Lock()
		lost := obs.leaseLost
		obs.mu.Unlock()
		if lost != 0 {
			t.Errorf("%d runners stopped for a lost lease; want 0", lost)
		}
		gateB.open()
		if s = wait(t, b.coord, s.ID); s.Status != saga.SagaStatusCompleted {
			t.Fatalf("status %s; want Completed", s.Status)
		}
	})
}

// When lease renewals keep failing, a runner whose lease has run out by
// its own reckoning stops its call: another instance may have claimed the
// saga by then.
func TestRenewalErrorsStopRunnerPastItsLease(t *testing.T) {
	t.Parallel()
	store := &countingStore{Store: memory.New(memory.Config{})}
	store.renew = func(context.Context, string, map[saga.ID]int64, time.Duration) ([]saga.ID, error) {
		return nil, errors.New("connection refused")
	}
	obs := &recordingObserver{}
	inv := invokerFunc(func(ctx context.Context, _ participant.Call) participant.Result {
		<-ctx.Done() // a long call
		return participant.Result{Outcome: participant.OutcomeTransient, Uncertain: true, Error: ctx.Err().Error()}
	})
	c := startCoordinator(t, store, "engine-a", func(cfg *engine.Config) {
		cfg.LeaseDuration = 300 * time.Millisecond
		cfg.ClaimInterval = time.Hour // no claim may take the saga back
		cfg.Invoker = inv
		cfg.Observer = obs
	})
	b := &bundle{store: store, coord: c, stub: newStub(t)}
	b.submit(t, b.definition("unrenewed", "a"))
	eventually(t, "the runner stopped", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.leaseLost == 1 && obs.attempts == 1 && obs.flight == 0
	})
	if n := store.applies.Load(); n != 0 {
		t.Errorf("%d writes after the lease ran out; want 0", n)
	}
}

// cancelDuringPause is a store that lets an operator's cancel arrive just
// before the write that carries out a pause.
type cancelDuringPause struct {
	saga.Store
	injected atomic.Bool
}

func (s *cancelDuringPause) Apply(ctx context.Context, t saga.Transition) (saga.Applied, error) {
	if t.ClearControl == saga.ControlPause && !s.injected.Swap(true) {
		if _, err := s.Store.RequestControl(ctx, t.SagaID, saga.ControlCancel); err != nil {
			return saga.Applied{}, err
		}
	}
	return s.Store.Apply(ctx, t)
}

// A cancel that arrives while the runner is writing the pause it learned of
// is not lost with the pause: the saga is paused, then cancelled.
func TestCancelArrivingDuringPauseIsCarriedOut(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		store := &cancelDuringPause{Store: kind.open(t)}
		b := &bundle{store: store, stub: newStub(t)}
		b.coord = startCoordinator(t, store, "engine-a", nil)
		g := newGate(t)
		b.stub.on("action", "a", g.handler())
		s := b.submit(t, b.definition("pause-then-cancel", "a", "b"))
		eventually(t, "step a called", func() bool { return b.stub.count("action", "a") == 1 })
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlPause); err != nil {
			t.Fatalf("pause: %v", err)
		}
		g.open()

		got := wait(t, b.coord, s.ID)
		if !store.injected.Load() {
			t.Fatal("the pause was never written")
		}
		if got.Status != saga.SagaStatusCancelled {
			t.Fatalf("status %s, want Cancelled: the cancel sent during the pause was lost", got.Status)
		}
		assertEqual(t, "calls", b.stub.sequence(), []string{"action a", "compensation a"})
	})
}
