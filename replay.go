package saga

import (
	"encoding/json"
	"fmt"
	"time"
)

// Replay rebuilds a saga from its audit trail alone (events in seq order,
// from its first): its identity and definition, status, progress, error,
// compensate_to, pending operator request, legal hold, deadline and
// times, and every step with its compensation (status, attempts, input, output, error,
// uncertainty, times). It reads nothing else, so a saga it rebuilds equal
// to the stored one (ReplayDiff) shows that the trail is complete. The
// lease, the next-run time and updated_at are not part of the trail.
//
// The trail must keep this contract, which the engine's events and the
// stores' completion of them (Chain.SealCreate, Chain.SealTransition) meet; every
// event of one write has that write's time, which is also the time the
// write gave the rows:
//
//	SagaCreated            first; data: definition (redacted,
//	                       Definition.Redacted), transaction_id, user_id,
//	                       idempotency_key, context (absent: the definition's)
//	SagaStarted            the saga is Executing
//	StepStarted            step_index; data: attempt. The step is Executing
//	                       with that many attempts, started at the event
//	                       (its first start)
//	StepCompleted          data: output. Completed, no error, at the event
//	StepRetrying           data: error, uncertain. Retrying
//	StepFailed             data: error, uncertain. Failed at the event
//	StepSkipped            Skipped
//	CallWithdrawn          data: kind (action or compensation). The step or
//	                       compensation returns to its state before its
//	                       last start (its start time stays)
//
// After each of these step events the step is uncertain as data's
// step_uncertain says when it has one, else as its uncertain (StepRetrying,
// StepFailed), else not; CallWithdrawn without step_uncertain keeps the
// uncertainty it restores.
//
//	CompensationStarted    data: attempt. Executing, started (first start)
//	CompensationCompleted  data: output. Completed at the event, no error
//	CompensationRetrying   data: error. Retrying
//	CompensationFailed     data: error. Failed at the event
//	SagaCompensating       data: compensate_to, error (the saga's)
//	SagaPaused, SagaResumed  Paused, Executing
//	SagaCompleted, SagaCompensated, SagaCancelled, SagaTimedOut, SagaFailed
//	                       the end status at the event; data: error (absent:
//	                       none); compensate_to is cleared
//	SagaRetried            data: compensate_to. Compensating; every
//	                       compensation not Completed is Pending with no
//	                       attempts
//	OperatorRequested      data: action; the actor asked. Pending request
//	OperatorRequestCarriedOut  the pending request is gone
//	LegalHoldChanged       data: legal_hold
//
// Other events (LeaseTaken, SagaRecovered, ControlIgnored,
// OperatorRequestSuperseded, …) change nothing. The saga has started at
// the first event after which it is no longer Created; completed_steps
// counts the Completed steps; the deadline is created_at + timeout_ms.
//
// An error names the first event Replay cannot apply.
func Replay(events []Event) (*Saga, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("replay: no events")
	}
	r := replayer{}
	for i := range events {
		if err := r.apply(&events[i]); err != nil {
			e := &events[i]
			return nil, fmt.Errorf("replay: event %d (%s): %w", e.Seq, e.Type, err)
		}
	}
	s := r.s
	s.CompletedSteps = 0
	for _, st := range s.Steps {
		if st.Status == StepStatusCompleted {
			s.CompletedSteps++
		}
	}
	return s, nil
}

// replayer holds the saga being rebuilt and what CallWithdrawn restores.
type replayer struct {
	s        *Saga
	beforeSt map[int]Step          // each step before its last start
	beforeC  map[int]*Compensation // each compensation before its last start (nil: none)
}

// eventData is every member of the data of the events Replay reads.
type eventData struct {
	Definition     *Definition     `json:"definition"`
	TransactionID  *ID             `json:"transaction_id"`
	UserID         *ID             `json:"user_id"`
	IdempotencyKey string          `json:"idempotency_key"`
	Context        json.RawMessage `json:"context"`
	Attempt        *int            `json:"attempt"`
	Output         json.RawMessage `json:"output"`
	Error          *string         `json:"error"`
	Uncertain      bool            `json:"uncertain"`
	StepUncertain  *bool           `json:"step_uncertain"`
	Kind           string          `json:"kind"`
	CompensateTo   SagaStatus      `json:"compensate_to"`
	Action         ControlAction   `json:"action"`
	LegalHold      bool            `json:"legal_hold"`
}

// stepUncertain returns the step's uncertainty after the event:
// step_uncertain when the event has it, else otherwise.
func (d *eventData) stepUncertain(otherwise bool) bool {
	if d.StepUncertain != nil {
		return *d.StepUncertain
	}
	return otherwise
}

