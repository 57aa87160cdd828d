package engine

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// This file is the saga state machine: decide takes a saga as stored, the
// store's clock, the calls in flight and the outcomes that came back, and
// returns the next transition to write and the calls it allows. It does no
// I/O, keeps no timers and does not change its input; the runner (runner.go)
// writes what it decides, makes the calls and feeds their outcomes back.

// callKey names one call of a saga: a step's action or its compensation.
type callKey struct {
	kind  participant.Kind
	index int
}

// call is one participant call the machine allowed: written as started
// with its attempt, to be sent once that write is durable.
type call struct {
	participant.Call
	policy saga.RetryPolicy // with defaults
	// budgetFrom is the attempts made before the policy's budget began
	// (those before an operator's retry): Attempt - budgetFrom counts
	// against it.
	budgetFrom int
	// The row before the start, restored when the call is withdrawn.
	prevStep saga.Step
	prevComp *saga.Compensation
}

func (c *call) key() callKey { return callKey{c.Kind, c.StepIndex} }

// budgetAttempt is the call's attempt within its retry budget.
func (c *call) budgetAttempt() int { return c.Attempt - c.budgetFrom }

// outcome is what came of a call, with the backoff the runner drew for a
// retry (jitter is randomness, which the machine does not hold).
type outcome struct {
	call    *call
	res     participant.Result
	backoff time.Duration
}

// plan is what a definition says about order, worked out once per runner.
type plan struct {
	def         *saga.Definition
	graph       saga.Graph
	maxParallel int     // 1 for a chain
	descendants [][]int // steps depending on each step, transitively (DAG only)
}

func newPlan(def *saga.Definition) *plan {
	p := &plan{def: def, graph: saga.Graph{Chain: true}, maxParallel: 1}
	if def.IsDAG() {
		// A chain needs no graph built: step i waits for step i-1.
		p.graph = def.Graph()
		p.maxParallel = def.EffectiveMaxParallel()
		rev := saga.Graph{Deps: p.graph.Dependents, Dependents: p.graph.Deps}
		p.descendants = make([][]int, len(def.Steps))
		for i := range def.Steps {
			p.descendants[i] = rev.Ancestors(i)
		}
	}
	return p
}

// input is what decide decides from.
type input struct {
	s    *saga.Saga // as stored after the last write; not changed
	plan *plan
	now  time.Time // the store's clock (estimated from its last answer)
	// inFlight holds the calls sent whose outcome has not come back;
	// unsent the calls written as started but not sent yet.
	inFlight map[callKey]*call
	unsent   []*call
	outcomes []outcome
	// retryAt holds, by the store's clock, when each Retrying call this
	// runner knows of is due; a Retrying call absent from it is due now
	// (its saga was claimed).
	retryAt map[callKey]time.Time
	// claimed is true for the first decision after a claim; checkpoint is
	// then the saga's latest checkpoint (nil: none).
	claimed    bool
	checkpoint *saga.Checkpoint
	stopping   bool          // the instance is stopping: start nothing new
	leaseFor   time.Duration // waits longer than half of it release the saga
}

// decision is what decide returns.
type decision struct {
	t     saga.Transition // SagaID, Lease and LeaseFor are the runner's
	write bool            // t holds something to write
	// start: calls t writes as started (sent by the next decision once t is
	// durable); send: unsent calls to send now.
	start []*call
	send  []*call
	// retryAt replaces input.retryAt: the due times of the Retrying calls
	// once t is written.
	retryAt map[callKey]time.Time
	// wakeAt is when to decide again if nothing else happens (zero: only
	// when an outcome or a request comes); signalAfter > 0 asks the claim
	// loop to look again that much later (a saga released to wait).
	wakeAt      time.Time
	signalAfter time.Duration
	exit        bool // t releases the saga: stop after writing it
	// Notes for metrics and logs.
	started  bool
	ended    saga.SagaStatus
	retried  []participant.Kind
	messages []note
	// err reports a bug: a status change saga.CanTransition forbids. Nothing
	// of the decision may be written.
	err error
}

// note is a log line the runner writes for the decision.
type note struct {
	level int // 0 debug, 1 info, 2 warn, 3 error
	msg   string
	args  []any
}

// machine holds the state of one decide call: a working copy of the saga
// that the decision changes as it goes.
type machine struct {
	in   *input
	p    *plan
	s    saga.Saga // the working copy; Steps is its own slice
	d    decision
	ctrl saga.ControlAction // the pending request not yet taken
	// calls sent and not back, plus those sent by this decision.
	busy keySet
	// retryAt: in.retryAt with this decision's changes (a copy once
	// retryOwned).
	retryAt    map[callKey]time.Time
	retryOwned bool
	// completedBefore is the completed-step count before this decision.
	completedBefore int
	lastCompleted   int // index of the last step completed by this decision
}

// keySet is a small set of calls: a saga has at most MaxParallelLimit in
// flight, so a slice beats a map.
type keySet []callKey

func (s keySet) has(k callKey) bool { return slices.Contains(s, k) }
func (s keySet) len() int           { return len(s) }

func (s *keySet) add(k callKey) {
	if !s.has(k) {
		*s = append(*s, k)
	}
}

func (s *keySet) remove(k callKey) {
	if i := slices.Index(*s, k); i >= 0 {
		*s = slices.Delete(*s, i, i+1)
	}
}

// decide returns the next transition and calls of the saga in in.
func decide(in *input) decision {
	m := &machine{in: in, p: in.plan, s: *in.s, ctrl: in.s.Control, lastCompleted: -1}
	m.s.Steps = slices.Clone(in.s.Steps)
	m.completedBefore = in.s.CompletedSteps
	for k := range in.inFlight {
		m.busy.add(k)
	}
	m.retryAt = in.retryAt
	if in.claimed {
		m.takeOver()
	}
	for _, o := range in.outcomes {
		m.record(o)
	}
	m.checkpointIfDue()
	for _, c := range in.unsent {
		m.sendOrWithdraw(c)
	}
	m.run()
	m.finish()
	return m.d
}

