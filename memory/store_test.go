package memory_test

import (
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) saga.Store { return memory.New(memory.Config{}) })
}

// bundle is one test's store and its hand-driven clock.
type bundle struct {
	store *memory.Store
	clock *clock
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func setup(t *testing.T) bundle {
	t.Helper()
	t.Parallel()
	c := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)}
	return bundle{store: memory.New(memory.Config{Now: c.Now}), clock: c}
}

// populate creates a saga leased to "w" and moves it along: one step done,
// three events, a checkpoint, a compensation row.
func populate(t *testing.T, s *memory.Store) *saga.Saga {
	t.Helper()
	ctx := t.Context()
	in := storetest.NewTestSaga("w", 2)
	in.IdempotencyKey = "key-" + in.ID.String()
	in.Definition.IdempotencyKey = in.IdempotencyKey
	sg, _, err := s.CreateSaga(ctx, saga.NewSaga{Saga: in, LeaseFor: time.Minute,
		Events: []saga.Event{{Type: saga.EventSagaCreated}}})
	if err != nil {
		t.Fatalf("CreateSaga: %v", err)
	}
	_, err = s.Apply(ctx, saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Minute,
		Status: saga.SagaStatusExecuting, Started: true, CompletedSteps: 1,
		Steps:         []saga.StepUpdate{{Index: 0, Status: saga.StepStatusCompleted, Attempts: 1, Output: json.RawMessage(`{"ok":true}`), Start: true, End: true}},
		Compensations: []saga.CompensationUpdate{{StepIndex: 1, Status: saga.CompensationStatusPending}},
		Events:        []saga.Event{{Type: saga.EventSagaStarted}, {Type: saga.EventStepCompleted, StepIndex: new(0)}},
		Checkpoint:    &saga.Checkpoint{StepIndex: 0, Context: json.RawMessage(`{"step-0":{"ok":true}}`)},
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	got, err := s.GetSaga(ctx, sg.ID)
	if err != nil {
		t.Fatalf("GetSaga: %v", err)
	}
	return got
}

func TestExportImportDelete(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	first := populate(t, b.store)
	b.clock.Advance(time.Second)
	second := populate(t, b.store)

	recs, err := b.store.Export(ctx)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if len(recs) != 2 || recs[0].Saga.ID != first.ID || recs[1].Saga.ID != second.ID {
		t.Fatalf("Export = %d records, want the two sagas oldest first", len(recs))
	}
	rec := recs[0]
	if !reflect.DeepEqual(rec.Saga, first) {
		t.Errorf("exported saga = %+v\nwant %+v", rec.Saga, first)
	}
	if len(rec.Events) != 3 || rec.Events[2].Seq != 3 || len(rec.Checkpoints) != 1 || rec.Checkpoints[0].StepIndex != 0 {
		t.Errorf("exported %d events, %d checkpoints", len(rec.Events), len(rec.Checkpoints))
	}
	// The records are copies.
	rec.Saga.Steps[0].Output[2] = 'X'
	rec.Events[0].Type = saga.EventSagaFailed
	if again, _ := b.store.GetSaga(ctx, first.ID); !reflect.DeepEqual(again, first) {
		t.Errorf("changing an exported record changed the store")
	}
	recs, _ = b.store.Export(ctx)

	// Into a second store, as is.
	dst := memory.New(memory.Config{Now: b.clock.Now})
	for _, r := range recs {
		existed, err := dst.Import(ctx, r)
		if err != nil || existed {
			t.Fatalf("Import = %v, %v", existed, err)
		}
	}
	if existed, err := dst.Import(ctx, recs[0]); err != nil || !existed {
		t.Errorf("second Import = %v, %v; want existed", existed, err)
	}
	clash := recs[1]
	clash.Saga = &saga.Saga{ID: saga.NewID(), IdempotencyKey: recs[0].Saga.IdempotencyKey, Status: saga.SagaStatusCreated}
	if _, err := dst.Import(ctx, clash); err == nil {
		t.Errorf("Import of a record with another saga's idempotency key succeeded")
	}
	got, err := dst.GetSaga(ctx, first.ID)
	if err != nil || !reflect.DeepEqual(got, first) {
		t.Errorf("imported saga = %+v, %v\nwant %+v", got, err, first)
	}
	evs, err := dst.ListEvents(ctx, first.ID, 0, 0)
	if err != nil || !reflect.DeepEqual(evs, recs[0].Events) {
		t.Errorf("imported events = %+v, %v", evs, err)
	}
	cp, err := dst.LatestCheckpoint(ctx, first.ID)
	if err != nil || cp == nil || !reflect.DeepEqual(*cp, recs[0].Checkpoints[0]) {
		t.Errorf("imported checkpoint = %+v, %v", cp, err)
	}
	// The lease came along: its holder writes on, numbering events after the imported ones.
	a, err := dst.Apply(ctx, saga.Transition{SagaID: first.ID, Lease: first.Lease(), LeaseFor: time.Minute,
		Events: []saga.Event{{Type: saga.EventStepStarted, StepIndex: new(1)}}})
	if err != nil || a.EventSeq != 4 {
		t.Errorf("Apply after import = %+v, %v; want event seq 4", a, err)
	}
	// The idempotency key came along too.
	dup := storetest.NewTestSaga("", 1)
	dup.IdempotencyKey = first.IdempotencyKey
	if s, existed, err := dst.CreateSaga(ctx, saga.NewSaga{Saga: dup}); err != nil || !existed || s.ID != first.ID {
		t.Errorf("CreateSaga with an imported key = %v, %v, %v; want the imported saga", s, existed, err)
	}

	// Delete removes the saga and its rows from the first store.
	if err := b.store.Delete(ctx, first.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := b.store.Delete(ctx, first.ID); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("second Delete: err = %v, want ErrNotFound", err)
	}
	if _, err := b.store.GetSaga(ctx, first.ID); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("GetSaga after Delete: err = %v", err)
	}
	if _, err := b.store.ListEvents(ctx, first.ID, 0, 0); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("ListEvents after Delete: err = %v", err)
	}
	if recs, _ := b.store.Export(ctx); len(recs) != 1 || recs[0].Saga.ID != second.ID {
		t.Errorf("Export after Delete = %d records, want the second saga", len(recs))
	}
	// Its key is free again.
	reuse := storetest.NewTestSaga("", 1)
	reuse.IdempotencyKey = first.IdempotencyKey
	if s, existed, err := b.store.CreateSaga(ctx, saga.NewSaga{Saga: reuse}); err != nil || existed || s.ID != reuse.ID {
		t.Errorf("CreateSaga with a deleted saga's key = %v, %v, %v; want a new saga", s, existed, err)
	}
	// A deleted saga is no longer claimable.
	claimed, err := b.store.ClaimSagas(ctx, "c", time.Minute, 10)
	if err != nil {
		t.Fatalf("ClaimSagas: %v", err)
	}
	for _, s := range claimed {
		if s.ID == first.ID {
			t.Errorf("a deleted saga was claimed")
		}
	}
}

