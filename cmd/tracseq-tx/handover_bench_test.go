package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// The measurements of docs/operations.md ("Hand-over between instances"):
// run them with
//
//	scripts/test.sh -run '^$' -bench 'Handover|IdleQueries' -benchtime 1x ./cmd/tracseq-tx
//
// Each runs once with LISTEN/NOTIFY (the default) and once with
// DB_LISTEN=false (the 1 s poll the service had before).

// benchModes are the two ways instances find each other's work.
var benchModes = []struct {
	name string
	env  map[string]string
}{
	{"Listen", map[string]string{}},
	{"Poll1s", map[string]string{"DB_LISTEN": "false"}},
}

// startBenchMain starts an in-process instance on dbURL.
func startBenchMain(b *testing.B, dbURL, id string, extra map[string]string) *Main {
	b.Helper()
	env := map[string]string{
		"DATABASE_URL": dbURL, "INSTANCE_ID": id, "HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "warn",
		"DB_MAX_CONNECTIONS": "6", "DB_MIN_CONNECTIONS": "1",
	}
	for k, v := range extra {
		env[k] = v
	}
	m := NewMain()
	if err := m.Run(context.Background(), []string{"serve"}, envOf(env), io.Discard, io.Discard); err != nil {
		b.Fatalf("start %s: %v", id, err)
	}
	b.Cleanup(func() { _ = m.Close() })
	return m
}

// BenchmarkHandover stops an instance gracefully while it runs sagas and
// measures the time from the end of its stop to the other instance holding
// the first, and every, released saga.
func BenchmarkHandover(b *testing.B) {
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(300 * time.Millisecond)
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{}`)
			}))
			defer slow.Close()
			var firsts, alls []time.Duration
			for i := range b.N * 5 {
				dbURL := pgtest.NewDatabase(b)
				pool, err := pgxpool.New(context.Background(), dbURL)
				if err != nil {
					b.Fatal(err)
				}
				a := startBenchMain(b, dbURL, fmt.Sprintf("a-%d", i), mode.env)
				other := startBenchMain(b, dbURL, fmt.Sprintf("b-%d", i), mode.env)
				c := &httpapi.Client{BaseURL: "http://" + a.Addr()}
				const sagas = 10
				for range sagas {
					def := saga.Definition{Name: "handover"}
					for s := range 4 {
						def.Steps = append(def.Steps, saga.StepDefinition{Name: fmt.Sprintf("s%d", s),
							Action: saga.Request{Method: "POST", URL: slow.URL + "/a", Body: json.RawMessage(`{}`)}})
					}
					if _, _, err := c.Submit(context.Background(), def, 0); err != nil {
						b.Fatal(err)
					}
				}
				time.Sleep(150 * time.Millisecond) // the first calls are in flight
				_ = a.Close()
				stopped := time.Now()
				var first time.Duration
				for {
					var held, unfinished int
					if err := pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE owner_id = $1),
						count(*) FILTER (WHERE status NOT IN ('Completed','Compensated','Cancelled','TimedOut','Failed') AND owner_id IS DISTINCT FROM $1)
						FROM sagas`, "b-"+fmt.Sprint(i)).Scan(&held, &unfinished); err != nil {
						b.Fatal(err)
					}
					if held > 0 && first == 0 {
						first = time.Since(stopped)
					}
					if unfinished == 0 && first != 0 {
						alls = append(alls, time.Since(stopped))
						firsts = append(firsts, first)
						break
					}
					if time.Since(stopped) > 30*time.Second {
						b.Fatalf("the sagas were not taken over in 30 s")
					}
					time.Sleep(2 * time.Millisecond)
				}
				_ = other.Close()
				pool.Close()
			}
			slices.Sort(firsts)
			slices.Sort(alls)
			b.ReportMetric(float64(firsts[len(firsts)/2].Milliseconds()), "ms-to-first-median")
			b.ReportMetric(float64(alls[len(alls)/2].Milliseconds()), "ms-to-all-median")
			b.ReportMetric(float64(alls[len(alls)-1].Milliseconds()), "ms-to-all-max")
			b.Logf("%s: to first %v, to all %v", mode.name, firsts, alls)
		})
	}
}

// BenchmarkIdleQueries runs three idle instances on one database and counts
// the transactions the database commits for them per second
// (pg_stat_database), less the measurement's own.
func BenchmarkIdleQueries(b *testing.B) {
	const window = 60 * time.Second
	for _, mode := range benchModes {
		b.Run(mode.name, func(b *testing.B) {
			dbURL := pgtest.NewDatabase(b)
			var ms []*Main
			for i := range 3 {
				ms = append(ms, startBenchMain(b, dbURL, fmt.Sprintf("idle-%d", i), mode.env))
			}
			// PostgreSQL publishes an idle backend's transaction counts up to
			// 10 s late: let the start-up work (migrations, first claims)
			// be counted before the first reading.
			time.Sleep(12 * time.Second)
			// Read from the server's maintenance database, so that the
			// readings are not counted in the measured database.
			admin, err := pgxpool.New(context.Background(), pgtest.ServerURL())
			if err != nil {
				b.Fatal(err)
			}
			defer admin.Close()
			name := dbURL[strings.LastIndex(dbURL, "/")+1:]
			name, _, _ = strings.Cut(name, "?")
			xacts := func() int64 {
				var n int64
				if err := admin.QueryRow(context.Background(), `SELECT xact_commit + xact_rollback FROM pg_stat_database
					WHERE datname = $1`, name).Scan(&n); err != nil {
					b.Fatal(err)
				}
				return n
			}
			before := xacts()
			time.Sleep(window)
			after := xacts()
			perSecond := float64(after-before) / window.Seconds()
			b.ReportMetric(perSecond, "xacts/s")
			b.Logf("%s: %d transactions in %v by 3 idle instances: %.2f/s", mode.name, after-before, window, perSecond)
			for _, m := range ms {
				_ = m.Close()
			}
		})
	}
}