// run moves the saga on from its status until a decision is reached.
func (m *machine) run() {
	for range 8 { // each pass changes the status or returns
		if m.d.err != nil {
			return
		}
		switch m.s.Status {
		case saga.SagaStatusCreated:
			if m.created() {
				return
			}
		case saga.SagaStatusExecuting:
			if m.executing() {
				return
			}
		case saga.SagaStatusPaused:
			if m.paused() {
				return
			}
		case saga.SagaStatusCompensating:
			if m.compensating() {
				return
			}
		case saga.SagaStatusFailed:
			if m.ctrl == saga.ControlRetry {
				m.retryCompensation()
				continue
			}
			m.ignoreControl()
			m.park(saga.Wake{Kind: saga.WakeNever})
			return
		default: // an end state: nothing to do
			m.ignoreControl()
			m.park(saga.Wake{Kind: saga.WakeNever})
			return
		}
	}
	m.d.err = fmt.Errorf("saga state machine: no decision reached in status %s", m.s.Status)
}

func (m *machine) created() bool {
	switch m.ctrl {
	case saga.ControlPause:
		m.pause()
		return true
	case saga.ControlCancel:
		m.takeControl()
		m.beginCompensation(saga.SagaStatusCancelled, "cancelled by operator")
		return false
	case saga.ControlResume, saga.ControlRetry:
		m.ignoreControl()
	}
	if m.deadlineReached() {
		m.beginCompensation(saga.SagaStatusTimedOut, "deadline exceeded before the saga started")
		return false
	}
	if m.in.stopping {
		m.park(saga.Wake{Kind: saga.WakeAfter})
		return true
	}
	m.setStatus(saga.SagaStatusExecuting)
	m.d.t.Started = true
	m.event(saga.EventSagaStarted, nil, nil)
	m.d.started = true
	return false
}

func (m *machine) executing() bool {
	// A step failed for good: nothing new starts; what is in flight may
	// finish; then compensation.
	if i := m.failedStep(); i >= 0 {
		if m.inFlight() {
			return m.waitForOutcomes()
		}
		to := saga.SagaStatusCompensated
		if m.deadlineReached() {
			to = saga.SagaStatusTimedOut
		}
		reason := m.s.Error
		if reason == "" {
			st := m.s.Steps[i]
			reason = fmt.Sprintf("step %q failed: %s", st.Name, st.Error)
		}
		m.beginCompensation(to, reason)
		return false
	}
	switch m.ctrl {
	case saga.ControlPause:
		if m.inFlight() {
			return m.waitForOutcomes()
		}
		m.pause()
		return true
	case saga.ControlCancel:
		if m.inFlight() {
			return m.waitForOutcomes()
		}
		m.takeControl()
		m.beginCompensation(saga.SagaStatusCancelled, "cancelled by operator")
		return false
	case saga.ControlResume, saga.ControlRetry:
		m.ignoreControl()
	}
	if m.deadlineReached() {
		if m.inFlight() {
			return m.waitForOutcomes()
		}
		m.beginCompensation(saga.SagaStatusTimedOut, "saga deadline exceeded")
		return false
	}
	if m.allCompleted() {
		m.end(saga.SagaStatusCompleted)
		return true
	}
	if m.in.stopping {
		return m.releaseOrDrain(true)
	}
	for _, i := range m.readySteps() {
		m.startAction(i)
	}
	return m.waitOrPark(true)
}

func (m *machine) paused() bool {
	switch m.ctrl {
	case saga.ControlResume:
		m.takeControl()
		m.setStatus(saga.SagaStatusExecuting)
		m.event(saga.EventSagaResumed, nil, nil)
		m.forgetRetries()
		return false
	case saga.ControlCancel:
		m.takeControl()
		m.beginCompensation(saga.SagaStatusCancelled, "cancelled by operator")
		return false
	case saga.ControlPause, saga.ControlRetry:
		m.ignoreControl()
	}
	if m.deadlineReached() {
		m.beginCompensation(saga.SagaStatusTimedOut, "saga deadline exceeded while paused")
		return false
	}
	m.park(m.pausedWake())
	return true
}

func (m *machine) compensating() bool {
	m.ignoreControl()
	if j := m.failedCompensation(); j >= 0 {
		if m.inFlight() {
			return m.waitForOutcomes()
		}
		m.end(saga.SagaStatusFailed)
		return true
	}
	if m.compensationsDone() {
		if m.inFlight() {
			return m.waitForOutcomes()
		}
		to := m.s.CompensateTo
		if to == "" {
			to = saga.SagaStatusCompensated
		}
		m.end(to)
		return true
	}
	if m.in.stopping {
		return m.releaseOrDrain(false)
	}
	for _, j := range m.readyCompensations() {
		m.startCompensation(j)
	}
	return m.waitOrPark(false)
}

// waitForOutcomes decides to wait for the calls in flight.
func (m *machine) waitForOutcomes() bool {
	m.wakeAtDeadline()
	return true
}

// waitOrPark ends a decision in which nothing more can start now: wait for
// the calls in flight or the next retry, or let go of the saga while a
// long retry wait runs. actions says whether the saga executes (its
// deadline bounds the wait).
func (m *machine) waitOrPark(actions bool) bool {
	due, ok := m.nextRetry(actions)
	if m.inFlight() {
		if ok {
			m.wakeAt(due)
		}
		m.wakeAtDeadline()
		return true
	}
	if !ok {
		m.d.err = fmt.Errorf("saga state machine: status %s with nothing in flight, nothing to start and nothing to wait for", m.s.Status)
		return true
	}
	left := due.Sub(m.in.now)
	if left > m.in.leaseFor/2 {
		// Let go of the saga meanwhile; the claim loop looks again when it
		// is due rather than on its next slow tick.
		m.park(saga.Wake{Kind: saga.WakeAfter, After: left})
		m.d.signalAfter = left
		return true
	}
	m.wakeAt(due)
	return true
}

