package postgres_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/storetest"
)

// importRecord returns a saga in the middle of compensating, as a memory
// store would hold it: lease, epoch, times, steps with compensations,
// events and two checkpoints. Times carry nanoseconds, which the database
// rounds to microseconds.
func importRecord() saga.SagaRecord {
	base := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	at := func(d time.Duration) *time.Time { t := base.Add(d); return &t }
	sg := storetest.NewTestSaga("memory-instance", 2)
	sg.IdempotencyKey = "imported-key"
	sg.Definition.IdempotencyKey = sg.IdempotencyKey
	sg.Definition.TimeoutMs = 60_000
	sg.Status = saga.SagaStatusCompensating
	sg.CompensateTo = saga.SagaStatusCompensated
	sg.Control = saga.ControlCancel
	sg.CompletedSteps = 1
	sg.Error = "step-1: 503 from participant"
	sg.Deadline = at(time.Minute)
	sg.LeaseExpiresAt = at(-time.Hour) // expired: claimable once imported
	sg.LeaseEpoch = 3
	sg.NextRunAt = at(time.Second)
	sg.EventSeq = 4
	sg.CreatedAt = base
	sg.UpdatedAt = *at(3 * time.Second)
	sg.StartedAt = at(time.Millisecond)
	sg.Steps[0].Status = saga.StepStatusCompleted
	sg.Steps[0].Attempts = 1
	sg.Steps[0].Output = json.RawMessage(`{"reserved": true}`)
	sg.Steps[0].StartedAt, sg.Steps[0].CompletedAt = at(time.Millisecond), at(2*time.Millisecond)
	sg.Steps[0].Compensation = &saga.Compensation{StepIndex: 0, Status: saga.CompensationStatusExecuting, Attempts: 1, StartedAt: at(3 * time.Second)}
	sg.Steps[1].Status = saga.StepStatusFailed
	sg.Steps[1].Attempts = 2
	sg.Steps[1].Error = "503 from participant"
	sg.Steps[1].Uncertain = true
	sg.Steps[1].StartedAt, sg.Steps[1].CompletedAt = at(3*time.Millisecond), at(2*time.Second)
	sg.Steps[1].Compensation = &saga.Compensation{StepIndex: 1, Status: saga.CompensationStatusCompleted, Attempts: 1,
		Output: json.RawMessage(`{"undone": 1}`), StartedAt: at(2 * time.Second), CompletedAt: at(2500 * time.Millisecond)}
	sg.Durable = false
	events := []saga.Event{
		{ID: saga.NewID(), SagaID: sg.ID, Seq: 1, Type: saga.EventSagaCreated, InstanceID: "memory-instance", CreatedAt: base},
		{ID: saga.NewID(), SagaID: sg.ID, Seq: 2, Type: saga.EventStepCompleted, StepIndex: new(0), CreatedAt: *at(2 * time.Millisecond)},
		{ID: saga.NewID(), SagaID: sg.ID, Seq: 3, Type: saga.EventStepFailed, StepIndex: new(1), Data: json.RawMessage(`{"status": 503}`), CreatedAt: *at(2 * time.Second)},
		{ID: saga.NewID(), SagaID: sg.ID, Seq: 4, Type: saga.EventSagaCompensating, InstanceID: "memory-instance", CreatedAt: *at(2 * time.Second)},
	}
	checkpoints := []saga.Checkpoint{
		{SagaID: sg.ID, StepIndex: 0, Context: json.RawMessage(`{"step-0": {"reserved": true}}`), CreatedAt: *at(2 * time.Millisecond)},
		{SagaID: sg.ID, StepIndex: 1, Context: json.RawMessage(`{"compensated": [1]}`), CreatedAt: *at(2500 * time.Millisecond)},
	}
	return saga.SagaRecord{Saga: sg, Events: events, Checkpoints: checkpoints}
}

