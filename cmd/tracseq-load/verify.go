package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
)

// Verification reads sagas back through the API.
const (
	verifyWorkers    = 8
	verifyTimeout    = 30 * time.Second
	maxVerifyReports = 5
)

// verifyResult is the verification of a sample of sagas in one end state.
type verifyResult struct {
	Status   saga.SagaStatus `json:"status"`
	Checked  int             `json:"checked"`
	Passed   int             `json:"passed"`
	Failures []string        `json:"failures,omitempty"` // the first few, "saga ID: why"
}

// summary is the result in one line.
func (v verifyResult) summary() string {
	what := "with full event trail"
	if v.Status == saga.SagaStatusCompensated {
		what = "with completed steps compensated and full event trail"
	}
	return fmt.Sprintf("verified %d/%d sagas: %s %s", v.Passed, v.Checked, v.Status, what)
}

// verifySample reads back up to n sagas of those that ended Completed as
// planned, and up to n of those that ended Compensated as planned, and
// checks each with its events.
func verifySample(ctx context.Context, c *httpapi.Client, outcomes []outcome, n int, cfg Config) []verifyResult {
	var out []verifyResult
	for _, st := range []saga.SagaStatus{saga.SagaStatusCompleted, saga.SagaStatusCompensated} {
		var ids []string
		for _, o := range outcomes {
			if o.Status == st && o.Refused == (st == saga.SagaStatusCompensated) {
				ids = append(ids, o.ID)
			}
		}
		if len(ids) == 0 {
			continue
		}
		rand.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		ids = ids[:min(n, len(ids))]
		out = append(out, verifyIDs(ctx, c, ids, st, cfg))
	}
	return out
}