// releaseOrDrain is the decision of a stopping instance: wait for what is
// in flight, then release the saga, due when its next retry is.
func (m *machine) releaseOrDrain(actions bool) bool {
	if m.inFlight() {
		return m.waitForOutcomes()
	}
	after := time.Duration(0)
	if due, ok := m.nextRetry(actions); ok {
		after = max(due.Sub(m.in.now), 0)
	}
	m.park(saga.Wake{Kind: saga.WakeAfter, After: after})
	return true
}

// nextRetry returns the earliest due time of a Retrying call not in
// flight, bounded by the deadline for actions; ok is false when none waits.
func (m *machine) nextRetry(actions bool) (due time.Time, ok bool) {
	consider := func(k callKey) {
		if m.busy.has(k) {
			return
		}
		at, known := m.retryAt[k]
		if !known {
			at = m.in.now
		}
		if !ok || at.Before(due) {
			due, ok = at, true
		}
	}
	for i := range m.s.Steps {
		st := &m.s.Steps[i]
		if actions && st.Status == saga.StepStatusRetrying {
			consider(callKey{participant.KindAction, i})
		}
		if !actions && st.Compensation != nil && st.Compensation.Status == saga.CompensationStatusRetrying {
			consider(callKey{participant.KindCompensation, i})
		}
	}
	if ok && actions && m.s.Deadline != nil && m.s.Deadline.Before(due) {
		due = *m.s.Deadline
	}
	return due, ok
}

// wakeAt asks to decide again at t at the latest. A time that has come
// already is of no use while calls are in flight: what it was for (a due
// retry with no room left, a deadline passed) waits for their outcomes,
// which wake the runner; a timer at it would make the runner decide again
// and again until they come (a busy loop the simulator found).
func (m *machine) wakeAt(t time.Time) {
	if !t.After(m.in.now) && m.inFlight() {
		return
	}
	if m.d.wakeAt.IsZero() || t.Before(m.d.wakeAt) {
		m.d.wakeAt = t
	}
}

// wakeAtDeadline asks to decide again at the deadline of an executing saga.
func (m *machine) wakeAtDeadline() {
	if m.s.Deadline != nil && (m.s.Status == saga.SagaStatusExecuting || m.s.Status == saga.SagaStatusCreated) {
		m.wakeAt(*m.s.Deadline)
	}
}

// takeOver opens the first write after a claim: who took the saga, and,
// for every call found in flight, that it is made again.
func (m *machine) takeOver() {
	data := newObject(64)
	if cp := m.in.checkpoint; cp != nil {
		data.int("checkpoint_step", int64(cp.StepIndex))
	}
	data.int("epoch", m.s.LeaseEpoch)
	data.str("status", string(m.s.Status))
	m.eventJSON(saga.EventLeaseTaken, nil, data.done())
	m.d.write = true
}

// recoveredData is the data of SagaRecovered: the call found in flight and
// the checkpoint the runner restored the saga's context from.
func (m *machine) recoveredData(kind participant.Kind, attempt int) json.RawMessage {
	o := newObject(96)
	o.int("attempt", int64(attempt))
	if cp := m.in.checkpoint; cp != nil {
		o.key("checkpoint")
		o.b = append(o.b, `{"created_at":`...)
		o.b = saga.AppendJSONString(o.b, cp.CreatedAt.UTC().Format(time.RFC3339Nano))
		o.b = append(o.b, `,"step_index":`...)
		o.b = fmt.Appendf(o.b, "%d}", cp.StepIndex)
	} else {
		o.raw("checkpoint", nil)
	}
	o.str("kind", string(kind))
	return o.done()
}

// record writes the outcome of a call.
func (m *machine) record(o outcome) {
	k := o.call.key()
	m.busy.remove(k)
	data := outcomeData{c: o.call, res: &o.res, backoff: -1}
	if k.kind == participant.KindAction {
		m.recordAction(o, data)
	} else {
		m.recordCompensation(o, data)
	}
}

