package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/storetest"
)

// BenchmarkSagaLifecycle measures the store's share of running a 2-step
// saga: created leased with step 0 Executing; step 0 Completed, step 1
// Executing and a checkpoint; step 1 Completed and the saga Completed with
// the lease released. Three writes per saga, from 1, 16 and 64 concurrent
// sagas, with synchronous commit. It reports sagas/s and database
// transactions per saga (the store's own commit count, and the server's
// xact_commit), and the median time of one saga's three writes, which
// bursts of other load on a shared machine disturb less than the rate.
func BenchmarkSagaLifecycle(b *testing.B) {
	for _, concurrency := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			var commits atomic.Int64
			url := pgtest.NewDatabase(b)
			s := openMigrated(b, postgres.Config{URL: url, MaxConns: 20, MinConns: 5,
				Observe: func(op string, _ time.Duration, err error) {
					if op == "group_commit" && err == nil {
						commits.Add(1)
					}
				}})
			ctx := context.Background()
			before := xactCommits(b, url)
			commits.Store(0)
			cpuBefore := backendCPU(b, s)

			var (
				next      atomic.Int64
				failed    atomic.Value
				wg        sync.WaitGroup
				mu        sync.Mutex
				durations = make([]time.Duration, 0, b.N)
			)
			b.ResetTimer()
			start := time.Now()
			for range concurrency {
				wg.Go(func() {
					var own []time.Duration
					defer func() {
						mu.Lock()
						durations = append(durations, own...)
						mu.Unlock()
					}()
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						if err := lifecycle(ctx, s); err != nil {
							failed.Store(err)
							return
						}
						own = append(own, time.Since(t0))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			own := commits.Load()
			cpu := backendCPU(b, s)
			s.Close() // the server counts a backend's commits by its exit at the latest
			server := xactCommits(b, url) - before
			sagasHOT, stepsHOT := hotShares(b, url)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sagas/s")
			b.ReportMetric(float64(own)/float64(b.N), "commits/saga")
			b.ReportMetric(float64(server)/float64(b.N), "xact_commit/saga")
			if cpu.ok && cpuBefore.ok {
				b.ReportMetric(float64(cpu.minus(cpuBefore).Microseconds())/float64(b.N), "pg-cpu-µs/saga")
			}
			b.ReportMetric(sagasHOT, "sagas-hot-upd%")
			b.ReportMetric(stepsHOT, "steps-hot-upd%")
			slices.Sort(durations)
			b.ReportMetric(float64(durations[len(durations)/2].Microseconds()), "µs/saga-p50")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// lifecycle runs one saga through the three writes of
// BenchmarkSagaLifecycle.
func lifecycle(ctx context.Context, s *postgres.Store) error {
	in := storetest.NewTestSaga("bench", 2)
	in.Status = saga.SagaStatusExecuting
	in.Steps[0].Status = saga.StepStatusExecuting
	in.Steps[0].Attempts = 1
	sg, _, err := s.CreateSaga(ctx, saga.NewSaga{Saga: in, LeaseFor: time.Minute, Events: []saga.Event{
		{Type: saga.EventSagaCreated, InstanceID: "bench"},
		{Type: saga.EventStepStarted, StepIndex: new(0), InstanceID: "bench"},
	}})
	if err != nil {
		return err
	}
	if _, err := s.Apply(ctx, saga.Transition{
		SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Minute, CompletedSteps: 1,
		Steps: []saga.StepUpdate{
			{Index: 0, Status: saga.StepStatusCompleted, Attempts: 1, Output: json.RawMessage(`{"reserved": true}`), End: true},
			{Index: 1, Status: saga.StepStatusExecuting, Attempts: 1, Start: true},
		},
		Events: []saga.Event{
			{Type: saga.EventStepCompleted, StepIndex: new(0), InstanceID: "bench"},
			{Type: saga.EventStepStarted, StepIndex: new(1), InstanceID: "bench"},
		},
		Checkpoint: &saga.Checkpoint{StepIndex: 0, Context: json.RawMessage(`{"step-0": {"reserved": true}}`)},
	}); err != nil {
		return err
	}
	_, err = s.Apply(ctx, saga.Transition{
		SagaID: sg.ID, Lease: sg.Lease(), Release: true, Status: saga.SagaStatusCompleted, CompletedSteps: 2,
		Ended: true, Wake: saga.Wake{Kind: saga.WakeNever},
		Steps: []saga.StepUpdate{{Index: 1, Status: saga.StepStatusCompleted, Attempts: 1, Output: json.RawMessage(`{"charged": 42}`), End: true}},
		Events: []saga.Event{
			{Type: saga.EventStepCompleted, StepIndex: new(1), InstanceID: "bench"},
			{Type: saga.EventSagaCompleted, InstanceID: "bench"},
		},
	})
	return err
}

// xactCommits returns the server's count of committed transactions in the
// database at url, once it has settled: backends report their counts
// when idle or when they exit, not at once.
func xactCommits(tb testing.TB, url string) int64 {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	const query = `SELECT pg_stat_clear_snapshot(), xact_commit FROM pg_stat_database WHERE datname = current_database()`
	var last int64 = -1
	for range 50 {
		var n int64
		if err := conn.QueryRow(ctx, query).Scan(nil, &n); err != nil {
			tb.Fatal(err)
		}
		if n == last {
			return n
		}
		last = n
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// cpuTimes is the CPU time used so far by each backend serving a database.
type cpuTimes struct {
	ok  bool // the server's processes are readable in /proc: it runs here
	pid map[int]time.Duration
}

// minus returns the CPU time used since earlier; backends started since
// then count in full.
func (c cpuTimes) minus(earlier cpuTimes) time.Duration {
	var d time.Duration
	for pid, t := range c.pid {
		d += t - earlier.pid[pid]
	}
	return d
}

// backendCPU reads the CPU time of the backends of s's database from
// /proc, when the server runs on this machine.
func backendCPU(tb testing.TB, s *postgres.Store) cpuTimes {
	tb.Helper()
	rows, err := s.Pool().Query(context.Background(),
		`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`)
	if err != nil {
		tb.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	out := cpuTimes{ok: true, pid: make(map[int]time.Duration, len(pids))}
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return cpuTimes{}
		}
		// Fields after the command name: utime and stime are the 12th and
		// 13th, in clock ticks (100 a second on Linux).
		fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
		if len(fields) < 13 {
			return cpuTimes{}
		}
		user, err1 := strconv.ParseInt(fields[11], 10, 64)
		system, err2 := strconv.ParseInt(fields[12], 10, 64)
		if err1 != nil || err2 != nil {
			return cpuTimes{}
		}
		out.pid[int(pid)] = time.Duration(user+system) * 10 * time.Millisecond
	}
	return out
}

// hotShares returns the percentage of the updates of sagas and of
// saga_steps that were HOT (heap-only: no index touched) in the database at
// url, read after xactCommits has let the counts settle. At most half of
// the saga updates of BenchmarkSagaLifecycle can be HOT: the last one
// changes the saga's status.
func hotShares(tb testing.TB, url string) (sagas, steps float64) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	const query = `SELECT
		coalesce(100 * sum(n_tup_hot_upd) FILTER (WHERE relname = 'sagas') / nullif(sum(n_tup_upd) FILTER (WHERE relname = 'sagas'), 0), 0)::float8,
		coalesce(100 * sum(n_tup_hot_upd) FILTER (WHERE relname = 'saga_steps') / nullif(sum(n_tup_upd) FILTER (WHERE relname = 'saga_steps'), 0), 0)::float8
	FROM pg_stat_user_tables`
	if err := conn.QueryRow(ctx, query).Scan(&sagas, &steps); err != nil {
		tb.Fatal(err)
	}
	return sagas, steps
}

// BenchmarkClaim measures ClaimSagas of 10 sagas (with their steps) from
// 1,000 runnable ones, by 1 and 16 concurrent claimers. Leases of a
// microsecond let the same sagas be claimed over and over.
func BenchmarkClaim(b *testing.B) {
	for _, concurrency := range []int{1, 16} {
		b.Run(fmt.Sprintf("concurrency=%d", concurrency), func(b *testing.B) {
			s := newStoreWith(b, postgres.Config{MaxConns: 20})
			ctx := context.Background()
			var wg sync.WaitGroup
			var failed atomic.Value
			for w := range 20 {
				wg.Go(func() {
					for range 50 {
						if _, _, err := s.CreateSaga(ctx, saga.NewSaga{Saga: storetest.NewTestSaga("", 2)}); err != nil {
							failed.Store(fmt.Errorf("create by %d: %w", w, err))
							return
						}
					}
				})
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}

			var (
				next    atomic.Int64
				claimed atomic.Int64
			)
			b.ResetTimer()
			start := time.Now()
			for c := range concurrency {
				wg.Go(func() {
					owner := fmt.Sprintf("claimer-%d", c)
					for next.Add(1) <= int64(b.N) {
						got, err := s.ClaimSagas(ctx, owner, time.Microsecond, 10)
						if err != nil {
							failed.Store(err)
							return
						}
						claimed.Add(int64(len(got)))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "claims/s")
			b.ReportMetric(float64(claimed.Load())/elapsed.Seconds(), "sagas/s")
			b.ReportMetric(float64(claimed.Load())/float64(b.N), "sagas/claim")
		})
	}
}
