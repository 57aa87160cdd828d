package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// stepNames are the steps of every test saga, in order.
var stepNames = []string{"reserve", "charge", "ship"}

// Kinds of participant call, as in the Idempotency-Key and the call body.
const (
	kindAction       = "action"
	kindCompensation = "compensation"
)

// stub is a participant service for the whole saga: /action/{i} runs step
// i, /compensation/{i} undoes it. It behaves as a participant that honours
// idempotency keys: each key's effect is applied once, on its first
// successful call, and a repeated call answers what the first one did.
// Before answering it waits a random latency, so that sagas are in flight
// when an instance is killed.
//
// The query of an action URL carries the test's plan for the step:
// fail=400 refuses it (a business refusal, no effect), flaky=n answers 503
// to its first n calls (no effect).
type stub struct {
	t          *testing.T
	srv        *httptest.Server
	latencyMin time.Duration
	latencyMax time.Duration

	mu         sync.Mutex
	calls      []callRecord
	keys       map[string]*keyRecord // by Idempotency-Key
	bySaga     map[string][]string   // the keys of each saga, in first-call order
	inflight   map[string]int        // calls in progress by X-Saga-Id
	overlaps   []string              // calls that began while another of the saga was in progress
	violations []string              // calls breaking the participant protocol
	effects    int64                 // effects applied so far; orders them
	triggers   []trigger
}

// callRecord is one call the stub received.
type callRecord struct {
	SagaID string
	Step   int
	Kind   string
	Key    string
	At     time.Time
	Status int
}

// keyRecord is what the stub knows of one idempotency key.
type keyRecord struct {
	SagaID  string
	Step    int
	Kind    string
	Calls   int             // every call with the key
	Applied bool            // its effect was applied (once)
	Seq     int64           // the order of the effect among all effects
	Replays int             // calls after the effect was applied
	Refused bool            // answered 400: no effect
	Output  json.RawMessage // the answer of the successful call
}

// trigger is closed once the stub has seen n calls.
type trigger struct {
	n  int
	ch chan struct{}
}

// callBody is the body the service sends with a call.
type callBody struct {
	SagaID    string                     `json:"saga_id"`
	Step      string                     `json:"step"`
	StepIndex int                        `json:"step_index"`
	Kind      string                     `json:"kind"`
	Attempt   int                        `json:"attempt"`
	Input     json.RawMessage            `json:"input"`
	Context   json.RawMessage            `json:"context"`
	Outputs   map[string]json.RawMessage `json:"outputs"`
}

