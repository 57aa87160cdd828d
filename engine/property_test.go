package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/participant"
)

// callRecord is one call the scripted participant received.
type callRecord struct {
	saga       saga.ID
	kind       participant.Kind
	step       int
	start, end int64 // on the invoker's logical clock
	outcome    participant.Outcome
}

// scriptedInvoker answers calls at random (seeded), after a short random
// delay, and records when each call began and ended on a logical clock.
type scriptedInvoker struct {
	clock atomic.Int64
	mu    sync.Mutex
	rnd   *rand.Rand
	calls []callRecord
}

func (s *scriptedInvoker) Invoke(ctx context.Context, c participant.Call) participant.Result {
	start := s.clock.Add(1)
	s.mu.Lock()
	roll := s.rnd.Float64()
	delay := time.Duration(s.rnd.IntN(1500)) * time.Microsecond
	s.mu.Unlock()
	res := participant.Result{Outcome: participant.OutcomeSuccess, StatusCode: 200, Output: json.RawMessage(`{"ok":true}`)}
	switch {
	case c.Kind == participant.KindAction && roll < 0.06:
		res = participant.Result{Outcome: participant.OutcomePermanent, StatusCode: 409, Error: "refused"}
	case roll < 0.14:
		res = participant.Result{Outcome: participant.OutcomeTransient, StatusCode: 503, Error: "unavailable", Uncertain: roll < 0.10}
	}
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		res = participant.Result{Outcome: participant.OutcomeTransient, Error: "call abandoned", Uncertain: true}
	}
	s.mu.Lock()
	s.calls = append(s.calls, callRecord{saga: c.SagaID, kind: c.Kind, step: c.StepIndex, start: start, end: s.clock.Add(1), outcome: res.Outcome})
	s.mu.Unlock()
	return res
}

// randomDefinition is a saga of 1 to 7 steps: a chain, or a random graph.
func randomDefinition(rnd *rand.Rand, n int) saga.Definition {
	def := saga.Definition{Name: "prop-" + strconv.Itoa(n), MaxParallel: 1 + rnd.IntN(4)}
	steps := 1 + rnd.IntN(7)
	graph := rnd.IntN(3) > 0
	for i := range steps {
		sd := saga.StepDefinition{
			Name:   fmt.Sprintf("s%d", i),
			Action: saga.Request{Method: "POST", URL: "http://participant/" + strconv.Itoa(i)},
			Retry:  &saga.RetryPolicy{MaxAttempts: 1 + rnd.IntN(3), InitialBackoffMs: 1, MaxBackoffMs: 3},
		}
		if rnd.IntN(5) > 0 {
			sd.Compensation = &saga.Request{Method: "POST", URL: "http://participant/undo/" + strconv.Itoa(i)}
		}
		if graph {
			sd.DependsOn = []string{}
			for j := range i {
				if rnd.IntN(3) == 0 {
					sd.DependsOn = append(sd.DependsOn, fmt.Sprintf("s%d", j))
				}
			}
		}
		def.Steps = append(def.Steps, sd)
	}
	if rnd.IntN(10) == 0 {
		def.TimeoutMs = int64(2 + rnd.IntN(30))
	}
	return def
}

