package saga

import (
	"errors"
	"fmt"
)

// Sentinel errors. Stores and the engine return them (possibly wrapped);
// callers check them with errors.Is.
var (
	// ErrNotFound means no saga has the given id.
	ErrNotFound = errors.New("saga not found")
	// ErrLeaseLost means a fenced write was refused: the writer no longer
	// holds the saga's lease (it expired, or another instance claimed the
	// saga). The writer must stop working on the saga.
	ErrLeaseLost = errors.New("saga lease lost")
	// ErrInvalidTransition means the requested change is not allowed in the
	// saga's current status.
	ErrInvalidTransition = errors.New("not allowed in the saga's status")
	// ErrUnavailable means the store cannot serve the request now (the
	// database is unreachable and retries were exhausted).
	ErrUnavailable = errors.New("store unavailable")
	// ErrNotWritten accompanies ErrUnavailable on a failed write that the
	// store knows left nothing behind: it never reached the database (no
	// connection could be had, or the store was closed). A failed write
	// without it may have committed before its answer was lost.
	ErrNotWritten = errors.New("nothing was written")
	// ErrRefused means the store refused the data of a write for good (a
	// value the database cannot keep): retrying the same write cannot
	// succeed.
	ErrRefused = errors.New("store refused the data")
	// ErrAccessRefused means the database answered and refused the
	// connection: a wrong password, an unknown role or database. It is a
	// configuration error, not an outage: trying again does not help until
	// the configuration is fixed.
	ErrAccessRefused = errors.New("the database refused the connection")
)

// ErrorCode classifies a user-facing error. The HTTP layer maps each code to
// one status in one place.
type ErrorCode string

// The error codes.
const (
	ECodeInvalid     ErrorCode = "invalid"     // bad input: 400
	ECodeNotFound    ErrorCode = "not_found"   // 404
	ECodeConflict    ErrorCode = "conflict"    // not allowed in this status: 409
	ECodeUnavailable ErrorCode = "unavailable" // 503
	ECodeForbidden   ErrorCode = "forbidden"   // a target host not allowed: 403 or 400
	ECodeInternal    ErrorCode = "internal"    // 500
)

// Error is a user-facing error: a code, the field it concerns (a JSON path
// such as "steps[2].action.url", empty when none) and a message that can be
// shown to the client as it is.
type Error struct {
	Code    ErrorCode
	Field   string
	Message string
}

// Error implements error as "field: message".
func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Errorf returns an *Error with a formatted message.
func Errorf(code ErrorCode, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ValidationError collects every problem found in one input, so a client can
// fix them all at once. Its first problem is its headline.
type ValidationError struct {
	Problems []*Error
}

// Error implements error.
func (e *ValidationError) Error() string {
	switch len(e.Problems) {
	case 0:
		return "invalid input"
	case 1:
		return e.Problems[0].Error()
	}
	return fmt.Sprintf("%s (and %d more problems)", e.Problems[0].Error(), len(e.Problems)-1)
}

// add records a problem with field.
func (e *ValidationError) add(field, format string, args ...any) {
	e.Problems = append(e.Problems, Errorf(ECodeInvalid, field, format, args...))
}

// orNil returns e when it holds problems, else nil.
func (e *ValidationError) orNil() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

// ErrorCodeOf returns the code of err: the code of an *Error or
// *ValidationError it wraps, or the code matching a sentinel, else
// ECodeInternal.
func ErrorCodeOf(err error) ErrorCode {
	var e *Error
	var ve *ValidationError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	case errors.As(err, &ve):
		return ECodeInvalid
	case errors.Is(err, ErrNotFound):
		return ECodeNotFound
	case errors.Is(err, ErrInvalidTransition):
		return ECodeConflict
	case errors.Is(err, ErrUnavailable):
		return ECodeUnavailable
	}
	return ECodeInternal
}
