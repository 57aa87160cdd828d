package failover_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
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

// waitTimeout bounds every wait for the background loop.
const waitTimeout = 30 * time.Second

const owner = "instance-a"

var _ failover.Durable = (*postgres.Store)(nil)

// errDown is what Connect answers while the "database" is away, and
// errImportDown what Import answers.
var (
	errDown       = errors.New("database down (test switch)")
	errImportDown = fmt.Errorf("%w: %w", errDown, saga.ErrUnavailable)
)

// flakyDB is the database store with a switch that makes Import fail, as if
// the database went away during the move. With commitFirst, the first
// failing Import commits before it reports the error (its answer was lost).
type flakyDB struct {
	*postgres.Store
	okImports   int // imports that succeed before the failures start
	maxFailures int // 0: every import fails while down
	commitFirst bool

	mu       sync.Mutex
	down     bool
	imports  int
	failures int
	failed   chan struct{} // closed at the first failure
}

func (f *flakyDB) Import(ctx context.Context, r saga.SagaRecord) (bool, error) {
	f.mu.Lock()
	f.imports++
	fail := f.down && f.imports > f.okImports && (f.maxFailures == 0 || f.failures < f.maxFailures)
	first := fail && f.failures == 0
	if fail {
		f.failures++
	}
	f.mu.Unlock()
	if !fail {
		return f.Store.Import(ctx, r)
	}
	if first {
		defer close(f.failed)
		if f.commitFirst {
			if _, err := f.Store.Import(ctx, r); err != nil {
				return false, err
			}
		}
	}
	return false, errImportDown
}

func (f *flakyDB) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

type bundle struct {
	ctx     context.Context
	url     string
	store   *failover.Store
	pool    *pgxpool.Pool // on the test database, for counting rows
	up      atomic.Bool   // Connect succeeds
	calls   atomic.Int64  // Connect calls
	connect chan struct{} // receives after every failed Connect

	modeMu sync.Mutex
	modes  []bool
}

