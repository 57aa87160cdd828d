package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/memory"
)

// timedStub records when each call of a stub participant began and ended.
type timedStub struct {
	mu    sync.Mutex
	spans map[string][2]time.Time // "kind step" → [start, end]
}

func (ts *timedStub) handler(key string, d time.Duration, code int) handlerFunc {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		start := time.Now()
		time.Sleep(d)
		end := time.Now()
		ts.mu.Lock()
		ts.spans[key] = [2]time.Time{start, end}
		ts.mu.Unlock()
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}
}

func (ts *timedStub) span(t *testing.T, key string) [2]time.Time {
	t.Helper()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	s, ok := ts.spans[key]
	if !ok {
		t.Fatalf("no call of %s", key)
	}
	return s
}

// graphDefinition is b.definition with depends_on set per step.
func (b *bundle) graphDefinition(name string, deps map[string][]string, steps ...string) saga.Definition {
	def := b.definition(name, steps...)
	for i := range def.Steps {
		d := deps[def.Steps[i].Name]
		if d == nil {
			d = []string{}
		}
		def.Steps[i].DependsOn = d
	}
	return def
}

// A and B have no dependencies and run at once; C waits for both. Each
// answers after 300 ms: the saga takes about two answers, not three.
func TestParallelStepsOverlap(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		ts := &timedStub{spans: map[string][2]time.Time{}}
		for _, s := range []string{"a", "b", "c"} {
			b.stub.on("action", s, ts.handler("action "+s, 300*time.Millisecond, http.StatusOK))
		}
		def := b.graphDefinition("diamond", map[string][]string{"c": {"a", "b"}}, "a", "b", "c")
		start := time.Now()
		s := wait(t, b.coord, b.submit(t, def).ID)
		took := time.Since(start)
		if s.Status != saga.SagaStatusCompleted {
			t.Fatalf("status %s (%s)", s.Status, s.Error)
		}
		a, bb, c := ts.span(t, "action a"), ts.span(t, "action b"), ts.span(t, "action c")
		if !a[0].Before(bb[1]) || !bb[0].Before(a[1]) {
			t.Errorf("calls of a %v and b %v do not overlap", a, bb)
		}
		if c[0].Before(a[1]) || c[0].Before(bb[1]) {
			t.Errorf("c started at %v before a (%v) and b (%v) answered", c[0], a[1], bb[1])
		}
		t.Logf("%s: the saga took %v for three 300 ms steps, two of them in parallel", kind.name, took.Round(time.Millisecond))
		// c's call carries the outputs of the steps it depends on.
		for _, call := range b.stub.received() {
			if call.Kind == "action" && call.Step == "c" {
				if len(call.Body.Outputs) != 2 || call.Body.Outputs["a"] == nil || call.Body.Outputs["b"] == nil {
					t.Errorf("c's outputs = %v; want those of a and b", call.Body.Outputs)
				}
			}
		}
		assertSteps(t, s, []saga.StepStatus{completed, completed, completed}, []saga.CompensationStatus{"", "", ""})
	})
}

// B refuses while A runs: A finishes and is compensated, C never starts
// (Skipped), and the saga ends Compensated.
func TestParallelStepRefusedCompensatesTheOthers(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		b := setup(t, kind, nil)
		ts := &timedStub{spans: map[string][2]time.Time{}}
		b.stub.on("action", "a", ts.handler("action a", 300*time.Millisecond, http.StatusOK))
		b.stub.on("action", "b", ts.handler("action b", 50*time.Millisecond, http.StatusConflict))
		def := b.graphDefinition("refused", map[string][]string{"c": {"a", "b"}}, "a", "b", "c")
		s := wait(t, b.coord, b.submit(t, def).ID)
		if s.Status != saga.SagaStatusCompensated {
			t.Fatalf("status %s (%s); want Compensated", s.Status, s.Error)
		}
		assertSteps(t, s, []saga.StepStatus{completed, failed, skipped}, []saga.CompensationStatus{cDone, "", ""})
		seq := b.stub.sequence()
		if !slices.Contains(seq, "compensation a") || slices.Contains(seq, "action c") || slices.Contains(seq, "compensation b") {
			t.Errorf("calls %v: want a compensated, c never called, b (refused, certain) not compensated", seq)
		}
		if s.Error == "" {
			t.Error("no saga error naming the refused step")
		}
	})
}

