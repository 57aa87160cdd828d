package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// dbProxy stands between the service and PostgreSQL: while down it accepts
// connections and drops them at once (the database looks unreachable); once
// up it forwards them. cut takes it down, closing the connections it
// forwards.
type dbProxy struct {
	ln     net.Listener
	target string
	up     atomic.Bool
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// cut takes the proxy down and closes every connection it forwards: the
// database went away.
func (p *dbProxy) cut() {
	p.up.Store(false)
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// track records c while it is forwarded, and returns the function that
// forgets it; nil when the proxy went down meanwhile (c is closed).
func (p *dbProxy) track(c net.Conn) func() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.up.Load() {
		c.Close()
		return nil
	}
	if p.conns == nil {
		p.conns = make(map[net.Conn]struct{})
	}
	p.conns[c] = struct{}{}
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.conns, c)
	}
}

func newDBProxy(t *testing.T, target string) *dbProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dbProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *dbProxy) serve() {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.up.Load() {
			conn.Close()
			continue
		}
		p.wg.Go(func() { p.forward(conn) })
	}
}

func (p *dbProxy) forward(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer server.Close()
	for _, c := range []net.Conn{client, server} {
		forget := p.track(c)
		if forget == nil {
			return
		}
		defer forget()
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(server, client); done <- struct{}{} }()
	go func() { io.Copy(client, server); done <- struct{}{} }()
	<-done
}

// proxiedDatabase makes a test database and a dbProxy to it (down), and
// returns the database's URL, the proxy and the URL through the proxy.
func proxiedDatabase(t *testing.T) (dbURL string, proxy *dbProxy, viaProxy string) {
	t.Helper()
	dbURL = pgtest.NewDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Fatalf("test database URL %q is not a URL with a host", dbURL)
	}
	proxy = newDBProxy(t, u.Host)
	via := *u
	via.Host = proxy.ln.Addr().String()
	return dbURL, proxy, via.String()
}

