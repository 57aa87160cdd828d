package engine_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/participant"
)

// The replay property test drives the engine through its public API only
// (New, Start, Submit, Control, Wait, Stop), so that it runs unchanged
// against any engine:
//
//	go test -run TestReplayProperty ./engine/ -replay.sagas=10000 -replay.seed=7
var (
	replaySagas = flag.Int("replay.sagas", 10000, "sagas of TestReplayProperty")
	replaySeed  = flag.Uint64("replay.seed", 0, "random seed of TestReplayProperty (0: from the clock; the seed used is logged)")
)

// TestReplayProperty runs random sagas (random definitions, chains and
// graphs, participant outcomes, deadlines, operator requests, and crashes of
// the coordinator that running sagas survive through lease expiry) on the
// memory store to their end, and checks that for every one of them
// saga.Replay of its events alone gives the stored saga (saga.ReplayDiff
// finds nothing) and that its hash chain verifies.
func TestReplayProperty(t *testing.T) {
	t.Parallel()
	seed := *replaySeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -replay.seed=%d), %d sagas", seed, seed, *replaySagas)
	chain := saga.NewChain([]byte("replay-property-key"))
	store := memory.New(memory.Config{Chain: chain})
	inv := &randomInvoker{seed: seed}
	p := newPlant(t, store, inv)
	defer p.stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	go p.crashes(ctx, rand.New(rand.NewPCG(seed, 1)))

	ids := make([]saga.ID, *replaySagas)
	sem := make(chan struct{}, 400)
	var wg sync.WaitGroup
	var failures atomic.Int64
	durations := make([]time.Duration, len(ids))
	for i := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rnd := rand.New(rand.NewPCG(seed, uint64(i)+2))
			start := time.Now()
			id, err := p.drive(ctx, rnd, i)
			durations[i] = time.Since(start)
			if err != nil {
				if failures.Add(1) <= 5 {
					t.Errorf("saga %d: %v", i, err)
				}
				return
			}
			ids[i] = id
		})
	}
	wg.Wait()
	slices.Sort(durations)
	t.Logf("saga durations: p50 %v p90 %v p99 %v max %v", durations[len(durations)/2], durations[len(durations)*9/10], durations[len(durations)*99/100], durations[len(durations)-1])
	if failures.Load() > 0 {
		t.Fatalf("%d sagas did not run to their end", failures.Load())
	}
	p.stop()

	statuses := map[saga.SagaStatus]int{}
	events := map[saga.EventType]int{}
	bad, inconsistent := 0, 0
	var (
		mostEvents int
		mostID     saga.ID
		mostEvs    []saga.Event
	)
	for i, id := range ids {
		stored, err := store.GetSaga(ctx, id)
		if err != nil {
			t.Fatalf("saga %d: %v", i, err)
		}
		evs, err := store.ListEvents(ctx, id, 0, 0)
		if err != nil {
			t.Fatalf("saga %d: %v", i, err)
		}
		statuses[stored.Status]++
		if n := completedCount(stored); stored.CompletedSteps != n {
			inconsistent++
			if inconsistent <= 3 {
				t.Errorf("saga %d (%s): the stored row says %d steps completed, its steps %d: a write that carries no event "+
					"changed the row (a transition without the saga's completed_steps, error and compensate_to writes them as zero)",
					i, id, stored.CompletedSteps, n)
			}
		}
		for _, e := range evs {
			events[e.Type]++
		}
		if len(evs) > mostEvents {
			mostEvents, mostID, mostEvs = len(evs), id, evs
		}
		rebuilt, err := saga.Replay(evs)
		var diff []string
		if err != nil {
			diff = []string{err.Error()}
		} else {
			diff = saga.ReplayDiff(stored, rebuilt)
		}
		if len(diff) > 0 {
			bad++
			if bad <= 3 {
				t.Errorf("saga %d (%s) rebuilt from its events differs from the stored one:\n  %s\nevents:\n%s",
					i, id, strings.Join(diff, "\n  "), eventLines(evs))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d sagas differ from their replay", bad, len(ids))
	}
	verified, broken := verifyAll(t, store, chain)
	if verified != len(ids) || broken != 0 {
		t.Errorf("audit chains: %d verified, %d broken, want %d and 0", verified, broken, len(ids))
	}
	if mostEvents > 1000 {
		// Not this test's property, but worth seeing: an engine that loops.
		t.Logf("saga %s wrote %d events; its first 40:\n%s", mostID, mostEvents, eventLines(mostEvs[:40]))
	}
	t.Logf("end states: %v", statuses)
	t.Logf("events: %v; coordinators crashed: %d", events, p.crashed.Load())
	// The run must have exercised what it claims to.
	for _, st := range []saga.SagaStatus{saga.SagaStatusCompleted, saga.SagaStatusCompensated,
		saga.SagaStatusCancelled, saga.SagaStatusTimedOut, saga.SagaStatusFailed} {
		if len(ids) >= 1000 && statuses[st] == 0 {
			t.Errorf("no saga ended %s", st)
		}
	}
	for _, typ := range []saga.EventType{saga.EventSagaPaused, saga.EventSagaResumed, saga.EventSagaRetried,
		saga.EventCallWithdrawn, saga.EventSagaRecovered, saga.EventOperatorRequestSuperseded,
		saga.EventOperatorRequestCarriedOut, saga.EventCompensationRetrying, saga.EventStepRetrying} {
		if len(ids) >= 1000 && events[typ] == 0 {
			t.Errorf("no %s event in the run", typ)
		}
	}
}

// completedCount counts the Completed steps of s.
func completedCount(s *saga.Saga) int {
	n := 0
	for _, st := range s.Steps {
		if st.Status == saga.StepStatusCompleted {
			n++
		}
	}
	return n
}

// verifyAll checks the hash chain of every saga of store.
func verifyAll(t *testing.T, store saga.AuditStore, chain *saga.Chain) (verified, broken int) {
	t.Helper()
	var (
		v     *saga.ChainVerifier
		after saga.ID
	)
	finish := func() {
		if v == nil {
			return
		}
		if b := v.Finish(); b != nil {
			broken++
			if broken <= 3 {
				t.Errorf("chain broken: %v", b)
			}
		} else {
			verified++
		}
	}
	for {
		n, last, err := store.Chains(context.Background(), saga.ChainQuery{After: after},
			func(h saga.ChainHead) error {
				finish()
				v = chain.Verifier(h)
				return nil
			},
			func(e saga.Event) error {
				v.Add(e)
				return nil
			})
		if err != nil {
			t.Fatalf("read chains: %v", err)
		}
		if n == 0 {
			break
		}
		after = last
	}
	finish()
	return verified, broken
}

func eventLines(evs []saga.Event) string {
	var b strings.Builder
	for _, e := range evs {
		step := "-"
		if e.StepIndex != nil {
			step = fmt.Sprint(*e.StepIndex)
		}
		fmt.Fprintf(&b, "  %d %s %s step %s %s %s\n", e.Seq, e.CreatedAt.Format("15:04:05.000000"), e.InstanceID, step, e.Type, e.Data)
	}
	return b.String()
}

// plant is two coordinators on one store (instances, each replaced at
// its crash by a new one) and what drives them.
type plant struct {
	t       *testing.T
	store   saga.Store
	inv     engine.Invoker
	mu      sync.Mutex
	current [2]*engine.Coordinator
	n       int
	crashed atomic.Int64
	done    chan struct{}
	once    sync.Once
}

func newPlant(t *testing.T, store saga.Store, inv engine.Invoker) *plant {
	p := &plant{t: t, store: store, inv: inv, done: make(chan struct{})}
	p.current[0], p.current[1] = p.start(), p.start()
	return p
}

// start starts a coordinator under a new instance id.
func (p *plant) start() *engine.Coordinator {
	p.n++
	c, err := engine.New(p.store, engine.Config{
		InstanceID:         fmt.Sprintf("replay-%d", p.n),
		LeaseDuration:      500 * time.Millisecond,
		ClaimInterval:      20 * time.Millisecond,
		MaxConcurrentSagas: 500,
		Invoker:            p.inv,
	})
	if err != nil {
		p.t.Fatalf("engine.New: %v", err)
	}
	if err := c.Start(context.Background()); err != nil {
		p.t.Fatalf("Start: %v", err)
	}
	return c
}

// coordinator returns one of the two running coordinators.
func (p *plant) coordinator(rnd *rand.Rand) *engine.Coordinator {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current[rnd.IntN(2)]
}

// crashes replaces a coordinator now and then by a new one, stopping the
// old one without waiting for its calls: their sagas are left as they were
// written, leased to a dead instance, and taken over when the leases
// expire.
func (p *plant) crashes(ctx context.Context, rnd *rand.Rand) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.done:
			return
		case <-time.After(time.Duration(500+rnd.IntN(1000)) * time.Millisecond):
		}
		k := rnd.IntN(2)
		p.mu.Lock()
		old := p.current[k]
		p.current[k] = p.start()
		p.mu.Unlock()
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		_ = old.Stop(dead)
		p.crashed.Add(1)
	}
}

