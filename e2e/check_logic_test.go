package e2e

import (
	"cmp"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
)

// trail builds a saga detail from compact event specs: "Type", "Type[i]"
// or "Type[i]#attempt", each optionally "@instance".
func trail(status saga.SagaStatus, specs ...string) detail {
	const id = "0190f1c2-7a3b-7c4d-8e5f-0123456789ab"
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s := &httpapi.SagaJSON{ID: id, Status: status}
	attempts := make([]int, len(stepNames))
	var evs []httpapi.EventJSON
	for i, spec := range specs {
		spec, instance, _ := strings.Cut(spec, "@")
		e := httpapi.EventJSON{SagaID: id, Seq: int64(i + 1), InstanceID: cmp.Or(instance, "i-1"), CreatedAt: start.Add(time.Duration(i) * time.Millisecond)}
		typ, rest, hasStep := strings.Cut(spec, "[")
		e.Type = saga.EventType(typ)
		if hasStep {
			var step, attempt int
			stepText, attemptText, hasAttempt := strings.Cut(rest, "]#")
			fmt.Sscan(strings.TrimSuffix(stepText, "]"), &step)
			e.StepIndex = &step
			if hasAttempt {
				fmt.Sscan(attemptText, &attempt)
				e.Data = json.RawMessage(fmt.Sprintf(`{"attempt": %d}`, attempt))
				if e.Type == saga.EventStepStarted {
					attempts[step] = attempt
				}
			}
		}
		evs = append(evs, e)
	}
	for k, name := range stepNames {
		st := httpapi.StepJSON{Name: name, Index: k, Status: saga.StepStatusCompleted, Attempts: attempts[k]}
		if status == saga.SagaStatusCompensated {
			if k == len(stepNames)-1 {
				st.Status = saga.StepStatusFailed
			} else {
				st.Compensation = &httpapi.CompensationJSON{Status: saga.CompensationStatusCompleted}
			}
		}
		s.Steps = append(s.Steps, st)
	}
	if status == saga.SagaStatusCompleted {
		s.CompletedSteps = len(stepNames)
	}
	return detail{saga: s, events: evs}
}

// TestCheckTrail checks the checker: good trails pass, and each broken
// rule is reported.
func TestCheckTrail(t *testing.T) {
	t.Parallel()
	completed := []string{"SagaCreated", "SagaStarted",
		"StepStarted[0]#1", "StepCompleted[0]", "StepStarted[1]#1", "StepCompleted[1]", "StepStarted[2]#1", "StepCompleted[2]",
		"SagaCompleted"}
	compensated := []string{"SagaCreated", "SagaStarted",
		"StepStarted[0]#1", "StepCompleted[0]", "StepStarted[1]#1", "StepCompleted[1]", "StepStarted[2]#1", "StepFailed[2]",
		"SagaCompensating", "CompensationStarted[1]#1", "CompensationCompleted[1]", "CompensationStarted[0]#1", "CompensationCompleted[0]",
		"SagaCompensated"}
	with := func(base []string, at int, replace ...string) []string {
		out := append([]string(nil), base[:at]...)
		out = append(out, replace...)
		return append(out, base[at+1:]...)
	}
	tests := []struct {
		name   string
		status saga.SagaStatus
		want   saga.SagaStatus
		specs  []string
		// problem is a substring of the one problem expected; "" for none.
		problem string
	}{
		{"completed", saga.SagaStatusCompleted, saga.SagaStatusCompleted, completed, ""},
		{"compensated", saga.SagaStatusCompensated, saga.SagaStatusCompensated, compensated, ""},
		{"recovered after a crash", saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			with(completed, 4, "StepStarted[1]#1@a", "LeaseTaken@b", "SagaRecovered[1]@b", "StepStarted[1]#2@b"), ""},
		{"start withdrawn at a graceful stop", saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			with(completed, 4, "StepStarted[1]#1@a", "CallWithdrawn[1]@a", "LeaseTaken@b", "StepStarted[1]#1@b"), ""},
		{"start repeated without withdrawal", saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			with(completed, 4, "StepStarted[1]#1@a", "LeaseTaken@b", "StepStarted[1]#1@b"), "without an outcome, a recovery or a withdrawal"},
		{"withdrawn then next attempt", saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			with(completed, 4, "StepStarted[1]#1", "CallWithdrawn[1]", "StepStarted[1]#2"), "the withdrawn start had attempt 1"},
		{"retried", saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			with(completed, 4, "StepStarted[1]#1", "StepRetrying[1]", "StepStarted[1]#2"), ""},
		{"wrong status", saga.SagaStatusCompensated, saga.SagaStatusCompleted, compensated, "status Compensated, want Completed"},
		{"gap in seq", saga.SagaStatusCompleted, saga.SagaStatusCompleted, completed, "seq"},
		{"no SagaCreated", saga.SagaStatusCompleted, saga.SagaStatusCompleted, with(completed, 0, "SagaStarted"), "first event"},
		{"wrong end event", saga.SagaStatusCompleted, saga.SagaStatusCompleted, with(completed, 8, "SagaCompensated"), "last event"},
		{"outcome without start", saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			with(completed, 4, "StepRetrying[0]", "StepStarted[1]#1"), "without StepStarted"},
		{"step out of order", saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			with(completed, 3, "StepStarted[2]#1", "StepCompleted[0]"), "before step"},
		{"started twice without takeover", saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			with(completed, 4, "StepStarted[1]#1", "StepStarted[1]#2"), "without an outcome, a recovery or a withdrawal"},
		{"recovered without next attempt", saga.SagaStatusCompleted, saga.SagaStatusCompleted,
			with(completed, 4, "StepStarted[1]#1@a", "LeaseTaken@b", "SagaRecovered[1]@b", "StepStarted[1]#1@b"), "attempt 1 after attempt 1"},
		{"compensation not reversed", saga.SagaStatusCompensated, saga.SagaStatusCompensated,
			with(with(compensated, 9, "CompensationStarted[0]#1"), 11, "CompensationStarted[1]#1"), "not in reverse order"},
		{"compensated twice", saga.SagaStatusCompensated, saga.SagaStatusCompensated,
			with(compensated, 12, "CompensationCompleted[0]", "CompensationStarted[0]#2", "CompensationCompleted[0]"), "1 StepCompleted and 2 CompensationCompleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := trail(tt.status, tt.specs...)
			if tt.name == "gap in seq" {
				d.events[3].Seq = 9
			}
			problems := checkTrail(d, tt.want)
			if tt.problem == "" {
				if len(problems) > 0 {
					t.Fatalf("problems in a good trail: %v", problems)
				}
				return
			}
			found := false
			for _, p := range problems {
				found = found || strings.Contains(p, tt.problem)
			}
			if !found {
				t.Fatalf("problems %v lack %q", problems, tt.problem)
			}
		})
	}
}
