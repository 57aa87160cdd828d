package engine

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const testLease = 10 * time.Second

// mSaga builds a saga of n steps a, b, c, … (each with a compensation and
// 3 attempts) in status st; deps, when given, makes it a graph.
func mSaga(st saga.SagaStatus, n int, deps map[string][]string) *saga.Saga {
	def := saga.Definition{Name: "m"}
	for i := range n {
		name := string(rune('a' + i))
		sd := saga.StepDefinition{
			Name:         name,
			Action:       saga.Request{Method: "POST", URL: "http://p/" + name},
			Compensation: &saga.Request{Method: "POST", URL: "http://p/undo-" + name},
			Retry:        &saga.RetryPolicy{MaxAttempts: 3},
		}
		if deps != nil {
			sd.DependsOn = append([]string{}, deps[name]...)
		}
		def.Steps = append(def.Steps, sd)
	}
	s := &saga.Saga{ID: saga.NewID(), Name: "m", Status: st, Definition: def, TotalSteps: n,
		Context: json.RawMessage(`{}`), CreatedAt: t0, UpdatedAt: t0, LeaseEpoch: 1, OwnerID: "me"}
	if st != saga.SagaStatusCreated {
		s.StartedAt = &t0
	}
	for i, sd := range def.Steps {
		s.Steps = append(s.Steps, saga.Step{Index: i, Name: sd.Name, Status: saga.StepStatusPending})
	}
	return s
}

// step sets step i's status and attempts.
func setStep(s *saga.Saga, i int, st saga.StepStatus, attempts int) {
	s.Steps[i].Status, s.Steps[i].Attempts = st, attempts
	if st == saga.StepStatusCompleted {
		s.Steps[i].Output = json.RawMessage(fmt.Sprintf(`{"out":%q}`, s.Steps[i].Name))
		s.CompletedSteps++
	}
}

func setComp(s *saga.Saga, i int, st saga.CompensationStatus, attempts int) {
	s.Steps[i].Compensation = &saga.Compensation{StepIndex: i, Status: st, Attempts: attempts}
}

// callOf is the call of s's step i (kind) with attempt.
func callOf(s *saga.Saga, kind participant.Kind, i, attempt int) *call {
	return &call{
		Call:   participant.Call{SagaID: s.ID, StepIndex: i, StepName: s.Steps[i].Name, Kind: kind, Attempt: attempt},
		policy: s.Definition.Steps[i].Retry.WithDefaults(),
	}
}

func result(o participant.Outcome, uncertain bool) participant.Result {
	r := participant.Result{Outcome: o, Uncertain: uncertain}
	switch o {
	case participant.OutcomeSuccess:
		r.StatusCode, r.Output = 200, json.RawMessage(`{"ok":1}`)
	case participant.OutcomeTransient:
		r.StatusCode, r.Error = 503, "HTTP 503"
	case participant.OutcomePermanent:
		r.StatusCode, r.Error = 409, "HTTP 409"
	}
	return r
}

// mIn is the input of a test decision: nothing in flight unless added.
func mIn(s *saga.Saga, now time.Time) *input {
	return &input{s: s, plan: newPlan(&s.Definition), now: now, inFlight: map[callKey]*call{}, leaseFor: testLease}
}

// inFlightCall marks the call of step i in flight with its current
// attempt, and returns it.
func inFlightCall(in *input, kind participant.Kind, i int) *call {
	a, from := in.s.Steps[i].Attempts, 0
	if kind == participant.KindCompensation {
		a, from = in.s.Steps[i].Compensation.Attempts, in.s.Steps[i].Compensation.AttemptsBeforeRetry
	}
	c := callOf(in.s, kind, i, a)
	c.budgetFrom = from
	in.inFlight[c.key()] = c
	return c
}

// back records c's outcome (its call no longer in flight).
func back(in *input, c *call, r participant.Result, backoff time.Duration) {
	delete(in.inFlight, c.key())
	in.outcomes = append(in.outcomes, outcome{call: c, res: r, backoff: backoff})
}

