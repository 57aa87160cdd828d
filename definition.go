package saga

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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

	// MaxSagaOutputBytes bounds the outputs of one saga's steps and
	// compensations together (each is bounded by the participant client's
	// 1 MiB too): what the rows, events, checkpoints and call bodies carry
	// stays bounded with it. A step whose answer would pass it fails; a
	// compensation's answer that would pass it is not kept.
	MaxSagaOutputBytes = 8 << 20

	CallTimeoutDefault      = 10 * time.Second
	MaxAttemptsDefault      = 3
	InitialBackoffDefault   = 100 * time.Millisecond
	MaxBackoffDefault       = 10 * time.Second
	MultiplierDefault       = 2.0
	CompensationMaxAttempts = 5 // at least, for compensations of steps with a retry policy

	// The retry policy of a compensation when neither the step nor the
	// compensation names one: undoing must outlast an ordinary deploy or
	// restart of the participant, so it retries for about two hours (at
	// most four: the waits are jittered), each wait growing from 100 ms to
	// at most 5 minutes.
	CompensationRetryAttemptsDefault   = 60
	CompensationRetryMaxBackoffDefault = 5 * time.Minute
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
	MaxParallel int `json:"max_parallel,omitempty"`
	// SecretHeaders names headers of the steps' requests whose values are
	// secrets, beside those that always are (SensitiveHeaders): their values
	// are never shown (answers, events, logs) and are encrypted at rest when
	// the service has a definition key.
	SecretHeaders []string         `json:"secret_headers,omitempty"`
	Steps         []StepDefinition `json:"steps"`
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
	// Retry is a compensation's own retry policy; an action's retry policy
	// is its step's (steps[].retry), so an action may not have one.
	Retry *RetryPolicy `json:"retry,omitempty"`
	// Protocol is how the participant is spoken to: ProtocolNative (the
	// default, also when empty) or ProtocolDTM (DTM's participant protocol:
	// the body alone, gid/trans_type/branch_id/op in the query, and DTM's
	// reading of the answer). See docs/dtm.md.
	Protocol Protocol `json:"protocol,omitempty"`
}

// Protocol names a participant protocol.
type Protocol string

// The participant protocols.
const (
	// ProtocolNative sends the step's input, the saga context and the
	// outputs so far as one JSON envelope; a 2xx answer is success, 408,
	// 429 and 5xx are transient, any other status a refusal.
	ProtocolNative Protocol = "native"
	// ProtocolDTM speaks DTM's HTTP branch protocol: the body is sent as it
	// is, the query carries gid, trans_type=saga, branch_id and op; 200 is
	// success, 409 or a body holding FAILURE a refusal (the branch is
	// compensated too), 425 or ONGOING "not yet", anything else transient.
	ProtocolDTM Protocol = "dtm"
)

// Valid reports whether p is a known protocol (empty means native).
func (p Protocol) Valid() bool {
	return p == "" || p == ProtocolNative || p == ProtocolDTM
}

// Timeout returns the call's timeout, or CallTimeoutDefault.
func (r Request) Timeout() time.Duration {
	if r.TimeoutMs <= 0 {
		return CallTimeoutDefault
	}
	return Milliseconds(r.TimeoutMs)
}

