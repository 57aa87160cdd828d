package saga

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// sealedTrail returns a saga's trail of n events sealed by c, one write
// per event a millisecond apart.
func sealedTrail(t *testing.T, c *Chain, n int) (ChainHead, []Event) {
	t.Helper()
	head := ChainHead{SagaID: NewID()}
	at := time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)
	var all []Event
	for i := range n {
		evs := []Event{{Type: EventStepStarted, StepIndex: new(i % 3), InstanceID: "i-1",
			Data: json.RawMessage(`{"kind": "action", "attempt": 1}`)}}
		var err error
		if head, err = c.Seal(head, evs, at.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatalf("Seal: %v", err)
		}
		all = append(all, evs...)
	}
	return head, all
}

func TestChainSealAndVerify(t *testing.T) {
	t.Parallel()
	c := NewChain(nil)
	head, evs := sealedTrail(t, c, 5)
	if head.Seq != 5 || !bytes.Equal(head.Hash, evs[4].Hash) {
		t.Fatalf("head = %d %x, want 5 and the last event's hash", head.Seq, head.Hash)
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) || e.SagaID != head.SagaID || e.ID.IsZero() || len(e.Hash) != HashSize {
			t.Errorf("event %d = seq %d saga %s id %s hash %x", i, e.Seq, e.SagaID, e.ID, e.Hash)
		}
		if string(e.Data) != `{"attempt":1,"kind":"action"}` {
			t.Errorf("event %d data = %s, want the canonical form", i, e.Data)
		}
	}
	if b := c.Verify(head, evs); b != nil {
		t.Fatalf("Verify of an untouched trail: %v", b)
	}
	// Data respelled as jsonb does still verifies: the hash is over the
	// canonical form.
	respelled := clones(evs)
	respelled[2].Data = json.RawMessage(`{"kind": "action", "attempt": 1.0}`)
	if b := c.Verify(head, respelled); b != nil {
		t.Errorf("Verify of respelled data: %v", b)
	}
	// Sub-millisecond digits of the time are not covered.
	respelled[1].CreatedAt = respelled[1].CreatedAt.Add(300 * time.Microsecond)
	if b := c.Verify(head, respelled); b != nil {
		t.Errorf("Verify with the time moved within its millisecond: %v", b)
	}
}

func clones(evs []Event) []Event {
	out := make([]Event, len(evs))
	for i, e := range evs {
		out[i] = e.Clone()
	}
	return out
}

func TestChainVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	c := NewChain([]byte("secret"))
	head, evs := sealedTrail(t, c, 6)
	tests := []struct {
		name    string
		tamper  func(evs []Event, head *ChainHead) []Event
		seq     int64
		problem string
	}{
		{"data edited", func(evs []Event, _ *ChainHead) []Event {
			evs[2].Data = json.RawMessage(`{"attempt":2,"kind":"action"}`)
			return evs
		}, 3, "does not match"},
		{"type edited", func(evs []Event, _ *ChainHead) []Event { evs[0].Type = EventStepCompleted; return evs }, 1, "does not match"},
		{"actor edited", func(evs []Event, _ *ChainHead) []Event { evs[4].Actor = "mallory"; return evs }, 5, "does not match"},
		{"instance edited", func(evs []Event, _ *ChainHead) []Event { evs[1].InstanceID = "i-2"; return evs }, 2, "does not match"},
		{"time edited", func(evs []Event, _ *ChainHead) []Event {
			evs[3].CreatedAt = evs[3].CreatedAt.Add(time.Second)
			return evs
		}, 4, "does not match"},
		{"step edited", func(evs []Event, _ *ChainHead) []Event { evs[5].StepIndex = nil; return evs }, 6, "does not match"},
		{"middle event deleted", func(evs []Event, _ *ChainHead) []Event { return append(evs[:2:2], evs[3:]...) }, 3, "missing"},
		{"last event deleted", func(evs []Event, _ *ChainHead) []Event { return evs[:5] }, 6, "missing"},
		{"two events swapped", func(evs []Event, _ *ChainHead) []Event {
			evs[1], evs[2] = evs[2], evs[1]
			evs[1].Seq, evs[2].Seq = 2, 3
			return evs
		}, 2, "does not match"},
		{"hash removed", func(evs []Event, _ *ChainHead) []Event { evs[3].Hash = nil; return evs }, 4, "no hash"},
		{"event added, the saga row left", func(evs []Event, h *ChainHead) []Event {
			extra := []Event{{Type: EventSagaCompleted}}
			if _, err := c.Seal(*h, extra, time.Now()); err != nil {
				t.Fatal(err)
			}
			return append(evs, extra...)
		}, 7, "beyond"},
		{"head moved", func(evs []Event, h *ChainHead) []Event { h.Hash = evs[4].Hash; return evs }, 6, "last hash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := head
			b := c.Verify(h, tc.tamper(clones(evs), &h))
			switch {
			case b == nil:
				t.Fatal("Verify found nothing")
			case b.Seq != tc.seq || !strings.Contains(b.Problem, tc.problem) || b.SagaID != head.SagaID:
				t.Errorf("Verify = %v, want event %d: …%s…", b, tc.seq, tc.problem)
			}
		})
	}
	// The same trail under another key, or none, does not verify.
	for _, other := range []*Chain{NewChain([]byte("other")), NewChain(nil), nil} {
		if b := other.Verify(head, evs); b == nil || b.Seq != 1 {
			t.Errorf("Verify with another key = %v, want a break at event 1", b)
		}
	}
}

