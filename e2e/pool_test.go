package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/client"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// Load of the pool stress tests: poolClients clients, each submitting
// poolSagasEach sagas one after the other, each submit waiting for its saga
// to end (?wait=).
const (
	poolClients   = 64
	poolSagasEach = 5
	poolMaxConns  = 2
	// poolDeadline bounds the whole load: a deadlock shows as a client
	// still waiting at it.
	poolDeadline = 3 * time.Minute
	// The slow transactions: a lock on the sagas table, held lockHold at a
	// time, lockTimes times, lockGap apart.
	lockHold  = 1500 * time.Millisecond
	lockGap   = time.Second
	lockTimes = 3
)

// TestPoolStress runs c=64 against an instance whose pool has 2
// connections (DB_MAX_CONNECTIONS=2): once as it is, and once while a
// session of the test repeatedly locks the sagas table, so that every
// connection of the pool is held by a transaction waiting on the lock (a
// slow transaction). No saga may be lost or stuck, none may run twice; the
// latency of each saga (submit to end) is reported, not asserted.
func TestPoolStress(t *testing.T) {
	t.Parallel()
	for _, slow := range []bool{false, true} {
		name := "pool-of-2"
		if slow {
			name = "pool-of-2-held-by-slow-transactions"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testPoolStress(t, name, slow)
		})
	}
}

func testPoolStress(t *testing.T, name string, slow bool) {
	dbURL := pgtest.NewDatabase(t)
	p := newStub(t, 2*time.Millisecond, 10*time.Millisecond)
	in := startInstance(t, instanceConfig{
		DatabaseURL:  dbURL,
		InstanceID:   name,
		LeaseSeconds: 5,
		Env:          []string{fmt.Sprintf("DB_MAX_CONNECTIONS=%d", poolMaxConns), "DB_MIN_CONNECTIONS=1"},
	})
	stopPolls := make(chan struct{})
	ready := pollReady(in, 100*time.Millisecond, stopPolls)

	ctx, cancel := context.WithTimeout(context.Background(), poolDeadline)
	defer cancel()
	var blocked lockStats
	var lockWG sync.WaitGroup
	if slow {
		lockWG.Go(func() { blocked = holdLocks(ctx, t, dbURL) })
	}

	type result struct {
		key     string
		pl      plan
		id      string
		status  saga.SagaStatus
		latency time.Duration
		err     error
	}
	results := make([]result, poolClients*poolSagasEach)
	began := time.Now()
	var wg sync.WaitGroup
	for c := range poolClients {
		wg.Go(func() {
			for k := range poolSagasEach {
				i := c*poolSagasEach + k
				r := &results[i]
				r.key = fmt.Sprintf("%s-%04d", name, i)
				r.pl = plan{failLast: i%5 == 4, flakyStep: -1}
				start := time.Now()
				s, _, err := in.client.Submit(ctx, p.definition("pool-"+r.key, r.key, r.pl), client.WithWait(60*time.Second))
				r.latency = time.Since(start)
				if err != nil {
					r.err = err
					continue
				}
				r.id, r.status = s.ID, s.Status
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	lockWG.Wait()
	close(stopPolls)

	ids := make([]string, 0, len(results))
	plans := make(map[string]plan, len(results))
	latencies := make([]time.Duration, 0, len(results))
	notEnded := 0
	for _, r := range results {
		if r.err != nil {
			t.Errorf("saga %s: %v (after %v)", r.key, r.err, r.latency.Round(time.Millisecond))
			continue
		}
		if !r.status.Terminal() {
			notEnded++
		}
		ids = append(ids, r.id)
		plans[r.id] = r.pl
		latencies = append(latencies, r.latency)
	}
	t.Logf("%d sagas from %d clients in %v (%.0f sagas/s), pool of %d connections%s",
		len(ids), poolClients, elapsed.Round(10*time.Millisecond), float64(len(ids))/elapsed.Seconds(), poolMaxConns, blocked)
	t.Logf("latency, submit to end: %s", percentiles(latencies))
	poolSummary, maxTotal := ready.poolSummary()
	t.Logf("/health/ready pool: %s", poolSummary)
	if notEnded > 0 {
		t.Logf("%d sagas had not ended when their ?wait= answered", notEnded)
	}
	if t.Failed() {
		t.FailNow()
	}
	waitEnded(t, in.client, ids, 60*time.Second)
	details := fetchDetails(t, in.client, ids)
	checkAll(t, p, details, plans)
	p.checkHealth(t)
	sum := logSummary(t, p)
	if got := queryInt(t, dbURL, sqlCountSagas); got != len(results) {
		t.Errorf("the database holds %d sagas for %d submits", got, len(results))
	}
	t.Logf("%d calls in flight made again (SagaRecovered), %d leases taken (LeaseTaken), %d raw calls beyond one per key",
		countEvents(details, saga.EventSagaRecovered), countEvents(details, saga.EventLeaseTaken), sum.Calls-sum.Keys)
	if maxTotal > poolMaxConns {
		t.Errorf("the pool held %d connections, more than DB_MAX_CONNECTIONS=%d", maxTotal, poolMaxConns)
	}
	if slow && blocked.maxBlocked < poolMaxConns {
		t.Errorf("at most %d of the service's connections waited on the lock at once, want all %d: the pool was never all held by slow transactions",
			blocked.maxBlocked, poolMaxConns)
	}
}

// lockStats is what holdLocks saw.
type lockStats struct {
	held       time.Duration
	maxBlocked int // the service's backends waiting on the lock at once, at most
}

func (l lockStats) String() string {
	if l.held == 0 {
		return ""
	}
	return fmt.Sprintf("; the sagas table locked %d times for %v (%v in all), up to %d of the service's connections waiting on the lock at once",
		lockTimes, lockHold, l.held.Round(10*time.Millisecond), l.maxBlocked)
}

// holdLocks locks the sagas table lockTimes times for lockHold, lockGap
// apart, from a session of its own: every write of the service waits, in
// a transaction holding its connection. It counts the service's backends
// waiting on a lock meanwhile.
func holdLocks(ctx context.Context, t *testing.T, dbURL string) lockStats {
	var st lockStats
	locker, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Errorf("connect the locking session: %v", err)
		return st
	}
	defer locker.Close(context.Background())
	watcher, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Errorf("connect the watching session: %v", err)
		return st
	}
	defer watcher.Close(context.Background())
	time.Sleep(lockGap) // let the load begin
	for range lockTimes {
		start := time.Now()
		tx, err := locker.Begin(ctx)
		if err == nil {
			_, err = tx.Exec(ctx, `LOCK TABLE sagas IN SHARE ROW EXCLUSIVE MODE`)
		}
		if err != nil {
			t.Errorf("lock the sagas table: %v", err)
			return st
		}
		for time.Since(start) < lockHold {
			var n int
			if err := watcher.QueryRow(ctx, `
				SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1
					AND wait_event_type = 'Lock'`, locker.PgConn().PID()).Scan(&n); err == nil {
				st.maxBlocked = max(st.maxBlocked, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Errorf("release the lock: %v", err)
			return st
		}
		st.held += time.Since(start)
		time.Sleep(lockGap)
	}
	return st
}

// percentiles formats p50, p90, p99 and the maximum of ds.
func percentiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "no samples"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Millisecond) }
	return fmt.Sprintf("p50 %v, p90 %v, p99 %v, max %v (%d sagas)", at(0.50), at(0.90), at(0.99), s[len(s)-1].Round(time.Millisecond), len(s))
}
