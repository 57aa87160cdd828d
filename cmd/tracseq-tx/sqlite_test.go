package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/sqlite"
)

// TestServeSQLiteByDefault runs the service with no DATABASE_URL: it runs
// durably on tracseq.db in TRACSEQ_DATA_DIR, says so, and a saga it ran is
// there after a restart. The migrate command works on the file, and is
// refused while the service runs.
func TestServeSQLiteByDefault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"TRACSEQ_DATA_DIR": dir}
	path := filepath.Join(dir, "tracseq.db")
	p := newParticipant(t)
	b := setup(t, env)
	ctx := context.Background()

	ready, status, err := b.client.Ready(ctx)
	if err != nil || status != http.StatusOK {
		t.Fatalf("Ready: %v (HTTP %d)", err, status)
	}
	if ready.Persistence != httpapi.PersistenceSQLite || !ready.Durable || ready.Path != path ||
		ready.Database == nil || ready.Database.MigrationVersion < 1 {
		t.Fatalf("ready = %+v, want sqlite, durable, %s, migrated", ready, path)
	}
	for _, want := range []string{"persistence=sqlite", "path=" + path, "durable=true"} {
		if !strings.Contains(b.logs.String(), want) {
			t.Errorf("the log lacks %q", want)
		}
	}
	if out, err := runCLI(t, map[string]string{"TRACSEQ_URL": b.url}, nil, "health", "--ready"); err != nil ||
		!strings.Contains(out, "ready (persistence sqlite, "+path+")") {
		t.Errorf("health --ready = %q, %v", out, err)
	}
	if _, err := runCLI(t, env, nil, "migrate"); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("migrate while the service runs: err = %v, want a refusal", err)
	}

	s, _, err := b.client.Submit(ctx, p.twoStep("checkout"), 30*time.Second)
	if err != nil || s.Status != saga.SagaStatusCompleted || !s.Durable {
		t.Fatalf("Submit = %+v, %v; want Completed and durable", s, err)
	}
	before := apiView(t, b.client, s.ID)
	if err := b.main.Close(); err != nil {
		t.Fatal(err)
	}

	out, err := runCLI(t, env, nil, "migrate", "status")
	if err != nil || !strings.Contains(out, "00001_init.sql") || !strings.Contains(out, "yes") {
		t.Errorf("migrate status = %q, %v", out, err)
	}
	again := setup(t, env)
	if after := apiView(t, again.client, s.ID); !reflect.DeepEqual(after, before) {
		t.Errorf("after a restart the saga reads\n%v\nwas\n%v", after, before)
	}
}