// Thousands of random graphs and chains, random outcomes per call, random
// pauses, cancels and instance crashes, on the memory store: every saga
// ends, the order of calls follows the graph, every completed step of a
// saga that did not complete is undone exactly once, and the events replay
// to the stored state.
func TestRandomSagasKeepTheInvariants(t *testing.T) {
	t.Parallel()
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("ENGINE_PROPERTY_SAGAS")); err == nil && v > 0 {
		n = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("ENGINE_PROPERTY_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (ENGINE_PROPERTY_SEED reproduces the definitions and requests; timing still varies)", seed)
	rnd := rand.New(rand.NewPCG(seed, 1))
	inv := &scriptedInvoker{rnd: rand.New(rand.NewPCG(seed, 2))}
	store := memory.New(memory.Config{})
	tweak := func(c *engine.Config) {
		c.Invoker = inv
		c.LeaseDuration = 300 * time.Millisecond
		c.ClaimInterval = 20 * time.Millisecond
		c.MaxConcurrentSagas = 300
	}
	newCoord := func(name string) *engine.Coordinator {
		cfg := testConfig(t, name)
		cfg.Logger = nil
		tweak(&cfg)
		c, err := engine.New(store, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var mu sync.Mutex
	coords := []*engine.Coordinator{newCoord("prop-a"), newCoord("prop-b")}
	current := func(k int) *engine.Coordinator { mu.Lock(); defer mu.Unlock(); return coords[k%len(coords)] }
	defer func() {
		for _, c := range coords {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.Stop(ctx)
			cancel()
		}
	}()

	// Crash an instance now and then: its calls are abandoned, its leases
	// run out, and the other instance (or its restart) takes over.
	crashes := 0
	stopCrashing := make(chan struct{})
	var crashWG sync.WaitGroup
	crashWG.Add(1)
	go func() {
		defer crashWG.Done()
		for k := 0; ; k++ {
			select {
			case <-stopCrashing:
				return
			case <-time.After(150 * time.Millisecond):
			}
			mu.Lock()
			old := coords[k%2]
			mu.Unlock()
			dead, cancel := context.WithCancel(context.Background())
			cancel()
			_ = old.Stop(dead) // abandons what is in flight, like a kill
			c := newCoord(fmt.Sprintf("prop-%d", k))
			mu.Lock()
			coords[k%2] = c
			mu.Unlock()
			crashes++
		}
	}()

	ids := make([]saga.ID, n)
	defs := make(map[saga.ID]saga.Definition, n)
	var requests atomic.Int64
	for i := range n {
		def := randomDefinition(rnd, i)
		var s *saga.Saga
		for {
			var err error
			s, _, err = current(i).Submit(context.Background(), def)
			if err == nil {
				break
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("submit: %v", err)
			}
		}
		ids[i], defs[s.ID] = s.ID, def
		if rnd.IntN(6) == 0 {
			action := []saga.ControlAction{saga.ControlPause, saga.ControlCancel}[rnd.IntN(2)]
			delay := time.Duration(rnd.IntN(4000)) * time.Microsecond
			go func() {
				time.Sleep(delay)
				if _, err := current(i).Control(context.Background(), s.ID, action); err == nil {
					requests.Add(1)
				}
			}()
		}
	}

	// Resume what was paused until every saga has ended.
	deadline := time.Now().Add(90 * time.Second)
	var sagas map[saga.ID]*saga.Saga
	for {
		sagas = make(map[saga.ID]*saga.Saga, n)
		open := 0
		for _, id := range ids {
			s, err := store.GetSaga(context.Background(), id)
			if err != nil {
				t.Fatalf("get saga: %v", err)
			}
			sagas[id] = s
			if s.Status == saga.SagaStatusPaused && s.Control == saga.ControlNone {
				_, _ = current(0).Control(context.Background(), id, saga.ControlResume)
			}
			if !s.Status.Terminal() {
				open++
			}
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, s := range sagas {
				if !s.Status.Terminal() {
					t.Errorf("saga %s still %s (control %q, owner %q, next run %v)", s.ID, s.Status, s.Control, s.OwnerID, s.NextRunAt)
				}
			}
			t.Fatalf("%d of %d sagas did not end", open, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stopCrashing)
	crashWG.Wait()

	inv.mu.Lock()
	calls := append([]callRecord(nil), inv.calls...)
	inv.mu.Unlock()
	byID := make(map[saga.ID][]callRecord)
	for _, c := range calls {
		byID[c.saga] = append(byID[c.saga], c)
	}
	ends := map[saga.SagaStatus]int{}
	violations := 0
	report := func(id saga.ID, format string, args ...any) {
		violations++
		if violations <= 20 {
			t.Errorf("saga %s: %s", id, fmt.Sprintf(format, args...))
		}
	}
	for _, id := range ids {
		s := sagas[id]
		ends[s.Status]++
		def := defs[id]
		g := def.Graph()
		checkCallOrder(id, &def, g, s, byID[id], report)
		evs, err := store.ListEvents(context.Background(), id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		checkCompensatedOnce(id, &def, s, evs, report)
		if diff := replayDiff(s, evs); diff != "" {
			report(id, "events do not replay to the stored saga: %s", diff)
		}
	}
	t.Logf("%d sagas (%v), %d calls, %d operator requests carried, %d crashes, %d violations",
		n, ends, len(calls), requests.Load(), crashes, violations)
}

// checkCallOrder: no action starts before everything it depends on
// completed, and no compensation starts before the compensations of the
// completed steps that depend on it.
func checkCallOrder(id saga.ID, def *saga.Definition, g saga.Graph, s *saga.Saga, calls []callRecord, report func(saga.ID, string, ...any)) {
	firstSuccess := func(kind participant.Kind, step int) int64 {
		best := int64(-1)
		for _, c := range calls {
			if c.kind == kind && c.step == step && c.outcome == participant.OutcomeSuccess && (best < 0 || c.end < best) {
				best = c.end
			}
		}
		return best
	}
	rev := saga.Graph{Deps: g.Dependents, Dependents: g.Deps}
	for _, c := range calls {
		switch c.kind {
		case participant.KindAction:
			for _, j := range g.Deps[c.step] {
				if done := firstSuccess(participant.KindAction, j); done < 0 || done > c.start {
					report(id, "step %d called before step %d, which it depends on, completed", c.step, j)
				}
			}
		case participant.KindCompensation:
			for _, k := range rev.Ancestors(c.step) {
				st := s.Steps[k]
				needs := def.Steps[k].Compensation != nil && (st.Status == saga.StepStatusCompleted || st.Status == saga.StepStatusFailed && st.Uncertain)
				if !needs {
					continue
				}
				if done := firstSuccess(participant.KindCompensation, k); done < 0 || done > c.start {
					report(id, "compensation of step %d before that of step %d, which depends on it", c.step, k)
				}
			}
		}
	}
}

// checkCompensatedOnce: in a saga that did not complete (and did not fail
// for an operator), every step to undo was undone exactly once.
func checkCompensatedOnce(id saga.ID, def *saga.Definition, s *saga.Saga, evs []saga.Event, report func(saga.ID, string, ...any)) {
	if s.Status == saga.SagaStatusCompleted || s.Status == saga.SagaStatusFailed {
		return
	}
	done := make(map[int]int)
	for _, e := range evs {
		if e.Type == saga.EventCompensationCompleted && e.StepIndex != nil {
			done[*e.StepIndex]++
		}
	}
	for i, st := range s.Steps {
		needs := def.Steps[i].Compensation != nil && (st.Status == saga.StepStatusCompleted || st.Status == saga.StepStatusFailed && st.Uncertain)
		switch {
		case needs && done[i] != 1:
			report(id, "%s saga: step %d (%s) compensated %d times, want once", s.Status, i, st.Status, done[i])
		case !needs && done[i] != 0:
			report(id, "step %d (%s) compensated without needing it", i, st.Status)
		}
	}
}

// replayDiff rebuilds the saga's status and its steps' statuses and
// attempts from its events, and says how they differ from the stored ones.
func replayDiff(s *saga.Saga, evs []saga.Event) string {
	type row struct {
		status   string
		attempts int
		prev     string
		prevAtt  int
	}
	steps := make([]row, len(s.Steps))
	comps := make([]row, len(s.Steps))
	for i := range steps {
		steps[i].status = string(saga.StepStatusPending)
	}
	status := saga.SagaStatusCreated
	attempt := func(e saga.Event) int {
		var d struct {
			Attempt int `json:"attempt"`
		}
		_ = json.Unmarshal(e.Data, &d)
		return d.Attempt
	}
	kind := func(e saga.Event) string {
		var d struct {
			Kind string `json:"kind"`
		}
		_ = json.Unmarshal(e.Data, &d)
		return d.Kind
	}
	for _, e := range evs {
		var i int
		if e.StepIndex != nil {
			i = *e.StepIndex
		}
		switch e.Type {
		case saga.EventSagaStarted, saga.EventSagaResumed:
			status = saga.SagaStatusExecuting
		case saga.EventSagaPaused:
			status = saga.SagaStatusPaused
		case saga.EventSagaCompensating:
			status = saga.SagaStatusCompensating
		case saga.EventSagaRetried:
			status = saga.SagaStatusCompensating
			for j := range comps {
				if comps[j].status != "" && comps[j].status != string(saga.CompensationStatusCompleted) {
					comps[j] = row{status: string(saga.CompensationStatusPending)}
				}
			}
		case saga.EventSagaCompleted:
			status = saga.SagaStatusCompleted
		case saga.EventSagaCompensated:
			status = saga.SagaStatusCompensated
		case saga.EventSagaCancelled:
			status = saga.SagaStatusCancelled
		case saga.EventSagaTimedOut:
			status = saga.SagaStatusTimedOut
		case saga.EventSagaFailed:
			status = saga.SagaStatusFailed
		case saga.EventStepStarted:
			steps[i] = row{status: string(saga.StepStatusExecuting), attempts: attempt(e), prev: steps[i].status, prevAtt: steps[i].attempts}
		case saga.EventStepCompleted:
			steps[i].status = string(saga.StepStatusCompleted)
		case saga.EventStepRetrying:
			steps[i].status = string(saga.StepStatusRetrying)
		case saga.EventStepFailed:
			steps[i].status = string(saga.StepStatusFailed)
		case saga.EventStepSkipped:
			steps[i].status = string(saga.StepStatusSkipped)
		case saga.EventCompensationStarted:
			comps[i] = row{status: string(saga.CompensationStatusExecuting), attempts: attempt(e), prev: comps[i].status, prevAtt: comps[i].attempts}
		case saga.EventCompensationCompleted:
			comps[i].status = string(saga.CompensationStatusCompleted)
		case saga.EventCompensationRetrying:
			comps[i].status = string(saga.CompensationStatusRetrying)
		case saga.EventCompensationFailed:
			comps[i].status = string(saga.CompensationStatusFailed)
		case saga.EventCallWithdrawn:
			r := &steps[i]
			if kind(e) == string(participant.KindCompensation) {
				r = &comps[i]
			}
			r.status, r.attempts = r.prev, r.prevAtt
		}
	}
	if status != s.Status {
		return fmt.Sprintf("status %s from the events, %s stored", status, s.Status)
	}
	for i, st := range s.Steps {
		if steps[i].status != string(st.Status) || steps[i].attempts != st.Attempts {
			return fmt.Sprintf("step %d: %s/%d from the events, %s/%d stored", i, steps[i].status, steps[i].attempts, st.Status, st.Attempts)
		}
		var stored row
		if c := st.Compensation; c != nil {
			stored = row{status: string(c.Status), attempts: c.Attempts}
		}
		if stored.status == string(saga.CompensationStatusPending) && stored.attempts == 0 {
			stored.status = "" // a row written back to Pending by a withdrawal
		}
		got := comps[i]
		if got.status == string(saga.CompensationStatusPending) && got.attempts == 0 {
			got.status = ""
		}
		if got.status != stored.status || got.attempts != stored.attempts {
			return fmt.Sprintf("compensation %d: %s/%d from the events, %s/%d stored", i, got.status, got.attempts, stored.status, stored.attempts)
		}
	}
	return ""
}
