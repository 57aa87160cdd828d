package engine_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Found by the simulator (package sim): an operator request that arrives
// during a call makes the runner write a probe once the call is back, to
// learn of it. The probe wrote the fields every transition writes as
// zero: completed_steps 0, no error, no compensate_to.
func TestProbeKeepsTheSagaRow(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		held := make(chan struct{})
		release := newGate(t)
		b.stub.on("action", "b", func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				close(held)
			}
			select {
			case <-release.ch:
			case <-r.Context().Done():
				return
			}
			w.WriteHeader(http.StatusConflict)
		})
		s := b.submit(t, b.definition("probe", "a", "b"))
		select {
		case <-held:
		case <-time.After(20 * time.Second):
			t.Fatal("the call of step b never came")
		}
		if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlPause); err != nil {
			t.Fatalf("pause: %v", err)
		}
		release.open()
		end := wait(t, b.coord, s.ID)
		if end.Status != saga.SagaStatusCompensated || end.CompletedSteps != 1 || end.Error == "" {
			t.Errorf("saga ended %s with completed_steps %d and error %q, want Compensated, 1 (step a) and the refusal",
				end.Status, end.CompletedSteps, end.Error)
		}
	})
}
