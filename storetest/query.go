package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// newestFirst orders sagas as ListSagas does: created_at, then id, descending.
func newestFirst(a, b *saga.Saga) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return bytes.Compare(b.ID[:], a.ID[:])
}

// list calls ListSagas, which must succeed.
func (h *harness) list(f saga.Filter) saga.Page {
	h.t.Helper()
	p, err := h.store.ListSagas(h.ctx, f)
	if err != nil {
		h.t.Fatalf("ListSagas(%+v): %v", f, err)
	}
	return p
}

// listAll pages through ListSagas with f, checking each page, and returns
// the sagas in the order received.
func (h *harness) listAll(f saga.Filter) []*saga.Saga {
	h.t.Helper()
	var out []*saga.Saga
	for range 10_000 {
		p := h.list(f)
		if len(p.Sagas) > f.EffectiveLimit() {
			h.t.Fatalf("page of %d sagas with limit %d", len(p.Sagas), f.EffectiveLimit())
		}
		if p.Next != nil && len(p.Sagas) == 0 {
			h.t.Fatalf("an empty page has a next cursor")
		}
		out = append(out, p.Sagas...)
		if p.Next == nil {
			return out
		}
		// Through its text form, as API clients use it.
		c, err := saga.ParseCursor(p.Next.String())
		if err != nil {
			h.t.Fatalf("ParseCursor(%s): %v", p.Next.String(), err)
		}
		f.Cursor = &c
	}
	h.t.Fatalf("pagination does not end")
	return nil
}

