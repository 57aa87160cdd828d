package saga_test

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// validDefinition is a one-step definition that Validate accepts.
func validDefinition() saga.Definition {
	return saga.Definition{
		Name: "order",
		Steps: []saga.StepDefinition{{
			Name:         "reserve",
			Action:       saga.Request{Method: "POST", URL: "http://inventory.local/reserve", Headers: map[string]string{"X-Tenant": "lab-7"}},
			Compensation: &saga.Request{Method: "POST", URL: "http://inventory.local/release"},
		}},
	}
}

// problemsOf returns the problems Validate finds in def.
func problemsOf(t *testing.T, def saga.Definition) []*saga.Error {
	t.Helper()
	err := def.Validate()
	if err == nil {
		return nil
	}
	ve, ok := err.(*saga.ValidationError)
	if !ok {
		t.Fatalf("Validate() = %T %v; want *saga.ValidationError", err, err)
	}
	return ve.Problems
}

func TestValidateHostileDefinitions(t *testing.T) {
	t.Parallel()
	withHeader := func(name, value string) func(*saga.Definition) {
		return func(d *saga.Definition) { d.Steps[0].Action.Headers = map[string]string{name: value} }
	}
	tests := []struct {
		name   string
		change func(*saga.Definition)
		field  string // "" means valid
		detail string
	}{
		{"valid", func(*saga.Definition) {}, "", ""},

		// Item 3: headers that strip idempotency or forge the service's.
		{"Connection", withHeader("Connection", "Idempotency-Key"), "steps[0].action.headers", "hop-by-hop"},
		{"Upgrade", withHeader("Upgrade", "websocket"), "steps[0].action.headers", "hop-by-hop"},
		{"Te", withHeader("te", "trailers"), "steps[0].action.headers", "hop-by-hop"},
		{"Keep-Alive", withHeader("Keep-Alive", "timeout=5"), "steps[0].action.headers", "hop-by-hop"},
		{"Proxy-Authorization", withHeader("Proxy-Authorization", "Basic x"), "steps[0].action.headers", "hop-by-hop"},
		{"Proxy-Connection", withHeader("Proxy_Connection", "close"), "steps[0].action.headers", "hop-by-hop"},
		{"Expect", withHeader("Expect", "100-continue"), "steps[0].action.headers", "hop-by-hop"},
		{"Trailer", withHeader("Trailer", "X-A"), "steps[0].action.headers", "hop-by-hop"},
		{"Transfer-Encoding", withHeader("TRANSFER-ENCODING", "chunked"), "steps[0].action.headers", "hop-by-hop"},
		{"Idempotency_Key", withHeader("Idempotency_Key", "forged"), "steps[0].action.headers", `"Idempotency_Key" (read as "Idempotency-Key") is set by the service`},
		{"idempotency-key", withHeader("idempotency-key", "forged"), "steps[0].action.headers", "set by the service"},
		{"X_Saga_Id", withHeader("X_Saga_Id", "forged"), "steps[0].action.headers", "set by the service"},
		{"X-Saga-Anything", withHeader("x-saga-attempt-epoch", "9"), "steps[0].action.headers", "set by the service"},
		{"X-Transaction-Id", withHeader("X_TRANSACTION_ID", "t"), "steps[0].action.headers", "set by the service"},
		{"Traceparent", withHeader("traceparent", "00-x"), "steps[0].action.headers", "set by the service"},
		{"Tracestate", withHeader("Tracestate", "a=b"), "steps[0].action.headers", "set by the service"},
		{"Content-Type", withHeader("content_type", "text/plain"), "steps[0].action.headers", "set by the service"},
		{"Content-Length", withHeader("Content-Length", "0"), "steps[0].action.headers", "set by the service"},
		{"Host", withHeader("HOST", "evil.local"), "steps[0].action.headers", "set by the service"},
		{"compensation headers too", func(d *saga.Definition) {
			d.Steps[0].Compensation.Headers = map[string]string{"Connection": "close"}
		}, "steps[0].compensation.headers", "hop-by-hop"},
		{"two spellings", func(d *saga.Definition) {
			d.Steps[0].Action.Headers = map[string]string{"X-Tenant": "a", "x_tenant": "b"}
		}, "steps[0].action.headers", "name the same header"},
		{"value with \\u0001", withHeader("X-A", "a\x01b"), "steps[0].action.headers", "valid header field value"},
		{"value with DEL", withHeader("X-A", "a\x7f"), "steps[0].action.headers", "valid header field value"},
		{"value with NUL", withHeader("X-A", "\x00"), "steps[0].action.headers", "valid header field value"},
		{"value with a line break", withHeader("X-A", "a\r\nX-Injected: 1"), "steps[0].action.headers", "valid header field value"},
		{"value not UTF-8", withHeader("X-A", "caf\xe9"), "steps[0].action.headers", "valid header field value"},
		{"value with a tab and UTF-8", withHeader("X-A", "a\tb é"), "", ""},
		{"header name with a space", withHeader("X A", "1"), "steps[0].action.headers", "not a valid header name"},

		// Item 7: what the database cannot store.
		{"NUL in the name", func(d *saga.Definition) { d.Name = "a\x00b" }, "name", "NUL"},
		{"invalid UTF-8 in the name", func(d *saga.Definition) { d.Name = "a\xffb" }, "name", "UTF-8"},
		{"NUL in a step name", func(d *saga.Definition) { d.Steps[0].Name = "s\x00" }, "steps[0].name", "NUL"},
		{"NUL in the idempotency key", func(d *saga.Definition) { d.IdempotencyKey = "k\x00" }, "idempotency_key", "NUL"},
		{"\\u0000 in the context", func(d *saga.Definition) { d.Context = json.RawMessage(`{"s":"\u0000"}`) }, "context.s", "NUL"},
		{"\\xff in the context", func(d *saga.Definition) { d.Context = json.RawMessage("{\"s\":\"\xff\"}") }, "context.s", "UTF-8"},
		{"\\ud800 in the context", func(d *saga.Definition) { d.Context = json.RawMessage(`{"s":["\ud800"]}`) }, "context.s[0]", "surrogate"},
		{"1e1000000 in the context", func(d *saga.Definition) { d.Context = json.RawMessage(`{"n":1e1000000}`) }, "context.n", "out of range"},
		{"1e-1000000 in a body", func(d *saga.Definition) { d.Steps[0].Action.Body = json.RawMessage(`{"n":1e-1000000}`) }, "steps[0].action.body.n", "out of range"},
		{"200,000 zeros in a compensation body", func(d *saga.Definition) {
			d.Steps[0].Compensation.Body = json.RawMessage("1" + strings.Repeat("0", 200_000))
		}, "steps[0].compensation.body", "out of range"},

		// Item 8: durations that would wrap.
		{"saga timeout that wraps", func(d *saga.Definition) { d.TimeoutMs = 9223372036854776 }, "timeout_ms", "at most 2592000000"},
		{"largest saga timeout", func(d *saga.Definition) { d.TimeoutMs = math.MaxInt64 }, "timeout_ms", "at most"},
		{"call timeout that wraps", func(d *saga.Definition) { d.Steps[0].Action.TimeoutMs = 9223372036854776 }, "steps[0].action.timeout_ms", "at most 600000"},
		{"compensation timeout that wraps", func(d *saga.Definition) { d.Steps[0].Compensation.TimeoutMs = math.MaxInt64 }, "steps[0].compensation.timeout_ms", "at most"},
		{"initial backoff that wraps", func(d *saga.Definition) {
			d.Steps[0].Retry = &saga.RetryPolicy{InitialBackoffMs: 9223372036854776}
		}, "steps[0].retry.initial_backoff_ms", "between"},
		{"max backoff that wraps", func(d *saga.Definition) {
			d.Steps[0].Retry = &saga.RetryPolicy{MaxBackoffMs: math.MaxInt64}
		}, "steps[0].retry.max_backoff_ms", "between"},
		{"longest timeouts allowed", func(d *saga.Definition) {
			d.TimeoutMs = saga.MaxSagaTimeout.Milliseconds()
			d.Steps[0].Action.TimeoutMs = saga.MaxCallTimeout.Milliseconds()
		}, "", ""},

		// Item 11: secret_headers names headers.
		{"secret_headers", func(d *saga.Definition) { d.SecretHeaders = []string{"X-Internal-Token"} }, "", ""},
		{"bad secret_headers", func(d *saga.Definition) { d.SecretHeaders = []string{"ok", "bad name"} }, "secret_headers[1]", "not a valid header name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			def := validDefinition()
			tc.change(&def)
			problems := problemsOf(t, def)
			if tc.field == "" {
				if len(problems) > 0 {
					t.Fatalf("Validate() found %v; want none", problems)
				}
				return
			}
			for _, p := range problems {
				if p.Field == tc.field && strings.Contains(p.Message, tc.detail) {
					return
				}
			}
			t.Errorf("Validate() found %v; want %s: …%s…", problems, tc.field, tc.detail)
		})
	}
}