// newStub starts a stub participant with latencies in [latencyMin,
// latencyMax), closed when the test ends.
func newStub(t *testing.T, latencyMin, latencyMax time.Duration) *stub {
	t.Helper()
	p := &stub{
		t:          t,
		latencyMin: latencyMin,
		latencyMax: latencyMax,
		keys:       make(map[string]*keyRecord),
		bySaga:     make(map[string][]string),
		inflight:   make(map[string]int),
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// plan is what a test saga is to go through.
type plan struct {
	failLast  bool // the last step is refused: the saga ends Compensated
	flakyStep int  // this step answers 503 once first; -1: none
}

// want returns the end status the plan leads to.
func (pl plan) want() saga.SagaStatus {
	if pl.failLast {
		return saga.SagaStatusCompensated
	}
	return saga.SagaStatusCompleted
}

// expectedCalls returns how many calls a saga of the plan takes when
// nothing crashes.
func (pl plan) expectedCalls() int {
	n := len(stepNames)
	if pl.failLast {
		n += len(stepNames) - 1 // the compensations of the steps before
	}
	if pl.flakyStep >= 0 {
		n++
	}
	return n
}

// definition returns a three-step saga on the stub following pl.
func (p *stub) definition(name, idempotencyKey string, pl plan) saga.Definition {
	def := saga.Definition{
		Name:           name,
		Context:        json.RawMessage(fmt.Sprintf(`{"order_id": %q}`, idempotencyKey)),
		IdempotencyKey: idempotencyKey,
	}
	for i, stepName := range stepNames {
		action := fmt.Sprintf("%s/action/%d", p.srv.URL, i)
		switch {
		case pl.failLast && i == len(stepNames)-1:
			action += "?fail=400"
		case pl.flakyStep == i:
			action += "?flaky=1"
		}
		def.Steps = append(def.Steps, saga.StepDefinition{
			Name:         stepName,
			Action:       saga.Request{Method: http.MethodPost, URL: action, Body: json.RawMessage(fmt.Sprintf(`{"item": %d}`, i)), TimeoutMs: 10_000},
			Compensation: &saga.Request{Method: http.MethodPost, URL: fmt.Sprintf("%s/compensation/%d", p.srv.URL, i), TimeoutMs: 10_000},
			Retry:        &saga.RetryPolicy{MaxAttempts: 3, InitialBackoffMs: 20, MaxBackoffMs: 200},
		})
	}
	return def
}

// afterCalls returns a channel closed once the stub has received n calls.
func (p *stub) afterCalls(n int) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	if len(p.calls) >= n {
		close(ch)
		return ch
	}
	p.triggers = append(p.triggers, trigger{n: n, ch: ch})
	return ch
}

// violationf records a broken protocol rule; p.mu is held.
func (p *stub) violationf(format string, args ...any) {
	if len(p.violations) < 100 {
		p.violations = append(p.violations, fmt.Sprintf(format, args...))
	}
}

func (p *stub) serve(w http.ResponseWriter, r *http.Request) {
	kind, stepText, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	step, err := strconv.Atoi(stepText)
	if (kind != kindAction && kind != kindCompensation) || err != nil || step < 0 || step >= len(stepNames) {
		http.Error(w, "no such participant route", http.StatusNotFound)
		return
	}
	raw, _ := io.ReadAll(r.Body)
	var body callBody
	bodyErr := json.Unmarshal(raw, &body)
	sagaID := r.Header.Get("X-Saga-Id")
	key := r.Header.Get("Idempotency-Key")
	q := r.URL.Query()
	flaky, _ := strconv.Atoi(q.Get("flaky"))

	p.mu.Lock()
	if want := sagaID + ":" + stepText + ":" + kind; key != want {
		p.violationf("call %s %s: Idempotency-Key %q, want %q", r.Method, r.URL.Path, key, want)
	}
	if got := r.Header.Get("X-Saga-Step"); got != stepText {
		p.violationf("saga %s %s: X-Saga-Step %q, want %s", sagaID, r.URL.Path, got, stepText)
	}
	if r.Header.Get("X-Transaction-Id") == "" {
		p.violationf("saga %s %s: no X-Transaction-Id", sagaID, r.URL.Path)
	}
	switch {
	case bodyErr != nil:
		p.violationf("saga %s %s: body is not a call body: %v", sagaID, r.URL.Path, bodyErr)
	case body.SagaID != sagaID || body.Kind != kind || body.StepIndex != step || body.Step != stepNames[step]:
		p.violationf("saga %s %s: body names saga %s, %s %d (%s)", sagaID, r.URL.Path, body.SagaID, body.Kind, body.StepIndex, body.Step)
	case kind == kindAction:
		// The body carries the outputs of the steps before, also after a
		// crash: they come from what the service wrote, not its memory.
		for j := range step {
			prev := p.keys[sagaID+":"+strconv.Itoa(j)+":"+kindAction]
			got := body.Outputs[stepNames[j]]
			if prev == nil || !prev.Applied || !jsonEqual(got, prev.Output) {
				p.violationf("saga %s step %d: outputs[%s] = %s, want the answer of step %d", sagaID, step, stepNames[j], got, j)
			}
		}
	}

	p.inflight[sagaID]++
	if n := p.inflight[sagaID]; n > 1 {
		p.overlaps = append(p.overlaps, fmt.Sprintf("saga %s: %s %d began while %d other call(s) of the saga were in progress", sagaID, kind, step, n-1))
	}
	kr := p.keys[key]
	if kr == nil {
		kr = &keyRecord{SagaID: sagaID, Step: step, Kind: kind}
		p.keys[key] = kr
		p.bySaga[sagaID] = append(p.bySaga[sagaID], key)
	}
	kr.Calls++
	status := http.StatusOK
	switch {
	case kind == kindAction && q.Get("fail") == "400":
		status = http.StatusBadRequest
		kr.Refused = true
	case kr.Applied:
		kr.Replays++
	case kr.Calls <= flaky:
		status = http.StatusServiceUnavailable
	default:
		// The effect is applied now, before the latency: a crash of the
		// caller while it waits loses the answer, not the effect.
		p.effects++
		kr.Applied = true
		kr.Seq = p.effects
		kr.Output = json.RawMessage(fmt.Sprintf(`{"saga_id": %q, "step": %d, "kind": %q, "effect": %d}`, sagaID, step, kind, kr.Seq))
	}
	output := kr.Output
	p.calls = append(p.calls, callRecord{SagaID: sagaID, Step: step, Kind: kind, Key: key, At: time.Now(), Status: status})
	p.triggers = slices.DeleteFunc(p.triggers, func(tr trigger) bool {
		if len(p.calls) >= tr.n {
			close(tr.ch)
			return true
		}
		return false
	})
	p.mu.Unlock()

	latency := p.latencyMin
	if p.latencyMax > p.latencyMin {
		latency += rand.N(p.latencyMax - p.latencyMin)
	}
	timer := time.NewTimer(latency)
	select {
	case <-timer.C:
	case <-r.Context().Done(): // the caller went away (killed)
		timer.Stop()
	}
	// The call ends here, before the answer goes out: the caller's next
	// call cannot begin before it.
	p.mu.Lock()
	p.inflight[sagaID]--
	p.mu.Unlock()
	if r.Context().Err() != nil {
		return
	}
	switch status {
	case http.StatusOK:
		w.Header().Set("Content-Type", "application/json")
		w.Write(output)
	case http.StatusBadRequest:
		http.Error(w, "refused: the test plan fails this step", status)
	default:
		http.Error(w, "unavailable: the test plan makes this step flaky", status)
	}
}

// stubSummary counts what the stub saw.
type stubSummary struct {
	Calls    int // raw calls
	Keys     int // distinct idempotency keys
	Effects  int // keys whose effect was applied
	Refused  int // keys refused with 400
	Replays  int // calls made again after their effect had been applied
	Replayed int // keys with at least one replay
}

func (p *stub) summary() stubSummary {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := stubSummary{Calls: len(p.calls), Keys: len(p.keys)}
	for _, kr := range p.keys {
		if kr.Applied {
			s.Effects++
		}
		if kr.Refused {
			s.Refused++
		}
		s.Replays += kr.Replays
		if kr.Replays > 0 {
			s.Replayed++
		}
	}
	return s
}

// callCount returns how many calls the stub has received.
func (p *stub) callCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.calls)
}