// Compensation runs in reverse dependency order: a step is undone only
// after every completed step depending on it was undone.
func TestParallelCompensationOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, storeKinds[0], nil)
	// a → {b, c} → d, and d refuses: c and b are undone (in any order)
	// before a.
	b.stub.on("action", "d", status(http.StatusBadRequest))
	def := b.graphDefinition("order", map[string][]string{"b": {"a"}, "c": {"a"}, "d": {"b", "c"}}, "a", "b", "c", "d")
	s := wait(t, b.coord, b.submit(t, def).ID)
	if s.Status != saga.SagaStatusCompensated {
		t.Fatalf("status %s", s.Status)
	}
	seq := b.stub.sequence()
	pos := func(c string) int { return slices.Index(seq, c) }
	if pos("compensation a") < pos("compensation b") || pos("compensation a") < pos("compensation c") || pos("compensation b") < 0 || pos("compensation c") < 0 {
		t.Errorf("calls %v: a must be undone after b and c", seq)
	}
	if pos("action b") < pos("action a") || pos("action c") < pos("action a") || pos("action d") < pos("action b") || pos("action d") < pos("action c") {
		t.Errorf("calls %v do not follow the dependencies", seq)
	}
}

// max_parallel bounds the calls of one saga in flight at once.
func TestMaxParallelBoundsCalls(t *testing.T) {
	t.Parallel()
	b := setup(t, storeKinds[0], nil)
	var mu sync.Mutex
	inFlight, peak := 0, 0
	slow := func(_ int, w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		_, _ = w.Write([]byte(`{}`))
	}
	names := []string{"s1", "s2", "s3", "s4", "s5", "s6"}
	for _, n := range names {
		b.stub.on("action", n, slow)
	}
	def := b.graphDefinition("wide", nil, names...)
	def.MaxParallel = 2
	s := wait(t, b.coord, b.submit(t, def).ID)
	if s.Status != saga.SagaStatusCompleted {
		t.Fatalf("status %s", s.Status)
	}
	if peak != 2 {
		t.Errorf("at most %d calls were in flight at once; want max_parallel = 2", peak)
	}
}

// A long saga writes about log2(n) checkpoints, not one per step: 100 steps
// write 7 (after 1, 2, 4, 8, 16, 32 and 64 completed; none with the end,
// where no takeover would read it), and the last holds the 64 outputs so far.
func TestCheckpointsOfALongSaga(t *testing.T) {
	t.Parallel()
	store := memory.New(memory.Config{})
	b := &bundle{store: store, stub: newStub(t)}
	output := `{"blob":"` + strings.Repeat("x", 20_000) + `"}`
	b.coord = startCoordinator(t, store, "engine-a", func(c *engine.Config) { c.Invoker = rawInvoker{output: json.RawMessage(output), every: true} })
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("s%02d", i)
	}
	s := wait(t, b.coord, b.submit(t, b.definition("long", names...)).ID)
	if s.Status != saga.SagaStatusCompleted {
		t.Fatalf("status %s", s.Status)
	}
	recs, err := store.Export(context.Background())
	if err != nil || len(recs) != 1 {
		t.Fatalf("export: %d records, %v", len(recs), err)
	}
	var steps []int
	total := 0
	for _, cp := range recs[0].Checkpoints {
		steps = append(steps, cp.StepIndex)
		total += len(cp.Context)
	}
	if want := []int{0, 1, 3, 7, 15, 31, 63}; !slices.Equal(steps, want) {
		t.Errorf("checkpoints after steps %v; want %v", steps, want)
	}
	last, err := checkpointNames(recs[0].Checkpoints[len(recs[0].Checkpoints)-1].Context)
	if err != nil || len(last) != 64 {
		t.Errorf("the last checkpoint holds %d outputs (%v); want 64", len(last), err)
	}
	// One checkpoint per step would have held 1 + 2 + … + 100 outputs.
	t.Logf("100 steps × 20 KB outputs: %d checkpoints, %.1f MB (one per step: %.1f MB)",
		len(steps), float64(total)/1e6, float64(5050*len(output))/1e6)
}

func checkpointNames(raw json.RawMessage) (map[string]json.RawMessage, error) {
	var cp struct {
		Outputs map[string]json.RawMessage `json:"outputs"`
	}
	err := json.Unmarshal(raw, &cp)
	return cp.Outputs, err
}

