package metrics

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// Namespace prefixes every metric name.
const Namespace = "tracseq"

// Label values of db_operations_total{result}.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
)

// Persistence modes, the values of the mode label of persistence_mode.
const (
	ModeDurable = "durable"
	ModeMemory  = "memory"
)

// Metrics is the service's set of Prometheus collectors. Its methods are safe
// for concurrent use. A nil *Metrics is not valid; build one with New.
type Metrics struct {
	gatherer prometheus.Gatherer

	sagasStarted  prometheus.Counter
	sagasEnded    *prometheus.CounterVec
	sagaDuration  *prometheus.HistogramVec
	stepDuration  *prometheus.HistogramVec
	stepAttempts  *prometheus.CounterVec
	stepRetries   *prometheus.CounterVec
	sagasInFlight prometheus.Gauge
	leaseLost     prometheus.Counter
	refused       prometheus.Counter

	dbDuration   *prometheus.HistogramVec
	dbOperations *prometheus.CounterVec
	pool         *poolCollector

	persistenceDurable prometheus.Gauge
	persistenceMode    *prometheus.GaugeVec

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	gauges              *gaugeCollector
	hosts               participantHosts
	participantCalls    *prometheus.CounterVec
	participantDuration *prometheus.HistogramVec
}

// New creates the collectors and registers them on reg. When reg is also a
// prometheus.Gatherer (a *prometheus.Registry is), Handler serves it; a nil
// reg gets a fresh registry of its own. When reg already holds a collector
// of the same name and shape (a second Metrics on one registry), the existing
// one is shared. New panics only when reg refuses a collector for another
// reason, which is a programming error (a clashing metric of another shape).
func New(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{gatherer: prometheus.NewRegistry()}
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gatherer = g
	}

	m.sagasStarted = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "sagas_started_total",
		Help: "Sagas accepted and started.",
	}))
	m.sagasEnded = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "sagas_ended_total",
		Help: "Sagas that reached an end state (or Failed), by status.",
	}, []string{"status"}))
	m.sagaDuration = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "saga_duration_seconds",
		Help:    "Time from a saga's creation to its end, by end status.",
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
	}, []string{"status"}))
	m.stepDuration = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "step_duration_seconds",
		Help:    "Duration of one participant call, by kind (action, compensation) and outcome.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"kind", "outcome"}))
	m.stepAttempts = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "step_attempts_total",
		Help: "Participant calls, by kind (action, compensation) and outcome (success, transient, permanent: participant.Outcome.String).",
	}, []string{"kind", "outcome"}))
	m.stepRetries = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "step_retries_total",
		Help: "Participant calls scheduled for another attempt after a transient failure, by kind.",
	}, []string{"kind"}))
	m.sagasInFlight = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "sagas_in_flight",
		Help: "Sagas this instance is running now.",
	}))
	m.leaseLost = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "lease_lost_total",
		Help: "Times this instance lost the lease of a saga it was running.",
	}))
	m.refused = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "engine_transitions_refused_total",
		Help: "Saga transitions the state machine refused as impossible and did not write (a bug: alert on any).",
	}))

	m.dbDuration = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "db_operation_duration_seconds",
		Help:    "Duration of database operations, by operation.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"op"}))
	m.dbOperations = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "db_operations_total",
		Help: "Database operations, by operation and result (success, failure).",
	}, []string{"op", "result"}))
	m.pool = register(reg, newPoolCollector())

	m.persistenceDurable = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "persistence_durable",
		Help: "1 when sagas are kept in the database, 0 when only in memory.",
	}))
	m.persistenceMode = register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "persistence_mode",
		Help: "1 for the persistence mode in use (durable or memory), 0 for the other.",
	}, []string{"mode"}))

	m.httpRequests = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "http_requests_total",
		Help: "HTTP requests answered, by route pattern and status code.",
	}, []string{"route", "status"}))
	m.httpDuration = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "http_request_duration_seconds",
		Help:    "Time to answer an HTTP request, by route pattern.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"route"}))

	m.gauges = register(reg, newGaugeCollector())
	m.hosts.known = make(map[string]bool)
	m.participantCalls = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "participant_calls_total",
		Help: "Participant calls, by host of the step URL (host:port, at most 200 hosts, the rest as \"other\") and outcome.",
	}, []string{"host", "outcome"}))
	m.participantDuration = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "participant_call_duration_seconds",
		Help:    "Duration of participant calls, by host of the step URL.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"host"}))

	// Until told otherwise the service is in neither mode: show memory, the
	// safe assumption, so a dashboard never shows durable by default.
	m.SetPersistence(false)
	return m
}