// verifyIDs checks ids, expected to have ended in st.
func verifyIDs(ctx context.Context, c *httpapi.Client, ids []string, st saga.SagaStatus, cfg Config) verifyResult {
	res := verifyResult{Status: st, Checked: len(ids)}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		next = make(chan string)
	)
	for range min(verifyWorkers, len(ids)) {
		wg.Go(func() {
			for id := range next {
				err := verifyOne(ctx, c, id, st, cfg)
				mu.Lock()
				if err == nil {
					res.Passed++
				} else if len(res.Failures) < maxVerifyReports {
					res.Failures = append(res.Failures, fmt.Sprintf("saga %s: %v", id, err))
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		next <- id
	}
	close(next)
	wg.Wait()
	return res
}

// verifyOne reads one saga and its events and checks them.
func verifyOne(ctx context.Context, c *httpapi.Client, id string, st saga.SagaStatus, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	s, err := c.Get(ctx, id)
	if err != nil {
		return err
	}
	events, err := c.Events(ctx, id)
	if err != nil {
		return err
	}
	if st == saga.SagaStatusCompensated {
		return checkCompensated(s, events, cfg.Steps, cfg.FailStep)
	}
	return checkCompleted(s, events, cfg.Steps)
}

// checkCompleted checks a saga that should have Completed all its steps,
// and its audit trail from SagaCreated to SagaCompleted.
func checkCompleted(s *httpapi.SagaJSON, events []httpapi.EventJSON, steps int) error {
	var errs []error
	if s.Status != saga.SagaStatusCompleted {
		errs = append(errs, fmt.Errorf("status %s, want Completed", s.Status))
	}
	if s.CompletedSteps != steps || s.TotalSteps != steps {
		errs = append(errs, fmt.Errorf("progress %d of %d steps, want %d of %d", s.CompletedSteps, s.TotalSteps, steps, steps))
	}
	if s.CompletedAt == nil {
		errs = append(errs, errors.New("no completed_at"))
	}
	if len(s.Steps) != steps {
		errs = append(errs, fmt.Errorf("%d steps, want %d", len(s.Steps), steps))
	}
	for i, st := range s.Steps {
		if st.Status != saga.StepStatusCompleted {
			errs = append(errs, fmt.Errorf("step %d status %s, want Completed", i+1, st.Status))
		}
		if st.Compensation != nil {
			errs = append(errs, fmt.Errorf("step %d was compensated", i+1))
		}
	}
	errs = append(errs, checkTrail(s.ID, events, saga.EventSagaCompleted)...)
	count := countEvents(events)
	if n := count[saga.EventStepCompleted]; n != steps {
		errs = append(errs, fmt.Errorf("%d StepCompleted events, want %d", n, steps))
	}
	if n := count[saga.EventCompensationStarted]; n != 0 {
		errs = append(errs, fmt.Errorf("%d CompensationStarted events, want none", n))
	}
	return errors.Join(errs...)
}

// checkCompensated checks a saga whose step failStep (1-based) refused:
// the steps before it Completed and then compensated, it Failed, those
// after it Skipped, and its audit trail from SagaCreated to
// SagaCompensated.
func checkCompensated(s *httpapi.SagaJSON, events []httpapi.EventJSON, steps, failStep int) error {
	var errs []error
	if s.Status != saga.SagaStatusCompensated {
		errs = append(errs, fmt.Errorf("status %s, want Compensated", s.Status))
	}
	if s.TotalSteps != steps {
		errs = append(errs, fmt.Errorf("total_steps %d, want %d", s.TotalSteps, steps))
	}
	if s.CompletedAt == nil {
		errs = append(errs, errors.New("no completed_at"))
	}
	if len(s.Steps) != steps {
		errs = append(errs, fmt.Errorf("%d steps, want %d", len(s.Steps), steps))
	}
	for i, st := range s.Steps {
		k := i + 1
		switch {
		case k < failStep:
			if st.Status != saga.StepStatusCompleted {
				errs = append(errs, fmt.Errorf("step %d status %s, want Completed", k, st.Status))
			}
			if st.Compensation == nil || st.Compensation.Status != saga.CompensationStatusCompleted {
				errs = append(errs, fmt.Errorf("step %d not compensated", k))
			}
		case k == failStep:
			if st.Status != saga.StepStatusFailed {
				errs = append(errs, fmt.Errorf("step %d status %s, want Failed", k, st.Status))
			}
		default:
			if st.Status != saga.StepStatusSkipped {
				errs = append(errs, fmt.Errorf("step %d status %s, want Skipped", k, st.Status))
			}
		}
	}
	errs = append(errs, checkTrail(s.ID, events, saga.EventSagaCompensated)...)
	count := countEvents(events)
	if count[saga.EventSagaCompensating] == 0 {
		errs = append(errs, errors.New("no SagaCompensating event"))
	}
	if count[saga.EventStepFailed] == 0 {
		errs = append(errs, errors.New("no StepFailed event"))
	}
	if n := count[saga.EventCompensationCompleted]; n != failStep-1 {
		errs = append(errs, fmt.Errorf("%d CompensationCompleted events, want %d", n, failStep-1))
	}
	return errors.Join(errs...)
}

// checkTrail checks what every ended saga's events share: they belong to
// the saga, their seq runs 1, 2, 3 … without gaps, the first is
// SagaCreated and the last is last.
func checkTrail(id string, events []httpapi.EventJSON, last saga.EventType) []error {
	if len(events) == 0 {
		return []error{errors.New("no events")}
	}
	var errs []error
	for i, e := range events {
		if e.SagaID != id {
			errs = append(errs, fmt.Errorf("event %d belongs to saga %s", e.Seq, e.SagaID))
		}
		if want := int64(i + 1); e.Seq != want {
			errs = append(errs, fmt.Errorf("event %d has seq %d, want %d (gap or disorder)", i+1, e.Seq, want))
			break
		}
	}
	if t := events[0].Type; t != saga.EventSagaCreated {
		errs = append(errs, fmt.Errorf("first event %s, want SagaCreated", t))
	}
	if t := events[len(events)-1].Type; t != last {
		errs = append(errs, fmt.Errorf("last event %s, want %s", t, last))
	}
	return errs
}

// countEvents counts events by type.
func countEvents(events []httpapi.EventJSON) map[saga.EventType]int {
	m := make(map[saga.EventType]int)
	for _, e := range events {
		m[e.Type]++
	}
	return m
}