// setup returns a failover store whose Connect fails until b.up is set, then
// opens and migrates a fresh PostgreSQL database (wrapped by wrap when not
// nil). The loop is not started.
func setup(t *testing.T, wrap func(*postgres.Store) failover.Durable) *bundle {
	t.Helper()
	url := pgtest.NewDatabase(t)
	b := &bundle{ctx: t.Context(), url: url, connect: make(chan struct{}, 1)}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	b.store = mustNew(t, failover.Config{
		Connect: func(ctx context.Context) (failover.Durable, error) {
			b.calls.Add(1)
			if !b.up.Load() {
				select {
				case b.connect <- struct{}{}:
				default:
				}
				return nil, errDown
			}
			st, err := postgres.Open(ctx, postgres.Config{URL: url, MaxConns: 4, MinConns: 1})
			if err != nil {
				return nil, err
			}
			if _, err := postgres.Migrate(ctx, st.Pool(), nil); err != nil {
				st.Close()
				return nil, err
			}
			if wrap != nil {
				return wrap(st), nil
			}
			return st, nil
		},
		RetryEvery: 5 * time.Millisecond,
		RetryMax:   20 * time.Millisecond,
		Logger:     logger,
		OnModeChange: func(durable bool) {
			b.modeMu.Lock()
			defer b.modeMu.Unlock()
			b.modes = append(b.modes, durable)
		},
	})
	t.Cleanup(b.store.Close)

	pool, err := pgxpool.New(b.ctx, url)
	if err != nil {
		t.Fatalf("open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	b.pool = pool
	return b
}

// waitFor waits on ch with the test deadline.
func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitFailedConnects waits until Connect has failed n more times (at least).
func (b *bundle) waitFailedConnects(t *testing.T, n int) {
	t.Helper()
	for range n {
		waitFor(t, b.connect, "a failed Connect")
	}
}

// count returns the number of rows of table for saga id (all rows when id
// is zero).
func (b *bundle) count(t *testing.T, table string, id saga.ID) int {
	t.Helper()
	queries := map[string]string{
		"sagas":              `SELECT count(*) FROM sagas WHERE $1::uuid IS NULL OR id = $1`,
		"saga_steps":         `SELECT count(*) FROM saga_steps WHERE $1::uuid IS NULL OR saga_id = $1`,
		"saga_compensations": `SELECT count(*) FROM saga_compensations WHERE $1::uuid IS NULL OR saga_id = $1`,
		"saga_events":        `SELECT count(*) FROM saga_events WHERE $1::uuid IS NULL OR saga_id = $1`,
		"saga_checkpoints":   `SELECT count(*) FROM saga_checkpoints WHERE $1::uuid IS NULL OR saga_id = $1`,
	}
	var arg any
	if !id.IsZero() {
		arg = id.String()
	}
	var n int
	if err := b.pool.QueryRow(b.ctx, queries[table], arg).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// create stores a new saga of steps steps, leased to owner.
func (b *bundle) create(t *testing.T, steps int, key string) *saga.Saga {
	t.Helper()
	sg := storetest.NewTestSaga(owner, steps)
	sg.IdempotencyKey = key
	got, existed, err := b.store.CreateSaga(b.ctx, saga.NewSaga{
		Saga:     sg,
		Events:   []saga.Event{{Type: saga.EventSagaCreated, InstanceID: owner}},
		LeaseFor: time.Hour,
	})
	if err != nil || existed {
		t.Fatalf("CreateSaga = existed %v, %v", existed, err)
	}
	return got
}

// progress applies the runner's transition that completes step index of sg
// with its lease: a step row, a compensation row, two events and a
// checkpoint.
func (b *bundle) progress(sg *saga.Saga, lease saga.Lease, index int) (saga.Applied, error) {
	idx := index
	return b.store.Apply(b.ctx, saga.Transition{
		SagaID:         sg.ID,
		Lease:          lease,
		LeaseFor:       time.Hour,
		Status:         saga.SagaStatusExecuting,
		Started:        true,
		CompletedSteps: index + 1,
		Steps: []saga.StepUpdate{{
			Index: index, Status: saga.StepStatusCompleted, Attempts: 1,
			Output: json.RawMessage(fmt.Sprintf(`{"done": %d}`, index)), Start: true, End: true,
		}},
		Compensations: []saga.CompensationUpdate{{StepIndex: index, Status: saga.CompensationStatusPending}},
		Events: []saga.Event{
			{Type: saga.EventStepStarted, StepIndex: &idx, InstanceID: owner},
			{Type: saga.EventStepCompleted, StepIndex: &idx, InstanceID: owner},
		},
		Checkpoint: &saga.Checkpoint{StepIndex: index, Context: json.RawMessage(fmt.Sprintf(`{"after": %d}`, index))},
	})
}

// snapshot is what the test compares of a saga before and after the move.
type snapshot struct {
	Saga       *saga.Saga
	Events     []saga.Event
	Checkpoint *saga.Checkpoint
}

func (b *bundle) snapshot(t *testing.T, id saga.ID) snapshot {
	t.Helper()
	sg, err := b.store.GetSaga(b.ctx, id)
	if err != nil {
		t.Fatalf("GetSaga(%s): %v", id, err)
	}
	evs, err := b.store.ListEvents(b.ctx, id, 0, 0)
	if err != nil {
		t.Fatalf("ListEvents(%s): %v", id, err)
	}
	cp, err := b.store.LatestCheckpoint(b.ctx, id)
	if err != nil {
		t.Fatalf("LatestCheckpoint(%s): %v", id, err)
	}
	return snapshot{Saga: sg, Events: evs, Checkpoint: cp}
}

// sameSaga reports the differences between a saga seen in memory and as the
// database returns it.
func sameSaga(t *testing.T, before, after snapshot) {
	t.Helper()
	a, d := before.Saga, after.Saga
	if a.ID != d.ID || a.Status != d.Status || a.CompletedSteps != d.CompletedSteps ||
		a.TotalSteps != d.TotalSteps || a.IdempotencyKey != d.IdempotencyKey ||
		a.OwnerID != d.OwnerID || a.LeaseEpoch != d.LeaseEpoch || a.EventSeq != d.EventSeq ||
		!a.CreatedAt.Equal(d.CreatedAt) || !equalTime(a.LeaseExpiresAt, d.LeaseExpiresAt) {
		t.Errorf("saga %s changed in the move:\nbefore %+v\nafter  %+v", a.ID, a, d)
	}
	if len(a.Steps) != len(d.Steps) {
		t.Fatalf("saga %s: %d steps before, %d after", a.ID, len(a.Steps), len(d.Steps))
	}
	for i := range a.Steps {
		sa, sd := a.Steps[i], d.Steps[i]
		if sa.Status != sd.Status || sa.Attempts != sd.Attempts || !jsonEqual(sa.Output, sd.Output) ||
			(sa.Compensation == nil) != (sd.Compensation == nil) {
			t.Errorf("saga %s step %d changed in the move:\nbefore %+v\nafter  %+v", a.ID, i, sa, sd)
		}
	}
	if len(before.Events) != len(after.Events) {
		t.Fatalf("saga %s: %d events before, %d after", a.ID, len(before.Events), len(after.Events))
	}
	for i := range before.Events {
		eb, ea := before.Events[i], after.Events[i]
		if eb.ID != ea.ID || eb.Seq != ea.Seq || eb.Type != ea.Type || !eb.CreatedAt.Equal(ea.CreatedAt) {
			t.Errorf("saga %s event %d changed in the move:\nbefore %+v\nafter  %+v", a.ID, i, eb, ea)
		}
	}
	if (before.Checkpoint == nil) != (after.Checkpoint == nil) ||
		before.Checkpoint != nil && (before.Checkpoint.StepIndex != after.Checkpoint.StepIndex ||
			!jsonEqual(before.Checkpoint.Context, after.Checkpoint.Context)) {
		t.Errorf("saga %s checkpoint changed in the move: %+v, then %+v", a.ID, before.Checkpoint, after.Checkpoint)
	}
}

func equalTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

func TestConformanceInMemoryMode(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) saga.Store {
		return mustNew(t, failover.Config{
			Connect: func(context.Context) (failover.Durable, error) { return nil, errDown },
			Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
	})
}

func TestMoveToPostgres(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.store.Start(b.ctx)
	b.waitFailedConnects(t, 2)

	if b.store.Durable() {
		t.Fatal("Durable() = true while the database is down")
	}
	if h := b.store.Health(b.ctx); h.Durable || h.Mode != "memory" || h.Error == "" {
		t.Fatalf("Health while the database is down = %+v, want memory mode with the error", h)
	}

	// Sagas accepted in memory: created, claimed and run with their leases.
	var sagas []*saga.Saga
	leases := make(map[saga.ID]saga.Lease)
	for i := range 6 {
		key := ""
		if i%2 == 0 {
			key = fmt.Sprintf("client-key-%d", i)
		}
		sg := b.create(t, 1+i%3, key)
		if sg.Durable {
			t.Fatalf("saga accepted in memory has Durable = true")
		}
		sagas = append(sagas, sg)
		leases[sg.ID] = sg.Lease()
	}
	for i, sg := range sagas[:4] {
		for step := range min(i+1, sg.TotalSteps) {
			if _, err := b.progress(sg, leases[sg.ID], step); err != nil {
				t.Fatalf("Apply in memory: %v", err)
			}
		}
	}
	// Two more sagas, unleased, claimed by a runner (epoch 2 for it).
	for range 2 {
		sg := storetest.NewTestSaga("", 2)
		got, _, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: sg, Events: []saga.Event{{Type: saga.EventSagaCreated}}})
		if err != nil {
			t.Fatal(err)
		}
		sagas = append(sagas, got)
	}
	claimed, err := b.store.ClaimSagas(b.ctx, owner, time.Hour, 10)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("ClaimSagas = %d sagas, %v; want the 2 unleased", len(claimed), err)
	}
	for _, sg := range claimed {
		leases[sg.ID] = sg.Lease()
	}

	before := make(map[saga.ID]snapshot)
	for _, sg := range sagas {
		before[sg.ID] = b.snapshot(t, sg.ID)
	}

	// The database comes back.
	b.up.Store(true)
	waitFor(t, b.store.Switched(), "the switch to the database")
	if !b.store.Durable() {
		t.Fatal("Durable() = false after the switch")
	}
	b.modeMu.Lock()
	if !slices.Equal(b.modes, []bool{false, true}) {
		t.Errorf("OnModeChange calls = %v, want [false true]", b.modes)
	}
	b.modeMu.Unlock()
	if h := b.store.Health(b.ctx); !h.Durable || h.Mode != "durable" || h.Error != "" {
		t.Errorf("Health after the switch = %+v, want durable and healthy", h)
	}

	// Every saga, step, compensation, event and checkpoint is in PostgreSQL
	// exactly once.
	var wantSteps, wantComps, wantEvents, wantCheckpoints int
	for _, sg := range sagas {
		bs := before[sg.ID]
		if n := b.count(t, "sagas", sg.ID); n != 1 {
			t.Errorf("saga %s: %d rows in sagas, want 1", sg.ID, n)
		}
		comps, cps := 0, 0
		for _, st := range bs.Saga.Steps {
			if st.Compensation != nil {
				comps++
			}
		}
		if bs.Checkpoint != nil {
			cps = bs.Checkpoint.StepIndex + 1 // one per completed step
		}
		wants := map[string]int{
			"saga_steps": len(bs.Saga.Steps), "saga_compensations": comps,
			"saga_events": len(bs.Events), "saga_checkpoints": cps,
		}
		for table, want := range wants {
			if n := b.count(t, table, sg.ID); n != want {
				t.Errorf("saga %s: %d rows in %s, want %d", sg.ID, n, table, want)
			}
		}
		wantSteps += wants["saga_steps"]
		wantComps += comps
		wantEvents += wants["saga_events"]
		wantCheckpoints += cps

		after := b.snapshot(t, sg.ID)
		if !after.Saga.Durable {
			t.Errorf("saga %s: Durable = false after the switch", sg.ID)
		}
		sameSaga(t, bs, after)
	}
	totals := map[string]int{"sagas": len(sagas), "saga_steps": wantSteps, "saga_compensations": wantComps,
		"saga_events": wantEvents, "saga_checkpoints": wantCheckpoints}
	for table, want := range totals {
		if n := b.count(t, table, saga.NilID); n != want {
			t.Errorf("%d rows in %s, want %d", n, table, want)
		}
	}

	// The runners' leases still hold: their next Apply works, and a stale
	// epoch is fenced off.
	for _, sg := range sagas {
		lease := leases[sg.ID]
		if lease.Owner == "" {
			continue
		}
		step := before[sg.ID].Saga.CompletedSteps
		if step >= sg.TotalSteps {
			step = sg.TotalSteps - 1
		}
		if _, err := b.progress(sg, lease, step); err != nil {
			t.Errorf("saga %s: Apply with the lease after the switch: %v", sg.ID, err)
		}
		stale := saga.Lease{Owner: lease.Owner, Epoch: lease.Epoch + 1}
		if _, err := b.progress(sg, stale, step); !errors.Is(err, saga.ErrLeaseLost) {
			t.Errorf("saga %s: Apply with another epoch = %v, want ErrLeaseLost", sg.ID, err)
		}
	}

	// A repeated submit finds the saga accepted in memory.
	sg := storetest.NewTestSaga(owner, 1)
	sg.IdempotencyKey = "client-key-0"
	got, existed, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: sg})
	if err != nil || !existed || got.ID != sagas[0].ID {
		t.Errorf("CreateSaga with a key moved to the database = %v existed %v, %v; want saga %s", got.ID, existed, err, sagas[0].ID)
	}
	page, err := b.store.ListSagas(b.ctx, saga.Filter{Limit: 100})
	if err != nil || len(page.Sagas) != len(sagas) {
		t.Errorf("ListSagas after the switch = %d sagas, %v; want %d", len(page.Sagas), err, len(sagas))
	}
}

