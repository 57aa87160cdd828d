package participant_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

func TestClassifyDTM(t *testing.T) {
	t.Parallel()
	const (
		action = participant.KindAction
		comp   = participant.KindCompensation
	)
	tests := []struct {
		name      string
		kind      participant.Kind
		status    int
		body      string
		outcome   participant.Outcome
		uncertain bool
	}{
		{"200", action, 200, `{"dtm_result":"SUCCESS"}`, participant.OutcomeSuccess, false},
		{"200 empty", action, 200, ``, participant.OutcomeSuccess, false},
		{"201 is not DTM's success", action, 201, `{}`, participant.OutcomeTransient, true},
		{"409", action, 409, `{"error":"no"}`, participant.OutcomePermanent, true},
		{"200 with FAILURE", action, 200, `{"dtm_result":"FAILURE"}`, participant.OutcomePermanent, true},
		{"425", action, 425, ``, participant.OutcomeTransient, true},
		{"200 with ONGOING", action, 200, `{"dtm_result":"ONGOING"}`, participant.OutcomeTransient, true},
		{"ONGOING before FAILURE", action, 409, `ONGOING`, participant.OutcomeTransient, true},
		{"400 is transient", action, 400, `bad`, participant.OutcomeTransient, true},
		{"500", action, 500, ``, participant.OutcomeTransient, true},
		{"compensation refused is retried", comp, 409, `{"dtm_result":"FAILURE"}`, participant.OutcomeTransient, true},
		{"compensation 200", comp, 200, `{"dtm_result":"SUCCESS"}`, participant.OutcomeSuccess, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			outcome, uncertain := participant.ClassifyDTM(tt.kind, tt.status, []byte(tt.body))
			if outcome != tt.outcome || uncertain != tt.uncertain {
				t.Errorf("ClassifyDTM(%s, %d, %q) = %v, %v; want %v, %v", tt.kind, tt.status, tt.body, outcome, uncertain, tt.outcome, tt.uncertain)
			}
		})
	}
}

func TestDTMBranchID(t *testing.T) {
	t.Parallel()
	for i, want := range map[int]string{0: "01", 8: "09", 9: "10", 98: "99"} {
		if got := participant.DTMBranchID(i); got != want {
			t.Errorf("DTMBranchID(%d) = %q, want %q", i, got, want)
		}
	}
}

// TestInvokeDTM checks a call in DTM's protocol: the payload sent as it
// is, the branch in the query, the service's headers kept, and the answer
// read as DTM reads it.
func TestInvokeDTM(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, body string
		query        url.Values
		header       http.Header
	}
	got := make(chan seen, 4)
	const answer = `{"dtm_result":"SUCCESS"}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, string(b), r.URL.Query(), r.Header.Clone()}
		if r.URL.Path == "/Refuse" {
			w.WriteHeader(http.StatusConflict)
			_, _ = io.WriteString(w, `{"dtm_result":"FAILURE"}`)
			return
		}
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)

	c := participant.New(participant.Config{})
	call := participant.Call{
		SagaID: saga.NewID(), TransactionID: saga.NewID(), StepIndex: 1, StepName: "02",
		Kind: participant.KindCompensation, Attempt: 1, Epoch: 7,
		Request: saga.Request{
			Method: http.MethodPost, URL: srv.URL + "/TransIn?gid=g-1&keep=yes",
			Body: []byte(`{"amount": 30}`), Protocol: saga.ProtocolDTM,
			Headers: map[string]string{"X-Tenant": "lab"},
		},
		Context: []byte(`{"not":"sent"}`),
	}
	res := c.Invoke(context.Background(), call)
	if res.Outcome != participant.OutcomeSuccess || string(res.Output) != answer {
		t.Fatalf("result %+v", res)
	}
	s := <-got
	if s.method != http.MethodPost || s.body != `{"amount": 30}` {
		t.Errorf("sent %s %q, want POST with the payload as it is", s.method, s.body)
	}
	for name, want := range map[string]string{"gid": "g-1", "trans_type": "saga", "branch_id": "02", "op": "compensate", "keep": "yes"} {
		if v := s.query.Get(name); v != want {
			t.Errorf("query %s = %q, want %q", name, v, want)
		}
	}
	if k := s.header.Get("Idempotency-Key"); k != call.IdempotencyKey() {
		t.Errorf("Idempotency-Key %q, want %q", k, call.IdempotencyKey())
	}
	if s.header.Get("X-Saga-Id") != call.SagaID.String() || s.header.Get("X-Tenant") != "lab" ||
		s.header.Get("X-Saga-Attempt-Epoch") != "7" {
		t.Errorf("headers %v", s.header)
	}

	// A refused action: permanent, and uncertain so that it is compensated.
	call.Kind = participant.KindAction
	call.Request.URL = srv.URL + "/Refuse"
	res = c.Invoke(context.Background(), call)
	if res.Outcome != participant.OutcomePermanent || !res.Uncertain || !strings.Contains(res.Error, "FAILURE") {
		t.Errorf("refused: %+v", res)
	}
	s = <-got
	if s.query.Get("gid") != call.SagaID.String() || s.query.Get("op") != "action" {
		t.Errorf("without a gid in the URL the saga id is the gid: %v", s.query)
	}
}
