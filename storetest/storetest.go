package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Polling of asynchronous outcomes (a lease expiring, a deadline passing).
const (
	pollTimeout  = 20 * time.Second
	pollInterval = 5 * time.Millisecond
)

// shortLease is a lease that expires while a test waits for it.
const shortLease = 30 * time.Millisecond

// longLease outlives any test.
const longLease = time.Hour

// slack bounds "roughly now + d" checks of store-computed times. It is a
// sanity bound against wrong units or a wrong base, not a timing assertion.
const slack = time.Minute

// factory makes an empty store for one test.
type factory = func(t *testing.T) saga.Store

// Run runs the conformance suite against stores made by newStore. Each call
// of newStore must return an empty store (a fresh database for PostgreSQL)
// that the suite may Close. Subtests use t.Run with stable names and run in
// parallel, each on its own store.
func Run(t *testing.T, newStore func(t *testing.T) saga.Store) {
	t.Helper()
	groups := []struct {
		name string
		run  func(*testing.T, factory)
	}{
		{"CreateSaga", testCreateSaga},
		{"GetSaga", testGetSaga},
		{"SagaStatuses", testSagaStatuses},
		{"Apply", testApply},
		{"ClaimSagas", testClaimSagas},
		{"RenewLeases", testRenewLeases},
		{"RequestControl", testRequestControl},
		{"ListSagas", testListSagas},
		{"ListEvents", testListEvents},
		{"LatestCheckpoint", testLatestCheckpoint},
		{"Stats", testStats},
		{"DeleteFinished", testDeleteFinished},
		{"DeleteExpired", testDeleteExpired},
		{"Health", testHealth},
		{"Gauges", testGauges},
		{"Audit", testAudit},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			g.run(t, newStore)
		})
	}
}

