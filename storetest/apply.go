package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

func testApply(t *testing.T, newStore factory) {
	t.Run("SagaRow", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 2), longLease)
		a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease,
			Status: saga.SagaStatusExecuting, CompletedSteps: 1, Error: "step-0 wobbled", CompensateTo: saga.SagaStatusCompensated})
		s := h.get(sg.ID)
		if s.Status != saga.SagaStatusExecuting || s.CompletedSteps != 1 || s.Error != "step-0 wobbled" || s.CompensateTo != saga.SagaStatusCompensated {
			t.Errorf("after Apply: status %s completed %d error %q compensate_to %s", s.Status, s.CompletedSteps, s.Error, s.CompensateTo)
		}
		if !near(a.Now, time.Now()) {
			t.Errorf("Applied.Now = %v, want about now", a.Now)
		}
		if s.UpdatedAt.Before(s.CreatedAt) || !near(s.UpdatedAt, a.Now) {
			t.Errorf("UpdatedAt = %v, want about Applied.Now %v", s.UpdatedAt, a.Now)
		}
		if s.LeaseExpiresAt == nil || !s.LeaseExpiresAt.Equal(a.LeaseExpiresAt) || !near(a.LeaseExpiresAt, a.Now.Add(longLease)) {
			t.Errorf("LeaseExpiresAt: saga %v, Applied %v, want about Now + %v", s.LeaseExpiresAt, a.LeaseExpiresAt, longLease)
		}
		if s.OwnerID != "w" || s.LeaseEpoch != 1 {
			t.Errorf("lease owner %q epoch %d, want w 1", s.OwnerID, s.LeaseEpoch)
		}
		if s.Durable != h.store.Health(h.ctx).Durable {
			t.Errorf("Durable = %v, Health().Durable = %v", s.Durable, !s.Durable)
		}

		// Status "" keeps the status; the other fields are always written.
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, CompletedSteps: 2})
		s = h.get(sg.ID)
		if s.Status != saga.SagaStatusExecuting || s.CompletedSteps != 2 || s.Error != "" || s.CompensateTo != "" {
			t.Errorf("after a write without status: status %s completed %d error %q compensate_to %q, want Executing 2 \"\" \"\"",
				s.Status, s.CompletedSteps, s.Error, s.CompensateTo)
		}
	})

	t.Run("Steps", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 2), longLease)
		in := NewTestSaga("", 2)
		write := func(u ...saga.StepUpdate) saga.Applied {
			return h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting, Steps: u})
		}
		a1 := write(saga.StepUpdate{Index: 0, Status: saga.StepStatusExecuting, Attempts: 1, Start: true})
		s := h.get(sg.ID)
		st := s.Steps[0]
		if st.Status != saga.StepStatusExecuting || st.Attempts != 1 || st.StartedAt == nil || st.CompletedAt != nil {
			t.Fatalf("step 0 after start = %+v", st)
		}
		if !near(*st.StartedAt, a1.Now) {
			t.Errorf("step 0 StartedAt = %v, want about %v", *st.StartedAt, a1.Now)
		}
		started := *st.StartedAt
		if s.Steps[1].Status != saga.StepStatusPending || s.Steps[1].StartedAt != nil {
			t.Errorf("step 1 changed by a write to step 0: %+v", s.Steps[1])
		}

		write(saga.StepUpdate{Index: 0, Status: saga.StepStatusCompleted, Attempts: 1, Output: json.RawMessage(`{"reserved": true, "n": 3}`), End: true})
		st = h.get(sg.ID).Steps[0]
		if st.Status != saga.StepStatusCompleted || st.CompletedAt == nil || st.StartedAt == nil || !st.StartedAt.Equal(started) {
			t.Errorf("step 0 after end = %+v (started %v)", st, started)
		}
		if !jsonEqual(st.Output, []byte(`{"n": 3, "reserved": true}`)) {
			t.Errorf("step 0 output = %s", st.Output)
		}
		if !jsonEqual(st.Input, in.Steps[0].Input) || st.Name != in.Steps[0].Name {
			t.Errorf("step 0 input %s name %q changed by writes", st.Input, st.Name)
		}

		// Output nil keeps the output; Start on a started step keeps its start.
		write(saga.StepUpdate{Index: 0, Status: saga.StepStatusCompleted, Attempts: 2, Start: true})
		st = h.get(sg.ID).Steps[0]
		if !jsonEqual(st.Output, []byte(`{"n": 3, "reserved": true}`)) || st.Attempts != 2 || !st.StartedAt.Equal(started) {
			t.Errorf("step 0 after a write without output = %+v", st)
		}

		write(saga.StepUpdate{Index: 1, Status: saga.StepStatusFailed, Attempts: 3, Error: "503 from participant", Uncertain: true, Start: true, End: true})
		st = h.get(sg.ID).Steps[1]
		if st.Status != saga.StepStatusFailed || st.Attempts != 3 || st.Error != "503 from participant" || !st.Uncertain ||
			st.StartedAt == nil || st.CompletedAt == nil {
			t.Errorf("step 1 after failure = %+v", st)
		}
		write(saga.StepUpdate{Index: 1, Status: saga.StepStatusFailed, Attempts: 3})
		if st = h.get(sg.ID).Steps[1]; st.Error != "" || st.Uncertain {
			t.Errorf("step 1 error %q uncertain %v after a write without them, want cleared", st.Error, st.Uncertain)
		}
	})

	t.Run("Compensations", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 2), longLease)
		write := func(u ...saga.CompensationUpdate) {
			h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusCompensating, Compensations: u})
		}
		write(saga.CompensationUpdate{StepIndex: 1, Status: saga.CompensationStatusExecuting, Attempts: 1, Start: true})
		s := h.get(sg.ID)
		if s.Steps[0].Compensation != nil {
			t.Errorf("step 0 has a compensation nobody wrote: %+v", s.Steps[0].Compensation)
		}
		c := s.Steps[1].Compensation
		if c == nil {
			t.Fatalf("step 1 compensation nil after its first write")
		}
		if c.StepIndex != 1 || c.Status != saga.CompensationStatusExecuting || c.Attempts != 1 || c.StartedAt == nil || c.CompletedAt != nil {
			t.Errorf("compensation after start = %+v", c)
		}
		started := *c.StartedAt

		write(saga.CompensationUpdate{StepIndex: 1, Status: saga.CompensationStatusRetrying, Attempts: 2, Error: "timeout", Start: true})
		write(saga.CompensationUpdate{StepIndex: 1, Status: saga.CompensationStatusCompleted, Attempts: 3, Output: json.RawMessage(`{"undone": true}`), End: true},
			saga.CompensationUpdate{StepIndex: 0, Status: saga.CompensationStatusFailed, Attempts: 5, Error: "gone", Start: true, End: true})
		s = h.get(sg.ID)
		c = s.Steps[1].Compensation
		if c.Status != saga.CompensationStatusCompleted || c.Attempts != 3 || c.Error != "" || c.CompletedAt == nil || !c.StartedAt.Equal(started) {
			t.Errorf("compensation 1 after end = %+v (started %v)", c, started)
		}
		if !jsonEqual(c.Output, []byte(`{"undone": true}`)) {
			t.Errorf("compensation 1 output = %s", c.Output)
		}
		c = s.Steps[0].Compensation
		if c == nil || c.StepIndex != 0 || c.Status != saga.CompensationStatusFailed || c.Attempts != 5 || c.Error != "gone" ||
			c.AttemptsBeforeRetry != 0 {
			t.Errorf("compensation 0 = %+v", c)
		}

		// An operator's retry: the attempts go on counting, the budget
		// from the attempts made before it.
		write(saga.CompensationUpdate{StepIndex: 0, Status: saga.CompensationStatusPending, Attempts: 5, AttemptsBeforeRetry: 5, Error: "gone"})
		if c := h.get(sg.ID).Steps[0].Compensation; c.Status != saga.CompensationStatusPending || c.Attempts != 5 || c.AttemptsBeforeRetry != 5 {
			t.Errorf("compensation 0 after a retry = %+v", c)
		}
		write(saga.CompensationUpdate{StepIndex: 0, Status: saga.CompensationStatusExecuting, Attempts: 6, AttemptsBeforeRetry: 5, Start: true})
		if c := h.get(sg.ID).Steps[0].Compensation; c.Status != saga.CompensationStatusExecuting || c.Attempts != 6 || c.AttemptsBeforeRetry != 5 {
			t.Errorf("compensation 0 after its first attempt since the retry = %+v", c)
		}
	})

	t.Run("Events", func(t *testing.T) {
		h := setup(t, newStore)
		created := []saga.Event{event(saga.EventSagaCreated, nil), event(saga.EventLeaseTaken, nil)}
		sg := h.create(NewTestSaga("w", 2), longLease, created...)
		preset := saga.NewID()
		more := []saga.Event{
			event(saga.EventSagaStarted, nil),
			{ID: preset, Type: saga.EventStepStarted, StepIndex: intp(0), InstanceID: "i-2", Data: json.RawMessage(`{"attempt": 1}`)},
			{Type: saga.EventStepCompleted, StepIndex: intp(0)},
		}
		a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting, Events: more})
		if a.EventSeq != 5 {
			t.Errorf("Applied.EventSeq = %d, want 5", a.EventSeq)
		}
		stored := h.events(sg.ID)
		checkEvents(t, sg.ID, stored, append(append([]saga.Event(nil), created...), more...), 1)
		if len(stored) == 5 && stored[3].ID != preset {
			t.Errorf("event 4 id = %s, want the caller's %s", stored[3].ID, preset)
		}
		a = h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease})
		if a.EventSeq != 5 {
			t.Errorf("Applied.EventSeq without events = %d, want 5", a.EventSeq)
		}
		if s := h.get(sg.ID); s.EventSeq != 5 {
			t.Errorf("EventSeq = %d, want 5", s.EventSeq)
		}
	})

	t.Run("Checkpoint", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 2), longLease)
		a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease,
			Checkpoint: &saga.Checkpoint{StepIndex: 0, Context: json.RawMessage(`{"order_id": "o-1", "step-0": {"ok": true}}`)}})
		cp := h.checkpoint(sg.ID)
		if cp == nil || cp.SagaID != sg.ID || cp.StepIndex != 0 || !near(cp.CreatedAt, a.Now) {
			t.Fatalf("checkpoint = %+v", cp)
		}
		if !jsonEqual(cp.Context, []byte(`{"step-0": {"ok": true}, "order_id": "o-1"}`)) {
			t.Errorf("checkpoint context = %s", cp.Context)
		}
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease,
			Checkpoint: &saga.Checkpoint{StepIndex: 1, Context: json.RawMessage(`{"step-1": 2}`)}})
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease})
		cp = h.checkpoint(sg.ID)
		if cp == nil || cp.StepIndex != 1 || !jsonEqual(cp.Context, []byte(`{"step-1": 2}`)) {
			t.Errorf("latest checkpoint = %+v, want the one of step 1", cp)
		}
	})

	t.Run("StartedEnded", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 1), longLease)
		a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting, Started: true})
		s := h.get(sg.ID)
		if s.StartedAt == nil || !near(*s.StartedAt, a.Now) || s.CompletedAt != nil {
			t.Fatalf("after Started: StartedAt %v CompletedAt %v", s.StartedAt, s.CompletedAt)
		}
		started := *s.StartedAt
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Started: true})
		if s = h.get(sg.ID); !s.StartedAt.Equal(started) {
			t.Errorf("a second Started moved StartedAt from %v to %v", started, s.StartedAt)
		}
		a = h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), Release: true, Status: saga.SagaStatusCompleted, CompletedSteps: 1,
			Ended: true, Wake: saga.Wake{Kind: saga.WakeNever}})
		s = h.get(sg.ID)
		if s.CompletedAt == nil || !near(*s.CompletedAt, a.Now) || s.CompletedAt.Before(started) || !s.StartedAt.Equal(started) {
			t.Errorf("after Ended: StartedAt %v CompletedAt %v", s.StartedAt, s.CompletedAt)
		}
	})

	t.Run("Wake", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 1), longLease)
		if s := h.get(sg.ID); s.NextRunAt == nil {
			t.Errorf("a new saga has NextRunAt nil, want it runnable once its lease ends")
		}
		wake := func(w saga.Wake) (saga.Applied, *saga.Saga) {
			a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Wake: w})
			return a, h.get(sg.ID)
		}
		if _, s := wake(saga.Wake{Kind: saga.WakeNever}); s.NextRunAt != nil {
			t.Errorf("WakeNever: NextRunAt = %v, want nil", s.NextRunAt)
		}
		if _, s := wake(saga.Wake{}); s.NextRunAt != nil {
			t.Errorf("WakeUnchanged after WakeNever: NextRunAt = %v, want nil", s.NextRunAt)
		}
		a, s := wake(saga.Wake{Kind: saga.WakeAfter, After: 2 * time.Hour})
		if s.NextRunAt == nil || !near(*s.NextRunAt, a.Now.Add(2*time.Hour)) {
			t.Errorf("WakeAfter 2h: NextRunAt = %v, want about %v", s.NextRunAt, a.Now.Add(2*time.Hour))
		}
		after := *s.NextRunAt
		if _, s = wake(saga.Wake{}); s.NextRunAt == nil || !s.NextRunAt.Equal(after) {
			t.Errorf("WakeUnchanged: NextRunAt = %v, want %v", s.NextRunAt, after)
		}
		at := microsecond(a.Now.Add(3 * time.Hour))
		if _, s = wake(saga.Wake{Kind: saga.WakeAt, At: at}); s.NextRunAt == nil || !s.NextRunAt.Equal(at) {
			t.Errorf("WakeAt %v: NextRunAt = %v", at, s.NextRunAt)
		}
	})

	t.Run("Release", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 1), longLease)
		a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Release: true, Status: saga.SagaStatusExecuting,
			Wake: saga.Wake{Kind: saga.WakeAfter, After: time.Hour}})
		if !a.LeaseExpiresAt.IsZero() {
			t.Errorf("Applied.LeaseExpiresAt = %v after Release, want zero", a.LeaseExpiresAt)
		}
		s := h.get(sg.ID)
		if s.OwnerID != "" || s.LeaseExpiresAt != nil || s.LeaseEpoch != 1 || s.Status != saga.SagaStatusExecuting {
			t.Errorf("after Release: owner %q expires %v epoch %d status %s, want \"\" nil 1 Executing", s.OwnerID, s.LeaseExpiresAt, s.LeaseEpoch, s.Status)
		}
		before := h.snapshot(sg.ID)
		_, err := h.store.Apply(h.ctx, fullTransition(sg.ID, sg.Lease()))
		if !errors.Is(err, saga.ErrLeaseLost) {
			t.Errorf("Apply after Release: err = %v, want ErrLeaseLost", err)
		}
		h.unchanged(before)
	})

	t.Run("LeaseLost", func(t *testing.T) { testApplyLeaseLost(t, newStore) })
	t.Run("Retried", func(t *testing.T) { testApplyRetried(t, newStore) })

	t.Run("NotFound", func(t *testing.T) {
		h := setup(t, newStore)
		h.create(NewTestSaga("w", 1), longLease)
		_, err := h.store.Apply(h.ctx, fullTransition(saga.NewID(), saga.Lease{Owner: "w", Epoch: 1}))
		isNotFound(t, "Apply to an unknown saga", err)
	})

	t.Run("Control", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 1), longLease)
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting, Started: true})
		if a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease}); a.Control != saga.ControlNone {
			t.Errorf("Applied.Control = %q with no request, want none", a.Control)
		}
		if _, err := h.store.RequestControl(h.ctx, sg.ID, saga.ControlPause); err != nil {
			t.Fatalf("RequestControl(pause): %v", err)
		}
		if got := h.claim("other", longLease, 10); len(got) != 0 {
			t.Errorf("a control request let another instance claim a leased saga")
		}
		a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting})
		if a.Control != saga.ControlPause {
			t.Errorf("Applied.Control = %q, want pause", a.Control)
		}
		if s := h.get(sg.ID); s.Control != saga.ControlPause {
			t.Errorf("saga Control = %q, want pause until cleared", s.Control)
		}
		a = h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, ClearControl: saga.ControlPause,
			Status: saga.SagaStatusPaused, Wake: saga.Wake{Kind: saga.WakeNever}})
		if a.Control != saga.ControlNone {
			t.Errorf("Applied.Control = %q after ClearControl, want none", a.Control)
		}
		if s := h.get(sg.ID); s.Control != saga.ControlNone || s.Status != saga.SagaStatusPaused {
			t.Errorf("after ClearControl: control %q status %s", s.Control, s.Status)
		}
	})

	t.Run("ClearControlKeepsNewerRequest", func(t *testing.T) {
		// The writer learned of a pause and carries it out; a cancel arrives
		// before its write. The write clears the pause only: the cancel stays
		// pending, and the released saga is runnable at once for it.
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 1), longLease)
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting, Started: true})
		if _, err := h.store.RequestControl(h.ctx, sg.ID, saga.ControlPause); err != nil {
			t.Fatalf("RequestControl(pause): %v", err)
		}
		if a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease}); a.Control != saga.ControlPause {
			t.Fatalf("Applied.Control = %q, want pause", a.Control)
		}
		if _, err := h.store.RequestControl(h.ctx, sg.ID, saga.ControlCancel); err != nil {
			t.Fatalf("RequestControl(cancel): %v", err)
		}
		a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), ClearControl: saga.ControlPause, Release: true,
			Status: saga.SagaStatusPaused, Wake: saga.Wake{Kind: saga.WakeNever}})
		if a.Control != saga.ControlCancel {
			t.Errorf("Applied.Control = %q after clearing pause, want the newer cancel", a.Control)
		}
		s := h.get(sg.ID)
		if s.Control != saga.ControlCancel || s.Status != saga.SagaStatusPaused {
			t.Errorf("after clearing pause: control %q status %s, want cancel pending on Paused", s.Control, s.Status)
		}
		if s.NextRunAt == nil {
			t.Fatal("a released saga with a pending request has no next-run time: nobody would carry the request out")
		}
		claimed := h.claim("other", longLease, 10)
		if len(claimed) != 1 || claimed[0].ID != sg.ID || claimed[0].Control != saga.ControlCancel {
			t.Fatalf("claimed %d sagas, want this one with its cancel", len(claimed))
		}
	})

	t.Run("Deadline", func(t *testing.T) {
		h := setup(t, newStore)
		none := h.create(NewTestSaga("w", 1), longLease)
		long := NewTestSaga("w", 1)
		long.Definition.TimeoutMs = time.Hour.Milliseconds()
		long = h.create(long, longLease)
		short := NewTestSaga("w", 1)
		short.Definition.TimeoutMs = 50
		short = h.create(short, longLease)

		for _, sg := range []*saga.Saga{none, long} {
			if a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease}); a.DeadlineExceeded {
				t.Errorf("DeadlineExceeded with deadline %v at %v", sg.Deadline, a.Now)
			}
		}
		var last saga.Applied
		h.eventually("the 50ms deadline to pass", func() bool {
			last = h.apply(saga.Transition{SagaID: short.ID, Lease: short.Lease(), LeaseFor: longLease})
			return last.DeadlineExceeded
		})
		s := h.get(short.ID)
		if s.Deadline == nil || !last.Now.After(*s.Deadline) {
			t.Errorf("DeadlineExceeded at %v with deadline %v", last.Now, s.Deadline)
		}
	})
}

