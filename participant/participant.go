package participant

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/propagation"

	saga "github.com/tracseq/transaction-service"
)

// Kind says whether a call runs a step's action or its compensation.
type Kind string

// The kinds of call.
const (
	KindAction       Kind = "action"
	KindCompensation Kind = "compensation"
)

// Call is one attempt of a step's action or compensation.
type Call struct {
	SagaID        saga.ID
	TransactionID saga.ID
	StepIndex     int
	StepName      string
	Kind          Kind
	Attempt       int
	// Request is the definition's request: method, URL, headers, body (the
	// step input) and timeout.
	Request saga.Request
	// Context is the saga's context object.
	Context json.RawMessage
	// Outputs holds the outputs of the completed steps the call may depend
	// on, by step name.
	Outputs map[string]json.RawMessage
	// Epoch is the fencing epoch of the lease the call is made under; it
	// goes out as X-Saga-Attempt-Epoch so that a participant can refuse a
	// call from an owner that has since been fenced off (a higher epoch
	// was seen). 0: not sent.
	Epoch int64
}

// IdempotencyKey returns the key participants use to recognise a repeated
// call: "<saga id>:<step index>:<kind>". It is the same for every attempt.
func (c Call) IdempotencyKey() string {
	return c.SagaID.String() + ":" + strconv.Itoa(c.StepIndex) + ":" + string(c.Kind)
}

// Outcome classifies the result of a call.
type Outcome int

// The outcomes.
const (
	// OutcomeSuccess is a 2xx answer.
	OutcomeSuccess Outcome = iota
	// OutcomeTransient is a failure worth retrying: 408, 429, 5xx, a
	// timeout or a connection error.
	OutcomeTransient
	// OutcomePermanent is a refusal that retrying cannot change: any other
	// status, or an answer too large to keep.
	OutcomePermanent
)

// String returns "success", "transient" or "permanent".
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeTransient:
		return "transient"
	case OutcomePermanent:
		return "permanent"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is what came of one call.
type Result struct {
	Outcome    Outcome
	StatusCode int             // 0 when no HTTP answer came
	Output     json.RawMessage // the 2xx body made storable (see storableOutput): JSON as sent, other bodies wrapped with their content type, empty as null
	Error      string          // a human-readable cause when not a success
	RetryAfter time.Duration   // from a Retry-After header, 0 if none
	// Uncertain is true when the participant may have acted although the
	// call did not succeed: a timeout, a 5xx, a broken connection.
	Uncertain bool
	Duration  time.Duration
}

// Defaults of Config.
const (
	MaxBodyBytesDefault    = 1 << 20
	MaxConnsPerHostDefault = 256
)

// ErrBodyTooLarge means a participant answered with a body larger than
// Config.MaxBodyBytes. Classify rates it permanent and uncertain: the
// participant acted, but its answer cannot be kept.
var ErrBodyTooLarge = errors.New("participant answer exceeds the body size limit")

// Config configures a Client. The zero value is ready to use.
type Config struct {
	// MaxBodyBytes bounds the answer body read (default 1 MiB).
	MaxBodyBytes int64
	// MaxConnsPerHost bounds the calls in flight, and so the connections,
	// to one participant host, and the idle connections kept for reuse
	// (default 256). They are shared fairly among the host's endpoints: one
	// endpoint may hold at most half of what the others leave free (see
	// limit.go), so that a hanging endpoint cannot stall the others.
	MaxConnsPerHost int
	// Transport replaces the HTTP transport (tests).
	Transport http.RoundTripper
	// Observe, when set, is told of every call: the host (host:port) of
	// its URL, its outcome and its duration (per-host metrics).
	Observe func(host string, outcome Outcome, d time.Duration)
}

// Client calls participants. It is safe for concurrent use and keeps its
// connections alive between calls.
type Client struct {
	http    *http.Client
	maxBody int64
	limit   *hostLimiter
	observe func(host string, outcome Outcome, d time.Duration)
}