// A header value is never quoted in a problem: it may be a secret.
func TestValidateDoesNotShowHeaderValues(t *testing.T) {
	t.Parallel()
	def := validDefinition()
	def.Steps[0].Action.Headers = map[string]string{"Authorization": "Bearer s3cret\x01", "Connection": "s3cret"}
	err := def.Validate()
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Validate() = %v", err)
	}
	for _, p := range problemsOf(t, def) {
		if strings.Contains(p.Message, "s3cret") {
			t.Errorf("problem shows a header value: %v", p)
		}
	}
}

func TestMilliseconds(t *testing.T) {
	t.Parallel()
	for ms, want := range map[int64]time.Duration{
		-5: 0, 0: 0, 1: time.Millisecond, 1500: 1500 * time.Millisecond,
		9223372036854:    9223372036854 * time.Millisecond,
		9223372036855:    math.MaxInt64,
		9223372036854776: math.MaxInt64,
		math.MaxInt64:    math.MaxInt64,
	} {
		if got := saga.Milliseconds(ms); got != want {
			t.Errorf("Milliseconds(%d) = %v; want %v", ms, got, want)
		}
	}
	d := saga.Definition{TimeoutMs: 9223372036854776}
	if d.Timeout() < saga.MaxSagaTimeout {
		t.Errorf("Timeout() of %d ms = %v: it wrapped", d.TimeoutMs, d.Timeout())
	}
	r := saga.Request{TimeoutMs: math.MaxInt64}
	if r.Timeout() < saga.MaxCallTimeout {
		t.Errorf("Request.Timeout() of %d ms = %v: it wrapped", r.TimeoutMs, r.Timeout())
	}
}

