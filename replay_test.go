package saga

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// trail builds a saga's trail one write at a time, a millisecond apart.
type trail struct {
	t      *testing.T
	head   ChainHead
	at     time.Time
	events []Event
}

func (tr *trail) write(evs ...Event) time.Time {
	tr.t.Helper()
	tr.at = tr.at.Add(time.Millisecond)
	var err error
	if tr.head, err = NewChain(nil).Seal(tr.head, evs, tr.at); err != nil {
		tr.t.Fatal(err)
	}
	tr.events = append(tr.events, evs...)
	return tr.at
}

func ev(typ EventType, step int, data string) Event {
	e := Event{Type: typ}
	if step >= 0 {
		e.StepIndex = new(step)
	}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e
}

func TestReplay(t *testing.T) {
	t.Parallel()
	tx := NewID()
	def := Definition{Name: "order", TimeoutMs: 60000, Context: json.RawMessage(`{"o":1}`), Steps: []StepDefinition{
		{Name: "a", Action: Request{Body: json.RawMessage(`{"a":1}`)}, Compensation: &Request{}},
		{Name: "b", Compensation: &Request{}},
		{Name: "c"},
	}}
	defJSON, _ := json.Marshal(def)
	tr := &trail{t: t, head: ChainHead{SagaID: NewID()}, at: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
	created := tr.write(
		ev(EventSagaCreated, -1, `{"definition":`+string(defJSON)+`,"transaction_id":"`+tx.String()+`"}`),
		ev(EventSagaStarted, -1, ""),
		ev(EventStepStarted, 0, `{"attempt":1}`))
	tr.write(ev(EventCallWithdrawn, 0, `{"kind":"action"}`)) // held back: a0 Pending again
	tr.write(ev(EventStepStarted, 0, `{"attempt":1}`))
	aDone := tr.write(ev(EventStepCompleted, 0, `{"output":{"id":7}}`), ev(EventStepStarted, 1, `{"attempt":1}`))
	tr.write(ev(EventStepRetrying, 1, `{"error":"503","uncertain":true}`))
	tr.write(Event{Type: EventOperatorRequested, Actor: "lab-ops", Data: json.RawMessage(`{"action":"cancel"}`)})
	tr.write(ev(EventStepStarted, 1, `{"attempt":2}`))
	bFailed := tr.write(ev(EventStepFailed, 1, `{"error":"cancelled by operator; last error: 503","uncertain":true}`),
		ev(EventStepSkipped, 2, ""),
		ev(EventSagaCompensating, -1, `{"compensate_to":"Cancelled","error":"cancelled by operator"}`),
		ev(EventCompensationStarted, 1, `{"attempt":1}`),
		Event{Type: EventOperatorRequestCarriedOut, Actor: "lab-ops", Data: json.RawMessage(`{"action":"cancel"}`)})
	tr.write(ev(EventCallWithdrawn, 1, `{"kind":"compensation"}`)) // instance stopping
	tr.write(ev(EventLeaseTaken, -1, `{"epoch":2}`), ev(EventCompensationStarted, 1, `{"attempt":1}`))
	tr.write(ev(EventCompensationFailed, 1, `{"error":"409"}`),
		ev(EventSagaFailed, -1, `{"error":"compensation of step \"b\" failed: 409"}`))
	tr.write(ev(EventSagaRetried, -1, `{"compensate_to":"Compensated"}`), ev(EventCompensationStarted, 1, `{"attempt":1}`))
	tr.write(ev(EventCompensationCompleted, 1, `{"output":null}`), ev(EventCompensationStarted, 0, `{"attempt":1}`))
	end := tr.write(ev(EventCompensationCompleted, 0, `{"output":{"undone":true}}`),
		ev(EventSagaCompensated, -1, `{"error":"cancelled by operator"}`))
	tr.write(ev(EventLegalHoldChanged, -1, `{"legal_hold":true}`))

	s, err := Replay(tr.events)
	if err != nil {
		t.Fatal(err)
	}
	want := &Saga{
		ID: tr.head.SagaID, Name: "order", Status: SagaStatusCompensated, TransactionID: tx,
		Context: json.RawMessage(`{"o":1}`), Definition: def, CompletedSteps: 1, TotalSteps: 3,
		Error: "cancelled by operator", LegalHold: true, EventSeq: tr.head.Seq,
		Deadline: new(created.Add(time.Minute)), CreatedAt: created, StartedAt: new(created), CompletedAt: new(end),
		Steps: []Step{
			{Index: 0, Name: "a", Status: StepStatusCompleted, Attempts: 1, Input: json.RawMessage(`{"a":1}`),
				Output: json.RawMessage(`{"id":7}`), StartedAt: new(created), CompletedAt: new(aDone),
				Compensation: &Compensation{StepIndex: 0, Status: CompensationStatusCompleted, Attempts: 1,
					Output: json.RawMessage(`{"undone":true}`), StartedAt: new(end.Add(-time.Millisecond)), CompletedAt: new(end)}},
			{Index: 1, Name: "b", Status: StepStatusFailed, Attempts: 2, Error: "cancelled by operator; last error: 503",
				Uncertain: true, StartedAt: new(aDone), CompletedAt: new(bFailed),
				Compensation: &Compensation{StepIndex: 1, Status: CompensationStatusCompleted, Attempts: 1,
					Output: json.RawMessage(`null`), StartedAt: new(bFailed), CompletedAt: new(end.Add(-time.Millisecond))}},
			{Index: 2, Name: "c", Status: StepStatusSkipped},
		},
	}
	if diff := ReplayDiff(want, s); diff != nil {
		t.Errorf("Replay differs from the saga the trail describes:\n  %s", strings.Join(diff, "\n  "))
	}

	// ReplayDiff names what differs.
	other := s.Clone()
	other.Steps[1].Compensation.Attempts = 4
	other.Error = "x"
	other.Steps[0].Output = json.RawMessage(`{"id": 7.0}`) // the same value
	diff := ReplayDiff(other, s)
	if len(diff) != 2 || !strings.HasPrefix(diff[0], "error: stored x, rebuilt cancelled by operator") ||
		!strings.HasPrefix(diff[1], "steps[1].compensation.attempts: stored 4, rebuilt 1") {
		t.Errorf("ReplayDiff = %q", diff)
	}
}

func TestReplayRefusesBadTrails(t *testing.T) {
	t.Parallel()
	id := NewID()
	created := Event{SagaID: id, Seq: 1, Type: EventSagaCreated,
		Data: json.RawMessage(`{"definition":{"name":"n","steps":[{"name":"a"}]},"transaction_id":"` + NewID().String() + `"}`)}
	tests := []struct {
		name   string
		events []Event
		want   string
	}{
		{"empty", nil, "no events"},
		{"no SagaCreated", []Event{{Seq: 1, Type: EventSagaStarted}}, "does not start with SagaCreated"},
		{"no definition", []Event{{Seq: 1, Type: EventSagaCreated, Data: json.RawMessage(`{"name":"n"}`)}}, "no definition"},
		{"step out of range", []Event{created, {Seq: 2, Type: EventStepStarted, StepIndex: new(3), Data: json.RawMessage(`{"attempt":1}`)}}, "out of range"},
		{"no output", []Event{created, {Seq: 2, Type: EventStepCompleted, StepIndex: new(0)}}, "no output"},
		{"no compensation to fail", []Event{created, {Seq: 2, Type: EventCompensationFailed, StepIndex: new(0), Data: json.RawMessage(`{"error":"x"}`)}}, "no compensation"},
	}
	for _, tc := range tests {
		if _, err := Replay(tc.events); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Replay error = %v, want …%s…", tc.name, err, tc.want)
		}
	}
}