// register registers c on reg, or returns the collector reg already holds
// under the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic("metrics: register collector: " + err.Error())
}

// SagaStarted counts a saga that started. The saga's name is not a label: it
// is chosen by clients and could grow without bound.
func (m *Metrics) SagaStarted(name string) {
	m.sagasStarted.Inc()
}

// SagaEnded counts a saga that reached status after d (from its creation).
func (m *Metrics) SagaEnded(name string, status saga.SagaStatus, d time.Duration) {
	s := string(status)
	m.sagasEnded.WithLabelValues(s).Inc()
	m.sagaDuration.WithLabelValues(s).Observe(d.Seconds())
}

// StepAttempt records one participant call of kind that ended with outcome
// after d.
func (m *Metrics) StepAttempt(kind participant.Kind, outcome participant.Outcome, d time.Duration) {
	k, o := string(kind), outcome.String()
	m.stepAttempts.WithLabelValues(k, o).Inc()
	m.stepDuration.WithLabelValues(k, o).Observe(d.Seconds())
}

// StepRetried counts a call of kind scheduled for another attempt.
func (m *Metrics) StepRetried(kind participant.Kind) {
	m.stepRetries.WithLabelValues(string(kind)).Inc()
}

// InFlight sets the number of sagas this instance runs now.
func (m *Metrics) InFlight(n int) {
	m.sagasInFlight.Set(float64(n))
}

// TransitionRefused counts a transition the engine's state machine refused
// as impossible (saga.CanTransition): a bug, never written.
func (m *Metrics) TransitionRefused() {
	m.refused.Inc()
}

// LeaseLost counts a lease this instance lost while running a saga.
func (m *Metrics) LeaseLost() {
	m.leaseLost.Inc()
}

// ObserveDB records one database operation op that took d and failed when
// err is not nil. op must come from a small fixed set (the store's method
// names), never from user input.
func (m *Metrics) ObserveDB(op string, d time.Duration, err error) {
	result := ResultSuccess
	if err != nil {
		result = ResultFailure
	}
	m.dbOperations.WithLabelValues(op, result).Inc()
	m.dbDuration.WithLabelValues(op).Observe(d.Seconds())
}

// SetPersistence reports the persistence mode: durable (the database) or
// memory.
func (m *Metrics) SetPersistence(durable bool) {
	if durable {
		m.persistenceDurable.Set(1)
		m.persistenceMode.WithLabelValues(ModeDurable).Set(1)
		m.persistenceMode.WithLabelValues(ModeMemory).Set(0)
		return
	}
	m.persistenceDurable.Set(0)
	m.persistenceMode.WithLabelValues(ModeDurable).Set(0)
	m.persistenceMode.WithLabelValues(ModeMemory).Set(1)
}

// RegisterPool makes db_pool_connections report what stat returns, read at
// every scrape. A later call replaces the earlier stat; nil stops reporting.
func (m *Metrics) RegisterPool(stat func() (total, idle, inUse, max int32)) {
	m.pool.set(stat)
}

// ObserveHTTP records a request to route (the pattern, such as
// "GET /api/v1/sagas/{id}", not the raw path) answered with status after d.
func (m *Metrics) ObserveHTTP(route string, status int, d time.Duration) {
	m.httpRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
}

// Handler serves the registry's metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}

// poolCollector reports the connection pool at scrape time.
type poolCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	stat func() (total, idle, inUse, max int32)
}

func newPoolCollector() *poolCollector {
	return &poolCollector{desc: prometheus.NewDesc(
		prometheus.BuildFQName(Namespace, "db_pool", "connections"),
		"Database pool connections, by state (total, idle, in_use, max).",
		[]string{"state"}, nil,
	)}
}

func (c *poolCollector) set(stat func() (total, idle, inUse, max int32)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stat = stat
}

// Describe implements prometheus.Collector.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	stat := c.stat
	c.mu.Unlock()
	if stat == nil {
		return
	}
	total, idle, inUse, maxConns := stat()
	for _, v := range []struct {
		state string
		n     int32
	}{{"total", total}, {"idle", idle}, {"in_use", inUse}, {"max", maxConns}} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(v.n), v.state)
	}
}
