package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// The audit trail: every store seals what it writes with the plain chain
// (the suite's stores are made without an AUDIT_HMAC_KEY), attributes
// operator requests to the requester of their context, keeps tombstones of
// what it deletes, and reads its trail in bulk (saga.AuditStore).

// plainChain verifies the stores' chains.
var plainChain = saga.NewChain(nil)

// requester is the operator of the suite's requests.
var requester = saga.Requester{Actor: "lab-ops", Reason: "maintenance window", Address: "192.0.2.7:41000", Instance: "api-1"}

func withRequester(ctx context.Context) context.Context { return saga.WithRequester(ctx, requester) }

// auditStore returns the store as a saga.AuditStore, failing the test when
// it is not one.
func (h *harness) auditStore() saga.AuditStore {
	h.t.Helper()
	as, ok := h.store.(saga.AuditStore)
	if !ok {
		h.t.Fatalf("%T does not implement saga.AuditStore", h.store)
	}
	return as
}

// chain reads the head and events of one saga through Chains.
func (h *harness) chain(id saga.ID) (saga.ChainHead, []saga.Event) {
	h.t.Helper()
	var (
		head   saga.ChainHead
		events []saga.Event
	)
	n, last, err := h.auditStore().Chains(h.ctx, saga.ChainQuery{IDs: []saga.ID{id}},
		func(c saga.ChainHead) error { head = c; return nil },
		func(e saga.Event) error { events = append(events, e); return nil })
	if err != nil || n != 1 || last != id {
		h.t.Fatalf("Chains(%s) = %d sagas, last %s, %v; want the saga", id, n, last, err)
	}
	return head, events
}

// verified checks that a saga's chain holds and that ListEvents and Chains
// give the same events.
func (h *harness) verified(id saga.ID) []saga.Event {
	h.t.Helper()
	head, events := h.chain(id)
	if b := plainChain.Verify(head, events); b != nil {
		h.t.Fatalf("the chain of saga %s does not verify: %v", id, b)
	}
	listed := h.events(id)
	if len(listed) != len(events) {
		h.t.Fatalf("ListEvents gave %d events, Chains %d", len(listed), len(events))
	}
	for i := range listed {
		if !bytes.Equal(listed[i].Hash, events[i].Hash) || listed[i].Actor != events[i].Actor || listed[i].Seq != events[i].Seq {
			h.t.Errorf("event %d: ListEvents and Chains differ (%+v, %+v)", i, listed[i], events[i])
		}
	}
	return events
}

// data decodes an event's data.
func data(t *testing.T, e saga.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatalf("event %d (%s) data %s: %v", e.Seq, e.Type, e.Data, err)
	}
	return m
}

