package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// Invoker makes one participant call. participant.Client implements it.
type Invoker interface {
	Invoke(ctx context.Context, call participant.Call) participant.Result
}

// Observer receives the engine's measurements (the metrics package
// implements it). Its methods are called from many goroutines and must not
// block.
type Observer interface {
	// SagaStarted is called when a saga starts executing its first step.
	SagaStarted(name string)
	// SagaEnded is called when a saga reaches an end state (Failed
	// included), with its age by the store's clock.
	SagaEnded(name string, status saga.SagaStatus, d time.Duration)
	// StepAttempt is called after every participant call.
	StepAttempt(kind participant.Kind, outcome participant.Outcome, d time.Duration)
	// StepRetried is called when a call is to be retried after a transient
	// failure.
	StepRetried(kind participant.Kind)
	// InFlight reports how many sagas this instance runs now.
	InFlight(n int)
	// LeaseLost is called when a runner finds out it lost its lease.
	LeaseLost()
}

// nopObserver is the Observer used when Config.Observer is nil.
type nopObserver struct{}

func (nopObserver) SagaStarted(string)                                               {}
func (nopObserver) SagaEnded(string, saga.SagaStatus, time.Duration)                 {}
func (nopObserver) StepAttempt(participant.Kind, participant.Outcome, time.Duration) {}
func (nopObserver) StepRetried(participant.Kind)                                     {}
func (nopObserver) InFlight(int)                                                     {}
func (nopObserver) LeaseLost()                                                       {}

// Defaults of Config.
const (
	LeaseDurationDefault      = 15 * time.Second
	MaxConcurrentSagasDefault = 1000
	ClaimIntervalDefault      = time.Second
	ClaimBatchDefault         = 64
	CleanupAfterDefault       = 24 * time.Hour
	CleanupIntervalDefault    = 10 * time.Minute
	// CleanupBatch is how many sagas one cleanup transaction deletes.
	CleanupBatch = 500
	// StatsWindowDefault is the statistics window when none is given.
	StatsWindowDefault = time.Hour
	// MinLeaseDuration is the shortest lease Config accepts.
	MinLeaseDuration = 100 * time.Millisecond
)

// EventControlIgnored is written when an operator request is no longer
// allowed by the time the runner gets to it (the saga moved on); the request
// is cleared. Its data names the action and the status.
const EventControlIgnored saga.EventType = "ControlIgnored"

// Config configures a Coordinator. Zero fields take the defaults, except
// InstanceID, which is required.
type Config struct {
	// InstanceID names this instance as a lease owner (INSTANCE_ID).
	InstanceID string
	// LeaseDuration is how long a lease lasts without renewal
	// (LEASE_SECONDS, default 15 s). Leases are renewed every third of it.
	LeaseDuration time.Duration
	// MaxConcurrentSagas bounds the sagas this instance runs at once
	// (MAX_CONCURRENT_SAGAS, default 1000).
	MaxConcurrentSagas int
	// ClaimInterval is the safety-net poll of the claim loop (default 1 s);
	// new local work and freed slots wake it at once.
	ClaimInterval time.Duration
	// ClaimBatch bounds the sagas one claim takes (default 64).
	ClaimBatch int
	// CleanupAfter is the age past which finished sagas are deleted
	// (CLEANUP_AFTER_HOURS, default 24 h).
	CleanupAfter time.Duration
	// CleanupInterval is the period of the cleanup loop (default 10 min).
	CleanupInterval time.Duration
	// AllowedHosts restricts the participant hosts a definition may name
	// (PARTICIPANT_ALLOWED_HOSTS). An entry is a host name ("inventory"),
	// a host and port ("inventory:8080"), a domain wildcard
	// ("*.lab.internal") or "*". Empty allows any host.
	AllowedHosts []string
	// Invoker makes participant calls (default participant.New with its
	// defaults).
	Invoker Invoker
	// Observer receives measurements (default: none).
	Observer Observer
	// Logger receives the engine's logs (default: discarded).
	Logger *slog.Logger
	// TracerProvider makes the spans of saga runs and participant calls
	// (default: none recorded). See tracing.go.
	TracerProvider trace.TracerProvider
	// Random returns numbers in [0, 1) for backoff jitter (default
	// math/rand/v2). A function given here is called under a lock, so it
	// need not be safe for concurrent use.
	Random func() float64

	tracer trace.Tracer // of TracerProvider, set by withDefaults
}

