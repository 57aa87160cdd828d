// Package client is the Go client of the TracSeq transaction service's API:
// submit sagas, follow them, list them page by page, read their audit trail
// and control them.
//
// Errors from the service are *Problem values (RFC 9457) carrying the
// field at fault (Problem.Field, and every problem in Problem.Errors);
// transport and decoding errors are wrapped as they are.
//
//	c, _ := client.New("http://localhost:8080", client.WithToken(token))
//	s, _, err := c.Submit(ctx, def, client.WithWait(30*time.Second))
package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
)

// The saga definition a client submits: the root package's types.
type (
	// Definition is a saga to run.
	Definition = saga.Definition
	// Step is one step of a Definition.
	Step = saga.StepDefinition
	// Request is a call to a participant: a step's action or compensation.
	Request = saga.Request
	// RetryPolicy says how a call is retried after transient failures.
	RetryPolicy = saga.RetryPolicy
	// Status is a saga's status ("Completed", "Compensated", …).
	Status = saga.SagaStatus
)

// The service's answers, as it encodes them.
type (
	// Saga is a saga as the service returns it.
	Saga = httpapi.SagaJSON
	// StepState is one step of a Saga.
	StepState = httpapi.StepJSON
	// Event is one entry of a saga's audit trail.
	Event = httpapi.EventJSON
	// AuditTrail is a saga's trail with its hash chain and the verdict.
	AuditTrail = httpapi.AuditJSON
	// AuditEvent is one event of an AuditTrail.
	AuditEvent = httpapi.AuditEventJSON
	// Stats are the service's figures.
	Stats = httpapi.StatsJSON
	// Ready is the readiness answer.
	Ready = httpapi.ReadyJSON
	// Health is the liveness answer.
	Health = httpapi.HealthJSON
	// Problem is an error answer of the service; Field names the input at
	// fault.
	Problem = httpapi.Problem
	// FieldError is one problem of a Problem.
	FieldError = httpapi.FieldError
	// ListQuery selects sagas for List; zero fields do not filter.
	ListQuery = httpapi.ListQuery
)

