package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
)

// With the store's database connections killed every 20 ms, commits become
// ambiguous (committed, but the answer lost). A retried transition is the
// same write, its events carrying the ids they were built with, so the
// store recognises it: every saga's trail holds each transition once.
func TestKilledConnectionsDoNotDuplicateEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	store, err := postgres.Open(ctx, postgres.Config{URL: dbURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := postgres.Migrate(ctx, store.Pool(), nil); err != nil {
		t.Fatal(err)
	}
	b := &bundle{store: store, stub: newStub(t)}
	b.coord = startCoordinator(t, store, "engine-a", func(c *engine.Config) { c.LeaseDuration = time.Second })
	// Steps slow enough that the sagas are still running when the kills
	// begin.
	for _, st := range []string{"a", "b", "c"} {
		b.stub.on("action", st, func(_ int, w http.ResponseWriter, _ *http.Request) {
			time.Sleep(50 * time.Millisecond)
			_, _ = w.Write([]byte(`{}`))
		})
	}
	const n = 150
	ids := make([]saga.ID, 0, n)
	for i := range n {
		ids = append(ids, b.submit(t, b.definition(fmt.Sprintf("kill-%d", i), "a", "b", "c")).ID)
	}

	admin, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	kills := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		end := time.After(5 * time.Second)
		for {
			select {
			case <-stop:
				return
			case <-end:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var n int
			if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE datname = $1 AND pid <> pg_backend_pid()`, databaseName(t, dbURL)).Scan(&n); err == nil {
				kills += n
			}
		}
	}()

	deadline := time.Now().Add(60 * time.Second)
	for _, id := range ids {
		for {
			s, err := store.GetSaga(ctx, id)
			if err == nil && s.Status.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("saga %s did not end (%v)", id, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()

	dups := 0
	for _, id := range ids {
		var evs []saga.Event
		for {
			if evs, err = store.ListEvents(ctx, id, 0, 0); err == nil {
				break
			}
		}
		seen := map[string]bool{}
		for _, e := range evs {
			var d struct {
				Attempt int    `json:"attempt"`
				Kind    string `json:"kind"`
			}
			_ = json.Unmarshal(e.Data, &d)
			step := -1
			if e.StepIndex != nil {
				step = *e.StepIndex
			}
			if e.Type == saga.EventLeaseTaken || e.Type == saga.EventSagaRecovered || e.Type == saga.EventCallWithdrawn {
				continue // may legitimately repeat after a takeover
			}
			key := fmt.Sprintf("%s/%d/%s/%d", e.Type, step, d.Kind, d.Attempt)
			if seen[key] {
				dups++
				t.Errorf("saga %s: event %s written twice", id, key)
			}
			seen[key] = true
		}
	}
	t.Logf("%d sagas with connections killed every 20 ms (%d backends killed): %d duplicated events", n, kills, dups)
}