func testListSagas(t *testing.T, newStore factory) {
	t.Run("NewestFirst", func(t *testing.T) {
		h := setup(t, newStore)
		created := h.createN(10, "", 0)
		p := h.list(saga.Filter{})
		if p.Next != nil {
			t.Errorf("Next = %v on the only page", p.Next)
		}
		want := ids(created)
		slices.Reverse(want)
		if got := ids(p.Sagas); !slices.Equal(got, want) {
			t.Errorf("order = %v\nwant newest first %v", got, want)
		}
		durable := h.store.Health(h.ctx).Durable
		for _, s := range p.Sagas {
			if s.Steps != nil {
				t.Errorf("ListSagas returned steps")
			}
			if s.Durable != durable || s.TotalSteps != 2 || s.Name != "test-saga" || s.CreatedAt.IsZero() {
				t.Errorf("listed saga = %+v", s)
			}
		}
	})

	t.Run("Empty", func(t *testing.T) {
		h := setup(t, newStore)
		p := h.list(saga.Filter{})
		if len(p.Sagas) != 0 || p.Next != nil {
			t.Errorf("empty store lists %d sagas, next %v", len(p.Sagas), p.Next)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		h := setup(t, newStore)
		shared := saga.NewID()
		var all []*saga.Saga
		for i := range 12 {
			sg := NewTestSaga("w", 2)
			if i%3 == 0 {
				sg.Name = "beta"
				sg.Definition.Name = "beta"
			}
			if i == 4 || i == 9 {
				sg.TransactionID = shared
				sg.Definition.TransactionID = &shared
			}
			sg = h.create(sg, longLease)
			switch i % 4 {
			case 1:
				sg = h.drive(sg, saga.SagaStatusExecuting, true)
			case 2:
				sg = h.drive(sg, saga.SagaStatusCompleted, true)
			default:
				sg = h.drive(sg, saga.SagaStatusCreated, true)
			}
			all = append(all, h.get(sg.ID))
		}
		cutoff := all[5].CreatedAt
		tests := []struct {
			name  string
			f     saga.Filter
			match func(*saga.Saga) bool
		}{
			{"Status", saga.Filter{Status: saga.SagaStatusExecuting},
				func(s *saga.Saga) bool { return s.Status == saga.SagaStatusExecuting }},
			{"StatusNone", saga.Filter{Status: saga.SagaStatusTimedOut},
				func(s *saga.Saga) bool { return false }},
			{"Name", saga.Filter{Name: "beta"},
				func(s *saga.Saga) bool { return s.Name == "beta" }},
			{"TransactionID", saga.Filter{TransactionID: &shared},
				func(s *saga.Saga) bool { return s.TransactionID == shared }},
			{"CreatedAfter", saga.Filter{CreatedAfter: &cutoff},
				func(s *saga.Saga) bool { return s.CreatedAt.After(cutoff) }},
			{"Combined", saga.Filter{Name: "test-saga", Status: saga.SagaStatusCompleted, CreatedAfter: &all[0].CreatedAt},
				func(s *saga.Saga) bool {
					return s.Name == "test-saga" && s.Status == saga.SagaStatusCompleted && s.CreatedAt.After(all[0].CreatedAt)
				}},
		}
		for _, tt := range tests {
			var want []*saga.Saga
			for _, s := range all {
				if tt.match(s) {
					want = append(want, s)
				}
			}
			slices.SortFunc(want, newestFirst)
			if tt.name != "StatusNone" && len(want) == 0 {
				t.Fatalf("%s: the fixture matches nothing", tt.name)
			}
			for _, limit := range []int{0, 2} {
				f := tt.f
				f.Limit = limit
				if got := ids(h.listAll(f)); !slices.Equal(got, ids(want)) {
					t.Errorf("%s (limit %d) = %v\nwant %v", tt.name, limit, got, ids(want))
				}
			}
		}
	})

	t.Run("Pagination", func(t *testing.T) {
		h := setup(t, newStore)
		created := h.createN(23, "", 0)
		for _, limit := range []int{1, 5, 22, 23, 24} {
			got := h.listAll(saga.Filter{Limit: limit})
			want := ids(created)
			slices.Reverse(want)
			if !slices.Equal(ids(got), want) {
				t.Errorf("limit %d: pages visit %v\nwant %v", limit, ids(got), want)
			}
		}
		// Pages of 5: 5, 5, 5, 5, 3, and Next on all but the last.
		f := saga.Filter{Limit: 5}
		for i, want := range []int{5, 5, 5, 5, 3} {
			p := h.list(f)
			if len(p.Sagas) != want || (p.Next == nil) != (i == 4) {
				t.Fatalf("page %d: %d sagas, next %v; want %d", i, len(p.Sagas), p.Next, want)
			}
			if p.Next != nil {
				last := p.Sagas[len(p.Sagas)-1]
				if p.Next.ID != last.ID || !p.Next.CreatedAt.Equal(last.CreatedAt) {
					t.Errorf("page %d cursor %+v, want the position of its last saga", i, *p.Next)
				}
			}
			f.Cursor = p.Next
		}
		// New sagas created while paging do not disturb the older pages.
		p := h.list(saga.Filter{Limit: 10})
		h.createN(3, "", 0)
		rest := h.listAll(saga.Filter{Limit: 10, Cursor: p.Next})
		if got := len(p.Sagas) + len(rest); got != 23 {
			t.Errorf("paging across new inserts visited %d sagas, want the 23 older ones", got)
		}
	})

	t.Run("Limit", func(t *testing.T) {
		h := setup(t, newStore)
		h.createN(saga.ListLimitDefault+3, "", 0)
		for _, limit := range []int{0, -1} {
			p := h.list(saga.Filter{Limit: limit})
			if len(p.Sagas) != saga.ListLimitDefault || p.Next == nil {
				t.Errorf("limit %d: %d sagas, next %v; want %d and a next page", limit, len(p.Sagas), p.Next, saga.ListLimitDefault)
			}
		}
		if p := h.list(saga.Filter{Limit: saga.ListLimitDefault + 3}); len(p.Sagas) != saga.ListLimitDefault+3 || p.Next != nil {
			t.Errorf("limit %d: %d sagas, next %v", saga.ListLimitDefault+3, len(p.Sagas), p.Next)
		}
	})

	t.Run("LimitCap", func(t *testing.T) {
		h := setup(t, newStore)
		const n = saga.ListLimitMax + 1
		var wg sync.WaitGroup
		errs := make(chan error, n)
		next := make(chan int)
		for range 8 {
			wg.Go(func() {
				for range next {
					if _, _, err := h.store.CreateSaga(h.ctx, saga.NewSaga{Saga: NewTestSaga("", 1)}); err != nil {
						errs <- err
					}
				}
			})
		}
		for i := range n {
			next <- i
		}
		close(next)
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			t.Fatalf("CreateSaga: %v", err)
		}
		p := h.list(saga.Filter{Limit: 5 * saga.ListLimitMax})
		if len(p.Sagas) != saga.ListLimitMax || p.Next == nil {
			t.Fatalf("limit above the cap: %d sagas, next %v; want %d and a next page", len(p.Sagas), p.Next, saga.ListLimitMax)
		}
		rest := h.list(saga.Filter{Limit: 5 * saga.ListLimitMax, Cursor: p.Next})
		if len(rest.Sagas) != 1 || rest.Next != nil {
			t.Errorf("second page: %d sagas, next %v; want 1 and none", len(rest.Sagas), rest.Next)
		}
	})
}

