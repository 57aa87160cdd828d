package sim

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// order is what a definition says about the order of its steps, for the
// invariants: what each step depends on, what depends on it
// (transitively), and which steps have a compensation.
type order struct {
	deps        [][]int
	descendants [][]int
	compensable []bool
}

func newOrder(def *saga.Definition) *order {
	g := def.Graph()
	rev := saga.Graph{Deps: g.Dependents, Dependents: g.Deps}
	o := &order{deps: g.Deps}
	for i, st := range def.Steps {
		o.descendants = append(o.descendants, rev.Ancestors(i))
		o.compensable = append(o.compensable, st.Compensation != nil)
	}
	return o
}

// undone reports whether step k of sg needs no undoing or was undone.
func (o *order) undone(sg *saga.Saga, k int) bool {
	st := sg.Steps[k]
	needs := o.compensable[k] && (st.Status == saga.StepStatusCompleted || (st.Status == saga.StepStatusFailed && st.Uncertain))
	return !needs || (st.Compensation != nil && st.Compensation.Status == saga.CompensationStatusCompleted)
}

func compareIDs(a, b saga.ID) int { return bytes.Compare(a[:], b[:]) }

// checkSend checks a call as r sends it: under a live lease, after the
// durable write that started it, within the saga's parallelism, and in
// the order of the saga's graph (actions) or its reverse (compensations).
func (r *runner) checkSend(c *participant.Call) {
	w := r.in.w
	if !w.db.mem.Inspect(r.id, func(sg *saga.Saga) { r.checkSendOf(c, sg) }) {
		w.violate(r.id, "a call was sent for a saga the store does not hold")
	}
}

func (r *runner) checkSendOf(c *participant.Call, sg *saga.Saga) {
	w := r.in.w
	now := w.db.precise()
	what := string(c.Kind) + " of step " + c.StepName
	if sg.OwnerID != r.in.name || sg.LeaseEpoch != r.lease.Epoch || sg.LeaseExpiresAt == nil || !sg.LeaseExpiresAt.After(now) {
		w.fault("violation: call without a live lease")
		w.violate(r.id, "%s (attempt %d) sent by %s under lease epoch %d, but the lease is %s/%d until %v (store now %v)",
			what, c.Attempt, r.in.name, r.lease.Epoch, sg.OwnerID, sg.LeaseEpoch, sg.LeaseExpiresAt, now)
	}
	st := sg.Steps[c.StepIndex]
	if c.Kind == participant.KindAction {
		if st.Status != saga.StepStatusExecuting || st.Attempts != c.Attempt {
			w.violate(r.id, "%s attempt %d sent before the write that starts it (stored: %s, attempt %d)", what, c.Attempt, st.Status, st.Attempts)
		}
	} else if comp := st.Compensation; comp == nil || comp.Status != saga.CompensationStatusExecuting || comp.Attempts != c.Attempt {
		w.violate(r.id, "%s attempt %d sent before the write that starts it (stored: %+v)", what, c.Attempt, comp)
	}
	if r.inFlight >= r.loop.MaxParallel() {
		w.violate(r.id, "%s sent with %d calls of the saga in flight (at most %d at once)", what, r.inFlight, r.loop.MaxParallel())
	}
	o := w.db.orders[r.id]
	if c.Kind == participant.KindAction {
		for _, d := range o.deps[c.StepIndex] {
			if sg.Steps[d].Status != saga.StepStatusCompleted {
				w.violate(r.id, "%s sent while step %d it depends on is %s", what, d, sg.Steps[d].Status)
			}
		}
		return
	}
	for _, k := range o.descendants[c.StepIndex] {
		if !o.undone(sg, k) {
			w.violate(r.id, "%s sent while step %d that depends on it is not undone", what, k)
		}
	}
}

// check checks the invariants of the run's end on what the store holds.
func (w *world) check() {
	ctx := context.Background()
	var stored []*saga.Saga
	f := saga.Filter{Limit: saga.ListLimitMax}
	for {
		page, err := w.db.mem.ListSagas(ctx, f)
		if err != nil {
			w.violate(saga.NilID, "list sagas: %v", err)
			return
		}
		stored = append(stored, page.Sagas...)
		if page.Next == nil {
			break
		}
		f.Cursor = page.Next
	}
	byKey := map[string]saga.ID{}
	for _, s := range stored {
		if other, dup := byKey[s.IdempotencyKey]; dup {
			w.violate(s.ID, "a second saga for idempotency key %q (the first is %s)", s.IdempotencyKey, other)
		}
		byKey[s.IdempotencyKey] = s.ID
	}
	for k, id := range w.client.acked {
		key := w.client.defs[k].IdempotencyKey
		switch {
		case id.IsZero():
			w.violate(saga.NilID, "saga %q was never acknowledged to its client", key)
		case byKey[key] != id:
			w.violate(id, "lost: the client was told of it for key %q, the store holds %s", key, byKey[key])
		}
	}
	slices.SortFunc(stored, func(a, b *saga.Saga) int { return compareIDs(a.ID, b.ID) })
	for _, s := range stored {
		w.checkSaga(ctx, s.ID)
	}
}

