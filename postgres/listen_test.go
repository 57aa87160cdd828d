package postgres_test

import (
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
)

// startListener starts a listener on the store's database whose wakes
// arrive on the returned channel.
func startListener(t *testing.T, cfg postgres.Config, poll time.Duration) (*postgres.Listener, <-chan struct{}) {
	t.Helper()
	wakes := make(chan struct{}, 64)
	l, err := postgres.NewListener(postgres.ListenerConfig{DB: cfg, FallbackPoll: poll, Wake: func() {
		select {
		case wakes <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	return l, wakes
}

// awaitWake waits for a wake, failing after 30 s.
func awaitWake(t *testing.T, wakes <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wakes:
	case <-time.After(30 * time.Second):
		t.Fatalf("no wake: %s", what)
	}
}

// drain empties wakes.
func drain(wakes <-chan struct{}) {
	for {
		select {
		case <-wakes:
		default:
			return
		}
	}
}

func TestListenerWakesOnRunnableWork(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg := postgres.Config{URL: pgtest.NewDatabase(t)}
	s := openMigrated(t, cfg)
	l, wakes := startListener(t, cfg, time.Hour)
	awaitWake(t, wakes, "the wake after connecting")
	waitFor(t, "listening", l.Listening)

	// A saga created without a lease is announced.
	drain(wakes)
	free := create(t, s)
	awaitWake(t, wakes, "saga created unleased")
	if got := claim(t, s, "other"); len(got) != 1 || got[0].ID != free.ID {
		t.Fatalf("claim after the wake: %v", got)
	}

	// A saga released with a retry due later wakes the listener when it is
	// due: the claim at that wake finds it runnable.
	lease := saga.Lease{Owner: "other", Epoch: 1}
	drain(wakes)
	if _, err := s.Apply(ctx, saga.Transition{SagaID: free.ID, Lease: lease, Release: true,
		Status: saga.SagaStatusExecuting, Wake: saga.Wake{Kind: saga.WakeAfter, After: 300 * time.Millisecond},
		Events: []saga.Event{{ID: saga.NewID(), Type: saga.EventStepRetrying}}}); err != nil {
		t.Fatal(err)
	}
	awaitWake(t, wakes, "retry due")
	if got := claim(t, s, "third"); len(got) != 1 || got[0].ID != free.ID {
		t.Fatalf("claim at the wake of a due retry: %v", got)
	}

	// A saga released on shutdown (runnable now) is announced at once.
	drain(wakes)
	if _, err := s.Apply(ctx, saga.Transition{SagaID: free.ID, Lease: saga.Lease{Owner: "third", Epoch: 2},
		Release: true, Wake: saga.Wake{Kind: saga.WakeAfter},
		Events: []saga.Event{{ID: saga.NewID(), Type: saga.EventStepRetrying}}}); err != nil {
		t.Fatal(err)
	}
	awaitWake(t, wakes, "saga released")
	if got := claim(t, s, "fourth"); len(got) != 1 {
		t.Fatalf("claim after release: %v", got)
	}
}

func TestListenerReconnectsAndPollsMeanwhile(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg := postgres.Config{URL: pgtest.NewDatabase(t)}
	s := openMigrated(t, cfg)
	l, wakes := startListener(t, cfg, 20*time.Millisecond)
	waitFor(t, "listening", l.Listening)

	// Cut its connection: it polls (wakes) while away, then listens again.
	if _, err := s.Pool().Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the listener to notice", func() bool { return !l.Listening() })
	drain(wakes)
	awaitWake(t, wakes, "fallback poll")
	waitFor(t, "listening again", l.Listening)
	drain(wakes)
	create(t, s)
	awaitWake(t, wakes, "saga created after the reconnection")
}

// claim claims up to 10 sagas for owner.
func claim(t *testing.T, s *postgres.Store, owner string) []*saga.Saga {
	t.Helper()
	got, err := s.ClaimSagas(t.Context(), owner, time.Minute, 10)
	if err != nil {
		t.Fatalf("ClaimSagas: %v", err)
	}
	return got
}