func TestMoveFailsMidway(t *testing.T) {
	t.Parallel()
	for _, commitFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("commit before the error %v", commitFirst), func(t *testing.T) {
			t.Parallel()
			testMoveFailsMidway(t, commitFirst)
		})
	}
}

func testMoveFailsMidway(t *testing.T, commitFirst bool) {
	made := make(chan *flakyDB, 1)
	b := setup(t, func(st *postgres.Store) failover.Durable {
		f := &flakyDB{Store: st, okImports: 2, commitFirst: commitFirst, down: true, failed: make(chan struct{})}
		made <- f
		return f
	})

	// Five sagas in memory, in creation order (the order of the move).
	var sagas []*saga.Saga
	for i := range 5 {
		sagas = append(sagas, b.create(t, 2, fmt.Sprintf("key-%d", i)))
	}
	b.up.Store(true)
	b.store.Start(b.ctx)
	var flaky *flakyDB
	select {
	case flaky = <-made:
	case <-time.After(waitTimeout):
		t.Fatal("Connect was not called")
	}
	waitFor(t, flaky.failed, "an Import to fail")

	// The first two are in the database, the third is set aside until the
	// database answers, the last two are still in memory.
	if b.store.Durable() {
		t.Fatal("Durable() = true after a failed move")
	}
	if h := b.store.Health(b.ctx); h.Durable || h.Mode != "memory" {
		t.Fatalf("Health after a failed move = %+v, want memory mode", h)
	}
	wantInDB := 2
	if commitFirst {
		wantInDB = 3
	}
	if n := b.count(t, "sagas", saga.NilID); n != wantInDB {
		t.Fatalf("%d sagas in PostgreSQL after the failure, want %d", n, wantInDB)
	}
	for _, sg := range sagas {
		if _, err := b.store.GetSaga(b.ctx, sg.ID); err != nil {
			t.Errorf("GetSaga(%s) during the outage: %v", sg.ID, err)
		}
	}
	page, err := b.store.ListSagas(b.ctx, saga.Filter{})
	if err != nil {
		t.Fatalf("ListSagas during the move: %v", err)
	}
	if len(page.Sagas) < 4 { // the one set aside is not listed
		t.Errorf("ListSagas during the move = %d sagas, want at least 4", len(page.Sagas))
	}
	seen := make(map[saga.ID]bool)
	for _, sg := range page.Sagas {
		if seen[sg.ID] {
			t.Errorf("ListSagas lists saga %s twice", sg.ID)
		}
		seen[sg.ID] = true
	}

	// Writes: a moved saga goes to the database, the one set aside refuses,
	// those in memory accept.
	wantEvents := map[saga.ID]int{}
	for i, sg := range sagas {
		wantEvents[sg.ID] = 1
		_, err := b.progress(sg, sg.Lease(), 0)
		switch i {
		case 2:
			if !errors.Is(err, saga.ErrUnavailable) {
				t.Errorf("Apply to the saga set aside = %v, want ErrUnavailable", err)
			}
		default:
			if err != nil {
				t.Errorf("Apply to saga %d during the move: %v", i, err)
			}
			wantEvents[sg.ID] = 3
		}
	}
	// A repeated submit finds each saga, wherever it is.
	for i, sg := range sagas {
		again := storetest.NewTestSaga(owner, 2)
		again.IdempotencyKey = fmt.Sprintf("key-%d", i)
		got, existed, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: again})
		if err != nil || !existed || got.ID != sg.ID {
			t.Errorf("CreateSaga with key-%d during the move = existed %v, %v", i, existed, err)
		}
	}

	// The database answers again: everything is moved, each saga once.
	flaky.setDown(false)
	waitFor(t, b.store.Switched(), "the switch to the database")
	if n := b.count(t, "sagas", saga.NilID); n != len(sagas) {
		t.Errorf("%d sagas in PostgreSQL, want %d", n, len(sagas))
	}
	for _, sg := range sagas {
		if n := b.count(t, "sagas", sg.ID); n != 1 {
			t.Errorf("saga %s: %d rows, want 1", sg.ID, n)
		}
		if n := b.count(t, "saga_events", sg.ID); n != wantEvents[sg.ID] {
			t.Errorf("saga %s: %d events, want %d", sg.ID, n, wantEvents[sg.ID])
		}
		if n := b.count(t, "saga_steps", sg.ID); n != 2 {
			t.Errorf("saga %s: %d steps, want 2", sg.ID, n)
		}
	}
	// The saga set aside is writable again, through the database.
	if _, err := b.progress(sagas[2], sagas[2].Lease(), 0); err != nil {
		t.Errorf("Apply to the saga set aside after the switch: %v", err)
	}
}

