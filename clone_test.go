package saga_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// A clone equals its original and shares no memory with it: changing
// every reachable field of the clone leaves the original as it was.
func TestSagaCloneSharesNothing(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	uid, tid := saga.NewID(), saga.NewID()
	idx := 1
	orig := &saga.Saga{
		ID: saga.NewID(), Name: "order", Status: saga.SagaStatusExecuting, UserID: &uid,
		Context: json.RawMessage(`{"order":1}`),
		Definition: saga.Definition{Name: "order", TransactionID: &tid, UserID: &uid, Context: json.RawMessage(`{"order":1}`),
			Steps: []saga.StepDefinition{{Name: "reserve",
				Action:       saga.Request{Method: "POST", URL: "http://a/r", Headers: map[string]string{"X-A": "1"}, Body: json.RawMessage(`{"q":2}`)},
				Compensation: &saga.Request{Method: "POST", URL: "http://a/u", Headers: map[string]string{"X-B": "2"}},
				Retry:        &saga.RetryPolicy{MaxAttempts: 3}}}},
		Deadline: &now, LeaseExpiresAt: &now, NextRunAt: &now, StartedAt: &now, CompletedAt: &now,
		Steps: []saga.Step{{Index: 0, Name: "reserve", Input: json.RawMessage(`{"q":2}`), Output: json.RawMessage(`{"r":"x"}`),
			StartedAt: &now, CompletedAt: &now,
			Compensation: &saga.Compensation{Output: json.RawMessage(`{}`), StartedAt: &now, CompletedAt: &now}}},
	}
	want := orig.Clone()
	if !reflect.DeepEqual(orig, want) {
		t.Fatal("clone differs from the original")
	}

	c := orig.Clone()
	later := now.Add(time.Hour)
	*c.UserID = saga.NewID()
	c.Context[2] = 'X'
	*c.Definition.TransactionID = saga.NewID()
	c.Definition.Context[2] = 'X'
	c.Definition.Steps[0].Action.Headers["X-A"] = "changed"
	c.Definition.Steps[0].Action.Body[2] = 'X'
	c.Definition.Steps[0].Compensation.Headers["X-B"] = "changed"
	c.Definition.Steps[0].Retry.MaxAttempts = 9
	*c.Deadline, *c.LeaseExpiresAt, *c.NextRunAt, *c.StartedAt, *c.CompletedAt = later, later, later, later, later
	c.Steps[0].Input[2] = 'X'
	c.Steps[0].Output[2] = 'X'
	*c.Steps[0].StartedAt = later
	c.Steps[0].Compensation.Output[0] = '['
	*c.Steps[0].Compensation.CompletedAt = later
	if !reflect.DeepEqual(orig, want) {
		t.Fatal("changing the clone changed the original")
	}

	ev := saga.Event{StepIndex: &idx, Data: json.RawMessage(`{"a":1}`)}
	ec := ev.Clone()
	*ec.StepIndex = 7
	ec.Data[2] = 'X'
	if *ev.StepIndex != 1 || string(ev.Data) != `{"a":1}` {
		t.Fatal("changing an event's clone changed the original")
	}
}
