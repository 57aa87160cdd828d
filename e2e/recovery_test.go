package e2e

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
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

// submission is one saga a test submits: its plan and, once accepted, its
// id and the instance that accepted it.
type submission struct {
	key  string // the definition's idempotency key
	plan plan
	id   string
	by   string // INSTANCE_ID of the instance that answered
	err  error
	sent int // requests made: more than one when an instance died meanwhile
}

// newSubmissions returns n submissions named prefix-i: every fifth saga's
// last step is refused (the saga ends Compensated), and, when flaky, every
// tenth saga's second step answers 503 once first.
func newSubmissions(prefix string, n int, flaky bool) []*submission {
	subs := make([]*submission, n)
	for i := range subs {
		pl := plan{failLast: i%5 == 4, flakyStep: -1}
		if flaky && i%10 == 3 {
			pl.flakyStep = 1
		}
		subs[i] = &submission{key: fmt.Sprintf("%s-%04d", prefix, i), plan: pl}
	}
	return subs
}

// expectedCalls sums the calls the submissions take when nothing crashes.
func expectedCalls(subs []*submission) int {
	n := 0
	for _, s := range subs {
		n += s.plan.expectedCalls()
	}
	return n
}

// submitters is how many clients submitAll runs at once.
const submitters = 16

// submitAll submits every saga of subs with a few concurrent clients.
// Saga i goes to targets(i)[0]; when that fails without an answer (the
// instance was killed), it is submitted again with the same idempotency key
// to the next target, which returns the saga if the first did create it.
// An answer other than a success fails the submission for good.
func submitAll(p *stub, subs []*submission, targets func(i int) []*instance) {
	var wg sync.WaitGroup
	work := make(chan int)
	for range submitters {
		wg.Go(func() {
			for i := range work {
				sub := subs[i]
				def := p.definition("e2e-"+sub.key, sub.key, sub.plan)
				for _, in := range targets(i) {
					if !in.running() {
						continue
					}
					sub.sent++
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					s, _, err := in.client.Submit(ctx, def)
					cancel()
					sub.err = err
					if err == nil {
						sub.id, sub.by = s.ID, in.id
						break
					}
					if _, answered := errors.AsType[*httpapi.Problem](err); answered {
						break
					}
				}
			}
		})
	}
	for i := range subs {
		work <- i
	}
	close(work)
	wg.Wait()
}

// accepted returns the ids and plans of the accepted submissions; it fails
// the test for the others.
func accepted(t *testing.T, subs []*submission) ([]string, map[string]plan) {
	t.Helper()
	ids := make([]string, 0, len(subs))
	plans := make(map[string]plan, len(subs))
	for _, s := range subs {
		if s.id == "" {
			t.Errorf("saga %s was never accepted: %v", s.key, s.err)
			continue
		}
		if _, dup := plans[s.id]; dup {
			t.Errorf("saga %s: id %s given to two submissions", s.key, s.id)
		}
		ids = append(ids, s.id)
		plans[s.id] = s.plan
	}
	if t.Failed() {
		t.FailNow()
	}
	return ids, plans
}

// resent counts the submissions sent more than once.
func resent(subs []*submission) int {
	n := 0
	for _, s := range subs {
		if s.sent > 1 {
			n++
		}
	}
	return n
}

// backend is a store the binary runs on in the tests that run on each.
type backend struct {
	name string
	// newDatabase returns the DATABASE_URL of an empty database of the
	// test's own.
	newDatabase func(t *testing.T) string
}

// backends are the durable stores: PostgreSQL (a database on the test
// server) and SQLite (a file in the test's directory).
var backends = []backend{
	{"PostgreSQL", func(t *testing.T) string { return pgtest.NewDatabase(t) }},
	{"SQLite", func(t *testing.T) string { return sqlite.URL(filepath.Join(t.TempDir(), "tracseq.db")) }},
}

// queryInt runs a counting query on the test database, PostgreSQL or
// SQLite (read beside the instance that holds the file: WAL lets readers
// in).
func queryInt(t *testing.T, dbURL, query string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if sqlite.IsURL(dbURL) {
		path, err := sqlite.ParseURL(dbURL)
		if err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatalf("open the test database: %v", err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRowContext(ctx, query).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Queries on the test database.
const (
	sqlCountSagas      = `SELECT count(*) FROM sagas`
	sqlCountEvents     = `SELECT count(*) FROM saga_events`
	sqlCountSteps      = `SELECT count(*) FROM saga_steps`
	sqlCountUnfinished = `SELECT count(*) FROM sagas WHERE status IN ('Created', 'Executing', 'Compensating')`
)

// logSummary logs what the stub saw.
func logSummary(t *testing.T, p *stub) stubSummary {
	t.Helper()
	sum := p.summary()
	t.Logf("participant: %d raw calls, %d distinct idempotency keys (%d effects applied, %d refused); "+
		"%d calls redelivered after their effect was applied, on %d keys",
		sum.Calls, sum.Keys, sum.Effects, sum.Refused, sum.Replays, sum.Replayed)
	if sum.Effects+sum.Refused != sum.Keys {
		t.Errorf("%d effects and %d refusals for %d distinct keys: some key neither acted nor refused", sum.Effects, sum.Refused, sum.Keys)
	}
	return sum
}

// TestCrashRecovery kills the only instance with SIGKILL while sagas are in
// flight, restarts it on the same database, and checks that every saga
// ends as planned with a complete trail and no effect applied twice, on
// PostgreSQL and on SQLite, and on PostgreSQL through the PgBouncer in
// transaction pooling mode that scripts/test.sh starts (DB_POOLER).
func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			dbURL := b.newDatabase(t)
			testCrashRecovery(t, dbURL, instanceConfig{DatabaseURL: dbURL})
		})
	}
	t.Run("PgBouncer", func(t *testing.T) {
		t.Parallel()
		dbURL := pgtest.NewDatabase(t)
		testCrashRecovery(t, dbURL, instanceConfig{DatabaseURL: pgtest.PgBouncerURL(t, dbURL),
			Env: []string{"DB_POOLER=pgbouncer", "DATABASE_DIRECT_URL=" + dbURL}})
	})
}

