package main

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// scrapeMetrics reads /metrics of b with the Prometheus text parser.
func scrapeMetrics(t *testing.T, b *bundle) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(b.url + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fam, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fam
}

// metricValue returns the value of the sample of family name with the
// given label (none when label is ""), and whether there is one.
func metricValue(fam map[string]*dto.MetricFamily, name, label, value string) (float64, bool) {
	f, ok := fam[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		match := label == ""
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == value {
				match = true
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// TestClusterGaugesMove runs sagas through the real service and watches
// the gauges read from the database follow them.
func TestClusterGaugesMove(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	p := newParticipant(t)
	release := make(chan struct{})
	p.handle("/inventory/reserve", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"reserved": true}`))
	})
	p.handle("/payments/charge", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error": "card declined"}`, http.StatusPaymentRequired)
	})
	p.handle("/inventory/release", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	b := setup(t, map[string]string{"DATABASE_URL": dbURL, "DB_MIN_CONNECTIONS": "1", "DB_MAX_CONNECTIONS": "8",
		"METRICS_GAUGE_TTL_MS": "1"})
	ctx := context.Background()

	gauge := func(fam map[string]*dto.MetricFamily, name, status string) float64 {
		label := ""
		if status != "" {
			label = "status"
		}
		v, ok := metricValue(fam, name, label, status)
		if !ok {
			t.Fatalf("/metrics has no %s{%s}", name, status)
		}
		return v
	}
	fam := scrapeMetrics(t, b)
	for _, st := range saga.SagaStatuses {
		if v := gauge(fam, "tracseq_sagas", string(st)); v != 0 {
			t.Errorf("tracseq_sagas{status=%q} = %v before any saga, want 0", st, v)
		}
	}

	// Three sagas wait in their first call: Executing, and the oldest of
	// them ages.
	def := p.twoStep("gauged")
	def.Steps[1].Retry = &saga.RetryPolicy{MaxAttempts: 1}
	def.Steps[0].Retry = &saga.RetryPolicy{MaxAttempts: 1, InitialBackoffMs: 10, MaxBackoffMs: 20}
	for range 3 {
		if _, _, err := b.client.Submit(ctx, def, 0); err != nil {
			t.Fatalf("Submit: %v", err)
		}
	}
	pollUntil(t, "three Executing sagas in the gauges", func() bool {
		fam = scrapeMetrics(t, b)
		return gauge(fam, "tracseq_sagas", "Executing") == 3 &&
			gauge(fam, "tracseq_oldest_running_saga_age_seconds", "") > 0
	})
	if v := gauge(fam, "tracseq_stuck_sagas", ""); v != 0 {
		t.Errorf("tracseq_stuck_sagas = %v while sagas run, want 0", v)
	}

	// Released: each reserve succeeds, each charge is refused, and each
	// release (the compensation of reserve) fails all its attempts: the
	// sagas end Failed, waiting for an operator.
	close(release)
	pollUntil(t, "three Failed sagas waiting in the gauges", func() bool {
		fam = scrapeMetrics(t, b)
		return gauge(fam, "tracseq_sagas", "Failed") == 3 && gauge(fam, "tracseq_sagas_failed_waiting", "") == 3
	})
	for name, want := range map[string]float64{
		"tracseq_oldest_running_saga_age_seconds": 0,
		"tracseq_stuck_sagas":                     0,
	} {
		if v := gauge(fam, name, ""); v != want {
			t.Errorf("%s = %v once every saga ended, want %v", name, v, want)
		}
	}
	if v := gauge(fam, "tracseq_sagas", "Executing"); v != 0 {
		t.Errorf("tracseq_sagas{status=Executing} = %v once every saga ended, want 0", v)
	}
	host := mustHost(t, p.srv.URL)
	calls, ok := metricValue(fam, "tracseq_participant_calls_total", "host", host)
	if !ok || calls == 0 {
		t.Errorf("tracseq_participant_calls_total{host=%q} = %v (present %v), want calls counted", host, calls, ok)
	}
	if n, ok := metricValue(fam, "tracseq_participant_call_duration_seconds", "host", host); !ok || n == 0 {
		t.Errorf("tracseq_participant_call_duration_seconds{host=%q} has %v samples, want some", host, n)
	}

	// An operator's retry takes one out of the waiting count at once.
	page, err := b.client.List(ctx, httpapi.ListQuery{Status: "Failed", Limit: 1})
	if err != nil || len(page.Sagas) != 1 {
		t.Fatalf("List Failed: %v (%d sagas)", err, len(page.Sagas))
	}
	if _, err := b.client.Control(ctx, page.Sagas[0].ID, string(saga.ControlRetry)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	pollUntil(t, "the retried saga to leave the waiting count", func() bool {
		return gauge(scrapeMetrics(t, b), "tracseq_sagas_failed_waiting", "") < 3
	})
}

func mustHost(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}