// An Import that fails because the database does not answer is tried
// again as it is: the saga keeps its idempotency key.
func TestMoveKeepsKeyAfterFailedImport(t *testing.T) {
	t.Parallel()
	made := make(chan *flakyDB, 1)
	b := setup(t, func(st *postgres.Store) failover.Durable {
		f := &flakyDB{Store: st, maxFailures: 1, down: true, failed: make(chan struct{})}
		made <- f
		return f
	})
	sg := b.create(t, 1, "keep-me")
	b.up.Store(true)
	b.store.Start(b.ctx)
	waitFor(t, b.store.Switched(), "the switch to the database")
	got, err := b.store.GetSaga(b.ctx, sg.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.IdempotencyKey != "keep-me" {
		t.Errorf("saga moved with idempotency key %q, want keep-me", got.IdempotencyKey)
	}
	if f := <-made; f.failures != 1 {
		t.Errorf("%d Imports failed, want 1", f.failures)
	}
}

func TestIdempotencyKeyTakenDuringOutage(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	mine := b.create(t, 1, "shared-key")

	// Another instance accepted a saga with the same key in the database.
	other, err := postgres.Open(b.ctx, postgres.Config{URL: b.url, MaxConns: 2, MinConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := postgres.Migrate(b.ctx, other.Pool(), nil); err != nil {
		t.Fatal(err)
	}
	theirs := storetest.NewTestSaga("instance-b", 1)
	theirs.IdempotencyKey = "shared-key"
	if _, _, err := other.CreateSaga(b.ctx, saga.NewSaga{Saga: theirs}); err != nil {
		t.Fatal(err)
	}

	b.up.Store(true)
	b.store.Start(b.ctx)
	waitFor(t, b.store.Switched(), "the switch to the database")
	if n := b.count(t, "sagas", saga.NilID); n != 2 {
		t.Fatalf("%d sagas in PostgreSQL, want both", n)
	}
	got, err := b.store.GetSaga(b.ctx, mine.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.IdempotencyKey != "" {
		t.Errorf("the saga moved keeps the key %q another saga holds", got.IdempotencyKey)
	}
}

func TestStopAndCloseWithoutDatabase(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	s := mustNew(t, failover.Config{
		Connect: func(ctx context.Context) (failover.Durable, error) {
			calls.Add(1)
			return nil, errDown
		},
		RetryEvery: time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	s.Stop() // not started: returns at once
	s.Start(t.Context())
	s.Start(t.Context()) // a second start does nothing
	deadline := time.Now().Add(waitTimeout)
	for calls.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if calls.Load() < 3 {
		t.Fatalf("Connect called %d times, want retries", calls.Load())
	}
	s.Close()
	n := calls.Load()
	if h := s.Health(t.Context()); h.Mode != "memory" || h.Durable {
		t.Errorf("Health after Close = %+v", h)
	}
	if calls.Load() != n {
		t.Error("Connect called after Close returned")
	}
}

// mustNew returns a failover store or fails the test.
func mustNew(t testing.TB, cfg failover.Config) *failover.Store {
	t.Helper()
	s, err := failover.New(cfg)
	if err != nil {
		t.Fatalf("failover.New: %v", err)
	}
	return s
}

func TestNewRequiresConnect(t *testing.T) {
	t.Parallel()
	if _, err := failover.New(failover.Config{}); err == nil || !strings.Contains(err.Error(), "Connect") {
		t.Fatalf("New without Connect = %v, want an error naming Connect", err)
	}
}