// checkSaga checks one saga at the end of the run.
func (w *world) checkSaga(ctx context.Context, id saga.ID) {
	var sg *saga.Saga
	if !w.db.mem.Inspect(id, func(s *saga.Saga) { sg = s }) {
		w.violate(id, "listed, but the store does not hold it")
		return
	}
	// The run is over: nothing writes the saga while it is checked.
	w.stats.Ended[sg.Status]++
	switch {
	case !sg.Status.Terminal():
		w.violate(id, "did not end: %s", sg.Status)
	case sg.Status == saga.SagaStatusFailed && sg.Error == "":
		w.violate(id, "Failed without a reason")
	case sg.Status != saga.SagaStatusCompleted && sg.Error == "":
		w.violate(id, "%s without a reason", sg.Status)
	}
	if sg.Status.Terminal() && (sg.OwnerID != "" || sg.NextRunAt != nil || sg.CompensateTo != "") {
		w.violate(id, "ended %s but still leased to %q, due at %v or compensating to %q", sg.Status, sg.OwnerID, sg.NextRunAt, sg.CompensateTo)
	}
	completed := 0
	for _, st := range sg.Steps {
		if st.Status == saga.StepStatusCompleted {
			completed++
		}
	}
	if sg.CompletedSteps != completed {
		w.violate(id, "completed_steps is %d, %d steps are Completed", sg.CompletedSteps, completed)
	}

	events, err := w.db.mem.ListEvents(ctx, id, 0, 0)
	if err != nil {
		w.violate(id, "list events: %v", err)
		return
	}
	w.checkTrail(id, events)
	if w.replayEvery <= 1 || binary.BigEndian.Uint64(id[8:])%uint64(w.replayEvery) == 0 {
		w.checkReplay(sg, events)
		w.stats.Replayed++
	}
	w.checkEffects(sg)
}

// checkTrail checks that the audit trail holds each event of each
// committed write once, in the order written.
func (w *world) checkTrail(id saga.ID, events []saga.Event) {
	seen := make(map[saga.ID]bool, len(events))
	for i, e := range events {
		if e.Seq != int64(i+1) {
			w.violate(id, "event %d has seq %d", i+1, e.Seq)
			return
		}
		if seen[e.ID] {
			w.violate(id, "event %s (%s, seq %d) is in the trail twice", e.ID, e.Type, e.Seq)
			return
		}
		seen[e.ID] = true
	}
	// The engine's events, those of the committed transitions, in the
	// order committed; the store's own are beside them.
	want := w.db.trail[id]
	k := 0
	for _, e := range events {
		if storeEvents[e.Type] {
			continue
		}
		if k == len(want) || e.ID != want[k] {
			w.violate(id, "event %d of the trail is %s (%s), not the next event the committed writes wrote", e.Seq, e.ID, e.Type)
			return
		}
		k++
	}
	if k != len(want) {
		w.violate(id, "the trail holds %d events of the engine, the committed writes %d", k, len(want))
	}
}

// storeEvents are the events a store writes itself (operator requests,
// legal holds), beside those of the engine's transitions.
var storeEvents = map[saga.EventType]bool{
	saga.EventOperatorRequested:         true,
	saga.EventOperatorRequestSuperseded: true,
	saga.EventOperatorRequestCarriedOut: true,
	saga.EventLegalHoldChanged:          true,
}

// checkReplay rebuilds the saga from its trail alone (saga.Replay, the
// audit's own replay) and compares it with what the store holds; it also
// checks the trail's hash chain.
func (w *world) checkReplay(sg *saga.Saga, events []saga.Event) {
	rebuilt, err := saga.Replay(events)
	if err != nil {
		w.violate(sg.ID, "the trail does not replay: %v", err)
		return
	}
	for _, d := range saga.ReplayDiff(sg, rebuilt) {
		w.violate(sg.ID, "the trail replays to another saga: %s", d)
	}
	var last []byte
	if n := len(events); n > 0 {
		last = events[n-1].Hash
	}
	if b := w.db.chain.Verify(saga.ChainHead{SagaID: sg.ID, Seq: sg.EventSeq, Hash: last}, events); b != nil {
		w.violate(sg.ID, "the trail's hash chain breaks at seq %d: %s", b.Seq, b.Problem)
	}
}

// checkEffects checks the saga's effects at its participants against its
// end: a completed saga took each step's effect once (and stored the
// participant's answer); a compensated, cancelled or timed-out saga left
// no effect of a step with a compensation.
func (w *world) checkEffects(sg *saga.Saga) {
	for i, st := range sg.Steps {
		k := stepKey{sg.ID, i}
		e := w.parts.effect[k]
		if e == nil {
			e = &effect{}
		}
		if e.applied > 1 || e.undone > 1 {
			w.violate(sg.ID, "step %d applied %d times and undone %d times", i, e.applied, e.undone)
		}
		switch sg.Status {
		case saga.SagaStatusCompleted:
			if e.applied != 1 || e.undone != 0 {
				w.violate(sg.ID, "completed, but step %d was applied %d times and undone %d times", i, e.applied, e.undone)
			}
			key := participant.Call{SagaID: sg.ID, StepIndex: i, Kind: participant.KindAction}.IdempotencyKey()
			if a := w.parts.keys[key]; a == nil || !bytes.Equal(a.output, st.Output) {
				w.violate(sg.ID, "step %d stored output %s, its participant answered %v", i, st.Output, a)
			}
		case saga.SagaStatusCompensated, saga.SagaStatusCancelled, saga.SagaStatusTimedOut:
			if sg.Definition.Steps[i].Compensation != nil && e.applied != e.undone {
				w.violate(sg.ID, "%s, but step %d (%s, uncertain %v) still has its effect at its participant", sg.Status, i, st.Status, st.Uncertain)
			}
		}
	}
}