// Client calls one service. It is safe for concurrent use.
type Client struct {
	api     httpapi.Client
	retries int
	backoff time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token as the bearer token (the service's API_TOKENS).
func WithToken(token string) Option { return func(c *Client) { c.api.Token = token } }

// WithHTTPClient makes the calls with hc instead of http.DefaultClient.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.api.HTTP = hc } }

// WithSubmitRetries sets how often Submit sends a saga again after an
// answer was lost (a transport error, 502, 503 or 504; default 3), and the
// first wait between tries (default 200 ms, doubling). The idempotency key
// makes every try the same saga.
func WithSubmitRetries(n int, backoff time.Duration) Option {
	return func(c *Client) { c.retries, c.backoff = max(n, 0), max(backoff, 0) }
}

// New returns a client of the service at baseURL ("http://host:8080"). It
// returns an error when baseURL is not an http or https URL.
func New(baseURL string, opts ...Option) (*Client, error) {
	if !strings.HasPrefix(baseURL, "http://") && !strings.HasPrefix(baseURL, "https://") {
		return nil, fmt.Errorf("client: base URL must start with http:// or https:// (got %q)", baseURL)
	}
	c := &Client{api: httpapi.Client{BaseURL: strings.TrimRight(baseURL, "/")}, retries: 3, backoff: 200 * time.Millisecond}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// SubmitOption adjusts one Submit.
type SubmitOption func(*submitOptions)

type submitOptions struct {
	wait   time.Duration
	key    string
	reason string
}

// WithWait makes the service answer once the saga has ended or d has
// passed (the service caps d, by default at one minute).
func WithWait(d time.Duration) SubmitOption { return func(o *submitOptions) { o.wait = d } }

// WithIdempotencyKey submits under key (when the definition has none).
func WithIdempotencyKey(key string) SubmitOption { return func(o *submitOptions) { o.key = key } }

// WithSubmitReason records why the saga is submitted on its SagaCreated
// event, beside the name of the token (the actor).
func WithSubmitReason(reason string) SubmitOption {
	return func(o *submitOptions) { o.reason = reason }
}

// RequestOption adjusts one operator request (Pause, Resume, Cancel,
// Retry, Control, Cleanup).
type RequestOption func(*requestOptions)

type requestOptions struct {
	reason string
}

// WithReason records why the request is made: in the saga's audit trail
// with the request (OperatorRequested), or on the tombstones of a cleanup.
func WithReason(reason string) RequestOption { return func(o *requestOptions) { o.reason = reason } }

func requestOpts(opts []RequestOption) requestOptions {
	var o requestOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Submit submits a saga and returns it as the service answered, and
// whether a saga with its idempotency key existed already (then that saga
// is returned and nothing new runs).
//
// Submit always sends an idempotency key: the definition's, the one of
// WithIdempotencyKey, or a new one it makes. So when an answer is lost it
// sends the saga again (see WithSubmitRetries) without risk of a second
// saga; the key used is in the returned saga's IdempotencyKey.
func (c *Client) Submit(ctx context.Context, def Definition, opts ...SubmitOption) (*Saga, bool, error) {
	var o submitOptions
	for _, f := range opts {
		f(&o)
	}
	switch {
	case def.IdempotencyKey != "" && o.key != "" && def.IdempotencyKey != o.key:
		return nil, false, fmt.Errorf("submit saga: the definition's idempotency_key %q differs from WithIdempotencyKey(%q)", def.IdempotencyKey, o.key)
	case def.IdempotencyKey == "":
		def.IdempotencyKey = o.key
	}
	if def.IdempotencyKey == "" {
		def.IdempotencyKey = saga.NewID().String()
	}
	backoff := c.backoff
	for try := 0; ; try++ {
		s, replayed, err := c.api.SubmitWithReason(ctx, def, o.wait, o.reason)
		if err == nil {
			// A retry that found the saga of an earlier, lost try is
			// still this call's saga.
			return s, replayed && try == 0, nil
		}
		if try >= c.retries || !lostAnswer(err) || ctx.Err() != nil {
			return nil, false, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false, err
		case <-t.C:
		}
		backoff *= 2
	}
}

// lostAnswer reports whether err leaves unknown whether the service took
// the request: no answer, or a gateway's or an unavailable service's.
func lostAnswer(err error) bool {
	var p *Problem
	if errors.As(err, &p) {
		return p.Status == http.StatusBadGateway || p.Status == http.StatusServiceUnavailable || p.Status == http.StatusGatewayTimeout
	}
	return true
}

// Get returns a saga with its steps.
func (c *Client) Get(ctx context.Context, id string) (*Saga, error) { return c.api.Get(ctx, id) }

// Page is one page of List.
type Page struct {
	Sagas []Saga
	// NextCursor continues the listing (ListQuery.Cursor); "" on the last
	// page.
	NextCursor string
}

// List returns the pages of sagas matching q, newest first, reading each
// page when the loop asks for it. An error ends the sequence.
//
//	for page, err := range c.List(ctx, client.ListQuery{Status: "Failed"}) { … }
func (c *Client) List(ctx context.Context, q ListQuery) iter.Seq2[*Page, error] {
	return func(yield func(*Page, error) bool) {
		for {
			out, err := c.api.List(ctx, q)
			if err != nil {
				yield(nil, err)
				return
			}
			p := &Page{Sagas: out.Sagas}
			if out.NextCursor != nil {
				p.NextCursor = *out.NextCursor
			}
			if !yield(p, nil) || p.NextCursor == "" {
				return
			}
			q.Cursor = p.NextCursor
		}
	}
}

// ListPage returns one page of sagas matching q.
func (c *Client) ListPage(ctx context.Context, q ListQuery) (*Page, error) {
	for p, err := range c.List(ctx, q) {
		return p, err
	}
	return &Page{}, nil
}

// Events returns a saga's whole audit trail, in order.
func (c *Client) Events(ctx context.Context, id string) ([]Event, error) {
	return c.api.Events(ctx, id)
}

// Pause asks for the saga to stop between steps. The answer is the saga
// with the request recorded; the instance running it carries it out.
func (c *Client) Pause(ctx context.Context, id string, opts ...RequestOption) (*Saga, error) {
	return c.Control(ctx, id, saga.ControlPause, opts...)
}

// Resume asks for a paused saga to go on.
func (c *Client) Resume(ctx context.Context, id string, opts ...RequestOption) (*Saga, error) {
	return c.Control(ctx, id, saga.ControlResume, opts...)
}

// Cancel asks for the saga to stop and compensate what it did.
func (c *Client) Cancel(ctx context.Context, id string, opts ...RequestOption) (*Saga, error) {
	return c.Control(ctx, id, saga.ControlCancel, opts...)
}

// Retry asks for a Failed saga's compensations to be tried again.
func (c *Client) Retry(ctx context.Context, id string, opts ...RequestOption) (*Saga, error) {
	return c.Control(ctx, id, saga.ControlRetry, opts...)
}

// Control asks for an operator action on a saga.
func (c *Client) Control(ctx context.Context, id string, a saga.ControlAction, opts ...RequestOption) (*Saga, error) {
	return c.api.ControlWithReason(ctx, id, string(a), requestOpts(opts).reason)
}

// Audit returns a saga's audit trail with its hash chain and the
// service's verdict on it (Verified, and Broken naming the first bad
// event).
func (c *Client) Audit(ctx context.Context, id string) (*AuditTrail, error) {
	return c.api.Audit(ctx, id)
}

// AuditCSV returns a saga's audit trail as CSV (the columns of
// AuditEvent, a header row first) and the service's verdict on its chain.
func (c *Client) AuditCSV(ctx context.Context, id string) ([]byte, bool, error) {
	return c.api.AuditCSV(ctx, id)
}

// Wait polls the saga every interval until it has ended (Failed included)
// or ctx is done, and returns it as last read.
func (c *Client) Wait(ctx context.Context, id string, interval time.Duration) (*Saga, error) {
	t := time.NewTicker(max(interval, 10*time.Millisecond))
	defer t.Stop()
	for {
		s, err := c.Get(ctx, id)
		if err != nil || s.Status.Terminal() {
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, nil
		case <-t.C:
		}
	}
}

// Statistics returns the service's figures over window (0: one hour).
func (c *Client) Statistics(ctx context.Context, window time.Duration) (*Stats, error) {
	return c.api.Statistics(ctx, window)
}

// Cleanup deletes old finished sagas now and returns how many.
func (c *Client) Cleanup(ctx context.Context, opts ...RequestOption) (int, error) {
	return c.api.CleanupWithReason(ctx, requestOpts(opts).reason)
}

// SetLegalHold sets (hold = true) or clears the saga's legal hold: cleanup
// never deletes a held saga. It returns the saga. WithReason records why
// on the LegalHoldChanged event.
func (c *Client) SetLegalHold(ctx context.Context, id string, hold bool, opts ...RequestOption) (*Saga, error) {
	return c.api.SetLegalHoldWithReason(ctx, id, hold, requestOpts(opts).reason)
}

// Health returns the liveness answer.
func (c *Client) Health(ctx context.Context) (*Health, error) { return c.api.Health(ctx) }

// Ready returns the readiness answer and its HTTP status (200 or 503); not
// ready is not an error.
func (c *Client) Ready(ctx context.Context) (*Ready, int, error) { return c.api.Ready(ctx) }

// CloseIdleConnections closes the idle connections of the HTTP client.
func (c *Client) CloseIdleConnections() {
	if c.api.HTTP != nil {
		c.api.HTTP.CloseIdleConnections()
	} else {
		http.DefaultClient.CloseIdleConnections()
	}
}

// FieldOf returns the field an error of the service names ("steps[0].action.url"),
// or "" when err is not a *Problem or names none.
func FieldOf(err error) string {
	var p *Problem
	if errors.As(err, &p) {
		return p.Field
	}
	return ""
}

// IsNotFound reports whether err is the service's 404.
func IsNotFound(err error) bool {
	var p *Problem
	return errors.As(err, &p) && p.Status == http.StatusNotFound
}