// stop stops the coordinators gracefully.
func (p *plant) stop() {
	p.once.Do(func() {
		close(p.done)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.current {
			_ = c.Stop(ctx)
		}
	})
}

// drive submits saga i and steers it with random operator requests to an
// end state: pause (then resume or cancel), cancel, a cancel right after a
// pause, and retries of a Failed saga.
func (p *plant) drive(ctx context.Context, rnd *rand.Rand, i int) (saga.ID, error) {
	def := replayDefinition(rnd, i)
	var s *saga.Saga
	for {
		var err error
		s, _, err = p.coordinator(rnd).Submit(ctx, def)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return saga.NilID, fmt.Errorf("submit: %w", err)
		}
	}
	id := s.ID
	request := func(a saga.ControlAction) {
		_, _ = p.coordinator(rnd).Control(ctx, id, a) // refused in the wrong status: fine
	}
	switch r := rnd.IntN(100); {
	case r < 12:
		time.Sleep(time.Duration(rnd.IntN(3000)) * time.Microsecond)
		request(saga.ControlPause)
	case r < 20:
		time.Sleep(time.Duration(rnd.IntN(3000)) * time.Microsecond)
		request(saga.ControlCancel)
	case r < 25:
		time.Sleep(time.Duration(rnd.IntN(2000)) * time.Microsecond)
		request(saga.ControlPause)
		request(saga.ControlCancel)
	}
	retries := 0
	for {
		if ctx.Err() != nil {
			return id, fmt.Errorf("saga %s did not end: %w", id, ctx.Err())
		}
		waitCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		cur, err := p.coordinator(rnd).Wait(waitCtx, id)
		cancel()
		if err != nil {
			continue // the coordinator was replaced meanwhile
		}
		switch cur.Status {
		case saga.SagaStatusPaused:
			if rnd.IntN(4) == 0 {
				request(saga.ControlCancel)
			} else {
				request(saga.ControlResume)
			}
		case saga.SagaStatusFailed:
			if cur.Control == saga.ControlRetry {
				continue // the retry asked for is not carried out yet
			}
			if retries < 2 && rnd.IntN(2) == 0 {
				retries++
				request(saga.ControlRetry)
				continue
			}
			return id, nil
		case saga.SagaStatusCompleted, saga.SagaStatusCompensated, saga.SagaStatusCancelled, saga.SagaStatusTimedOut:
			return id, nil
		}
	}
}