// NewTestSaga returns a valid saga ready for Store.CreateSaga: a fresh id,
// status Created, a definition of steps steps (each with an action, a
// compensation and a JSON body), a client context, a transaction and a user
// id, owner as OwnerID, and one Pending step row per definition step whose
// input is the action's body.
func NewTestSaga(owner string, steps int) *saga.Saga {
	txID := saga.NewID()
	userID := saga.NewID()
	def := saga.Definition{
		Name:          "test-saga",
		TransactionID: &txID,
		UserID:        &userID,
		Context:       json.RawMessage(`{"order_id": "o-1", "amount": 42, "items": ["a", "b"]}`),
		Steps:         make([]saga.StepDefinition, steps),
		// Kept with the definition, so that a claim on another instance
		// continues the submit request's trace.
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	rows := make([]saga.Step, steps)
	for i := range steps {
		name := fmt.Sprintf("step-%d", i)
		body := json.RawMessage(fmt.Sprintf(`{"step": %d, "name": %q}`, i, name))
		def.Steps[i] = saga.StepDefinition{
			Name: name,
			Action: saga.Request{
				Method:  "POST",
				URL:     fmt.Sprintf("http://participant.test/steps/%d", i),
				Headers: map[string]string{"X-Test": name},
				Body:    body,
			},
			Compensation: &saga.Request{
				Method: "DELETE",
				URL:    fmt.Sprintf("http://participant.test/steps/%d", i),
			},
			Retry: &saga.RetryPolicy{MaxAttempts: 2, InitialBackoffMs: 10},
		}
		rows[i] = saga.Step{
			Index:  i,
			Name:   name,
			Status: saga.StepStatusPending,
			Input:  append(json.RawMessage(nil), body...),
		}
	}
	return &saga.Saga{
		ID:            saga.NewID(),
		Name:          def.Name,
		Status:        saga.SagaStatusCreated,
		TransactionID: txID,
		UserID:        &userID,
		Context:       append(json.RawMessage(nil), def.Context...),
		Definition:    def,
		TotalSteps:    steps,
		OwnerID:       owner,
		Steps:         rows,
	}
}

// harness is the bundle of one test: its store and helpers around it.
type harness struct {
	t     *testing.T
	ctx   context.Context
	store saga.Store
	clock *saga.Saga // a saga leased for long, whose Apply reads the store clock
}

// setup marks the test parallel and gives it an empty store, closed at the end.
func setup(t *testing.T, newStore factory) *harness {
	t.Helper()
	t.Parallel()
	s := newStore(t)
	t.Cleanup(s.Close)
	return &harness{t: t, ctx: t.Context(), store: s}
}

// create stores sg (leased for leaseFor when > 0) with the given events.
func (h *harness) create(sg *saga.Saga, leaseFor time.Duration, events ...saga.Event) *saga.Saga {
	h.t.Helper()
	got, existed, err := h.store.CreateSaga(h.ctx, saga.NewSaga{Saga: sg, Events: events, LeaseFor: leaseFor})
	if err != nil {
		h.t.Fatalf("CreateSaga: %v", err)
	}
	if existed {
		h.t.Fatalf("CreateSaga of a new saga answered existed = true")
	}
	return got
}

// createN stores n new sagas of steps steps leased to owner for leaseFor.
func (h *harness) createN(n int, owner string, leaseFor time.Duration) []*saga.Saga {
	h.t.Helper()
	out := make([]*saga.Saga, n)
	for i := range n {
		out[i] = h.create(NewTestSaga(owner, 2), leaseFor, event(saga.EventSagaCreated, nil))
	}
	return out
}

// get loads a saga that must exist.
func (h *harness) get(id saga.ID) *saga.Saga {
	h.t.Helper()
	got, err := h.store.GetSaga(h.ctx, id)
	if err != nil {
		h.t.Fatalf("GetSaga(%s): %v", id, err)
	}
	return got
}

// apply writes a transition that must succeed.
func (h *harness) apply(tr saga.Transition) saga.Applied {
	h.t.Helper()
	a, err := h.store.Apply(h.ctx, tr)
	if err != nil {
		h.t.Fatalf("Apply(%s): %v", tr.SagaID, err)
	}
	return a
}

// events lists every event of a saga that must exist.
func (h *harness) events(id saga.ID) []saga.Event {
	h.t.Helper()
	evs, err := h.store.ListEvents(h.ctx, id, 0, 0)
	if err != nil {
		h.t.Fatalf("ListEvents(%s): %v", id, err)
	}
	return evs
}

// checkpoint returns the latest checkpoint of a saga that must exist.
func (h *harness) checkpoint(id saga.ID) *saga.Checkpoint {
	h.t.Helper()
	cp, err := h.store.LatestCheckpoint(h.ctx, id)
	if err != nil {
		h.t.Fatalf("LatestCheckpoint(%s): %v", id, err)
	}
	return cp
}

// claim claims up to limit sagas for owner.
func (h *harness) claim(owner string, leaseFor time.Duration, limit int) []*saga.Saga {
	h.t.Helper()
	got, err := h.store.ClaimSagas(h.ctx, owner, leaseFor, limit)
	if err != nil {
		h.t.Fatalf("ClaimSagas(%s): %v", owner, err)
	}
	return got
}

// snapshot is everything the store holds about one saga, to check that a
// refused write changed nothing.
type snapshot struct {
	Saga       *saga.Saga
	Events     []saga.Event
	Checkpoint *saga.Checkpoint
}

func (h *harness) snapshot(id saga.ID) snapshot {
	h.t.Helper()
	return snapshot{Saga: h.get(id), Events: h.events(id), Checkpoint: h.checkpoint(id)}
}

// unchanged fails the test when the saga differs from before.
func (h *harness) unchanged(before snapshot) {
	h.t.Helper()
	after := h.snapshot(before.Saga.ID)
	if !reflect.DeepEqual(before.Saga, after.Saga) {
		h.t.Errorf("saga changed:\nbefore %+v\nafter  %+v", before.Saga, after.Saga)
	}
	if !reflect.DeepEqual(before.Events, after.Events) {
		h.t.Errorf("events changed:\nbefore %+v\nafter  %+v", before.Events, after.Events)
	}
	if !reflect.DeepEqual(before.Checkpoint, after.Checkpoint) {
		h.t.Errorf("checkpoint changed:\nbefore %+v\nafter  %+v", before.Checkpoint, after.Checkpoint)
	}
}

// now reads the store's clock: the Now of a no-op Apply on a saga created
// for that purpose (leased for long, never runnable by others).
func (h *harness) now() time.Time {
	h.t.Helper()
	if h.clock == nil {
		sg := NewTestSaga("storetest-clock", 1)
		sg.Name = "storetest-clock"
		sg.Definition.Name = sg.Name
		h.clock = h.create(sg, longLease)
	}
	a := h.apply(saga.Transition{SagaID: h.clock.ID, Lease: h.clock.Lease(), LeaseFor: longLease})
	return a.Now
}

// clockMargin is how far past a time waitPast waits: a store's clock is
// its estimate of the database's (the PostgreSQL store's is good to about
// the round trip of its best sample), and the database judges the next
// write by its own, which on a loaded machine may lag the estimate.
const clockMargin = 10 * time.Millisecond

// waitPast polls the store clock until it is clockMargin after t.
func (h *harness) waitPast(what string, t time.Time) {
	h.t.Helper()
	h.eventually(what, func() bool { return h.now().After(t.Add(clockMargin)) })
}

// eventually polls cond until it holds, failing the test after pollTimeout.
func (h *harness) eventually(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(pollTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %v waiting for %s", pollTimeout, what)
		}
		time.Sleep(pollInterval)
	}
}

// drivePaths are the status changes (each allowed by saga.CanTransition)
// that take a Created saga to each status.
var drivePaths = map[saga.SagaStatus][]saga.SagaStatus{
	saga.SagaStatusCreated:      nil,
	saga.SagaStatusExecuting:    {saga.SagaStatusExecuting},
	saga.SagaStatusCompensating: {saga.SagaStatusExecuting, saga.SagaStatusCompensating},
	saga.SagaStatusCompleted:    {saga.SagaStatusExecuting, saga.SagaStatusCompleted},
	saga.SagaStatusCompensated:  {saga.SagaStatusExecuting, saga.SagaStatusCompensating, saga.SagaStatusCompensated},
	saga.SagaStatusFailed:       {saga.SagaStatusExecuting, saga.SagaStatusCompensating, saga.SagaStatusFailed},
	saga.SagaStatusPaused:       {saga.SagaStatusExecuting, saga.SagaStatusPaused},
	saga.SagaStatusCancelled:    {saga.SagaStatusExecuting, saga.SagaStatusCancelled},
	saga.SagaStatusTimedOut:     {saga.SagaStatusExecuting, saga.SagaStatusTimedOut},
}