func (m *machine) recordAction(o outcome, data outcomeData) {
	c, res := o.call, o.res
	i := c.StepIndex
	st := m.s.Steps[i]
	if res.Outcome == participant.OutcomeSuccess && m.outputBytes()+len(res.Output) > saga.MaxSagaOutputBytes {
		// The participant acted, but its answer cannot be kept: the step
		// fails, uncertain, and is compensated.
		res = participant.Result{
			Outcome: participant.OutcomePermanent, StatusCode: res.StatusCode, Duration: res.Duration, Uncertain: true,
			Error: fmt.Sprintf("the answer (%d bytes) would take the saga's outputs past their budget of %d bytes", len(res.Output), saga.MaxSagaOutputBytes),
		}
		data.res = &res
	}
	if res.Outcome == participant.OutcomeSuccess {
		st.Status = saga.StepStatusCompleted
		st.Output = cmpRaw(res.Output)
		st.Error = ""
		st.Uncertain = false
		m.putStep(st, true, true)
		m.eventJSON(saga.EventStepCompleted, &i, data.json())
		m.s.CompletedSteps = m.countCompleted()
		m.lastCompleted = i
		return
	}
	timedOut := m.deadlineReached()
	failing := m.failedStep() >= 0
	if res.Outcome == participant.OutcomeTransient && !timedOut && !failing && c.Attempt < c.policy.MaxAttempts {
		st.Status = saga.StepStatusRetrying
		st.Error = res.Error
		st.Uncertain = st.Uncertain || res.Uncertain
		m.putStep(st, true, false)
		data.backoff = o.backoff
		data.res = uncertainAs(data.res, st.Uncertain)
		m.eventJSON(saga.EventStepRetrying, &i, data.json())
		m.setRetry(callKey{participant.KindAction, i}, m.in.now.Add(o.backoff))
		m.d.retried = append(m.d.retried, participant.KindAction)
		m.log(0, "step failed: retrying", "step_index", i, "step", st.Name, "attempt", c.Attempt, "error", res.Error, "backoff", o.backoff)
		return
	}
	st.Status = saga.StepStatusFailed
	st.Error = res.Error
	// Uncertain once, uncertain until the step completes: an earlier
	// attempt that timed out (or was cut short by a crash) may still take
	// effect, however certain the last failure (a 429, a refused
	// connection).
	// A refusal is the participant's answer to this idempotency key, which
	// an idempotent participant gives only when nothing was done: certain.
	st.Uncertain = st.Uncertain || res.Uncertain
	if res.Outcome == participant.OutcomePermanent && res.StatusCode != 0 {
		st.Uncertain = res.Uncertain
	}
	m.putStep(st, true, true)
	data.res = uncertainAs(data.res, st.Uncertain)
	m.eventJSON(saga.EventStepFailed, &i, data.json())
	if failing {
		// Another step failed first: its cause stays the saga's error.
		m.log(1, "step failed while the saga was failing", "step_index", i, "step", st.Name, "error", res.Error)
		return
	}
	switch {
	case timedOut:
		m.s.Error = fmt.Sprintf("saga deadline exceeded during step %q: %s", st.Name, res.Error)
		m.log(1, "step failed at the saga deadline", "step_index", i, "step", st.Name, "error", res.Error, "uncertain", res.Uncertain)
	default:
		why := "refused"
		if res.Outcome == participant.OutcomeTransient {
			why = "retries exhausted"
		}
		m.s.Error = fmt.Sprintf("step %q failed (%s): %s", st.Name, why, res.Error)
		m.log(1, "step failed: "+why, "step_index", i, "step", st.Name, "attempt", c.Attempt, "error", res.Error, "uncertain", res.Uncertain)
	}
}

func (m *machine) recordCompensation(o outcome, data outcomeData) {
	c, res := o.call, o.res
	j := c.StepIndex
	comp := *m.s.Steps[j].Compensation
	if res.Outcome == participant.OutcomeSuccess {
		comp.Status = saga.CompensationStatusCompleted
		comp.Output = cmpRaw(res.Output)
		comp.Error = ""
		if held := m.outputBytes() - compOutputBytes(m.s.Steps[j].Compensation); held+len(res.Output) > saga.MaxSagaOutputBytes {
			// The step is undone; only the answer cannot be kept.
			comp.Output = json.RawMessage("null")
			data.dropped = len(res.Output)
			m.log(1, "compensation answer not kept: it would take the saga's outputs past their budget",
				"step_index", j, "step", c.StepName, "bytes", len(res.Output), "budget", saga.MaxSagaOutputBytes)
		}
		m.putComp(j, comp, false, true)
		m.eventJSON(saga.EventCompensationCompleted, &j, data.json())
		return
	}
	if res.Outcome == participant.OutcomeTransient && c.budgetAttempt() < c.policy.MaxAttempts {
		comp.Status = saga.CompensationStatusRetrying
		comp.Error = res.Error
		m.putComp(j, comp, false, false)
		data.backoff = o.backoff
		m.eventJSON(saga.EventCompensationRetrying, &j, data.json())
		m.setRetry(callKey{participant.KindCompensation, j}, m.in.now.Add(o.backoff))
		m.d.retried = append(m.d.retried, participant.KindCompensation)
		m.log(0, "compensation failed: retrying", "step_index", j, "step", c.StepName, "attempt", c.Attempt, "error", res.Error, "backoff", o.backoff)
		return
	}
	comp.Status = saga.CompensationStatusFailed
	comp.Error = res.Error
	m.putComp(j, comp, false, true)
	m.eventJSON(saga.EventCompensationFailed, &j, data.json())
	if m.failedCompensationOtherThan(j) < 0 {
		// The cause of the compensation stays first: an operator's retry
		// that succeeds goes back to it.
		m.s.Error = m.s.Error + compensationFailedSep + fmt.Sprintf("compensation of step %q failed: %s", c.StepName, res.Error)
		m.s.Error = strings.TrimPrefix(m.s.Error, compensationFailedSep)
	}
}

// uncertainAs returns res with Uncertain set to the step's: the event of
// an attempt tells whether the step's effect is uncertain (as the trail's
// replay reads it), which an earlier attempt may have made so.
func uncertainAs(res *participant.Result, uncertain bool) *participant.Result {
	if res.Uncertain == uncertain {
		return res
	}
	r := *res
	r.Uncertain = uncertain
	return &r
}

// sendOrWithdraw sends a call written as started, unless what the write
// revealed comes first: then the start is withdrawn.
func (m *machine) sendOrWithdraw(c *call) {
	reason := m.holdReason(c)
	if reason == "" {
		m.d.send = append(m.d.send, c)
		m.busy.add(c.key())
		return
	}
	// The trail says the start was withdrawn, so that a StepStarted (or
	// CompensationStarted) without an outcome never reads as a call that
	// may have been made.
	o := newObject(64)
	o.int("attempt", int64(c.Attempt))
	o.str("kind", string(c.Kind))
	o.str("reason", reason)
	i := c.StepIndex
	m.eventJSON(saga.EventCallWithdrawn, &i, o.done())
	if c.Kind == participant.KindAction {
		st := c.prevStep
		st.Input = m.s.Steps[i].Input
		m.putStep(st, false, false)
		return
	}
	if c.prevComp == nil {
		m.putComp(i, saga.Compensation{StepIndex: i, Status: saga.CompensationStatusPending}, false, false)
		return
	}
	m.putComp(i, *c.prevComp, false, false)
}