// checkHealth reports overlapping calls and protocol violations.
func (p *stub) checkHealth(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, o := range p.overlaps {
		if i == 20 {
			t.Errorf("… %d overlapping calls in all", len(p.overlaps))
			break
		}
		t.Errorf("overlapping calls: %s", o)
	}
	for _, v := range p.violations {
		t.Errorf("protocol violation: %s", v)
	}
	for id, n := range p.inflight {
		if n != 0 {
			t.Errorf("saga %s: %d calls still counted in progress", id, n)
		}
	}
}

// checkEffects compares the effects applied for saga id with what its end
// status means, and returns the problems: every action applied once (a
// single key per step and kind, in step order); for a Compensated saga the
// last action refused, and the compensations of the other steps applied in
// reverse order after the actions; nothing else.
func (p *stub) checkEffects(id string, status saga.SagaStatus) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	last := len(stepNames) - 1
	get := func(step int, kind string) *keyRecord {
		return p.keys[id+":"+strconv.Itoa(step)+":"+kind]
	}
	want := make(map[string]bool)
	var seqs []int64 // effects in the order the saga must apply them
	switch status {
	case saga.SagaStatusCompleted:
		for i := range stepNames {
			want[id+":"+strconv.Itoa(i)+":"+kindAction] = true
			if kr := get(i, kindAction); kr == nil || !kr.Applied || kr.Refused {
				bad("action %d not applied", i)
			} else {
				seqs = append(seqs, kr.Seq)
			}
		}
	case saga.SagaStatusCompensated:
		for i := range last {
			want[id+":"+strconv.Itoa(i)+":"+kindAction] = true
			if kr := get(i, kindAction); kr == nil || !kr.Applied {
				bad("action %d not applied", i)
			} else {
				seqs = append(seqs, kr.Seq)
			}
		}
		want[id+":"+strconv.Itoa(last)+":"+kindAction] = true
		if kr := get(last, kindAction); kr == nil || !kr.Refused || kr.Applied {
			bad("action %d not refused as planned", last)
		}
		for j := last - 1; j >= 0; j-- {
			want[id+":"+strconv.Itoa(j)+":"+kindCompensation] = true
			if kr := get(j, kindCompensation); kr == nil || !kr.Applied {
				bad("compensation %d not applied", j)
			} else {
				seqs = append(seqs, kr.Seq)
			}
		}
	default:
		bad("unexpected end status %s", status)
	}
	if !slices.IsSorted(seqs) {
		bad("effects applied out of order: %v (actions in step order, then compensations in reverse)", seqs)
	}
	for _, key := range p.bySaga[id] {
		if !want[key] {
			bad("unexpected call with key %s (%d calls)", key, p.keys[key].Calls)
		}
	}
	return problems
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}
