package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/storetest"
)

// stallSQL is run inside a batch by a test hook: it keeps the transaction
// open (or, after COMMIT, the answer unread) until the test kills its
// backend.
const stallSQL = `SELECT pg_sleep(120) /* tracseq stall */`

// bundle is what the tests of this file work with: a store with hooks and
// a separate pool to look at the database.
type bundle struct {
	store *Store
	db    *pgxpool.Pool
	ctx   context.Context
}

// setup opens a store with hooks on a fresh migrated database.
func setup(t *testing.T, h hooks) *bundle {
	t.Helper()
	return setupConfig(t, Config{MaxConns: 4, MinConns: 1}, h)
}

// setupConfig is setup with cfg (its URL set to the fresh database's).
func setupConfig(t *testing.T, cfg Config, h hooks) *bundle {
	t.Helper()
	ctx := t.Context()
	url := pgtest.NewDatabase(t)
	cfg.URL = url
	s, err := open(ctx, cfg, h)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(s.Close)
	if _, err := Migrate(ctx, s.Pool(), nil); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	db, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return &bundle{store: s, db: db, ctx: ctx}
}

// create stores a 2-step saga leased to owner for an hour, with one event.
func (b *bundle) create(t *testing.T, owner string) *saga.Saga {
	t.Helper()
	sg, existed, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: storetest.NewTestSaga(owner, 2),
		Events: []saga.Event{{Type: saga.EventSagaCreated}}, LeaseFor: time.Hour})
	if err != nil || existed {
		t.Fatalf("CreateSaga = existed %v, %v", existed, err)
	}
	return sg
}

// stepDone is the transition that completes step 0 and starts step 1:
// two steps, two events and a checkpoint.
func stepDone(sg *saga.Saga, lease saga.Lease) saga.Transition {
	return saga.Transition{
		SagaID: sg.ID, Lease: lease, LeaseFor: time.Hour,
		Status: saga.SagaStatusExecuting, Started: true, CompletedSteps: 1,
		Steps: []saga.StepUpdate{
			{Index: 0, Status: saga.StepStatusCompleted, Attempts: 1, Output: json.RawMessage(`{"ok": true}`), Start: true, End: true},
			{Index: 1, Status: saga.StepStatusExecuting, Attempts: 1, Start: true},
		},
		Events: []saga.Event{
			{Type: saga.EventStepCompleted, StepIndex: new(0)},
			{Type: saga.EventStepStarted, StepIndex: new(1)},
		},
		Checkpoint: &saga.Checkpoint{StepIndex: 0, Context: json.RawMessage(`{"step-0": {"ok": true}}`)},
	}
}

// rowState is what the database holds about one saga, counted in SQL.
type rowState struct {
	Events, DistinctSeqs, Checkpoints int
	EventSeq                          int64
	CompletedSteps                    int
	Step0, Step1                      string
}

const sqlRowState = `
SELECT (SELECT count(*) FROM saga_events WHERE saga_id = s.id),
	(SELECT count(DISTINCT seq) FROM saga_events WHERE saga_id = s.id),
	(SELECT count(*) FROM saga_checkpoints WHERE saga_id = s.id),
	s.event_seq, s.completed_steps,
	(SELECT status::text FROM saga_steps WHERE saga_id = s.id AND step_index = 0),
	(SELECT status::text FROM saga_steps WHERE saga_id = s.id AND step_index = 1)
FROM sagas s WHERE s.id = $1`

func (b *bundle) state(t *testing.T, id saga.ID) rowState {
	t.Helper()
	var st rowState
	err := b.db.QueryRow(b.ctx, sqlRowState, id).Scan(&st.Events, &st.DistinctSeqs, &st.Checkpoints,
		&st.EventSeq, &st.CompletedSteps, &st.Step0, &st.Step1)
	if err != nil {
		t.Fatalf("read state of saga %s: %v", id, err)
	}
	return st
}

var (
	// untouched is a saga as created by bundle.create.
	untouched = rowState{Events: 1, DistinctSeqs: 1, EventSeq: 1, Step0: "Pending", Step1: "Pending"}
	// afterStepDone is that saga after stepDone, written exactly once.
	afterStepDone = rowState{Events: 3, DistinctSeqs: 3, Checkpoints: 1, EventSeq: 3, CompletedSteps: 1,
		Step0: "Completed", Step1: "Executing"}
)

