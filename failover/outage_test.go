package failover_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/failover"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/storetest"
)

// errAway is what switchDB answers while the "database" is away.
var errAway = fmt.Errorf("database away (test switch): %w", saga.ErrUnavailable)

// switchDB is the database store behind a switch: while away, every call
// fails as an unreachable database would, writes saying they were never
// sent. With lostAnswer, CreateSaga commits and then fails as if its
// answer had been lost.
type switchDB struct {
	*postgres.Store
	away       atomic.Bool
	lostAnswer atomic.Bool
	slow       atomic.Bool  // Health answers late (its check times out)
	calls      atomic.Int64 // calls made while away
}

var _ failover.Durable = (*switchDB)(nil)

// fail returns the error of a call while away (nil when up).
func (d *switchDB) fail(write bool) error {
	if !d.away.Load() {
		return nil
	}
	d.calls.Add(1)
	if write {
		return fmt.Errorf("%w (%w)", errAway, saga.ErrNotWritten)
	}
	return errAway
}

func (d *switchDB) CreateSaga(ctx context.Context, c saga.NewSaga) (*saga.Saga, bool, error) {
	if err := d.fail(true); err != nil {
		return nil, false, err
	}
	sg, existed, err := d.Store.CreateSaga(ctx, c)
	if err == nil && d.lostAnswer.Load() {
		return nil, false, fmt.Errorf("create saga: answer lost: %w", saga.ErrUnavailable)
	}
	return sg, existed, err
}

func (d *switchDB) GetSaga(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	if err := d.fail(false); err != nil {
		return nil, err
	}
	return d.Store.GetSaga(ctx, id)
}

func (d *switchDB) ListSagas(ctx context.Context, f saga.Filter) (saga.Page, error) {
	if err := d.fail(false); err != nil {
		return saga.Page{}, err
	}
	return d.Store.ListSagas(ctx, f)
}

func (d *switchDB) ListEvents(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error) {
	if err := d.fail(false); err != nil {
		return nil, err
	}
	return d.Store.ListEvents(ctx, id, afterSeq, limit)
}

func (d *switchDB) LatestCheckpoint(ctx context.Context, id saga.ID) (*saga.Checkpoint, error) {
	if err := d.fail(false); err != nil {
		return nil, err
	}
	return d.Store.LatestCheckpoint(ctx, id)
}

func (d *switchDB) Apply(ctx context.Context, t saga.Transition) (saga.Applied, error) {
	if err := d.fail(true); err != nil {
		return saga.Applied{}, err
	}
	return d.Store.Apply(ctx, t)
}

func (d *switchDB) ClaimSagas(ctx context.Context, owner string, leaseFor time.Duration, limit int) ([]*saga.Saga, error) {
	if err := d.fail(true); err != nil {
		return nil, err
	}
	return d.Store.ClaimSagas(ctx, owner, leaseFor, limit)
}

func (d *switchDB) RenewLeases(ctx context.Context, owner string, leases map[saga.ID]int64, leaseFor time.Duration) ([]saga.ID, error) {
	if err := d.fail(true); err != nil {
		return nil, err
	}
	return d.Store.RenewLeases(ctx, owner, leases, leaseFor)
}

func (d *switchDB) RequestControl(ctx context.Context, id saga.ID, a saga.ControlAction) (*saga.Saga, error) {
	if err := d.fail(true); err != nil {
		return nil, err
	}
	return d.Store.RequestControl(ctx, id, a)
}

func (d *switchDB) Stats(ctx context.Context, window time.Duration) (saga.Stats, error) {
	if err := d.fail(false); err != nil {
		return saga.Stats{}, err
	}
	return d.Store.Stats(ctx, window)
}

func (d *switchDB) DeleteFinished(ctx context.Context, age time.Duration, batch int) (int, error) {
	if err := d.fail(true); err != nil {
		return 0, err
	}
	return d.Store.DeleteFinished(ctx, age, batch)
}

func (d *switchDB) Health(ctx context.Context) saga.Health {
	if err := d.fail(false); err != nil {
		return saga.Health{Durable: true, Mode: failover.ModeDurable, Error: err.Error(), Unreachable: true}
	}
	if d.slow.Load() {
		return saga.Health{Durable: true, Mode: failover.ModeDurable, Error: "ping database: context deadline exceeded"}
	}
	return d.Store.Health(ctx)
}