func testListEvents(t *testing.T, newStore factory) {
	t.Run("Window", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("w", 2), longLease, event(saga.EventSagaCreated, nil))
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Events: []saga.Event{
			event(saga.EventSagaStarted, nil), event(saga.EventStepStarted, intp(0)),
		}})
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Events: []saga.Event{
			event(saga.EventStepCompleted, intp(0)), event(saga.EventStepStarted, intp(1)),
		}})
		other := h.create(NewTestSaga("w", 1), 0, event(saga.EventSagaCreated, nil))
		tests := []struct {
			after int64
			limit int
			want  []int64
		}{
			{0, 0, []int64{1, 2, 3, 4, 5}},
			{2, 0, []int64{3, 4, 5}},
			{1, 2, []int64{2, 3}},
			{0, 3, []int64{1, 2, 3}},
			{4, 10, []int64{5}},
			{2, 1, []int64{3}},
			{5, 0, nil},
			{99, 0, nil},
		}
		for _, tt := range tests {
			evs, err := h.store.ListEvents(h.ctx, sg.ID, tt.after, tt.limit)
			if err != nil {
				t.Fatalf("ListEvents(after %d, limit %d): %v", tt.after, tt.limit, err)
			}
			var got []int64
			for _, e := range evs {
				got = append(got, e.Seq)
				if e.SagaID != sg.ID {
					t.Errorf("event of saga %s listed for %s", e.SagaID, sg.ID)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ListEvents(after %d, limit %d) seqs = %v, want %v", tt.after, tt.limit, got, tt.want)
			}
		}
		all := h.events(sg.ID)
		wantTypes := []saga.EventType{saga.EventSagaCreated, saga.EventSagaStarted, saga.EventStepStarted, saga.EventStepCompleted, saga.EventStepStarted}
		for i, e := range all {
			if e.Type != wantTypes[i] {
				t.Errorf("event %d type %s, want %s", i, e.Type, wantTypes[i])
			}
			if i > 0 && e.CreatedAt.Before(all[i-1].CreatedAt) {
				t.Errorf("event %d created at %v, before event %d at %v", i, e.CreatedAt, i-1, all[i-1].CreatedAt)
			}
		}
		if evs := h.events(other.ID); len(evs) != 1 || evs[0].Seq != 1 {
			t.Errorf("other saga's events = %+v, want its own one with seq 1", evs)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		h := setup(t, newStore)
		_, err := h.store.ListEvents(h.ctx, saga.NewID(), 0, 0)
		isNotFound(t, "ListEvents of an unknown saga", err)
		sg := h.create(NewTestSaga("", 1), 0)
		if evs, err := h.store.ListEvents(h.ctx, sg.ID, 0, 0); err != nil || len(evs) != 0 {
			t.Errorf("ListEvents of a saga without events = %v, %v; want none, nil", evs, err)
		}
	})
}

func testLatestCheckpoint(t *testing.T, newStore factory) {
	t.Run("NoneAndNotFound", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("", 1), 0)
		if cp := h.checkpoint(sg.ID); cp != nil {
			t.Errorf("LatestCheckpoint of a new saga = %+v, want nil", cp)
		}
		_, err := h.store.LatestCheckpoint(h.ctx, saga.NewID())
		isNotFound(t, "LatestCheckpoint of an unknown saga", err)
	})
}