func (r *replayer) apply(e *Event) error {
	var d eventData
	if len(e.Data) > 0 {
		if err := json.Unmarshal(e.Data, &d); err != nil {
			return fmt.Errorf("data: %w", err)
		}
	}
	if r.s == nil {
		if e.Type != EventSagaCreated {
			return fmt.Errorf("the trail does not start with %s", EventSagaCreated)
		}
		return r.created(e, &d)
	}
	s := r.s
	at := e.CreatedAt
	step := func() (*Step, error) {
		if e.StepIndex == nil || *e.StepIndex < 0 || *e.StepIndex >= len(s.Steps) {
			return nil, fmt.Errorf("step index %v out of range (%d steps)", e.StepIndex, len(s.Steps))
		}
		return &s.Steps[*e.StepIndex], nil
	}
	comp := func() (*Compensation, error) {
		st, err := step()
		if err != nil {
			return nil, err
		}
		if st.Compensation == nil {
			return nil, fmt.Errorf("step %d has no compensation started", st.Index)
		}
		return st.Compensation, nil
	}
	switch e.Type {
	case EventSagaCreated:
		return fmt.Errorf("a second %s", EventSagaCreated)
	case EventSagaStarted, EventSagaResumed:
		s.Status = SagaStatusExecuting
	case EventSagaPaused:
		s.Status = SagaStatusPaused
	case EventStepStarted:
		st, err := step()
		if err != nil {
			return err
		}
		if d.Attempt == nil {
			return fmt.Errorf("no attempt")
		}
		r.beforeSt[st.Index] = st.Clone()
		st.Status = StepStatusExecuting
		st.Attempts = *d.Attempt
		st.Uncertain = d.stepUncertain(false)
		if st.StartedAt == nil {
			st.StartedAt = new(at)
		}
	case EventStepCompleted:
		st, err := step()
		if err != nil {
			return err
		}
		if d.Output == nil {
			return fmt.Errorf("no output")
		}
		st.Status, st.Output, st.Error, st.Uncertain = StepStatusCompleted, cloneRaw(d.Output), "", d.stepUncertain(false)
		st.CompletedAt = new(at)
	case EventStepRetrying, EventStepFailed:
		st, err := step()
		if err != nil {
			return err
		}
		if d.Error == nil {
			return fmt.Errorf("no error")
		}
		st.Status, st.Error, st.Uncertain = StepStatusRetrying, *d.Error, d.stepUncertain(d.Uncertain)
		if e.Type == EventStepFailed {
			st.Status = StepStatusFailed
			st.CompletedAt = new(at)
		}
	case EventStepSkipped:
		st, err := step()
		if err != nil {
			return err
		}
		st.Status, st.Uncertain = StepStatusSkipped, d.stepUncertain(false)
	case EventCallWithdrawn:
		if err := r.withdrawn(e, d.Kind, step); err != nil {
			return err
		}
		if d.StepUncertain != nil {
			s.Steps[*e.StepIndex].Uncertain = *d.StepUncertain
		}
	case EventCompensationStarted:
		st, err := step()
		if err != nil {
			return err
		}
		if d.Attempt == nil {
			return fmt.Errorf("no attempt")
		}
		var before *Compensation
		if st.Compensation != nil {
			c := st.Compensation.Clone()
			before = &c
		} else {
			st.Compensation = &Compensation{StepIndex: st.Index}
		}
		r.beforeC[st.Index] = before
		c := st.Compensation
		c.Status = CompensationStatusExecuting
		if *d.Attempt <= c.AttemptsBeforeRetry {
			// A trail written before attempts counted across retries:
			// the retry started them over.
			c.AttemptsBeforeRetry = 0
		}
		c.Attempts = *d.Attempt
		if c.StartedAt == nil {
			c.StartedAt = new(at)
		}
	case EventCompensationCompleted:
		c, err := comp()
		if err != nil {
			return err
		}
		if d.Output == nil {
			return fmt.Errorf("no output")
		}
		c.Status, c.Output, c.Error = CompensationStatusCompleted, cloneRaw(d.Output), ""
		c.CompletedAt = new(at)
	case EventCompensationRetrying, EventCompensationFailed:
		c, err := comp()
		if err != nil {
			return err
		}
		if d.Error == nil {
			return fmt.Errorf("no error")
		}
		c.Status, c.Error = CompensationStatusRetrying, *d.Error
		if e.Type == EventCompensationFailed {
			c.Status = CompensationStatusFailed
			c.CompletedAt = new(at)
		}
	case EventSagaCompensating:
		if d.Error == nil || d.CompensateTo == "" {
			return fmt.Errorf("no error or compensate_to")
		}
		s.Status, s.CompensateTo, s.Error = SagaStatusCompensating, d.CompensateTo, *d.Error
	case EventSagaCompleted, EventSagaCompensated, EventSagaCancelled, EventSagaTimedOut, EventSagaFailed:
		s.Status = endStatusOf[e.Type]
		s.Error = ""
		if d.Error != nil {
			s.Error = *d.Error
		}
		s.CompensateTo = ""
		s.CompletedAt = new(at)
	case EventSagaRetried:
		if d.CompensateTo == "" {
			return fmt.Errorf("no compensate_to")
		}
		s.Status, s.CompensateTo = SagaStatusCompensating, d.CompensateTo
		for i := range s.Steps {
			if c := s.Steps[i].Compensation; c != nil && c.Status != CompensationStatusCompleted {
				c.Status, c.AttemptsBeforeRetry = CompensationStatusPending, c.Attempts
			}
		}
	case EventOperatorRequested:
		if d.Action == ControlNone {
			return fmt.Errorf("no action")
		}
		s.Control = d.Action
	case EventOperatorRequestCarriedOut:
		s.Control = ControlNone
	case EventLegalHoldChanged:
		s.LegalHold = d.LegalHold
	}
	if s.Status != SagaStatusCreated && s.StartedAt == nil {
		s.StartedAt = new(at)
	}
	s.EventSeq = e.Seq
	return nil
}