// summary renders a decision for comparison.
type summary struct {
	Status  saga.SagaStatus
	Events  string
	Start   string // "action 0#1 action 1#1"
	Send    string
	Exit    bool
	Wake    saga.WakeKind
	Control saga.ControlAction
	Err     string
}

func summarize(d decision) summary {
	var evs, start, send []string
	for _, e := range d.t.Events {
		s := string(e.Type)
		if e.StepIndex != nil {
			s += fmt.Sprintf("@%d", *e.StepIndex)
		}
		evs = append(evs, s)
	}
	for _, c := range d.start {
		start = append(start, fmt.Sprintf("%s %d#%d", c.Kind, c.StepIndex, c.Attempt))
	}
	for _, c := range d.send {
		send = append(send, fmt.Sprintf("%s %d#%d", c.Kind, c.StepIndex, c.Attempt))
	}
	out := summary{Status: d.t.Status, Events: strings.Join(evs, " "), Start: strings.Join(start, " "),
		Send: strings.Join(send, " "), Exit: d.exit, Wake: d.t.Wake.Kind, Control: d.t.ClearControl}
	if d.err != nil {
		out.Err = d.err.Error()
	}
	return out
}

const (
	act  = participant.KindAction
	comp = participant.KindCompensation
	ok   = participant.OutcomeSuccess
	tr   = participant.OutcomeTransient
	perm = participant.OutcomePermanent
)

