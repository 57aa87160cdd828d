package saga

import "fmt"

// SagaStatus is the state of a saga. The values are spelled exactly as the
// PostgreSQL enum saga_status.
type SagaStatus string

// The nine saga statuses of the specification.
const (
	SagaStatusCreated      SagaStatus = "Created"
	SagaStatusExecuting    SagaStatus = "Executing"
	SagaStatusCompensating SagaStatus = "Compensating"
	SagaStatusCompleted    SagaStatus = "Completed"
	SagaStatusCompensated  SagaStatus = "Compensated"
	SagaStatusFailed       SagaStatus = "Failed"
	SagaStatusPaused       SagaStatus = "Paused"
	SagaStatusCancelled    SagaStatus = "Cancelled"
	SagaStatusTimedOut     SagaStatus = "TimedOut"
)

// SagaStatuses lists every saga status in the order of the database enum.
var SagaStatuses = []SagaStatus{
	SagaStatusCreated, SagaStatusExecuting, SagaStatusCompensating,
	SagaStatusCompleted, SagaStatusCompensated, SagaStatusFailed,
	SagaStatusPaused, SagaStatusCancelled, SagaStatusTimedOut,
}

// Valid reports whether s is one of the nine statuses.
func (s SagaStatus) Valid() bool {
	switch s {
	case SagaStatusCreated, SagaStatusExecuting, SagaStatusCompensating,
		SagaStatusCompleted, SagaStatusCompensated, SagaStatusFailed,
		SagaStatusPaused, SagaStatusCancelled, SagaStatusTimedOut:
		return true
	}
	return false
}

// Terminal reports whether s is an end state. Failed is terminal too: only an
// operator's retry moves a Failed saga on.
func (s SagaStatus) Terminal() bool {
	switch s {
	case SagaStatusCompleted, SagaStatusCompensated, SagaStatusFailed,
		SagaStatusCancelled, SagaStatusTimedOut:
		return true
	}
	return false
}

// ParseSagaStatus converts s to a SagaStatus, or returns an error naming the
// allowed values.
func ParseSagaStatus(s string) (SagaStatus, error) {
	st := SagaStatus(s)
	if !st.Valid() {
		return "", fmt.Errorf("unknown saga status %q (want one of %v)", s, SagaStatuses)
	}
	return st, nil
}

// CanTransition reports whether a saga may move from one status to another.
// It is the single definition of the saga state machine; both stores and the
// engine rely on it. A status never "transitions" to itself: writes that keep
// the status (progress within Executing, say) are not transitions.
func CanTransition(from, to SagaStatus) bool {
	switch from {
	case SagaStatusCreated:
		// Started; paused or cancelled before the first step; deadline passed
		// before it ran. Nothing has run, so nothing needs compensating.
		switch to {
		case SagaStatusExecuting, SagaStatusPaused, SagaStatusCancelled, SagaStatusTimedOut:
			return true
		}
	case SagaStatusExecuting:
		switch to {
		case SagaStatusCompleted, SagaStatusCompensating, SagaStatusPaused,
			// Directly to an end state when nothing ran that needs undoing.
			SagaStatusCompensated, SagaStatusCancelled, SagaStatusTimedOut:
			return true
		}
	case SagaStatusCompensating:
		switch to {
		case SagaStatusCompensated, SagaStatusCancelled, SagaStatusTimedOut, SagaStatusFailed:
			return true
		}
	case SagaStatusPaused:
		switch to {
		case SagaStatusExecuting, SagaStatusCompensating, SagaStatusCancelled, SagaStatusTimedOut:
			return true
		}
	case SagaStatusFailed:
		// Only an operator's retry, which resumes compensation.
		return to == SagaStatusCompensating
	}
	return false
}

// StepStatus is the state of one step. The values are spelled exactly as the
// PostgreSQL enum step_status.
type StepStatus string

// The six step statuses of the specification.
const (
	StepStatusPending   StepStatus = "Pending"
	StepStatusExecuting StepStatus = "Executing"
	StepStatusCompleted StepStatus = "Completed"
	StepStatusFailed    StepStatus = "Failed"
	StepStatusSkipped   StepStatus = "Skipped"
	StepStatusRetrying  StepStatus = "Retrying"
)

// StepStatuses lists every step status in the order of the database enum.
var StepStatuses = []StepStatus{
	StepStatusPending, StepStatusExecuting, StepStatusCompleted,
	StepStatusFailed, StepStatusSkipped, StepStatusRetrying,
}

// Valid reports whether s is one of the six statuses.
func (s StepStatus) Valid() bool {
	switch s {
	case StepStatusPending, StepStatusExecuting, StepStatusCompleted,
		StepStatusFailed, StepStatusSkipped, StepStatusRetrying:
		return true
	}
	return false
}

// CompensationStatus is the state of one step's compensation. The values are
// spelled exactly as the PostgreSQL enum compensation_status.
type CompensationStatus string

// The compensation statuses.
const (
	CompensationStatusPending   CompensationStatus = "Pending"
	CompensationStatusExecuting CompensationStatus = "Executing"
	CompensationStatusCompleted CompensationStatus = "Completed"
	CompensationStatusFailed    CompensationStatus = "Failed"
	CompensationStatusRetrying  CompensationStatus = "Retrying"
)

// CompensationStatuses lists every compensation status in enum order.
var CompensationStatuses = []CompensationStatus{
	CompensationStatusPending, CompensationStatusExecuting, CompensationStatusCompleted,
	CompensationStatusFailed, CompensationStatusRetrying,
}

// Valid reports whether s is a compensation status.
func (s CompensationStatus) Valid() bool {
	switch s {
	case CompensationStatusPending, CompensationStatusExecuting, CompensationStatusCompleted,
		CompensationStatusFailed, CompensationStatusRetrying:
		return true
	}
	return false
}

// ControlAction is an operator's request on a saga. It is recorded on the
// saga row and carried out by the instance that holds (or next claims) the
// saga's lease, so that every state change goes through one fenced path.
type ControlAction string

// The operator actions.
const (
	ControlNone   ControlAction = ""
	ControlPause  ControlAction = "pause"
	ControlResume ControlAction = "resume"
	ControlCancel ControlAction = "cancel"
	ControlRetry  ControlAction = "retry"
)

// ControlActions lists the operator actions.
var ControlActions = []ControlAction{ControlPause, ControlResume, ControlCancel, ControlRetry}

// AllowedIn reports whether the action may be requested on a saga in status
// s. Stores check it atomically with recording the request; an action that
// is not allowed answers ErrInvalidTransition.
func (a ControlAction) AllowedIn(s SagaStatus) bool {
	switch a {
	case ControlPause:
		return s == SagaStatusCreated || s == SagaStatusExecuting
	case ControlResume:
		return s == SagaStatusPaused
	case ControlCancel:
		return s == SagaStatusCreated || s == SagaStatusExecuting || s == SagaStatusPaused
	case ControlRetry:
		return s == SagaStatusFailed
	}
	return false
}

// AllowedStatuses returns the statuses in which a may be requested.
func (a ControlAction) AllowedStatuses() []SagaStatus {
	var out []SagaStatus
	for _, s := range SagaStatuses {
		if a.AllowedIn(s) {
			out = append(out, s)
		}
	}
	return out
}