func testStats(t *testing.T, newStore factory) {
	t.Run("Empty", func(t *testing.T) {
		h := setup(t, newStore)
		st, err := h.store.Stats(h.ctx, time.Hour)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		checkByStatus(t, st, map[saga.SagaStatus]int64{})
		if st.Total != 0 || st.Started != 0 || st.Completed != 0 || st.Failed != 0 || st.EndedInWindow != 0 ||
			st.MeanDuration != 0 || st.P95Duration != 0 {
			t.Errorf("Stats of an empty store = %+v", st)
		}
	})

	t.Run("Counts", func(t *testing.T) {
		h := setup(t, newStore)
		h.now() // the clock saga: one Created saga, older than the rest
		plan := map[saga.SagaStatus]int{
			saga.SagaStatusCreated: 2, saga.SagaStatusExecuting: 1, saga.SagaStatusCompensating: 1,
			saga.SagaStatusCompleted: 3, saga.SagaStatusCompensated: 1, saga.SagaStatusFailed: 1,
			saga.SagaStatusPaused: 1, saga.SagaStatusCancelled: 1, saga.SagaStatusTimedOut: 1,
		}
		var lastEnd time.Time
		for _, st := range saga.SagaStatuses {
			for range plan[st] {
				s := h.drive(h.create(NewTestSaga("w", 1), longLease), st, true)
				if s.CompletedAt != nil && s.CompletedAt.After(lastEnd) {
					lastEnd = *s.CompletedAt
				}
			}
		}
		want := map[saga.SagaStatus]int64{}
		for st, n := range plan {
			want[st] = int64(n)
		}
		want[saga.SagaStatusCreated]++ // the clock

		st, err := h.store.Stats(h.ctx, time.Hour)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		checkByStatus(t, st, want)
		if st.Total != 13 || st.Started != 13 || st.Completed != 3 || st.Failed != 4 || st.EndedInWindow != 7 {
			t.Errorf("total %d started %d completed %d failed %d ended %d, want 13 13 3 4 7",
				st.Total, st.Started, st.Completed, st.Failed, st.EndedInWindow)
		}
		if st.Window != time.Hour {
			t.Errorf("Window = %v, want 1h", st.Window)
		}
		if st.MeanDuration < 0 || st.P95Duration < 0 || st.MeanDuration > time.Hour || st.P95Duration > time.Hour {
			t.Errorf("durations mean %v p95 %v, want within [0, 1h]", st.MeanDuration, st.P95Duration)
		}

		// Once the window has moved past every end, nothing is in it.
		h.waitPast("the last end to leave a 1ms window", lastEnd.Add(2*time.Millisecond))
		st, err = h.store.Stats(h.ctx, time.Millisecond)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		checkByStatus(t, st, want)
		if st.Total != 13 || st.Started != 0 || st.Completed != 0 || st.Failed != 0 || st.EndedInWindow != 0 {
			t.Errorf("1ms window: total %d started %d completed %d failed %d ended %d, want 13 0 0 0 0",
				st.Total, st.Started, st.Completed, st.Failed, st.EndedInWindow)
		}
	})
}

// checkByStatus checks that Stats has all nine statuses with the wanted counts.
func checkByStatus(t *testing.T, st saga.Stats, want map[saga.SagaStatus]int64) {
	t.Helper()
	if len(st.ByStatus) != len(saga.SagaStatuses) {
		t.Errorf("ByStatus has %d keys, want all %d statuses: %v", len(st.ByStatus), len(saga.SagaStatuses), st.ByStatus)
	}
	var total int64
	for _, s := range saga.SagaStatuses {
		n, ok := st.ByStatus[s]
		if !ok || n != want[s] {
			t.Errorf("ByStatus[%s] = %d (present %v), want %d", s, n, ok, want[s])
		}
		total += n
	}
	if total != st.Total {
		t.Errorf("ByStatus sums to %d, Total is %d", total, st.Total)
	}
}