func (d *switchDB) Import(ctx context.Context, r saga.SagaRecord) (bool, error) {
	if err := d.fail(true); err != nil {
		return false, err
	}
	return d.Store.Import(ctx, r)
}

// running is a failover store that started durable on a switchDB.
type running struct {
	*bundle
	db *switchDB
}

// setupRunning returns a Store started durable on a fresh database behind
// a switch, with Fallback as given, its loop running.
func setupRunning(t *testing.T, fallback bool) *running {
	t.Helper()
	url := pgtest.NewDatabase(t)
	ctx := t.Context()
	st, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 4, MinConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.Migrate(ctx, st.Pool(), nil); err != nil {
		t.Fatal(err)
	}
	r := &running{bundle: &bundle{ctx: ctx, url: url}, db: &switchDB{Store: st}}
	r.store = mustNew(t, failover.Config{
		Database:   r.db,
		Fallback:   fallback,
		ProbeEvery: 5 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnModeChange: func(durable bool) {
			r.modeMu.Lock()
			defer r.modeMu.Unlock()
			r.modes = append(r.modes, durable)
		},
	})
	t.Cleanup(r.store.Close)
	r.store.Start(ctx)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	r.pool = pool
	return r
}

// waitDurable polls until the Store is durable again.
func (r *running) waitDurable(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !r.store.Durable() {
		if time.Now().After(deadline) {
			t.Fatal("the Store did not become durable again")
		}
		time.Sleep(time.Millisecond)
	}
}

func (r *running) modeChanges() []bool {
	r.modeMu.Lock()
	defer r.modeMu.Unlock()
	return slices.Clone(r.modes)
}