func testAudit(t *testing.T, newStore factory) {
	t.Run("EveryWriteIsChained", func(t *testing.T) {
		h := setup(t, newStore)
		created := event(saga.EventSagaCreated, nil)
		sg := h.create(NewTestSaga("w", 2), longLease, created, event(saga.EventSagaStarted, nil))
		h.verified(sg.ID)
		for st := range 2 {
			h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting,
				Steps:  []saga.StepUpdate{{Index: st, Status: saga.StepStatusExecuting, Attempts: 1, Start: true}},
				Events: []saga.Event{{Type: saga.EventStepStarted, StepIndex: intp(st), InstanceID: "w", Data: json.RawMessage(`{"attempt": 1, "kind": "action"}`)}}})
			h.verified(sg.ID)
		}
		// A write without events leaves the chain as it was.
		before, _ := h.chain(sg.ID)
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, Status: saga.SagaStatusExecuting})
		if after, _ := h.chain(sg.ID); after.Seq != before.Seq || !bytes.Equal(after.Hash, before.Hash) {
			t.Errorf("a write without events moved the head from %d to %d", before.Seq, after.Seq)
		}
		if _, err := h.store.RequestControl(withRequester(h.ctx), sg.ID, saga.ControlPause); err != nil {
			t.Fatal(err)
		}
		if _, err := h.store.SetLegalHold(withRequester(h.ctx), sg.ID, true); err != nil {
			t.Fatal(err)
		}
		events := h.verified(sg.ID)
		last := events[len(events)-1]
		if last.Type != saga.EventLegalHoldChanged || last.Actor != requester.Actor || data(t, last)["legal_hold"] != true {
			t.Errorf("last event = %s by %q: %s, want LegalHoldChanged by lab-ops", last.Type, last.Actor, last.Data)
		}
		if s := h.get(sg.ID); !s.LegalHold || s.EventSeq != last.Seq {
			t.Errorf("saga after the hold: legal hold %v, event seq %d; want true, %d", s.LegalHold, s.EventSeq, last.Seq)
		}
		for i, e := range events {
			if e.Seq != int64(i+1) || len(e.Hash) != saga.HashSize || e.SagaID != sg.ID {
				t.Errorf("event %d = seq %d saga %s hash %x", i, e.Seq, e.SagaID, e.Hash)
			}
		}
	})

	t.Run("CreationAttributedAndComplete", func(t *testing.T) {
		h := setup(t, newStore)
		in := NewTestSaga("", 1)
		in.IdempotencyKey = "audit-key-1"
		in.Definition.IdempotencyKey = in.IdempotencyKey
		sg, _, err := h.store.CreateSaga(withRequester(h.ctx), saga.NewSaga{Saga: in,
			Events: []saga.Event{{Type: saga.EventSagaCreated, InstanceID: "api-1", Data: json.RawMessage(`{"name": "test-saga", "total_steps": 1}`)}}})
		if err != nil {
			t.Fatal(err)
		}
		events := h.verified(sg.ID)
		e := events[0]
		d := data(t, e)
		if e.Actor != requester.Actor || d["reason"] != requester.Reason || d["client_addr"] != requester.Address ||
			d["transaction_id"] != in.TransactionID.String() || d["idempotency_key"] != "audit-key-1" || d["definition"] == nil ||
			d["name"] != "test-saga" || d["user_id"] != in.UserID.String() {
			t.Errorf("SagaCreated = actor %q data %s", e.Actor, e.Data)
		}
		// The event alone rebuilds the saga.
		rebuilt, err := saga.Replay(events)
		if err != nil {
			t.Fatal(err)
		}
		if diff := saga.ReplayDiff(h.get(sg.ID), rebuilt); diff != nil {
			t.Errorf("a saga just created differs from its replay: %v", diff)
		}
	})

	t.Run("OperatorRequests", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.drive(h.create(NewTestSaga("w", 1), longLease, event(saga.EventSagaCreated, nil)), saga.SagaStatusExecuting, false)
		ctx := withRequester(h.ctx)
		if _, err := h.store.RequestControl(ctx, sg.ID, saga.ControlPause); err != nil {
			t.Fatal(err)
		}
		other := saga.WithRequester(h.ctx, saga.Requester{Actor: "ci-bot", Instance: "api-2"})
		if _, err := h.store.RequestControl(other, sg.ID, saga.ControlCancel); err != nil {
			t.Fatal(err)
		}
		events := h.verified(sg.ID)
		n := len(events)
		pause, superseded, cancel := events[n-3], events[n-2], events[n-1]
		if pause.Type != saga.EventOperatorRequested || pause.Actor != "lab-ops" || pause.InstanceID != "api-1" ||
			data(t, pause)["action"] != "pause" || data(t, pause)["reason"] != requester.Reason || data(t, pause)["client_addr"] != requester.Address {
			t.Errorf("the pause request = %s by %q on %q: %s", pause.Type, pause.Actor, pause.InstanceID, pause.Data)
		}
		sd := data(t, superseded)
		if superseded.Type != saga.EventOperatorRequestSuperseded || superseded.Actor != "ci-bot" || sd["action"] != "pause" ||
			sd["superseded_by"] != "cancel" || sd["requested_by"] != "lab-ops" || sd["request_seq"] != float64(pause.Seq) {
			t.Errorf("the supersession = %s by %q: %s", superseded.Type, superseded.Actor, superseded.Data)
		}
		if cancel.Type != saga.EventOperatorRequested || cancel.Actor != "ci-bot" || data(t, cancel)["action"] != "cancel" {
			t.Errorf("the cancel request = %s by %q: %s", cancel.Type, cancel.Actor, cancel.Data)
		}
		// A write that carries out another request closes nothing.
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, ClearControl: saga.ControlPause})
		if got := h.events(sg.ID); len(got) != n {
			t.Errorf("clearing a request that is not pending wrote %d events", len(got)-n)
		}
		// The write that carries the cancel out closes it, for its asker.
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, ClearControl: saga.ControlCancel,
			Status: saga.SagaStatusCompensating, CompensateTo: saga.SagaStatusCancelled, Error: "cancelled by operator",
			Events: []saga.Event{{Type: saga.EventSagaCompensating, InstanceID: "w", Data: json.RawMessage(`{"compensate_to": "Cancelled"}`)}}})
		events = h.verified(sg.ID)
		compensating, closed := events[len(events)-2], events[len(events)-1]
		cd := data(t, closed)
		if closed.Type != saga.EventOperatorRequestCarriedOut || closed.Actor != "ci-bot" || closed.InstanceID != "w" ||
			cd["action"] != "cancel" || cd["request_seq"] != float64(cancel.Seq) || cd["outcome"] != saga.OutcomeCarriedOut {
			t.Errorf("the closing event = %s by %q on %q: %s", closed.Type, closed.Actor, closed.InstanceID, closed.Data)
		}
		if d := data(t, compensating); d["error"] != "cancelled by operator" || d["compensate_to"] != "Cancelled" {
			t.Errorf("SagaCompensating data %s lacks the saga's error", compensating.Data)
		}
		if s := h.get(sg.ID); s.Control != saga.ControlNone {
			t.Errorf("control %q after the request was carried out", s.Control)
		}
	})

	t.Run("EventsCompletedFromTheirRows", func(t *testing.T) {
		h := setup(t, newStore)
		sg := h.drive(h.create(NewTestSaga("w", 1), longLease, event(saga.EventSagaCreated, nil)), saga.SagaStatusExecuting, false)
		h.apply(saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: longLease, CompletedSteps: 1,
			Steps:  []saga.StepUpdate{{Index: 0, Status: saga.StepStatusCompleted, Attempts: 1, Output: json.RawMessage(`{"id": 7}`), End: true}},
			Events: []saga.Event{{Type: saga.EventStepCompleted, StepIndex: intp(0), Data: json.RawMessage(`{"attempt": 1}`)}}})
		events := h.verified(sg.ID)
		if d := data(t, events[len(events)-1]); d["attempt"] != 1.0 || !jsonEqual(mustJSON(t, d["output"]), []byte(`{"id": 7}`)) {
			t.Errorf("StepCompleted data %s, want the attempt and the output", events[len(events)-1].Data)
		}
	})

	t.Run("Tombstones", func(t *testing.T) {
		h := setup(t, newStore)
		h.now()
		kept := h.drive(h.create(NewTestSaga("w", 1), longLease, event(saga.EventSagaCreated, nil)), saga.SagaStatusCompleted, true)
		gone := h.drive(h.create(NewTestSaga("w", 1), longLease, event(saga.EventSagaCreated, nil)), saga.SagaStatusCancelled, true)
		if _, err := h.store.SetLegalHold(h.ctx, kept.ID, true); err != nil {
			t.Fatal(err)
		}
		head, _ := h.chain(gone.ID)
		h.waitPast("the ends", *gone.CompletedAt)
		before := h.now()
		n, err := h.store.DeleteFinished(withRequester(h.ctx), 0, 10)
		if err != nil || n != 1 {
			t.Fatalf("DeleteFinished = %d, %v; want the one saga not on hold", n, err)
		}
		events := h.verified(kept.ID) // the held saga keeps its whole trail
		if events[len(events)-1].Type != saga.EventLegalHoldChanged {
			t.Errorf("the held saga's last event is %s", events[len(events)-1].Type)
		}
		var tombs []saga.Deletion
		err = h.auditStore().Deletions(h.ctx, before.Add(-time.Minute), time.Now().Add(time.Hour), func(d saga.Deletion) error {
			tombs = append(tombs, d)
			return nil
		})
		if err != nil || len(tombs) != 1 {
			t.Fatalf("Deletions = %d tombstones, %v; want 1", len(tombs), err)
		}
		d := tombs[0]
		if d.SagaID != gone.ID || d.Status != saga.SagaStatusCancelled || d.EventSeq != head.Seq || !bytes.Equal(d.LastHash, head.Hash) ||
			d.Actor != requester.Actor || d.Reason != requester.Reason || d.Address != requester.Address ||
			d.Rule != saga.RetentionRule(saga.SagaStatusCancelled, 0) || d.CompletedAt == nil || !near(d.DeletedAt, before) || d.Name != "test-saga" {
			t.Errorf("tombstone = %+v, want saga %s Cancelled at seq %d by lab-ops", d, gone.ID, head.Seq)
		}
		// Lifted, the hold no longer keeps it.
		if _, err := h.store.SetLegalHold(h.ctx, kept.ID, false); err != nil {
			t.Fatal(err)
		}
		if n, err := h.store.DeleteFinished(h.ctx, 0, 10); err != nil || n != 1 {
			t.Errorf("DeleteFinished after the hold was lifted = %d, %v; want 1", n, err)
		}
		if _, err := h.store.SetLegalHold(h.ctx, saga.NewID(), true); !isNotFoundErr(err) {
			t.Errorf("SetLegalHold of an unknown saga: %v, want ErrNotFound", err)
		}
	})

	t.Run("BulkReads", func(t *testing.T) {
		h := setup(t, newStore)
		sagas := h.createN(5, "w", longLease)
		as := h.auditStore()
		// Chains pages by id.
		var seen []saga.ID
		q := saga.ChainQuery{Limit: 2}
		for {
			n, last, err := as.Chains(h.ctx, q, func(c saga.ChainHead) error { seen = append(seen, c.SagaID); return nil },
				func(saga.Event) error { return nil })
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
			q.After = last
		}
		if len(seen) != 5 {
			t.Fatalf("Chains paged through %d sagas, want 5", len(seen))
		}
		for i := 1; i < len(seen); i++ {
			if bytes.Compare(seen[i-1][:], seen[i][:]) >= 0 {
				t.Errorf("Chains not in id order: %v", seen)
			}
		}
		// Since selects the sagas written since (the harness's clock saga
		// aside: reading the clock writes it).
		mark := h.now()
		h.apply(saga.Transition{SagaID: sagas[2].ID, Lease: sagas[2].Lease(), LeaseFor: longLease,
			Events: []saga.Event{{Type: saga.EventLeaseTaken}}})
		var since []saga.ID
		_, _, err := as.Chains(h.ctx, saga.ChainQuery{Since: mark}, func(c saga.ChainHead) error {
			if c.SagaID != h.clock.ID {
				since = append(since, c.SagaID)
			}
			return nil
		}, func(saga.Event) error { return nil })
		if err != nil || len(since) != 1 || since[0] != sagas[2].ID {
			t.Errorf("Chains since %v = %v (%v), want the saga written since", mark, since, err)
		}
		// Export: the time range, with the hash before each event.
		var exported []saga.Event
		prevOf := map[saga.ID][]byte{}
		err = as.ExportEvents(h.ctx, mark, time.Now().Add(time.Hour), func(e saga.Event, prev []byte) error {
			exported = append(exported, e)
			prevOf[e.ID] = prev
			return nil
		})
		if err != nil || len(exported) != 1 || exported[0].Type != saga.EventLeaseTaken {
			t.Fatalf("ExportEvents since %v = %d events (%v), want the LeaseTaken", mark, len(exported), err)
		}
		all := h.events(sagas[2].ID)
		if !bytes.Equal(prevOf[exported[0].ID], all[len(all)-2].Hash) {
			t.Errorf("exported prev hash %x, want the hash of event %d", prevOf[exported[0].ID], len(all)-1)
		}
	})
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func isNotFoundErr(err error) bool { return err != nil && saga.ErrorCodeOf(err) == saga.ECodeNotFound }
