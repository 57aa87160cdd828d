package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
)

const (
	sCreated      = string(saga.EventSagaCreated)
	sStarted      = string(saga.EventSagaStarted)
	sCompleted    = string(saga.EventSagaCompleted)
	sCompensating = string(saga.EventSagaCompensating)
	sCompensated  = string(saga.EventSagaCompensated)
	sFailed       = string(saga.EventSagaFailed)
	sLeaseTaken   = string(saga.EventLeaseTaken)
)

var (
	pending   = saga.StepStatusPending
	completed = saga.StepStatusCompleted
	failed    = saga.StepStatusFailed
	skipped   = saga.StepStatusSkipped
	cDone     = saga.CompensationStatusCompleted
	cFailed   = saga.CompensationStatusFailed
)

// Scenario 1: every step succeeds; outputs of earlier steps reach later
// ones; the headers are set.
func TestAllStepsSucceed(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "reserve", func(_ int, w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"reservation":"r-1"}`))
		})
		def := b.definition("order", "reserve", "charge", "ship")
		def.Steps[2].Compensation = nil // shipping is not undone
		s := b.submit(t, def)
		if s.Status != saga.SagaStatusExecuting {
			t.Errorf("submitted saga status = %s; want Executing (fast path)", s.Status)
		}
		s = wait(t, b.coord, s.ID)
		if s.Status != saga.SagaStatusCompleted || s.CompletedSteps != 3 || s.Error != "" {
			t.Fatalf("saga = %s, %d steps completed, error %q", s.Status, s.CompletedSteps, s.Error)
		}
		assertSteps(t, s, []saga.StepStatus{completed, completed, completed}, []saga.CompensationStatus{"", "", ""})
		if !jsonEqual(s.Steps[0].Output, `{"reservation":"r-1"}`) {
			t.Errorf("step 0 output = %s", s.Steps[0].Output)
		}
		for i, st := range s.Steps {
			if st.Attempts != 1 || st.StartedAt == nil || st.CompletedAt == nil {
				t.Errorf("step %d: attempts %d, started %v, completed %v", i, st.Attempts, st.StartedAt, st.CompletedAt)
			}
		}
		if s.CompletedAt == nil || s.OwnerID != "" || s.NextRunAt != nil {
			t.Errorf("ended saga: completed_at %v, owner %q, next run %v", s.CompletedAt, s.OwnerID, s.NextRunAt)
		}
		assertEqual(t, "calls", b.stub.sequence(), []string{"action reserve", "action charge", "action ship"})
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepCompleted, 1),
			ev(saga.EventStepStarted, 2), ev(saga.EventStepCompleted, 2),
			sCompleted,
		})

		calls := b.stub.received()
		for i, c := range calls {
			wantKey := s.ID.String() + ":" + strconv.Itoa(i) + ":action"
			if got := c.Header.Get("Idempotency-Key"); got != wantKey {
				t.Errorf("call %d Idempotency-Key = %q; want %q", i, got, wantKey)
			}
			if c.Header.Get("X-Saga-Id") != s.ID.String() || c.Header.Get("X-Transaction-Id") != s.TransactionID.String() ||
				c.Header.Get("X-Saga-Step") != strconv.Itoa(i) {
				t.Errorf("call %d headers = %v", i, c.Header)
			}
			if c.Body.StepIndex != i || c.Body.Attempt != 1 || string(c.Body.Context) != `{"order":"o-17"}` {
				t.Errorf("call %d body = %+v", i, c.Body)
			}
			if len(c.Body.Outputs) != i {
				t.Errorf("call %d carries %d outputs; want %d", i, len(c.Body.Outputs), i)
			}
		}
		if got := string(calls[2].Body.Outputs["reserve"]); got != `{"reservation":"r-1"}` {
			t.Errorf("step 2 saw reserve output %s", got)
		}
		if got := string(calls[2].Body.Outputs["charge"]); got != `{"done":"action charge"}` {
			t.Errorf("step 2 saw charge output %s", got)
		}
		if got := string(calls[1].Body.Input); got != `{"item":"charge"}` {
			t.Errorf("step 1 input = %s", got)
		}
	})
}

// Scenario 2: a permanent failure at step k compensates k-1..0 in reverse
// order; later steps are skipped.
func TestPermanentFailureCompensates(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "c", status(http.StatusBadRequest))
		s := wait(t, b.coord, b.submit(t, b.definition("refused", "a", "b", "c", "d")).ID)
		if s.Status != saga.SagaStatusCompensated {
			t.Fatalf("status = %s; want Compensated", s.Status)
		}
		if !strings.Contains(s.Error, `step "c"`) || !strings.Contains(s.Error, "400") {
			t.Errorf("error = %q", s.Error)
		}
		assertSteps(t, s, []saga.StepStatus{completed, completed, failed, skipped},
			[]saga.CompensationStatus{cDone, cDone, "", ""})
		if s.Steps[2].Uncertain || s.Steps[2].Attempts != 1 {
			t.Errorf("failed step: uncertain %v, attempts %d", s.Steps[2].Uncertain, s.Steps[2].Attempts)
		}
		assertEqual(t, "calls", b.stub.sequence(), []string{
			"action a", "action b", "action c", "compensation b", "compensation a",
		})
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepCompleted, 1),
			ev(saga.EventStepStarted, 2), ev(saga.EventStepFailed, 2),
			ev(saga.EventStepSkipped, 3), sCompensating,
			ev(saga.EventCompensationStarted, 1), ev(saga.EventCompensationCompleted, 1),
			ev(saga.EventCompensationStarted, 0), ev(saga.EventCompensationCompleted, 0),
			sCompensated,
		})
		for _, c := range b.stub.received() {
			if c.Kind == "compensation" {
				if want := s.ID.String() + ":" + strconv.Itoa(c.Body.StepIndex) + ":compensation"; c.Header.Get("Idempotency-Key") != want {
					t.Errorf("compensation Idempotency-Key = %q; want %q", c.Header.Get("Idempotency-Key"), want)
				}
				if _, ok := c.Body.Outputs[c.Step]; !ok {
					t.Errorf("compensation of %s lacks the step's own output: %v", c.Step, c.Body.Outputs)
				}
			}
		}
	})
}

// Scenario 3: transient failures are retried; the step shows 3 attempts.
func TestTransientFailuresRetried(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "b", failFirst(2, http.StatusServiceUnavailable))
		s := wait(t, b.coord, b.submit(t, b.definition("flaky", "a", "b")).ID)
		if s.Status != saga.SagaStatusCompleted {
			t.Fatalf("status = %s (%s); want Completed", s.Status, s.Error)
		}
		assertSteps(t, s, []saga.StepStatus{completed, completed}, []saga.CompensationStatus{"", ""})
		if s.Steps[1].Attempts != 3 {
			t.Errorf("step 1 attempts = %d; want 3", s.Steps[1].Attempts)
		}
		assertEqual(t, "calls", b.stub.sequence(), []string{"action a", "action b", "action b", "action b"})
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepRetrying, 1),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepRetrying, 1),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepCompleted, 1),
			sCompleted,
		})
		attempts := []int{}
		for _, c := range b.stub.received()[1:] {
			attempts = append(attempts, c.Attempt)
		}
		assertEqual(t, "attempt numbers", attempts, []int{1, 2, 3})
		evs, err := b.coord.Events(context.Background(), s.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Type != saga.EventStepRetrying {
				continue
			}
			var data struct {
				Attempt    int    `json:"attempt"`
				StatusCode int    `json:"status_code"`
				Error      string `json:"error"`
				BackoffMs  *int64 `json:"backoff_ms"`
			}
			if err := json.Unmarshal(e.Data, &data); err != nil {
				t.Fatalf("StepRetrying data %s: %v", e.Data, err)
			}
			if data.StatusCode != 503 || data.Error == "" || data.BackoffMs == nil || e.InstanceID != "engine-a" {
				t.Errorf("StepRetrying event = %s by %q", e.Data, e.InstanceID)
			}
		}
	})
}

// Scenario 4: exhausted retries fail the step; its effect is uncertain, so
// it is compensated too.
func TestRetriesExhaustedCompensatesFailedStep(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "b", status(http.StatusBadGateway))
		def := b.definition("exhausted", "a", "b", "c")
		def.Steps[1].Retry = quick(2)
		s := wait(t, b.coord, b.submit(t, def).ID)
		if s.Status != saga.SagaStatusCompensated {
			t.Fatalf("status = %s; want Compensated", s.Status)
		}
		assertSteps(t, s, []saga.StepStatus{completed, failed, skipped}, []saga.CompensationStatus{cDone, cDone, ""})
		if !s.Steps[1].Uncertain || s.Steps[1].Attempts != 2 {
			t.Errorf("failed step: uncertain %v, attempts %d", s.Steps[1].Uncertain, s.Steps[1].Attempts)
		}
		assertEqual(t, "calls", b.stub.sequence(), []string{
			"action a", "action b", "action b", "compensation b", "compensation a",
		})
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepRetrying, 1),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepFailed, 1),
			ev(saga.EventStepSkipped, 2), sCompensating,
			ev(saga.EventCompensationStarted, 1), ev(saga.EventCompensationCompleted, 1),
			ev(saga.EventCompensationStarted, 0), ev(saga.EventCompensationCompleted, 0),
			sCompensated,
		})
	})
}

// Scenario 5: a compensation failing transiently is retried.
func TestCompensationRetried(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "b", status(http.StatusConflict))
		b.stub.on("compensation", "a", failFirst(1, http.StatusServiceUnavailable))
		s := wait(t, b.coord, b.submit(t, b.definition("undo-flaky", "a", "b")).ID)
		if s.Status != saga.SagaStatusCompensated {
			t.Fatalf("status = %s; want Compensated", s.Status)
		}
		assertSteps(t, s, []saga.StepStatus{completed, failed}, []saga.CompensationStatus{cDone, ""})
		if c := s.Steps[0].Compensation; c.Attempts != 2 || c.StartedAt == nil || c.CompletedAt == nil {
			t.Errorf("compensation = %+v", c)
		}
		assertEqual(t, "calls", b.stub.sequence(), []string{
			"action a", "action b", "compensation a", "compensation a",
		})
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepFailed, 1),
			sCompensating,
			ev(saga.EventCompensationStarted, 0), ev(saga.EventCompensationRetrying, 0),
			ev(saga.EventCompensationStarted, 0), ev(saga.EventCompensationCompleted, 0),
			sCompensated,
		})
	})
}

// Scenario 6: exhausted compensation fails the saga; an operator's retry
// finishes it.
func TestCompensationExhaustedThenRetried(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "b", status(http.StatusBadRequest))
		b.stub.on("compensation", "a", status(http.StatusInternalServerError))
		s := wait(t, b.coord, b.submit(t, b.definition("stuck", "a", "b")).ID)
		if s.Status != saga.SagaStatusFailed {
			t.Fatalf("status = %s; want Failed", s.Status)
		}
		assertSteps(t, s, []saga.StepStatus{completed, failed}, []saga.CompensationStatus{cFailed, ""})
		if got := s.Steps[0].Compensation.Attempts; got != saga.CompensationMaxAttempts {
			t.Errorf("compensation attempts = %d; want %d", got, saga.CompensationMaxAttempts)
		}
		cause, then, _ := strings.Cut(s.Error, "; then ")
		if !strings.HasPrefix(cause, `step "b" failed (refused)`) || !strings.HasPrefix(then, `compensation of step "a" failed`) {
			t.Errorf("error = %q; want the refused step, then the failed compensation", s.Error)
		}
		want := []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepFailed, 1),
			sCompensating,
		}
		for range saga.CompensationMaxAttempts - 1 {
			want = append(want, ev(saga.EventCompensationStarted, 0), ev(saga.EventCompensationRetrying, 0))
		}
		want = append(want, ev(saga.EventCompensationStarted, 0), ev(saga.EventCompensationFailed, 0), sFailed)
		assertEqual(t, "events before the retry", eventTypes(t, b.coord, s.ID), want)

		b.stub.on("compensation", "a", status(http.StatusOK))
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlPause); !errors.Is(err, saga.ErrInvalidTransition) {
			t.Errorf("pause of a Failed saga: %v; want ErrInvalidTransition", err)
		}
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlRetry); err != nil {
			t.Fatalf("retry: %v", err)
		}
		s = waitStatus(t, b.coord, s.ID, saga.SagaStatusCompensated)
		assertSteps(t, s, []saga.StepStatus{completed, failed}, []saga.CompensationStatus{cDone, ""})
		// Attempts count across the retry; the retry's budget counts from it.
		if c := s.Steps[0].Compensation; c.Attempts != saga.CompensationMaxAttempts+1 || c.AttemptsBeforeRetry != saga.CompensationMaxAttempts {
			t.Errorf("compensation attempts after the retry = %d (%d before it); want %d (%d)",
				c.Attempts, c.AttemptsBeforeRetry, saga.CompensationMaxAttempts+1, saga.CompensationMaxAttempts)
		}
		if s.Error != cause {
			t.Errorf("error after the retry = %q; want the original cause %q alone", s.Error, cause)
		}
		if s.Control != saga.ControlNone {
			t.Errorf("control = %q after it was carried out", s.Control)
		}
		want = append(want, sLeaseTaken, string(saga.EventSagaRetried),
			ev(saga.EventCompensationStarted, 0), ev(saga.EventCompensationCompleted, 0), sCompensated)
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), want)
		if n := b.stub.count("compensation", "a"); n != saga.CompensationMaxAttempts+1 {
			t.Errorf("compensation a called %d times; want %d", n, saga.CompensationMaxAttempts+1)
		}
	})
}

// Each operator retry grants a compensation a fresh budget counted from the
// attempts made before it, while Attempts counts every attempt: an
// exhausted retry fails again after the budget, not at its first failure.
func TestCompensationRetryBudgetCountsFromTheRetry(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "b", status(http.StatusBadRequest))
		b.stub.on("compensation", "a", status(http.StatusInternalServerError))
		s := wait(t, b.coord, b.submit(t, b.definition("stuck-twice", "a", "b")).ID)
		if s.Status != saga.SagaStatusFailed {
			t.Fatalf("status = %s; want Failed", s.Status)
		}
		check := func(when string, s *saga.Saga, attempts, before int) {
			t.Helper()
			if c := s.Steps[0].Compensation; c.Attempts != attempts || c.AttemptsBeforeRetry != before {
				t.Errorf("%s: compensation attempts %d (%d before the retry); want %d (%d)", when, c.Attempts, c.AttemptsBeforeRetry, attempts, before)
			}
			if n := b.stub.count("compensation", "a"); n != attempts {
				t.Errorf("%s: compensation a called %d times; want %d", when, n, attempts)
			}
		}
		const budget = saga.CompensationMaxAttempts
		check("before a retry", s, budget, 0)
		firstError := s.Error

		// Retried while the participant still fails: a whole budget more.
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlRetry); err != nil {
			t.Fatalf("retry: %v", err)
		}
		eventually(t, "the retry carried out", func() bool {
			s, err := b.coord.Get(context.Background(), s.ID)
			return err == nil && s.Steps[0].Compensation.AttemptsBeforeRetry == budget
		})
		s = wait(t, b.coord, s.ID)
		if s.Status != saga.SagaStatusFailed {
			t.Fatalf("status after the first retry = %s; want Failed", s.Status)
		}
		check("after the first retry", s, 2*budget, budget)
		if s.Error != firstError {
			t.Errorf("error after the first retry = %q; want %q", s.Error, firstError)
		}

		b.stub.on("compensation", "a", status(http.StatusOK))
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlRetry); err != nil {
			t.Fatalf("retry: %v", err)
		}
		s = waitStatus(t, b.coord, s.ID, saga.SagaStatusCompensated)
		check("after the second retry", s, 2*budget+1, 2*budget)
		if cause, _, _ := strings.Cut(firstError, "; then "); s.Error != cause {
			t.Errorf("error after the second retry = %q; want the original cause %q", s.Error, cause)
		}
	})
}

// Scenario 7: the saga deadline cuts a slow call short; what was done is
// compensated (the cut step too: its effect is uncertain) and the saga
// ends TimedOut.
func TestDeadlineTimesOut(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "b", hang)
		def := b.definition("slow", "a", "b", "c")
		def.TimeoutMs = 400
		s := b.submit(t, def)
		if s.Deadline == nil {
			t.Fatal("saga has no deadline")
		}
		s = wait(t, b.coord, s.ID)
		if s.Status != saga.SagaStatusTimedOut {
			t.Fatalf("status = %s; want TimedOut", s.Status)
		}
		assertSteps(t, s, []saga.StepStatus{completed, failed, skipped}, []saga.CompensationStatus{cDone, cDone, ""})
		if !s.Steps[1].Uncertain {
			t.Error("the step cut short is not uncertain")
		}
		if s.CompletedAt.Before(*s.Deadline) {
			t.Errorf("ended at %v, before the deadline %v", s.CompletedAt, s.Deadline)
		}
		assertEqual(t, "calls", b.stub.sequence(), []string{
			"action a", "action b", "compensation b", "compensation a",
		})
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepFailed, 1),
			ev(saga.EventStepSkipped, 2), sCompensating,
			ev(saga.EventCompensationStarted, 1), ev(saga.EventCompensationCompleted, 1),
			ev(saga.EventCompensationStarted, 0), ev(saga.EventCompensationCompleted, 0),
			string(saga.EventSagaTimedOut),
		})
	})
}

// Scenario 8: pause takes effect between steps; resume finishes the saga.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		g := newGate(t)
		b.stub.on("action", "a", g.handler())
		s := b.submit(t, b.definition("pausable", "a", "b"))
		eventually(t, "the call of step a", func() bool { return b.stub.count("action", "a") == 1 })
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlPause); err != nil {
			t.Fatalf("pause: %v", err)
		}
		g.open()
		s = waitStatus(t, b.coord, s.ID, saga.SagaStatusPaused)
		assertSteps(t, s, []saga.StepStatus{completed, pending}, []saga.CompensationStatus{"", ""})
		if s.OwnerID != "" || s.NextRunAt != nil || s.Control != saga.ControlNone {
			t.Errorf("paused saga: owner %q, next run %v, control %q", s.OwnerID, s.NextRunAt, s.Control)
		}
		assertEqual(t, "calls while paused", b.stub.sequence(), []string{"action a"})
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlPause); !errors.Is(err, saga.ErrInvalidTransition) {
			t.Errorf("pause of a Paused saga: %v; want ErrInvalidTransition", err)
		}

		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlResume); err != nil {
			t.Fatalf("resume: %v", err)
		}
		s = wait(t, b.coord, s.ID)
		if s.Status != saga.SagaStatusCompleted {
			t.Fatalf("status = %s; want Completed", s.Status)
		}
		assertSteps(t, s, []saga.StepStatus{completed, completed}, []saga.CompensationStatus{"", ""})
		assertEqual(t, "calls", b.stub.sequence(), []string{"action a", "action b"})
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			string(saga.EventSagaPaused),
			sLeaseTaken, string(saga.EventSagaResumed),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepCompleted, 1),
			sCompleted,
		})
	})
}

// Scenario 9: cancel during a step compensates what was done and ends
// Cancelled.
func TestCancelMidSaga(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		g := newGate(t)
		b.stub.on("action", "b", g.handler())
		s := b.submit(t, b.definition("cancelled", "a", "b", "c"))
		eventually(t, "the call of step b", func() bool { return b.stub.count("action", "b") == 1 })
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlCancel); err != nil {
			t.Fatalf("cancel: %v", err)
		}
		g.open()
		s = wait(t, b.coord, s.ID)
		if s.Status != saga.SagaStatusCancelled {
			t.Fatalf("status = %s; want Cancelled", s.Status)
		}
		assertSteps(t, s, []saga.StepStatus{completed, completed, skipped}, []saga.CompensationStatus{cDone, cDone, ""})
		assertEqual(t, "calls", b.stub.sequence(), []string{
			"action a", "action b", "compensation b", "compensation a",
		})
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepCompleted, 1),
			ev(saga.EventStepSkipped, 2), sCompensating,
			ev(saga.EventCompensationStarted, 1), ev(saga.EventCompensationCompleted, 1),
			ev(saga.EventCompensationStarted, 0), ev(saga.EventCompensationCompleted, 0),
			string(saga.EventSagaCancelled),
		})
	})
}

// Scenario 10: a participant that hangs past the call timeout is a
// transient failure: retried, then the saga goes on.
func TestHangingParticipantRetried(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		b.stub.on("action", "a", func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				hang(n, w, r)
				return
			}
			_, _ = w.Write([]byte(`{"second":true}`))
		})
		def := b.definition("hangs", "a", "b")
		def.Steps[0].Action.TimeoutMs = 150
		s := wait(t, b.coord, b.submit(t, def).ID)
		if s.Status != saga.SagaStatusCompleted {
			t.Fatalf("status = %s (%s); want Completed", s.Status, s.Error)
		}
		if s.Steps[0].Attempts != 2 || !jsonEqual(s.Steps[0].Output, `{"second":true}`) {
			t.Errorf("step 0: attempts %d, output %s", s.Steps[0].Attempts, s.Steps[0].Output)
		}
		assertEqual(t, "calls", b.stub.sequence(), []string{"action a", "action a", "action b"})
		assertEqual(t, "events", eventTypes(t, b.coord, s.ID), []string{
			sCreated, sStarted,
			ev(saga.EventStepStarted, 0), ev(saga.EventStepRetrying, 0),
			ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
			ev(saga.EventStepStarted, 1), ev(saga.EventStepCompleted, 1),
			sCompleted,
		})
		evs, err := b.coord.Events(context.Background(), s.ID, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Type == saga.EventStepRetrying && !strings.Contains(string(e.Data), "timeout") {
				t.Errorf("StepRetrying data %s does not name the timeout", e.Data)
			}
		}
	})
}

// Scenario 11: a repeated submit with the same idempotency key returns the
// first saga and runs nothing more.
func TestIdempotentSubmit(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		def := b.definition("once", "a", "b")
		def.IdempotencyKey = "order-17"
		first := b.submit(t, def)
		again, existed, err := b.coord.Submit(context.Background(), def)
		if err != nil || !existed || again.ID != first.ID {
			t.Fatalf("second submit = %v, existed %v, %v; want saga %s", again, existed, err, first.ID)
		}
		wait(t, b.coord, first.ID)
		again, existed, err = b.coord.Submit(context.Background(), def)
		if err != nil || !existed || again.ID != first.ID || again.Status != saga.SagaStatusCompleted {
			t.Fatalf("third submit = %+v, existed %v, %v", again, existed, err)
		}
		assertEqual(t, "calls", b.stub.sequence(), []string{"action a", "action b"})
		page, err := b.coord.List(context.Background(), saga.Filter{})
		if err != nil || len(page.Sagas) != 1 {
			t.Fatalf("list = %d sagas, %v; want 1", len(page.Sagas), err)
		}
	})
}

// Scenario 12: Stop lets running sagas go after their call; a second
// coordinator on the same store finishes them.
func TestStopReleasesAndAnotherInstanceFinishes(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		store := kind.open(t)
		st := newStub(t)
		b := &bundle{store: store, stub: st}
		cfg := testConfig(t, "engine-a")
		a, err := engine.New(store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		b.coord = a
		g := newGate(t)
		st.on("action", "a", g.handler())
		var ids []saga.ID
		for range 3 {
			ids = append(ids, b.submit(t, b.definition("handover", "a", "b")).ID)
		}
		eventually(t, "three calls in flight", func() bool { return st.count("action", "a") == 3 })

		stopped := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			stopped <- a.Stop(ctx)
		}()
		eventually(t, "the coordinator stopping", a.Stopping)
		g.open()
		if err := <-stopped; err != nil {
			t.Fatalf("stop: %v", err)
		}
		for _, id := range ids {
			s, err := a.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if s.Status != saga.SagaStatusExecuting || s.OwnerID != "" || s.NextRunAt == nil {
				t.Errorf("released saga: status %s, owner %q, next run %v", s.Status, s.OwnerID, s.NextRunAt)
			}
			assertSteps(t, s, []saga.StepStatus{completed, pending}, []saga.CompensationStatus{"", ""})
		}
		assertEqual(t, "calls before the handover", st.sequence(), []string{"action a", "action a", "action a"})

		second := startCoordinator(t, store, "engine-b", nil)
		for _, id := range ids {
			s := wait(t, second, id)
			if s.Status != saga.SagaStatusCompleted {
				t.Errorf("saga %s: %s; want Completed", id, s.Status)
			}
			assertEqual(t, "events", eventTypes(t, second, id), []string{
				sCreated, sStarted,
				ev(saga.EventStepStarted, 0), ev(saga.EventStepCompleted, 0),
				sLeaseTaken, ev(saga.EventStepStarted, 1), ev(saga.EventStepCompleted, 1),
				sCompleted,
			})
			evs, err := second.Events(context.Background(), id, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			if last := evs[len(evs)-1]; last.InstanceID != "engine-b" {
				t.Errorf("the saga was finished by %q; want engine-b", last.InstanceID)
			}
		}
		if n := st.count("action", "a"); n != 3 {
			t.Errorf("step a called %d times; want 3 (once per saga)", n)
		}
		if n := st.count("action", "b"); n != 3 {
			t.Errorf("step b called %d times; want 3", n)
		}
	})
}

// Scenario 13: bad definitions are refused with the field named, and hosts
// outside AllowedHosts are forbidden; nothing is stored.
func TestSubmitRefusesBadInput(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, func(cfg *engine.Config) { cfg.AllowedHosts = []string{"inventory.lab", "*.payments.lab"} })
		good := func() saga.Definition {
			return saga.Definition{Name: "hosts", Steps: []saga.StepDefinition{
				{Name: "reserve", Action: saga.Request{Method: "POST", URL: "http://inventory.lab/reserve"}},
				{Name: "charge", Action: saga.Request{Method: "POST", URL: "https://eu.payments.lab:8443/charge"},
					Compensation: &saga.Request{Method: "POST", URL: "https://eu.payments.lab/refund"}},
			}}
		}
		tests := []struct {
			name  string
			edit  func(*saga.Definition)
			code  saga.ErrorCode
			field string
		}{
			{"relative url", func(d *saga.Definition) { d.Steps[1].Action.URL = "/charge" }, saga.ECodeInvalid, "steps[1].action.url"},
			{"no name", func(d *saga.Definition) { d.Name = "" }, saga.ECodeInvalid, "name"},
			{"bad method", func(d *saga.Definition) { d.Steps[0].Action.Method = "TRACE" }, saga.ECodeInvalid, "steps[0].action.method"},
			{"host not allowed", func(d *saga.Definition) { d.Steps[1].Action.URL = "http://evil.example/charge" }, saga.ECodeForbidden, "steps[1].action.url"},
			{"compensation host not allowed", func(d *saga.Definition) { d.Steps[1].Compensation.URL = "http://payments.lab.evil/refund" }, saga.ECodeForbidden, "steps[1].compensation.url"},
			{"stub host not allowed", func(d *saga.Definition) { d.Steps[0].Action.URL = b.stub.url("action", "reserve") }, saga.ECodeForbidden, "steps[0].action.url"},
		}
		for _, tt := range tests {
			def := good()
			tt.edit(&def)
			_, _, err := b.coord.Submit(context.Background(), def)
			if saga.ErrorCodeOf(err) != tt.code {
				t.Errorf("%s: error %v has code %q; want %q", tt.name, err, saga.ErrorCodeOf(err), tt.code)
				continue
			}
			var ve *saga.ValidationError
			var se *saga.Error
			switch {
			case errors.As(err, &ve):
				if ve.Problems[0].Field != tt.field {
					t.Errorf("%s: field %q; want %q", tt.name, ve.Problems[0].Field, tt.field)
				}
			case errors.As(err, &se):
				if se.Field != tt.field {
					t.Errorf("%s: field %q; want %q", tt.name, se.Field, tt.field)
				}
			default:
				t.Errorf("%s: error %T %v", tt.name, err, err)
			}
		}
		page, err := b.coord.List(context.Background(), saga.Filter{})
		if err != nil || len(page.Sagas) != 0 {
			t.Errorf("list = %d sagas, %v; want none", len(page.Sagas), err)
		}
		if len(b.stub.sequence()) != 0 {
			t.Errorf("participant called: %v", b.stub.sequence())
		}
	})
}