// apiView is a saga and its events as the API shows them, decoded to
// plain values (JSON formatting aside).
func apiView(t *testing.T, c *httpapi.Client, id string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sg, err := c.Get(ctx, id)
	if err != nil {
		t.Fatalf("Get %s: %v", id, err)
	}
	evs, err := c.Events(ctx, id)
	if err != nil {
		t.Fatalf("Events %s: %v", id, err)
	}
	var out map[string]any
	raw, _ := json.Marshal(map[string]any{"saga": sg, "events": evs})
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMoveSQLiteToPostgres runs 1,000 sagas to their end on SQLite (a
// fifth of them compensated), moves the file to PostgreSQL with `migrate
// --from --to`, and checks that the five tables hold as many rows there,
// that a sample of sagas reads the same through the API of a service on
// PostgreSQL, and that the moved file is refused afterwards.
func TestMoveSQLiteToPostgres(t *testing.T) {
	t.Parallel()
	const n = 1000
	path := filepath.Join(t.TempDir(), "tracseq.db")
	fromURL := sqlite.URL(path)
	toURL := pgtest.NewDatabase(t)
	p := newParticipant(t)
	p.handle("/payments/refuse", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error": "card declined"}`, http.StatusPaymentRequired)
	})
	src := setup(t, map[string]string{"DATABASE_URL": fromURL})
	ids := submitMany(t, src.client, n, func(i int) saga.Definition {
		def := p.twoStep(fmt.Sprintf("order-%d", i))
		if i%5 == 4 {
			def.Steps[1].Action.URL = p.srv.URL + "/payments/refuse"
		}
		return def
	})
	sample := map[string]map[string]any{}
	for i := 0; i < n; i += 50 {
		sample[ids[i]] = apiView(t, src.client, ids[i])
	}
	if err := src.main.Close(); err != nil {
		t.Fatal(err)
	}

	out, err := runCLI(t, nil, nil, "migrate", "--from", fromURL, "--to", toURL, "--json")
	if err != nil {
		t.Fatalf("migrate --from --to: %v\n%s", err, out)
	}
	var rep moveReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report %q: %v", out, err)
	}
	if rep.Sagas != n || rep.InFlight != 0 || rep.Source != rep.Target {
		t.Errorf("report = %+v, want %d sagas, none in flight, as many rows moved as the file had", rep, n)
	}
	sqliteRows, pgRows := countSQLite(t, path), countPostgres(t, toURL)
	t.Logf("rows in SQLite %+v, in PostgreSQL %+v", sqliteRows, pgRows)
	if sqliteRows != pgRows || sqliteRows.Sagas != n || sqliteRows.Compensations == 0 {
		t.Errorf("rows in SQLite %+v, in PostgreSQL %+v: want equal, %d sagas, some compensations", sqliteRows, pgRows, n)
	}

	dst := setup(t, map[string]string{"DATABASE_URL": toURL, "DB_MIN_CONNECTIONS": "0", "DB_MAX_CONNECTIONS": "4"})
	for id, before := range sample {
		if after := apiView(t, dst.client, id); !reflect.DeepEqual(after, before) {
			t.Errorf("saga %s on PostgreSQL reads\n%v\non SQLite it read\n%v", id, after, before)
		}
	}

	var logs syncBuffer
	m := NewMain()
	err = m.Run(context.Background(), nil, envOf(map[string]string{"DATABASE_URL": fromURL, "HTTP_ADDR": "127.0.0.1:0"}), &logs, &logs)
	_ = m.Close()
	if err == nil || !strings.Contains(err.Error(), "moved to PostgreSQL") {
		t.Errorf("a service on the moved file: err = %v, want a refusal naming the move", err)
	}
}

// submitMany submits n definitions, 64 at a time, waits until every saga
// has ended, and returns their ids in submission order.
func submitMany(t *testing.T, c *httpapi.Client, n int, def func(i int) saga.Definition) []string {
	t.Helper()
	ids := make([]string, n)
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range 64 {
		wg.Go(func() {
			for i := range work {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				s, _, err := c.Submit(ctx, def(i), time.Minute)
				cancel()
				if err != nil {
					errs <- err
					continue
				}
				if !s.Status.Terminal() {
					errs <- fmt.Errorf("saga %s is %s after ?wait=1m", s.ID, s.Status)
				}
				ids[i] = s.ID
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("submit: %v", err)
	}
	return ids
}

// The rows of the five tables.
const sqlCountTables = `
SELECT (SELECT count(*) FROM sagas), (SELECT count(*) FROM saga_steps),
	(SELECT count(*) FROM saga_compensations), (SELECT count(*) FROM saga_checkpoints),
	(SELECT count(*) FROM saga_events)`

func countSQLite(t *testing.T, path string) saga.TableCounts {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var c saga.TableCounts
	if err := db.QueryRow(sqlCountTables).Scan(&c.Sagas, &c.Steps, &c.Compensations, &c.Checkpoints, &c.Events); err != nil {
		t.Fatalf("count SQLite rows: %v", err)
	}
	return c
}

func countPostgres(t *testing.T, url string) saga.TableCounts {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var c saga.TableCounts
	if err := conn.QueryRow(ctx, sqlCountTables).Scan(&c.Sagas, &c.Steps, &c.Compensations, &c.Checkpoints, &c.Events); err != nil {
		t.Fatalf("count PostgreSQL rows: %v", err)
	}
	return c
}