// drive moves a saga leased by sg.Lease() to status through allowed
// transitions, the way the engine would: Started on leaving Created, Ended
// and WakeNever on end states, WakeNever on Paused, an event and a
// checkpoint on the way. With release the last write releases the lease.
func (h *harness) drive(sg *saga.Saga, status saga.SagaStatus, release bool) *saga.Saga {
	h.t.Helper()
	path, ok := drivePaths[status]
	if !ok {
		h.t.Fatalf("drive: no path to %q", status)
	}
	lease := sg.Lease()
	for i, st := range path {
		tr := saga.Transition{
			SagaID: sg.ID, Lease: lease, LeaseFor: longLease,
			Status:  st,
			Started: st == saga.SagaStatusExecuting,
			Ended:   st.Terminal(),
			Events:  []saga.Event{event(eventFor(st), nil)},
		}
		if st == saga.SagaStatusExecuting {
			tr.Checkpoint = &saga.Checkpoint{StepIndex: 0, Context: json.RawMessage(`{"k": "v"}`)}
		}
		if st == saga.SagaStatusCompensating {
			tr.CompensateTo = saga.SagaStatusCompensated
		}
		if st.Terminal() || st == saga.SagaStatusPaused {
			tr.Wake = saga.Wake{Kind: saga.WakeNever}
		}
		tr.Release = release && i == len(path)-1
		h.apply(tr)
	}
	if release && len(path) == 0 && sg.OwnerID != "" {
		h.apply(saga.Transition{SagaID: sg.ID, Lease: lease, Release: true})
	}
	return h.get(sg.ID)
}

// eventFor names the event of entering a status.
func eventFor(st saga.SagaStatus) saga.EventType {
	switch st {
	case saga.SagaStatusExecuting:
		return saga.EventSagaStarted
	case saga.SagaStatusCompensating:
		return saga.EventSagaCompensating
	case saga.SagaStatusCompleted:
		return saga.EventSagaCompleted
	case saga.SagaStatusCompensated:
		return saga.EventSagaCompensated
	case saga.SagaStatusFailed:
		return saga.EventSagaFailed
	case saga.SagaStatusPaused:
		return saga.EventSagaPaused
	case saga.SagaStatusCancelled:
		return saga.EventSagaCancelled
	case saga.SagaStatusTimedOut:
		return saga.EventSagaTimedOut
	}
	return saga.EventSagaResumed
}

// event returns an event of type typ, optionally about a step.
func event(typ saga.EventType, step *int) saga.Event {
	return saga.Event{Type: typ, StepIndex: step, InstanceID: "storetest", Data: json.RawMessage(`{"why": "test"}`)}
}

// intp returns a pointer to i.
func intp(i int) *int { return &i }

// jsonEqual reports whether a and b hold the same JSON value (object key
// order and spacing aside). Empty input counts as JSON null.
func jsonEqual(a, b []byte) bool {
	var va, vb any
	if len(bytes.TrimSpace(a)) > 0 {
		if err := json.Unmarshal(a, &va); err != nil {
			return false
		}
	}
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &vb); err != nil {
			return false
		}
	}
	return reflect.DeepEqual(va, vb)
}

// jsonContains reports whether the JSON object got has every member of
// the JSON object want, with the same value.
func jsonContains(got, want []byte) bool {
	var g, w map[string]any
	if json.Unmarshal(got, &g) != nil || json.Unmarshal(want, &w) != nil {
		return false
	}
	for k, v := range w {
		if gv, ok := g[k]; !ok || !reflect.DeepEqual(gv, v) {
			return false
		}
	}
	return true
}

// near reports whether got is within slack of want.
func near(got, want time.Time) bool {
	d := got.Sub(want)
	return d > -slack && d < slack
}

// isNotFound checks that err wraps saga.ErrNotFound.
func isNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, saga.ErrNotFound) {
		t.Errorf("%s: err = %v, want one wrapping saga.ErrNotFound", what, err)
	}
}

// ids returns the ids of sagas, in order.
func ids(sagas []*saga.Saga) []saga.ID {
	out := make([]saga.ID, len(sagas))
	for i, s := range sagas {
		out[i] = s.ID
	}
	return out
}

// idSet returns the ids of sagas as a set.
func idSet(sagas []*saga.Saga) map[saga.ID]bool {
	out := make(map[saga.ID]bool, len(sagas))
	for _, s := range sagas {
		out[s.ID] = true
	}
	return out
}

// microsecond truncates t to the precision every store keeps.
func microsecond(t time.Time) time.Time { return t.Truncate(time.Microsecond) }
