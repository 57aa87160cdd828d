package saga

import (
	"strings"
	"testing"
	"time"
)

func TestCompensationPolicy(t *testing.T) {
	t.Parallel()
	undo := &Request{Method: "POST", URL: "http://p/undo"}
	long := (&StepDefinition{Compensation: undo}).CompensationPolicy()
	if long.MaxAttempts != CompensationRetryAttemptsDefault || long.MaxBackoffMs != CompensationRetryMaxBackoffDefault.Milliseconds() {
		t.Errorf("default compensation policy %+v", long)
	}
	// The longest it may retry: every wait at its ceiling before jitter.
	total, wait := time.Duration(0), InitialBackoffDefault
	for range long.MaxAttempts - 1 {
		total += wait
		wait = min(wait*2, CompensationRetryMaxBackoffDefault)
	}
	if total < 2*time.Hour {
		t.Errorf("the default compensation policy retries for at most %v; want hours", total)
	}
	step := (&StepDefinition{Compensation: undo, Retry: &RetryPolicy{MaxAttempts: 2, InitialBackoffMs: 7}}).CompensationPolicy()
	if step.MaxAttempts != CompensationMaxAttempts || step.InitialBackoffMs != 7 {
		t.Errorf("compensation policy from the step's %+v", step)
	}
	own := *undo
	own.Retry = &RetryPolicy{MaxAttempts: 9}
	if p := (&StepDefinition{Compensation: &own, Retry: &RetryPolicy{MaxAttempts: 2}}).CompensationPolicy(); p.MaxAttempts != 9 {
		t.Errorf("the compensation's own retry was not used: %+v", p)
	}
}

func TestRetryOnActionRefused(t *testing.T) {
	t.Parallel()
	d := Definition{Name: "x", Steps: []StepDefinition{{Name: "a",
		Action:       Request{Method: "POST", URL: "http://p/a", Retry: &RetryPolicy{MaxAttempts: 2}},
		Compensation: &Request{Method: "POST", URL: "http://p/b", Retry: &RetryPolicy{MaxAttempts: 1000}},
	}}}
	err := d.Validate()
	for _, want := range []string{"steps[0].action.retry", "steps[0].compensation.retry.max_attempts"} {
		if err == nil || !strings.Contains(err.(*ValidationError).fields(), want) {
			t.Errorf("Validate() = %v; want a problem at %s", err, want)
		}
	}
}

func (e *ValidationError) fields() string {
	var f []string
	for _, p := range e.Problems {
		f = append(f, p.Field)
	}
	return strings.Join(f, " ")
}
