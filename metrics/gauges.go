package metrics

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// Defaults of the cluster-wide gauges.
const (
	// GaugeTTLDefault is how long figures read from the store are served
	// before a scrape reads them again.
	GaugeTTLDefault = 5 * time.Second
	// gaugeReadTimeout bounds one read of the figures at scrape time.
	gaugeReadTimeout = 3 * time.Second
	// gaugeStaleAfter is how many TTLs old figures may be served when a
	// read fails; past that the gauges are absent (alert on absent()).
	gaugeStaleAfter = 12
	// MaxParticipantHosts bounds the host label of the participant call
	// metrics; calls to further hosts are counted under OtherHost.
	MaxParticipantHosts = 200
	// OtherHost is the host label of calls past MaxParticipantHosts.
	OtherHost = "other"
)

// ReadGauges reads the cluster-wide figures (a saga.GaugeReader's Gauges).
type ReadGauges func(ctx context.Context) (saga.Gauges, error)

// gaugeCollector serves the store's figures, read at scrape time at most
// once per ttl by this instance (each instance reads for its own scrapes).
type gaugeCollector struct {
	sagas, oldest, failedWaiting, stuck, age *prometheus.Desc
	readErrors                               prometheus.Counter

	mu   sync.Mutex // held while reading: concurrent scrapes share one read
	read ReadGauges
	ttl  time.Duration
	now  func() time.Time
	last saga.Gauges
	at   time.Time // when last was read; zero: never
}

func newGaugeCollector() *gaugeCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
	}
	return &gaugeCollector{
		sagas:         desc("sagas", "Sagas in the database (all instances), by status.", "status"),
		oldest:        desc("oldest_running_saga_age_seconds", "Age of the oldest saga that is Created, Executing or Compensating (0: none)."),
		failedWaiting: desc("sagas_failed_waiting", "Failed sagas waiting for an operator's retry."),
		stuck:         desc("stuck_sagas", "Sagas Created, Executing or Compensating with no live lease and no next run: no instance will pick them up. Must be 0."),
		age:           desc("saga_gauges_age_seconds", "How old the figures of the cluster-wide saga gauges are (they are cached)."),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "saga_gauges_read_errors_total",
			Help: "Failed reads of the cluster-wide saga gauges from the store.",
		}),
		now: time.Now,
	}
}

func (c *gaugeCollector) set(read ReadGauges, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read, c.ttl, c.at = read, ttl, time.Time{}
}

// Describe implements prometheus.Collector.
func (c *gaugeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sagas, c.oldest, c.failedWaiting, c.stuck, c.age} {
		ch <- d
	}
	c.readErrors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	g, age, ok := c.figures()
	c.readErrors.Collect(ch)
	if !ok {
		return
	}
	for _, st := range saga.SagaStatuses {
		ch <- prometheus.MustNewConstMetric(c.sagas, prometheus.GaugeValue, float64(g.ByStatus[st]), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, g.OldestRunningAge.Seconds())
	ch <- prometheus.MustNewConstMetric(c.failedWaiting, prometheus.GaugeValue, float64(g.FailedWaiting))
	ch <- prometheus.MustNewConstMetric(c.stuck, prometheus.GaugeValue, float64(g.Stuck))
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age.Seconds())
}

// figures returns the cached figures, reading them again when older than
// the ttl, and how old they are. ok is false when none can be served.
func (c *gaugeCollector) figures() (g saga.Gauges, age time.Duration, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.read == nil {
		return saga.Gauges{}, 0, false
	}
	now := c.now()
	if c.at.IsZero() || now.Sub(c.at) >= c.ttl {
		ctx, cancel := context.WithTimeout(context.Background(), gaugeReadTimeout)
		fresh, err := c.read(ctx)
		cancel()
		if err == nil {
			c.last, c.at = fresh, now
		} else {
			c.readErrors.Inc()
		}
	}
	if c.at.IsZero() || now.Sub(c.at) > gaugeStaleAfter*c.ttl {
		return saga.Gauges{}, 0, false
	}
	return c.last, now.Sub(c.at), true
}

// RegisterGauges makes the cluster-wide gauges (tracseq_sagas{status},
// tracseq_oldest_running_saga_age_seconds, tracseq_sagas_failed_waiting,
// tracseq_stuck_sagas) report what read returns. read is called at scrape
// time, at most once per ttl (GaugeTTLDefault when ttl <= 0); concurrent
// scrapes share one read. When a read fails, the last figures are served
// while they are younger than 12 ttls, then the gauges are absent. A later
// call replaces read; nil stops reporting.
func (m *Metrics) RegisterGauges(read ReadGauges, ttl time.Duration) {
	if ttl <= 0 {
		ttl = GaugeTTLDefault
	}
	m.gauges.set(read, ttl)
}

// participantHosts bounds the host label values in use.
type participantHosts struct {
	mu    sync.Mutex
	known map[string]bool
}

// label returns the host label of host: itself while fewer than
// MaxParticipantHosts are known, OtherHost past that.
func (p *participantHosts) label(host string) string {
	host = strings.ToLower(host)
	if host == "" {
		return OtherHost
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known[host] {
		return host
	}
	if len(p.known) >= MaxParticipantHosts {
		return OtherHost
	}
	p.known[host] = true
	return host
}

// ParticipantCall records one call to a participant at host (the host and
// port of the step's URL, never the path) that ended with outcome after d.
// It has participant.Config.Observe's signature.
func (m *Metrics) ParticipantCall(host string, outcome participant.Outcome, d time.Duration) {
	h := m.hosts.label(host)
	m.participantCalls.WithLabelValues(h, outcome.String()).Inc()
	m.participantDuration.WithLabelValues(h).Observe(d.Seconds())
}
