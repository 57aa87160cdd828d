package postgres_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
)

func TestMigrateCreatesSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)

	version, err := postgres.MigrationVersion(ctx, pool)
	if err != nil || version != 0 {
		t.Fatalf("MigrationVersion on an empty database = %d, %v; want 0, nil", version, err)
	}
	version, err = postgres.Migrate(ctx, pool, nil)
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if version < 1 {
		t.Fatalf("Migrate returned version %d", version)
	}
	if got, err := postgres.MigrationVersion(ctx, pool); err != nil || got != version {
		t.Fatalf("MigrationVersion = %d, %v; want %d", got, err, version)
	}

	enums := map[string][]string{
		"saga_status":         statusStrings(saga.SagaStatuses),
		"step_status":         statusStrings(saga.StepStatuses),
		"compensation_status": statusStrings(saga.CompensationStatuses),
	}
	for typ, want := range enums {
		rows, err := pool.Query(ctx, `
			SELECT e.enumlabel FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
			WHERE t.typname = $1 ORDER BY e.enumsortorder`, typ)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var label string
			if err := rows.Scan(&label); err != nil {
				t.Fatal(err)
			}
			got = append(got, label)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("enum %s = %v, want %v", typ, got, want)
		}
	}
	// The literal values of the specification, independent of the Go lists.
	if want := []string{"Created", "Executing", "Compensating", "Completed", "Compensated", "Failed", "Paused", "Cancelled", "TimedOut"}; !slices.Equal(enums["saga_status"], want) {
		t.Errorf("saga.SagaStatuses = %v, want %v", enums["saga_status"], want)
	}

	columns := map[string][]string{
		"sagas": {"id", "name", "status", "transaction_id", "user_id", "completed_steps", "total_steps",
			"created_at", "transaction_context", "updated_at", "started_at", "completed_at", "error",
			"definition", "idempotency_key", "compensate_to", "control_request", "deadline", "owner_id",
			"lease_expires_at", "lease_epoch", "next_run_at", "event_seq"},
		"saga_steps": {"id", "saga_id", "step_name", "step_index", "status", "input_data", "output_data",
			"attempts", "error", "uncertain", "started_at", "completed_at", "created_at", "updated_at"},
		"saga_compensations": {"id", "saga_id", "step_index", "status", "attempts", "attempts_before_retry", "output_data", "error",
			"started_at", "completed_at", "created_at", "updated_at"},
		"saga_checkpoints": {"id", "saga_id", "step_index", "context", "created_at"},
		"saga_events":      {"id", "saga_id", "seq", "event_type", "step_index", "data", "instance_id", "created_at"},
	}
	for table, want := range columns {
		got := tableColumns(t, pool, table)
		for _, col := range want {
			if !slices.Contains(got, col) {
				t.Errorf("table %s lacks column %s (has %v)", table, col, got)
			}
		}
	}

	states, err := postgres.MigrationStatus(ctx, pool)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if len(states) == 0 || states[0].Version != 1 || states[0].Name != "00001_init.sql" {
		t.Fatalf("MigrationStatus = %+v", states)
	}
	for _, st := range states {
		if !st.Applied || st.AppliedAt.IsZero() {
			t.Errorf("migration %d not reported applied: %+v", st.Version, st)
		}
	}

	// Migrating again is a no-op.
	again, err := postgres.Migrate(ctx, pool, nil)
	if err != nil || again != version {
		t.Fatalf("second Migrate = %d, %v; want %d", again, err, version)
	}
}

func TestMigrationStatusOnEmptyDatabase(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	states, err := postgres.MigrationStatus(context.Background(), pool)
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	if len(states) == 0 {
		t.Fatal("no migrations listed")
	}
	for _, st := range states {
		if st.Applied {
			t.Errorf("migration %d reported applied on an empty database", st.Version)
		}
	}
}

// Two processes starting at once on an empty database: both succeed, and
// each migration is applied (recorded) exactly once.
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)

	const migrators = 4
	pools := make([]*pgxpool.Pool, migrators)
	for i := range pools {
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		pools[i] = pool
	}
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		versions = make([]int64, migrators)
		errs     = make([]error, migrators)
	)
	for i, pool := range pools {
		wg.Go(func() {
			<-start
			versions[i], errs[i] = postgres.Migrate(ctx, pool, nil)
		})
	}
	close(start)
	wg.Wait()
	for i := range migrators {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		if versions[i] != versions[0] || versions[i] < 1 {
			t.Fatalf("versions = %v", versions)
		}
	}
	rows, err := pools[0].Query(ctx, `SELECT version_id, count(*) FROM goose_db_version WHERE version_id > 0 GROUP BY version_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var version, count int64
		if err := rows.Scan(&version, &count); err != nil {
			t.Fatal(err)
		}
		if count != 1 {
			t.Errorf("migration %d recorded %d times", version, count)
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if int64(seen) != versions[0] {
		t.Errorf("%d migrations recorded, want %d", seen, versions[0])
	}
}

func tableColumns(t *testing.T, pool *pgxpool.Pool, table string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT column_name FROM information_schema.columns
		WHERE table_schema = 'public' AND table_name = $1`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return cols
}

func statusStrings[S ~string](list []S) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = string(s)
	}
	return out
}

// Every table can be logically replicated: a table whose updates or deletes
// have no replica identity makes a publication refuse them.
func TestEveryTableHasAReplicaIdentity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if _, err := postgres.Migrate(ctx, pool, nil); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	rows, err := pool.Query(ctx, `
		SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname = current_schema()
		  AND (c.relreplident = 'n'
		       OR (c.relreplident = 'd' AND NOT EXISTS (
		             SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')))
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(bare) > 0 {
		t.Errorf("tables without a replica identity (no primary key, none set): %v", bare)
	}
}