func TestImportRunnable(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	sg := populate(t, b.store)
	recs, _ := b.store.Export(ctx)
	dst := memory.New(memory.Config{Now: b.clock.Now})
	if _, err := dst.Import(ctx, recs[0]); err != nil {
		t.Fatalf("Import: %v", err)
	}
	if got, _ := dst.ClaimSagas(ctx, "other", time.Minute, 10); len(got) != 0 {
		t.Errorf("claimed a saga whose imported lease is live")
	}
	b.clock.Advance(time.Minute)
	got, err := dst.ClaimSagas(ctx, "other", time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].ID != sg.ID || got[0].LeaseEpoch != 2 {
		t.Fatalf("claim after the imported lease expired = %v, %v", got, err)
	}
}

func TestClock(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	in := storetest.NewTestSaga("w", 1)
	in.Definition.TimeoutMs = 1000
	sg, _, err := b.store.CreateSaga(ctx, saga.NewSaga{Saga: in, LeaseFor: 10 * time.Second})
	if err != nil {
		t.Fatalf("CreateSaga: %v", err)
	}
	start := time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC) // at microseconds
	if !sg.CreatedAt.Equal(start) || sg.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want the injected clock at microseconds %v", sg.CreatedAt, start)
	}
	if !sg.Deadline.Equal(start.Add(time.Second)) || !sg.LeaseExpiresAt.Equal(start.Add(10*time.Second)) {
		t.Errorf("deadline %v lease %v", sg.Deadline, sg.LeaseExpiresAt)
	}
	b.clock.Advance(999 * time.Millisecond)
	a, err := b.store.Apply(ctx, saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: 10 * time.Second})
	if err != nil || a.DeadlineExceeded {
		t.Fatalf("Apply before the deadline = %+v, %v", a, err)
	}
	b.clock.Advance(2 * time.Millisecond)
	a, err = b.store.Apply(ctx, saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: 10 * time.Second,
		Wake: saga.Wake{Kind: saga.WakeAt, At: start.Add(time.Hour + 999)}})
	if err != nil || !a.DeadlineExceeded {
		t.Fatalf("Apply after the deadline = %+v, %v", a, err)
	}
	got, _ := b.store.GetSaga(ctx, sg.ID)
	if !got.NextRunAt.Equal(start.Add(time.Hour)) {
		t.Errorf("NextRunAt = %v, want WakeAt truncated to microseconds", got.NextRunAt)
	}
	b.clock.Advance(10 * time.Second)
	if _, err := b.store.Apply(ctx, saga.Transition{SagaID: sg.ID, Lease: sg.Lease()}); !errors.Is(err, saga.ErrLeaseLost) {
		t.Errorf("Apply after the lease expired by the store clock: err = %v", err)
	}
	if h := b.store.Health(ctx); h.Durable || h.Mode != "memory" {
		t.Errorf("Health = %+v", h)
	}
}

