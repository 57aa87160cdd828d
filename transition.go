package saga

import "time"

// DeadlineReached reports whether a saga with deadline has run out of time
// at now: the deadline is reached at the instant itself (now >= deadline).
// It is the one rule for deadlines; the engine's state machine, the memory
// store and the SQL of the PostgreSQL store (deadline <= now()) all follow
// it. A nil deadline is never reached.
func DeadlineReached(deadline *time.Time, now time.Time) bool {
	return deadline != nil && !now.Before(*deadline)
}

// ApplyTransition changes s as a store does when it writes t at its clock
// reading now: the saga row, the steps and compensations, the times, the
// next-run time and the lease. Events and checkpoints are the store's own
// rows and are not kept on s, except that EventSeq counts the events. It is
// the one definition of what a transition does to a saga: the memory store
// writes with it, and the engine's runner brings its copy of the stored
// saga up to date with it after each write (the PostgreSQL store does the
// same in SQL; the conformance suite checks that they agree).
//
// Raw JSON of t (outputs) is kept, not copied. s.Steps must hold every
// index t names.
func (s *Saga) ApplyTransition(t Transition, now time.Time) {
	if t.Status != "" {
		s.Status = t.Status
	}
	s.CompletedSteps = t.CompletedSteps
	s.Error = t.Error
	s.CompensateTo = t.CompensateTo
	if t.ClearControl != ControlNone && s.Control == t.ClearControl {
		s.Control = ControlNone
	}
	if t.Started && s.StartedAt == nil {
		s.StartedAt = timePtr(now)
	}
	if t.Ended {
		s.CompletedAt = timePtr(now)
	}
	switch t.Wake.Kind {
	case WakeNever:
		s.NextRunAt = nil
	case WakeAfter:
		s.NextRunAt = timePtr(now.Add(t.Wake.After))
	case WakeAt:
		s.NextRunAt = timePtr(t.Wake.At)
	}
	if s.Control != ControlNone {
		// A request the writer did not carry out is due now.
		s.NextRunAt = timePtr(now)
	}
	for _, u := range t.Steps {
		u.apply(&s.Steps[u.Index], now)
	}
	for _, u := range t.Compensations {
		st := &s.Steps[u.StepIndex]
		// A fresh row rather than a change in place: a caller may still
		// hold the previous one.
		c := Compensation{StepIndex: u.StepIndex}
		if st.Compensation != nil {
			c = *st.Compensation
		}
		u.apply(&c, now)
		st.Compensation = &c
	}
	s.EventSeq += int64(len(t.Events))
	if t.Release {
		s.OwnerID, s.LeaseExpiresAt = "", nil
	} else {
		s.LeaseExpiresAt = timePtr(now.Add(t.LeaseFor))
	}
	s.UpdatedAt = now
}

// apply writes u to its step row.
func (u StepUpdate) apply(st *Step, now time.Time) {
	if u.Status != "" {
		st.Status = u.Status
	}
	st.Attempts = u.Attempts
	if u.Output != nil {
		st.Output = u.Output
	}
	st.Error = u.Error
	st.Uncertain = u.Uncertain
	if u.Start && st.StartedAt == nil {
		st.StartedAt = timePtr(now)
	}
	if u.End {
		st.CompletedAt = timePtr(now)
	}
}

// apply writes u to its compensation row.
func (u CompensationUpdate) apply(c *Compensation, now time.Time) {
	if u.Status != "" {
		c.Status = u.Status
	}
	c.Attempts = u.Attempts
	c.AttemptsBeforeRetry = u.AttemptsBeforeRetry
	if u.Output != nil {
		c.Output = u.Output
	}
	c.Error = u.Error
	if u.Start && c.StartedAt == nil {
		c.StartedAt = timePtr(now)
	}
	if u.End {
		c.CompletedAt = timePtr(now)
	}
}

func timePtr(t time.Time) *time.Time { return &t }
