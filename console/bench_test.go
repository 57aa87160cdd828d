package console_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/console"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
)

// benchSagas is the size of the database of BenchmarkConsolePages.
const benchSagas = 100_000

// sqlFillSagas writes $1 sagas created over the last 24 hours (the default
// retention), one every 24h/$1, newest first: 90% Completed, 5%
// Compensated, 2% Failed, 1% Executing (leased), 1% Paused, 1% Cancelled;
// each with 2 steps and 4 events from one of two instances.
const sqlFillSagas = `
WITH s AS (
	INSERT INTO sagas (id, name, status, transaction_id, completed_steps, total_steps, created_at, updated_at,
		started_at, completed_at, error, definition, owner_id, lease_expires_at, lease_epoch, next_run_at, event_seq)
	SELECT gen_random_uuid(), 'order-' || (i % 50), st.status::saga_status, gen_random_uuid(),
		CASE WHEN st.status = 'Completed' THEN 2 ELSE 1 END, 2, c.at, c.at, c.at,
		CASE WHEN st.status IN ('Executing', 'Paused') THEN NULL ELSE c.at + (i % 1000) * interval '1 millisecond' END,
		CASE WHEN st.status IN ('Compensated', 'Failed') THEN 'step "charge" failed (refused): HTTP 402' END,
		'{"name":"order","steps":[{"name":"reserve","action":{"method":"POST","url":"http://inventory/reserve"}},{"name":"charge","action":{"method":"POST","url":"http://payments/charge"}}]}',
		CASE WHEN st.status = 'Executing' THEN 'bench-a' END,
		CASE WHEN st.status = 'Executing' THEN now() + interval '1 hour' END,
		1,
		CASE WHEN st.status = 'Executing' THEN now() END,
		4
	FROM generate_series(1, $1) AS i,
		LATERAL (SELECT now() - i * (interval '24 hours' / $1) AS at) AS c,
		LATERAL (SELECT CASE WHEN i % 100 < 90 THEN 'Completed' WHEN i % 100 < 95 THEN 'Compensated'
			WHEN i % 100 < 97 THEN 'Failed' WHEN i % 100 < 98 THEN 'Executing' WHEN i % 100 < 99 THEN 'Paused'
			ELSE 'Cancelled' END AS status) AS st
	RETURNING id, status, created_at
), steps AS (
	INSERT INTO saga_steps (id, saga_id, step_name, step_index, status, input_data, output_data, attempts, started_at, completed_at)
	SELECT gen_random_uuid(), s.id, n.name, n.idx, 'Completed', '{"sku": "A"}', '{"ok": true}', 1, s.created_at, s.created_at
	FROM s, (VALUES (0, 'reserve'), (1, 'charge')) AS n(idx, name)
)
INSERT INTO saga_events (id, saga_id, seq, event_type, step_index, data, instance_id, created_at)
SELECT gen_random_uuid(), s.id, e.seq, e.type, NULL, '{"kind": "action"}',
	CASE WHEN e.seq % 2 = 0 THEN 'bench-a' ELSE 'bench-b' END, s.created_at + e.seq * interval '1 millisecond'
FROM s, (VALUES (1, 'SagaCreated'), (2, 'SagaStarted'), (3, 'StepStarted'), (4, 'StepCompleted')) AS e(seq, type)`