// fullTransition writes to every part of a saga: the test of a refused
// write checks that none of it landed.
func fullTransition(id saga.ID, lease saga.Lease) saga.Transition {
	return saga.Transition{
		SagaID: id, Lease: lease, LeaseFor: longLease, Release: true,
		Status: saga.SagaStatusCompensating, CompletedSteps: 1, Error: "refused", CompensateTo: saga.SagaStatusCancelled,
		ClearControl: saga.ControlCancel, Started: true, Ended: true, Wake: saga.Wake{Kind: saga.WakeNever},
		Steps: []saga.StepUpdate{{Index: 0, Status: saga.StepStatusFailed, Attempts: 9, Output: json.RawMessage(`{"x": 1}`),
			Error: "refused", Uncertain: true, Start: true, End: true}},
		Compensations: []saga.CompensationUpdate{{StepIndex: 0, Status: saga.CompensationStatusExecuting, Attempts: 1, Start: true}},
		Events:        []saga.Event{event(saga.EventSagaCompensating, nil), event(saga.EventStepFailed, intp(0))},
		Checkpoint:    &saga.Checkpoint{StepIndex: 0, Context: json.RawMessage(`{"refused": true}`)},
	}
}

func testApplyLeaseLost(t *testing.T, newStore factory) {
	// refused checks that a write with lease is refused with ErrLeaseLost
	// and leaves the saga as it was.
	refused := func(h *harness, id saga.ID, lease saga.Lease) {
		h.t.Helper()
		before := h.snapshot(id)
		_, err := h.store.Apply(h.ctx, fullTransition(id, lease))
		if !errors.Is(err, saga.ErrLeaseLost) {
			h.t.Errorf("Apply with lease %+v: err = %v, want ErrLeaseLost", lease, err)
		}
		h.unchanged(before)
	}

	t.Run("OtherOwner", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 2), longLease, event(saga.EventSagaCreated, nil))
		h.drive(sg, saga.SagaStatusExecuting, false)
		refused(h, sg.ID, saga.Lease{Owner: "b", Epoch: 1})
		refused(h, sg.ID, saga.Lease{Owner: "", Epoch: 1})
	})

	t.Run("StaleEpoch", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 2), shortLease, event(saga.EventSagaCreated, nil))
		var again []*saga.Saga
		h.eventually("the lease to expire and the saga to be claimed again", func() bool {
			again = h.claim("a", longLease, 10)
			return len(again) > 0
		})
		if len(again) != 1 || again[0].ID != sg.ID || again[0].LeaseEpoch != 2 || again[0].OwnerID != "a" {
			t.Fatalf("reclaim = %v, want the saga with epoch 2", again)
		}
		refused(h, sg.ID, saga.Lease{Owner: "a", Epoch: 1})
		refused(h, sg.ID, saga.Lease{Owner: "a", Epoch: 3})
		h.apply(saga.Transition{SagaID: sg.ID, Lease: again[0].Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting})
	})

	t.Run("Expired", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 2), shortLease, event(saga.EventSagaCreated, nil))
		h.waitPast("the lease to expire", *sg.LeaseExpiresAt)
		refused(h, sg.ID, sg.Lease())
		// Expired but not taken: still the store's to give out.
		if got := h.claim("b", longLease, 10); len(got) != 1 || got[0].ID != sg.ID || got[0].LeaseEpoch != 2 {
			t.Errorf("claim after expiry = %v, want the saga with epoch 2", ids(got))
		}
	})

	t.Run("Unleased", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 2), 0, event(saga.EventSagaCreated, nil))
		refused(h, sg.ID, saga.Lease{Owner: "a", Epoch: 0})
		refused(h, sg.ID, saga.Lease{Owner: "a", Epoch: 1})
		refused(h, sg.ID, saga.Lease{})
	})

	t.Run("AfterReclaimByOther", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 2), shortLease, event(saga.EventSagaCreated, nil))
		var got []*saga.Saga
		h.eventually("another instance to claim the expired saga", func() bool {
			got = h.claim("b", longLease, 10)
			return len(got) > 0
		})
		h.apply(saga.Transition{SagaID: sg.ID, Lease: got[0].Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting,
			Events: []saga.Event{event(saga.EventLeaseTaken, nil)}})
		refused(h, sg.ID, sg.Lease())
	})
}