// replayDefinition returns a definition of 1 to 5 steps: a chain, or (one
// time in three) a graph of random dependencies on earlier steps, with
// random retry budgets, compensations on most steps and, one time in six, a
// deadline short enough to pass while the saga runs.
func replayDefinition(rnd *rand.Rand, i int) saga.Definition {
	n := 1 + rnd.IntN(5)
	def := saga.Definition{
		Name:    fmt.Sprintf("replay-%d", i),
		Context: json.RawMessage(fmt.Sprintf(`{"i": %d, "tags": ["a", "b"], "amount": %d.50}`, i, rnd.IntN(1000))),
		Steps:   make([]saga.StepDefinition, n),
	}
	if rnd.IntN(6) == 0 {
		def.TimeoutMs = int64(5 + rnd.IntN(40))
	}
	dag := rnd.IntN(3) == 0
	for k := range n {
		name := fmt.Sprintf("s%d", k)
		st := saga.StepDefinition{
			Name:   name,
			Action: saga.Request{Method: "POST", URL: "http://participant.test/" + name, Body: json.RawMessage(fmt.Sprintf(`{"step": %d}`, k))},
			Retry:  &saga.RetryPolicy{MaxAttempts: 1 + rnd.IntN(3), InitialBackoffMs: 1, MaxBackoffMs: 2},
		}
		if rnd.IntN(5) > 0 {
			st.Compensation = &saga.Request{Method: "POST", URL: "http://participant.test/undo/" + name}
		}
		if dag {
			st.DependsOn = []string{}
			for j := range k {
				if rnd.IntN(2) == 0 {
					st.DependsOn = append(st.DependsOn, fmt.Sprintf("s%d", j))
				}
			}
		}
		def.Steps[k] = st
	}
	return def
}

