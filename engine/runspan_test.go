package engine_test

import (
	"net/http"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
)

// The runner makes a span for its run of a saga and one per call, each
// call's span a child of the run's, and the participant receives the
// call's traceparent.
func TestRunnerMakesSpans(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	b := setup(t, storeKinds[0], func(c *engine.Config) { c.TracerProvider = tp })
	b.stub.on("action", "b", status(http.StatusConflict))
	s := wait(t, b.coord, b.submit(t, b.definition("traced", "a", "b")).ID)
	if s.Status != saga.SagaStatusCompensated {
		t.Fatalf("status %s", s.Status)
	}
	spans := exp.GetSpans()
	var run *tracetest.SpanStub
	for i := range spans {
		if spans[i].Name == "saga traced" {
			run = &spans[i]
		}
	}
	if run == nil {
		t.Fatalf("no run span among %d spans", len(spans))
	}
	calls := map[string]bool{}
	for _, sp := range spans {
		if sp.Parent.SpanID() == run.SpanContext.SpanID() {
			calls[sp.Name] = true
		}
	}
	for _, want := range []string{"action a", "action b", "compensation a"} {
		if !calls[want] {
			t.Errorf("no span %q under the run span (children %v)", want, calls)
		}
	}
	for _, c := range b.stub.received() {
		if c.Header.Get("Traceparent") == "" {
			t.Errorf("call %s %s carried no traceparent", c.Kind, c.Step)
		}
	}
}