// endStatusOf maps the end events to their status.
var endStatusOf = map[EventType]SagaStatus{
	EventSagaCompleted:   SagaStatusCompleted,
	EventSagaCompensated: SagaStatusCompensated,
	EventSagaCancelled:   SagaStatusCancelled,
	EventSagaTimedOut:    SagaStatusTimedOut,
	EventSagaFailed:      SagaStatusFailed,
}

// created starts the saga from its SagaCreated event.
func (r *replayer) created(e *Event, d *eventData) error {
	if d.Definition == nil || d.TransactionID == nil {
		return fmt.Errorf("no definition or transaction_id")
	}
	def := *d.Definition
	s := &Saga{
		ID:             e.SagaID,
		Name:           def.Name,
		Status:         SagaStatusCreated,
		TransactionID:  *d.TransactionID,
		UserID:         d.UserID,
		Context:        cloneRaw(d.Context),
		Definition:     def,
		IdempotencyKey: d.IdempotencyKey,
		TotalSteps:     len(def.Steps),
		CreatedAt:      e.CreatedAt,
		EventSeq:       e.Seq,
		Steps:          make([]Step, len(def.Steps)),
	}
	if s.Context == nil {
		s.Context = cloneRaw(def.Context)
	}
	if len(s.Context) == 0 {
		s.Context = json.RawMessage(`{}`)
	}
	if t := def.Timeout(); t > 0 {
		s.Deadline = new(e.CreatedAt.Add(t))
	}
	for i, st := range def.Steps {
		s.Steps[i] = Step{Index: i, Name: st.Name, Status: StepStatusPending, Input: cloneRaw(st.Action.Body)}
	}
	r.s = s
	r.beforeSt = make(map[int]Step)
	r.beforeC = make(map[int]*Compensation)
	return nil
}

// withdrawn returns a step or compensation to its state before its last
// start; its start time stays, as it does in the row.
func (r *replayer) withdrawn(e *Event, kind string, step func() (*Step, error)) error {
	st, err := step()
	if err != nil {
		return err
	}
	switch kind {
	case "action":
		before, ok := r.beforeSt[st.Index]
		if !ok {
			return fmt.Errorf("no start of step %d to withdraw", st.Index)
		}
		started, comp := st.StartedAt, st.Compensation
		*st = before
		st.StartedAt, st.Compensation = started, comp
	case "compensation":
		before, ok := r.beforeC[st.Index]
		if !ok || st.Compensation == nil {
			return fmt.Errorf("no start of the compensation of step %d to withdraw", st.Index)
		}
		started := st.Compensation.StartedAt
		if before == nil {
			st.Compensation = &Compensation{StepIndex: st.Index, Status: CompensationStatusPending}
		} else {
			c := before.Clone()
			st.Compensation = &c
		}
		st.Compensation.StartedAt = started
	default:
		return fmt.Errorf("unknown kind %q", kind)
	}
	return nil
}