// BenchmarkConsolePages serves each console page from a PostgreSQL
// database holding 100,000 sagas (created over 24 hours, as with the
// default retention), the way a browser asks for it, and reports the time
// per page. It first checks that the queries behind the list and the
// counts read indexes, not the whole table.
func BenchmarkConsolePages(b *testing.B) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(b)
	store, err := postgres.Open(ctx, postgres.Config{URL: dbURL, MaxConns: 8, MinConns: 2})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(store.Close)
	if _, err := postgres.Migrate(ctx, store.Pool(), slog.New(slog.DiscardHandler)); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if _, err := store.Pool().Exec(ctx, sqlFillSagas, benchSagas); err != nil {
		b.Fatalf("fill: %v", err)
	}
	for _, table := range []string{"sagas", "saga_steps", "saga_events"} {
		if _, err := store.Pool().Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("%d sagas written in %v", benchSagas, time.Since(start).Round(time.Millisecond))
	checkPlans(b, store.Pool())

	// As served (counts and statistics reused for console.CacheTTLDefault),
	// and with every figure read for every page.
	servers := map[string]string{}
	for name, ttl := range map[string]time.Duration{"": 0, "uncached-": -1} {
		c, err := console.New(console.Config{Source: console.StoreSource(store, "bench"), Gauges: store, CacheTTL: ttl})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(c.Handler())
		b.Cleanup(srv.Close)
		servers[name] = srv.URL
	}

	var failedID, cursor string
	failedPage, err := store.ListSagas(ctx, saga.Filter{Status: saga.SagaStatusFailed, Limit: 1})
	if err != nil || len(failedPage.Sagas) == 0 {
		b.Fatalf("find a Failed saga: %v", err)
	}
	failedID = failedPage.Sagas[0].ID.String()
	// A cursor half way down the list.
	deep, err := store.ListSagas(ctx, saga.Filter{Limit: 1, CreatedAfter: new(time.Now().Add(-12 * time.Hour))})
	if err != nil {
		b.Fatal(err)
	}
	older, err := store.ListSagas(ctx, saga.Filter{Limit: 1000, CreatedAfter: new(time.Now().Add(-12*time.Hour - time.Minute))})
	if err != nil || len(older.Sagas) == 0 || len(deep.Sagas) == 0 {
		b.Fatal("find a cursor")
	}
	last := older.Sagas[len(older.Sagas)-1]
	cursor = saga.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}.String()

	type page struct{ name, path string }
	var pages []page
	for _, p := range []page{
		{"list", "/ui/"},
		{"list-part", "/ui/part/"},
		{"list-by-status", "/ui/part/?status=Failed"},
		{"list-by-name", "/ui/part/?name=order-7"},
		{"list-deep-page", "/ui/part/?cursor=" + url.QueryEscape(cursor)},
		{"saga", "/ui/part/sagas/" + failedID},
		{"statistics", "/ui/part/stats"},
		{"health", "/ui/part/health"},
	} {
		pages = append(pages, p, page{"uncached-" + p.name, p.path})
	}
	for _, p := range pages {
		base := servers[""]
		if strings.HasPrefix(p.name, "uncached-") {
			base = servers["uncached-"]
		}
		b.Run(p.name, func(b *testing.B) {
			get(b, base+p.path) // warm: prepared statements, caches
			for b.Loop() {
				get(b, base+p.path)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/page")
		})
	}
}

func get(b *testing.B, u string) {
	resp, err := http.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
}

// checkPlans fails when a query of the console's counts or list scans the
// sagas table instead of reading an index.
func checkPlans(b *testing.B, pool *pgxpool.Pool) {
	b.Helper()
	for name, q := range map[string]string{
		"counts by status": `SELECT status, count(*) FROM sagas GROUP BY status`,
		"running and Failed": `SELECT min(created_at), count(*) FROM sagas
			WHERE status IN ('Created', 'Executing', 'Compensating', 'Failed')`,
		"newest page":    `SELECT id FROM sagas ORDER BY created_at DESC, id DESC LIMIT 51`,
		"page by status": `SELECT id FROM sagas WHERE status = 'Failed' ORDER BY created_at DESC, id DESC LIMIT 51`,
		"started per minute": `SELECT floor(extract(epoch FROM created_at) / 60), count(*) FROM sagas
			WHERE created_at > now() - interval '1 hour' GROUP BY 1`,
		"ended per minute": `SELECT count(*) FROM sagas WHERE status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut')
			AND completed_at > now() - interval '1 hour'`,
	} {
		var plan strings.Builder
		rows, err := pool.Query(context.Background(), "EXPLAIN "+q)
		if err != nil {
			b.Fatalf("explain %s: %v", name, err)
		}
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				b.Fatal(err)
			}
			plan.WriteString(line + "\n")
		}
		rows.Close()
		if strings.Contains(plan.String(), "Seq Scan on sagas") {
			b.Errorf("the %s query scans the sagas table:\n%s", name, plan.String())
		}
		b.Logf("plan of %s:\n%s", name, plan.String())
	}
}
