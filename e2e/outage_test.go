package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
)

// Budgets of the outage experiments.
const (
	// outageWarmUp is how long the load runs before the outage.
	outageWarmUp = 2 * time.Second
	// outageTail is how long it runs after.
	outageTail = 3 * time.Second
	// outageClients and outagePace set the load of each outage mode: about
	// outageClients sagas every outagePace (plus the submit's own time).
	outageClients = 2
	outagePace    = 150 * time.Millisecond
	// outageRetry is the wait of a client before it sends a refused or
	// unanswered submit again (the service's Retry-After is whole seconds:
	// the test is more impatient than a polite client).
	outageRetry = 200 * time.Millisecond
	// outageDrain bounds the wait for every saga to end after the load.
	outageDrain = 90 * time.Second
	// callGrace is how long after the database stopped a call of a durable
	// saga may still arrive: it was sent after a write committed just
	// before.
	callGrace = 300 * time.Millisecond
)

// outageModes are the values of DB_OUTAGE_MODE each experiment runs with,
// side by side on the same cluster.
var outageModes = []string{"fallback", "reject"}

// outageWindow is when the database was unavailable (or, for backend
// kills, disturbed), and how.
type outageWindow struct {
	start, end time.Time
	stopped    bool // the server was stopped (at some time) between start and end
	// down and up bound a time when the server was surely not running
	// (pg_ctl stop had returned, pg_ctl start not begun); zero when unknown.
	down, up time.Time
	note     string
}

// outageExperiment is one kind of database outage.
type outageExperiment struct {
	name      string
	instances int // per mode
	cause     func(t *testing.T, c *pgCluster, dbs []string) outageWindow
}

// TestDatabaseOutages runs four database outages against a PostgreSQL
// cluster of each experiment's own, mid-load, with the service in both
// outage modes side by side (each on its own database of the cluster):
// pg_ctl restart -m fast, pg_ctl restart -m immediate (a crash), the
// server stopped for 20 s with two instances per mode, and every backend
// of the service killed every 20 ms for 10 s. For each it checks that
// every saga accepted ends as planned with a complete trail, that each
// step's effect is applied once per idempotency key, that no submit made
// two sagas, that sagas accepted in memory ran on their instance, and
// that no saga in the database made a call while the database was down;
// and it logs what the clients were answered and what /health/ready said.
func TestDatabaseOutages(t *testing.T) {
	t.Parallel()
	began := time.Now()
	experiments := []outageExperiment{
		{name: "restart-fast", instances: 1, cause: restartCause("fast")},
		{name: "restart-immediate", instances: 1, cause: restartCause("immediate")},
		{name: "stopped-20s", instances: 2, cause: stopCause(20 * time.Second)},
		{name: "backends-killed", instances: 1, cause: killCause(20*time.Millisecond, 10*time.Second)},
	}
	t.Cleanup(func() { t.Logf("outage experiments: %v in all", time.Since(began).Round(100*time.Millisecond)) })
	for _, ex := range experiments {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			runOutage(t, ex)
		})
	}
}

// restartCause restarts the server: pg_ctl restart -m mode.
func restartCause(mode string) func(*testing.T, *pgCluster, []string) outageWindow {
	return func(t *testing.T, c *pgCluster, _ []string) outageWindow {
		w := outageWindow{start: time.Now(), stopped: true, note: "pg_ctl restart -m " + mode}
		if err := c.restart(mode); err != nil {
			t.Fatal(err)
		}
		w.end = time.Now()
		return w
	}
}

// stopCause stops the server (fast) for d, then starts it.
func stopCause(d time.Duration) func(*testing.T, *pgCluster, []string) outageWindow {
	return func(t *testing.T, c *pgCluster, _ []string) outageWindow {
		w := outageWindow{start: time.Now(), stopped: true}
		if err := c.stop("fast"); err != nil {
			t.Fatal(err)
		}
		w.down = time.Now()
		time.Sleep(d)
		w.up = time.Now()
		if err := c.start(); err != nil {
			t.Fatal(err)
		}
		w.end = time.Now()
		w.note = fmt.Sprintf("pg_ctl stop -m fast, %v stopped, pg_ctl start", d)
		return w
	}
}