// An outage while running, twice: sagas in the database wait for it, new
// sagas are taken and run in memory, and when it answers they are moved to
// it with their whole trail, leases included.
func TestOutageWhileRunningFallsBackToMemory(t *testing.T) {
	t.Parallel()
	r := setupRunning(t, true)
	before := r.create(t, 2, "before-the-outage")
	if !before.Durable || !r.store.Durable() {
		t.Fatalf("saga before the outage: Durable %v, store durable %v; want both", before.Durable, r.store.Durable())
	}

	for outage := range 2 {
		r.db.away.Store(true)
		key := fmt.Sprintf("during-outage-%d", outage)
		accepted := r.create(t, 2, key)
		if accepted.Durable || r.store.Durable() {
			t.Fatalf("outage %d: saga accepted with Durable %v, store durable %v; want memory", outage, accepted.Durable, r.store.Durable())
		}
		if h := r.store.Health(r.ctx); h.Durable || h.Mode != failover.ModeMemory || h.Error == "" {
			t.Errorf("outage %d: Health = %+v, want memory mode with the reason", outage, h)
		}
		// The saga in the database waits: its writes and reads fail.
		if _, err := r.progress(before, before.Lease(), 0); !errors.Is(err, saga.ErrUnavailable) {
			t.Errorf("outage %d: Apply to a saga in the database = %v, want ErrUnavailable", outage, err)
		}
		if _, err := r.store.GetSaga(r.ctx, before.ID); !errors.Is(err, saga.ErrUnavailable) {
			t.Errorf("outage %d: GetSaga of a saga in the database = %v, want ErrUnavailable", outage, err)
		}
		if _, err := r.store.ListSagas(r.ctx, saga.Filter{}); !errors.Is(err, saga.ErrUnavailable) {
			t.Errorf("outage %d: ListSagas = %v, want ErrUnavailable rather than memory's part alone", outage, err)
		}
		// Its key is known to be in the database: a repeated submit is
		// refused, not made a second saga. The key taken in memory answers
		// its saga.
		again := storetest.NewTestSaga(owner, 2)
		again.IdempotencyKey = "before-the-outage"
		if _, _, err := r.store.CreateSaga(r.ctx, saga.NewSaga{Saga: again}); !errors.Is(err, saga.ErrUnavailable) {
			t.Errorf("outage %d: submit repeating a key in the database = %v, want ErrUnavailable", outage, err)
		}
		again.IdempotencyKey = key
		if got, existed, err := r.store.CreateSaga(r.ctx, saga.NewSaga{Saga: again}); err != nil || !existed || got.ID != accepted.ID {
			t.Errorf("outage %d: submit repeating a key in memory = existed %v, %v; want saga %s", outage, existed, err, accepted.ID)
		}
		// The saga in memory runs: written, claimed (from memory alone), its
		// lease renewed even though the database's part fails.
		if _, err := r.progress(accepted, accepted.Lease(), 0); err != nil {
			t.Fatalf("outage %d: Apply in memory: %v", outage, err)
		}
		queued := storetest.NewTestSaga("", 1)
		if _, _, err := r.store.CreateSaga(r.ctx, saga.NewSaga{Saga: queued, Events: []saga.Event{{Type: saga.EventSagaCreated}}}); err != nil {
			t.Fatal(err)
		}
		callsBefore := r.db.calls.Load()
		claimed, err := r.store.ClaimSagas(r.ctx, owner, time.Hour, 10)
		if err != nil || len(claimed) != 1 || claimed[0].ID != queued.ID {
			t.Fatalf("outage %d: ClaimSagas = %d sagas, %v; want the one queued in memory", outage, len(claimed), err)
		}
		if r.db.calls.Load() != callsBefore {
			t.Errorf("outage %d: ClaimSagas asked the database known to be away", outage)
		}
		leases := map[saga.ID]int64{accepted.ID: accepted.LeaseEpoch, before.ID: before.LeaseEpoch}
		if _, err := r.store.RenewLeases(r.ctx, owner, leases, time.Hour); !errors.Is(err, saga.ErrUnavailable) {
			t.Errorf("outage %d: RenewLeases with a saga in the database = %v, want ErrUnavailable", outage, err)
		}
		moving := []*saga.Saga{accepted, claimed[0]}
		snaps := make(map[saga.ID]snapshot)
		for _, sg := range moving {
			snaps[sg.ID] = r.snapshot(t, sg.ID)
		}

		// The database answers again.
		r.db.away.Store(false)
		r.waitDurable(t)
		for _, sg := range moving {
			after := r.snapshot(t, sg.ID)
			if !after.Saga.Durable {
				t.Errorf("outage %d: saga %s not durable after the move", outage, sg.ID)
			}
			sameSaga(t, snaps[sg.ID], after)
			if n := r.count(t, "sagas", sg.ID); n != 1 {
				t.Errorf("outage %d: saga %s: %d rows, want 1", outage, sg.ID, n)
			}
		}
		if _, err := r.progress(accepted, accepted.Lease(), 1); err != nil {
			t.Errorf("outage %d: Apply with the memory lease after the move: %v", outage, err)
		}
		if got, existed, err := r.store.CreateSaga(r.ctx, saga.NewSaga{Saga: again}); err != nil || !existed || got.ID != accepted.ID {
			t.Errorf("outage %d: submit repeating the key after the move = existed %v, %v", outage, existed, err)
		}
	}
	if got, wantModes := r.modeChanges(), []bool{true, false, true, false, true}; !slices.Equal(got, wantModes) {
		t.Errorf("OnModeChange calls = %v, want %v", got, wantModes)
	}
	// The saga from before the outages carries on.
	if _, err := r.progress(before, before.Lease(), 0); err != nil {
		t.Errorf("Apply to the saga from before the outages: %v", err)
	}
}

// A create whose write may have committed before the database went away is
// refused, never taken in memory as a second saga; so is its key while the
// database is away. Once it answers, the key finds the saga it committed.
func TestOutageLostCreateAnswerIsRefused(t *testing.T) {
	t.Parallel()
	r := setupRunning(t, true)
	r.db.lostAnswer.Store(true)
	in := storetest.NewTestSaga(owner, 1)
	in.IdempotencyKey = "answer-lost"
	if _, _, err := r.store.CreateSaga(r.ctx, saga.NewSaga{Saga: in, LeaseFor: time.Hour}); !errors.Is(err, saga.ErrUnavailable) {
		t.Fatalf("create whose answer was lost = %v, want ErrUnavailable", err)
	}
	r.db.lostAnswer.Store(false)
	r.db.away.Store(true)
	retry := storetest.NewTestSaga(owner, 1)
	retry.IdempotencyKey = in.IdempotencyKey
	if _, _, err := r.store.CreateSaga(r.ctx, saga.NewSaga{Saga: retry, LeaseFor: time.Hour}); !errors.Is(err, saga.ErrUnavailable) {
		t.Fatalf("the client's retry while the database is away = %v, want ErrUnavailable", err)
	}
	r.db.away.Store(false)
	r.waitDurable(t)
	got, existed, err := r.store.CreateSaga(r.ctx, saga.NewSaga{Saga: retry, LeaseFor: time.Hour})
	if err != nil || !existed || got.ID != in.ID {
		t.Fatalf("the retry once the database answers = existed %v, %v; want the saga committed first", existed, err)
	}
	if n := r.count(t, "sagas", saga.NilID); n != 1 {
		t.Errorf("%d sagas stored, want 1", n)
	}
}