func TestChainVerifyLegacyPrefix(t *testing.T) {
	t.Parallel()
	c := NewChain(nil)
	id := NewID()
	legacy := []Event{{SagaID: id, Seq: 1, Type: EventSagaCreated}, {SagaID: id, Seq: 2, Type: EventSagaStarted}}
	head := ChainHead{SagaID: id, Seq: 2}
	more := []Event{{Type: EventStepStarted}}
	head, err := c.Seal(head, more, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v := c.Verifier(head)
	for _, e := range append(legacy, more...) {
		v.Add(e)
	}
	if b := v.Finish(); b != nil || v.Legacy() != 2 {
		t.Errorf("trail with 2 events from before the chain: %v, legacy %d; want no break and 2", b, v.Legacy())
	}
	// A hash missing after the chain began is a break.
	v = c.Verifier(head)
	more[0].Hash = nil
	for _, e := range append(legacy, more...) {
		v.Add(e)
	}
	if b := v.Finish(); b == nil || b.Seq != 3 {
		t.Errorf("hash missing after the chain began: %v, want a break at 3", b)
	}
}

func TestSealTransitionCompletesEvents(t *testing.T) {
	t.Parallel()
	c := NewChain(nil)
	head := ChainHead{SagaID: NewID(), Seq: 4}
	tr := Transition{
		Lease:         Lease{Owner: "i-7", Epoch: 2},
		Error:         "step \"b\" failed",
		CompensateTo:  SagaStatusCancelled,
		ClearControl:  ControlCancel,
		Steps:         []StepUpdate{{Index: 0, Status: StepStatusCompleted, Output: json.RawMessage(`{"id": 7}`)}, {Index: 1, Status: StepStatusFailed, Error: "boom", Uncertain: true}},
		Compensations: []CompensationUpdate{{StepIndex: 0, Status: CompensationStatusRetrying, Error: "later"}},
		Events: []Event{
			{Type: EventStepCompleted, StepIndex: new(0), Data: json.RawMessage(`{"attempt":1}`)},
			{Type: EventStepFailed, StepIndex: new(1), Data: json.RawMessage(`{"error":"engine's words"}`)},
			{Type: EventSagaCompensating, Data: json.RawMessage(`{"compensate_to":"Cancelled"}`)},
			{Type: EventCompensationRetrying, StepIndex: new(0)},
		},
	}
	orig := tr.Events[0].Data
	evs, next, err := c.SealTransition(head, tr, PendingControl{Action: ControlCancel, Seq: 3, Actor: "lab-ops"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"attempt":1,"output":{"id":7}}`,
		`{"error":"engine's words","uncertain":true}`,
		`{"compensate_to":"Cancelled","error":"step \"b\" failed"}`,
		`{"error":"later"}`,
		`{"action":"cancel","outcome":"carried_out","request_seq":3}`,
	}
	if len(evs) != len(want) || next.Seq != 9 {
		t.Fatalf("%d events, head %d; want %d and 9", len(evs), next.Seq, len(want))
	}
	for i, w := range want {
		if string(evs[i].Data) != w {
			t.Errorf("event %d (%s) data = %s, want %s", i, evs[i].Type, evs[i].Data, w)
		}
	}
	if last := evs[4]; last.Type != EventOperatorRequestCarriedOut || last.Actor != "lab-ops" || last.InstanceID != "i-7" {
		t.Errorf("closing event = %s by %q on %q, want OperatorRequestCarriedOut by lab-ops on i-7", last.Type, last.Actor, last.InstanceID)
	}
	if string(tr.Events[0].Data) != string(orig) {
		t.Error("SealTransition changed the transition's events")
	}
	// A request that is not the pending one is not closed.
	evs, _, _ = c.SealTransition(head, Transition{ClearControl: ControlPause}, PendingControl{Action: ControlCancel, Seq: 3}, time.Now())
	if len(evs) != 0 {
		t.Errorf("clearing a request that is not pending wrote %d events", len(evs))
	}
	// An ignored request is closed as ignored.
	evs, _, _ = c.SealTransition(head, Transition{ClearControl: ControlResume, Events: []Event{{Type: EventControlIgnored}}},
		PendingControl{Action: ControlResume, Seq: 2}, time.Now())
	if len(evs) != 2 || !strings.Contains(string(evs[1].Data), `"outcome":"ignored"`) {
		t.Errorf("ignored request: %+v", evs)
	}
}

func TestSealControlAndCreateAttribute(t *testing.T) {
	t.Parallel()
	c := NewChain(nil)
	ctx := WithRequester(context.Background(), Requester{Actor: "lab-ops", Reason: "maintenance window", Address: "10.0.0.7:5555", Instance: "i-1"})
	head := ChainHead{SagaID: NewID(), Seq: 3}
	evs, next, err := c.SealControl(ctx, head, ControlCancel, PendingControl{Action: ControlPause, Seq: 3, Actor: "ci-bot"}, time.Now())
	if err != nil || len(evs) != 2 || next.Seq != 5 {
		t.Fatalf("SealControl = %d events, head %d, %v", len(evs), next.Seq, err)
	}
	if e := evs[0]; e.Type != EventOperatorRequestSuperseded || e.Actor != "lab-ops" ||
		string(e.Data) != `{"action":"pause","request_seq":3,"requested_by":"ci-bot","superseded_by":"cancel"}` {
		t.Errorf("superseded event = %s by %q: %s", e.Type, e.Actor, e.Data)
	}
	if e := evs[1]; e.Type != EventOperatorRequested || e.Actor != "lab-ops" || e.InstanceID != "i-1" ||
		string(e.Data) != `{"action":"cancel","client_addr":"10.0.0.7:5555","reason":"maintenance window"}` {
		t.Errorf("request event = %s by %q on %q: %s", e.Type, e.Actor, e.InstanceID, e.Data)
	}

	tx := NewID()
	s := &Saga{TransactionID: tx, Context: json.RawMessage(`{"a":1}`),
		Definition: Definition{Name: "n", Context: json.RawMessage(`{"a": 1}`), Steps: []StepDefinition{{Name: "x"}}}}
	evs, _, err = c.SealCreate(ctx, ChainHead{SagaID: NewID()}, s,
		[]Event{{Type: EventSagaCreated, Data: json.RawMessage(`{"name":"n","total_steps":1}`)}, {Type: EventSagaStarted}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]json.RawMessage
	if err := json.Unmarshal(evs[0].Data, &d); err != nil {
		t.Fatal(err)
	}
	if evs[0].Actor != "lab-ops" || string(d["transaction_id"]) != `"`+tx.String()+`"` || d["definition"] == nil ||
		string(d["reason"]) != `"maintenance window"` || d["context"] != nil || string(d["name"]) != `"n"` {
		t.Errorf("SagaCreated = actor %q data %s", evs[0].Actor, evs[0].Data)
	}
	if evs[1].Data != nil || evs[1].Actor != "" {
		t.Errorf("SagaStarted = actor %q data %s, want neither", evs[1].Actor, evs[1].Data)
	}
}

// BenchmarkSeal measures the audit chain's work at the store boundary for
// a two-step saga's creation (its definition goes into SagaCreated) and
// for one transition (a step completed, the next started).
func BenchmarkSeal(b *testing.B) {
	var def Definition
	if err := json.Unmarshal([]byte(`{"name":"order","context":{"order":"o-17"},"steps":[
		{"name":"reserve","action":{"method":"POST","url":"http://127.0.0.1:9/action/reserve","body":{"item":"reserve"}},"compensation":{"method":"POST","url":"http://127.0.0.1:9/compensation/reserve"},"retry":{"max_attempts":3}},
		{"name":"charge","action":{"method":"POST","url":"http://127.0.0.1:9/action/charge","body":{"amount":42}},"compensation":{"method":"POST","url":"http://127.0.0.1:9/compensation/charge"}}]}`), &def); err != nil {
		b.Fatal(err)
	}
	s := &Saga{TransactionID: NewID(), Definition: def, Context: def.Context}
	created := []Event{{Type: EventSagaCreated, InstanceID: "i-1", Data: json.RawMessage(`{"name":"order","total_steps":2}`)},
		{Type: EventSagaStarted, InstanceID: "i-1"}, {Type: EventStepStarted, StepIndex: new(0), InstanceID: "i-1", Data: json.RawMessage(`{"attempt":1,"kind":"action"}`)}}
	tr := Transition{
		Steps: []StepUpdate{{Index: 0, Status: StepStatusCompleted, Output: json.RawMessage(`{"reservation":"r-1","until":"2026-12-01T12:00:00Z"}`)}},
		Events: []Event{{Type: EventStepCompleted, StepIndex: new(0), InstanceID: "i-1", Data: json.RawMessage(`{"attempt":1,"duration_ms":3,"kind":"action","status_code":200}`)},
			{Type: EventStepStarted, StepIndex: new(1), InstanceID: "i-1", Data: json.RawMessage(`{"attempt":1,"kind":"action"}`)}},
	}
	for _, c := range []*Chain{NewChain(nil), NewChain([]byte("an audit key of thirty-two bytes"))} {
		name := "sha256"
		if c.Keyed() {
			name = "hmac"
		}
		b.Run(name+"/create", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.SealCreate(context.Background(), ChainHead{SagaID: NewID()}, s, created, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/transition", func(b *testing.B) {
			b.ReportAllocs()
			head := ChainHead{SagaID: NewID(), Seq: 3, Hash: make([]byte, HashSize)}
			for b.Loop() {
				if _, _, err := c.SealTransition(head, tr, PendingControl{}, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// An engine may keep a step uncertain after an attempt that was certain (an
// earlier one timed out): the events then carry the step's uncertainty
// beside the attempt's, and the replay follows the step's.
func TestSealTransitionStepUncertainty(t *testing.T) {
	t.Parallel()
	c := NewChain(nil)
	def := Definition{Name: "order", Steps: []StepDefinition{{Name: "a"}}}
	s := &Saga{ID: NewID(), Name: def.Name, TransactionID: NewID(), Definition: def, TotalSteps: 1}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	trail, head, err := c.SealCreate(context.Background(), ChainHead{SagaID: s.ID}, s, []Event{{Type: EventSagaCreated}, {Type: EventSagaStarted}}, at)
	if err != nil {
		t.Fatal(err)
	}
	write := func(u StepUpdate, e Event, want string) {
		t.Helper()
		at = at.Add(time.Millisecond)
		evs, next, err := c.SealTransition(head, Transition{Steps: []StepUpdate{u}, Events: []Event{e}}, PendingControl{}, at)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(evs[0].Data); got != want {
			t.Errorf("%s data = %s, want %s", e.Type, got, want)
		}
		head, trail = next, append(trail, evs...)
	}
	write(StepUpdate{Status: StepStatusExecuting, Attempts: 1}, ev(EventStepStarted, 0, `{"attempt":1}`), `{"attempt":1}`)
	write(StepUpdate{Status: StepStatusRetrying, Attempts: 1, Error: "timeout", Uncertain: true},
		ev(EventStepRetrying, 0, `{"error":"timeout","uncertain":true}`), `{"error":"timeout","uncertain":true}`)
	write(StepUpdate{Status: StepStatusExecuting, Attempts: 2, Uncertain: true},
		ev(EventStepStarted, 0, `{"attempt":2}`), `{"attempt":2,"step_uncertain":true}`)
	write(StepUpdate{Status: StepStatusPending, Attempts: 1, Uncertain: false},
		ev(EventCallWithdrawn, 0, `{"kind":"action"}`), `{"kind":"action","step_uncertain":false}`)
	write(StepUpdate{Status: StepStatusExecuting, Attempts: 2, Uncertain: true},
		ev(EventStepStarted, 0, `{"attempt":2}`), `{"attempt":2,"step_uncertain":true}`)
	write(StepUpdate{Status: StepStatusFailed, Attempts: 2, Error: "402", Uncertain: true},
		ev(EventStepFailed, 0, `{"error":"402","uncertain":false}`), `{"error":"402","step_uncertain":true,"uncertain":false}`)
	rebuilt, err := Replay(trail)
	if err != nil {
		t.Fatal(err)
	}
	if st := rebuilt.Steps[0]; st.Status != StepStatusFailed || !st.Uncertain || st.Error != "402" {
		t.Errorf("rebuilt step = %s, uncertain %v, error %q; want Failed, uncertain, 402", st.Status, st.Uncertain, st.Error)
	}
}

// The hash format is fixed: stored trails written by earlier versions
// must keep verifying. These are hashes of fixed events as the chain has
// always computed them, plain and keyed.
func TestHashFormatIsFixed(t *testing.T) {
	step := 3
	id, _ := ParseID("0190f3c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f")
	sid, _ := ParseID("0190f3c2-7a1b-7c3d-8e4f-000000000001")
	at := time.Date(2026, 12, 1, 12, 30, 45, 123456000, time.UTC)
	first := Event{ID: id, SagaID: sid, Seq: 1, Type: EventSagaCreated, Data: json.RawMessage(`{"b":1,"a":"x"}`), InstanceID: "i-1", Actor: "ops", CreatedAt: at}
	second := Event{ID: id, SagaID: sid, Seq: 2, Type: EventStepCompleted, StepIndex: &step, CreatedAt: at, InstanceID: string(make([]byte, 100))}
	for _, tc := range []struct {
		chain         *Chain
		first, second string
	}{
		{nil, "5181f4c11d2b324c65822a05080038db6cae241dafaee048f7130e98fd8201de", "32c05ac82151d20527bbdfef78c4f3d5fafa046d11e4d0e1e1e77d09c3a98b2a"},
		{NewChain(nil), "5181f4c11d2b324c65822a05080038db6cae241dafaee048f7130e98fd8201de", "32c05ac82151d20527bbdfef78c4f3d5fafa046d11e4d0e1e1e77d09c3a98b2a"},
		{NewChain([]byte("an audit key of thirty-two bytes")), "1ac016d6fa92af3c502c85e75882eb6269ca04610fe21453aba8ce5d42dc71f7", "26ecc45cb39770d1d79927e08dbe0b6a01d8835af3c6269ad6c2eca5b04d58ed"},
	} {
		// Twice: the second round reuses pooled hash states.
		for range 2 {
			h1, err := tc.chain.Hash(nil, &first)
			if err != nil {
				t.Fatal(err)
			}
			h2, err := tc.chain.Hash(h1, &second)
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(h1); got != tc.first {
				t.Errorf("keyed %v: first hash %s, want %s", tc.chain.Keyed(), got, tc.first)
			}
			if got := hex.EncodeToString(h2); got != tc.second {
				t.Errorf("keyed %v: second hash %s, want %s", tc.chain.Keyed(), got, tc.second)
			}
		}
	}
}
