package engine_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
)

// BenchmarkEngine2Step runs two-step sagas end to end in one process: the
// engine on the PostgreSQL store, with loopback participants that answer at
// once. Each operation submits one saga and waits for it to complete. It
// reports throughput, submit-to-completion latency percentiles and the
// database transactions committed per saga (pg_stat_database.xact_commit).
func BenchmarkEngine2Step(b *testing.B) {
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			benchmarkEngine(b, conc)
		})
	}
}

func benchmarkEngine(b *testing.B, conc int) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(b)
	dbName := databaseName(b, dbURL)

	// Migrate with a store of its own, closed before the measurement so
	// that its statistics are flushed by then.
	mig, err := postgres.Open(ctx, postgres.Config{URL: dbURL})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := postgres.Migrate(ctx, mig.Pool(), nil); err != nil {
		b.Fatal(err)
	}
	mig.Close()

	stats, err := pgx.Connect(ctx, pgtest.ServerURL())
	if err != nil {
		b.Fatal(err)
	}
	defer stats.Close(ctx)
	before := xactCommits(b, stats, dbName)

	participant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer participant.Close()

	store, err := postgres.Open(ctx, postgres.Config{URL: dbURL})
	if err != nil {
		b.Fatal(err)
	}
	coord, err := engine.New(store, engine.Config{InstanceID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if err := coord.Start(ctx); err != nil {
		b.Fatal(err)
	}
	def := saga.Definition{Name: "bench", Steps: []saga.StepDefinition{
		{Name: "reserve", Action: saga.Request{Method: http.MethodPost, URL: participant.URL + "/reserve"},
			Compensation: &saga.Request{Method: http.MethodPost, URL: participant.URL + "/release"}},
		{Name: "charge", Action: saga.Request{Method: http.MethodPost, URL: participant.URL + "/charge"},
			Compensation: &saga.Request{Method: http.MethodPost, URL: participant.URL + "/refund"}},
	}}

	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var failures atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				t0 := time.Now()
				s, _, err := coord.Submit(ctx, def)
				if err == nil {
					s, err = coord.Wait(ctx, s.ID)
				}
				if err != nil || s.Status != saga.SagaStatusCompleted {
					failures.Add(1)
				}
				latencies[i] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := coord.Stop(stopCtx); err != nil {
		b.Fatal(err)
	}
	store.Close()
	if n := failures.Load(); n > 0 {
		b.Fatalf("%d of %d sagas did not complete", n, b.N)
	}
	after := xactCommits(b, stats, dbName)

	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sagas/s")
	b.ReportMetric(ms(latencies[len(latencies)/2]), "p50_ms")
	b.ReportMetric(ms(latencies[min(len(latencies)-1, len(latencies)*99/100)]), "p99_ms")
	b.ReportMetric(float64(after-before)/float64(b.N), "xacts/saga")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// databaseName returns the database of a URL made by pgtest.NewDatabase.
func databaseName(tb testing.TB, dbURL string) string {
	tb.Helper()
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg.Database
}

// xactCommits returns the transactions committed in database name, once
// no session on it is left holding statistics not yet reported (sessions
// report theirs when they end).
func xactCommits(tb testing.TB, conn *pgx.Conn, name string) int64 {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var sessions int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1`, name).Scan(&sessions); err != nil {
			tb.Fatal(err)
		}
		if sessions == 0 {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%d sessions still on %s", sessions, name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_stat_clear_snapshot()`); err != nil {
		tb.Fatal(err)
	}
	var n int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(xact_commit, 0) FROM pg_stat_database WHERE datname = $1`, name).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}