// A health check that fails is an outage too: the Store goes to memory
// mode before any saga is submitted, and back once the database answers.
func TestOutageSeenByHealth(t *testing.T) {
	t.Parallel()
	r := setupRunning(t, true)
	r.db.away.Store(true)
	if h := r.store.Health(r.ctx); h.Durable || h.Mode != failover.ModeMemory || h.Error == "" {
		t.Fatalf("Health while away = %+v, want memory mode with the reason", h)
	}
	if r.store.Durable() {
		t.Error("Durable() after a failed health check")
	}
	r.db.away.Store(false)
	r.waitDurable(t)
	if h := r.store.Health(r.ctx); !h.Durable || h.Error != "" {
		t.Errorf("Health once back = %+v", h)
	}
}

// A database that answers the health check too late is slow, not away:
// the Store stays durable and reports the error.
func TestOutageNotSeenInSlowHealth(t *testing.T) {
	t.Parallel()
	r := setupRunning(t, true)
	r.db.slow.Store(true)
	if h := r.store.Health(r.ctx); !h.Durable || h.Error == "" {
		t.Errorf("Health of a slow database = %+v, want durable with the error", h)
	}
	if !r.store.Durable() {
		t.Error("a slow health check took the Store to memory mode")
	}
}

// Without Fallback a durable Store stays durable through an outage: the
// database's errors reach the caller (the service answers 503).
func TestOutageWithoutFallbackRejects(t *testing.T) {
	t.Parallel()
	r := setupRunning(t, false)
	r.db.away.Store(true)
	if _, _, err := r.store.CreateSaga(r.ctx, saga.NewSaga{Saga: storetest.NewTestSaga(owner, 1)}); !errors.Is(err, saga.ErrUnavailable) {
		t.Errorf("CreateSaga while away = %v, want ErrUnavailable", err)
	}
	if h := r.store.Health(r.ctx); !h.Durable || h.Error == "" {
		t.Errorf("Health while away = %+v, want durable with the error", h)
	}
	if !r.store.Durable() {
		t.Error("the Store left durable mode without Fallback")
	}
	r.db.away.Store(false)
	r.create(t, 1, "")
	if got := r.modeChanges(); !slices.Equal(got, []bool{true}) {
		t.Errorf("OnModeChange calls = %v, want [true]", got)
	}
}

// Submits racing an outage and its end: each one is either refused or gives
// one saga, found afterwards in the database exactly once.
func TestOutageConcurrentSubmits(t *testing.T) {
	t.Parallel()
	r := setupRunning(t, true)
	const clients, each = 8, 40
	var (
		mu  sync.Mutex
		ids = make(map[saga.ID]string)
		wg  sync.WaitGroup
	)
	stop := make(chan struct{})
	var flips sync.WaitGroup
	flips.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				r.db.away.Store(false)
				return
			case <-time.After(3 * time.Millisecond):
			}
			r.db.away.Store(i%2 == 0)
		}
	})
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				sg := storetest.NewTestSaga(owner, 1)
				sg.IdempotencyKey = fmt.Sprintf("client-%d-%d", c, i)
				got, existed, err := r.store.CreateSaga(r.ctx, saga.NewSaga{Saga: sg, LeaseFor: time.Hour})
				if err != nil {
					if !errors.Is(err, saga.ErrUnavailable) {
						t.Errorf("CreateSaga: %v", err)
					}
					continue
				}
				if existed {
					t.Errorf("key %s: existed on its first submit", sg.IdempotencyKey)
				}
				mu.Lock()
				ids[got.ID] = sg.IdempotencyKey
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	flips.Wait()
	r.waitDurable(t)
	for id, key := range ids {
		if n := r.count(t, "sagas", id); n != 1 {
			t.Errorf("saga %s (%s): %d rows, want 1", id, key, n)
		}
	}
	if n := r.count(t, "sagas", saga.NilID); n != len(ids) {
		t.Errorf("%d sagas in the database, %d accepted", n, len(ids))
	}
	t.Logf("%d of %d submits accepted while the database flapped", len(ids), clients*each)
}