// testCrashRecovery is TestCrashRecovery with the instances configured as
// base (with their ids set) on the database dbURL.
func testCrashRecovery(t *testing.T, dbURL string, base instanceConfig) {
	const n = 200
	lease := leaseSecondsDefault * time.Second
	p := newStub(t, 5*time.Millisecond, 30*time.Millisecond)
	withID := func(id string) instanceConfig {
		cfg := base
		cfg.InstanceID = id
		return cfg
	}
	first := startInstance(t, withID("crash-1"))

	subs := newSubmissions("crash", n, false)
	expected := expectedCalls(subs)
	killAt := p.afterCalls(expected / 3)
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		submitAll(p, subs, func(int) []*instance { return []*instance{first} })
	}()
	select {
	case <-killAt:
	case <-time.After(60 * time.Second):
		t.Fatalf("the participant saw %d of %d calls in 60s", p.callCount(), expected/3)
	}
	first.kill(t)
	callsAtKill := p.callCount()
	<-submitted
	unfinished := queryInt(t, dbURL, sqlCountUnfinished)
	t.Logf("killed crash-1 after %d of about %d calls, with %d sagas unfinished", callsAtKill, expected, unfinished)
	if unfinished == 0 {
		t.Fatal("no saga was in flight when the instance was killed: the test tested nothing")
	}

	second := startInstance(t, withID("crash-2"))
	stuck := watchStuck(second)
	// Submissions the kill cut short go to the new instance, with the same
	// idempotency key.
	submitAll(p, subs, func(i int) []*instance {
		if subs[i].id != "" {
			return nil
		}
		return []*instance{second}
	})
	ids, plans := accepted(t, subs)
	t.Logf("%d submissions cut short by the kill were sent again with their idempotency key", resent(subs))
	waitEnded(t, second.client, ids, 60*time.Second)
	if got := queryInt(t, dbURL, sqlCountSagas); got != n {
		t.Errorf("the database holds %d sagas, want %d (one per idempotency key)", got, n)
	}

	details := fetchDetails(t, second.client, ids)
	checkAll(t, p, details, plans)
	p.checkHealth(t)
	tk := checkTakeovers(t, details, first.id, lease)
	sum := logSummary(t, p)
	t.Logf("%d sagas taken over by crash-2; %d calls in flight made again (SagaRecovered); %d raw calls beyond one per key",
		tk.total, countEvents(details, saga.EventSagaRecovered), sum.Calls-sum.Keys)
	if tk.total == 0 {
		t.Error("crash-2 took over no saga of crash-1")
	}
	stuck.check(t)
	checkAuditChains(t, dbURL, n, second)
}

