package storetest

import (
	"encoding/json"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

func testCreateSaga(t *testing.T, newStore factory) {
	t.Run("RoundTrip", func(t *testing.T) {
		h := setup(t, newStore)
		in := NewTestSaga("", 3)
		in.Definition.IdempotencyKey = "round-trip"
		in.IdempotencyKey = "round-trip"
		want := NewTestSaga("", 3) // an untouched copy of the input
		got := h.create(in, 0)

		durable := h.store.Health(h.ctx).Durable
		for _, s := range []*saga.Saga{got, h.get(in.ID)} {
			checkRoundTrip(t, s, in, want)
			if s.Durable != durable {
				t.Errorf("Durable = %v, Health().Durable = %v", s.Durable, durable)
			}
			if s.CreatedAt.IsZero() || s.UpdatedAt.IsZero() {
				t.Errorf("CreatedAt %v, UpdatedAt %v: want both set by the store", s.CreatedAt, s.UpdatedAt)
			}
			if !near(s.CreatedAt, time.Now()) {
				t.Errorf("CreatedAt = %v, want about now", s.CreatedAt)
			}
			if s.UpdatedAt.Before(s.CreatedAt) {
				t.Errorf("UpdatedAt %v before CreatedAt %v", s.UpdatedAt, s.CreatedAt)
			}
			if s.StartedAt != nil || s.CompletedAt != nil {
				t.Errorf("StartedAt %v, CompletedAt %v: want nil on a new saga", s.StartedAt, s.CompletedAt)
			}
			if s.Deadline != nil {
				t.Errorf("Deadline = %v without timeout_ms, want nil", s.Deadline)
			}
			if s.LeaseExpiresAt != nil || s.LeaseEpoch != 0 {
				t.Errorf("lease %v epoch %d without LeaseFor, want none", s.LeaseExpiresAt, s.LeaseEpoch)
			}
			if s.Control != saga.ControlNone || s.CompletedSteps != 0 || s.Error != "" {
				t.Errorf("Control %q CompletedSteps %d Error %q, want zero", s.Control, s.CompletedSteps, s.Error)
			}
		}
		if !got.CreatedAt.Equal(h.get(in.ID).CreatedAt) {
			t.Errorf("CreatedAt of CreateSaga %v differs from GetSaga %v", got.CreatedAt, h.get(in.ID).CreatedAt)
		}
	})

	t.Run("Lease", func(t *testing.T) {
		h := setup(t, newStore)
		got := h.create(NewTestSaga("owner-a", 1), longLease)
		for _, s := range []*saga.Saga{got, h.get(got.ID)} {
			if s.OwnerID != "owner-a" || s.LeaseEpoch != 1 {
				t.Errorf("owner %q epoch %d, want owner-a epoch 1", s.OwnerID, s.LeaseEpoch)
			}
			if s.LeaseExpiresAt == nil || !near(*s.LeaseExpiresAt, s.CreatedAt.Add(longLease)) {
				t.Errorf("LeaseExpiresAt = %v, want about CreatedAt + %v", s.LeaseExpiresAt, longLease)
			}
		}
		// The creator holds the lease: its first write goes through.
		h.apply(saga.Transition{SagaID: got.ID, Lease: saga.Lease{Owner: "owner-a", Epoch: 1}, LeaseFor: longLease,
			Status: saga.SagaStatusExecuting, Started: true})
		if claimed := h.claim("owner-b", longLease, 10); len(claimed) != 0 {
			t.Errorf("claimed %d sagas with a live lease, want 0", len(claimed))
		}
	})

	t.Run("StartedExecuting", func(t *testing.T) {
		// The engine creates a saga already running its first step: the
		// store stamps the saga and that step as started, from its clock.
		h := setup(t, newStore)
		in := NewTestSaga("owner-a", 2)
		in.Status = saga.SagaStatusExecuting
		in.Steps[0].Status = saga.StepStatusExecuting
		in.Steps[0].Attempts = 1
		got := h.create(in, longLease)
		for _, s := range []*saga.Saga{got, h.get(got.ID)} {
			if s.StartedAt == nil || !near(*s.StartedAt, s.CreatedAt) {
				t.Errorf("saga StartedAt = %v, want about CreatedAt %v", s.StartedAt, s.CreatedAt)
			}
			if len(s.Steps) == 2 {
				if s.Steps[0].StartedAt == nil {
					t.Error("step 0 created Executing has no StartedAt")
				}
				if s.Steps[1].StartedAt != nil {
					t.Errorf("pending step 1 has StartedAt %v", s.Steps[1].StartedAt)
				}
			}
		}
	})

	t.Run("Deadline", func(t *testing.T) {
		h := setup(t, newStore)
		in := NewTestSaga("", 1)
		in.Definition.TimeoutMs = 60_000
		got := h.create(in, 0)
		for _, s := range []*saga.Saga{got, h.get(in.ID)} {
			if s.Deadline == nil {
				t.Fatalf("Deadline nil with timeout_ms 60000")
			}
			if d := s.Deadline.Sub(s.CreatedAt); d < 59*time.Second || d > 61*time.Second {
				t.Errorf("Deadline - CreatedAt = %v, want 60s", d)
			}
			if s.Definition.TimeoutMs != 60_000 {
				t.Errorf("Definition.TimeoutMs = %d, want 60000", s.Definition.TimeoutMs)
			}
		}
	})

	t.Run("Events", func(t *testing.T) {
		h := setup(t, newStore)
		preset := saga.NewID()
		evs := []saga.Event{
			event(saga.EventSagaCreated, nil),
			{ID: preset, Type: saga.EventStepStarted, StepIndex: intp(0), InstanceID: "i-1"},
			event(saga.EventLeaseTaken, nil),
		}
		got := h.create(NewTestSaga("o", 2), longLease, evs...)
		if got.EventSeq != 3 {
			t.Errorf("EventSeq = %d, want 3", got.EventSeq)
		}
		if s := h.get(got.ID); s.EventSeq != 3 {
			t.Errorf("GetSaga EventSeq = %d, want 3", s.EventSeq)
		}
		stored := h.events(got.ID)
		checkEvents(t, got.ID, stored, evs, 1)
		if len(stored) == 3 && stored[1].ID != preset {
			t.Errorf("event 2 id = %s, want the caller's %s", stored[1].ID, preset)
		}
	})

	t.Run("NoEvents", func(t *testing.T) {
		h := setup(t, newStore)
		got := h.create(NewTestSaga("", 1), 0)
		if got.EventSeq != 0 {
			t.Errorf("EventSeq = %d, want 0", got.EventSeq)
		}
		if evs := h.events(got.ID); len(evs) != 0 {
			t.Errorf("ListEvents = %d events, want 0", len(evs))
		}
	})

	t.Run("IdempotencyKey", func(t *testing.T) {
		h := setup(t, newStore)
		first := NewTestSaga("", 2)
		first.IdempotencyKey = "order-17"
		first.Definition.IdempotencyKey = first.IdempotencyKey
		created := h.create(first, 0, event(saga.EventSagaCreated, nil))

		second := NewTestSaga("other", 3)
		second.Name = "another-name"
		second.Definition.Name = second.Name
		second.IdempotencyKey = first.IdempotencyKey
		second.Definition.IdempotencyKey = first.IdempotencyKey
		got, existed, err := h.store.CreateSaga(h.ctx, saga.NewSaga{Saga: second, LeaseFor: longLease,
			Events: []saga.Event{event(saga.EventSagaCreated, nil), event(saga.EventLeaseTaken, nil)}})
		if err != nil {
			t.Fatalf("second CreateSaga: %v", err)
		}
		if !existed {
			t.Errorf("second CreateSaga with the same key: existed = false, want true")
		}
		if got.ID != first.ID || got.Name != first.Name || got.TotalSteps != 2 {
			t.Errorf("second CreateSaga returned %s %q (%d steps), want the first saga %s %q (2 steps)",
				got.ID, got.Name, got.TotalSteps, first.ID, first.Name)
		}
		if !got.CreatedAt.Equal(created.CreatedAt) {
			t.Errorf("CreatedAt = %v, want the first saga's %v", got.CreatedAt, created.CreatedAt)
		}
		_, err = h.store.GetSaga(h.ctx, second.ID)
		isNotFound(t, "GetSaga of the duplicate", err)
		if evs := h.events(first.ID); len(evs) != 1 {
			t.Errorf("first saga has %d events, want 1 (nothing written by the duplicate)", len(evs))
		}
		s := h.get(first.ID)
		if s.OwnerID != "" || s.LeaseExpiresAt != nil || s.LeaseEpoch != 0 {
			t.Errorf("duplicate create changed the lease: owner %q until %v epoch %d", s.OwnerID, s.LeaseExpiresAt, s.LeaseEpoch)
		}
		page, err := h.store.ListSagas(h.ctx, saga.Filter{})
		if err != nil {
			t.Fatalf("ListSagas: %v", err)
		}
		if len(page.Sagas) != 1 {
			t.Errorf("store holds %d sagas, want 1", len(page.Sagas))
		}
	})

	t.Run("IdempotencyKeyConcurrent", func(t *testing.T) {
		h := setup(t, newStore)
		const n = 8
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			fresh   int
			winners = map[saga.ID]bool{}
			errs    []error
		)
		for range n {
			wg.Go(func() {
				sg := NewTestSaga("", 1)
				sg.IdempotencyKey = "same-key"
				sg.Definition.IdempotencyKey = sg.IdempotencyKey
				got, existed, err := h.store.CreateSaga(h.ctx, saga.NewSaga{Saga: sg, Events: []saga.Event{event(saga.EventSagaCreated, nil)}})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				winners[got.ID] = true
				if !existed {
					fresh++
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("concurrent CreateSaga with one key: %v", errors.Join(errs...))
		}
		if fresh != 1 || len(winners) != 1 {
			t.Fatalf("%d creates answered existed = false and %d distinct sagas came back, want 1 and 1", fresh, len(winners))
		}
		for id := range winners {
			if evs := h.events(id); len(evs) != 1 {
				t.Errorf("the saga has %d events, want 1", len(evs))
			}
		}
	})

	t.Run("NoKeyNoDedup", func(t *testing.T) {
		h := setup(t, newStore)
		a := h.create(NewTestSaga("", 1), 0)
		b := h.create(NewTestSaga("", 1), 0)
		if a.ID == b.ID || a.IdempotencyKey != "" || b.IdempotencyKey != "" {
			t.Errorf("two sagas without key: ids %s %s keys %q %q", a.ID, b.ID, a.IdempotencyKey, b.IdempotencyKey)
		}
	})

	t.Run("NoAliasing", func(t *testing.T) {
		h := setup(t, newStore)
		in := NewTestSaga("", 2)
		got := h.create(in, 0)
		// Changing what went in or came out must not change what is stored.
		in.Name = "changed"
		in.Context[2] = 'X'
		in.Steps[0].Input[2] = 'X'
		in.Definition.Steps[0].Action.Headers["X-Test"] = "changed"
		got.Status = saga.SagaStatusFailed
		got.Steps[1].Status = saga.StepStatusFailed
		got.Context[2] = 'X'
		s := h.get(in.ID)
		s.Steps[0].Input[2] = 'X'
		if hs := s.Definition.Steps[1].Action.Headers; hs != nil {
			hs["X-Test"] = "changed"
		}

		again := h.get(in.ID)
		want := NewTestSaga("", 2)
		if again.Name != want.Name || again.Status != saga.SagaStatusCreated || again.Steps[1].Status != saga.StepStatusPending {
			t.Errorf("stored saga changed through a caller's copy: %q %s %s", again.Name, again.Status, again.Steps[1].Status)
		}
		if !jsonEqual(again.Context, want.Context) || !jsonEqual(again.Steps[0].Input, want.Steps[0].Input) {
			t.Errorf("stored JSON changed through a caller's copy: context %s input %s", again.Context, again.Steps[0].Input)
		}
		for i, st := range again.Definition.Steps {
			if st.Action.Headers["X-Test"] != want.Definition.Steps[i].Action.Headers["X-Test"] {
				t.Errorf("stored definition headers changed through a caller's copy: %v", st.Action.Headers)
			}
		}
	})
}

// checkRoundTrip compares a stored saga with the input it was created from
// (want is an untouched copy with the same content but other ids).
func checkRoundTrip(t *testing.T, s, in, want *saga.Saga) {
	t.Helper()
	if s.ID != in.ID || s.Name != in.Name || s.Status != saga.SagaStatusCreated {
		t.Errorf("id %s name %q status %s, want %s %q Created", s.ID, s.Name, s.Status, in.ID, in.Name)
	}
	if s.TransactionID != in.TransactionID {
		t.Errorf("TransactionID = %s, want %s", s.TransactionID, in.TransactionID)
	}
	if s.UserID == nil || *s.UserID != *in.UserID {
		t.Errorf("UserID = %v, want %s", s.UserID, in.UserID)
	}
	if s.IdempotencyKey != in.IdempotencyKey {
		t.Errorf("IdempotencyKey = %q, want %q", s.IdempotencyKey, in.IdempotencyKey)
	}
	if !jsonEqual(s.Context, want.Context) {
		t.Errorf("Context = %s, want %s", s.Context, want.Context)
	}
	gotDef, _ := json.Marshal(s.Definition)
	wantDef, _ := json.Marshal(in.Definition)
	if !jsonEqual(gotDef, wantDef) {
		t.Errorf("Definition = %s\nwant %s", gotDef, wantDef)
	}
	if s.TotalSteps != len(in.Steps) {
		t.Errorf("TotalSteps = %d, want %d", s.TotalSteps, len(in.Steps))
	}
	if len(s.Steps) != len(in.Steps) {
		t.Fatalf("%d steps, want %d", len(s.Steps), len(in.Steps))
	}
	for i, st := range s.Steps {
		if st.Index != i || st.Name != want.Steps[i].Name || st.Status != saga.StepStatusPending || st.Attempts != 0 {
			t.Errorf("step %d = index %d name %q status %s attempts %d, want %d %q Pending 0",
				i, st.Index, st.Name, st.Status, st.Attempts, i, want.Steps[i].Name)
		}
		if !jsonEqual(st.Input, want.Steps[i].Input) {
			t.Errorf("step %d input = %s, want %s", i, st.Input, want.Steps[i].Input)
		}
		if st.StartedAt != nil || st.CompletedAt != nil || st.Compensation != nil || st.Uncertain || st.Error != "" {
			t.Errorf("step %d = %+v, want a fresh Pending step", i, st)
		}
	}
}

// checkEvents compares stored events with the events written, numbered
// from firstSeq.
func checkEvents(t *testing.T, sagaID saga.ID, stored, written []saga.Event, firstSeq int64) {
	t.Helper()
	if len(stored) != len(written) {
		t.Fatalf("%d events stored, want %d", len(stored), len(written))
	}
	seen := map[saga.ID]bool{}
	for i, e := range stored {
		w := written[i]
		if e.Seq != firstSeq+int64(i) {
			t.Errorf("event %d seq = %d, want %d", i, e.Seq, firstSeq+int64(i))
		}
		if e.SagaID != sagaID || e.Type != w.Type || e.InstanceID != w.InstanceID {
			t.Errorf("event %d = saga %s type %s instance %q, want %s %s %q", i, e.SagaID, e.Type, e.InstanceID, sagaID, w.Type, w.InstanceID)
		}
		if (e.StepIndex == nil) != (w.StepIndex == nil) || e.StepIndex != nil && *e.StepIndex != *w.StepIndex {
			t.Errorf("event %d step index = %v, want %v", i, e.StepIndex, w.StepIndex)
		}
		// The store keeps every member written and may add those a replay
		// of the saga needs (saga.Chain.SealCreate, SealTransition).
		if len(w.Data) > 0 && !jsonContains(e.Data, w.Data) {
			t.Errorf("event %d data = %s, want the members of %s", i, e.Data, w.Data)
		}
		if e.ID.IsZero() || seen[e.ID] {
			t.Errorf("event %d id %s: want a unique non-zero id", i, e.ID)
		}
		seen[e.ID] = true
		if e.CreatedAt.IsZero() || !near(e.CreatedAt, time.Now()) {
			t.Errorf("event %d CreatedAt = %v, want about now", i, e.CreatedAt)
		}
	}
}

func testGetSaga(t *testing.T, newStore factory) {
	t.Run("NotFound", func(t *testing.T) {
		h := setup(t, newStore)
		h.create(NewTestSaga("", 1), 0)
		_, err := h.store.GetSaga(h.ctx, saga.NewID())
		isNotFound(t, "GetSaga of an unknown id", err)
	})
}

func testSagaStatuses(t *testing.T, newStore factory) {
	t.Run("Empty", func(t *testing.T) {
		h := setup(t, newStore)
		h.create(NewTestSaga("", 1), 0)
		got, err := h.store.SagaStatuses(h.ctx, nil)
		if err != nil {
			t.Fatalf("SagaStatuses(nil): %v", err)
		}
		if len(got) != 0 {
			t.Errorf("SagaStatuses(nil) = %v, want nothing", got)
		}
	})

	// One saga in every status, asked for with unknown ids between them:
	// each known id answers its status, the unknown ones are absent.
	t.Run("EveryStatus", func(t *testing.T) {
		h := setup(t, newStore)
		want := map[saga.ID]saga.SagaStatus{}
		var ids []saga.ID
		for _, st := range saga.SagaStatuses {
			sg := h.drive(h.create(NewTestSaga("w", 1), longLease), st, true)
			want[sg.ID] = st
			ids = append(ids, sg.ID, saga.NewID())
		}
		other := h.create(NewTestSaga("", 1), 0) // held, not asked for
		got, err := h.store.SagaStatuses(h.ctx, ids)
		if err != nil {
			t.Fatalf("SagaStatuses: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("SagaStatuses =\n %v\nwant\n %v", got, want)
		}
		if _, ok := got[other.ID]; ok {
			t.Errorf("SagaStatuses answered saga %s, which was not asked for", other.ID)
		}

		// A repeated id is answered once.
		got, err = h.store.SagaStatuses(h.ctx, []saga.ID{ids[0], ids[0]})
		if err != nil {
			t.Fatalf("SagaStatuses of a repeated id: %v", err)
		}
		if len(got) != 1 || got[ids[0]] != want[ids[0]] {
			t.Errorf("SagaStatuses of a repeated id = %v, want %s: %s", got, ids[0], want[ids[0]])
		}
	})
}
