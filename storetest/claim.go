package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

func testClaimSagas(t *testing.T, newStore factory) {
	t.Run("Runnable", func(t *testing.T) {
		h := setup(t, newStore)
		free := h.createN(3, "", 0)
		h.createN(2, "busy", longLease)
		never := h.create(NewTestSaga("w", 1), longLease)
		h.apply(saga.Transition{SagaID: never.ID, Lease: never.Lease(), Release: true, Wake: saga.Wake{Kind: saga.WakeNever}})
		later := h.create(NewTestSaga("w", 1), longLease)
		h.apply(saga.Transition{SagaID: later.ID, Lease: later.Lease(), Release: true, Wake: saga.Wake{Kind: saga.WakeAfter, After: time.Hour}})
		done := h.drive(h.create(NewTestSaga("w", 1), longLease), saga.SagaStatusCompleted, true)

		got := h.claim("c", longLease, 100)
		if !maps(idSet(got), idSet(free)) {
			t.Fatalf("claimed %v, want exactly the unleased runnable sagas %v", ids(got), ids(free))
		}
		durable := h.store.Health(h.ctx).Durable
		for _, s := range got {
			if s.OwnerID != "c" || s.LeaseEpoch != 1 || s.LeaseExpiresAt == nil || !near(*s.LeaseExpiresAt, time.Now().Add(longLease)) {
				t.Errorf("claimed saga lease: owner %q epoch %d until %v", s.OwnerID, s.LeaseEpoch, s.LeaseExpiresAt)
			}
			if len(s.Steps) != s.TotalSteps || s.TotalSteps != 2 || s.Steps[1].Name != "step-1" {
				t.Errorf("claimed saga has %d steps (total %d), want them loaded", len(s.Steps), s.TotalSteps)
			}
			if s.Durable != durable {
				t.Errorf("claimed saga Durable = %v, store Durable %v", s.Durable, durable)
			}
			stored := h.get(s.ID)
			if stored.OwnerID != "c" || stored.LeaseEpoch != 1 || !stored.LeaseExpiresAt.Equal(*s.LeaseExpiresAt) {
				t.Errorf("stored lease after claim: owner %q epoch %d until %v", stored.OwnerID, stored.LeaseEpoch, stored.LeaseExpiresAt)
			}
			h.apply(saga.Transition{SagaID: s.ID, Lease: s.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting})
		}
		if again := h.claim("d", longLease, 100); len(again) != 0 {
			t.Errorf("second claim got %v, want nothing", ids(again))
		}
		if s := h.get(done.ID); s.OwnerID != "" || s.LeaseEpoch != 1 {
			t.Errorf("a completed saga was claimed: %+v", s)
		}
	})

	t.Run("Limit", func(t *testing.T) {
		h := setup(t, newStore)
		h.createN(5, "", 0)
		seen := map[saga.ID]bool{}
		for i, want := range []int{3, 2, 0} {
			got := h.claim(fmt.Sprintf("c%d", i), longLease, 3)
			if len(got) != want {
				t.Errorf("claim %d got %d sagas, want %d", i, len(got), want)
			}
			for _, s := range got {
				if seen[s.ID] {
					t.Errorf("saga %s claimed twice", s.ID)
				}
				seen[s.ID] = true
			}
		}
	})

	t.Run("ReleasedClaimedAgain", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 1), longLease)
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), Release: true, Status: saga.SagaStatusExecuting})
		got := h.claim("b", longLease, 10)
		if len(got) != 1 || got[0].ID != sg.ID || got[0].LeaseEpoch != 2 || got[0].OwnerID != "b" || got[0].Status != saga.SagaStatusExecuting {
			t.Fatalf("claim after release = %+v, want the saga with epoch 2", got)
		}
	})

	t.Run("WakeAfter", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 1), longLease)
		a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), Release: true, Status: saga.SagaStatusExecuting,
			Wake: saga.Wake{Kind: saga.WakeAfter, After: 50 * time.Millisecond}})
		next := h.get(sg.ID).NextRunAt
		if next == nil || next.Before(a.Now) {
			t.Fatalf("NextRunAt = %v after WakeAfter 50ms at %v", next, a.Now)
		}
		var got []*saga.Saga
		h.eventually("the saga to become runnable", func() bool {
			got = h.claim("b", time.Hour, 10)
			return len(got) > 0
		})
		// It was claimed no earlier than NextRunAt, by the store's clock.
		claimedAt := got[0].LeaseExpiresAt.Add(-time.Hour)
		if claimedAt.Before(*next) {
			t.Errorf("claimed at %v, before NextRunAt %v", claimedAt, *next)
		}
	})

	t.Run("WakeAt", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 1), longLease)
		a := h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), Release: true,
			Wake: saga.Wake{Kind: saga.WakeAt, At: microsecond(time.Now().Add(-time.Minute))}})
		if a.LeaseExpiresAt != (time.Time{}) {
			t.Errorf("released lease expires at %v", a.LeaseExpiresAt)
		}
		if got := h.claim("b", longLease, 10); len(got) != 1 {
			t.Errorf("claim of a saga due a minute ago got %d sagas, want 1", len(got))
		}
	})

	t.Run("ExpiredLease", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("a", 1), shortLease, event(saga.EventSagaCreated, nil))
		// A claim may already find the lease expired on a slow machine;
		// either way the saga is claimed exactly once, with epoch 2.
		got := h.claim("b", longLease, 10)
		h.eventually("the expired lease to be claimable", func() bool {
			got = append(got, h.claim("b", longLease, 10)...)
			return len(got) > 0
		})
		if len(got) != 1 || got[0].ID != sg.ID || got[0].LeaseEpoch != 2 || got[0].OwnerID != "b" {
			t.Fatalf("claim after expiry = %+v", got)
		}
		before := h.snapshot(sg.ID)
		if _, err := h.store.Apply(h.ctx, fullTransition(sg.ID, sg.Lease())); !errors.Is(err, saga.ErrLeaseLost) {
			t.Errorf("old holder's Apply: err = %v, want ErrLeaseLost", err)
		}
		h.unchanged(before)
		h.apply(saga.Transition{SagaID: sg.ID, Lease: got[0].Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting})
	})

	t.Run("Concurrent", func(t *testing.T) {
		h := setup(t, newStore)
		const sagas, claimers = 100, 8
		created := h.createN(sagas, "", 0)
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			counts = map[saga.ID]int{}
			errs   []error
		)
		for i := range claimers {
			owner := fmt.Sprintf("claimer-%d", i)
			wg.Go(func() {
				for {
					got, err := h.store.ClaimSagas(h.ctx, owner, longLease, 7)
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					}
					for _, s := range got {
						counts[s.ID]++
						if s.OwnerID != owner || s.LeaseEpoch != 1 {
							errs = append(errs, fmt.Errorf("saga %s claimed by %s came back with owner %q epoch %d", s.ID, owner, s.OwnerID, s.LeaseEpoch))
						}
					}
					total := 0
					for _, c := range counts {
						total += c
					}
					mu.Unlock()
					// Stop on error, when nothing is left, or once sagas
					// have been handed out twice (the test fails then).
					if err != nil || len(got) == 0 || total > sagas {
						return
					}
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("concurrent claims: %v", errors.Join(errs...))
		}
		// A claimer may stop early when the rest are locked by others; the
		// others finish them. Anything left is claimable now.
		for _, s := range h.claim("last", longLease, sagas) {
			counts[s.ID]++
		}
		for _, s := range created {
			if counts[s.ID] != 1 {
				t.Errorf("saga %s claimed %d times, want once", s.ID, counts[s.ID])
			}
		}
		if len(counts) != sagas {
			t.Errorf("%d distinct sagas claimed, want %d", len(counts), sagas)
		}
	})
}

