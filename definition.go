package saga

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Limits and defaults of a saga definition.
const (
	MaxNameLength           = 255
	MaxSteps                = 100
	MaxIdempotencyKeyLength = 255
	MaxHeaders              = 32
	MaxSagaTimeout          = 30 * 24 * time.Hour
	MaxCallTimeout          = 10 * time.Minute
	MaxAttemptsLimit        = 100
	MaxBackoffLimit         = time.Hour
	MaxMultiplier           = 10

	CallTimeoutDefault      = 10 * time.Second
	MaxAttemptsDefault      = 3
	InitialBackoffDefault   = 100 * time.Millisecond
	MaxBackoffDefault       = 10 * time.Second
	MultiplierDefault       = 2.0
	CompensationMaxAttempts = 5 // default for compensations, which matter more
)

// Definition is what a client submits: the saga to run.
type Definition struct {
	Name           string          `json:"name"`
	TransactionID  *ID             `json:"transaction_id,omitempty"`
	UserID         *ID             `json:"user_id,omitempty"`
	Context        json.RawMessage `json:"context,omitempty"`
	TimeoutMs      int64           `json:"timeout_ms,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	// MaxParallel bounds the calls of one saga in flight at once when its
	// steps form a graph (0: MaxParallelDefault).
	MaxParallel int              `json:"max_parallel,omitempty"`
	Steps       []StepDefinition `json:"steps"`
	// TraceParent is the W3C traceparent of the submit request (the API
	// takes it from the request's traceparent header when the body has
	// none). The saga's spans are its children, on whichever instance runs
	// the saga, and every participant call carries the trace on.
	TraceParent string `json:"trace_parent,omitempty"`
}

// StepDefinition is one step: the action on a participant and the
// compensation that undoes it. A step without compensation needs no undoing
// (a read, say).
type StepDefinition struct {
	Name         string       `json:"name"`
	Action       Request      `json:"action"`
	Compensation *Request     `json:"compensation,omitempty"`
	Retry        *RetryPolicy `json:"retry,omitempty"`
	// DependsOn names the steps this one waits for. When no step of a
	// definition has it, the steps run as a chain in index order; when any
	// has it, it defines the graph (absent: no dependencies).
	// Not omitempty: an empty list (no dependencies, in a graph) must
	// survive being stored and read back.
	DependsOn []string `json:"depends_on"`
}

// Request is an HTTP call to a participant. Body is the step's input.
type Request struct {
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers,omitempty"`
	Body      json.RawMessage   `json:"body,omitempty"`
	TimeoutMs int64             `json:"timeout_ms,omitempty"`
}

// Timeout returns the call's timeout, or CallTimeoutDefault.
func (r Request) Timeout() time.Duration {
	if r.TimeoutMs <= 0 {
		return CallTimeoutDefault
	}
	return time.Duration(r.TimeoutMs) * time.Millisecond
}

// RetryPolicy says how often and how patiently a call is retried after a
// transient failure. Zero fields take the defaults.
type RetryPolicy struct {
	MaxAttempts      int     `json:"max_attempts,omitempty"`
	InitialBackoffMs int64   `json:"initial_backoff_ms,omitempty"`
	MaxBackoffMs     int64   `json:"max_backoff_ms,omitempty"`
	Multiplier       float64 `json:"multiplier,omitempty"`
}

// WithDefaults returns p with zero fields replaced by the defaults.
func (p *RetryPolicy) WithDefaults() RetryPolicy {
	var r RetryPolicy
	if p != nil {
		r = *p
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = MaxAttemptsDefault
	}
	if r.InitialBackoffMs == 0 {
		r.InitialBackoffMs = InitialBackoffDefault.Milliseconds()
	}
	if r.MaxBackoffMs == 0 {
		r.MaxBackoffMs = max(MaxBackoffDefault.Milliseconds(), r.InitialBackoffMs)
	}
	if r.Multiplier == 0 {
		r.Multiplier = MultiplierDefault
	}
	return r
}

// Timeout returns the saga's deadline duration, or 0 for none.
func (d *Definition) Timeout() time.Duration {
	return time.Duration(d.TimeoutMs) * time.Millisecond
}

// allowedMethods are the HTTP methods a step may use.
var allowedMethods = map[string]bool{
	http.MethodGet: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true,
}

// reservedHeaders are set by the service on every call; a definition may
// not override them, or idempotency and tracing could be forged.
var reservedHeaders = map[string]bool{
	"Idempotency-Key": true, "X-Saga-Id": true, "X-Transaction-Id": true,
	"X-Saga-Step": true, "Content-Type": true, "Content-Length": true, "Host": true,
}

