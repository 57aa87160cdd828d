package storetest

import (
	"reflect"
	"slices"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// gauges returns the store as a saga.GaugeReader; every store the suite
// runs on must be one.
func (h *harness) gauges() saga.GaugeReader {
	h.t.Helper()
	gr, ok := h.store.(saga.GaugeReader)
	if !ok {
		h.t.Fatalf("%T does not implement saga.GaugeReader", h.store)
	}
	return gr
}

func (h *harness) readGauges() saga.Gauges {
	h.t.Helper()
	g, err := h.gauges().Gauges(h.ctx)
	if err != nil {
		h.t.Fatalf("Gauges: %v", err)
	}
	return g
}

func (h *harness) readActivity(window time.Duration) saga.Activity {
	h.t.Helper()
	a, err := h.gauges().Activity(h.ctx, window)
	if err != nil {
		h.t.Fatalf("Activity(%v): %v", window, err)
	}
	return a
}

// release writes a releasing transition that keeps the status, with wake.
func (h *harness) release(sg *saga.Saga, wake saga.Wake) *saga.Saga {
	h.t.Helper()
	h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), Release: true, Wake: wake,
		CompletedSteps: sg.CompletedSteps, Error: sg.Error, CompensateTo: sg.CompensateTo})
	return h.get(sg.ID)
}