// holdReason says why a call written as started must not go out, or "".
func (m *machine) holdReason(c *call) string {
	switch {
	case m.in.stopping:
		return "instance stopping"
	case c.Kind == participant.KindCompensation:
		return ""
	case m.ctrl == saga.ControlPause:
		return "pause requested"
	case m.ctrl == saga.ControlCancel:
		return "cancel requested"
	case m.deadlineReached():
		return "deadline passed"
	}
	return ""
}

// readySteps returns the steps that may start now, in index order, as
// many as the saga's parallelism leaves room for: Pending steps whose
// dependencies completed, Retrying steps that are due, and steps found
// Executing with no call of this runner (their call was in flight when
// the previous owner let go).
func (m *machine) readySteps() []int {
	room := m.p.maxParallel - m.busy.len()
	var out []int
	for i := 0; i < len(m.s.Steps) && len(out) < room; i++ {
		k := callKey{participant.KindAction, i}
		if m.busy.has(k) {
			continue
		}
		switch m.s.Steps[i].Status {
		case saga.StepStatusPending:
			if m.depsCompleted(i) {
				out = append(out, i)
			}
		case saga.StepStatusRetrying:
			if m.due(k) {
				out = append(out, i)
			}
		case saga.StepStatusExecuting:
			out = append(out, i)
		}
	}
	return out
}

// readyCompensations returns the compensations that may start now: of
// steps to undo whose dependents (transitively) are all undone.
func (m *machine) readyCompensations() []int {
	room := m.p.maxParallel - m.busy.len()
	var out []int
	for j := len(m.s.Steps) - 1; j >= 0 && len(out) < room; j-- {
		k := callKey{participant.KindCompensation, j}
		if m.busy.has(k) || !m.needsCompensation(j) {
			continue
		}
		comp := m.s.Steps[j].Compensation
		if comp != nil {
			switch comp.Status {
			case saga.CompensationStatusCompleted, saga.CompensationStatusFailed:
				continue
			case saga.CompensationStatusRetrying:
				if !m.due(k) {
					continue
				}
			}
		}
		if m.dependentsUndone(j) {
			out = append(out, j)
		}
		if m.p.graph.Chain {
			// In a chain, compensation runs strictly in reverse order.
			break
		}
	}
	return out
}

func (m *machine) due(k callKey) bool {
	at, known := m.retryAt[k]
	return !known || !at.After(m.in.now)
}

func (m *machine) depsCompleted(i int) bool {
	if m.p.graph.Chain {
		return i == 0 || m.s.Steps[i-1].Status == saga.StepStatusCompleted
	}
	for _, j := range m.p.graph.Deps[i] {
		if m.s.Steps[j].Status != saga.StepStatusCompleted {
			return false
		}
	}
	return true
}

// dependentsUndone reports whether every step depending on j, directly
// or not, needs no undoing or has been undone.
func (m *machine) dependentsUndone(j int) bool {
	var after []int
	if m.p.graph.Chain {
		for k := j + 1; k < len(m.s.Steps); k++ {
			if !m.undone(k) {
				return false
			}
		}
		return true
	}
	after = m.p.descendants[j]
	for _, k := range after {
		if !m.undone(k) {
			return false
		}
	}
	return true
}

func (m *machine) undone(k int) bool {
	if !m.needsCompensation(k) {
		return true
	}
	c := m.s.Steps[k].Compensation
	return c != nil && c.Status == saga.CompensationStatusCompleted
}

// needsCompensation reports whether step i must be undone: it completed,
// or failed with an uncertain effect, and it has a compensation.
func (m *machine) needsCompensation(i int) bool {
	if m.p.def.Steps[i].Compensation == nil {
		return false
	}
	st := m.s.Steps[i]
	return st.Status == saga.StepStatusCompleted || (st.Status == saga.StepStatusFailed && st.Uncertain)
}

func (m *machine) compensationsDone() bool {
	for j := range m.s.Steps {
		if !m.undone(j) {
			return false
		}
	}
	return true
}

// failedStep returns a step that failed for good (or was skipped by an
// earlier writer that could not move on), or -1.
func (m *machine) failedStep() int {
	for i := range m.s.Steps {
		if s := m.s.Steps[i].Status; s == saga.StepStatusFailed || s == saga.StepStatusSkipped {
			return i
		}
	}
	return -1
}

func (m *machine) failedCompensation() int { return m.failedCompensationOtherThan(-1) }

func (m *machine) failedCompensationOtherThan(skip int) int {
	for j := range m.s.Steps {
		if c := m.s.Steps[j].Compensation; j != skip && c != nil && c.Status == saga.CompensationStatusFailed {
			return j
		}
	}
	return -1
}

// outputBytes is the size of the outputs the saga holds, those of its
// steps and of its compensations: saga.MaxSagaOutputBytes bounds both
// together.
func (m *machine) outputBytes() int {
	n := 0
	for i := range m.s.Steps {
		if m.s.Steps[i].Status == saga.StepStatusCompleted {
			n += len(m.s.Steps[i].Output)
		}
		n += compOutputBytes(m.s.Steps[i].Compensation)
	}
	return n
}

// compOutputBytes is the size of a compensation's output, 0 when it has
// none.
func compOutputBytes(c *saga.Compensation) int {
	if c == nil || c.Status != saga.CompensationStatusCompleted {
		return 0
	}
	return len(c.Output)
}

func (m *machine) allCompleted() bool {
	return m.countCompleted() == len(m.s.Steps)
}

func (m *machine) countCompleted() int {
	n := 0
	for i := range m.s.Steps {
		if m.s.Steps[i].Status == saga.StepStatusCompleted {
			n++
		}
	}
	return n
}

func (m *machine) inFlight() bool { return m.busy.len() > 0 }

func (m *machine) deadlineReached() bool {
	return saga.DeadlineReached(m.s.Deadline, m.in.now)
}