// Attempts of a compensation count across an operator's retry, and the
// retry's budget from it; a trail written when the retry started them
// over replays as it was stored then.
func TestReplayRetryKeepsAttempts(t *testing.T) {
	t.Parallel()
	def := Definition{Name: "order", Steps: []StepDefinition{
		{Name: "a", Compensation: &Request{}},
		{Name: "b", Compensation: &Request{}},
	}}
	defJSON, _ := json.Marshal(def)
	for _, tc := range []struct {
		name             string
		afterRetry       int // the attempt of the first call after the retry
		attempts, before int
	}{
		{"counted", 3, 3, 2},
		{"started over", 1, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &trail{t: t, head: ChainHead{SagaID: NewID()}, at: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
			tr.write(
				ev(EventSagaCreated, -1, `{"definition":`+string(defJSON)+`,"transaction_id":"`+NewID().String()+`"}`),
				ev(EventSagaStarted, -1, ""),
				ev(EventStepStarted, 0, `{"attempt":1}`))
			tr.write(ev(EventStepCompleted, 0, `{"output":{}}`), ev(EventStepStarted, 1, `{"attempt":1}`))
			tr.write(ev(EventStepFailed, 1, `{"error":"402"}`),
				ev(EventSagaCompensating, -1, `{"error":"step b refused","compensate_to":"Compensated"}`),
				ev(EventCompensationStarted, 0, `{"attempt":1}`))
			tr.write(ev(EventCompensationRetrying, 0, `{"error":"503"}`))
			tr.write(ev(EventCompensationStarted, 0, `{"attempt":2}`))
			tr.write(ev(EventCompensationFailed, 0, `{"error":"503"}`),
				ev(EventSagaFailed, -1, `{"error":"step b refused; then compensation of step \"a\" failed: 503"}`))
			tr.write(ev(EventSagaRetried, -1, `{"compensate_to":"Compensated"}`),
				ev(EventCompensationStarted, 0, fmt.Sprintf(`{"attempt":%d}`, tc.afterRetry)))
			tr.write(ev(EventCompensationCompleted, 0, `{"output":{}}`), ev(EventSagaCompensated, -1, `{"error":"step b refused"}`))
			s, err := Replay(tr.events)
			if err != nil {
				t.Fatalf("Replay: %v", err)
			}
			c := s.Steps[0].Compensation
			if s.Status != SagaStatusCompensated || c.Status != CompensationStatusCompleted ||
				c.Attempts != tc.attempts || c.AttemptsBeforeRetry != tc.before {
				t.Errorf("replayed %s, compensation %s after %d attempts (%d before the retry); want Compensated, Completed, %d (%d)",
					s.Status, c.Status, c.Attempts, c.AttemptsBeforeRetry, tc.attempts, tc.before)
			}
			if s.Error != "step b refused" {
				t.Errorf("error %q, want the cause", s.Error)
			}
		})
	}
}