// New returns a Client with one shared transport sized for many concurrent
// calls.
func New(cfg Config) *Client {
	conns := cmp.Or(cfg.MaxConnsPerHost, MaxConnsPerHostDefault)
	rt := cfg.Transport
	if rt == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxConnsPerHost = conns
		tr.MaxIdleConnsPerHost = conns
		tr.MaxIdleConns = max(conns*4, 100)
		tr.IdleConnTimeout = 90 * time.Second
		rt = tr
	}
	return &Client{
		http: &http.Client{
			Transport: rt,
			// A participant's redirect is its answer (3xx is permanent).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		maxBody: cmp.Or(cfg.MaxBodyBytes, MaxBodyBytesDefault),
		limit:   newHostLimiter(conns),
		observe: cfg.Observe,
	}
}

var jsonNull = json.RawMessage("null")

// traceContext writes the W3C traceparent (and tracestate) of a call.
var traceContext = propagation.TraceContext{}

// nullIfEmpty returns raw, or JSON null when raw is empty.
func nullIfEmpty(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return jsonNull
	}
	return raw
}

// Invoke makes one call and classifies its answer. Its timeout is the
// request's timeout, shortened by ctx's deadline; the call is abandoned when
// ctx is cancelled. Invoke never returns an error: every failure is a
// Result.
func (c *Client) Invoke(ctx context.Context, call Call) Result {
	start := time.Now()
	res := c.invoke(ctx, call)
	res.Duration = time.Since(start)
	if c.observe != nil {
		c.observe(urlHost(call.Request.URL), res.Outcome, res.Duration)
	}
	return res
}

// urlHost returns the host:port of rawURL, or "" when it has none.
func urlHost(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Host
}

func (c *Client) invoke(ctx context.Context, call Call) Result {
	ctx, cancel := context.WithTimeout(ctx, call.Request.Timeout())
	defer cancel()

	// The request is built once a connection is free: a call waiting for
	// one holds nothing but its place in the queue.
	u, err := url.Parse(call.Request.URL)
	if err != nil {
		return Result{Outcome: OutcomePermanent, Error: storableError(fmt.Errorf("build request: %w", err).Error())}
	}
	host, endpoint := limitKeys(u)
	release, err := c.limit.acquire(ctx, host, endpoint)
	if err != nil {
		// Never sent: certain.
		return Result{Outcome: OutcomeTransient, Error: storableError(fmt.Sprintf(
			"timeout: no connection to %s came free for this call (the host's %d connections, PARTICIPANT_MAX_CONNS_PER_HOST, were in use): %v",
			u.Host, c.limit.perHost, err))}
	}
	defer release()
	req, err := c.newRequest(ctx, call)
	if err != nil {
		return Result{Outcome: OutcomePermanent, Error: storableError(err.Error())}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		outcome, uncertain := Classify(0, err)
		return Result{Outcome: outcome, Uncertain: uncertain, Error: describe(ctx, err)}
	}
	defer resp.Body.Close()

	body, err := readLimited(resp.Body, c.maxBody)
	res := Result{
		StatusCode: resp.StatusCode,
		RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
	}
	if err != nil {
		res.Outcome, res.Uncertain = Classify(resp.StatusCode, err)
		if errors.Is(err, ErrBodyTooLarge) {
			res.Error = fmt.Sprintf("HTTP %d: answer larger than %d bytes", resp.StatusCode, c.maxBody)
		} else {
			res.Error = fmt.Sprintf("HTTP %d: read answer: %s", resp.StatusCode, describe(ctx, err))
		}
		return res
	}
	res.Outcome, res.Uncertain = classifyAnswer(call, resp.StatusCode, body)
	if res.Outcome == OutcomeSuccess {
		res.Output = storableOutput(body, resp.Header.Get("Content-Type"))
		return res
	}
	res.Error = "HTTP " + strconv.Itoa(resp.StatusCode) + " " + http.StatusText(resp.StatusCode)
	if snippet := errorSnippet(body); snippet != "" {
		res.Error += ": " + snippet
	}
	return res
}

