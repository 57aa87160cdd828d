package httpapi

import (
	"net/http"

	saga "github.com/tracseq/transaction-service"
)

// traceParentHeader is the W3C Trace Context request header.
const traceParentHeader = "Traceparent"

// takeTraceParent stores the submit request's traceparent in def, unless
// the body gave one, so that the saga's spans join the caller's trace on
// whichever instance runs it. An invalid header is ignored, as the W3C
// recommendation says (the request is not refused for it); an invalid
// trace_parent in the body is refused by Validate.
func takeTraceParent(r *http.Request, def *saga.Definition) {
	if def.TraceParent != "" {
		return
	}
	if tp := r.Header.Get(traceParentHeader); saga.ValidTraceParent(tp) {
		def.TraceParent = tp
	}
}
