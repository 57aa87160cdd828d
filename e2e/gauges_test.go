package e2e

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// gaugeTTLMs is the METRICS_GAUGE_TTL_MS of the instances: the gauges
// follow the database closely.
const gaugeTTLMs = "200"

// stuckWatch scrapes an instance's /metrics while a test runs and keeps
// the highest tracseq_stuck_sagas it saw.
type stuckWatch struct {
	in   *instance
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples int
	highest float64
	errs    int
}

// watchStuck starts scraping in every 250 ms until check is called.
func watchStuck(in *instance) *stuckWatch {
	w := &stuckWatch{in: in, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			w.scrape()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *stuckWatch) scrape() {
	v, ok := stuckSagas(w.in)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !ok {
		w.errs++
		return
	}
	w.samples++
	w.highest = max(w.highest, v)
}

// check stops the watch, scrapes once more (the sagas have ended), and
// fails the test when any scrape saw a stuck saga or none succeeded.
func (w *stuckWatch) check(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	time.Sleep(300 * time.Millisecond) // past the gauge cache of the last scrape
	w.scrape()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("tracseq_stuck_sagas on %s: highest %v over %d scrapes (%d failed)", w.in.id, w.highest, w.samples, w.errs)
	if w.samples == 0 {
		t.Errorf("no scrape of %s/metrics read tracseq_stuck_sagas", w.in.url)
	}
	if w.highest != 0 {
		t.Errorf("tracseq_stuck_sagas reached %v on %s: a saga was left where no instance would pick it up", w.highest, w.in.id)
	}
}

// stuckSagas reads tracseq_stuck_sagas from the instance's /metrics.
func stuckSagas(in *instance) (float64, bool) {
	resp, err := http.Get(in.url + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fam, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, false
	}
	f, ok := fam["tracseq_stuck_sagas"]
	if !ok || len(f.GetMetric()) != 1 {
		return 0, false
	}
	return f.GetMetric()[0].GetGauge().GetValue(), true
}
