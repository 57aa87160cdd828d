package participant_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	tests := []struct {
		name      string
		status    int
		err       error
		outcome   participant.Outcome
		uncertain bool
	}{
		{"200", 200, nil, participant.OutcomeSuccess, false},
		{"201", 201, nil, participant.OutcomeSuccess, false},
		{"204", 204, nil, participant.OutcomeSuccess, false},
		{"299", 299, nil, participant.OutcomeSuccess, false},
		{"100", 100, nil, participant.OutcomePermanent, false},
		{"302", 302, nil, participant.OutcomePermanent, false},
		{"400", 400, nil, participant.OutcomePermanent, false},
		{"401", 401, nil, participant.OutcomePermanent, false},
		{"404", 404, nil, participant.OutcomePermanent, false},
		{"409", 409, nil, participant.OutcomePermanent, false},
		{"422", 422, nil, participant.OutcomePermanent, false},
		{"408", 408, nil, participant.OutcomeTransient, false},
		{"429", 429, nil, participant.OutcomeTransient, false},
		{"500", 500, nil, participant.OutcomeTransient, true},
		{"502", 502, nil, participant.OutcomeTransient, true},
		{"503", 503, nil, participant.OutcomeTransient, true},
		{"599", 599, nil, participant.OutcomeTransient, true},
		{"timeout", 0, context.DeadlineExceeded, participant.OutcomeTransient, true},
		{"wrapped timeout", 0, fmt.Errorf("do: %w", context.DeadlineExceeded), participant.OutcomeTransient, true},
		{"connection refused", 0, refused, participant.OutcomeTransient, false},
		{"dns", 0, &net.DNSError{Err: "no such host", Name: "x.invalid"}, participant.OutcomeTransient, false},
		{"connection reset", 0, reset, participant.OutcomeTransient, true},
		{"unexpected EOF", 0, io.ErrUnexpectedEOF, participant.OutcomeTransient, true},
		{"body too large", 200, participant.ErrBodyTooLarge, participant.OutcomePermanent, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			outcome, uncertain := participant.Classify(tt.status, tt.err)
			if outcome != tt.outcome || uncertain != tt.uncertain {
				t.Errorf("Classify(%d, %v) = %v, %v; want %v, %v", tt.status, tt.err, outcome, uncertain, tt.outcome, tt.uncertain)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	policy := saga.RetryPolicy{InitialBackoffMs: 100, MaxBackoffMs: 1000, Multiplier: 2}
	tests := []struct {
		name    string
		policy  saga.RetryPolicy
		attempt int
		random  float64
		want    time.Duration
	}{
		{"first, top of range", policy, 1, 1, 100 * time.Millisecond},
		{"second doubles", policy, 2, 1, 200 * time.Millisecond},
		{"third", policy, 3, 1, 400 * time.Millisecond},
		{"fourth", policy, 4, 1, 800 * time.Millisecond},
		{"capped", policy, 5, 1, time.Second},
		{"capped far out", policy, 90, 1, time.Second},
		{"full jitter half", policy, 3, 0.5, 200 * time.Millisecond},
		{"full jitter zero", policy, 3, 0, 0},
		{"defaults", saga.RetryPolicy{}, 1, 1, saga.InitialBackoffDefault},
		{"defaults capped", saga.RetryPolicy{}, 50, 1, saga.MaxBackoffDefault},
		{"multiplier 1 is constant", saga.RetryPolicy{InitialBackoffMs: 50, Multiplier: 1}, 7, 1, 50 * time.Millisecond},
		{"multiplier 3", saga.RetryPolicy{InitialBackoffMs: 10, MaxBackoffMs: 10000, Multiplier: 3}, 3, 1, 90 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := participant.Backoff(tt.policy, tt.attempt, func() float64 { return tt.random })
			if got != tt.want {
				t.Errorf("Backoff(%+v, %d, %v) = %v; want %v", tt.policy, tt.attempt, tt.random, got, tt.want)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-3", 0},
		{"2", 2 * time.Second},
		{"120", 2 * time.Minute},
		{"999999999999", saga.MaxBackoffLimit},
		{"soon", 0},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-30 * time.Second).Format(http.TimeFormat), 0},
		{now.Add(90 * time.Second).Format(time.RFC850), 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			t.Parallel()
			if got := participant.ParseRetryAfter(tt.value, now); got != tt.want {
				t.Errorf("ParseRetryAfter(%q) = %v; want %v", tt.value, got, tt.want)
			}
		})
	}
}

// captured is one request as a participant saw it.
type captured struct {
	method string
	header http.Header
	body   []byte
}

type bundle struct {
	client *participant.Client
	server *httptest.Server
	mu     sync.Mutex
	seen   []captured
	conns  atomic.Int64
}

func (b *bundle) requests() []captured {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]captured(nil), b.seen...)
}