// The service starts while the database is unreachable, accepts and runs
// sagas in memory, and once the database answers moves every one of them
// there, with its steps and events, exactly once.
func TestServeMovesSagasToDatabaseWhenItComesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL, proxy, viaProxy := proxiedDatabase(t)

	p := newParticipant(t)
	b := setup(t, map[string]string{"DATABASE_URL": viaProxy})
	ready, _, err := b.client.Ready(ctx)
	if err != nil || ready.Persistence != "memory" {
		t.Fatalf("Ready = %+v, %v; want memory mode", ready, err)
	}

	// Sagas accepted and run while the database is away.
	const n = 5
	accepted := make(map[string]*httpapi.SagaJSON, n)
	events := make(map[string]int, n)
	for range n {
		s, _, err := b.client.Submit(ctx, p.twoStep("during-outage"), 30*time.Second)
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		if s.Status != saga.SagaStatusCompleted || s.Durable {
			t.Fatalf("saga %s: %s durable=%v; want Completed, not durable", s.ID, s.Status, s.Durable)
		}
		evs, err := b.client.Events(ctx, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		accepted[s.ID] = s
		events[s.ID] = len(evs)
	}

	// The database comes back: the service notices, migrates, moves.
	proxy.up.Store(true)
	deadline := time.Now().Add(90 * time.Second)
	for {
		ready, _, err := b.client.Ready(ctx)
		if err == nil && ready.Persistence == "postgres" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still not durable 90 s after the database came back: %+v, %v", ready, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Every saga is in the database once, with its steps and events.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var sagas, steps, evs int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM sagas), (SELECT count(*) FROM saga_steps),
		(SELECT count(*) FROM saga_events)`).Scan(&sagas, &steps, &evs); err != nil {
		t.Fatal(err)
	}
	wantEvents := 0
	for _, c := range events {
		wantEvents += c
	}
	if sagas != n || steps != 2*n || evs != wantEvents {
		t.Fatalf("database holds %d sagas, %d steps, %d events; want %d, %d, %d", sagas, steps, evs, n, 2*n, wantEvents)
	}
	for id, before := range accepted {
		var status string
		var count int
		if err := conn.QueryRow(ctx, `SELECT s.status::text, (SELECT count(*) FROM saga_events e WHERE e.saga_id = s.id)
			FROM sagas s WHERE s.id = $1`, id).Scan(&status, &count); err != nil {
			t.Fatalf("saga %s not in the database: %v", id, err)
		}
		if status != string(before.Status) || count != events[id] {
			t.Errorf("saga %s in the database: %s with %d events; accepted as %s with %d", id, status, count, before.Status, events[id])
		}
		// The API now serves it from the database.
		got, err := b.client.Get(ctx, id)
		if err != nil || !got.Durable || got.Status != before.Status {
			t.Errorf("GET %s after the move = %+v, %v; want durable %s", id, got, err, before.Status)
		}
	}

	// New sagas are durable at once.
	s, _, err := b.client.Submit(ctx, p.twoStep("after-outage"), 30*time.Second)
	if err != nil || !s.Durable || s.Status != saga.SagaStatusCompleted {
		t.Fatalf("saga after the move = %+v, %v; want Completed and durable", s, err)
	}
}

// /metrics is valid Prometheus exposition (checked with the Prometheus
// client's own parser) and the saga counters move when sagas run.
func TestServeMetricsMoveWithSagas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newParticipant(t)
	b := setup(t, map[string]string{"DATABASE_URL": pgtest.NewDatabase(t)})

	before := scrape(t, b.url)
	const n = 3
	for range n {
		if _, _, err := b.client.Submit(ctx, p.twoStep("metered"), 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	p.handle("/payments/charge", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"card declined"}`, http.StatusPaymentRequired)
	})
	if s, _, err := b.client.Submit(ctx, p.twoStep("declined"), 30*time.Second); err != nil || s.Status != saga.SagaStatusCompensated {
		t.Fatalf("declined saga = %+v, %v; want Compensated", s, err)
	}
	after := scrape(t, b.url)

	delta := func(name string, labels map[string]string) float64 {
		return value(after, name, labels) - value(before, name, labels)
	}
	if d := delta("tracseq_sagas_started_total", nil); d != n+1 {
		t.Errorf("sagas_started_total moved by %v, want %d", d, n+1)
	}
	if d := delta("tracseq_sagas_ended_total", map[string]string{"status": "Completed"}); d != n {
		t.Errorf("sagas_ended_total{status=Completed} moved by %v, want %d", d, n)
	}
	if d := delta("tracseq_sagas_ended_total", map[string]string{"status": "Compensated"}); d != 1 {
		t.Errorf("sagas_ended_total{status=Compensated} moved by %v, want 1", d)
	}
	if v := value(after, "tracseq_persistence_durable", nil); v != 1 {
		t.Errorf("persistence_durable = %v, want 1", v)
	}
	for _, family := range []string{"tracseq_saga_duration_seconds", "tracseq_step_duration_seconds",
		"tracseq_step_attempts_total", "tracseq_sagas_in_flight", "tracseq_db_pool_connections",
		"tracseq_db_operation_duration_seconds", "tracseq_db_operations_total", "tracseq_http_requests_total"} {
		if _, ok := after[family]; !ok {
			t.Errorf("family %s missing from /metrics", family)
		}
	}
}

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, base string) map[string]*familyValues {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid exposition format: %v", err)
	}
	out := make(map[string]*familyValues, len(families))
	for name, f := range families {
		fv := &familyValues{}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			var v float64
			switch {
			case m.GetCounter() != nil:
				v = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				v = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				v = float64(m.GetHistogram().GetSampleCount())
			}
			fv.samples = append(fv.samples, sample{labels, v})
		}
		out[name] = fv
	}
	return out
}

type sample struct {
	labels map[string]string
	value  float64
}

type familyValues struct{ samples []sample }

// value sums the samples of a family whose labels include want.
func value(families map[string]*familyValues, name string, want map[string]string) float64 {
	f, ok := families[name]
	if !ok {
		return 0
	}
	sum := 0.0
	for _, s := range f.samples {
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			sum += s.value
		}
	}
	return sum
}

