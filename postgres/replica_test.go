package postgres_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/storetest"
)

// TestReadReplica runs the store against the real streaming replica that
// scripts/test.sh starts: stale-tolerant reads go to it, a replica lagging
// more than ReadMaxLag is skipped, a stopped one too, and reads always
// answer.
func TestReadReplica(t *testing.T) {
	ctx := t.Context()
	dbURL := pgtest.NewDatabase(t)
	replicaURL := pgtest.ReplicaURL(t, dbURL)
	writer := openMigrated(t, postgres.Config{URL: dbURL})
	a := create(t, writer)

	// The new database and saga reach the replica.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replica log:\n%s", pgtest.ReplicaLog(t))
		}
	})
	replica := pgtest.WaitConnect(t, replicaURL, 60*time.Second)
	waitFor(t, "saga A on the replica", func() bool {
		var n int
		err := replica.QueryRow(ctx, `SELECT count(*) FROM sagas WHERE id = $1`, a.ID).Scan(&n)
		return err == nil && n == 1
	})

	// Two readers: one that tolerates an hour of lag (so that a paused
	// replica stays in use: the stale answer proves where reads go), one
	// that tolerates 300 ms.
	tolerant := openMigrated(t, postgres.Config{URL: dbURL, ReadURLs: []string{replicaURL}, ReadMaxLag: time.Hour})
	strict := openMigrated(t, postgres.Config{URL: dbURL, ReadURLs: []string{replicaURL}, ReadMaxLag: 300 * time.Millisecond})
	for _, s := range []*postgres.Store{tolerant, strict} {
		waitFor(t, "replica usable", func() bool { return replicaHealth(t, s).Usable })
	}
	if h := strict.Health(ctx); h.Error != "" || len(h.Replicas) != 1 || !strings.Contains(h.Replicas[0].Name, "127.0.0.1") {
		t.Fatalf("health %+v", h)
	}

	// Replay paused: the replica stops at A; B is on the primary only.
	if _, err := replica.Exec(ctx, `SELECT pg_wal_replay_pause()`); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_, _ = replica.Exec(context.Background(), `SELECT pg_wal_replay_resume()`)
		}
	}()
	b := create(t, writer)
	stale := saga.WithReplicaRead(ctx)
	if ids := listIDs(t, tolerant, stale); !slices.Contains(ids, a.ID) || slices.Contains(ids, b.ID) {
		t.Fatalf("replica read lists %v; want A (%s) without B (%s): the read did not go to the paused replica", ids, a.ID, b.ID)
	}
	if ids := listIDs(t, tolerant, ctx); !slices.Contains(ids, b.ID) {
		t.Fatalf("primary read lists %v without B", ids)
	}
	// A saga the replica does not have yet is read from the primary.
	if got, err := tolerant.GetSaga(stale, b.ID); err != nil || got.ID != b.ID {
		t.Fatalf("GetSaga of B with replica reads: %v, %v", got, err)
	}
	if evs, err := tolerant.ListEvents(stale, b.ID, 0, 0); err != nil || len(evs) != 1 {
		t.Fatalf("ListEvents of B with replica reads: %v, %v", evs, err)
	}

	// The strict reader finds the replica lagging and reads the primary.
	waitFor(t, "the strict reader to skip the lagging replica", func() bool {
		h := replicaHealth(t, strict)
		return !h.Usable && h.Lag > 300*time.Millisecond && h.Error == "lagging more than DB_READ_MAX_LAG_MS"
	})
	if ids := listIDs(t, strict, stale); !slices.Contains(ids, b.ID) {
		t.Fatalf("strict reader lists %v without B: it read the lagging replica", ids)
	}
	if st, err := strict.Stats(stale, time.Hour); err != nil || st.Total != 2 {
		t.Fatalf("Stats from the primary: %+v, %v", st, err)
	}

	// Replay resumed: the replica catches up and is read again.
	if _, err := replica.Exec(ctx, `SELECT pg_wal_replay_resume()`); err != nil {
		t.Fatal(err)
	}
	resumed = true
	// Caught up: not behind the primary's newest position, which it had
	// after B. (A usable replica may still miss the last writes: up to
	// ReadMaxLag of them.)
	caughtUp := func() bool { h := replicaHealth(t, strict); return h.Usable && h.Lag == 0 }
	waitFor(t, "the replica to catch up", caughtUp)
	if ids := listIDs(t, strict, stale); !slices.Contains(ids, b.ID) {
		t.Fatalf("caught-up replica lists %v without B", ids)
	}

	// The replica stopped mid-test: reads answer from the primary at once,
	// and health says why the replica is skipped.
	pgtest.StopReplica(t)
	restarted := false
	defer func() {
		if !restarted {
			pgtest.StartReplica(t)
		}
	}()
	c := create(t, writer)
	for _, s := range []*postgres.Store{strict, tolerant} {
		if ids := listIDs(t, s, stale); !slices.Contains(ids, c.ID) {
			t.Fatalf("with the replica stopped, list %v lacks C", ids)
		}
		if _, err := s.GetSaga(stale, c.ID); err != nil {
			t.Fatalf("with the replica stopped, GetSaga: %v", err)
		}
	}
	waitFor(t, "health to report the replica down", func() bool {
		h := strict.Health(ctx)
		return h.Error == "" && !h.Replicas[0].Usable && h.Replicas[0].Error != ""
	})
	t.Logf("stopped replica: %+v", replicaHealth(t, strict))

	pgtest.StartReplica(t)
	restarted = true
	waitFor(t, "the restarted replica in use and caught up", caughtUp)
	if ids := listIDs(t, strict, stale); !slices.Contains(ids, c.ID) {
		t.Fatalf("restarted replica lists %v without C", ids)
	}
}

// create stores a new unleased saga through s.
func create(t *testing.T, s *postgres.Store) *saga.Saga {
	t.Helper()
	sg, _, err := s.CreateSaga(t.Context(), saga.NewSaga{Saga: storetest.NewTestSaga("", 1),
		Events: []saga.Event{{ID: saga.NewID(), Type: saga.EventSagaCreated}}})
	if err != nil {
		t.Fatalf("CreateSaga: %v", err)
	}
	return sg
}

func listIDs(t *testing.T, s *postgres.Store, ctx context.Context) []saga.ID {
	t.Helper()
	page, err := s.ListSagas(ctx, saga.Filter{})
	if err != nil {
		t.Fatalf("ListSagas: %v", err)
	}
	ids := make([]saga.ID, len(page.Sagas))
	for i, sg := range page.Sagas {
		ids[i] = sg.ID
	}
	return ids
}

func replicaHealth(t *testing.T, s *postgres.Store) saga.ReplicaHealth {
	t.Helper()
	h := s.Health(t.Context())
	if len(h.Replicas) != 1 {
		t.Fatalf("health lists %d replicas, want 1", len(h.Replicas))
	}
	return h.Replicas[0]
}

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