// Milliseconds converts a count of milliseconds from input to a duration.
// It saturates instead of wrapping: 9223372036854776 ms is not 192 µs. A
// negative count is 0. Validate compares the count itself with the limits,
// before any conversion.
func Milliseconds(ms int64) time.Duration {
	const maxMs = int64(math.MaxInt64 / int64(time.Millisecond))
	switch {
	case ms <= 0:
		return 0
	case ms > maxMs:
		return math.MaxInt64
	}
	return time.Duration(ms) * time.Millisecond
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

// CompensationPolicy returns the retry policy of the step's compensation,
// with defaults: the compensation's own retry; else the step's retry with
// at least CompensationMaxAttempts attempts; else the long default that
// outlasts a participant's restart (CompensationRetryAttemptsDefault
// attempts, backoff growing to CompensationRetryMaxBackoffDefault).
func (s *StepDefinition) CompensationPolicy() RetryPolicy {
	switch {
	case s.Compensation != nil && s.Compensation.Retry != nil:
		return s.Compensation.Retry.WithDefaults()
	case s.Retry != nil:
		p := s.Retry.WithDefaults()
		p.MaxAttempts = max(p.MaxAttempts, CompensationMaxAttempts)
		return p
	}
	return (&RetryPolicy{
		MaxAttempts:  CompensationRetryAttemptsDefault,
		MaxBackoffMs: CompensationRetryMaxBackoffDefault.Milliseconds(),
	}).WithDefaults()
}

// Timeout returns the saga's deadline duration, or 0 for none.
func (d *Definition) Timeout() time.Duration {
	return Milliseconds(d.TimeoutMs)
}

// allowedMethods are the HTTP methods a step may use.
var allowedMethods = map[string]bool{
	http.MethodGet: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true,
}

// reservedHeaders are set by the service on every call (or will be, for
// tracing); a definition may not set them, or idempotency and tracing could
// be forged. Every header whose name starts with reservedHeaderPrefix is
// reserved too.
var reservedHeaders = map[string]bool{
	"Idempotency-Key": true, "X-Transaction-Id": true, "Traceparent": true, "Tracestate": true,
	"Content-Type": true, "Content-Length": true, "Host": true, "Accept": true,
}

const reservedHeaderPrefix = "X-Saga-"

// hopByHopHeaders concern one connection only (RFC 9110, 7.6.1): a proxy
// between the service and a participant removes them, and it removes the
// headers that Connection names with them, an Idempotency-Key say. A
// definition may not set them.
var hopByHopHeaders = map[string]bool{
	"Connection": true, "Upgrade": true, "Te": true, "Keep-Alive": true,
	"Proxy-Authorization": true, "Proxy-Authenticate": true, "Proxy-Connection": true,
	"Expect": true, "Trailer": true, "Transfer-Encoding": true,
}

// SensitiveHeaders are the headers whose values are always secrets; a
// definition names more in SecretHeaders.
var SensitiveHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key"}

// NormalizeHeaderName returns the canonical form of a header name as a
// proxy or a participant's framework may read it: case folded to
// Canonical-Form, and underscores taken for hyphens (many servers, CGI
// among them, make no difference).
func NormalizeHeaderName(name string) string {
	return http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-"))
}

// IsSecretHeader reports whether the header name's value is a secret in
// d: one of SensitiveHeaders or of d.SecretHeaders, however spelt.
func (d *Definition) IsSecretHeader(name string) bool {
	n := NormalizeHeaderName(name)
	for _, s := range SensitiveHeaders {
		if n == s {
			return true
		}
	}
	for _, s := range d.SecretHeaders {
		if n == NormalizeHeaderName(s) {
			return true
		}
	}
	return false
}

// Redacted returns a copy of d fit to be shown: the values of its secret
// headers replaced by Redacted, and its URLs by RedactURL's form.
func (d Definition) Redacted() Definition {
	c := d.Clone()
	redact := func(r *Request) {
		r.URL = RedactURL(r.URL)
		for name := range r.Headers {
			if d.IsSecretHeader(name) {
				r.Headers[name] = Redacted
			}
		}
	}
	for i := range c.Steps {
		redact(&c.Steps[i].Action)
		if c.Steps[i].Compensation != nil {
			redact(c.Steps[i].Compensation)
		}
	}
	return c
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
	default:
		validateText(&ve, "name", d.Name)
	}
	if d.TransactionID != nil && d.TransactionID.IsZero() {
		ve.add("transaction_id", "must not be the nil UUID")
	}
	if len(d.Context) > 0 {
		if t := jsonKind(d.Context); t != '{' {
			ve.add("context", "must be a JSON object")
		} else {
			validateJSON(&ve, "context", d.Context)
		}
	}
	// The counts are compared before any conversion to a duration, which
	// would wrap for the largest of them.
	if d.TimeoutMs < 0 {
		ve.add("timeout_ms", "must not be negative")
	} else if d.TimeoutMs > MaxSagaTimeout.Milliseconds() {
		ve.add("timeout_ms", "must be at most %d (30 days)", MaxSagaTimeout.Milliseconds())
	}
	if len(d.IdempotencyKey) > MaxIdempotencyKeyLength {
		ve.add("idempotency_key", "must be at most %d bytes", MaxIdempotencyKeyLength)
	} else {
		validateText(&ve, "idempotency_key", d.IdempotencyKey)
	}
	if len(d.SecretHeaders) > MaxHeaders {
		ve.add("secret_headers", "must hold at most %d header names", MaxHeaders)
	}
	for i, name := range d.SecretHeaders {
		if !validHeaderName(name) {
			ve.add(fmt.Sprintf("secret_headers[%d]", i), "%s is not a valid header name", quoteText(name))
		}
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
		case StorableTextProblem(s.Name) != "":
			validateText(&ve, field+".name", s.Name)
		default:
			if j, dup := seen[s.Name]; dup {
				ve.add(field+".name", "%q is already the name of steps[%d]", s.Name, j)
			}
			seen[s.Name] = i
		}
		validateRequest(&ve, field+".action", &s.Action)
		if s.Action.Retry != nil {
			ve.add(field+".action.retry", "an action retries as its step says: set %s.retry instead", field)
		}
		if s.Compensation != nil {
			validateRequest(&ve, field+".compensation", s.Compensation)
			if s.Compensation.Retry != nil {
				validateRetry(&ve, field+".compensation.retry", s.Compensation.Retry)
			}
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
		ve.add(field+".method", "must be one of GET, POST, PUT, PATCH, DELETE (got %s)", quoteText(r.Method))
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		ve.add(field+".url", "must be an absolute http or https URL without credentials")
	} else {
		validateText(ve, field+".url", r.URL)
	}
	if len(r.Headers) > MaxHeaders {
		ve.add(field+".headers", "must hold at most %d headers", MaxHeaders)
	}
	validateHeaders(ve, field+".headers", r.Headers)
	if len(r.Body) > 0 {
		if jsonKind(r.Body) == 0 {
			ve.add(field+".body", "must be valid JSON")
		} else {
			validateJSON(ve, field+".body", r.Body)
		}
	}
	if !r.Protocol.Valid() {
		ve.add(field+".protocol", "must be %q or %q (got %q)", ProtocolNative, ProtocolDTM, r.Protocol)
	}
	if r.TimeoutMs < 0 {
		ve.add(field+".timeout_ms", "must not be negative")
	} else if r.TimeoutMs > MaxCallTimeout.Milliseconds() {
		ve.add(field+".timeout_ms", "must be at most %d (10 minutes)", MaxCallTimeout.Milliseconds())
	}
}

