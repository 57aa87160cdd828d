package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/metrics"
	"github.com/tracseq/transaction-service/participant"
)

// fakeGauges is a ReadGauges whose answer the test sets.
type fakeGauges struct {
	mu    sync.Mutex
	g     saga.Gauges
	err   error
	reads int
}

func (f *fakeGauges) set(g saga.Gauges, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.g, f.err = g, err
}

func (f *fakeGauges) read(context.Context) (saga.Gauges, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.g, f.err
}

func figures(executing, failedWaiting, stuck int64, oldest time.Duration) saga.Gauges {
	g := saga.Gauges{ByStatus: map[saga.SagaStatus]int64{}, FailedWaiting: failedWaiting, Stuck: stuck, OldestRunningAge: oldest}
	g.ByStatus[saga.SagaStatusExecuting] = executing
	g.ByStatus[saga.SagaStatusFailed] = failedWaiting
	return g
}

func TestGaugesFollowTheStore(t *testing.T) {
	b := setup(t)
	var f fakeGauges
	f.set(figures(3, 1, 0, 90*time.Second), nil)
	b.m.RegisterGauges(f.read, time.Nanosecond)

	fam := scrape(t, b.m.Handler())
	for _, st := range saga.SagaStatuses {
		want := map[saga.SagaStatus]float64{saga.SagaStatusExecuting: 3, saga.SagaStatusFailed: 1}[st]
		if got := sample(t, fam, "tracseq_sagas", map[string]string{"status": string(st)}).GetGauge().GetValue(); got != want {
			t.Errorf("tracseq_sagas{status=%q} = %v, want %v", st, got, want)
		}
	}
	checkGauge(t, fam, "tracseq_oldest_running_saga_age_seconds", 90)
	checkGauge(t, fam, "tracseq_sagas_failed_waiting", 1)
	checkGauge(t, fam, "tracseq_stuck_sagas", 0)

	f.set(figures(0, 0, 2, 0), nil)
	fam = scrape(t, b.m.Handler())
	if got := sample(t, fam, "tracseq_sagas", map[string]string{"status": "Executing"}).GetGauge().GetValue(); got != 0 {
		t.Errorf("tracseq_sagas{status=Executing} = %v after the store changed, want 0", got)
	}
	checkGauge(t, fam, "tracseq_oldest_running_saga_age_seconds", 0)
	checkGauge(t, fam, "tracseq_sagas_failed_waiting", 0)
	checkGauge(t, fam, "tracseq_stuck_sagas", 2)
}

func TestGaugesAreCached(t *testing.T) {
	b := setup(t)
	var f fakeGauges
	f.set(figures(5, 0, 0, time.Second), nil)
	b.m.RegisterGauges(f.read, time.Hour)
	scrape(t, b.m.Handler())
	f.set(figures(7, 0, 0, time.Second), nil)
	fam := scrape(t, b.m.Handler())
	if got := sample(t, fam, "tracseq_sagas", map[string]string{"status": "Executing"}).GetGauge().GetValue(); got != 5 {
		t.Errorf("tracseq_sagas{status=Executing} = %v within the ttl, want the cached 5", got)
	}
	if f.reads != 1 {
		t.Errorf("the store was read %d times for two scrapes within the ttl, want 1", f.reads)
	}
}

func TestGaugesAbsentWhenTheStoreFails(t *testing.T) {
	b := setup(t)
	var f fakeGauges
	f.set(saga.Gauges{}, errors.New("database away"))
	b.m.RegisterGauges(f.read, time.Nanosecond)
	fam := scrape(t, b.m.Handler())
	for _, name := range []string{"tracseq_sagas", "tracseq_stuck_sagas", "tracseq_sagas_failed_waiting"} {
		if _, ok := fam[name]; ok {
			t.Errorf("%s is served although the store could not be read", name)
		}
	}
	checkCounter(t, fam, "tracseq_saga_gauges_read_errors_total", 1)
}

func TestParticipantCallsByHost(t *testing.T) {
	b := setup(t)
	b.m.ParticipantCall("Inventory:8080", participant.OutcomeSuccess, 20*time.Millisecond)
	b.m.ParticipantCall("inventory:8080", participant.OutcomeTransient, 30*time.Millisecond)
	for i := range metrics.MaxParticipantHosts + 5 {
		b.m.ParticipantCall(fmt.Sprintf("h%d", i), participant.OutcomeSuccess, time.Millisecond)
	}
	fam := scrape(t, b.m.Handler())
	calls := fam["tracseq_participant_calls_total"]
	hosts := map[string]bool{}
	for _, m := range calls.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "host" {
				hosts[lp.GetValue()] = true
			}
		}
	}
	if len(hosts) != metrics.MaxParticipantHosts+1 {
		t.Errorf("%d host label values, want %d (the cap and %q)", len(hosts), metrics.MaxParticipantHosts+1, metrics.OtherHost)
	}
	if got := sample(t, fam, "tracseq_participant_calls_total", map[string]string{"host": "inventory:8080", "outcome": "transient"}).GetCounter().GetValue(); got != 1 {
		t.Errorf("transient calls to inventory:8080 = %v, want 1", got)
	}
	if got := sample(t, fam, "tracseq_participant_calls_total", map[string]string{"host": metrics.OtherHost, "outcome": "success"}).GetCounter().GetValue(); got != 6 {
		t.Errorf("calls past the host cap = %v, want 6 (counted as %q)", got, metrics.OtherHost)
	}
	h := sample(t, fam, "tracseq_participant_call_duration_seconds", map[string]string{"host": "inventory:8080"}).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() < 0.049 || h.GetSampleSum() > 0.051 {
		t.Errorf("duration histogram of inventory:8080: count %d sum %v, want 2 and 0.05", h.GetSampleCount(), h.GetSampleSum())
	}
}

func checkGauge(t *testing.T, fam map[string]*dto.MetricFamily, name string, want float64) {
	t.Helper()
	if got := sample(t, fam, name, nil).GetGauge().GetValue(); got != want {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func checkCounter(t *testing.T, fam map[string]*dto.MetricFamily, name string, want float64) {
	t.Helper()
	if got := sample(t, fam, name, nil).GetCounter().GetValue(); got != want {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}