// startAction writes step i as started with its next attempt.
func (m *machine) startAction(i int) {
	prev := m.s.Steps[i]
	st := prev
	k := callKey{participant.KindAction, i}
	if st.Status == saga.StepStatusExecuting {
		// A call was in flight when the saga's previous owner let go: its
		// effect is uncertain.
		st.Uncertain = true
		m.eventJSON(saga.EventSagaRecovered, &i, m.recoveredData(participant.KindAction, st.Attempts))
		m.log(1, "call in flight at recovery: making it again", "step_index", i, "attempt", st.Attempts)
	}
	st.Status = saga.StepStatusExecuting
	st.Attempts++
	m.putStep(st, true, false)
	m.eventJSON(saga.EventStepStarted, &i, startedData(st.Attempts, string(participant.KindAction)))
	def := m.p.def.Steps[i]
	c := &call{
		Call: participant.Call{
			SagaID:        m.s.ID,
			TransactionID: m.s.TransactionID,
			StepIndex:     i,
			StepName:      def.Name,
			Kind:          participant.KindAction,
			Attempt:       st.Attempts,
			Request:       def.Action,
			Context:       m.s.Context,
			Outputs:       m.outputs(i, false),
			Epoch:         m.s.LeaseEpoch,
		},
		policy:   def.Retry.WithDefaults(),
		prevStep: prev,
	}
	m.clearRetry(k)
	m.busy.add(k)
	m.d.start = append(m.d.start, c)
}

// startCompensation writes step j's compensation as started with its next
// attempt.
func (m *machine) startCompensation(j int) {
	var prev *saga.Compensation
	comp := saga.Compensation{StepIndex: j, Status: saga.CompensationStatusPending}
	if c := m.s.Steps[j].Compensation; c != nil {
		p := *c
		prev = &p
		comp = p
	}
	k := callKey{participant.KindCompensation, j}
	if comp.Status == saga.CompensationStatusExecuting {
		m.eventJSON(saga.EventSagaRecovered, &j, m.recoveredData(participant.KindCompensation, comp.Attempts))
		m.log(1, "compensation in flight at recovery: making it again", "step_index", j, "attempt", comp.Attempts)
	}
	comp.Status = saga.CompensationStatusExecuting
	comp.Attempts++
	m.putComp(j, comp, true, false)
	m.eventJSON(saga.EventCompensationStarted, &j, startedData(comp.Attempts, string(participant.KindCompensation)))

	def := m.p.def.Steps[j]
	policy := def.CompensationPolicy()
	c := &call{
		Call: participant.Call{
			SagaID:        m.s.ID,
			TransactionID: m.s.TransactionID,
			StepIndex:     j,
			StepName:      def.Name,
			Kind:          participant.KindCompensation,
			Attempt:       comp.Attempts,
			Request:       *def.Compensation,
			Context:       m.s.Context,
			Outputs:       m.outputs(j, true),
			Epoch:         m.s.LeaseEpoch,
		},
		policy:     policy,
		budgetFrom: comp.AttemptsBeforeRetry,
		prevComp:   prev,
	}
	m.clearRetry(k)
	m.busy.add(k)
	m.d.start = append(m.d.start, c)
}

// outputs returns the outputs of the completed steps that step i depends
// on, directly or not (in a chain: every step before it), and its own
// when self is set (a compensation).
func (m *machine) outputs(i int, self bool) map[string]json.RawMessage {
	var from []int
	if m.p.graph.Chain {
		n := i
		if self {
			n++
		}
		out := make(map[string]json.RawMessage, n)
		for k := range n {
			m.addOutput(out, k)
		}
		return out
	}
	from = m.p.graph.Ancestors(i)
	if self {
		from = append(from, i)
	}
	out := make(map[string]json.RawMessage, len(from))
	for _, k := range from {
		m.addOutput(out, k)
	}
	return out
}

func (m *machine) addOutput(out map[string]json.RawMessage, k int) {
	if st := m.s.Steps[k]; st.Status == saga.StepStatusCompleted {
		out[st.Name] = cmpRaw(st.Output)
	}
}

// beginCompensation stops executing: steps in progress fail, steps never
// run are skipped, and the saga compensates (or ends as to directly when
// nothing needs undoing).
func (m *machine) beginCompensation(to saga.SagaStatus, reason string) {
	m.failOpen(reason)
	for i := range m.s.Steps {
		st := m.s.Steps[i]
		if st.Status != saga.StepStatusPending {
			continue
		}
		st.Status = saga.StepStatusSkipped
		m.putStep(st, false, false)
		m.event(saga.EventStepSkipped, &i, nil)
	}
	for i := range m.s.Steps {
		st := m.s.Steps[i]
		if m.p.def.Steps[i].Compensation == nil && (st.Status == saga.StepStatusCompleted || st.Status == saga.StepStatusFailed && st.Uncertain) {
			o := newObject(48)
			o.str("reason", "the step has no compensation")
			m.eventJSON(saga.EventCompensationNotNeeded, &i, o.done())
		}
	}
	if to != saga.SagaStatusCancelled || m.s.Error == "" {
		m.s.Error = reason
	}
	m.forgetRetries()
	if m.compensationsDone() {
		m.end(to)
		return
	}
	m.setStatus(saga.SagaStatusCompensating)
	m.s.CompensateTo = to
	o := newObject(48 + len(reason))
	o.str("compensate_to", string(to))
	o.str("reason", reason)
	m.eventJSON(saga.EventSagaCompensating, nil, o.done())
	m.log(1, "saga compensating", "compensate_to", to, "reason", reason)
}