func testDeleteFinished(t *testing.T, newStore factory) {
	t.Run("EndStatesOnly", func(t *testing.T) {
		h := setup(t, newStore)
		h.now() // create the clock first; it is never deleted
		plan := map[saga.SagaStatus]int{
			saga.SagaStatusCompleted: 3, saga.SagaStatusCompensated: 2, saga.SagaStatusCancelled: 1, saga.SagaStatusTimedOut: 1,
			saga.SagaStatusFailed: 1, saga.SagaStatusExecuting: 1, saga.SagaStatusCreated: 1, saga.SagaStatusPaused: 1,
			saga.SagaStatusCompensating: 1,
		}
		var gone, kept []*saga.Saga
		var lastEnd time.Time
		for _, st := range saga.SagaStatuses {
			for i := range plan[st] {
				sg := NewTestSaga("w", 2)
				sg.IdempotencyKey = fmt.Sprintf("%s-%d", st, i)
				sg.Definition.IdempotencyKey = sg.IdempotencyKey
				s := h.drive(h.create(sg, longLease, event(saga.EventSagaCreated, nil)), st, true)
				if s.CompletedAt != nil && s.CompletedAt.After(lastEnd) {
					lastEnd = *s.CompletedAt
				}
				switch st {
				case saga.SagaStatusCompleted, saga.SagaStatusCompensated, saga.SagaStatusCancelled, saga.SagaStatusTimedOut:
					gone = append(gone, s)
				default:
					kept = append(kept, s)
				}
			}
		}

		n, err := h.store.DeleteFinished(h.ctx, time.Hour, 100)
		if err != nil || n != 0 {
			t.Fatalf("DeleteFinished(1h) = %d, %v; want 0 (nothing that old)", n, err)
		}
		h.waitPast("the last end", lastEnd)
		n, err = h.store.DeleteFinished(h.ctx, 0, 3)
		if err != nil || n != len(gone) {
			t.Fatalf("DeleteFinished(0, batch 3) = %d, %v; want %d", n, err, len(gone))
		}
		for _, s := range gone {
			_, err := h.store.GetSaga(h.ctx, s.ID)
			isNotFound(t, "GetSaga of a deleted saga", err)
			_, err = h.store.ListEvents(h.ctx, s.ID, 0, 0)
			isNotFound(t, "ListEvents of a deleted saga", err)
			_, err = h.store.LatestCheckpoint(h.ctx, s.ID)
			isNotFound(t, "LatestCheckpoint of a deleted saga", err)
		}
		for _, s := range kept {
			snap := h.snapshot(s.ID)
			if snap.Saga.Status != s.Status || len(snap.Events) == 0 || len(snap.Saga.Steps) != 2 || snap.Checkpoint == nil && s.Status != saga.SagaStatusCreated {
				t.Errorf("kept %s saga lost rows: %d events, %d steps, checkpoint %v", s.Status, len(snap.Events), len(snap.Saga.Steps), snap.Checkpoint)
			}
		}
		listed := h.listAll(saga.Filter{})
		if len(listed) != len(kept)+1 {
			t.Errorf("%d sagas listed after cleanup, want the %d kept and the clock", len(listed), len(kept))
		}
		if n, err := h.store.DeleteFinished(h.ctx, 0, 3); err != nil || n != 0 {
			t.Errorf("second DeleteFinished = %d, %v; want 0", n, err)
		}
		st, err := h.store.Stats(h.ctx, time.Hour)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if st.Total != int64(len(kept)+1) {
			t.Errorf("Stats.Total = %d after cleanup, want %d", st.Total, len(kept)+1)
		}
		// The idempotency key of a deleted saga no longer answers with it.
		sg := NewTestSaga("", 1)
		sg.IdempotencyKey = fmt.Sprintf("%s-%d", saga.SagaStatusCompleted, 0)
		sg.Definition.IdempotencyKey = sg.IdempotencyKey
		got, existed, err := h.store.CreateSaga(h.ctx, saga.NewSaga{Saga: sg})
		if err != nil || existed || got.ID != sg.ID {
			t.Errorf("CreateSaga with a deleted saga's key = %v, existed %v, %v; want a new saga", got, existed, err)
		}
	})
}