func TestDecide(t *testing.T) {
	t.Parallel()
	deadline := t0.Add(time.Minute)
	tests := []struct {
		name  string
		build func() *input
		want  summary
		check func(t *testing.T, in *input, d decision)
	}{
		{
			name:  "created starts the saga and its first step",
			build: func() *input { return mIn(mSaga(saga.SagaStatusCreated, 2, nil), t0) },
			want:  summary{Status: saga.SagaStatusExecuting, Events: "SagaStarted StepStarted@0", Start: "action 0#1"},
		},
		{
			name: "created with a pause pauses before anything runs",
			build: func() *input {
				s := mSaga(saga.SagaStatusCreated, 2, nil)
				s.Control = saga.ControlPause
				return mIn(s, t0)
			},
			want: summary{Status: saga.SagaStatusPaused, Events: "SagaPaused", Exit: true, Wake: saga.WakeNever, Control: saga.ControlPause},
		},
		{
			name: "created with a cancel ends Cancelled, nothing to undo",
			build: func() *input {
				s := mSaga(saga.SagaStatusCreated, 2, nil)
				s.Control = saga.ControlCancel
				return mIn(s, t0)
			},
			want: summary{Status: saga.SagaStatusCancelled, Events: "StepSkipped@0 StepSkipped@1 SagaCancelled", Exit: true, Wake: saga.WakeNever, Control: saga.ControlCancel},
		},
		{
			name: "created at its deadline exactly times out",
			build: func() *input {
				s := mSaga(saga.SagaStatusCreated, 1, nil)
				s.Deadline = &deadline
				return mIn(s, deadline)
			},
			want: summary{Status: saga.SagaStatusTimedOut, Events: "StepSkipped@0 SagaTimedOut", Exit: true, Wake: saga.WakeNever},
		},
		{
			name: "created a nanosecond before its deadline starts",
			build: func() *input {
				s := mSaga(saga.SagaStatusCreated, 1, nil)
				s.Deadline = &deadline
				return mIn(s, deadline.Add(-time.Nanosecond))
			},
			want: summary{Status: saga.SagaStatusExecuting, Events: "SagaStarted StepStarted@0", Start: "action 0#1"},
		},
		{
			name: "created while the instance stops is released at once",
			build: func() *input {
				in := mIn(mSaga(saga.SagaStatusCreated, 1, nil), t0)
				in.stopping = true
				return in
			},
			want: summary{Exit: true, Wake: saga.WakeAfter},
		},
		{
			name: "success records the step and starts the next in one write",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 0), result(ok, false), 0)
				return in
			},
			want: summary{Events: "StepCompleted@0 StepStarted@1", Start: "action 1#1"},
			check: func(t *testing.T, in *input, d decision) {
				if d.t.Checkpoint == nil || d.t.Checkpoint.StepIndex != 0 || d.t.CompletedSteps != 1 {
					t.Errorf("checkpoint %+v, completed %d", d.t.Checkpoint, d.t.CompletedSteps)
				}
			},
		},
		{
			name: "success of the last step completes the saga",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 1), result(ok, false), 0)
				return in
			},
			want: summary{Status: saga.SagaStatusCompleted, Events: "StepCompleted@1 SagaCompleted", Exit: true, Wake: saga.WakeNever},
		},
		{
			name: "a transient failure with attempts left waits for the retry in place",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 0), result(tr, true), 200*time.Millisecond)
				return in
			},
			want: summary{Events: "StepRetrying@0"},
			check: func(t *testing.T, in *input, d decision) {
				if !d.wakeAt.Equal(t0.Add(200 * time.Millisecond)) {
					t.Errorf("wake at %v; want the retry's due time", d.wakeAt)
				}
			},
		},
		{
			name: "a long backoff releases the saga until the retry is due",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 0), result(tr, true), time.Minute)
				return in
			},
			want: summary{Events: "StepRetrying@0", Exit: true, Wake: saga.WakeAfter},
			check: func(t *testing.T, in *input, d decision) {
				if d.t.Wake.After != time.Minute || d.signalAfter != time.Minute {
					t.Errorf("wake after %v, signal after %v", d.t.Wake.After, d.signalAfter)
				}
			},
		},
		{
			name: "a due retry starts the next attempt",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusRetrying, 1)
				in := mIn(s, t0)
				in.retryAt = map[callKey]time.Time{{act, 0}: t0}
				return in
			},
			want: summary{Events: "StepStarted@0", Start: "action 0#2"},
		},
		{
			name: "retries exhausted with an uncertain outcome compensate the failed step too",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusExecuting, 3)
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 1), result(tr, true), time.Second)
				return in
			},
			want: summary{Status: saga.SagaStatusCompensating, Events: "StepFailed@1 SagaCompensating CompensationStarted@1", Start: "compensation 1#1"},
		},
		{
			// Found by the simulator: the first attempt took effect and its
			// answer was lost; the next ones met a gateway's 429 until the
			// attempts ran out. The effect stays uncertain: it is undone.
			name: "an uncertain attempt keeps the step uncertain whatever the last failure",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusExecuting, 3)
				s.Steps[1].Uncertain = true // attempt 1 timed out
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 1), result(tr, false), time.Second)
				return in
			},
			want: summary{Status: saga.SagaStatusCompensating, Events: "StepFailed@1 SagaCompensating CompensationStarted@1", Start: "compensation 1#1"},
			check: func(t *testing.T, in *input, d decision) {
				if u := d.t.Steps[0]; u.Index != 1 || !u.Uncertain {
					t.Errorf("step update %+v, want step 1 uncertain", u)
				}
				if data := string(d.t.Events[0].Data); !strings.Contains(data, `"uncertain":true`) {
					t.Errorf("StepFailed data %s: want the step's uncertainty, which the trail's replay reads", data)
				}
			},
		},
		{
			// Found by the simulator: with a timer at a time that has come,
			// the runner decided again at once, and again, until the call
			// in flight was back.
			name: "a deadline passed with a call in flight waits for its outcome, no timer",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				s.Deadline = new(t0.Add(-time.Millisecond))
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				inFlightCall(in, act, 0)
				return in
			},
			want: summary{},
			check: func(t *testing.T, in *input, d decision) {
				if !d.wakeAt.IsZero() {
					t.Errorf("wake at %v, want none (the outcome wakes the runner)", d.wakeAt)
				}
			},
		},
		{
			name: "a due retry with no room left waits for the call in flight, no timer",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, map[string][]string{})
				s.Definition.MaxParallel = 1
				setStep(s, 0, saga.StepStatusExecuting, 1)
				setStep(s, 1, saga.StepStatusRetrying, 1)
				in := mIn(s, t0)
				in.retryAt = map[callKey]time.Time{{act, 1}: t0.Add(-time.Second)}
				inFlightCall(in, act, 0)
				return in
			},
			want: summary{},
			check: func(t *testing.T, in *input, d decision) {
				if !d.wakeAt.IsZero() {
					t.Errorf("wake at %v, want none (the outcome wakes the runner)", d.wakeAt)
				}
			},
		},
		{
			name: "a refusal compensates the completed steps only",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 3, nil)
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 1), result(perm, false), 0)
				return in
			},
			want: summary{Status: saga.SagaStatusCompensating, Events: "StepFailed@1 StepSkipped@2 SagaCompensating CompensationStarted@0", Start: "compensation 0#1"},
			check: func(t *testing.T, in *input, d decision) {
				if !strings.Contains(d.t.Error, `step "b" failed (refused)`) || d.t.CompensateTo != saga.SagaStatusCompensated {
					t.Errorf("error %q, compensate to %s", d.t.Error, d.t.CompensateTo)
				}
			},
		},
		{
			name: "an answer past the saga's output budget fails its step, uncertain",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusCompleted, 1)
				s.Steps[0].Output = json.RawMessage(`"` + strings.Repeat("x", saga.MaxSagaOutputBytes-5) + `"`)
				setStep(s, 1, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 1), result(ok, false), 0)
				return in
			},
			want: summary{Status: saga.SagaStatusCompensating, Events: "StepFailed@1 SagaCompensating CompensationStarted@1", Start: "compensation 1#1"},
			check: func(t *testing.T, in *input, d decision) {
				if !strings.Contains(d.t.Error, "budget") {
					t.Errorf("error %q does not name the budget", d.t.Error)
				}
			},
		},
		{
			name: "a transient failure at the deadline exactly is final: TimedOut",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				s.Deadline = &deadline
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, deadline)
				back(in, inFlightCall(in, act, 0), result(tr, false), time.Millisecond)
				return in
			},
			want: summary{Status: saga.SagaStatusTimedOut, Events: "StepFailed@0 StepSkipped@1 SagaTimedOut", Exit: true, Wake: saga.WakeNever},
		},
		{
			name: "past the deadline with a retry waiting: the step fails, compensation",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				s.Deadline = &deadline
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusRetrying, 1)
				return mIn(s, deadline.Add(time.Second))
			},
			want: summary{Status: saga.SagaStatusCompensating, Events: "StepFailed@1 SagaCompensating CompensationStarted@0", Start: "compensation 0#1"},
		},
		{
			name: "a pause while a call is in flight waits for it",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				s.Control = saga.ControlPause
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				inFlightCall(in, act, 0)
				return in
			},
			want: summary{},
		},
		{
			name: "a pause is carried out with the outcome of the call in flight",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				s.Control = saga.ControlPause
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 0), result(ok, false), 0)
				return in
			},
			want: summary{Status: saga.SagaStatusPaused, Events: "StepCompleted@0 SagaPaused", Exit: true, Wake: saga.WakeNever, Control: saga.ControlPause},
		},
		{
			name: "a call written as started is withdrawn when a pause came first",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				s.Control = saga.ControlPause
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				c := callOf(s, act, 0, 1)
				c.prevStep = saga.Step{Index: 0, Name: "a", Status: saga.StepStatusPending}
				in.unsent = []*call{c}
				return in
			},
			want: summary{Status: saga.SagaStatusPaused, Events: "CallWithdrawn@0 SagaPaused", Exit: true, Wake: saga.WakeNever, Control: saga.ControlPause},
			check: func(t *testing.T, in *input, d decision) {
				if len(d.t.Steps) != 1 || d.t.Steps[0].Status != saga.StepStatusPending || d.t.Steps[0].Attempts != 0 {
					t.Errorf("withdrawn step rows %+v; want step 0 back to Pending, 0 attempts", d.t.Steps)
				}
			},
		},
		{
			name: "a call written as started is sent when nothing came first",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				in.unsent = []*call{callOf(s, act, 0, 1)}
				return in
			},
			want: summary{Send: "action 0#1"},
		},
		{
			name: "a compensation written as started goes out despite a passed deadline",
			build: func() *input {
				s := mSaga(saga.SagaStatusCompensating, 1, nil)
				s.Deadline = &deadline
				s.CompensateTo = saga.SagaStatusCompensated
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setComp(s, 0, saga.CompensationStatusExecuting, 1)
				in := mIn(s, deadline.Add(time.Hour))
				in.unsent = []*call{callOf(s, comp, 0, 1)}
				return in
			},
			want: summary{Send: "compensation 0#1"},
		},
		{
			name: "a cancel with a retry waiting fails the step and compensates towards Cancelled",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 3, nil)
				s.Control = saga.ControlCancel
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusRetrying, 1)
				s.Steps[1].Uncertain = true
				return mIn(s, t0)
			},
			want: summary{Status: saga.SagaStatusCompensating, Events: "StepFailed@1 StepSkipped@2 SagaCompensating CompensationStarted@1", Start: "compensation 1#1", Control: saga.ControlCancel},
			check: func(t *testing.T, in *input, d decision) {
				if d.t.CompensateTo != saga.SagaStatusCancelled {
					t.Errorf("compensate to %s", d.t.CompensateTo)
				}
			},
		},
		{
			name: "a retry request while executing is ignored and cleared",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 1, nil)
				s.Control = saga.ControlRetry
				return mIn(s, t0)
			},
			want: summary{Events: "ControlIgnored StepStarted@0", Start: "action 0#1", Control: saga.ControlRetry},
		},
		{
			name: "resume restarts a paused saga at its next step",
			build: func() *input {
				s := mSaga(saga.SagaStatusPaused, 2, nil)
				s.Control = saga.ControlResume
				setStep(s, 0, saga.StepStatusCompleted, 1)
				return mIn(s, t0)
			},
			want: summary{Status: saga.SagaStatusExecuting, Events: "SagaResumed StepStarted@1", Start: "action 1#1", Control: saga.ControlResume},
		},
		{
			name: "cancel of a paused saga compensates",
			build: func() *input {
				s := mSaga(saga.SagaStatusPaused, 2, nil)
				s.Control = saga.ControlCancel
				setStep(s, 0, saga.StepStatusCompleted, 1)
				return mIn(s, t0)
			},
			want: summary{Status: saga.SagaStatusCompensating, Events: "StepSkipped@1 SagaCompensating CompensationStarted@0", Start: "compensation 0#1", Control: saga.ControlCancel},
		},
		{
			name: "a paused saga at its deadline exactly times out",
			build: func() *input {
				s := mSaga(saga.SagaStatusPaused, 2, nil)
				s.Deadline = &deadline
				return mIn(s, deadline)
			},
			want: summary{Status: saga.SagaStatusTimedOut, Events: "StepSkipped@0 StepSkipped@1 SagaTimedOut", Exit: true, Wake: saga.WakeNever},
		},
		{
			name: "a paused saga before its deadline stays parked until it",
			build: func() *input {
				s := mSaga(saga.SagaStatusPaused, 2, nil)
				s.Deadline = &deadline
				return mIn(s, deadline.Add(-time.Millisecond))
			},
			want: summary{Exit: true, Wake: saga.WakeAt},
		},
		{
			name: "a pause request on a paused saga is ignored",
			build: func() *input {
				s := mSaga(saga.SagaStatusPaused, 1, nil)
				s.Control = saga.ControlPause
				return mIn(s, t0)
			},
			want: summary{Events: "ControlIgnored", Exit: true, Wake: saga.WakeNever, Control: saga.ControlPause},
		},
		{
			name: "the last compensation done ends the saga as it was to end",
			build: func() *input {
				s := mSaga(saga.SagaStatusCompensating, 2, nil)
				s.CompensateTo = saga.SagaStatusCancelled
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusSkipped, 0)
				setComp(s, 0, saga.CompensationStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, comp, 0), result(ok, false), 0)
				return in
			},
			want: summary{Status: saga.SagaStatusCancelled, Events: "CompensationCompleted@0 SagaCancelled", Exit: true, Wake: saga.WakeNever},
		},
		{
			name: "a compensation answer past the saga's output budget is not kept; the compensation is done",
			build: func() *input {
				s := mSaga(saga.SagaStatusCompensating, 3, nil)
				s.CompensateTo = saga.SagaStatusCompensated
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusCompleted, 1)
				setStep(s, 2, saga.StepStatusFailed, 1)
				// The outputs held, step 0's and the compensation of step 1's,
				// leave less room than the answer takes.
				setComp(s, 1, saga.CompensationStatusCompleted, 1)
				s.Steps[1].Compensation.Output = json.RawMessage(`"` + strings.Repeat("x", saga.MaxSagaOutputBytes-len(s.Steps[0].Output)-len(s.Steps[1].Output)-8) + `"`)
				setComp(s, 0, saga.CompensationStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, comp, 0), result(ok, false), 0)
				return in
			},
			want: summary{Status: saga.SagaStatusCompensated, Events: "CompensationCompleted@0 SagaCompensated", Exit: true, Wake: saga.WakeNever},
			check: func(t *testing.T, in *input, d decision) {
				if n := len(d.t.Compensations); n != 1 || string(d.t.Compensations[0].Output) != "null" {
					t.Errorf("compensation updates %+v, want one with output null", d.t.Compensations)
				}
				if ev := string(d.t.Events[0].Data); !strings.Contains(ev, `"output_dropped_bytes":8`) {
					t.Errorf("event data %s does not say what was not kept", ev)
				}
			},
		},
		{
			name: "a compensation answer that fits the saga's output budget is kept",
			build: func() *input {
				s := mSaga(saga.SagaStatusCompensating, 2, nil)
				s.CompensateTo = saga.SagaStatusCompensated
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusFailed, 1)
				setComp(s, 0, saga.CompensationStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, comp, 0), result(ok, false), 0)
				return in
			},
			want: summary{Status: saga.SagaStatusCompensated, Events: "CompensationCompleted@0 SagaCompensated", Exit: true, Wake: saga.WakeNever},
			check: func(t *testing.T, in *input, d decision) {
				if n := len(d.t.Compensations); n != 1 || string(d.t.Compensations[0].Output) != `{"ok":1}` {
					t.Errorf("compensation updates %+v, want one with the answer", d.t.Compensations)
				}
			},
		},
		{
			name: "a refused compensation fails the saga for an operator",
			build: func() *input {
				s := mSaga(saga.SagaStatusCompensating, 2, nil)
				s.CompensateTo = saga.SagaStatusCompensated
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusFailed, 1)
				setComp(s, 0, saga.CompensationStatusExecuting, 1)
				in := mIn(s, t0)
				back(in, inFlightCall(in, comp, 0), result(perm, false), 0)
				return in
			},
			want: summary{Status: saga.SagaStatusFailed, Events: "CompensationFailed@0 SagaFailed", Exit: true, Wake: saga.WakeNever},
		},
		{
			name: "compensation retries exhausted fail the saga",
			build: func() *input {
				s := mSaga(saga.SagaStatusCompensating, 1, nil)
				s.CompensateTo = saga.SagaStatusCompensated
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setComp(s, 0, saga.CompensationStatusExecuting, saga.CompensationMaxAttempts)
				in := mIn(s, t0)
				back(in, inFlightCall(in, comp, 0), result(tr, true), time.Millisecond)
				return in
			},
			want: summary{Status: saga.SagaStatusFailed, Events: "CompensationFailed@0 SagaFailed", Exit: true, Wake: saga.WakeNever},
		},
		{
			name: "a cancel request while compensating is ignored",
			build: func() *input {
				s := mSaga(saga.SagaStatusCompensating, 1, nil)
				s.Control = saga.ControlCancel
				setStep(s, 0, saga.StepStatusCompleted, 1)
				return mIn(s, t0)
			},
			want: summary{Events: "ControlIgnored CompensationStarted@0", Start: "compensation 0#1", Control: saga.ControlCancel},
		},
		{
			name: "an operator's retry of a Failed saga runs the failed compensation again, its attempts counting on",
			build: func() *input {
				s := mSaga(saga.SagaStatusFailed, 2, nil)
				s.Control = saga.ControlRetry
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusFailed, 1)
				setComp(s, 0, saga.CompensationStatusFailed, 5)
				return mIn(s, t0)
			},
			want: summary{Status: saga.SagaStatusCompensating, Events: "SagaRetried CompensationStarted@0", Start: "compensation 0#6", Control: saga.ControlRetry},
		},
		{
			name: "after an operator's retry a compensation's budget counts from the retry",
			build: func() *input {
				s := mSaga(saga.SagaStatusCompensating, 1, nil)
				s.CompensateTo = saga.SagaStatusCompensated
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setComp(s, 0, saga.CompensationStatusExecuting, saga.CompensationMaxAttempts+1)
				s.Steps[0].Compensation.AttemptsBeforeRetry = saga.CompensationMaxAttempts
				in := mIn(s, t0)
				back(in, inFlightCall(in, comp, 0), result(tr, true), time.Millisecond)
				return in
			},
			want: summary{Events: "CompensationRetrying@0"},
		},
		{
			name: "a Failed saga without a retry stays parked",
			build: func() *input {
				return mIn(mSaga(saga.SagaStatusFailed, 1, nil), t0)
			},
			want: summary{Exit: true, Wake: saga.WakeNever},
		},
		{
			name: "a stopping instance lets the call in flight finish, then releases",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				in.stopping = true
				back(in, inFlightCall(in, act, 0), result(ok, false), 0)
				return in
			},
			want: summary{Events: "StepCompleted@0", Exit: true, Wake: saga.WakeAfter},
		},
		{
			name: "a claimed saga with a call in flight makes it again",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 2, nil)
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusExecuting, 2)
				in := mIn(s, t0)
				in.claimed = true
				in.checkpoint = &saga.Checkpoint{StepIndex: 0, CreatedAt: t0}
				return in
			},
			want: summary{Events: "LeaseTaken SagaRecovered@1 StepStarted@1", Start: "action 1#3"},
			check: func(t *testing.T, in *input, d decision) {
				if u := d.t.Steps[0]; u.Index != 1 || !u.Uncertain {
					t.Errorf("step update %+v, want step 1 uncertain: the lost call may have taken effect", u)
				}
				var data struct {
					Checkpoint struct {
						StepIndex int `json:"step_index"`
					} `json:"checkpoint"`
				}
				if err := json.Unmarshal(d.t.Events[1].Data, &data); err != nil || data.Checkpoint.StepIndex != 0 {
					t.Errorf("SagaRecovered data %s: want the checkpoint it started from", d.t.Events[1].Data)
				}
			},
		},
		{
			name: "an impossible transition is refused, nothing written",
			build: func() *input {
				s := mSaga(saga.SagaStatusCompensating, 1, nil)
				s.CompensateTo = saga.SagaStatusCompleted // not an end of compensation
				setStep(s, 0, saga.StepStatusFailed, 1)
				return mIn(s, t0)
			},
			want: summary{Err: "saga state machine: impossible transition Compensating → Completed"},
		},
		{
			name: "a graph starts its independent steps at once",
			build: func() *input {
				return mIn(mSaga(saga.SagaStatusCreated, 3, map[string][]string{"c": {"a", "b"}}), t0)
			},
			want: summary{Status: saga.SagaStatusExecuting, Events: "SagaStarted StepStarted@0 StepStarted@1", Start: "action 0#1 action 1#1"},
		},
		{
			name: "in a graph a step waits for all it depends on",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 3, map[string][]string{"c": {"a", "b"}})
				setStep(s, 0, saga.StepStatusExecuting, 1)
				setStep(s, 1, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				inFlightCall(in, act, 1)
				back(in, inFlightCall(in, act, 0), result(ok, false), 0)
				return in
			},
			want: summary{Events: "StepCompleted@0"},
		},
		{
			name: "in a graph a failure starts nothing and lets the call in flight finish",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 3, map[string][]string{"c": {"a", "b"}})
				setStep(s, 0, saga.StepStatusExecuting, 1)
				setStep(s, 1, saga.StepStatusExecuting, 1)
				in := mIn(s, t0)
				inFlightCall(in, act, 0)
				back(in, inFlightCall(in, act, 1), result(perm, false), 0)
				return in
			},
			want: summary{Events: "StepFailed@1"},
		},
		{
			name: "in a graph compensation begins once the last call in flight is back",
			build: func() *input {
				s := mSaga(saga.SagaStatusExecuting, 3, map[string][]string{"c": {"a", "b"}})
				setStep(s, 0, saga.StepStatusExecuting, 1)
				setStep(s, 1, saga.StepStatusFailed, 1)
				s.Error = `step "b" failed (refused): HTTP 409`
				in := mIn(s, t0)
				back(in, inFlightCall(in, act, 0), result(ok, false), 0)
				return in
			},
			want: summary{Status: saga.SagaStatusCompensating, Events: "StepCompleted@0 StepSkipped@2 SagaCompensating CompensationStarted@0", Start: "compensation 0#1"},
		},
		{
			name: "in a graph independent compensations run in parallel, dependents first",
			build: func() *input {
				// a → b, a → c: b and c are undone together, a after them.
				s := mSaga(saga.SagaStatusCompensating, 4, map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"b", "c"}})
				s.CompensateTo = saga.SagaStatusCompensated
				setStep(s, 0, saga.StepStatusCompleted, 1)
				setStep(s, 1, saga.StepStatusCompleted, 1)
				setStep(s, 2, saga.StepStatusCompleted, 1)
				setStep(s, 3, saga.StepStatusFailed, 1)
				return mIn(s, t0)
			},
			want: summary{Events: "CompensationStarted@2 CompensationStarted@1", Start: "compensation 2#1 compensation 1#1"},
		},
		{
			name: "max_parallel bounds the steps started",
			build: func() *input {
				s := mSaga(saga.SagaStatusCreated, 4, map[string][]string{})
				s.Definition.MaxParallel = 2
				return mIn(s, t0)
			},
			want: summary{Status: saga.SagaStatusExecuting, Events: "SagaStarted StepStarted@0 StepStarted@1", Start: "action 0#1 action 1#1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := tc.build()
			before := cloneSaga(in.s)
			d := decide(in)
			if got := summarize(d); got != tc.want {
				t.Errorf("decision\n got  %+v\n want %+v", got, tc.want)
			}
			if !reflect.DeepEqual(before, in.s) {
				t.Error("decide changed its input saga")
			}
			if d.err == nil {
				for _, e := range d.t.Events {
					if e.ID != (saga.ID{}) || e.InstanceID != "" {
						t.Errorf("the machine set an event's id or instance: %+v", e)
					}
				}
			}
			if tc.check != nil {
				tc.check(t, in, d)
			}
		})
	}
}

