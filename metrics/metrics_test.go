package metrics_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/metrics"
	"github.com/tracseq/transaction-service/participant"
)

// Metrics is the engine's Observer.
var _ engine.Observer = (*metrics.Metrics)(nil)

type bundle struct {
	reg *prometheus.Registry
	m   *metrics.Metrics
}

func setup(t *testing.T) bundle {
	t.Helper()
	reg := prometheus.NewRegistry()
	return bundle{reg: reg, m: metrics.New(reg)}
}

// scrape fetches the handler's output over HTTP and parses it with the
// Prometheus text parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return families
}

// sample returns the metric of family name whose labels equal labels.
func sample(t *testing.T, families map[string]*dto.MetricFamily, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	f, ok := families[name]
	if !ok {
		t.Fatalf("family %s missing", name)
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		for _, lp := range m.GetLabel() {
			if labels[lp.GetName()] != lp.GetValue() {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s%v missing", name, labels)
	return nil
}

func counter(t *testing.T, fs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	return sample(t, fs, name, labels).GetCounter().GetValue()
}

func gauge(t *testing.T, fs map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	return sample(t, fs, name, labels).GetGauge().GetValue()
}

func histogramCount(t *testing.T, fs map[string]*dto.MetricFamily, name string, labels map[string]string) (uint64, float64) {
	t.Helper()
	h := sample(t, fs, name, labels).GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}

func TestScrape(t *testing.T) {
	t.Parallel()
	b := setup(t)
	m := b.m

	m.SagaStarted("order")
	m.SagaStarted("order")
	m.SagaStarted("refund")
	m.SagaEnded("order", saga.SagaStatusCompleted, 2*time.Second)
	m.SagaEnded("order", saga.SagaStatusCompensated, time.Second)
	m.StepAttempt(participant.KindAction, participant.OutcomeSuccess, 100*time.Millisecond)
	m.StepAttempt(participant.KindAction, participant.OutcomeTransient, 50*time.Millisecond)
	m.StepAttempt(participant.KindAction, participant.OutcomeTransient, 50*time.Millisecond)
	m.StepAttempt(participant.KindCompensation, participant.OutcomePermanent, 10*time.Millisecond)
	m.StepRetried(participant.KindAction)
	m.StepRetried(participant.KindAction)
	m.InFlight(7)
	m.LeaseLost()
	m.ObserveDB("apply", 3*time.Millisecond, nil)
	m.ObserveDB("apply", 4*time.Millisecond, nil)
	m.ObserveDB("claim_sagas", time.Millisecond, errors.New("connection refused"))
	m.SetPersistence(true)
	m.RegisterPool(func() (total, idle, inUse, max int32) { return 5, 3, 2, 20 })
	m.ObserveHTTP("POST /api/v1/sagas", http.StatusCreated, 20*time.Millisecond)
	m.ObserveHTTP("POST /api/v1/sagas", http.StatusCreated, 20*time.Millisecond)
	m.ObserveHTTP("GET /api/v1/sagas/{id}", http.StatusNotFound, time.Millisecond)

	fs := scrape(t, m.Handler())

	counters := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tracseq_sagas_started_total", nil, 3},
		{"tracseq_sagas_ended_total", map[string]string{"status": "Completed"}, 1},
		{"tracseq_sagas_ended_total", map[string]string{"status": "Compensated"}, 1},
		{"tracseq_step_attempts_total", map[string]string{"kind": "action", "outcome": "success"}, 1},
		{"tracseq_step_attempts_total", map[string]string{"kind": "action", "outcome": "transient"}, 2},
		{"tracseq_step_attempts_total", map[string]string{"kind": "compensation", "outcome": "permanent"}, 1},
		{"tracseq_step_retries_total", map[string]string{"kind": "action"}, 2},
		{"tracseq_lease_lost_total", nil, 1},
		{"tracseq_db_operations_total", map[string]string{"op": "apply", "result": "success"}, 2},
		{"tracseq_db_operations_total", map[string]string{"op": "claim_sagas", "result": "failure"}, 1},
		{"tracseq_http_requests_total", map[string]string{"route": "POST /api/v1/sagas", "status": "201"}, 2},
		{"tracseq_http_requests_total", map[string]string{"route": "GET /api/v1/sagas/{id}", "status": "404"}, 1},
	}
	for _, c := range counters {
		if got := counter(t, fs, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	gauges := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tracseq_sagas_in_flight", nil, 7},
		{"tracseq_persistence_durable", nil, 1},
		{"tracseq_persistence_mode", map[string]string{"mode": "durable"}, 1},
		{"tracseq_persistence_mode", map[string]string{"mode": "memory"}, 0},
		{"tracseq_db_pool_connections", map[string]string{"state": "total"}, 5},
		{"tracseq_db_pool_connections", map[string]string{"state": "idle"}, 3},
		{"tracseq_db_pool_connections", map[string]string{"state": "in_use"}, 2},
		{"tracseq_db_pool_connections", map[string]string{"state": "max"}, 20},
	}
	for _, g := range gauges {
		if got := gauge(t, fs, g.name, g.labels); got != g.want {
			t.Errorf("%s%v = %v, want %v", g.name, g.labels, got, g.want)
		}
	}

	histograms := []struct {
		name    string
		labels  map[string]string
		count   uint64
		sumSecs float64
	}{
		{"tracseq_saga_duration_seconds", map[string]string{"status": "Completed"}, 1, 2},
		{"tracseq_step_duration_seconds", map[string]string{"kind": "action", "outcome": "transient"}, 2, 0.1},
		{"tracseq_db_operation_duration_seconds", map[string]string{"op": "apply"}, 2, 0.007},
		{"tracseq_http_request_duration_seconds", map[string]string{"route": "POST /api/v1/sagas"}, 2, 0.04},
	}
	for _, h := range histograms {
		count, sum := histogramCount(t, fs, h.name, h.labels)
		if count != h.count || sum < h.sumSecs*0.999 || sum > h.sumSecs*1.001 {
			t.Errorf("%s%v = count %d sum %v, want %d and %v", h.name, h.labels, count, sum, h.count, h.sumSecs)
		}
	}
	for name, f := range fs {
		if f.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
	}
}

func TestPersistenceAndPool(t *testing.T) {
	t.Parallel()
	b := setup(t)

	// Before any report: memory mode, no pool figures.
	fs := scrape(t, b.m.Handler())
	if got := gauge(t, fs, "tracseq_persistence_durable", nil); got != 0 {
		t.Fatalf("persistence_durable before any report = %v, want 0", got)
	}
	if _, ok := fs["tracseq_db_pool_connections"]; ok {
		t.Fatal("pool gauges reported before RegisterPool")
	}

	// The pool is read at scrape time.
	idle := int32(4)
	b.m.RegisterPool(func() (int32, int32, int32, int32) { return 4, idle, 4 - idle, 10 })
	b.m.SetPersistence(true)
	b.m.SetPersistence(false)
	idle = 1
	fs = scrape(t, b.m.Handler())
	if got := gauge(t, fs, "tracseq_db_pool_connections", map[string]string{"state": "in_use"}); got != 3 {
		t.Fatalf("in_use = %v, want 3", got)
	}
	if got := gauge(t, fs, "tracseq_persistence_mode", map[string]string{"mode": "memory"}); got != 1 {
		t.Fatalf("mode{memory} = %v, want 1", got)
	}
	if got := gauge(t, fs, "tracseq_persistence_durable", nil); got != 0 {
		t.Fatalf("persistence_durable = %v, want 0", got)
	}
}

func TestTwoOnOneRegistryShare(t *testing.T) {
	t.Parallel()
	b := setup(t)
	other := metrics.New(b.reg)
	b.m.LeaseLost()
	other.LeaseLost()
	fs := scrape(t, other.Handler())
	if got := counter(t, fs, "tracseq_lease_lost_total", nil); got != 2 {
		t.Fatalf("lease_lost_total = %v, want 2", got)
	}
}
