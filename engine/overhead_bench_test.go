package engine_test

import (
	"context"
	"encoding/json"
	"testing"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/participant"
)

// okInvoker answers every call at once with a small output.
type okInvoker struct{}

func (okInvoker) Invoke(context.Context, participant.Call) participant.Result {
	return participant.Result{Outcome: participant.OutcomeSuccess, StatusCode: 200, Output: json.RawMessage(`{"ok":true}`)}
}

// BenchmarkEngineOverhead is the engine's own cost per two-step saga: the
// memory store and participants that answer at once, no network, one saga
// at a time (submit, then wait for its end).
func BenchmarkEngineOverhead(b *testing.B) {
	store := memory.New(memory.Config{})
	cfg := testConfig(b, "bench")
	cfg.Logger = nil
	cfg.Invoker = okInvoker{}
	c, err := engine.New(store, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Stop(ctx) }()
	def := saga.Definition{Name: "bench", Steps: []saga.StepDefinition{
		{Name: "a", Action: saga.Request{Method: "POST", URL: "http://p/a"}, Compensation: &saga.Request{Method: "POST", URL: "http://p/ua"}},
		{Name: "b", Action: saga.Request{Method: "POST", URL: "http://p/b"}, Compensation: &saga.Request{Method: "POST", URL: "http://p/ub"}},
	}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, _, err := c.Submit(ctx, def)
		if err != nil {
			b.Fatal(err)
		}
		if s, err = c.Wait(ctx, s.ID); err != nil || s.Status != saga.SagaStatusCompleted {
			b.Fatalf("wait: %v %v", s.Status, err)
		}
	}
}
