package engine

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/participant"
)

// tracedStub is a participant that records the traceparent of each call
// and fails the first attempt of a compensation.
type tracedStub struct {
	srv *httptest.Server

	mu    sync.Mutex
	seen  map[string]string // path → the traceparent of its last call
	fails int
}

func newTracedStub(t *testing.T) *tracedStub {
	t.Helper()
	p := &tracedStub{seen: map[string]string{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.seen[r.URL.Path] = r.Header.Get("traceparent")
		fail := strings.HasSuffix(r.URL.Path, "/undo") && p.fails == 0
		if fail {
			p.fails++
		}
		p.mu.Unlock()
		if fail {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"ok": true}`)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *tracedStub) traceparent(path string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[path]
}

// TestTracingJoinsTheSubmitRequest submits a saga through the API with a
// traceparent, then makes the tracing calls the runner makes, on two
// coordinators (the second one claiming the saga later): the run spans are
// children of the submit request's span, the call spans children of their
// run, and the participant receives each call span as its parent.
func TestTracingJoinsTheSubmitRequest(t *testing.T) {
	t.Parallel()
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	store := memory.New(memory.Config{})
	stub := newTracedStub(t)
	invoker := participant.New(participant.Config{})
	newCoordinator := func(id string) *Coordinator {
		c, err := New(store, Config{InstanceID: id, TracerProvider: tp, Invoker: invoker})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Not started: the saga waits in the store, as one queued for a claim.
	first, second := newCoordinator("first"), newCoordinator("second")
	api, err := httpapi.NewServer(httpapi.Config{Coordinator: first})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)

	const (
		clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientSpan  = "00f067aa0ba902b7"
	)
	def := fmt.Sprintf(`{"name": "traced", "steps": [
		{"name": "reserve", "action": {"method": "POST", "url": %q}, "compensation": {"method": "POST", "url": %q}}]}`,
		stub.srv.URL+"/reserve", stub.srv.URL+"/reserve/undo")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, hs.URL+"/api/v1/sagas", bytes.NewBufferString(def))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: %d", resp.StatusCode)
	}
	page, err := store.ListSagas(t.Context(), saga.Filter{})
	if err != nil || len(page.Sagas) != 1 {
		t.Fatalf("ListSagas: %v (%d sagas)", err, len(page.Sagas))
	}
	s, err := store.GetSaga(t.Context(), page.Sagas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := "00-" + clientTrace + "-" + clientSpan + "-01"; s.Definition.TraceParent != want {
		t.Fatalf("stored traceparent %q, want %q", s.Definition.TraceParent, want)
	}

	call := func(c *Coordinator, ctx context.Context, kind participant.Kind, attempt int, path string) participant.Result {
		pc := participant.Call{SagaID: s.ID, TransactionID: s.TransactionID, StepIndex: 0, StepName: "reserve",
			Kind: kind, Attempt: attempt, Request: saga.Request{Method: http.MethodPost, URL: stub.srv.URL + path}}
		callCtx, span := c.startCallSpan(ctx, pc)
		res := invoker.Invoke(callCtx, pc)
		endCallSpan(span, res)
		return res
	}
	// The first instance runs the action, then lets the saga go.
	ctx, run1 := first.startRunSpan(t.Context(), s, false)
	if res := call(first, ctx, participant.KindAction, 1, "/reserve"); res.Outcome != participant.OutcomeSuccess {
		t.Fatalf("action: %+v", res)
	}
	actionHeader := stub.traceparent("/reserve")
	endRunSpan(run1, saga.SagaStatusExecuting, RunReleased)
	// The second claims it later and compensates, the first attempt failing.
	ctx, run2 := second.startRunSpan(t.Context(), s, true)
	call(second, ctx, participant.KindCompensation, 1, "/reserve/undo")
	call(second, ctx, participant.KindCompensation, 2, "/reserve/undo")
	undoHeader := stub.traceparent("/reserve/undo")
	endRunSpan(run2, saga.SagaStatusCompensated, RunEnded)

	spans := exporter.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	for _, sp := range spans {
		byName[sp.Name] = append(byName[sp.Name], sp)
	}
	runs, actions, comps := byName["saga traced"], byName["action reserve"], byName["compensation reserve"]
	if len(runs) != 2 || len(actions) != 1 || len(comps) != 2 || len(spans) != 5 {
		t.Fatalf("spans %v, want 2 runs, 1 action, 2 compensation attempts", names(spans))
	}
	for _, r := range runs {
		if r.SpanContext.TraceID().String() != clientTrace || r.Parent.SpanID().String() != clientSpan || !r.Parent.IsRemote() {
			t.Errorf("run span trace %s parent %s (remote %v), want the submit request's trace %s and span %s",
				r.SpanContext.TraceID(), r.Parent.SpanID(), r.Parent.IsRemote(), clientTrace, clientSpan)
		}
		checkAttr(t, r, AttrSagaID, s.ID.String())
	}
	checkAttr(t, runs[0], AttrRunEnd, RunReleased)
	checkAttr(t, runs[1], AttrRunEnd, RunEnded)
	checkAttr(t, runs[1], AttrSagaStatus, "Compensated")
	if actions[0].Parent.SpanID() != runs[0].SpanContext.SpanID() {
		t.Errorf("the action's parent is %s, want the first run %s", actions[0].Parent.SpanID(), runs[0].SpanContext.SpanID())
	}
	checkAttr(t, actions[0], AttrOutcome, "success")
	checkAttr(t, actions[0], AttrStep, "reserve")
	checkAttr(t, actions[0], AttrAttempt, "1")
	if actions[0].SpanKind != trace.SpanKindClient {
		t.Errorf("the action's span kind is %v, want client", actions[0].SpanKind)
	}
	for i, c := range comps {
		if c.Parent.SpanID() != runs[1].SpanContext.SpanID() {
			t.Errorf("compensation attempt %d's parent is %s, want the second run %s", i+1, c.Parent.SpanID(), runs[1].SpanContext.SpanID())
		}
		checkAttr(t, c, AttrAttempt, fmt.Sprint(i+1))
		checkAttr(t, c, AttrCallKind, "compensation")
	}
	checkAttr(t, comps[0], AttrOutcome, "transient")
	checkAttr(t, comps[1], AttrOutcome, "success")
	if comps[0].Status.Code.String() != "Error" {
		t.Errorf("the failed attempt's span status is %v, want Error", comps[0].Status)
	}
	// The participant got each call span as its parent, in the same trace.
	for path, want := range map[string]tracetest.SpanStub{"/reserve": actions[0], "/reserve/undo": comps[1]} {
		got := map[string]string{"/reserve": actionHeader, "/reserve/undo": undoHeader}[path]
		w := "00-" + clientTrace + "-" + want.SpanContext.SpanID().String() + "-01"
		if got != w {
			t.Errorf("the participant received traceparent %q on %s, want %q", got, path, w)
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

func checkAttr(t *testing.T, s tracetest.SpanStub, key attribute.Key, want string) {
	t.Helper()
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if got := kv.Value.Emit(); got != want {
				t.Errorf("span %s: %s = %q, want %q", s.Name, kv.Key, got, want)
			}
			return
		}
	}
	t.Errorf("span %s has no attribute %s", s.Name, key)
}

// TestTracingOffStillCarriesTheTrace: without a TracerProvider nothing is
// recorded, yet the participant still receives the submit's trace.
func TestTracingOffStillCarriesTheTrace(t *testing.T) {
	t.Parallel()
	store := memory.New(memory.Config{})
	c, err := New(store, Config{InstanceID: "untraced"})
	if err != nil {
		t.Fatal(err)
	}
	stub := newTracedStub(t)
	s := &saga.Saga{ID: saga.NewID(), Name: "untraced",
		Definition: saga.Definition{TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	ctx, run := c.startRunSpan(t.Context(), s, true)
	pc := participant.Call{SagaID: s.ID, StepName: "a", Kind: participant.KindAction, Attempt: 1,
		Request: saga.Request{Method: http.MethodPost, URL: stub.srv.URL + "/a"}}
	callCtx, span := c.startCallSpan(ctx, pc)
	res := participant.New(participant.Config{}).Invoke(callCtx, pc)
	endCallSpan(span, res)
	endRunSpan(run, saga.SagaStatusCompleted, RunEnded)
	if span.IsRecording() || run.IsRecording() {
		t.Error("spans are recorded without a TracerProvider")
	}
	if got := stub.traceparent("/a"); !strings.HasPrefix(got, "00-0af7651916cd43dd8448eb211c80319c-") {
		t.Errorf("untraced, the participant received traceparent %q, want the submit's trace", got)
	}
}