func testGauges(t *testing.T, newStore factory) {
	t.Run("Empty", func(t *testing.T) {
		h := setup(t, newStore)
		g := h.readGauges()
		want := map[saga.SagaStatus]int64{}
		for _, st := range saga.SagaStatuses {
			want[st] = 0
		}
		if !reflect.DeepEqual(g.ByStatus, want) {
			t.Errorf("ByStatus = %v, want every status at 0", g.ByStatus)
		}
		if g.OldestRunningAge != 0 || g.FailedWaiting != 0 || g.Stuck != 0 || len(g.Instances) != 0 {
			t.Errorf("Gauges of an empty store = %+v", g)
		}
		if g.Now.IsZero() {
			t.Error("Now is zero")
		}
	})

	t.Run("Figures", func(t *testing.T) {
		h := setup(t, newStore)
		newSaga := func(owner string) *saga.Saga { return h.create(NewTestSaga(owner, 1), longLease) }
		// Running and leased: the oldest first.
		oldest := newSaga("w1")
		executing := h.drive(newSaga("w1"), saga.SagaStatusExecuting, false)
		compensating := h.drive(newSaga("w2"), saga.SagaStatusCompensating, false)
		// Released, waiting for a retry that is due later: not stuck.
		h.release(h.drive(newSaga("w3"), saga.SagaStatusExecuting, false),
			saga.Wake{Kind: saga.WakeAfter, After: time.Hour})
		// Released with no next run: stuck.
		stuck := h.release(h.drive(newSaga("w3"), saga.SagaStatusExecuting, false), saga.Wake{Kind: saga.WakeNever})
		// Ended, Failed waiting, Failed with a retry asked for, Paused.
		h.drive(newSaga("w3"), saga.SagaStatusCompleted, true)
		h.drive(newSaga("w3"), saga.SagaStatusFailed, true)
		retried := h.drive(newSaga("w3"), saga.SagaStatusFailed, true)
		if _, err := h.store.RequestControl(h.ctx, retried.ID, saga.ControlRetry); err != nil {
			t.Fatalf("RequestControl(retry): %v", err)
		}
		h.drive(newSaga("w3"), saga.SagaStatusPaused, true)

		g := h.readGauges()
		want := map[saga.SagaStatus]int64{}
		for _, st := range saga.SagaStatuses {
			want[st] = 0
		}
		want[saga.SagaStatusCreated] = 1
		want[saga.SagaStatusExecuting] = 3
		want[saga.SagaStatusCompensating] = 1
		want[saga.SagaStatusCompleted] = 1
		want[saga.SagaStatusFailed] = 2
		want[saga.SagaStatusPaused] = 1
		if !reflect.DeepEqual(g.ByStatus, want) {
			t.Errorf("ByStatus = %v, want %v", g.ByStatus, want)
		}
		if g.FailedWaiting != 1 {
			t.Errorf("FailedWaiting = %d, want 1 (the Failed saga with a retry requested is not waiting)", g.FailedWaiting)
		}
		if g.Stuck != 1 {
			t.Errorf("Stuck = %d, want 1 (saga %s: Executing, released, no next run)", g.Stuck, stuck.ID)
		}
		if wantAge := g.Now.Sub(oldest.CreatedAt); g.OldestRunningAge != wantAge {
			t.Errorf("OldestRunningAge = %v, want %v (now %v - creation of the oldest running saga %v)",
				g.OldestRunningAge, wantAge, g.Now, oldest.CreatedAt)
		}
		wantInstances := []saga.InstanceLeases{
			{ID: "w1", Held: 2, ByStatus: map[saga.SagaStatus]int64{saga.SagaStatusCreated: 1, saga.SagaStatusExecuting: 1},
				Sagas: []saga.ID{oldest.ID, executing.ID}},
			{ID: "w2", Held: 1, ByStatus: map[saga.SagaStatus]int64{saga.SagaStatusCompensating: 1},
				Sagas: []saga.ID{compensating.ID}},
		}
		if len(g.Instances) != len(wantInstances) {
			t.Fatalf("Instances = %+v, want w1 and w2 (w3 holds no live lease on a saga not ended)", g.Instances)
		}
		for i, w := range wantInstances {
			got := g.Instances[i]
			if got.LeaseExpiresAt.Before(g.Now) {
				t.Errorf("Instances[%d].LeaseExpiresAt = %v, before now %v", i, got.LeaseExpiresAt, g.Now)
			}
			got.LeaseExpiresAt = time.Time{}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("Instances[%d] = %+v, want %+v", i, got, w)
			}
		}

		// A lease running out on a saga without a next run makes it stuck
		// too (its holder died between writing that and releasing it).
		// Leased long while it is driven (a loaded machine may take longer
		// than the short lease), then short by the last write.
		short := h.create(NewTestSaga("w4", 1), longLease)
		short = h.drive(short, saga.SagaStatusExecuting, false)
		h.apply(saga.Transition{SagaID: short.ID, Lease: short.Lease(), LeaseFor: shortLease,
			Wake: saga.Wake{Kind: saga.WakeNever}})
		h.eventually("the short lease to run out", func() bool { return h.readGauges().Stuck == 2 })
	})

	t.Run("Activity", func(t *testing.T) {
		h := setup(t, newStore)
		a := h.readActivity(time.Hour)
		if a.Ended != 0 || a.P50 != 0 || a.P95 != 0 || len(a.Instances) != 0 {
			t.Errorf("Activity of an empty store = %+v", a)
		}
		if a.Window != time.Hour || len(a.Buckets) < 60 || len(a.Buckets) > 61 {
			t.Errorf("Window %v with %d buckets, want 1h with 60 or 61", a.Window, len(a.Buckets))
		}

		var ended []*saga.Saga
		for _, st := range []saga.SagaStatus{saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			saga.SagaStatusCompensated, saga.SagaStatusFailed} {
			ended = append(ended, h.drive(h.create(NewTestSaga("w1", 1), longLease, event(saga.EventSagaCreated, nil)), st, true))
		}
		h.create(NewTestSaga("w1", 1), longLease, saga.Event{Type: saga.EventSagaCreated, InstanceID: "other"})

		a = h.readActivity(time.Hour)
		var started, completed, failed int64
		for i, b := range a.Buckets {
			started += b.Started
			completed += b.Completed
			failed += b.Failed
			if b.Start != saga.BucketStart(b.Start) || (i > 0 && b.Start.Sub(a.Buckets[i-1].Start) != saga.ActivityBucket) {
				t.Errorf("bucket %d starts at %v: not on the minute after the previous", i, b.Start)
			}
		}
		if started != 5 || completed != 2 || failed != 2 || a.Ended != 4 {
			t.Errorf("started %d completed %d failed %d ended %d, want 5 2 2 4", started, completed, failed, a.Ended)
		}
		var durations []time.Duration
		for _, s := range ended {
			durations = append(durations, s.CompletedAt.Sub(s.CreatedAt))
		}
		slices.Sort(durations)
		// Nearest rank of four: the 2nd and the 4th.
		if a.P50 != durations[1] || a.P95 != durations[3] {
			t.Errorf("P50 %v P95 %v, want %v %v (nearest rank of %v)", a.P50, a.P95, durations[1], durations[3], durations)
		}
		if len(a.Instances) != 2 {
			t.Fatalf("Instances = %+v, want storetest and other", a.Instances)
		}
		for i, in := range a.Instances {
			if in.LastSeen.IsZero() || in.LastSeen.After(a.Now) {
				t.Errorf("Instances[%d].LastSeen = %v (now %v)", i, in.LastSeen, a.Now)
			}
			if i > 0 && in.LastSeen.After(a.Instances[i-1].LastSeen) {
				t.Errorf("Instances not most recently seen first: %+v", a.Instances)
			}
		}
		byID := map[string]int64{}
		for _, in := range a.Instances {
			byID[in.ID] = in.Events
		}
		// Each ended saga: SagaCreated and one event per status on its path.
		wantEvents := int64(0)
		for _, s := range ended {
			wantEvents += 1 + int64(len(drivePaths[s.Status]))
		}
		if byID["storetest"] != wantEvents || byID["other"] != 1 {
			t.Errorf("events by instance = %v, want storetest %d and other 1", byID, wantEvents)
		}

		if got := h.readActivity(0); got.Window != saga.ActivityBucket {
			t.Errorf("Activity(0).Window = %v, want the smallest window %v", got.Window, saga.ActivityBucket)
		}
	})
}