// withDefaults validates cfg and returns it with defaults applied. Its
// errors name the field at fault.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("engine config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if strings.TrimSpace(cfg.InstanceID) == "" {
		bad("InstanceID (INSTANCE_ID)", "must not be empty")
	} else if len(cfg.InstanceID) > 255 {
		bad("InstanceID (INSTANCE_ID)", "must be at most 255 bytes")
	}
	if cfg.LeaseDuration < 0 || (cfg.LeaseDuration > 0 && cfg.LeaseDuration < MinLeaseDuration) {
		bad("LeaseDuration (LEASE_SECONDS)", "must be at least %v", MinLeaseDuration)
	}
	if cfg.MaxConcurrentSagas < 0 {
		bad("MaxConcurrentSagas (MAX_CONCURRENT_SAGAS)", "must not be negative")
	}
	if cfg.ClaimInterval < 0 {
		bad("ClaimInterval", "must not be negative")
	}
	if cfg.ClaimBatch < 0 {
		bad("ClaimBatch", "must not be negative")
	}
	if cfg.CleanupAfter < 0 {
		bad("CleanupAfter (CLEANUP_AFTER_HOURS)", "must not be negative")
	}
	if cfg.CleanupInterval < 0 {
		bad("CleanupInterval", "must not be negative")
	}
	for i, h := range cfg.AllowedHosts {
		if strings.TrimSpace(h) == "" || strings.ContainsAny(h, "/ ") {
			bad(fmt.Sprintf("AllowedHosts[%d] (PARTICIPANT_ALLOWED_HOSTS)", i), "%q is not a host, host:port or *.domain", h)
		}
	}
	if len(errs) > 0 {
		return cfg, errors.Join(errs...)
	}
	cfg.LeaseDuration = cmp.Or(cfg.LeaseDuration, LeaseDurationDefault)
	cfg.MaxConcurrentSagas = cmp.Or(cfg.MaxConcurrentSagas, MaxConcurrentSagasDefault)
	cfg.ClaimInterval = cmp.Or(cfg.ClaimInterval, ClaimIntervalDefault)
	cfg.ClaimBatch = cmp.Or(cfg.ClaimBatch, ClaimBatchDefault)
	cfg.CleanupAfter = cmp.Or(cfg.CleanupAfter, CleanupAfterDefault)
	cfg.CleanupInterval = cmp.Or(cfg.CleanupInterval, CleanupIntervalDefault)
	if cfg.Invoker == nil {
		cfg.Invoker = participant.New(participant.Config{})
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	cfg.tracer = cfg.TracerProvider.Tracer(tracerName)
	if cfg.Random == nil {
		cfg.Random = rand.Float64
	} else {
		var mu sync.Mutex
		random := cfg.Random
		cfg.Random = func() float64 {
			mu.Lock()
			defer mu.Unlock()
			return random()
		}
	}
	return cfg, nil
}

// checkHosts refuses a definition naming a participant host not in allowed.
func checkHosts(allowed []string, def *saga.Definition) error {
	if len(allowed) == 0 {
		return nil
	}
	for i, st := range def.Steps {
		if !hostAllowed(allowed, st.Action.URL) {
			return forbidden(fmt.Sprintf("steps[%d].action.url", i), st.Action.URL)
		}
		if st.Compensation != nil && !hostAllowed(allowed, st.Compensation.URL) {
			return forbidden(fmt.Sprintf("steps[%d].compensation.url", i), st.Compensation.URL)
		}
	}
	return nil
}

func forbidden(field, rawURL string) error {
	return &saga.Error{
		Code:    saga.ECodeForbidden,
		Field:   field,
		Message: fmt.Sprintf("host of %q is not among the allowed participant hosts (PARTICIPANT_ALLOWED_HOSTS)", saga.RedactURL(rawURL)),
	}
}

// hostAllowed reports whether the host of rawURL matches an entry of
// allowed: a host name, host:port, *.domain or *.
func hostAllowed(allowed []string, rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	hostPort := strings.ToLower(u.Host)
	for _, p := range allowed {
		p = strings.ToLower(strings.TrimSpace(p))
		switch {
		case p == "*":
			return true
		case strings.HasPrefix(p, "*."):
			if strings.HasSuffix(host, p[1:]) {
				return true
			}
		case p == host, p == hostPort:
			return true
		}
	}
	return false
}