// newRequest builds the HTTP request of call.
func (c *Client) newRequest(ctx context.Context, call Call) (*http.Request, error) {
	var body io.Reader
	target := call.Request.URL
	switch {
	case call.Request.Protocol == saga.ProtocolDTM:
		// DTM's protocol: the payload as it is, the branch in the query.
		if len(call.Request.Body) > 0 && call.Request.Method != http.MethodGet {
			body = bytes.NewReader(call.Request.Body)
		}
		u, err := dtmURL(call)
		if err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
		target = u
	case call.Request.Method != http.MethodGet:
		b, err := appendCallBody(nil, call)
		if err != nil {
			return nil, fmt.Errorf("encode call body: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, call.Request.Method, target, body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	for name, value := range call.Request.Headers {
		req.Header.Set(name, value)
	}
	// The keys are canonical already: assigned without Set's rewriting.
	h := req.Header
	sagaID := call.SagaID.String()
	h["Idempotency-Key"] = []string{sagaID + ":" + strconv.Itoa(call.StepIndex) + ":" + string(call.Kind)}
	h["X-Saga-Id"] = []string{sagaID}
	h["X-Transaction-Id"] = []string{call.TransactionID.String()}
	h["X-Saga-Step"] = []string{strconv.Itoa(call.StepIndex)}
	if call.Epoch > 0 {
		h["X-Saga-Attempt-Epoch"] = []string{strconv.FormatInt(call.Epoch, 10)}
	}
	h["Accept"] = acceptJSON
	// The call's span (or, untraced, the saga's stored trace) goes on to
	// the participant as traceparent; nothing is written without one.
	traceContext.Inject(ctx, propagation.HeaderCarrier(h))
	if body != nil {
		h["Content-Type"] = contentTypeJSON
	}
	return req, nil
}

// readLimited reads r up to limit bytes, then drains what is left so that
// the connection can be reused. ErrBodyTooLarge when r holds more.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		// Drain a bounded amount more for reuse; past that the connection
		// is closed by Close.
		_, _ = io.CopyN(io.Discard, r, 4<<20)
		return nil, ErrBodyTooLarge
	}
	return body, nil
}

// describe turns a transport error into a message, naming a timeout
// plainly. The message is storable and its URLs are redacted: net/http
// quotes the URL it called, query string included.
func describe(ctx context.Context, err error) string {
	msg := storableError(err.Error())
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "timeout: " + msg
	}
	return msg
}

// Classify rates an answer: status is the HTTP status (0 when none came),
// err the transport error, if any. It returns the outcome and whether the
// participant may have acted anyway.
//
//   - 2xx: success.
//   - 408, 429: transient, certain (the participant refused to act now).
//   - 5xx: transient, uncertain.
//   - other statuses (1xx, 3xx, other 4xx): permanent, certain.
//   - a refused connection or another failure before the request was sent
//     (dial, DNS): transient, certain.
//   - a timeout or a broken connection: transient, uncertain.
//   - ErrBodyTooLarge: permanent, uncertain.
func Classify(status int, err error) (Outcome, bool) {
	if err != nil {
		switch {
		case errors.Is(err, ErrBodyTooLarge):
			return OutcomePermanent, true
		case notSent(err):
			return OutcomeTransient, false
		}
		return OutcomeTransient, true
	}
	switch {
	case status >= 200 && status <= 299:
		return OutcomeSuccess, false
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return OutcomeTransient, false
	case status >= 500 && status <= 599:
		return OutcomeTransient, true
	}
	return OutcomePermanent, false
}

// notSent reports whether err happened before any byte of the request could
// reach the participant: the connection was never made.
func notSent(err error) bool {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr)
}

// ParseRetryAfter reads a Retry-After header value: a number of seconds or
// an HTTP date, relative to now. It returns 0 for an empty, invalid or past
// value.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		const maxSecs = int64(saga.MaxBackoffLimit / time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	if d := t.Sub(now); d > 0 {
		return d
	}
	return 0
}

// Backoff returns how long to wait after failed attempt number attempt
// (1-based) before the next: initial × multiplier^(attempt-1), capped at the
// policy's maximum, with full jitter (a uniformly random part of it drawn
// with random, which returns values in [0, 1)). Zero fields of p take the
// defaults.
func Backoff(p saga.RetryPolicy, attempt int, random func() float64) time.Duration {
	p = p.WithDefaults()
	initial := time.Duration(p.InitialBackoffMs) * time.Millisecond
	ceiling := time.Duration(p.MaxBackoffMs) * time.Millisecond
	d := float64(initial)
	for i := 1; i < attempt && d < float64(ceiling); i++ {
		d *= p.Multiplier
	}
	d = min(d, float64(ceiling))
	return time.Duration(d * random())
}