// validateHeaders checks the headers of a request: valid names, none that
// the service sets or that concern one connection only (however spelt), no
// two spellings of one name, and values that are valid field values. Values
// are never quoted: they may be secrets.
func validateHeaders(ve *ValidationError, field string, headers map[string]string) {
	names := make([]string, 0, len(headers))
	for name := range headers {
		names = append(names, name)
	}
	slices.Sort(names) // problems in a stable order
	spelt := make(map[string]string, len(names))
	for _, name := range names {
		value := headers[name]
		norm := NormalizeHeaderName(name)
		as := ""
		if norm != http.CanonicalHeaderKey(name) {
			as = fmt.Sprintf(" (read as %q)", norm)
		}
		switch {
		case !validHeaderName(name):
			ve.add(field, "%s is not a valid header name", quoteText(name))
			continue
		case hopByHopHeaders[norm]:
			ve.add(field, "%q%s is a hop-by-hop header: a proxy on the way removes it, with the headers it names; it may not be set in a definition", name, as)
		case reservedHeaders[norm] || strings.HasPrefix(norm, reservedHeaderPrefix):
			ve.add(field, "%q%s is set by the service and may not be overridden", name, as)
		}
		if other, dup := spelt[norm]; dup {
			ve.add(field, "%q and %q name the same header %q; give it once", other, name, norm)
		}
		spelt[norm] = name
		if i := invalidFieldValue(value); i >= 0 {
			ve.add(field, "value of %q must be a valid header field value: no control characters and valid UTF-8 (bad byte at offset %d)", name, i)
		} else if strings.HasPrefix(value, sealedPrefix) {
			ve.add(field, "value of %q must not start with %q, which marks values the service encrypted", name, sealedPrefix)
		}
	}
}

// invalidFieldValue returns the offset of the first byte that may not be
// in a header field value (RFC 9110, 5.5: control characters but
// horizontal tab) or that is not valid UTF-8, or -1.
func invalidFieldValue(v string) int {
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case c == '\t':
			i++
		case c < 0x20 || c == 0x7f:
			return i
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(v[i:])
			if r == utf8.RuneError && size == 1 {
				return i
			}
			i += size
		}
	}
	return -1
}

// validateText refuses text that the database cannot store.
func validateText(ve *ValidationError, field, s string) {
	if p := StorableTextProblem(s); p != "" {
		ve.add(field, "%s", p)
	}
}

// validateJSON refuses a JSON value that the database cannot store,
// naming the path of its first bad part.
func validateJSON(ve *ValidationError, field string, raw json.RawMessage) {
	if p := CheckStorableJSON(raw); p != nil {
		ve.add(p.Field(field), "%s", p.Message)
	}
}

// quoteText quotes s for a message, escaping what is not printable ASCII.
func quoteText(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strconv.QuoteToASCII(s)
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

// SameRequest reports whether d and other ask for the same saga: equal in
// every field, JSON values (context, bodies) compared by value, since a
// store may give them back reformatted (PostgreSQL's jsonb reorders keys
// and drops spaces). A repeated submit with a known idempotency key is a
// replay only when it is the same request.
//
// The trace a submit belongs to (TraceParent) is not part of the request:
// a retry is traced anew.
func (d *Definition) SameRequest(other *Definition) bool {
	x, y := *d, *other
	x.TraceParent, y.TraceParent = "", ""
	a, errA := plainValue(&x)
	b, errB := plainValue(&y)
	return errA == nil && errB == nil && reflect.DeepEqual(a, b)
}

// plainValue decodes d's JSON encoding into plain values, numbers as
// float64, so that two encodings of one value compare equal.
func plainValue(d *Definition) (any, error) {
	raw, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return v, nil
}