// The database goes away while the service runs. With DB_OUTAGE_MODE=
// fallback (the default) new sagas are accepted in memory and run, the
// service stays ready in memory mode, and once the database answers they
// are moved to it; with reject, submits are answered 503 with Retry-After
// and the service is not ready.
func TestServeOutageWhileRunning(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{OutageFallback, OutageReject} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			testServeOutageWhileRunning(t, mode)
		})
	}
}

func testServeOutageWhileRunning(t *testing.T, mode string) {
	ctx := context.Background()
	dbURL, proxy, viaProxy := proxiedDatabase(t)
	proxy.up.Store(true)
	p := newParticipant(t)
	b := setup(t, map[string]string{"DATABASE_URL": viaProxy, "DB_OUTAGE_MODE": mode,
		"DB_CONNECTION_TIMEOUT_SECONDS": "2", "LEASE_SECONDS": "2"})
	if s, _, err := b.client.Submit(ctx, p.twoStep("before"), 30*time.Second); err != nil || !s.Durable || s.Status != saga.SagaStatusCompleted {
		t.Fatalf("saga before the outage = %+v, %v; want Completed and durable", s, err)
	}

	proxy.cut()
	// The first submits may find connections the database dropped while
	// their writes were under way: their outcome is unknown, so they are
	// refused (503) in either mode.
	var s *httpapi.SagaJSON
	refused := 0
	for attempt := 0; s == nil && attempt < 20; attempt++ {
		got, _, err := b.client.Submit(ctx, p.twoStep("during"), 30*time.Second)
		var prob *httpapi.Problem
		switch {
		case err == nil:
			s = got
		case errors.As(err, &prob) && prob.Status == http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("submit during the outage: %v", err)
		}
		if mode == OutageReject && refused == 3 {
			break
		}
	}
	t.Logf("%s: %d submits refused with 503 during the outage before one was accepted (or the test gave up)", mode, refused)
	ready, status, err := b.client.Ready(ctx)
	if err != nil {
		t.Fatalf("ready during the outage: %v", err)
	}
	switch mode {
	case OutageFallback:
		if s == nil || s.Durable || s.Status != saga.SagaStatusCompleted {
			t.Fatalf("saga submitted during the outage = %+v after %d refusals; want Completed, not durable", s, refused)
		}
		if status != http.StatusOK || ready.Persistence != httpapi.PersistenceMemory {
			t.Errorf("ready during the outage = HTTP %d %+v; want 200 in memory mode", status, ready)
		}
	case OutageReject:
		if s != nil {
			t.Fatalf("saga accepted during the outage in reject mode: %+v", s)
		}
		if status != http.StatusServiceUnavailable || ready.Persistence != httpapi.PersistencePostgres {
			t.Errorf("ready during the outage = HTTP %d %+v; want 503, durable", status, ready)
		}
	}

	proxy.up.Store(true)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ready, status, err := b.client.Ready(ctx)
		if err == nil && status == http.StatusOK && ready.Persistence == httpapi.PersistencePostgres {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not durable and ready 60 s after the database came back: HTTP %d %+v, %v", status, ready, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s != nil {
		got, err := b.client.Get(ctx, s.ID)
		if err != nil || !got.Durable || got.Status != saga.SagaStatusCompleted {
			t.Fatalf("saga accepted in memory, after the move = %+v, %v; want durable and Completed", got, err)
		}
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM saga_events WHERE saga_id = $1`, s.ID).Scan(&n); err != nil || n == 0 {
			t.Errorf("saga %s has %d events in the database (%v)", s.ID, n, err)
		}
	}
	if s, _, err := b.client.Submit(ctx, p.twoStep("after"), 30*time.Second); err != nil || !s.Durable || s.Status != saga.SagaStatusCompleted {
		t.Fatalf("saga after the outage = %+v, %v; want Completed and durable", s, err)
	}
}