// Every status change decide makes is one saga.CanTransition allows.
func TestDecideTransitionsAreAllowed(t *testing.T) {
	t.Parallel()
	outcomes := []participant.Result{result(ok, false), result(tr, true), result(perm, false)}
	for _, from := range saga.SagaStatuses {
		for _, ctrl := range append([]saga.ControlAction{saga.ControlNone}, saga.ControlActions...) {
			for _, res := range outcomes {
				s := mSaga(from, 2, nil)
				s.Control = ctrl
				in := mIn(s, t0)
				if from == saga.SagaStatusExecuting {
					setStep(s, 0, saga.StepStatusExecuting, 1)
					back(in, inFlightCall(in, act, 0), res, time.Millisecond)
				}
				if from == saga.SagaStatusCompensating || from == saga.SagaStatusFailed {
					s.CompensateTo = saga.SagaStatusCompensated
					setStep(s, 0, saga.StepStatusCompleted, 1)
					setStep(s, 1, saga.StepStatusFailed, 1)
					setComp(s, 0, saga.CompensationStatusExecuting, 1)
					if from == saga.SagaStatusCompensating {
						back(in, inFlightCall(in, comp, 0), res, time.Millisecond)
					} else {
						setComp(s, 0, saga.CompensationStatusFailed, 5)
					}
				}
				d := decide(in)
				if d.err != nil {
					t.Errorf("%s + %q + %v: %v", from, ctrl, res.Outcome, d.err)
					continue
				}
				if to := d.t.Status; to != "" && to != from && !saga.CanTransition(from, to) {
					t.Errorf("%s + %q: decided %s → %s", from, ctrl, from, to)
				}
			}
		}
	}
}