// killCause terminates every backend of the service's databases every
// period for d (pg_terminate_backend, from a connection of its own).
func killCause(period, d time.Duration) func(*testing.T, *pgCluster, []string) outageWindow {
	return func(t *testing.T, c *pgCluster, dbs []string) outageWindow {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err != nil {
			t.Fatalf("connect to kill backends: %v", err)
		}
		defer conn.Close(ctx)
		w := outageWindow{start: time.Now()}
		killed, rounds := 0, 0
		ticker := time.NewTicker(period)
		defer ticker.Stop()
		for time.Since(w.start) < d {
			var n int
			if err := conn.QueryRow(ctx, `
				SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
				FROM pg_stat_activity
				WHERE datname = ANY($1) AND pid <> pg_backend_pid()`, dbs).Scan(&n); err != nil {
				t.Fatalf("kill backends: %v", err)
			}
			killed += n
			rounds++
			<-ticker.C
		}
		w.end = time.Now()
		w.note = fmt.Sprintf("pg_terminate_backend of the service's backends every %v for %v: %d backends killed in %d rounds",
			period, d, killed, rounds)
		return w
	}
}

// outageSide is one outage mode of an experiment: its database, instances,
// participant, load and readiness polls.
type outageSide struct {
	mode  string
	dbURL string
	ins   []*instance
	p     *stub
	load  *load
	ready []*readyLog
	subs  []*loadSub
}

func runOutage(t *testing.T, ex outageExperiment) {
	c := newPGCluster(t)
	stopLoad := make(chan struct{})
	stopPolls := make(chan struct{})
	loadCtx, cancelLoad := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancelLoad()
	var sides []*outageSide
	var dbs []string
	for _, mode := range outageModes {
		db := "tracseq_" + mode
		s := &outageSide{mode: mode, dbURL: c.createDatabase(t, db), p: newStub(t, 5*time.Millisecond, 30*time.Millisecond)}
		dbs = append(dbs, db)
		for k := range ex.instances {
			s.ins = append(s.ins, startInstance(t, instanceConfig{
				DatabaseURL: s.dbURL,
				InstanceID:  fmt.Sprintf("%s-%s-%d", ex.name, mode, k+1),
				Env:         []string{"DB_OUTAGE_MODE=" + mode},
			}))
		}
		s.load = &load{p: s.p, targets: s.ins, prefix: ex.name + "-" + mode, clients: outageClients, pace: outagePace, retry: outageRetry}
		sides = append(sides, s)
	}
	t0 := time.Now()
	for _, s := range sides {
		for _, in := range s.ins {
			s.ready = append(s.ready, pollReady(in, 200*time.Millisecond, stopPolls))
		}
		s.load.start(loadCtx, stopLoad)
	}
	time.Sleep(outageWarmUp)
	w := ex.cause(t, c, dbs)
	time.Sleep(outageTail)
	close(stopLoad)
	var wg sync.WaitGroup
	for _, s := range sides {
		wg.Go(func() { s.subs = s.load.wait() })
	}
	wg.Wait()
	loadEnd := time.Now()
	// Readiness is polled until every instance is ready and durable again
	// (in fallback mode: memory has been moved to the database).
	for _, s := range sides {
		for _, r := range s.ready {
			r.waitFor(http.StatusOK, httpapi.PersistencePostgres, outageDrain)
		}
	}
	close(stopPolls)
	t.Logf("%s: %s; outage from %+.1fs to %+.1fs (%v); load until %+.1fs",
		ex.name, w.note, w.start.Sub(t0).Seconds(), w.end.Sub(t0).Seconds(), w.end.Sub(w.start).Round(10*time.Millisecond),
		loadEnd.Sub(t0).Seconds())
	for _, s := range sides {
		t.Run(s.mode, func(t *testing.T) { s.check(t, ex, w, t0) })
	}
}