// failOpen fails the steps still in progress (Retrying, or Executing with
// no call of this runner) because the saga stops executing: the effect is
// uncertain when a call may have been made or the last failure was
// uncertain.
func (m *machine) failOpen(reason string) {
	for i := range m.s.Steps {
		st := m.s.Steps[i]
		switch st.Status {
		case saga.StepStatusExecuting:
			if m.busy.has(callKey{participant.KindAction, i}) {
				continue
			}
			st.Uncertain = true
		case saga.StepStatusRetrying:
		default:
			continue
		}
		st.Status = saga.StepStatusFailed
		st.Error = reason + prefixed("; last error: ", st.Error)
		m.putStep(st, false, true)
		o := newObject(64 + len(st.Error))
		o.int("attempt", int64(st.Attempts))
		o.str("error", st.Error)
		o.bool("uncertain", st.Uncertain)
		m.eventJSON(saga.EventStepFailed, &i, o.done())
	}
}

// retryCompensation carries out an operator's retry of a Failed saga: the
// unfinished compensations go on with a fresh attempt budget, counted from
// the attempts made so far (Attempts keeps counting them all).
func (m *machine) retryCompensation() {
	m.takeControl()
	m.setStatus(saga.SagaStatusCompensating)
	if m.s.CompensateTo == "" {
		m.s.CompensateTo = saga.SagaStatusCompensated
	}
	for j := range m.s.Steps {
		comp := m.s.Steps[j].Compensation
		if comp == nil || comp.Status == saga.CompensationStatusCompleted {
			continue
		}
		fresh := *comp
		fresh.Status = saga.CompensationStatusPending
		fresh.AttemptsBeforeRetry = fresh.Attempts
		m.putComp(j, fresh, false, false)
	}
	m.forgetRetries()
	// What failed is being retried: the error goes back to the cause.
	m.s.Error, _, _ = strings.Cut(m.s.Error, compensationFailedSep)
	o := newObject(32)
	o.str("compensate_to", string(m.s.CompensateTo))
	m.eventJSON(saga.EventSagaRetried, nil, o.done())
	m.log(1, "saga retried by operator")
}

// pause parks the saga Paused until an operator resumes it or its
// deadline passes.
func (m *machine) pause() {
	m.takeControl()
	m.setStatus(saga.SagaStatusPaused)
	m.event(saga.EventSagaPaused, nil, nil)
	m.park(m.pausedWake())
}

func (m *machine) pausedWake() saga.Wake {
	if m.s.Deadline != nil {
		return saga.Wake{Kind: saga.WakeAt, At: *m.s.Deadline}
	}
	return saga.Wake{Kind: saga.WakeNever}
}

// end moves the saga to an end state and releases it.
func (m *machine) end(status saga.SagaStatus) {
	m.setStatus(status)
	m.d.t.Ended = true
	m.s.CompensateTo = ""
	if status == saga.SagaStatusCompleted {
		m.s.Error = ""
	}
	var data json.RawMessage
	if m.s.Error != "" {
		o := newObject(16 + len(m.s.Error))
		o.str("error", m.s.Error)
		data = o.done()
	}
	m.eventJSON(endEvents[status], nil, data)
	m.park(saga.Wake{Kind: saga.WakeNever})
	m.d.ended = status
	if status == saga.SagaStatusFailed {
		m.log(3, "saga failed: compensation could not finish; waiting for an operator's retry", "error", m.s.Error)
	} else {
		m.log(0, "saga ended", "status", status)
	}
}

// compensationFailedSep joins a saga's error (the cause of compensating)
// and the failure of a compensation.
const compensationFailedSep = "; then "

// endEvents is the event of each end status.
var endEvents = map[saga.SagaStatus]saga.EventType{
	saga.SagaStatusCompleted:   saga.EventSagaCompleted,
	saga.SagaStatusCompensated: saga.EventSagaCompensated,
	saga.SagaStatusCancelled:   saga.EventSagaCancelled,
	saga.SagaStatusTimedOut:    saga.EventSagaTimedOut,
	saga.SagaStatusFailed:      saga.EventSagaFailed,
}

// park ends the decision by releasing the lease with wake. Never with a
// call in flight: the saga would be run twice.
func (m *machine) park(wake saga.Wake) {
	if m.inFlight() {
		m.d.err = fmt.Errorf("saga state machine: releasing saga in status %s with calls in flight", m.s.Status)
		return
	}
	m.d.t.Release = true
	m.d.t.Wake = wake
	m.d.exit = true
	m.d.write = true
}

// takeControl marks the pending request as carried out by this decision
// (the store clears that request, and only it).
func (m *machine) takeControl() {
	m.d.t.ClearControl = m.ctrl
	m.ctrl = saga.ControlNone
	m.d.write = true
}

// ignoreControl clears a pending request that the saga's status no longer
// allows, with an event saying so.
func (m *machine) ignoreControl() {
	if m.ctrl == saga.ControlNone {
		return
	}
	m.log(1, "operator request no longer allowed: cleared", "action", m.ctrl, "status", m.s.Status)
	o := newObject(48)
	o.str("action", string(m.ctrl))
	o.str("status", string(m.s.Status))
	m.eventJSON(EventControlIgnored, nil, o.done())
	m.takeControl()
}

// setStatus changes the saga's status, refusing what the state machine of
// saga.CanTransition does not allow.
func (m *machine) setStatus(to saga.SagaStatus) {
	if from := m.s.Status; from != to && !saga.CanTransition(from, to) {
		if m.d.err == nil {
			m.d.err = fmt.Errorf("saga state machine: impossible transition %s → %s", from, to)
		}
		return
	}
	m.s.Status = to
	m.d.t.Status = to
	m.d.write = true
}

func (m *machine) forgetRetries() {
	for k := range m.retryAt {
		m.clearRetry(k)
	}
}

func (m *machine) setRetry(k callKey, at time.Time) {
	m.ownRetries()
	m.retryAt[k] = at
}

func (m *machine) clearRetry(k callKey) {
	if _, ok := m.retryAt[k]; !ok {
		return
	}
	m.ownRetries()
	delete(m.retryAt, k)
}