// stalled waits for the backend running stallSQL and returns its pid.
func (b *bundle) stalled(t *testing.T) int32 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pid int32
		err := b.db.QueryRow(b.ctx, `
			SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND state = 'active' AND query = $1`, stallSQL).Scan(&pid)
		if err == nil {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backend is running the stall: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill terminates a backend, as a crash of its connection would.
func (b *bundle) kill(t *testing.T, pid int32) {
	t.Helper()
	var ok bool
	if err := b.db.QueryRow(b.ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
	}
}

// armedStall returns hooks that stall the next batch once armed: before
// its COMMIT, or after it (the commit done, its answer not yet read).
func armedStall(afterCommit bool) (hooks, *atomic.Bool) {
	armed := new(atomic.Bool)
	return hooks{beforeSend: func(int) (before, after []string) {
		if !armed.CompareAndSwap(true, false) {
			return nil, nil
		}
		if afterCommit {
			return nil, []string{stallSQL}
		}
		return []string{stallSQL}, nil
	}}, armed
}

// A transition whose connection dies mid-transaction is written not at
// all until the store's retry writes it, exactly once.
func TestApplyConnectionKilledBeforeCommit(t *testing.T) {
	t.Parallel()
	h, armed := armedStall(false)
	b := setup(t, h)
	sg := b.create(t, "w")

	armed.Store(true)
	type result struct {
		a   saga.Applied
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := b.store.Apply(b.ctx, stepDone(sg, sg.Lease()))
		done <- result{a, err}
	}()
	pid := b.stalled(t)
	// The transaction is open with every write of the transition made:
	// none of it is visible.
	if got := b.state(t, sg.ID); got != untouched {
		t.Fatalf("while the transaction is open: %+v, want %+v", got, untouched)
	}
	b.kill(t, pid)
	r := <-done
	if r.err != nil {
		t.Fatalf("Apply after the connection was killed: %v", r.err)
	}
	if r.a.EventSeq != 3 {
		t.Errorf("Applied.EventSeq = %d, want 3", r.a.EventSeq)
	}
	if got := b.state(t, sg.ID); got != afterStepDone {
		t.Errorf("after the retry: %+v, want %+v", got, afterStepDone)
	}
}

// A transition committed whose answer was lost with the connection is
// recognised by the retry, not written twice.
func TestApplyConnectionKilledAfterCommit(t *testing.T) {
	t.Parallel()
	h, armed := armedStall(true)
	b := setup(t, h)
	sg := b.create(t, "w")

	armed.Store(true)
	type result struct {
		a   saga.Applied
		err error
	}
	done := make(chan result, 1)
	go func() {
		a, err := b.store.Apply(b.ctx, stepDone(sg, sg.Lease()))
		done <- result{a, err}
	}()
	pid := b.stalled(t)
	if got := b.state(t, sg.ID); got != afterStepDone {
		t.Fatalf("after COMMIT, before its answer: %+v, want %+v", got, afterStepDone)
	}
	b.kill(t, pid)
	r := <-done
	if r.err != nil {
		t.Fatalf("Apply after the connection was killed: %v", r.err)
	}
	if r.a.EventSeq != 3 || r.a.Now.IsZero() || r.a.LeaseExpiresAt.IsZero() {
		t.Errorf("Applied = %+v, want EventSeq 3 and the store's clock and lease", r.a)
	}
	if got := b.state(t, sg.ID); got != afterStepDone {
		t.Errorf("after the retry: %+v, want %+v (written once)", got, afterStepDone)
	}
	// The lease is still the writer's: the next transition goes through.
	if _, err := b.store.Apply(b.ctx, saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Hour}); err != nil {
		t.Errorf("next Apply: %v", err)
	}
}

// A create committed whose answer was lost is answered as created, once.
func TestCreateConnectionKilledAfterCommit(t *testing.T) {
	t.Parallel()
	h, armed := armedStall(true)
	b := setup(t, h)

	in := storetest.NewTestSaga("w", 2)
	in.IdempotencyKey = "lost-answer"
	in.Definition.IdempotencyKey = in.IdempotencyKey
	armed.Store(true)
	type result struct {
		sg      *saga.Saga
		existed bool
		err     error
	}
	done := make(chan result, 1)
	go func() {
		sg, existed, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: in,
			Events: []saga.Event{{Type: saga.EventSagaCreated}}, LeaseFor: time.Hour})
		done <- result{sg, existed, err}
	}()
	b.kill(t, b.stalled(t))
	r := <-done
	if r.err != nil || r.existed {
		t.Fatalf("CreateSaga after the connection was killed: existed %v, %v", r.existed, r.err)
	}
	if r.sg.ID != in.ID || r.sg.LeaseEpoch != 1 || r.sg.OwnerID != "w" || len(r.sg.Steps) != 2 {
		t.Errorf("CreateSaga returned %+v", r.sg)
	}
	if got := b.state(t, in.ID); got != untouched {
		t.Errorf("stored: %+v, want %+v", got, untouched)
	}
	var sagas int
	if err := b.db.QueryRow(b.ctx, `SELECT count(*) FROM sagas`).Scan(&sagas); err != nil || sagas != 1 {
		t.Errorf("%d sagas stored (%v), want 1", sagas, err)
	}
}

