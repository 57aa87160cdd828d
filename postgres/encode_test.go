package postgres

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// reflectEvent is the shape encodeEvents writes, for json.Marshal to
// encode the same events the slow way.
type reflectEvent struct {
	ID       saga.ID         `json:"id"`
	Seq      int64           `json:"seq"`
	Type     saga.EventType  `json:"type"`
	Step     *int            `json:"step,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
	Instance string          `json:"instance,omitempty"`
	Actor    string          `json:"actor,omitempty"`
	Hash     string          `json:"hash,omitempty"`
}

// sealedEvents returns events as Seal leaves them, with awkward strings.
func sealedEvents(t testing.TB) []saga.Event {
	step := 1
	zero := 0
	events := []saga.Event{
		{Type: saga.EventSagaCreated, Data: json.RawMessage(`{"b":[1,2.5e3,"x"],"a":{"<&>":"\u2028é"}}`), InstanceID: "node-1", Actor: `ops "root" \ team`},
		{Type: saga.EventStepStarted, StepIndex: &zero, InstanceID: "ñode\x01", Actor: "bad \xff utf-8"},
		{Type: saga.EventStepCompleted, StepIndex: &step, Data: json.RawMessage(`null`)},
		{Type: saga.EventSagaCompleted},
	}
	if _, err := saga.NewChain(nil).Seal(saga.ChainHead{SagaID: saga.NewID()}, events, time.Now()); err != nil {
		t.Fatal(err)
	}
	events[3].Hash = nil // written before the audit chain existed
	return events
}

func TestEncodeEventsMatchesJSONMarshal(t *testing.T) {
	events := sealedEvents(t)
	got, first, err := encodeEvents(events)
	if err != nil {
		t.Fatal(err)
	}
	if *first != events[0].ID {
		t.Fatalf("first id %s, want %s", first, events[0].ID)
	}
	rows := make([]reflectEvent, len(events))
	for i, e := range events {
		rows[i] = reflectEvent{ID: e.ID, Seq: e.Seq, Type: e.Type, Step: e.StepIndex, Data: e.Data,
			Instance: e.InstanceID, Actor: e.Actor, Hash: hashText(e.Hash)}
	}
	want, err := json.Marshal(rows)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("encodeEvents wrote invalid JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("encodeEvents:\n%s\njson.Marshal:\n%s", got, want)
	}
	if _, _, err := encodeEvents([]saga.Event{{}}); err == nil {
		t.Fatal("an event without a type was encoded")
	}
	if b, id, err := encodeEvents(nil); b != nil || id != nil || err != nil {
		t.Fatalf("no events: %q %v %v", b, id, err)
	}
}

func BenchmarkEncodeEvents(b *testing.B) {
	events := sealedEvents(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := encodeEvents(events); err != nil {
			b.Fatal(err)
		}
	}
}