// ReplayDiff lists how a stored saga and the one Replay rebuilt from its
// trail differ, one line per field ("steps[1].status: stored Completed,
// rebuilt Failed"), or nil when they agree on everything Replay rebuilds.
// JSON values are compared by value, times to the microsecond.
func ReplayDiff(stored, rebuilt *Saga) []string {
	var out []string
	diff := func(field string, a, b any) {
		out = append(out, fmt.Sprintf("%s: stored %v, rebuilt %v", field, a, b))
	}
	eq := func(field string, a, b any) {
		if a != b {
			diff(field, a, b)
		}
	}
	eqJSON := func(field string, a, b []byte) {
		if !sameJSON(a, b) {
			diff(field, string(a), string(b))
		}
	}
	eqTime := func(field string, a, b *time.Time) {
		if (a == nil) != (b == nil) || a != nil && !a.Truncate(time.Microsecond).Equal(b.Truncate(time.Microsecond)) {
			diff(field, fmtTime(a), fmtTime(b))
		}
	}
	eq("id", stored.ID, rebuilt.ID)
	eq("name", stored.Name, rebuilt.Name)
	eq("status", stored.Status, rebuilt.Status)
	eq("transaction_id", stored.TransactionID, rebuilt.TransactionID)
	eq("user_id", fmtID(stored.UserID), fmtID(rebuilt.UserID))
	eqJSON("context", stored.Context, rebuilt.Context)
	// The trail holds the definition redacted (SagaCreated): no secret
	// header value or URL credential is in it to compare.
	sd, _ := json.Marshal(stored.Definition.Redacted())
	rd, _ := json.Marshal(rebuilt.Definition)
	eqJSON("definition", sd, rd)
	eq("idempotency_key", stored.IdempotencyKey, rebuilt.IdempotencyKey)
	eq("completed_steps", stored.CompletedSteps, rebuilt.CompletedSteps)
	eq("total_steps", stored.TotalSteps, rebuilt.TotalSteps)
	eq("error", stored.Error, rebuilt.Error)
	eq("compensate_to", stored.CompensateTo, rebuilt.CompensateTo)
	eq("control_request", stored.Control, rebuilt.Control)
	eq("legal_hold", stored.LegalHold, rebuilt.LegalHold)
	eq("event_seq", stored.EventSeq, rebuilt.EventSeq)
	eqTime("created_at", &stored.CreatedAt, &rebuilt.CreatedAt)
	eqTime("started_at", stored.StartedAt, rebuilt.StartedAt)
	eqTime("completed_at", stored.CompletedAt, rebuilt.CompletedAt)
	eqTime("deadline", stored.Deadline, rebuilt.Deadline)
	if len(stored.Steps) != len(rebuilt.Steps) {
		diff("steps", len(stored.Steps), len(rebuilt.Steps))
		return out
	}
	for i := range stored.Steps {
		a, b := &stored.Steps[i], &rebuilt.Steps[i]
		f := fmt.Sprintf("steps[%d].", i)
		eq(f+"index", a.Index, b.Index)
		eq(f+"name", a.Name, b.Name)
		eq(f+"status", a.Status, b.Status)
		eq(f+"attempts", a.Attempts, b.Attempts)
		eqJSON(f+"input", a.Input, b.Input)
		eqJSON(f+"output", a.Output, b.Output)
		eq(f+"error", a.Error, b.Error)
		eq(f+"uncertain", a.Uncertain, b.Uncertain)
		eqTime(f+"started_at", a.StartedAt, b.StartedAt)
		eqTime(f+"completed_at", a.CompletedAt, b.CompletedAt)
		ca, cb := a.Compensation, b.Compensation
		if (ca == nil) != (cb == nil) {
			diff(f+"compensation", compStatus(ca), compStatus(cb))
			continue
		}
		if ca == nil {
			continue
		}
		f += "compensation."
		eq(f+"status", ca.Status, cb.Status)
		eq(f+"attempts", ca.Attempts, cb.Attempts)
		eq(f+"attempts_before_retry", ca.AttemptsBeforeRetry, cb.AttemptsBeforeRetry)
		eqJSON(f+"output", ca.Output, cb.Output)
		eq(f+"error", ca.Error, cb.Error)
		eqTime(f+"started_at", ca.StartedAt, cb.StartedAt)
		eqTime(f+"completed_at", ca.CompletedAt, cb.CompletedAt)
	}
	return out
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "none"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func fmtID(id *ID) string {
	if id == nil {
		return "none"
	}
	return id.String()
}

func compStatus(c *Compensation) string {
	if c == nil {
		return "none"
	}
	return string(c.Status)
}
