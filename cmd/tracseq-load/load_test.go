package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// TestRunStartsServiceAndVerifies runs the whole tool: it builds and starts
// tracseq-tx on a fresh database, drives sagas at c=2 for about a second
// (half of them compensating), and checks the report.
func TestRunStartsServiceAndVerifies(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	var stdout, stderr bytes.Buffer
	err := Run(ctx, []string{
		"--start", "--database-url", dbURL,
		"-c", "2", "-d", "1s", "--warmup", "200ms",
		"--fail-step", "2", "--fail-rate", "0.5",
		"--verify", "10", "--stats-wait", "500ms", "--ceiling-duration", "500ms",
		"--json",
	}, func(string) string { return "" }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Run: %v\nstderr:\n%s", err, stderr.String())
	}

	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s", err, stdout.String())
	}
	if rep.Persistence != "postgres" {
		t.Errorf("persistence %q, want postgres", rep.Persistence)
	}
	if rep.EndStates[saga.SagaStatusCompleted] == 0 || rep.EndStates[saga.SagaStatusCompensated] == 0 {
		t.Errorf("end states %v, want Completed and Compensated sagas", rep.EndStates)
	}
	if rep.Errors != 0 || rep.Unexpected != 0 {
		t.Errorf("errors %d (%v), unexpected %d; want none", rep.Errors, rep.ErrorSamples, rep.Unexpected)
	}
	if len(rep.Verification) != 2 {
		t.Fatalf("verification %+v, want Completed and Compensated samples", rep.Verification)
	}
	for _, v := range rep.Verification {
		if v.Checked == 0 || v.Passed != v.Checked {
			t.Errorf("verification of %s: %d/%d passed: %v", v.Status, v.Passed, v.Checked, v.Failures)
		}
	}
	if rep.Database == nil || rep.Database.Commits <= 0 || rep.Database.Sagas <= 0 {
		t.Errorf("database %+v, want commits and sagas counted", rep.Database)
	}
	if rep.Service == nil || rep.Service.PeakRSSBytes <= 0 {
		t.Errorf("service %+v, want the started service's figures", rep.Service)
	}
	if rep.Ceiling == nil || rep.Ceiling.Commits <= 0 || rep.Ratio == nil {
		t.Errorf("ceiling %+v, ratio %+v; want both measured", rep.Ceiling, rep.Ratio)
	}
	if rep.Participant.Refusals == 0 || rep.Participant.Compensations == 0 {
		t.Errorf("participant calls %+v, want refusals and compensations", rep.Participant)
	}
	if !bytes.Contains(stderr.Bytes(), []byte("verified ")) || !bytes.Contains(stderr.Bytes(), []byte("load ")) {
		t.Errorf("stderr lacks the progress line or the table:\n%s", stderr.String())
	}
}