func TestSecretHeadersAndRedacted(t *testing.T) {
	t.Parallel()
	def := validDefinition()
	def.SecretHeaders = []string{"x_internal_token"}
	def.Steps[0].Action.URL = "http://inventory.local/reserve?api_key=k-123"
	def.Steps[0].Action.Headers = map[string]string{
		"authorization": "Bearer t-1", "Cookie": "c=1", "x-api-key": "k-2", "X-Internal-Token": "t-3", "X-Tenant": "lab-7",
	}
	for name, want := range map[string]bool{
		"Authorization": true, "AUTHORIZATION": true, "proxy-authorization": true, "cookie": true,
		"X_Api_Key": true, "X-Internal-Token": true, "X-Tenant": false, "Accept": false,
	} {
		if got := def.IsSecretHeader(name); got != want {
			t.Errorf("IsSecretHeader(%q) = %v; want %v", name, got, want)
		}
	}
	r := def.Redacted()
	h := r.Steps[0].Action.Headers
	if h["authorization"] != saga.Redacted || h["Cookie"] != saga.Redacted || h["x-api-key"] != saga.Redacted ||
		h["X-Internal-Token"] != saga.Redacted || h["X-Tenant"] != "lab-7" {
		t.Errorf("Redacted headers = %v", h)
	}
	if r.Steps[0].Action.URL != "http://inventory.local/reserve?api_key=[redacted]" {
		t.Errorf("Redacted URL = %q", r.Steps[0].Action.URL)
	}
	if def.Steps[0].Action.Headers["authorization"] != "Bearer t-1" || def.Steps[0].Action.URL == r.Steps[0].Action.URL {
		t.Error("Redacted changed the original")
	}
}

func TestSameRequest(t *testing.T) {
	t.Parallel()
	a := validDefinition()
	a.Context = json.RawMessage(`{ "b": 2.0, "a": [1, "x"] }`)
	a.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	b := a.Clone()
	b.Context = json.RawMessage(`{"a":[1,"x"],"b":2}`)
	b.TraceParent = "" // a retry traced anew is the same request
	if !a.SameRequest(&b) {
		t.Error("the same request, reformatted and traced anew, differs")
	}
	b.Steps[0].Action.Headers["X-Tenant"] = "lab-8"
	if a.SameRequest(&b) {
		t.Error("another header value counts as the same request")
	}
}