// check checks one side after its load, and logs its figures.
func (s *outageSide) check(t *testing.T, ex outageExperiment, w outageWindow, t0 time.Time) {
	ids := make([]string, 0, len(s.subs))
	plans := make(map[string]plan, len(s.subs))
	memory := make(map[string]*loadSub) // accepted with durable: false
	resent := 0
	for _, sub := range s.subs {
		if len(sub.answers) > 1 {
			resent++
		}
		if sub.id == "" {
			t.Errorf("submission %s was never accepted: %d answers, the last %+v", sub.key, len(sub.answers), sub.answers[len(sub.answers)-1])
			continue
		}
		if _, dup := plans[sub.id]; dup {
			t.Errorf("submission %s: saga %s given to two submissions", sub.key, sub.id)
		}
		ids = append(ids, sub.id)
		plans[sub.id] = sub.plan
		if !sub.durable {
			memory[sub.id] = sub
		}
	}
	t.Logf("%d submissions, %d accepted (%d with durable: false), %d sent more than once", len(s.subs), len(ids), len(memory), resent)
	t.Logf("answers before the outage: %s", answerCounts(s.subs, time.Time{}, w.start))
	t.Logf("answers during the outage: %s", answerCounts(s.subs, w.start, w.end))
	t.Logf("answers after the outage:  %s", answerCounts(s.subs, w.end, time.Time{}))
	for _, r := range s.ready {
		back := "not within the test"
		if at := r.first(w.end, http.StatusOK, httpapi.PersistencePostgres); !at.IsZero() {
			back = at.Sub(w.end).Round(100*time.Millisecond).String() + " after the outage"
		}
		t.Logf("/health/ready of %s: %s; ready and durable %s", r.in.id, r.timeline(t0), back)
		if back == "not within the test" {
			t.Errorf("%s was not ready and durable again within %v", r.in.id, outageDrain)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	ended := waitEnded(t, s.ins[0].client, ids, outageDrain)
	endedAt := time.Now()
	details := fetchDetails(t, s.ins[0].client, ids)
	checkAll(t, s.p, details, plans)
	s.p.checkHealth(t)
	sum := logSummary(t, s.p)
	if got := queryInt(t, s.dbURL, sqlCountSagas); got != len(s.subs) {
		t.Errorf("the database holds %d sagas for %d submissions: a submit made two sagas, or one was lost", got, len(s.subs))
	}
	if got := queryInt(t, s.dbURL, `SELECT count(*) FROM sagas WHERE idempotency_key IS NULL`); got != 0 {
		t.Errorf("%d sagas lost their idempotency key in the move: two sagas had one key", got)
	}
	for id := range ended {
		if _, ok := plans[id]; !ok {
			t.Errorf("saga %s in the database was accepted by no submission", id)
		}
	}

	// A saga accepted in memory belongs to its instance until it is moved.
	endedInMemory := 0
	for id, sub := range memory {
		if s.mode == "reject" {
			t.Errorf("saga %s accepted with durable: false in reject mode", id)
		}
		for _, e := range details[id].events {
			if e.CreatedAt.Before(w.end) && e.InstanceID != sub.target.id {
				t.Errorf("saga %s, accepted in memory by %s, has event %d (%s) by %s before the database came back",
					id, sub.target.id, e.Seq, e.Type, e.InstanceID)
			}
		}
		if evs := details[id].events; len(evs) > 0 && evs[len(evs)-1].CreatedAt.Before(w.end) {
			endedInMemory++
		}
	}
	// No saga in the database makes a call while the database is down.
	if !w.down.IsZero() {
		s.p.mu.Lock()
		for _, cr := range s.p.calls {
			if _, inMemory := memory[cr.SagaID]; !inMemory && cr.At.After(w.down.Add(callGrace)) && cr.At.Before(w.up) {
				t.Errorf("saga %s (durable) made a call (%s %d) %v after the database stopped, with no durable write possible before it",
					cr.SagaID, cr.Kind, cr.Step, cr.At.Sub(w.down).Round(time.Millisecond))
			}
		}
		s.p.mu.Unlock()
	}
	t.Logf("every saga ended %v after the outage (%v after the load); %d of the sagas accepted in memory ended before the database came back; "+
		"%d calls in flight made again (SagaRecovered), %d call starts withdrawn, %d raw calls beyond one per key",
		endedAt.Sub(w.end).Round(100*time.Millisecond), time.Since(endedAt).Round(100*time.Millisecond), endedInMemory,
		countEvents(details, saga.EventSagaRecovered), withdrawnStarts(details), sum.Calls-sum.Keys)

	// The experiment exercised what it is about.
	long := w.stopped && w.end.Sub(w.start) > 5*time.Second
	switch {
	case long && s.mode == "fallback":
		if len(memory) == 0 {
			t.Error("no saga was accepted in memory during a long outage in fallback mode")
		}
		for _, r := range s.ready {
			if !r.during(w.start, w.end, 200, httpapi.PersistenceMemory) {
				t.Errorf("%s never said 200 memory on /health/ready during the outage", r.in.id)
			}
		}
	case long && s.mode == "reject":
		if answerCounts(s.subs, w.start, w.end) == "none sent" {
			t.Error("no submit was sent during the outage")
		}
		for _, r := range s.ready {
			if !r.during(w.start, w.end, 503, httpapi.PersistencePostgres) {
				t.Errorf("%s never said 503 on /health/ready during the outage", r.in.id)
			}
		}
	}
}