func TestApplyStepIndexOutOfRange(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	sg := populate(t, b.store)
	before, _ := b.store.GetSaga(ctx, sg.ID)
	for _, tr := range []saga.Transition{
		{Steps: []saga.StepUpdate{{Index: 2}}},
		{Compensations: []saga.CompensationUpdate{{StepIndex: -1}}},
	} {
		tr.SagaID, tr.Lease, tr.LeaseFor, tr.Status = sg.ID, sg.Lease(), time.Minute, saga.SagaStatusFailed
		tr.Events = []saga.Event{{Type: saga.EventSagaFailed}}
		if _, err := b.store.Apply(ctx, tr); err == nil {
			t.Errorf("Apply with a bad index succeeded")
		}
	}
	if after, _ := b.store.GetSaga(ctx, sg.ID); !reflect.DeepEqual(before, after) {
		t.Errorf("a refused Apply changed the saga")
	}
}

func TestHoldsAndSagaOfKey(t *testing.T) {
	b := setup(t)
	ctx := t.Context()
	sg := populate(t, b.store)
	if !b.store.Holds(sg.ID) || b.store.Holds(saga.NewID()) {
		t.Errorf("Holds: true for the saga, false for another id, wanted")
	}
	got, err := b.store.SagaOfKey(ctx, sg.IdempotencyKey)
	if err != nil || !reflect.DeepEqual(got, sg) {
		t.Errorf("SagaOfKey(%q) = %+v, %v; want the saga", sg.IdempotencyKey, got, err)
	}
	for _, key := range []string{"", "no-such-key"} {
		if _, err := b.store.SagaOfKey(ctx, key); !errors.Is(err, saga.ErrNotFound) {
			t.Errorf("SagaOfKey(%q) = %v, want ErrNotFound", key, err)
		}
	}
	if err := b.store.Delete(ctx, sg.ID); err != nil {
		t.Fatal(err)
	}
	if b.store.Holds(sg.ID) {
		t.Error("Holds after Delete = true")
	}
	if _, err := b.store.SagaOfKey(ctx, sg.IdempotencyKey); !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("SagaOfKey after Delete = %v, want ErrNotFound", err)
	}
}