// testApplyRetried: a writer whose write committed but whose answer was
// lost (a database connection broken after the commit) sends the same
// transition again, with the same event ids; the store recognises it by
// its first event and writes nothing twice, whoever holds the lease by
// then.
func testApplyRetried(t *testing.T, newStore factory) {
	retried := func(t *testing.T, h *harness, tr saga.Transition, first saga.Applied) {
		t.Helper()
		before := h.snapshot(tr.SagaID)
		again, err := h.store.Apply(h.ctx, tr)
		if err != nil {
			t.Fatalf("Apply of a transition written already: %v, want its answer", err)
		}
		if again.EventSeq != first.EventSeq {
			t.Errorf("EventSeq of the retry = %d, want %d (that of the write)", again.EventSeq, first.EventSeq)
		}
		h.unchanged(before)
	}
	t.Run("SameWriter", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 2), longLease, event(saga.EventSagaCreated, nil))
		tr := saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting,
			Steps:  []saga.StepUpdate{{Index: 0, Status: saga.StepStatusExecuting, Attempts: 1, Start: true}},
			Events: []saga.Event{event(saga.EventSagaStarted, nil), event(saga.EventStepStarted, intp(0))}}
		for i := range tr.Events {
			tr.Events[i].ID = saga.NewID()
		}
		first := h.apply(tr)
		if first.EventSeq != 3 {
			t.Fatalf("EventSeq = %d, want 3", first.EventSeq)
		}
		retried(t, h, tr, first)
		if n := len(h.events(sg.ID)); n != 3 {
			t.Errorf("%d events after the retry, want 3", n)
		}
		// The writer goes on as if its first attempt had been answered.
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusCompleted,
			Events: []saga.Event{event(saga.EventSagaCompleted, nil)}})
	})
	t.Run("AfterTheLeasePassed", func(t *testing.T) {
		h := setup(t, newStore)
		// Created under a long lease, so the first write cannot be late
		// however slow the machine; that write leaves the short one.
		sg := h.create(NewTestSaga("a", 2), longLease, event(saga.EventSagaCreated, nil))
		tr := saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: shortLease, Status: saga.SagaStatusExecuting,
			Events: []saga.Event{event(saga.EventSagaStarted, nil)}}
		tr.Events[0].ID = saga.NewID()
		first := h.apply(tr)
		var got []*saga.Saga
		h.eventually("another instance to claim the expired saga", func() bool {
			got = h.claim("b", longLease, 10)
			return len(got) > 0
		})
		retried(t, h, tr, first)
		// A transition the store has not seen is refused, as ever.
		fresh := tr
		fresh.Events = []saga.Event{event(saga.EventSagaStarted, nil)}
		fresh.Events[0].ID = saga.NewID()
		if _, err := h.store.Apply(h.ctx, fresh); !errors.Is(err, saga.ErrLeaseLost) {
			t.Errorf("Apply of a new transition under the lost lease: %v, want ErrLeaseLost", err)
		}
	})
}
