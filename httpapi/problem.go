package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	saga "github.com/tracseq/transaction-service"
)

// Error codes of the HTTP layer, beside those of the root package. They go
// through the same mapping (httpStatus) as the domain's codes.
const (
	codeUnauthorized     saga.ErrorCode = "unauthorized"
	codeRouteNotFound    saga.ErrorCode = "route_not_found"
	codeMethodNotAllowed saga.ErrorCode = "method_not_allowed"
	codeTooLarge         saga.ErrorCode = "too_large"
	codeUnsupportedMedia saga.ErrorCode = "unsupported_media_type"
	// codeIdempotencyConflict: an idempotency key known for another request.
	codeIdempotencyConflict saga.ErrorCode = "idempotency_conflict"
)

// ProblemTypePrefix starts the type URI of every problem document; the error
// code follows it, as in "urn:tracseq:problem:not_found".
const ProblemTypePrefix = "urn:tracseq:problem:"

// Media types of the API.
const (
	contentTypeJSON    = "application/json"
	contentTypeProblem = "application/problem+json"
)

// maxProblemErrors bounds the errors listed in one problem document (the
// detail still counts them all).
const maxProblemErrors = 100

// retryAfterUnavailable is the Retry-After of 503 answers, in seconds.
const retryAfterUnavailable = 5

// httpStatus maps an error code to its HTTP status and the problem title.
// It is the one place where codes meet statuses.
func httpStatus(code saga.ErrorCode) (status int, title string) {
	switch code {
	case saga.ECodeInvalid:
		return http.StatusBadRequest, "Invalid request"
	case codeUnauthorized:
		return http.StatusUnauthorized, "Authentication required"
	case saga.ECodeForbidden:
		return http.StatusForbidden, "Not allowed"
	case saga.ECodeNotFound:
		return http.StatusNotFound, "Saga not found"
	case codeRouteNotFound:
		return http.StatusNotFound, "No such route"
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed, "Method not allowed"
	case saga.ECodeConflict:
		return http.StatusConflict, "Not allowed in the saga's status"
	case codeIdempotencyConflict:
		return http.StatusConflict, "Idempotency key reused"
	case codeTooLarge:
		return http.StatusRequestEntityTooLarge, "Request body too large"
	case codeUnsupportedMedia:
		return http.StatusUnsupportedMediaType, "Unsupported media type"
	case saga.ECodeUnavailable:
		return http.StatusServiceUnavailable, "Service unavailable"
	}
	return http.StatusInternalServerError, "Internal error"
}

// Problem is an RFC 9457 problem document: the body of every error answer.
// The client returns it as its error for any answer that is not a success.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Field is the JSON path or query parameter the problem is about, such
	// as "steps[0].action.url" or "limit"; empty when none.
	Field string `json:"field,omitempty"`
	// Errors lists every problem found in the input, so that a client can
	// fix them all at once.
	Errors    []FieldError `json:"errors,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
}

// FieldError is one problem with one field of the input.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error implements error as "status title: detail".
func (p *Problem) Error() string {
	msg := strconv.Itoa(p.Status) + " " + p.Title
	if p.Detail != "" {
		msg += ": " + p.Detail
	}
	return msg
}

// Code returns the error code of the problem (the end of its type URI), or
// "" when its type is not one of this service's.
func (p *Problem) Code() saga.ErrorCode {
	code, ok := strings.CutPrefix(p.Type, ProblemTypePrefix)
	if !ok {
		return ""
	}
	return saga.ErrorCode(code)
}

// problemFor turns err into the problem document answered to the client.
// Internal details never reach the document: a 500 says "internal error"
// and the request id under which the cause was logged.
func problemFor(err error, requestID string) *Problem {
	code := saga.ErrorCodeOf(err)
	if code == saga.ECodeInternal && errors.Is(err, context.DeadlineExceeded) {
		code = saga.ECodeUnavailable
	}
	status, title := httpStatus(code)
	p := &Problem{Type: ProblemTypePrefix + string(code), Title: title, Status: status, RequestID: requestID}

	var ve *saga.ValidationError
	var e *saga.Error
	switch {
	case errors.As(err, &ve):
		p.Detail = ve.Error()
		for _, pr := range ve.Problems[:min(len(ve.Problems), maxProblemErrors)] {
			p.Errors = append(p.Errors, FieldError{Field: pr.Field, Message: pr.Message})
		}
		if len(ve.Problems) > 0 {
			p.Field = ve.Problems[0].Field
		}
	case errors.As(err, &e) && code != saga.ECodeInternal:
		p.Detail = e.Error()
		p.Field = e.Field
		if e.Field != "" {
			p.Errors = []FieldError{{Field: e.Field, Message: e.Message}}
		}
	case code == saga.ECodeNotFound:
		p.Detail = saga.ErrNotFound.Error()
	case code == saga.ECodeConflict:
		p.Detail = saga.ErrInvalidTransition.Error()
	case code == saga.ECodeUnavailable:
		p.Detail = "the service cannot serve the request now; retry later"
	default:
		p.Detail = fmt.Sprintf("internal error (request id %s)", requestID)
	}
	return p
}