func testDeleteExpired(t *testing.T, newStore factory) {
	// ended drives one saga of each deletable end status to its end and
	// waits until that end is in the past by the store's clock.
	ended := func(h *harness) map[saga.SagaStatus]*saga.Saga {
		h.now()
		out := make(map[saga.SagaStatus]*saga.Saga)
		var lastEnd time.Time
		for _, st := range saga.RetainedStatuses {
			s := h.drive(h.create(NewTestSaga("w", 2), longLease, event(saga.EventSagaCreated, nil)), st, true)
			out[st] = s
			if s.CompletedAt.After(lastEnd) {
				lastEnd = *s.CompletedAt
			}
		}
		h.waitPast("the last end", lastEnd)
		return out
	}
	exists := func(h *harness, id saga.ID) bool {
		_, err := h.store.GetSaga(h.ctx, id)
		if err != nil && !errors.Is(err, saga.ErrNotFound) {
			h.t.Fatalf("GetSaga: %v", err)
		}
		return err == nil
	}

	t.Run("PerStatus", func(t *testing.T) {
		h := setup(t, newStore)
		sagas := ended(h)
		// Completed and Cancelled (zero: the Completed retention) are past
		// their retention; Compensated and TimedOut are kept for an hour.
		r := saga.Retention{Completed: 0, Compensated: time.Hour, TimedOut: time.Hour}
		n, err := h.store.DeleteExpired(h.ctx, r, 1)
		if err != nil || n != 2 {
			t.Fatalf("DeleteExpired = %d, %v; want 2", n, err)
		}
		for st, s := range sagas {
			want := st == saga.SagaStatusCompensated || st == saga.SagaStatusTimedOut
			if got := exists(h, s.ID); got != want {
				t.Errorf("%s saga exists = %v after DeleteExpired, want %v", st, got, want)
			}
		}
		if n, err := h.store.DeleteExpired(h.ctx, saga.UniformRetention(0), 10); err != nil || n != 2 {
			t.Errorf("DeleteExpired(0) = %d, %v; want the 2 kept before", n, err)
		}
		if _, err := h.store.DeleteExpired(h.ctx, saga.Retention{Completed: -time.Second}, 10); err == nil {
			t.Error("DeleteExpired with a negative retention succeeded")
		}
	})

	t.Run("LegalHold", func(t *testing.T) {
		h := setup(t, newStore)
		sagas := ended(h)
		held := sagas[saga.SagaStatusCompleted]
		got, err := h.store.SetLegalHold(h.ctx, held.ID, true)
		if err != nil || !got.LegalHold || got.ID != held.ID || got.Status != saga.SagaStatusCompleted {
			t.Fatalf("SetLegalHold(true) = %+v, %v", got, err)
		}
		if !h.get(held.ID).LegalHold {
			t.Error("GetSaga does not show the hold")
		}
		if page := h.list(saga.Filter{Status: saga.SagaStatusCompleted}); len(page.Sagas) != 1 || !page.Sagas[0].LegalHold {
			t.Errorf("ListSagas does not show the hold: %+v", page.Sagas)
		}
		if n, err := h.store.DeleteFinished(h.ctx, 0, 10); err != nil || n != len(sagas)-1 {
			t.Fatalf("DeleteFinished = %d, %v; want all but the held saga (%d)", n, err, len(sagas)-1)
		}
		if n, err := h.store.DeleteExpired(h.ctx, saga.UniformRetention(0), 10); err != nil || n != 0 || !exists(h, held.ID) {
			t.Fatalf("DeleteExpired deleted a held saga: %d, %v", n, err)
		}
		// Cleared, the saga is deleted like any other.
		if got, err := h.store.SetLegalHold(h.ctx, held.ID, false); err != nil || got.LegalHold {
			t.Fatalf("SetLegalHold(false) = %+v, %v", got, err)
		}
		if n, err := h.store.DeleteFinished(h.ctx, 0, 10); err != nil || n != 1 || exists(h, held.ID) {
			t.Fatalf("DeleteFinished after the hold was cleared = %d, %v", n, err)
		}
		_, err = h.store.SetLegalHold(h.ctx, saga.NewID(), true)
		isNotFound(t, "SetLegalHold of an unknown saga", err)
	})

	t.Run("HoldOnRunningSaga", func(t *testing.T) {
		// A hold set while the saga runs stays through its transitions.
		h := setup(t, newStore)
		s := h.create(NewTestSaga("w", 2), longLease, event(saga.EventSagaCreated, nil))
		if _, err := h.store.SetLegalHold(h.ctx, s.ID, true); err != nil {
			t.Fatal(err)
		}
		end := h.drive(s, saga.SagaStatusCompleted, true)
		h.waitPast("the end", *end.CompletedAt)
		if !h.get(s.ID).LegalHold {
			t.Error("the hold was lost by the saga's transitions")
		}
		if n, err := h.store.DeleteFinished(h.ctx, 0, 10); err != nil || n != 0 {
			t.Errorf("DeleteFinished = %d, %v; want 0", n, err)
		}
	})
}

func testHealth(t *testing.T, newStore factory) {
	t.Run("Consistent", func(t *testing.T) {
		h := setup(t, newStore)
		hl := h.store.Health(h.ctx)
		switch {
		case hl.Mode != "durable" && hl.Mode != "memory":
			t.Errorf("Mode = %q, want durable or memory", hl.Mode)
		case hl.Durable != (hl.Mode == "durable"):
			t.Errorf("Durable = %v with Mode %q", hl.Durable, hl.Mode)
		}
		if hl.Error != "" {
			t.Errorf("a fresh store is unhealthy: %s", hl.Error)
		}
		if hl.RoundTrip < 0 {
			t.Errorf("RoundTrip = %v", hl.RoundTrip)
		}
		if s := h.create(NewTestSaga("", 1), 0); s.Durable != hl.Durable {
			t.Errorf("saga Durable = %v, Health().Durable = %v", s.Durable, hl.Durable)
		}
	})
}
