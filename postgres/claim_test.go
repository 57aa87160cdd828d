package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/storetest"
)

// Sixteen instances, each with its own store and pool on one database,
// claim from 200 runnable sagas at once. While leases live no saga is
// held by two of them; as leases expire and sagas are claimed again, every
// claim gets a new epoch; and a write fenced on a stale lease is refused.
func TestConcurrentClaimers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.NewDatabase(t)
	const (
		claimers = 16
		sagas    = 200
	)
	stores := make([]*postgres.Store, claimers)
	for i := range stores {
		cfg := postgres.Config{URL: url, MaxConns: 2, MinConns: 1}
		if i == 0 {
			stores[i] = openMigrated(t, cfg)
			continue
		}
		s, err := postgres.Open(ctx, cfg)
		if err != nil {
			t.Fatalf("Open store %d: %v", i, err)
		}
		t.Cleanup(s.Close)
		stores[i] = s
	}
	all := make(map[saga.ID]bool, sagas)
	for range sagas {
		sg, _, err := stores[0].CreateSaga(ctx, saga.NewSaga{Saga: storetest.NewTestSaga("", 2)})
		if err != nil {
			t.Fatalf("CreateSaga: %v", err)
		}
		all[sg.ID] = true
	}

	// Phase 1: long leases. Every saga is claimed exactly once, by one
	// claimer, and the claimers' sets are disjoint.
	var (
		mu     sync.Mutex
		holder = make(map[saga.ID]int, sagas)
		errs   []error
	)
	var wg sync.WaitGroup
	for c, s := range stores {
		wg.Go(func() {
			owner := fmt.Sprintf("claimer-%d", c)
			for {
				got, err := s.ClaimSagas(ctx, owner, time.Hour, 7)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, sg := range got {
					if prev, taken := holder[sg.ID]; taken {
						errs = append(errs, fmt.Errorf("saga %s claimed by claimer %d while claimer %d holds it", sg.ID, c, prev))
					}
					holder[sg.ID] = c
					if sg.OwnerID != owner || sg.LeaseEpoch != 1 || len(sg.Steps) != 2 {
						errs = append(errs, fmt.Errorf("claim answered owner %q epoch %d with %d steps", sg.OwnerID, sg.LeaseEpoch, len(sg.Steps)))
					}
				}
				done := len(holder) == sagas || err != nil
				mu.Unlock()
				if done || len(got) == 0 && claimedAll(&mu, holder, sagas) {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	if len(holder) != sagas {
		t.Fatalf("%d of %d sagas claimed", len(holder), sagas)
	}
	for c, s := range stores {
		if got, err := s.ClaimSagas(ctx, fmt.Sprintf("claimer-%d", c), time.Hour, 10); err != nil || len(got) != 0 {
			t.Fatalf("a claim while every lease lives got %d sagas (%v)", len(got), err)
		}
	}

	// Phase 2: the leases of 50 sagas end (their holders write a release),
	// then the claimers take them with short leases, which expire under
	// their feet, until some saga has been claimed again after its lease
	// expired. Every claim of a saga takes a new epoch: no (saga, epoch) is
	// given twice.
	released := 0
	for id := range all {
		if released == 50 {
			break
		}
		c := holder[id]
		if _, err := stores[c].Apply(ctx, saga.Transition{SagaID: id, Lease: saga.Lease{Owner: fmt.Sprintf("claimer-%d", c), Epoch: 1}, Release: true}); err != nil {
			t.Fatalf("release: %v", err)
		}
		released++
	}
	type grant struct {
		id    saga.ID
		epoch int64
	}
	var (
		grants    = make(map[grant]int)
		claims    = make(map[saga.ID]int64)
		reclaimed bool // some saga claimed twice: once after its lease expired
		deadline  = time.Now().Add(20 * time.Second)
	)
	for c, s := range stores {
		wg.Go(func() {
			owner := fmt.Sprintf("claimer-%d", c)
			for {
				got, err := s.ClaimSagas(ctx, owner, 5*time.Millisecond, 5)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, sg := range got {
					g := grant{sg.ID, sg.LeaseEpoch}
					if prev, dup := grants[g]; dup {
						errs = append(errs, fmt.Errorf("saga %s epoch %d granted to claimers %d and %d", sg.ID, sg.LeaseEpoch, prev, c))
					}
					grants[g] = c
					claims[sg.ID]++
					reclaimed = reclaimed || claims[sg.ID] >= 2
				}
				stop := reclaimed || err != nil || time.Now().After(deadline)
				mu.Unlock()
				if stop {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	if !reclaimed {
		t.Fatal("no saga was claimed again after its lease expired")
	}
	for id, n := range claims {
		sg, err := stores[0].GetSaga(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if sg.LeaseEpoch != 1+n {
			t.Errorf("saga %s: epoch %d after %d claims, want %d", id, sg.LeaseEpoch, 1+n, 1+n)
		}
	}

	// A writer whose lease expired and was taken by another instance is
	// refused and changes nothing.
	old, _, err := stores[1].CreateSaga(ctx, saga.NewSaga{Saga: storetest.NewTestSaga("old", 2),
		Events: []saga.Event{{Type: saga.EventSagaCreated}}, LeaseFor: 30 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var taken *saga.Saga
	deadline = time.Now().Add(20 * time.Second)
	for taken == nil {
		got, err := stores[2].ClaimSagas(ctx, "new", time.Hour, sagas)
		if err != nil {
			t.Fatal(err)
		}
		for _, sg := range got {
			if sg.ID == old.ID {
				taken = sg
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired saga was never claimed")
		}
	}
	before, err := stores[0].GetSaga(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = stores[1].Apply(ctx, saga.Transition{SagaID: old.ID, Lease: old.Lease(), LeaseFor: time.Hour,
		Status: saga.SagaStatusExecuting, Started: true, CompletedSteps: 1,
		Steps:      []saga.StepUpdate{{Index: 0, Status: saga.StepStatusCompleted, Attempts: 1, Start: true, End: true}},
		Events:     []saga.Event{{Type: saga.EventStepCompleted, StepIndex: new(0)}},
		Checkpoint: &saga.Checkpoint{StepIndex: 0, Context: []byte(`{}`)}})
	if !errors.Is(err, saga.ErrLeaseLost) {
		t.Fatalf("Apply with the stale lease: err = %v, want ErrLeaseLost", err)
	}
	after, err := stores[0].GetSaga(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, after) || after.OwnerID != "new" || after.LeaseEpoch != 2 {
		t.Errorf("the refused write changed the saga:\nbefore %+v\nafter  %+v", before, after)
	}
	if evs, err := stores[0].ListEvents(ctx, old.ID, 0, 0); err != nil || len(evs) != 1 {
		t.Errorf("events after the refused write: %d (%v), want 1", len(evs), err)
	}
	if cp, err := stores[0].LatestCheckpoint(ctx, old.ID); err != nil || cp != nil {
		t.Errorf("checkpoint after the refused write: %+v (%v), want none", cp, err)
	}
	// The new holder writes.
	if _, err := stores[2].Apply(ctx, saga.Transition{SagaID: old.ID, Lease: taken.Lease(), LeaseFor: time.Hour}); err != nil {
		t.Errorf("Apply by the new holder: %v", err)
	}
}

// claimedAll reports, under mu, whether every saga has a holder.
func claimedAll(mu *sync.Mutex, holder map[saga.ID]int, n int) bool {
	mu.Lock()
	defer mu.Unlock()
	return len(holder) == n
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  postgres.Config
		want string
	}{
		{"NoURL", postgres.Config{}, "DATABASE_URL"},
		{"BadURL", postgres.Config{URL: "postgres://[::1"}, "DATABASE_URL"},
		{"NegativeMax", postgres.Config{URL: pgtest.ServerURL(), MaxConns: -1}, "DB_MAX_CONNECTIONS"},
		{"MinAboveMax", postgres.Config{URL: pgtest.ServerURL(), MaxConns: 2, MinConns: 3}, "DB_MIN_CONNECTIONS"},
		{"WritersAboveMax", postgres.Config{URL: pgtest.ServerURL(), MaxConns: 4, Writers: 5}, "DB_COMMIT_WRITERS"},
		{"WritersAboveDefaultMax", postgres.Config{URL: pgtest.ServerURL(), Writers: int(postgres.MaxConnsDefault) + 1}, "DB_COMMIT_WRITERS"},
		{"NegativeWriters", postgres.Config{URL: pgtest.ServerURL(), Writers: -1}, "DB_COMMIT_WRITERS"},
		{"NegativeMaxBatch", postgres.Config{URL: pgtest.ServerURL(), MaxBatch: -1}, "DB_COMMIT_MAX_BATCH"},
		{"NegativeTimeout", postgres.Config{URL: pgtest.ServerURL(), ConnectTimeout: -time.Second}, "DB_CONNECTION_TIMEOUT_SECONDS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := postgres.Open(ctx, tc.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || errors.Is(err, saga.ErrUnavailable) {
				t.Errorf("Open: %v; want a configuration error naming %s", err, tc.want)
			}
		})
	}
	t.Run("Unreachable", func(t *testing.T) {
		t.Parallel()
		_, err := postgres.Open(ctx, postgres.Config{URL: "postgres://nobody@127.0.0.1:1/none?sslmode=disable", ConnectTimeout: 5 * time.Second})
		if !errors.Is(err, saga.ErrUnavailable) || !strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("Open of an unreachable server: %v; want ErrUnavailable naming the server", err)
		}
	})
}

// A lease renewal never waits for a row another transaction is writing:
// it skips it and reports it renewed (the writer's own Apply extends the
// lease). Waiting would deadlock with group commits that lock the same rows
// in another order.
func TestRenewLeasesSkipsRowsBeingWritten(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.NewDatabase(t)
	store := openMigrated(t, postgres.Config{URL: url})
	const lease = time.Minute
	busy, _, err := store.CreateSaga(ctx, saga.NewSaga{Saga: storetest.NewTestSaga("me", 1), LeaseFor: lease})
	if err != nil {
		t.Fatal(err)
	}
	free, _, err := store.CreateSaga(ctx, saga.NewSaga{Saga: storetest.NewTestSaga("me", 1), LeaseFor: lease})
	if err != nil {
		t.Fatal(err)
	}

	// Hold busy's row lock in an open transaction, as a group commit does.
	tx, err := store.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT 1 FROM sagas WHERE id = $1 FOR UPDATE`, busy.ID); err != nil {
		t.Fatal(err)
	}
	var before time.Time
	if err := store.Pool().QueryRow(ctx, `SELECT lease_expires_at FROM sagas WHERE id = $1`, busy.ID).Scan(&before); err != nil {
		t.Fatal(err)
	}

	// A renewal that waited for the lock would run into this deadline.
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	renewed, err := store.RenewLeases(rctx, "me", map[saga.ID]int64{busy.ID: 1, free.ID: 1}, 2*lease)
	if err != nil {
		t.Fatalf("RenewLeases with a locked row: %v", err)
	}
	got := map[saga.ID]bool{}
	for _, id := range renewed {
		got[id] = true
	}
	if !got[busy.ID] || !got[free.ID] || len(renewed) != 2 {
		t.Fatalf("renewed %v, want both %s (locked) and %s", renewed, busy.ID, free.ID)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// The free row was extended; the locked one was left to its writer.
	var busyExp, freeExp time.Time
	if err := store.Pool().QueryRow(ctx, `SELECT lease_expires_at FROM sagas WHERE id = $1`, busy.ID).Scan(&busyExp); err != nil {
		t.Fatal(err)
	}
	if err := store.Pool().QueryRow(ctx, `SELECT lease_expires_at FROM sagas WHERE id = $1`, free.ID).Scan(&freeExp); err != nil {
		t.Fatal(err)
	}
	if !busyExp.Equal(before) {
		t.Errorf("locked row's lease moved from %v to %v", before, busyExp)
	}
	if !freeExp.After(before.Add(lease / 2)) {
		t.Errorf("free row's lease %v was not extended by about %v", freeExp, 2*lease)
	}

	// A lost lease (wrong epoch) is still reported lost.
	renewed, err = store.RenewLeases(ctx, "me", map[saga.ID]int64{free.ID: 7}, lease)
	if err != nil || len(renewed) != 0 {
		t.Fatalf("renewal at a stale epoch = %v, %v; want none", renewed, err)
	}
}