// gate holds the first batches of the writers until released, so that the
// writes submitted meanwhile pile up and go out together.
type gate struct {
	armed   atomic.Bool
	held    atomic.Int32 // writes in held batches
	batches atomic.Int32 // batches held so far
	open    chan struct{}

	mu    sync.Mutex
	sizes []int // sizes of the batches sent while armed
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) hooks() hooks {
	return hooks{beforeSend: func(n int) (before, after []string) {
		if !g.armed.Load() {
			return nil, nil
		}
		g.mu.Lock()
		g.sizes = append(g.sizes, n)
		g.mu.Unlock()
		if g.batches.Add(1) <= WritersDefault {
			g.held.Add(int32(n))
			<-g.open
		}
		return nil, nil
	}}
}

// release opens the gate once n writes are held or queued.
func (g *gate) release(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for int(g.held.Load())+int(s.committer.waiting.Load()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d writes reached the committer", int(g.held.Load())+int(s.committer.waiting.Load()), n)
		}
		time.Sleep(time.Millisecond)
	}
	close(g.open)
}

// Writes with lost leases, sent in one transaction with live ones, are
// refused one by one: the others commit.
func TestGroupCommitLostLeases(t *testing.T) {
	t.Parallel()
	g := newGate()
	b := setup(t, g.hooks())

	const n = 48
	sagas := make([]*saga.Saga, n)
	for i := range sagas {
		sagas[i] = b.create(t, "w")
	}
	lease := func(i int) saga.Lease {
		switch i % 3 {
		case 1:
			return saga.Lease{Owner: "w", Epoch: 2} // a stale epoch
		case 2:
			return saga.Lease{Owner: "intruder", Epoch: 1}
		}
		return sagas[i].Lease()
	}

	g.armed.Store(true)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, sg := range sagas {
		wg.Go(func() {
			_, errs[i] = b.store.Apply(b.ctx, stepDone(sg, lease(i)))
		})
	}
	g.release(t, b.store, n)
	wg.Wait()

	for i, sg := range sagas {
		got := b.state(t, sg.ID)
		if i%3 == 0 {
			if errs[i] != nil {
				t.Errorf("saga %d with its live lease: %v", i, errs[i])
			}
			if got != afterStepDone {
				t.Errorf("saga %d with its live lease: %+v, want %+v", i, got, afterStepDone)
			}
			continue
		}
		if !errors.Is(errs[i], saga.ErrLeaseLost) {
			t.Errorf("saga %d with lease %+v: err = %v, want ErrLeaseLost", i, lease(i), errs[i])
		}
		if got != untouched {
			t.Errorf("saga %d with a lost lease: %+v, want untouched %+v", i, got, untouched)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	total := 0
	for _, size := range g.sizes {
		total += size
	}
	if total != n || slices.Max(g.sizes) < 2 {
		t.Errorf("batch sizes %v: want %d writes, batched", g.sizes, n)
	}
}

// A write the database rejects fails alone: the writes that shared its
// transaction are retried one by one and commit.
func TestGroupCommitBadWriteFailsAlone(t *testing.T) {
	t.Parallel()
	g := newGate()
	b := setup(t, g.hooks())

	const n = 12
	sagas := make([]*saga.Saga, n)
	for i := range sagas {
		sagas[i] = b.create(t, "w")
	}
	transition := func(i int) saga.Transition {
		tr := stepDone(sagas[i], sagas[i].Lease())
		switch i {
		case 3: // a compensation of a step the saga does not have
			tr.Compensations = []saga.CompensationUpdate{{StepIndex: 7, Status: saga.CompensationStatusExecuting, Start: true}}
		case 8: // an update of a step the saga does not have
			tr.Steps = append(tr.Steps, saga.StepUpdate{Index: 2, Status: saga.StepStatusExecuting})
		}
		return tr
	}

	g.armed.Store(true)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range sagas {
		wg.Go(func() {
			_, errs[i] = b.store.Apply(b.ctx, transition(i))
		})
	}
	g.release(t, b.store, n)
	wg.Wait()

	for i, sg := range sagas {
		got := b.state(t, sg.ID)
		if i == 3 || i == 8 {
			if errs[i] == nil || errors.Is(errs[i], saga.ErrLeaseLost) || !strings.Contains(errs[i].Error(), "does not have") {
				t.Errorf("bad write %d: err = %v, want one naming the missing step", i, errs[i])
			}
			if got != untouched {
				t.Errorf("bad write %d: %+v, want untouched %+v", i, got, untouched)
			}
			continue
		}
		if errs[i] != nil || got != afterStepDone {
			t.Errorf("write %d beside bad ones: err %v, state %+v", i, errs[i], got)
		}
	}
}

// Close waits for the writes it accepted; later writes are refused.
func TestCloseDrainsWrites(t *testing.T) {
	t.Parallel()
	g := newGate()
	b := setup(t, g.hooks())
	const n = 10
	sagas := make([]*saga.Saga, n)
	for i := range sagas {
		sagas[i] = b.create(t, "w")
	}
	g.armed.Store(true)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, sg := range sagas {
		wg.Go(func() { _, errs[i] = b.store.Apply(b.ctx, stepDone(sg, sg.Lease())) })
	}
	g.release(t, b.store, n)
	b.store.Close()
	wg.Wait()
	for i, sg := range sagas {
		if errs[i] != nil {
			t.Errorf("write %d accepted before Close: %v", i, errs[i])
		}
		if got := b.state(t, sg.ID); got != afterStepDone {
			t.Errorf("write %d accepted before Close: %+v", i, got)
		}
	}
	if _, err := b.store.Apply(b.ctx, stepDone(sagas[0], sagas[0].Lease())); !errors.Is(err, saga.ErrUnavailable) {
		t.Errorf("Apply after Close: err = %v, want ErrUnavailable", err)
	}
}

// gateSQL is run before COMMIT by TestGroupCommitWriters's hook: it waits
// for the advisory lock the test holds.
const gateSQL = `SELECT pg_advisory_xact_lock_shared(16005) /* tracseq writers gate */`

// Config.Writers transactions are in flight at once, each on its own
// backend, and no more while writes keep arriving.
func TestGroupCommitWriters(t *testing.T) {
	t.Parallel()
	const writers = 3
	var gated atomic.Bool
	b := setupConfig(t, Config{MaxConns: writers + 1, MinConns: 1, Writers: writers},
		hooks{beforeSend: func(int) (before, after []string) {
			if gated.Load() {
				return []string{gateSQL}, nil
			}
			return nil, nil
		}})

	const n = 4 * writers
	sagas := make([]*saga.Saga, n)
	for i := range sagas {
		sagas[i] = b.create(t, "w")
	}
	lock, err := b.db.Acquire(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if _, err := lock.Exec(b.ctx, `SELECT pg_advisory_lock(16005)`); err != nil {
		t.Fatal(err)
	}
	gated.Store(true)

	// One write at a time: each of the first writers gets a transaction
	// of its own, held at the gate; the others find every writer busy and
	// queue.
	inFlight := func() int {
		var open int
		if err := b.db.QueryRow(b.ctx, `
			SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND query = $1 AND wait_event_type = 'Lock'`, gateSQL).Scan(&open); err != nil {
			t.Fatal(err)
		}
		return open
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, sg := range sagas {
		wg.Go(func() {
			_, errs[i] = b.store.Apply(b.ctx, stepDone(sg, sg.Lease()))
		})
		deadline := time.Now().Add(20 * time.Second)
		for inFlight() < min(i+1, writers) || int(b.store.committer.waiting.Load()) < i+1-writers {
			if time.Now().After(deadline) {
				t.Fatalf("write %d: %d transactions at the gate, %d writes queued", i, inFlight(), b.store.committer.waiting.Load())
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	if got := inFlight(); got != writers {
		t.Errorf("%d group-committed transactions in flight with %d writes queued, want %d", got, b.store.committer.waiting.Load(), writers)
	}
	if _, err := lock.Exec(b.ctx, `SELECT pg_advisory_unlock(16005)`); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, sg := range sagas {
		if errs[i] != nil {
			t.Errorf("write %d: %v", i, errs[i])
		}
		if got := b.state(t, sg.ID); got != afterStepDone {
			t.Errorf("saga %d: %+v, want %+v", i, got, afterStepDone)
		}
	}
}