// randomInvoker answers calls with random outcomes: mostly successes with a
// JSON output (sometimes empty), transient failures (some uncertain, some
// asking to retry later), refusals, and calls that hang until the saga's
// deadline or a crash cuts them off.
type randomInvoker struct {
	seed uint64
	n    atomic.Uint64
}

func (r *randomInvoker) Invoke(ctx context.Context, c participant.Call) participant.Result {
	rnd := rand.New(rand.NewPCG(r.seed, r.n.Add(1)))
	if d := rnd.IntN(1500); d > 0 {
		select {
		case <-time.After(time.Duration(d) * time.Microsecond):
		case <-ctx.Done():
			return participant.Result{Outcome: participant.OutcomeTransient, Error: "call cut off: " + ctx.Err().Error(), Uncertain: true}
		}
	}
	success, transient, hanging := 72, 15, 5
	if c.Kind == participant.KindCompensation {
		success, transient, hanging = 76, 13, 3
	}
	switch x := rnd.IntN(100); {
	case x < success:
		out := json.RawMessage(fmt.Sprintf(`{"step": %q, "attempt": %d, "n": %d}`, c.StepName, c.Attempt, rnd.IntN(100)))
		if rnd.IntN(10) == 0 {
			out = nil
		}
		return participant.Result{Outcome: participant.OutcomeSuccess, StatusCode: 200, Output: out, Duration: time.Millisecond}
	case x < success+transient:
		return participant.Result{Outcome: participant.OutcomeTransient, StatusCode: 503, Error: "503 Service Unavailable",
			Uncertain: rnd.IntN(2) == 0, RetryAfter: time.Duration(rnd.IntN(2)) * time.Millisecond}
	case x < success+transient+hanging:
		select {
		case <-time.After(10 * time.Millisecond):
			return participant.Result{Outcome: participant.OutcomeTransient, Error: "timeout", Uncertain: true}
		case <-ctx.Done():
			return participant.Result{Outcome: participant.OutcomeTransient, Error: "call cut off: " + ctx.Err().Error(), Uncertain: true}
		}
	}
	return participant.Result{Outcome: participant.OutcomePermanent, StatusCode: 402, Error: "402 Payment Required"}
}
