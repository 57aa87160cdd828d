package saga

import "time"

// Retention says how long sagas that ended are kept, by end status, before
// cleanup deletes them. Failed sagas are never deleted (they wait for an
// operator), and neither is a saga under legal hold (Saga.LegalHold). A
// zero field keeps that status for the Completed duration.
type Retention struct {
	Completed   time.Duration // CLEANUP_AFTER_HOURS
	Compensated time.Duration // CLEANUP_COMPENSATED_AFTER_HOURS
	Cancelled   time.Duration // CLEANUP_CANCELLED_AFTER_HOURS
	TimedOut    time.Duration // CLEANUP_TIMED_OUT_AFTER_HOURS
}

// UniformRetention keeps every deletable end status for age.
func UniformRetention(age time.Duration) Retention {
	return Retention{Completed: age, Compensated: age, Cancelled: age, TimedOut: age}
}

// RetainedStatuses are the end statuses cleanup deletes, in the order it
// deletes them.
var RetainedStatuses = []SagaStatus{SagaStatusCompleted, SagaStatusCompensated, SagaStatusCancelled, SagaStatusTimedOut}

// For returns how long sagas that ended in status are kept, and false for
// a status cleanup never deletes.
func (r Retention) For(status SagaStatus) (time.Duration, bool) {
	var d time.Duration
	switch status {
	case SagaStatusCompleted:
		return r.Completed, true
	case SagaStatusCompensated:
		d = r.Compensated
	case SagaStatusCancelled:
		d = r.Cancelled
	case SagaStatusTimedOut:
		d = r.TimedOut
	default:
		return 0, false
	}
	if d == 0 {
		d = r.Completed
	}
	return d, true
}

// Longest returns the longest of the durations.
func (r Retention) Longest() time.Duration {
	var longest time.Duration
	for _, st := range RetainedStatuses {
		d, _ := r.For(st)
		longest = max(longest, d)
	}
	return longest
}
