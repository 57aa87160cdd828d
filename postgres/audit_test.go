package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/storetest"
)

// TestCanonicalJSONThroughJSONB stores JSON values in jsonb, as event data
// are, and checks that what PostgreSQL gives back (keys reordered, spaces,
// numbers respelled) has the canonical form of what was stored: the hash
// of an event is recomputed from the row.
func TestCanonicalJSONThroughJSONB(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	values := []string{
		`{"b": 1, "a": [1, 2.50, -0, 0.0, 1e2, 1E-2, 12.34e30, 1.5e-7, 123456789012345678901234]}`,
		`{"s": "\u0041\/\"\\\b\f\n\r\t\u0001 é 😀 \ud83d\ude00", "k": {"z": null, "y": true, "x": false}}`,
		`{"dup": 1, "dup": 2, "longer key first": 3, "a": 4}`,
		`{"": "", "nested": [[[]], {}, [{"a": []}]], "big": 1000000000000000000000, "tiny": 0.000001}`,
	}
	rnd := rand.New(rand.NewPCG(7, 8))
	for range 200 {
		values = append(values, randomObject(rnd, 0))
	}
	for _, v := range values {
		var back string
		if err := s.Pool().QueryRow(ctx, `SELECT $1::jsonb::text`, v).Scan(&back); err != nil {
			t.Fatalf("jsonb of %s: %v", v, err)
		}
		want, err := saga.CanonicalJSON([]byte(v))
		if err != nil {
			t.Fatalf("CanonicalJSON(%s): %v", v, err)
		}
		got, err := saga.CanonicalJSON([]byte(back))
		if err != nil || string(got) != string(want) {
			t.Errorf("stored %s\nread back %s\ncanonical %s, want %s (%v)", v, back, got, want, err)
		}
	}
}

// randomObject returns a random JSON object as text, spelled in varied
// ways.
func randomObject(rnd *rand.Rand, depth int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range rnd.IntN(5) {
		if i > 0 {
			b.WriteString(" ,")
		}
		fmt.Fprintf(&b, "%q :", fmt.Sprintf("%c%d", 'a'+rune(rnd.IntN(26)), rnd.IntN(3)))
		switch k := rnd.IntN(6); {
		case k == 0 && depth < 3:
			b.WriteString(randomObject(rnd, depth+1))
		case k == 1:
			fmt.Fprintf(&b, "%d.%d0e%d", rnd.IntN(1000), rnd.IntN(100), rnd.IntN(40)-20)
		case k == 2:
			fmt.Fprintf(&b, "[%d, %q, null]", rnd.IntN(1_000_000)-500_000, string(rune(0x20+rnd.IntN(0x2000))))
		case k == 3:
			b.WriteString(`"tab\there \u00e9\u20ac"`)
		default:
			fmt.Fprintf(&b, "%v", rnd.IntN(2) == 0)
		}
	}
	b.WriteString("}")
	return b.String()
}

