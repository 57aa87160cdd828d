package engine

import (
	"encoding/json"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// The hand-built event data must be what json.Marshal of the equivalent
// map gave.
func TestOutcomeDataJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		c       call
		res     participant.Result
		backoff time.Duration
		want    map[string]any
	}{
		{"success", call{Call: participant.Call{Attempt: 1, Kind: participant.KindAction}},
			participant.Result{StatusCode: 200, Duration: 3 * time.Millisecond}, -1,
			map[string]any{"attempt": 1, "kind": participant.KindAction, "duration_ms": 3, "status_code": 200}},
		{"retrying without answer", call{Call: participant.Call{Attempt: 2, Kind: participant.KindCompensation}},
			participant.Result{Outcome: participant.OutcomeTransient, Error: `dial "x": <refused> & é`, Uncertain: false}, 40 * time.Millisecond,
			map[string]any{"attempt": 2, "kind": participant.KindCompensation, "duration_ms": 0,
				"error": `dial "x": <refused> & é`, "uncertain": false, "backoff_ms": 40}},
		{"failed", call{Call: participant.Call{Attempt: 3, Kind: participant.KindAction}},
			participant.Result{Outcome: participant.OutcomePermanent, StatusCode: 400, Error: "HTTP 400", Uncertain: true, Duration: time.Second}, -1,
			map[string]any{"attempt": 3, "kind": participant.KindAction, "duration_ms": 1000, "status_code": 400,
				"error": "HTTP 400", "uncertain": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := outcomeData{c: &tt.c, res: &tt.res, backoff: tt.backoff}.json()
			want, _ := json.Marshal(tt.want)
			if string(got) != string(want) {
				t.Fatalf("data %s, want %s", got, want)
			}
		})
	}
}

func TestStartedData(t *testing.T) {
	t.Parallel()
	want, _ := json.Marshal(map[string]any{"attempt": 7, "kind": "compensation"})
	if got := startedData(7, "compensation"); string(got) != string(want) {
		t.Fatalf("data %s, want %s", got, want)
	}
}

func TestCheckpointJSON(t *testing.T) {
	t.Parallel()
	r := struct{ s *saga.Saga }{s: &saga.Saga{
		Context: json.RawMessage("{ \"user\" : \"u\" }"),
		Steps: []saga.Step{
			{Index: 0, Name: "zeta", Status: saga.StepStatusCompleted, Output: json.RawMessage(`{"a": [1, 2]}`)},
			{Index: 1, Name: "alpha \"q\"", Status: saga.StepStatusCompleted},
			{Index: 2, Name: "later", Status: saga.StepStatusPending},
		},
	}}
	want, _ := json.Marshal(struct {
		Context json.RawMessage            `json:"context"`
		Outputs map[string]json.RawMessage `json:"outputs"`
	}{r.s.Context, map[string]json.RawMessage{"zeta": json.RawMessage(`{"a":[1,2]}`), "alpha \"q\"": json.RawMessage("null")}})
	if got := checkpointContext(r.s.Context, r.s.Steps); string(got) != string(want) {
		t.Fatalf("checkpoint %s, want %s", got, want)
	}
}