// maps reports whether two id sets are equal.
func maps(a, b map[saga.ID]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for id := range a {
		if !b[id] {
			return false
		}
	}
	return true
}

func testRenewLeases(t *testing.T, newStore factory) {
	t.Run("LiveOnly", func(t *testing.T) {
		h := setup(t, newStore)
		mine := h.create(NewTestSaga("a", 1), time.Minute)
		wrongEpoch := h.create(NewTestSaga("a", 1), time.Minute)
		theirs := h.create(NewTestSaga("b", 1), time.Minute)
		released := h.create(NewTestSaga("a", 1), time.Minute)
		h.apply(saga.Transition{SagaID: released.ID, Lease: released.Lease(), Release: true, Wake: saga.Wake{Kind: saga.WakeNever}})
		expired := h.create(NewTestSaga("a", 1), shortLease)

		h.waitPast("the short lease to expire", *expired.LeaseExpiresAt)
		renewed, err := h.store.RenewLeases(h.ctx, "a", map[saga.ID]int64{
			mine.ID: 1, wrongEpoch.ID: 2, theirs.ID: 1, released.ID: 1, expired.ID: 1, saga.NewID(): 1,
		}, 2*time.Hour)
		if err != nil {
			t.Fatalf("RenewLeases: %v", err)
		}
		if !slices.Equal(renewed, []saga.ID{mine.ID}) {
			t.Errorf("renewed %v, want only %s", renewed, mine.ID)
		}
		s := h.get(mine.ID)
		if s.LeaseExpiresAt == nil || !s.LeaseExpiresAt.After(*mine.LeaseExpiresAt) || !near(*s.LeaseExpiresAt, time.Now().Add(2*time.Hour)) {
			t.Errorf("renewed lease expires at %v, want about now + 2h (was %v)", s.LeaseExpiresAt, mine.LeaseExpiresAt)
		}
		if s.OwnerID != "a" || s.LeaseEpoch != 1 {
			t.Errorf("renewal changed owner %q or epoch %d", s.OwnerID, s.LeaseEpoch)
		}
		for _, sg := range []*saga.Saga{wrongEpoch, theirs} {
			if s := h.get(sg.ID); !s.LeaseExpiresAt.Equal(*sg.LeaseExpiresAt) || s.OwnerID != sg.OwnerID {
				t.Errorf("a lease not held was renewed: %s until %v", s.OwnerID, s.LeaseExpiresAt)
			}
		}
		if s := h.get(released.ID); s.OwnerID != "" || s.LeaseExpiresAt != nil {
			t.Errorf("a released lease was renewed: owner %q until %v", s.OwnerID, s.LeaseExpiresAt)
		}
		// The expired lease stayed expired: another instance may claim it.
		if got := h.claim("b", longLease, 10); len(got) != 1 || got[0].ID != expired.ID {
			t.Errorf("claim after a refused renewal got %v, want %s", ids(got), expired.ID)
		}
	})

	t.Run("Many", func(t *testing.T) {
		h := setup(t, newStore)
		held := map[saga.ID]int64{}
		for _, s := range h.createN(10, "a", time.Minute) {
			held[s.ID] = s.LeaseEpoch
		}
		renewed, err := h.store.RenewLeases(h.ctx, "a", held, time.Hour)
		if err != nil {
			t.Fatalf("RenewLeases: %v", err)
		}
		if len(renewed) != len(held) {
			t.Errorf("renewed %d of %d live leases", len(renewed), len(held))
		}
		for _, id := range renewed {
			if _, ok := held[id]; !ok {
				t.Errorf("renewed %s, which was not asked for", id)
			}
		}
		if renewed, err := h.store.RenewLeases(h.ctx, "a", nil, time.Hour); err != nil || len(renewed) != 0 {
			t.Errorf("RenewLeases of nothing = %v, %v", renewed, err)
		}
	})
}