// TestMultiInstance runs three instances on one database, spreads sagas
// over them, kills one midway, and checks that the survivors take its
// sagas over once its leases expire, that no saga's calls ever overlapped,
// and that every saga ends as planned.
func TestMultiInstance(t *testing.T) {
	t.Parallel()
	const n = 500
	lease := leaseSecondsDefault * time.Second
	dbURL := pgtest.NewDatabase(t)
	p := newStub(t, 5*time.Millisecond, 30*time.Millisecond)
	var ins []*instance
	for _, id := range []string{"multi-a", "multi-b", "multi-c"} {
		// A small slot count queues sagas in the database, where any
		// instance claims them.
		ins = append(ins, startInstance(t, instanceConfig{DatabaseURL: dbURL, InstanceID: id, MaxConcurrent: 48}))
	}
	dead := ins[0]

	subs := newSubmissions("multi", n, true)
	expected := expectedCalls(subs)
	killAt := p.afterCalls(expected / 3)
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		submitAll(p, subs, func(i int) []*instance {
			return []*instance{ins[i%3], ins[(i+1)%3], ins[(i+2)%3]}
		})
	}()
	select {
	case <-killAt:
	case <-time.After(60 * time.Second):
		t.Fatalf("the participant saw %d of %d calls in 60s", p.callCount(), expected/3)
	}
	dead.kill(t)
	stuck := watchStuck(ins[1])
	t.Logf("killed %s after %d of about %d calls", dead.id, p.callCount(), expected)
	<-submitted

	ids, plans := accepted(t, subs)
	acceptedBy := make(map[string]int)
	for _, s := range subs {
		acceptedBy[s.by]++
	}
	t.Logf("sagas accepted by instance: %s (%d sent again after the kill)", sortedCounts(acceptedBy), resent(subs))
	waitEnded(t, ins[1].client, ids, 90*time.Second)
	if got := queryInt(t, dbURL, sqlCountSagas); got != n {
		t.Errorf("the database holds %d sagas, want %d (one per idempotency key)", got, n)
	}

	details := fetchDetails(t, ins[1].client, ids)
	checkAll(t, p, details, plans)
	p.checkHealth(t)
	tk := checkTakeovers(t, details, dead.id, lease)
	logSummary(t, p)
	t.Logf("sagas ended by instance: %s", sortedCounts(tk.endedBy))
	t.Logf("%d sagas of %s taken over after its lease expired: %s; %d calls in flight made again (SagaRecovered); %d retries after a 503",
		tk.total, dead.id, sortedCounts(tk.bySurvivor), countEvents(details, saga.EventSagaRecovered), countEvents(details, saga.EventStepRetrying))
	if tk.total == 0 {
		t.Errorf("no saga of %s was taken over", dead.id)
	}
	for _, survivor := range ins[1:] {
		if tk.endedBy[survivor.id] == 0 {
			t.Errorf("%s ended no saga", survivor.id)
		}
	}
	stuck.check(t)
	checkAuditChains(t, dbURL, n)
}

// TestGracefulShutdown stops an instance with SIGTERM while its sagas are
// in flight: it must exit 0 within its shutdown budget, having finished the
// calls it was making and released its sagas, so that the other instance
// finishes them all long before their leases would have expired, without
// making any call twice.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	const n = 100
	// A long lease: the sagas can only move on so soon if they were
	// released.
	const leaseSeconds = 60
	dbURL := pgtest.NewDatabase(t)
	p := newStub(t, 50*time.Millisecond, 150*time.Millisecond)
	a := startInstance(t, instanceConfig{DatabaseURL: dbURL, InstanceID: "graceful-a", LeaseSeconds: leaseSeconds})
	b := startInstance(t, instanceConfig{DatabaseURL: dbURL, InstanceID: "graceful-b", LeaseSeconds: leaseSeconds})

	subs := newSubmissions("graceful", n, false)
	submitAll(p, subs, func(int) []*instance { return []*instance{a} })
	ids, plans := accepted(t, subs)
	select {
	case <-p.afterCalls(expectedCalls(subs) / 4):
	case <-time.After(60 * time.Second):
		t.Fatalf("the participant saw %d calls in 60s", p.callCount())
	}
	termAt := time.Now()
	a.terminate(t)
	code, exited := a.waitExit(exitTimeout)
	if !exited {
		t.Fatalf("%s still running %v after SIGTERM", a.id, exitTimeout)
	}
	t.Logf("%s exited with status %d %v after SIGTERM", a.id, code, a.exitedAt.Sub(termAt).Round(time.Millisecond))
	if code != 0 {
		t.Errorf("%s exited with status %d, want 0", a.id, code)
	}
	logText := a.logText()
	for _, want := range []string{`"msg":"coordinator stopped"`, `"msg":"stopped"`} {
		if !strings.Contains(logText, want) {
			t.Errorf("the log of %s lacks %s", a.id, want)
		}
	}
	if strings.Contains(logText, "abandoning calls in flight") {
		t.Errorf("%s abandoned calls in flight", a.id)
	}

	waitEnded(t, b.client, ids, leaseSeconds/3*time.Second)
	details := fetchDetails(t, b.client, ids)
	checkAll(t, p, details, plans)
	p.checkHealth(t)
	sum := logSummary(t, p)
	if sum.Replays != 0 || sum.Calls != sum.Keys {
		t.Errorf("%d raw calls for %d keys, %d redelivered: a graceful stop must not leave a call to make again", sum.Calls, sum.Keys, sum.Replays)
	}
	if got := countEvents(details, saga.EventSagaRecovered); got != 0 {
		t.Errorf("%d SagaRecovered events: a call was left in flight", got)
	}
	handedOver := 0
	for id, d := range details {
		for i := 1; i < len(d.events); i++ {
			e, prev := d.events[i], d.events[i-1]
			if e.Type != saga.EventLeaseTaken || prev.InstanceID != a.id {
				continue
			}
			handedOver++
			if e.InstanceID != b.id {
				t.Errorf("saga %s: taken by %s", id, e.InstanceID)
			}
		}
	}
	endedBy := make(map[string]int)
	for _, d := range details {
		endedBy[d.events[len(d.events)-1].InstanceID]++
	}
	t.Logf("%d sagas released by %s and taken over by %s (%d call starts withdrawn, not made); ended by instance: %s",
		handedOver, a.id, b.id, withdrawnStarts(details), sortedCounts(endedBy))
	if handedOver == 0 {
		t.Errorf("%s released no saga in flight to %s", a.id, b.id)
	}
}