// TestChainHeadMovedByAnotherInstance writes a saga from one store while
// another (a second instance on the same database) records operator
// requests on it: the first store's remembered head goes stale, its next
// write is refused by the fence on the chain, read again and resent, and
// the chain holds throughout.
func TestChainHeadMovedByAnotherInstance(t *testing.T) {
	t.Parallel()
	runner := newStore(t)
	api := openMigrated(t, postgres.Config{URL: runner.Pool().Config().ConnString()})
	ctx := context.Background()
	sg, _, err := runner.CreateSaga(ctx, saga.NewSaga{Saga: storetest.NewTestSaga("w", 2), LeaseFor: time.Hour,
		Events: []saga.Event{{Type: saga.EventSagaCreated}}})
	if err != nil {
		t.Fatal(err)
	}
	op := saga.WithRequester(ctx, saga.Requester{Actor: "lab-ops"})
	if _, err := api.RequestControl(op, sg.ID, saga.ControlPause); err != nil {
		t.Fatal(err)
	}
	// The runner carries the pause out knowing nothing of the request's
	// event: its write closes the request all the same.
	a, err := runner.Apply(ctx, saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Hour,
		Status: saga.SagaStatusPaused, ClearControl: saga.ControlPause,
		Events: []saga.Event{{Type: saga.EventSagaPaused}}})
	if err != nil {
		t.Fatalf("Apply after another instance's request: %v", err)
	}
	if _, err := api.RequestControl(op, sg.ID, saga.ControlCancel); err != nil {
		t.Fatal(err)
	}
	b, err := runner.Apply(ctx, saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Hour,
		Events: []saga.Event{{Type: saga.EventLeaseTaken}}})
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	evs, err := runner.ListEvents(ctx, sg.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, string(e.Type))
	}
	want := "SagaCreated OperatorRequested SagaPaused OperatorRequestCarriedOut OperatorRequested LeaseTaken"
	if got := strings.Join(types, " "); got != want || a.EventSeq != 4 || b.EventSeq != 6 {
		t.Errorf("events %s (seq %d, %d), want %s (4, 6)", got, a.EventSeq, b.EventSeq, want)
	}
	var head saga.ChainHead
	_, _, err = runner.Chains(ctx, saga.ChainQuery{IDs: []saga.ID{sg.ID}},
		func(h saga.ChainHead) error { head = h; return nil }, func(saga.Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if brk := saga.NewChain(nil).Verify(head, evs); brk != nil {
		t.Errorf("chain: %v", brk)
	}
	var closing struct {
		RequestSeq int64 `json:"request_seq"`
	}
	if err := json.Unmarshal(evs[3].Data, &closing); err != nil || evs[3].Actor != "lab-ops" || closing.RequestSeq != 2 {
		t.Errorf("closing event by %q: %s (%v)", evs[3].Actor, evs[3].Data, err)
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].CreatedAt.Before(evs[i-1].CreatedAt) {
			t.Errorf("event %d at %v, before event %d at %v", i+1, evs[i].CreatedAt, i, evs[i-1].CreatedAt)
		}
	}
}

// TestEventTimesAreTheRowsTimes checks that a write gives its rows the
// time of its events, which is what Applied.Now reports.
func TestEventTimesAreTheRowsTimes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	sg, _, err := s.CreateSaga(ctx, saga.NewSaga{Saga: storetest.NewTestSaga("w", 1), LeaseFor: time.Hour,
		Events: []saga.Event{{Type: saga.EventSagaCreated}}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Apply(ctx, saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Hour, Status: saga.SagaStatusExecuting,
		Started: true, Steps: []saga.StepUpdate{{Index: 0, Status: saga.StepStatusExecuting, Attempts: 1, Start: true}},
		Events: []saga.Event{{Type: saga.EventSagaStarted}, {Type: saga.EventStepStarted, StepIndex: new(0), Data: json.RawMessage(`{"attempt":1}`)}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSaga(ctx, sg.ID)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := s.ListEvents(ctx, sg.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(evs[0].CreatedAt) || !got.StartedAt.Equal(a.Now) || !got.Steps[0].StartedAt.Equal(a.Now) ||
		!evs[1].CreatedAt.Equal(a.Now) || !got.UpdatedAt.Equal(a.Now) {
		t.Errorf("created %v (event %v); started %v, step started %v, updated %v, event %v; want Applied.Now %v",
			got.CreatedAt, evs[0].CreatedAt, got.StartedAt, got.Steps[0].StartedAt, got.UpdatedAt, evs[1].CreatedAt, a.Now)
	}
	var dbNow time.Time
	if err := s.Pool().QueryRow(ctx, `SELECT now()`).Scan(&dbNow); err != nil {
		t.Fatal(err)
	}
	if d := dbNow.Sub(a.Now); d < -time.Second || d > time.Minute {
		t.Errorf("the write's time %v is %v from the database clock", a.Now, d)
	}
}