func testRequestControl(t *testing.T, newStore factory) {
	for _, action := range saga.ControlActions {
		t.Run(string(action), func(t *testing.T) {
			h := setup(t, newStore)
			durable := h.store.Health(h.ctx).Durable
			// One released saga in each status.
			byStatus := map[saga.SagaStatus]*saga.Saga{}
			for _, st := range saga.SagaStatuses {
				sg := h.create(NewTestSaga("w", 2), longLease)
				byStatus[st] = h.drive(sg, st, true)
				if got := byStatus[st].Status; got != st {
					t.Fatalf("drive to %s reached %s", st, got)
				}
			}
			// Take whatever is runnable now, and give it back not runnable,
			// so that the claim below sees only what the requests woke.
			for _, s := range h.claim("sweeper", longLease, 100) {
				h.apply(saga.Transition{SagaID: s.ID, Lease: s.Lease(), Release: true, Wake: saga.Wake{Kind: saga.WakeNever}})
			}
			allowed := map[saga.ID]bool{}
			for _, st := range saga.SagaStatuses {
				sg := byStatus[st]
				before := h.snapshot(sg.ID)
				got, err := h.store.RequestControl(h.ctx, sg.ID, action)
				if !action.AllowedIn(st) {
					if !errors.Is(err, saga.ErrInvalidTransition) {
						t.Errorf("%s in %s: err = %v, want ErrInvalidTransition", action, st, err)
					}
					h.unchanged(before)
					continue
				}
				allowed[sg.ID] = true
				if err != nil {
					t.Errorf("%s in %s: %v", action, st, err)
					continue
				}
				if got.ID != sg.ID || got.Control != action || got.Status != st || got.Steps != nil || got.Durable != durable {
					t.Errorf("%s in %s answered id %s control %q status %s steps %d durable %v",
						action, st, got.ID, got.Control, got.Status, len(got.Steps), got.Durable)
				}
				if got.NextRunAt == nil || !near(*got.NextRunAt, time.Now()) {
					t.Errorf("%s in %s: NextRunAt = %v, want now", action, st, got.NextRunAt)
				}
				if s := h.get(sg.ID); s.Control != action || s.Status != st {
					t.Errorf("%s in %s: stored control %q status %s", action, st, s.Control, s.Status)
				}
			}
			claimed := h.claim("carrier", longLease, 100)
			if !maps(idSet(claimed), allowed) {
				t.Errorf("claim after %s requests got %d sagas, want the %d that took the request", action, len(claimed), len(allowed))
			}
			for _, s := range claimed {
				if s.Control != action {
					t.Errorf("claimed saga carries control %q, want %q", s.Control, action)
				}
			}
		})
	}

	t.Run("NotFound", func(t *testing.T) {
		h := setup(t, newStore)
		h.create(NewTestSaga("", 1), 0)
		for _, action := range saga.ControlActions {
			_, err := h.store.RequestControl(h.ctx, saga.NewID(), action)
			isNotFound(t, "RequestControl("+string(action)+") of an unknown saga", err)
		}
	})

	t.Run("UnknownAction", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.create(NewTestSaga("", 1), 0)
		before := h.snapshot(sg.ID)
		for _, action := range []saga.ControlAction{saga.ControlNone, "explode"} {
			if _, err := h.store.RequestControl(h.ctx, sg.ID, action); !errors.Is(err, saga.ErrInvalidTransition) {
				t.Errorf("RequestControl(%q): err = %v, want ErrInvalidTransition", action, err)
			}
		}
		h.unchanged(before)
	})
}