// setup starts a participant answering with handler and records every
// request it receives and every connection it accepts.
func setup(t *testing.T, cfg participant.Config, handler http.HandlerFunc) *bundle {
	t.Helper()
	b := &bundle{client: participant.New(cfg)}
	b.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.seen = append(b.seen, captured{method: r.Method, header: r.Header.Clone(), body: body})
		b.mu.Unlock()
		handler(w, r)
	}))
	b.server.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.server.Start()
	t.Cleanup(b.server.Close)
	return b
}

func newCall(url string) participant.Call {
	return participant.Call{
		SagaID:        saga.NewID(),
		TransactionID: saga.NewID(),
		StepIndex:     2,
		StepName:      "charge",
		Kind:          participant.KindAction,
		Attempt:       1,
		Request: saga.Request{
			Method:  http.MethodPost,
			URL:     url,
			Headers: map[string]string{"X-Tenant": "lab-7"},
			Body:    json.RawMessage(`{"amount":42}`),
		},
		Context: json.RawMessage(`{"order":"o-1"}`),
		Outputs: map[string]json.RawMessage{"reserve": json.RawMessage(`{"reservation":"r-9"}`)},
	}
}

func TestInvokeSendsHeadersAndBody(t *testing.T) {
	t.Parallel()
	b := setup(t, participant.Config{}, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"charge_id":"c-1"}`)
	})
	call := newCall(b.server.URL + "/charge")
	call.Kind = participant.KindCompensation
	call.Attempt = 3
	call.Epoch = 4
	res := b.client.Invoke(context.Background(), call)
	if res.Outcome != participant.OutcomeSuccess || res.StatusCode != 200 {
		t.Fatalf("result = %+v; want success 200", res)
	}
	if string(res.Output) != `{"charge_id":"c-1"}` {
		t.Errorf("output = %s", res.Output)
	}
	reqs := b.requests()
	if len(reqs) != 1 {
		t.Fatalf("participant saw %d requests; want 1", len(reqs))
	}
	got := reqs[0]
	wantHeaders := map[string]string{
		"Idempotency-Key":      call.SagaID.String() + ":2:compensation",
		"X-Saga-Id":            call.SagaID.String(),
		"X-Transaction-Id":     call.TransactionID.String(),
		"X-Saga-Step":          "2",
		"X-Saga-Attempt-Epoch": "4",
		"X-Tenant":             "lab-7",
		"Content-Type":         "application/json",
	}
	for name, want := range wantHeaders {
		if v := got.header.Get(name); v != want {
			t.Errorf("header %s = %q; want %q", name, v, want)
		}
	}
	var body struct {
		SagaID        string                     `json:"saga_id"`
		TransactionID string                     `json:"transaction_id"`
		Step          string                     `json:"step"`
		StepIndex     int                        `json:"step_index"`
		Kind          string                     `json:"kind"`
		Attempt       int                        `json:"attempt"`
		Input         json.RawMessage            `json:"input"`
		Context       json.RawMessage            `json:"context"`
		Outputs       map[string]json.RawMessage `json:"outputs"`
	}
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatalf("body %s: %v", got.body, err)
	}
	if body.SagaID != call.SagaID.String() || body.TransactionID != call.TransactionID.String() ||
		body.Step != "charge" || body.StepIndex != 2 || body.Kind != "compensation" || body.Attempt != 3 {
		t.Errorf("body = %s", got.body)
	}
	if string(body.Input) != `{"amount":42}` || string(body.Context) != `{"order":"o-1"}` ||
		string(body.Outputs["reserve"]) != `{"reservation":"r-9"}` {
		t.Errorf("body = %s", got.body)
	}
}

func TestInvokeGetSendsNoBody(t *testing.T) {
	t.Parallel()
	b := setup(t, participant.Config{}, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `[1,2]`)
	})
	call := newCall(b.server.URL)
	call.Request.Method = http.MethodGet
	res := b.client.Invoke(context.Background(), call)
	if res.Outcome != participant.OutcomeSuccess || string(res.Output) != `[1,2]` {
		t.Fatalf("result = %+v", res)
	}
	got := b.requests()[0]
	if got.method != http.MethodGet || len(got.body) != 0 || got.header.Get("Content-Type") != "" {
		t.Errorf("GET carried body %q, content type %q", got.body, got.header.Get("Content-Type"))
	}
	if got.header.Get("Idempotency-Key") != call.SagaID.String()+":2:action" {
		t.Errorf("Idempotency-Key = %q", got.header.Get("Idempotency-Key"))
	}
}

func TestInvokeNullInputAndOutputs(t *testing.T) {
	t.Parallel()
	b := setup(t, participant.Config{}, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	call := newCall(b.server.URL)
	call.Request.Body = nil
	call.Outputs = nil
	res := b.client.Invoke(context.Background(), call)
	if res.Outcome != participant.OutcomeSuccess || string(res.Output) != "null" {
		t.Fatalf("result = %+v; want success with null output", res)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(b.requests()[0].body, &body); err != nil {
		t.Fatal(err)
	}
	if string(body["input"]) != "null" || string(body["outputs"]) != "{}" {
		t.Errorf("input = %s, outputs = %s", body["input"], body["outputs"])
	}
}

func TestInvokeOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		body       string
		retryAfter string
		outcome    participant.Outcome
		uncertain  bool
		output     string
		errPart    string
		wantRetry  time.Duration
	}{
		{name: "json", status: 200, body: `{"ok":true}`, output: `{"ok":true}`},
		{name: "text", status: 200, body: "done", output: `{"content_type":"text/plain","text":"done"}`},
		{name: "empty", status: 201, body: "", output: "null"},
		{name: "bad request", status: 400, body: `{"error":"no stock"}`, outcome: participant.OutcomePermanent, errPart: "HTTP 400 Bad Request: {\"error\":\"no stock\"}"},
		{name: "conflict", status: 409, outcome: participant.OutcomePermanent, errPart: "HTTP 409"},
		{name: "redirect", status: 302, outcome: participant.OutcomePermanent, errPart: "HTTP 302"},
		{name: "request timeout", status: 408, outcome: participant.OutcomeTransient, errPart: "HTTP 408"},
		{name: "too many", status: 429, retryAfter: "7", outcome: participant.OutcomeTransient, errPart: "HTTP 429", wantRetry: 7 * time.Second},
		{name: "unavailable", status: 503, retryAfter: "1", outcome: participant.OutcomeTransient, uncertain: true, errPart: "HTTP 503", wantRetry: time.Second},
		{name: "internal", status: 500, body: "boom", outcome: participant.OutcomeTransient, uncertain: true, errPart: "HTTP 500 Internal Server Error: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, participant.Config{}, func(w http.ResponseWriter, _ *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				if tt.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			res := b.client.Invoke(context.Background(), newCall(b.server.URL))
			if res.Outcome != tt.outcome || res.Uncertain != tt.uncertain || res.StatusCode != tt.status {
				t.Fatalf("result = %+v; want outcome %v uncertain %v status %d", res, tt.outcome, tt.uncertain, tt.status)
			}
			if tt.outcome == participant.OutcomeSuccess && string(res.Output) != tt.output {
				t.Errorf("output = %s; want %s", res.Output, tt.output)
			}
			if !strings.Contains(res.Error, tt.errPart) {
				t.Errorf("error = %q; want it to contain %q", res.Error, tt.errPart)
			}
			if res.RetryAfter != tt.wantRetry {
				t.Errorf("retry after = %v; want %v", res.RetryAfter, tt.wantRetry)
			}
			if len(b.requests()) != 1 {
				t.Errorf("participant saw %d requests; want 1 (no redirect followed)", len(b.requests()))
			}
		})
	}
}

func TestInvokeTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setup(t, participant.Config{}, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	call := newCall(b.server.URL)
	call.Request.TimeoutMs = 50
	res := b.client.Invoke(context.Background(), call)
	if res.Outcome != participant.OutcomeTransient || !res.Uncertain || res.StatusCode != 0 {
		t.Fatalf("result = %+v; want transient, uncertain", res)
	}
	if !strings.Contains(res.Error, "timeout") {
		t.Errorf("error = %q; want it to name the timeout", res.Error)
	}
}

func TestInvokeBoundedByContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	b := setup(t, participant.Config{}, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	res := b.client.Invoke(ctx, newCall(b.server.URL)) // the request's own timeout is 10 s
	if res.Outcome != participant.OutcomeTransient || !res.Uncertain {
		t.Fatalf("result = %+v; want transient, uncertain", res)
	}
}

func TestInvokeOversizeBody(t *testing.T) {
	t.Parallel()
	b := setup(t, participant.Config{MaxBodyBytes: 64}, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `"`+strings.Repeat("x", 200)+`"`)
	})
	res := b.client.Invoke(context.Background(), newCall(b.server.URL))
	if res.Outcome != participant.OutcomePermanent || !res.Uncertain || res.StatusCode != 200 {
		t.Fatalf("result = %+v; want permanent, uncertain, 200", res)
	}
	if !strings.Contains(res.Error, "larger than 64 bytes") {
		t.Errorf("error = %q", res.Error)
	}
	if res.Output != nil {
		t.Errorf("output = %s; want none", res.Output)
	}
}

func TestInvokeConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	client := participant.New(participant.Config{})
	res := client.Invoke(context.Background(), newCall("http://"+addr+"/x"))
	if res.Outcome != participant.OutcomeTransient || res.Uncertain || res.StatusCode != 0 {
		t.Fatalf("result = %+v; want transient, certain", res)
	}
	if res.Error == "" {
		t.Error("no error message")
	}
}

func TestInvokeBrokenConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, participant.Config{}, func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		_ = conn.Close()
	})
	res := b.client.Invoke(context.Background(), newCall(b.server.URL))
	if res.Outcome != participant.OutcomeTransient || !res.Uncertain {
		t.Fatalf("result = %+v; want transient, uncertain", res)
	}
}

func TestInvokeReusesConnections(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	b := setup(t, participant.Config{}, func(w http.ResponseWriter, _ *http.Request) {
		switch n.Add(1) % 3 {
		case 0:
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, strings.Repeat("e", 10000))
		case 1:
			_, _ = io.WriteString(w, `{"n":1}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"no"}`)
		}
	})
	for range 12 {
		b.client.Invoke(context.Background(), newCall(b.server.URL))
	}
	if got := b.conns.Load(); got != 1 {
		t.Errorf("12 sequential calls opened %d connections; want 1", got)
	}
}

func TestInvokeBadURL(t *testing.T) {
	t.Parallel()
	client := participant.New(participant.Config{})
	call := newCall("http://127.0.0.1:1/\x7f")
	res := client.Invoke(context.Background(), call)
	if res.Outcome != participant.OutcomePermanent || res.Error == "" {
		t.Fatalf("result = %+v; want permanent", res)
	}
}

func TestOutcomeString(t *testing.T) {
	t.Parallel()
	for o, want := range map[participant.Outcome]string{
		participant.OutcomeSuccess: "success", participant.OutcomeTransient: "transient",
		participant.OutcomePermanent: "permanent", participant.Outcome(9): "outcome(9)",
	} {
		if got := o.String(); got != want {
			t.Errorf("%d.String() = %q; want %q", int(o), got, want)
		}
	}
}