// An instance that dies mid-call leaves the saga to another, which restores
// it from its latest checkpoint and names that checkpoint in the trail.
func TestTakeoverNamesTheCheckpoint(t *testing.T) {
	t.Parallel()
	store := memory.New(memory.Config{})
	b := &bundle{store: store, stub: newStub(t)}
	short := func(c *engine.Config) { c.LeaseDuration = 300 * time.Millisecond }
	cfg := testConfig(t, "engine-dies")
	short(&cfg)
	dying, err := engine.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := dying.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	g := newGate(t)
	b.stub.on("action", "b", g.handler())
	b.coord = dying
	s := b.submit(t, b.definition("takeover", "a", "b"))
	eventually(t, "the call of step b", func() bool { return b.stub.count("action", "b") == 1 })
	dead, cancel := context.WithCancel(context.Background())
	cancel()
	_ = dying.Stop(dead) // abandons the call in flight, as a crash would
	g.open()

	b.coord = startCoordinator(t, store, "engine-b", short)
	got := wait(t, b.coord, s.ID)
	if got.Status != saga.SagaStatusCompleted {
		t.Fatalf("status %s", got.Status)
	}
	evs, err := store.ListEvents(context.Background(), s.ID, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var taken, recovered bool
	for _, e := range evs {
		switch {
		case e.Type == saga.EventLeaseTaken && e.InstanceID == "engine-b":
			taken = strings.Contains(string(e.Data), `"checkpoint_step":0`)
		case e.Type == saga.EventSagaRecovered:
			recovered = strings.Contains(string(e.Data), `"step_index":0`) && *e.StepIndex == 1
		}
	}
	// Each call carries the epoch of the lease it was made under, so that
	// the participant can refuse the fenced-off owner's.
	var epochs []string
	for _, c := range b.stub.received() {
		if c.Kind == "action" && c.Step == "b" {
			epochs = append(epochs, c.Header.Get("X-Saga-Attempt-Epoch"))
		}
	}
	if !slices.Equal(epochs, []string{"1", "2"}) {
		t.Errorf("calls of b carried epochs %v; want [1 2]", epochs)
	}
	if !taken || !recovered {
		t.Errorf("the takeover does not name checkpoint 0 (LeaseTaken %v, SagaRecovered %v): %v", taken, recovered, eventTypes(t, b.coord, s.ID))
	}
}

// After an operator's retry succeeds, the saga's error is again what made
// it compensate, not the compensation failure that is no longer true.
func TestRetryKeepsTheOriginalCause(t *testing.T) {
	t.Parallel()
	b := setup(t, storeKinds[0], nil)
	b.stub.on("action", "b", status(http.StatusBadRequest))
	b.stub.on("compensation", "a", status(http.StatusConflict))
	s := wait(t, b.coord, b.submit(t, b.definition("cause", "a", "b")).ID)
	if s.Status != saga.SagaStatusFailed || !strings.HasPrefix(s.Error, `step "b" failed (refused)`) || !strings.Contains(s.Error, `then compensation of step "a" failed`) {
		t.Fatalf("%s: error %q; want the cause, then the compensation failure", s.Status, s.Error)
	}
	b.stub.on("compensation", "a", status(http.StatusOK))
	if _, err := b.coord.Control(context.Background(), s.ID, saga.ControlRetry); err != nil {
		t.Fatal(err)
	}
	s = waitStatus(t, b.coord, s.ID, saga.SagaStatusCompensated)
	if !strings.HasPrefix(s.Error, `step "b" failed (refused)`) || strings.Contains(s.Error, "compensation") {
		t.Errorf("error after the retry %q; want the original cause alone", s.Error)
	}
}

// A completed step without a compensation is not undone, and the trail
// says so.
func TestStepWithoutCompensationIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t, storeKinds[0], nil)
	b.stub.on("action", "b", status(http.StatusBadRequest))
	def := b.definition("no-undo", "a", "b")
	def.Steps[0].Compensation = nil
	s := wait(t, b.coord, b.submit(t, def).ID)
	if s.Status != saga.SagaStatusCompensated {
		t.Fatalf("status %s", s.Status)
	}
	types := eventTypes(t, b.coord, s.ID)
	if !slices.Contains(types, ev(saga.EventCompensationNotNeeded, 0)) {
		t.Errorf("events %v lack CompensationNotNeeded of step 0", types)
	}
}

// A call whose timeout outlasts the lease is not made on the ordinary
// lease: the write that allows it leases the saga for the whole call, so
// that an owner stalled meanwhile is not taken over while the call may
// still be answered.
func TestLongCallIsCoveredByTheLease(t *testing.T) {
	t.Parallel()
	store := memory.New(memory.Config{})
	b := &bundle{store: store, stub: newStub(t)}
	b.coord = startCoordinator(t, store, "engine-a", func(c *engine.Config) { c.LeaseDuration = 300 * time.Millisecond })
	g := newGate(t)
	b.stub.on("action", "a", g.handler())
	def := b.definition("long-call", "a")
	def.Steps[0].Action.TimeoutMs = 5000
	s := b.submit(t, def)
	eventually(t, "the call of step a", func() bool { return b.stub.count("action", "a") == 1 })
	got, err := store.GetSaga(context.Background(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LeaseExpiresAt == nil || got.LeaseExpiresAt.Sub(got.UpdatedAt) < 5*time.Second {
		t.Errorf("lease until %v, written at %v: want it to cover the 5 s call", got.LeaseExpiresAt, got.UpdatedAt)
	}
	g.open()
	if s = wait(t, b.coord, s.ID); s.Status != saga.SagaStatusCompleted {
		t.Fatalf("status %s", s.Status)
	}
}