// normal returns v as generic JSON: JSON fields compared by value, times
// by instant at microsecond precision (v's times must be truncated).
func normal(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImport(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	rec := importRecord()

	existed, err := s.Import(ctx, rec)
	if err != nil || existed {
		t.Fatalf("Import = existed %v, %v", existed, err)
	}

	// What was imported reads back as it was (at microsecond precision).
	want := *rec.Saga
	want.Durable = true
	truncateTimes(&want)
	got, err := s.GetSaga(ctx, rec.Saga.ID)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := normal(t, got), normal(t, &want); !reflect.DeepEqual(g, w) {
		t.Errorf("imported saga reads back as\n%v\nwant\n%v", g, w)
	}
	events, err := s.ListEvents(ctx, rec.Saga.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantEvents := append([]saga.Event(nil), rec.Events...)
	for i := range wantEvents {
		wantEvents[i].CreatedAt = wantEvents[i].CreatedAt.Truncate(time.Microsecond)
	}
	if g, w := normal(t, events), normal(t, wantEvents); !reflect.DeepEqual(g, w) {
		t.Errorf("imported events read back as\n%v\nwant\n%v", g, w)
	}
	cp, err := s.LatestCheckpoint(ctx, rec.Saga.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantCP := rec.Checkpoints[1]
	wantCP.CreatedAt = wantCP.CreatedAt.Truncate(time.Microsecond)
	if g, w := normal(t, cp), normal(t, wantCP); !reflect.DeepEqual(g, w) {
		t.Errorf("latest checkpoint = %v, want %v", g, w)
	}

	// Importing again (even other content under the same id) writes
	// nothing.
	again := importRecord()
	again.Saga.ID = rec.Saga.ID
	again.Saga.Name = "changed"
	existed, err = s.Import(ctx, again)
	if err != nil || !existed {
		t.Fatalf("second Import = existed %v, %v; want existed", existed, err)
	}
	if after, err := s.GetSaga(ctx, rec.Saga.ID); err != nil || !reflect.DeepEqual(after, got) {
		t.Errorf("second Import changed the saga (%v)", err)
	}
	if evs, err := s.ListEvents(ctx, rec.Saga.ID, 0, 0); err != nil || len(evs) != 4 {
		t.Errorf("events after the second Import: %d (%v), want 4", len(evs), err)
	}

	// Another saga with the same idempotency key is refused.
	other := importRecord()
	if existed, err := s.Import(ctx, other); err == nil || existed {
		t.Errorf("Import of another saga with the same key = existed %v, %v; want an error", existed, err)
	}
	if _, err := s.GetSaga(ctx, other.Saga.ID); err == nil {
		t.Errorf("the refused saga was stored")
	}

	// The imported lease has expired: the saga is claimable, the next
	// epoch fences the instance that held it in memory.
	claimed, err := s.ClaimSagas(ctx, "db-instance", time.Hour, 10)
	if err != nil || len(claimed) != 1 || claimed[0].ID != rec.Saga.ID || claimed[0].LeaseEpoch != 4 {
		t.Fatalf("claim after import = %d sagas (%v), want the imported one at epoch 4", len(claimed), err)
	}
	if _, err := s.Apply(ctx, saga.Transition{SagaID: rec.Saga.ID, Lease: rec.Saga.Lease(), LeaseFor: time.Hour}); err == nil {
		t.Errorf("Apply with the imported (stale) lease succeeded")
	}
	a, err := s.Apply(ctx, saga.Transition{SagaID: rec.Saga.ID, Lease: claimed[0].Lease(), LeaseFor: time.Hour,
		Status: saga.SagaStatusCompensated, CompletedSteps: 1, Ended: true, Release: true, ClearControl: saga.ControlCancel,
		Events: []saga.Event{{Type: saga.EventSagaCompensated}}})
	// Its event and the OperatorRequestCarriedOut event that closes the
	// pending cancel follow the imported four.
	if err != nil || a.EventSeq != 6 {
		t.Errorf("Apply by the new holder: EventSeq %d, %v; want 6", a.EventSeq, err)
	}
}

// truncateTimes rounds every time of sg down to microseconds.
func truncateTimes(sg *saga.Saga) {
	tr := func(p *time.Time) *time.Time {
		if p == nil {
			return nil
		}
		t := p.Truncate(time.Microsecond)
		return &t
	}
	sg.CreatedAt = sg.CreatedAt.Truncate(time.Microsecond)
	sg.UpdatedAt = sg.UpdatedAt.Truncate(time.Microsecond)
	sg.Deadline, sg.LeaseExpiresAt, sg.NextRunAt = tr(sg.Deadline), tr(sg.LeaseExpiresAt), tr(sg.NextRunAt)
	sg.StartedAt, sg.CompletedAt = tr(sg.StartedAt), tr(sg.CompletedAt)
	for i := range sg.Steps {
		st := &sg.Steps[i]
		st.StartedAt, st.CompletedAt = tr(st.StartedAt), tr(st.CompletedAt)
		if c := st.Compensation; c != nil {
			c.StartedAt, c.CompletedAt = tr(c.StartedAt), tr(c.CompletedAt)
		}
	}
}
