package engine

import (
	"context"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// Tracing. A saga's spans are children of the traceparent of its submit
// request, kept with the saga (Definition.TraceParent), so that a run that
// another instance claims later joins the same trace:
//
//	submit request (the client's span)
//	└── saga <name>              one per run: from the claim (or the
//	    │                        submit) to the release or the end
//	    ├── action <step>        one per attempt of a step's action
//	    └── compensation <step>  one per attempt of a compensation
//
// The participant client puts the call span in the traceparent header of
// the call, so the participant's own spans join the trace too. With no
// TracerProvider configured the spans cost nothing and are not recorded,
// but the stored traceparent is still carried to the participants.
//
// The runner makes these calls (and only these):
//
//	ctx, span := r.c.startRunSpan(r.ctx, r.s, claimed)  // when the runner starts
//	callCtx, cs := r.c.startCallSpan(ctx, c.Call)       // before each Invoke, whose ctx is callCtx
//	endCallSpan(cs, res)                                // after each Invoke
//	endRunSpan(span, r.s.Status, why)                   // when the runner stops

// tracerName names the engine's tracer (its instrumentation scope).
const tracerName = "github.com/tracseq/transaction-service/engine"

// Span attribute keys.
const (
	AttrSagaID        = attribute.Key("tracseq.saga.id")
	AttrSagaName      = attribute.Key("tracseq.saga.name")
	AttrTransactionID = attribute.Key("tracseq.transaction.id")
	AttrSagaStatus    = attribute.Key("tracseq.saga.status")
	AttrRunEnd        = attribute.Key("tracseq.run.end")
	AttrClaimed       = attribute.Key("tracseq.run.claimed")
	AttrStep          = attribute.Key("tracseq.step.name")
	AttrStepIndex     = attribute.Key("tracseq.step.index")
	AttrCallKind      = attribute.Key("tracseq.call.kind")
	AttrAttempt       = attribute.Key("tracseq.call.attempt")
	AttrOutcome       = attribute.Key("tracseq.call.outcome")
	AttrUncertain     = attribute.Key("tracseq.call.uncertain")
	// Semantic conventions of HTTP clients.
	attrHTTPMethod     = attribute.Key("http.request.method")
	attrHTTPStatusCode = attribute.Key("http.response.status_code")
	attrServerAddress  = attribute.Key("server.address")
	attrURLFull        = attribute.Key("url.full")
)

// How a run ended, the values of AttrRunEnd.
const (
	RunEnded     = "ended"      // the saga reached an end state (Failed included)
	RunReleased  = "released"   // let go with the saga not ended (paused, waiting, shutdown)
	RunLostLease = "lease_lost" // another instance holds the saga now
)

// tracer returns the coordinator's tracer: a no-op one unless
// Config.TracerProvider is set.
func (c *Coordinator) tracer() trace.Tracer { return c.cfg.tracer }

// parentContext returns ctx carrying the remote span of the saga's stored
// traceparent, or ctx itself when the saga has none (a root span then).
func parentContext(ctx context.Context, s *saga.Saga) context.Context {
	tp := s.Definition.TraceParent
	if tp == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tp})
}

// startRunSpan starts the span of one run of s on this instance, child of
// the traceparent stored with s. claimed is false when the run began with
// the submit. The runner passes the returned context to startCallSpan.
func (c *Coordinator) startRunSpan(ctx context.Context, s *saga.Saga, claimed bool) (context.Context, trace.Span) {
	return c.tracer().Start(parentContext(ctx, s), "saga "+s.Name,
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(
			AttrSagaID.String(s.ID.String()),
			AttrSagaName.String(s.Name),
			AttrTransactionID.String(s.TransactionID.String()),
			AttrSagaStatus.String(string(s.Status)),
			AttrClaimed.Bool(claimed),
		))
}

// endRunSpan ends a run's span with the saga's status as the run left it
// and how the run ended (RunEnded, RunReleased, RunLostLease). A Failed
// saga marks the span as an error.
func endRunSpan(span trace.Span, status saga.SagaStatus, end string) {
	span.SetAttributes(AttrSagaStatus.String(string(status)), AttrRunEnd.String(end))
	if status == saga.SagaStatusFailed {
		span.SetStatus(codes.Error, "saga failed: compensation could not finish")
	}
	span.End()
}

// startCallSpan starts the span of one participant call (an attempt of an
// action or a compensation), child of the run's span in ctx. The call must
// be made with the returned context: the participant client sends its
// traceparent.
func (c *Coordinator) startCallSpan(ctx context.Context, call participant.Call) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		AttrSagaID.String(call.SagaID.String()),
		AttrStep.String(call.StepName),
		AttrStepIndex.Int(call.StepIndex),
		AttrCallKind.String(string(call.Kind)),
		AttrAttempt.Int(call.Attempt),
		attrHTTPMethod.String(call.Request.Method),
	}
	if u, err := url.Parse(call.Request.URL); err == nil {
		attrs = append(attrs, attrServerAddress.String(u.Hostname()), attrURLFull.String(u.Redacted()))
	}
	return c.tracer().Start(ctx, string(call.Kind)+" "+call.StepName,
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endCallSpan ends a call's span with its outcome. Anything but a success
// marks the span as an error, with the call's error as the description.
func endCallSpan(span trace.Span, res participant.Result) {
	span.SetAttributes(AttrOutcome.String(res.Outcome.String()), AttrUncertain.Bool(res.Uncertain))
	if res.StatusCode != 0 {
		span.SetAttributes(attrHTTPStatusCode.Int(res.StatusCode))
	}
	if res.Outcome != participant.OutcomeSuccess {
		span.SetStatus(codes.Error, res.Error)
	}
	span.End()
}
