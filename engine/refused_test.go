package engine_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/participant"
)

// rawInvoker answers the action of step 1 (of every step, with every) with
// output as it is, bypassing the participant client's repairs, and every
// other call with {}.
type rawInvoker struct {
	output json.RawMessage
	every  bool
}

func (i rawInvoker) Invoke(_ context.Context, c participant.Call) participant.Result {
	if c.Kind == participant.KindAction && (c.StepIndex == 1 || i.every) {
		return participant.Result{Outcome: participant.OutcomeSuccess, StatusCode: 200, Output: i.output}
	}
	return participant.Result{Outcome: participant.OutcomeSuccess, StatusCode: 200, Output: json.RawMessage(`{}`)}
}

// An answer the database will never keep (a NUL in JSON: SQLSTATE 22P05)
// is not retried forever: the step fails with an engine error naming why,
// and the saga compensates and ends.
func TestRefusedOutcomeFailsTheStep(t *testing.T) {
	t.Parallel()
	store := openPostgres(t)
	b := &bundle{store: store, stub: newStub(t)}
	b.coord = startCoordinator(t, store, "engine-a", func(c *engine.Config) {
		c.Invoker = rawInvoker{output: json.RawMessage(`{"s":"\u0000"}`)}
	})
	s := wait(t, b.coord, b.submit(t, b.definition("refused-output", "a", "b", "c")).ID)
	if s.Status != saga.SagaStatusCompensated {
		t.Fatalf("status %s (%s); want Compensated", s.Status, s.Error)
	}
	assertSteps(t, s, []saga.StepStatus{completed, failed, skipped}, []saga.CompensationStatus{cDone, cDone, ""})
	if st := s.Steps[1]; !strings.Contains(st.Error, "the store refused to keep the participant's answer") || !st.Uncertain {
		t.Errorf("step b: error %q, uncertain %v", st.Error, st.Uncertain)
	}
}
