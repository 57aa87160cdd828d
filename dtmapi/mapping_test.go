package dtmapi

import (
	"errors"
	"net/http"
	"slices"
	"testing"

	saga "github.com/tracseq/transaction-service"
)

func TestTransStatus(t *testing.T) {
	t.Parallel()
	want := map[saga.SagaStatus]string{
		saga.SagaStatusCreated: "submitted", saga.SagaStatusExecuting: "submitted", saga.SagaStatusPaused: "submitted",
		saga.SagaStatusCompensating: "aborting", saga.SagaStatusCompleted: "succeed",
		saga.SagaStatusCompensated: "failed", saga.SagaStatusCancelled: "failed",
		saga.SagaStatusTimedOut: "failed", saga.SagaStatusFailed: "failed",
	}
	for _, st := range saga.SagaStatuses {
		if got := TransStatus(st); got != want[st] {
			t.Errorf("TransStatus(%s) = %q, want %q", st, got, want[st])
		}
	}
}

func TestDTMField(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"steps[1].action.url":          "steps[1].action",
		"steps[0].compensation.method": "steps[0].compensate",
		"steps[2].action.body":         "payloads[2]",
		"steps[2].compensation.body":   "payloads[2]",
		"steps[0].action.headers":      "branch_headers",
		"steps[0].action.timeout_ms":   "request_timeout",
		"steps[3].depends_on[0]":       "custom_data.orders.3",
		"steps":                        "custom_data.orders",
		"timeout_ms":                   "timeout_to_fail",
		"gid":                          "gid",
	} {
		if got := dtmField(in); got != want {
			t.Errorf("dtmField(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestGIDInURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"http://busi/TransIn", "http://busi/TransIn?x=1"} {
		with := withGID(u, "a b&c")
		if back := withoutGID(with, "a b&c"); back != u {
			t.Errorf("withoutGID(withGID(%q)) = %q (via %q)", u, back, with)
		}
	}
}

func trans(steps int) *transRequest {
	t := &transRequest{Gid: "g-1", TransType: "saga"}
	for range steps {
		t.Steps = append(t.Steps, map[string]string{"action": "http://busi/a", "compensate": "http://busi/c"})
		t.Payloads = append(t.Payloads, `{"amount":30}`)
	}
	return t
}

// TestDefinition checks the mapping of a DTM submit onto a definition.
func TestDefinition(t *testing.T) {
	t.Parallel()
	tr := trans(3)
	tr.Steps[1]["compensate"] = ""
	tr.Payloads[2] = ""
	tr.Concurrent = true
	tr.CustomData = `{"orders":{"2":[0,1]},"concurrent":true}`
	tr.TimeoutToFail, tr.RequestTimeout, tr.RetryInterval, tr.RetryLimit = 30, 5, 2, 4
	tr.BranchHeaders = map[string]string{"X-Tenant": "lab"}
	tr.PassthroughHeaders = []string{"X-Trace"}
	h := http.Header{}
	h.Set("X-Trace", "t-1")
	def, err := tr.definition(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := def.Validate(); err != nil {
		t.Fatalf("the definition is not valid: %v", err)
	}
	if def.Name != SagaName || def.IdempotencyKey != "dtm:g-1" || *def.TransactionID != TransactionID("g-1") ||
		def.TimeoutMs != 30_000 || def.MaxParallel != 3 {
		t.Errorf("definition %+v", def)
	}
	a := def.Steps[0].Action
	if a.Method != http.MethodPost || a.URL != "http://busi/a?gid=g-1" || string(a.Body) != `{"amount":30}` ||
		a.Protocol != saga.ProtocolDTM || a.TimeoutMs != 5000 || a.Headers["X-Tenant"] != "lab" || a.Headers["X-Trace"] != "t-1" {
		t.Errorf("action %+v", a)
	}
	if def.Steps[1].Compensation != nil {
		t.Error("an empty compensate URL must leave the step without compensation")
	}
	if m := def.Steps[2].Action.Method; m != http.MethodGet {
		t.Errorf("an empty payload is a GET, as in DTM; got %s", m)
	}
	r := def.Steps[0].Retry
	if r.MaxAttempts != 5 || r.InitialBackoffMs != 2000 {
		t.Errorf("retry %+v, want 5 attempts from 2 s", r)
	}
	deps := [][]string{{}, {}, {"01", "02"}}
	for i, want := range deps {
		if got := def.Steps[i].DependsOn; !slices.Equal(got, want) || got == nil {
			t.Errorf("steps[%d].depends_on = %#v, want %#v", i, got, want)
		}
	}

	// Without concurrent, the orders are ignored and the steps form a chain.
	tr.Concurrent = false
	def, _ = tr.definition(h)
	if def.IsDAG() {
		t.Error("a saga without concurrent must stay a chain")
	}
}

// TestDefinitionErrors checks that bad input names DTM's field.
func TestDefinitionErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edit  func(*transRequest)
		field string
	}{
		{"no gid", func(tr *transRequest) { tr.Gid = "" }, "gid"},
		{"tcc", func(tr *transRequest) { tr.TransType = "tcc" }, "trans_type"},
		{"grpc", func(tr *transRequest) { tr.Protocol = "grpc" }, "protocol"},
		{"no steps", func(tr *transRequest) { tr.Steps, tr.Payloads = nil, nil }, "steps"},
		{"bad url", func(tr *transRequest) { tr.Steps[1]["action"] = "busi/a" }, "steps[1].action"},
		{"bad compensate", func(tr *transRequest) { tr.Steps[0]["compensate"] = "grpc://x/y" }, "steps[0].compensate"},
		{"not JSON", func(tr *transRequest) { tr.Payloads[1] = "amount=30" }, "payloads[1]"},
		{"too many payloads", func(tr *transRequest) { tr.Payloads = append(tr.Payloads, "{}") }, "payloads"},
		{"order out of range", func(tr *transRequest) {
			tr.Concurrent, tr.CustomData = true, `{"orders":{"1":[5]}}`
		}, "custom_data.orders.1"},
		{"custom_data not JSON", func(tr *transRequest) { tr.CustomData = "x" }, "custom_data"},
		{"retry_limit", func(tr *transRequest) { tr.RetryLimit = -1 }, "retry_limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := trans(2)
			tt.edit(tr)
			_, err := tr.definition(http.Header{})
			var ve *saga.ValidationError
			if !errors.As(err, &ve) || ve.Problems[0].Field != tt.field {
				t.Errorf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
}