// ownRetries copies the input's retry times before the first change, so
// that the input is not changed.
func (m *machine) ownRetries() {
	if m.retryOwned {
		return
	}
	own := make(map[callKey]time.Time, len(m.in.retryAt)+1)
	for k, v := range m.in.retryAt {
		own[k] = v
	}
	m.retryAt, m.retryOwned = own, true
}

// putStep sets a step's row in the working copy and the transition.
func (m *machine) putStep(st saga.Step, start, end bool) {
	m.s.Steps[st.Index] = st
	putUpdate(&m.d.t.Steps, saga.StepUpdate{
		Index: st.Index, Status: st.Status, Attempts: st.Attempts, Output: st.Output,
		Error: st.Error, Uncertain: st.Uncertain, Start: start, End: end,
	}, func(u saga.StepUpdate) int { return u.Index })
	m.d.write = true
}

// putComp sets a compensation row in the working copy and the transition.
func (m *machine) putComp(j int, comp saga.Compensation, start, end bool) {
	comp.StepIndex = j
	m.s.Steps[j].Compensation = &comp
	putUpdate(&m.d.t.Compensations, saga.CompensationUpdate{
		StepIndex: j, Status: comp.Status, Attempts: comp.Attempts, AttemptsBeforeRetry: comp.AttemptsBeforeRetry,
		Output: comp.Output, Error: comp.Error, Start: start, End: end,
	}, func(u saga.CompensationUpdate) int { return u.StepIndex })
	m.d.write = true
}

// putUpdate adds u to list, replacing an earlier update of the same row
// (keeping its Start and End).
func putUpdate[U saga.StepUpdate | saga.CompensationUpdate](list *[]U, u U, index func(U) int) {
	for k, p := range *list {
		if index(p) != index(u) {
			continue
		}
		switch v := any(&u).(type) {
		case *saga.StepUpdate:
			pv := any(p).(saga.StepUpdate)
			v.Start, v.End = v.Start || pv.Start, v.End || pv.End
		case *saga.CompensationUpdate:
			pv := any(p).(saga.CompensationUpdate)
			v.Start, v.End = v.Start || pv.Start, v.End || pv.End
		}
		(*list)[k] = u
		return
	}
	*list = append(*list, u)
}

func (m *machine) event(t saga.EventType, stepIndex *int, data map[string]any) {
	var raw json.RawMessage
	if len(data) > 0 {
		if b, err := json.Marshal(data); err == nil {
			raw = b
		}
	}
	m.eventJSON(t, stepIndex, raw)
}

func (m *machine) eventJSON(t saga.EventType, stepIndex *int, data json.RawMessage) {
	var idx *int
	if stepIndex != nil {
		v := *stepIndex
		idx = &v
	}
	if m.d.t.Events == nil {
		m.d.t.Events = make([]saga.Event, 0, 4)
	}
	m.d.t.Events = append(m.d.t.Events, saga.Event{Type: t, StepIndex: idx, Data: data})
	m.d.write = true
}

func (m *machine) log(level int, msg string, args ...any) {
	m.d.messages = append(m.d.messages, note{level: level, msg: msg, args: args})
}

// checkpointIfDue adds a checkpoint when this decision completed steps and
// the completed count reached a power of two or the last step (unless that
// ends the saga: see finish): a saga of
// n steps writes about log2(n) checkpoints, whose total size stays within
// three times its outputs, and recovery replays at most half of the
// completed steps from their rows.
func (m *machine) checkpointIfDue() {
	if m.lastCompleted < 0 {
		return
	}
	after := m.s.CompletedSteps
	due := after == len(m.s.Steps)
	for n := m.completedBefore + 1; n <= after && !due; n++ {
		due = n&(n-1) == 0
	}
	if !due {
		return
	}
	m.d.t.Checkpoint = &saga.Checkpoint{StepIndex: m.lastCompleted, Context: checkpointContext(m.s.Context, m.s.Steps)}
}

// checkpointContext returns the recovery context: the saga context and
// every output so far, {"context":…,"outputs":{name: output, …}} with the
// names sorted.
func checkpointContext(ctx json.RawMessage, steps []saga.Step) json.RawMessage {
	type named struct {
		name string
		out  json.RawMessage
	}
	var outs []named
	size := 32 + len(ctx)
	for _, st := range steps {
		if st.Status == saga.StepStatusCompleted {
			outs = append(outs, named{st.Name, cmpRaw(st.Output)})
			size += len(st.Name) + len(st.Output) + 4
		}
	}
	slices.SortFunc(outs, func(a, b named) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	o := newObject(size)
	o.raw("context", cmpRaw(ctx))
	o.key("outputs")
	o.b = append(o.b, '{')
	for k, n := range outs {
		if k > 0 {
			o.b = append(o.b, ',')
		}
		o.b = saga.AppendJSONString(o.b, n.name)
		o.b = append(o.b, ':')
		o.b = appendCompact(o.b, n.out)
	}
	o.b = append(o.b, '}')
	return o.done()
}

// finish fills the always-written fields of the transition.
func (m *machine) finish() {
	if m.d.err != nil {
		m.d = decision{err: m.d.err, messages: m.d.messages}
		return
	}
	m.d.retryAt = m.retryAt
	t := &m.d.t
	t.CompletedSteps = m.s.CompletedSteps
	t.Error = m.s.Error
	t.CompensateTo = m.s.CompensateTo
	if t.Checkpoint != nil && m.s.Status.Terminal() {
		// A checkpoint is where a takeover resumes; one written with the
		// saga's end would never be read (a successful saga's last write
		// carried one row and all its outputs again for nothing).
		t.Checkpoint = nil
	}
	if m.s.Status != saga.SagaStatusCreated && m.in.s.StartedAt == nil {
		t.Started = true
	}
	if m.s.Error != m.in.s.Error || m.s.CompensateTo != m.in.s.CompensateTo || m.s.CompletedSteps != m.in.s.CompletedSteps {
		m.d.write = true
	}
}