// Validate checks everything about d that can be checked without I/O and
// returns a *ValidationError naming each bad field, or nil.
func (d *Definition) Validate() error {
	var ve ValidationError
	switch {
	case strings.TrimSpace(d.Name) == "":
		ve.add("name", "must not be empty")
	case len(d.Name) > MaxNameLength:
		ve.add("name", "must be at most %d bytes", MaxNameLength)
	}
	if d.TransactionID != nil && d.TransactionID.IsZero() {
		ve.add("transaction_id", "must not be the nil UUID")
	}
	if len(d.Context) > 0 {
		if t := jsonKind(d.Context); t != '{' {
			ve.add("context", "must be a JSON object")
		}
	}
	if d.TimeoutMs < 0 {
		ve.add("timeout_ms", "must not be negative")
	} else if d.Timeout() > MaxSagaTimeout {
		ve.add("timeout_ms", "must be at most %d (30 days)", MaxSagaTimeout.Milliseconds())
	}
	if len(d.IdempotencyKey) > MaxIdempotencyKeyLength {
		ve.add("idempotency_key", "must be at most %d bytes", MaxIdempotencyKeyLength)
	}
	switch {
	case len(d.Steps) == 0:
		ve.add("steps", "must hold at least one step")
	case len(d.Steps) > MaxSteps:
		ve.add("steps", "must hold at most %d steps", MaxSteps)
	}
	seen := make(map[string]int, len(d.Steps))
	for i, s := range d.Steps {
		field := fmt.Sprintf("steps[%d]", i)
		switch {
		case strings.TrimSpace(s.Name) == "":
			ve.add(field+".name", "must not be empty")
		case len(s.Name) > MaxNameLength:
			ve.add(field+".name", "must be at most %d bytes", MaxNameLength)
		default:
			if j, dup := seen[s.Name]; dup {
				ve.add(field+".name", "%q is already the name of steps[%d]", s.Name, j)
			}
			seen[s.Name] = i
		}
		validateRequest(&ve, field+".action", &s.Action)
		if s.Compensation != nil {
			validateRequest(&ve, field+".compensation", s.Compensation)
		}
		if s.Retry != nil {
			validateRetry(&ve, field+".retry", s.Retry)
		}
	}
	d.validateGraph(&ve)
	if d.TraceParent != "" && !ValidTraceParent(d.TraceParent) {
		ve.add("trace_parent", "must be a W3C traceparent such as 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	}
	return ve.orNil()
}

func validateRequest(ve *ValidationError, field string, r *Request) {
	if !allowedMethods[r.Method] {
		ve.add(field+".method", "must be one of GET, POST, PUT, PATCH, DELETE (got %q)", r.Method)
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		ve.add(field+".url", "must be an absolute http or https URL without credentials")
	}
	if len(r.Headers) > MaxHeaders {
		ve.add(field+".headers", "must hold at most %d headers", MaxHeaders)
	}
	for name, value := range r.Headers {
		canon := http.CanonicalHeaderKey(name)
		switch {
		case !validHeaderName(name):
			ve.add(field+".headers", "%q is not a valid header name", name)
		case reservedHeaders[canon]:
			ve.add(field+".headers", "%q is set by the service and may not be overridden", canon)
		case strings.ContainsAny(value, "\r\n\x00"):
			ve.add(field+".headers", "value of %q must not contain line breaks or NUL", name)
		}
	}
	if len(r.Body) > 0 && jsonKind(r.Body) == 0 {
		ve.add(field+".body", "must be valid JSON")
	}
	if r.TimeoutMs < 0 {
		ve.add(field+".timeout_ms", "must not be negative")
	} else if r.Timeout() > MaxCallTimeout {
		ve.add(field+".timeout_ms", "must be at most %d (10 minutes)", MaxCallTimeout.Milliseconds())
	}
}

func validateRetry(ve *ValidationError, field string, p *RetryPolicy) {
	if p.MaxAttempts < 0 || p.MaxAttempts > MaxAttemptsLimit {
		ve.add(field+".max_attempts", "must be between 1 and %d", MaxAttemptsLimit)
	}
	if p.InitialBackoffMs < 0 || p.InitialBackoffMs > MaxBackoffLimit.Milliseconds() {
		ve.add(field+".initial_backoff_ms", "must be between 0 and %d", MaxBackoffLimit.Milliseconds())
	}
	if p.MaxBackoffMs < 0 || p.MaxBackoffMs > MaxBackoffLimit.Milliseconds() {
		ve.add(field+".max_backoff_ms", "must be between 0 and %d", MaxBackoffLimit.Milliseconds())
	} else if p.MaxBackoffMs > 0 && p.MaxBackoffMs < p.InitialBackoffMs {
		ve.add(field+".max_backoff_ms", "must not be less than initial_backoff_ms")
	}
	if p.Multiplier != 0 && (p.Multiplier < 1 || p.Multiplier > MaxMultiplier) {
		ve.add(field+".multiplier", "must be between 1 and %d", MaxMultiplier)
	}
}

// jsonKind returns the first byte of a valid JSON value ('{', '[', '"', 't',
// 'f', 'n' or a digit or '-'), or 0 when raw is not valid JSON.
func jsonKind(raw json.RawMessage) byte {
	if !json.Valid(raw) {
		return 0
	}
	trimmed := bytes.TrimLeft(raw, " \t\r\n")
	if len(trimmed) == 0 {
		return 0
	}
	return trimmed[0]
}

func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range []byte(name) {
		// RFC 9110 token characters.
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
