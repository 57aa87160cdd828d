package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// Bounds of the retries of a store write that failed with an error other
// than a lost lease.
const (
	applyRetryInitial = 50 * time.Millisecond
	applyRetryMax     = time.Second
)

// claimDueMargin is added to the local wake-up of the claim loop for a
// released saga, so that the store's clock has reached its next-run time.
const claimDueMargin = 20 * time.Millisecond

// runner runs one saga while this instance holds its lease. Its fields
// below the atomics are touched by its own goroutine only.
type runner struct {
	c      *Coordinator
	id     saga.ID
	lease  saga.Lease
	ctx    context.Context // cancelled when the lease is lost or on a hard stop
	cancel context.CancelFunc
	poke   chan struct{} // an operator request arrived

	logOnce sync.Once
	log     *slog.Logger // with the saga's attributes: built on first use, see logger

	lost      atomic.Bool
	finishing atomic.Bool  // writing its releasing transition: not renewed
	leaseEnd  atomic.Int64 // local estimate of the lease expiry (Coordinator.now)

	s       *saga.Saga // the saga as written so far
	claimed bool       // taken by a claim: the first write says so
	tx      tx         // the transition being built
	// What the store said at the last write.
	ctrl             saga.ControlAction
	deadlineExceeded bool
	flagsKnown       bool
	dbNow            time.Time // the store's clock at the last write
	dbNowAt          time.Duration
	// stampsExact is true while every write's times came from the store,
	// so s matches the stored saga (see stamp).
	stampsExact bool
	// retryAt is when the current Retrying call is due (Coordinator.now);
	// zero when unknown (claimed: due now).
	retryAt time.Duration
}

// call is one participant call the runner has written as started.
type call struct {
	participant.Call
	policy   saga.RetryPolicy // with defaults
	prevStep saga.Step        // for undoing the start when the call is held
	prevComp *saga.Compensation
}

func newRunner(c *Coordinator, s *saga.Saga, claimed bool) *runner {
	ctx, cancel := context.WithCancel(c.runCtx)
	r := &runner{
		c:           c,
		id:          s.ID,
		lease:       s.Lease(),
		ctx:         ctx,
		cancel:      cancel,
		poke:        make(chan struct{}, 1),
		s:           s,
		claimed:     claimed,
		dbNow:       s.UpdatedAt,
		dbNowAt:     c.now(),
		stampsExact: true,
	}
	if r.dbNow.IsZero() {
		r.dbNow = s.CreatedAt
	}
	r.flagsKnown = !claimed
	r.ctrl = s.Control
	r.leaseEnd.Store(int64(c.now() + c.cfg.LeaseDuration))
	if len(s.Steps) != len(s.Definition.Steps) {
		// The store must return steps with the saga; make the state usable
		// anyway so that the runner can fail loudly instead of panicking.
		steps := make([]saga.Step, len(s.Definition.Steps))
		for i, st := range s.Definition.Steps {
			steps[i] = saga.Step{Index: i, Name: st.Name, Status: saga.StepStatusPending}
		}
		for _, st := range s.Steps {
			if st.Index >= 0 && st.Index < len(steps) {
				steps[st.Index] = st
			}
		}
		s.Steps = steps
	}
	return r
}

// logger returns the runner's logger. It is built on first use: most
// sagas log nothing, and a logger with attributes costs allocations and
// formatting.
func (r *runner) logger() *slog.Logger {
	r.logOnce.Do(func() {
		r.log = r.c.log.With("saga_id", r.id.String(), "saga_name", r.s.Name)
	})
	return r.log
}

// debugEnabled reports whether debug messages are logged.
func (r *runner) debugEnabled() bool {
	return r.c.log.Enabled(context.Background(), slog.LevelDebug)
}

// extendLease records that the lease was extended at start (the
// coordinator's clock when the extending write was sent).
func (r *runner) extendLease(start time.Duration) {
	end := int64(start + r.c.cfg.LeaseDuration)
	for {
		cur := r.leaseEnd.Load()
		if cur >= end || r.leaseEnd.CompareAndSwap(cur, end) {
			return
		}
	}
}

// loseLease stops the runner at once: another instance may own the saga.
func (r *runner) loseLease(why string) {
	if r.lost.Swap(true) {
		return
	}
	r.c.obs.LeaseLost()
	r.logger().Warn("saga lease lost: stopping", "reason", why)
	r.cancel()
}

// pokeNow tells the runner an operator request is waiting.
func (r *runner) pokeNow() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// estimatedDBNow estimates the store's clock now from the last write.
func (r *runner) estimatedDBNow() time.Time {
	return r.dbNow.Add(r.c.now() - r.dbNowAt)
}

// deadlinePassed reports whether the saga's deadline has passed.
func (r *runner) deadlinePassed() bool {
	if r.s.Deadline == nil {
		return false
	}
	return r.deadlineExceeded || !r.estimatedDBNow().Before(*r.s.Deadline)
}

// untilDeadline returns the time left before the deadline, or -1 when the
// saga has none.
func (r *runner) untilDeadline() time.Duration {
	if r.s.Deadline == nil {
		return -1
	}
	return max(r.s.Deadline.Sub(r.estimatedDBNow()), 0)
}

// The things decide can ask of run.
type actionKind int

const (
	actCall  actionKind = iota // write the start, then make the call
	actWait                    // write, then wait for a retry to be due
	actExit                    // write the releasing transition, then stop
	actProbe                   // write (to learn the store's flags), then decide again
)

type action struct {
	kind actionKind
	call *call
	wait time.Duration
}

// run is the runner's goroutine.
func (r *runner) run() {
	defer r.c.finish(r)
	var next *call
	if !r.claimed && r.s.Status == saga.SagaStatusExecuting {
		// Created by Submit with its first step started.
		next = r.newActionCall(0, saga.Step{Index: 0, Name: r.s.Steps[0].Name, Status: saga.StepStatusPending})
		if r.mustHold(next) {
			r.unstart(next)
			next = nil
		}
	}
	for {
		if next == nil {
			act := r.decide()
			switch act.kind {
			case actExit:
				r.finishing.Store(true)
				r.flush()
				return
			case actProbe:
				if !r.flush() {
					return
				}
				continue
			case actWait:
				if !r.flush() || !r.wait(act.wait) {
					return
				}
				continue
			case actCall:
				if !r.flush() {
					return
				}
				if r.mustHold(act.call) {
					r.unstart(act.call)
					continue
				}
				next = act.call
			}
		}
		res := r.invoke(next)
		if r.lost.Load() || r.ctx.Err() != nil {
			return
		}
		r.record(next, res)
		next = nil
		if !r.tx.release {
			select {
			case <-r.poke:
				// An operator request arrived during the call: write the
				// outcome alone and learn the request before deciding.
				if !r.flush() {
					return
				}
			default:
			}
		}
	}
}

// mustHold reports whether a call written as started must not go out after
// all: the store reported an operator request or a passed deadline that
// comes first, or the coordinator is stopping.
func (r *runner) mustHold(c *call) bool {
	return r.holdReason(c) != ""
}

// holdReason says why a call written as started must not go out, or "".
func (r *runner) holdReason(c *call) string {
	switch {
	case r.c.isStopping():
		return "instance stopping"
	case c.Kind == participant.KindCompensation:
		return ""
	case r.ctrl == saga.ControlPause:
		return "pause requested"
	case r.ctrl == saga.ControlCancel:
		return "cancel requested"
	case r.deadlinePassed():
		return "deadline passed"
	}
	return ""
}

// unstart undoes the start of a call that was held back: its row returns
// to what it was before.
func (r *runner) unstart(c *call) {
	// The trail says the start was withdrawn, so that a StepStarted (or
	// CompensationStarted) without an outcome never reads as a call that
	// may have been made.
	r.addEvent(saga.EventCallWithdrawn, intPtr(c.StepIndex), map[string]any{
		"kind": c.Kind, "attempt": c.Attempt, "reason": r.holdReason(c),
	})
	if c.Kind == participant.KindAction {
		st := c.prevStep
		st.Input = r.s.Steps[c.StepIndex].Input
		r.putStep(st, false, false)
		return
	}
	if c.prevComp == nil {
		r.putComp(c.StepIndex, saga.Compensation{StepIndex: c.StepIndex, Status: saga.CompensationStatusPending}, false, false)
		return
	}
	r.putComp(c.StepIndex, *c.prevComp, false, false)
}

// flush writes the transition built so far. It returns false when the
// runner must stop: its lease is lost, or the store kept failing.
func (r *runner) flush() bool {
	t := r.tx.build(r)
	if r.claimed {
		r.claimed = false
		ev := r.c.event(saga.EventLeaseTaken, nil, map[string]any{"epoch": r.lease.Epoch, "status": r.s.Status})
		t.Events = append([]saga.Event{ev}, t.Events...)
	}
	r.tx = tx{}
	start := r.c.now()
	applied, err := r.apply(t)
	if err != nil {
		switch {
		case errors.Is(err, saga.ErrLeaseLost):
			r.loseLease("write refused")
		case r.ctx.Err() != nil:
			// Stopped: the lease runs out and another claim continues.
		default:
			r.logger().Error("write saga transition: giving up the saga until its lease expires", "error", err)
		}
		return false
	}
	if !t.Release {
		r.extendLease(start)
	}
	r.ctrl = applied.Control
	r.deadlineExceeded = r.deadlineExceeded || applied.DeadlineExceeded
	r.flagsKnown = true
	if !applied.Now.IsZero() {
		r.dbNow = applied.Now
		r.dbNowAt = r.c.now()
	}
	r.stamp(t, applied)
	if t.Release && applied.Control != saga.ControlNone {
		// An operator request arrived that this write did not carry out: the
		// store made the saga runnable now; claim it without waiting for
		// the poll.
		r.c.signal()
	}
	return !t.Release
}

// stamp brings the runner's copy of the saga to what the store now holds
// after t was applied: the times the store set from its clock, the lease,
// the next-run time and the event sequence. With it, the saga a runner ends
// with is the stored one, and Wait can answer without reading it back.
func (r *runner) stamp(t saga.Transition, applied saga.Applied) {
	now := applied.Now
	if now.IsZero() {
		// A store that does not report its clock: the copy's times are
		// estimates, and finalSaga will not be used.
		r.stampsExact = false
		now = r.estimatedDBNow()
	}
	at := func() *time.Time { v := now; return &v }
	s := r.s
	s.UpdatedAt = now
	if t.Started && s.StartedAt == nil {
		s.StartedAt = at()
	}
	if t.Ended {
		s.CompletedAt = at()
	}
	if t.Status != "" {
		s.Status = t.Status
	}
	s.Control = applied.Control
	s.EventSeq = applied.EventSeq
	if t.Release {
		s.OwnerID, s.LeaseExpiresAt = "", nil
	} else if !applied.LeaseExpiresAt.IsZero() {
		s.LeaseExpiresAt = new(applied.LeaseExpiresAt)
	}
	switch t.Wake.Kind {
	case saga.WakeNever:
		s.NextRunAt = nil
	case saga.WakeAfter:
		s.NextRunAt = new(now.Add(t.Wake.After))
	case saga.WakeAt:
		s.NextRunAt = new(t.Wake.At)
	}
	for _, u := range t.Steps {
		st := &s.Steps[u.Index]
		if u.Start && st.StartedAt == nil {
			st.StartedAt = at()
		}
		if u.End {
			st.CompletedAt = at()
		}
	}
	for _, u := range t.Compensations {
		c := s.Steps[u.StepIndex].Compensation
		if c == nil {
			continue
		}
		if u.Start && c.StartedAt == nil {
			c.StartedAt = at()
		}
		if u.End {
			c.CompletedAt = at()
		}
	}
}

// finalSaga returns a copy of the saga as the store holds it after the
// runner's last write, or nil when that is not known exactly (the lease
// was lost, a write failed, or the store does not report its clock).
func (r *runner) finalSaga() *saga.Saga {
	if !r.stampsExact || r.lost.Load() || !r.s.Status.Terminal() {
		return nil
	}
	return cloneSaga(r.s)
}

// apply writes t, retrying store errors other than a lost lease with
// backoff while the lease lasts.
func (r *runner) apply(t saga.Transition) (saga.Applied, error) {
	backoff := applyRetryInitial
	for {
		applied, err := r.c.store.Apply(r.ctx, t)
		if err == nil {
			return applied, nil
		}
		if errors.Is(err, saga.ErrLeaseLost) || errors.Is(err, saga.ErrNotFound) ||
			errors.Is(err, saga.ErrInvalidTransition) || r.ctx.Err() != nil {
			return applied, err
		}
		left := time.Duration(r.leaseEnd.Load()) - r.c.now()
		if left < backoff {
			return applied, err
		}
		r.logger().Warn("write saga transition: retrying", "error", err, "backoff", backoff)
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case <-r.ctx.Done():
			timer.Stop()
			return applied, err
		}
		backoff = min(backoff*2, applyRetryMax)
	}
}

// wait waits d for a retry to be due. It returns false when the runner must
// stop. An operator request cuts the wait short when it must be acted on
// now; the coordinator stopping releases the saga, due when the wait would
// have ended.
func (r *runner) wait(d time.Duration) bool {
	end := r.c.now() + d
	for {
		left := end - r.c.now()
		if left <= 0 {
			return true
		}
		timer := time.NewTimer(left)
		select {
		case <-timer.C:
			return true
		case <-r.ctx.Done():
			timer.Stop()
			return false
		case <-r.c.stopping:
			timer.Stop()
			return true // decide releases the saga with the wait left
		case <-r.poke:
			timer.Stop()
			// Learn the request with an empty write.
			if !r.flush() {
				return false
			}
			if r.ctrl != saga.ControlNone {
				return true
			}
		}
	}
}

// invoke makes the call, bounded by the saga's deadline for actions.
func (r *runner) invoke(c *call) participant.Result {
	ctx := r.ctx
	if c.Kind == participant.KindAction {
		if left := r.untilDeadline(); left >= 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, left)
			defer cancel()
		}
	}
	res := r.c.cfg.Invoker.Invoke(ctx, c.Call)
	r.c.obs.StepAttempt(c.Kind, res.Outcome, res.Duration)
	return res
}

// decide builds the next transition from the saga's state and the store's
// flags, and says what to do with it.
func (r *runner) decide() action {
	for {
		switch r.s.Status {
		case saga.SagaStatusCreated:
			if act, done := r.decideCreated(); done {
				return act
			}
		case saga.SagaStatusExecuting:
			if act, done := r.decideExecuting(); done {
				return act
			}
		case saga.SagaStatusCompensating:
			return r.decideCompensating()
		case saga.SagaStatusPaused:
			if act, done := r.decidePaused(); done {
				return act
			}
		case saga.SagaStatusFailed:
			if r.ctrl == saga.ControlRetry {
				r.retryCompensation()
				continue
			}
			r.ignoreControl()
			return r.park(saga.Wake{Kind: saga.WakeNever})
		default: // an end state: nothing to do
			r.ignoreControl()
			return r.park(saga.Wake{Kind: saga.WakeNever})
		}
	}
}

// takeControl marks the pending operator request as carried out by the
// transition being built (the store clears that request, and only it).
func (r *runner) takeControl() {
	r.tx.clearControl = r.ctrl
	r.ctrl = saga.ControlNone
}

// cancelByOperator carries out a cancel: the current step, if any, fails
// and compensation begins towards Cancelled.
func (r *runner) cancelByOperator() {
	r.takeControl()
	r.failCurrent("cancelled by operator")
	r.beginCompensation(saga.SagaStatusCancelled, "cancelled by operator")
}

func (r *runner) decideCreated() (action, bool) {
	switch r.ctrl {
	case saga.ControlPause:
		return r.pause(), true
	case saga.ControlCancel:
		r.takeControl()
		r.beginCompensation(saga.SagaStatusCancelled, "cancelled by operator")
		return action{}, false
	case saga.ControlResume, saga.ControlRetry:
		r.ignoreControl()
	}
	if r.deadlinePassed() {
		r.beginCompensation(saga.SagaStatusTimedOut, "deadline exceeded before the saga started")
		return action{}, false
	}
	if r.c.isStopping() {
		return r.park(saga.Wake{Kind: saga.WakeAfter}), true
	}
	r.setStatus(saga.SagaStatusExecuting)
	r.tx.started = true
	r.addEvent(saga.EventSagaStarted, nil, nil)
	r.c.obs.SagaStarted(r.s.Name)
	return action{}, false
}

func (r *runner) decideExecuting() (action, bool) {
	switch r.ctrl {
	case saga.ControlPause:
		return r.pause(), true
	case saga.ControlCancel:
		r.cancelByOperator()
		return action{}, false
	case saga.ControlResume, saga.ControlRetry:
		r.ignoreControl()
	}
	if r.deadlinePassed() {
		r.failCurrent("saga deadline exceeded")
		r.beginCompensation(saga.SagaStatusTimedOut, "saga deadline exceeded")
		return action{}, false
	}
	i := r.currentStep()
	if i < 0 {
		r.end(saga.SagaStatusCompleted)
		return action{kind: actExit}, true
	}
	st := r.s.Steps[i]
	switch st.Status {
	case saga.StepStatusFailed, saga.StepStatusSkipped:
		// Left so by an earlier writer before it could move on.
		r.beginCompensation(saga.SagaStatusCompensated, fmt.Sprintf("step %q failed: %s", st.Name, st.Error))
		return action{}, false
	case saga.StepStatusRetrying:
		if act, ok := r.retryWait(true); ok {
			return act, true
		}
	}
	if r.c.isStopping() {
		return r.park(saga.Wake{Kind: saga.WakeAfter}), true
	}
	return action{kind: actCall, call: r.startAction(i)}, true
}

// retryWait decides how to wait for the current Retrying call to be due:
// in place, or by releasing the saga when the wait is long or the
// coordinator is stopping. ok is false when the call is due now.
func (r *runner) retryWait(bounded bool) (act action, ok bool) {
	left := r.retryAt - r.c.now()
	if r.retryAt == 0 || left <= 0 {
		return action{}, false
	}
	if bounded {
		if d := r.untilDeadline(); d >= 0 && d < left {
			left = d
		}
	}
	if r.c.isStopping() {
		return r.park(saga.Wake{Kind: saga.WakeAfter, After: left}), true
	}
	if left > r.c.cfg.LeaseDuration/2 {
		// Let go of the saga meanwhile; wake the claim loop when it is due
		// rather than on its next slow tick.
		time.AfterFunc(left+claimDueMargin, r.c.signal)
		return r.park(saga.Wake{Kind: saga.WakeAfter, After: left}), true
	}
	return action{kind: actWait, wait: left}, true
}

func (r *runner) decidePaused() (action, bool) {
	switch r.ctrl {
	case saga.ControlResume:
		r.takeControl()
		r.setStatus(saga.SagaStatusExecuting)
		r.addEvent(saga.EventSagaResumed, nil, nil)
		r.retryAt = 0
		return action{}, false
	case saga.ControlCancel:
		r.cancelByOperator()
		return action{}, false
	case saga.ControlPause, saga.ControlRetry:
		r.ignoreControl()
	}
	if r.deadlinePassed() {
		r.failCurrent("saga deadline exceeded")
		r.beginCompensation(saga.SagaStatusTimedOut, "saga deadline exceeded while paused")
		return action{}, false
	}
	if !r.flagsKnown {
		return action{kind: actProbe}, true
	}
	return r.park(r.pausedWake()), true
}

func (r *runner) decideCompensating() action {
	r.ignoreControl()
	j := r.nextCompensation()
	if j < 0 {
		r.end(cmpStatus(r.s.CompensateTo, saga.SagaStatusCompensated))
		return action{kind: actExit}
	}
	if comp := r.s.Steps[j].Compensation; comp != nil && comp.Status == saga.CompensationStatusRetrying {
		if act, ok := r.retryWait(false); ok {
			return act
		}
	}
	if r.c.isStopping() {
		return r.park(saga.Wake{Kind: saga.WakeAfter})
	}
	return action{kind: actCall, call: r.startCompensation(j)}
}

// pause parks the saga Paused until an operator resumes it or its
// deadline passes.
func (r *runner) pause() action {
	r.takeControl()
	r.setStatus(saga.SagaStatusPaused)
	r.addEvent(saga.EventSagaPaused, nil, nil)
	return r.park(r.pausedWake())
}

func (r *runner) pausedWake() saga.Wake {
	if r.s.Deadline != nil {
		return saga.Wake{Kind: saga.WakeAt, At: *r.s.Deadline}
	}
	return saga.Wake{Kind: saga.WakeNever}
}

// park ends the transition by releasing the lease with wake.
func (r *runner) park(wake saga.Wake) action {
	r.tx.release = true
	r.tx.wake = wake
	return action{kind: actExit}
}

// ignoreControl clears a pending request that the saga's status no longer
// allows, with an event saying so.
func (r *runner) ignoreControl() {
	if r.ctrl == saga.ControlNone {
		return
	}
	r.logger().Info("operator request no longer allowed: cleared", "action", r.ctrl, "status", r.s.Status)
	r.addEvent(EventControlIgnored, nil, map[string]any{"action": r.ctrl, "status": r.s.Status})
	r.takeControl()
}

// currentStep returns the first step not Completed, or -1.
func (r *runner) currentStep() int {
	for i := range r.s.Steps {
		if r.s.Steps[i].Status != saga.StepStatusCompleted {
			return i
		}
	}
	return -1
}

// failCurrent marks the step in progress (Executing or Retrying) Failed
// because the saga stops executing: its effect is uncertain when a call may
// be in flight or its last failure was uncertain.
func (r *runner) failCurrent(reason string) {
	i := r.currentStep()
	if i < 0 {
		return
	}
	st := r.s.Steps[i]
	switch st.Status {
	case saga.StepStatusExecuting:
		st.Uncertain = true
	case saga.StepStatusRetrying:
	default:
		return
	}
	st.Status = saga.StepStatusFailed
	st.Error = reason + prefixed("; last error: ", st.Error)
	r.putStep(st, false, true)
	r.addEvent(saga.EventStepFailed, intPtr(i), map[string]any{
		"attempt": st.Attempts, "error": st.Error, "uncertain": st.Uncertain,
	})
}

// needsCompensation reports whether step i must be undone: it completed,
// or failed with an uncertain effect, and it has a compensation.
func (r *runner) needsCompensation(i int) bool {
	st := r.s.Steps[i]
	if r.s.Definition.Steps[i].Compensation == nil {
		return false
	}
	return st.Status == saga.StepStatusCompleted || (st.Status == saga.StepStatusFailed && st.Uncertain)
}

// nextCompensation returns the highest step index still to be undone, or -1.
func (r *runner) nextCompensation() int {
	for j := len(r.s.Steps) - 1; j >= 0; j-- {
		if !r.needsCompensation(j) {
			continue
		}
		if comp := r.s.Steps[j].Compensation; comp == nil || comp.Status != saga.CompensationStatusCompleted {
			return j
		}
	}
	return -1
}

// beginCompensation stops executing: steps never run are skipped, and the
// saga compensates (or ends as to directly when nothing needs undoing).
func (r *runner) beginCompensation(to saga.SagaStatus, reason string) {
	for i := range r.s.Steps {
		st := r.s.Steps[i]
		if st.Status != saga.StepStatusPending {
			continue
		}
		st.Status = saga.StepStatusSkipped
		r.putStep(st, false, false)
		r.addEvent(saga.EventStepSkipped, intPtr(i), nil)
	}
	if to != saga.SagaStatusCancelled || r.s.Error == "" {
		r.s.Error = reason
	}
	r.retryAt = 0
	if r.nextCompensation() < 0 {
		r.end(to)
		return
	}
	r.setStatus(saga.SagaStatusCompensating)
	r.s.CompensateTo = to
	r.addEvent(saga.EventSagaCompensating, nil, map[string]any{"compensate_to": to, "reason": reason})
	r.logger().Info("saga compensating", "compensate_to", to, "reason", reason)
}

// retryCompensation carries out an operator's retry of a Failed saga: the
// unfinished compensations start over with a fresh attempt budget.
func (r *runner) retryCompensation() {
	r.takeControl()
	r.setStatus(saga.SagaStatusCompensating)
	if r.s.CompensateTo == "" {
		r.s.CompensateTo = saga.SagaStatusCompensated
	}
	for j := range r.s.Steps {
		comp := r.s.Steps[j].Compensation
		if comp == nil || comp.Status == saga.CompensationStatusCompleted {
			continue
		}
		fresh := *comp
		fresh.Status = saga.CompensationStatusPending
		fresh.Attempts = 0
		r.putComp(j, fresh, false, false)
	}
	r.retryAt = 0
	r.addEvent(saga.EventSagaRetried, nil, map[string]any{"compensate_to": r.s.CompensateTo})
	r.logger().Info("saga retried by operator")
}

// end moves the saga to an end state and releases it.
func (r *runner) end(status saga.SagaStatus) {
	r.setStatus(status)
	r.tx.ended = true
	r.s.CompensateTo = ""
	if status == saga.SagaStatusCompleted {
		r.s.Error = ""
	}
	var ev saga.EventType
	switch status {
	case saga.SagaStatusCompleted:
		ev = saga.EventSagaCompleted
	case saga.SagaStatusCompensated:
		ev = saga.EventSagaCompensated
	case saga.SagaStatusCancelled:
		ev = saga.EventSagaCancelled
	case saga.SagaStatusTimedOut:
		ev = saga.EventSagaTimedOut
	case saga.SagaStatusFailed:
		ev = saga.EventSagaFailed
	}
	var data map[string]any
	if r.s.Error != "" {
		data = map[string]any{"error": r.s.Error}
	}
	r.addEvent(ev, nil, data)
	r.park(saga.Wake{Kind: saga.WakeNever})
	age := r.estimatedDBNow().Sub(r.s.CreatedAt)
	r.c.obs.SagaEnded(r.s.Name, status, max(age, 0))
	if status == saga.SagaStatusFailed {
		r.logger().Error("saga failed: compensation could not finish; waiting for an operator's retry", "error", r.s.Error)
	} else if r.debugEnabled() {
		r.logger().Debug("saga ended", "status", status)
	}
}

// startAction writes step i as started with its next attempt.
func (r *runner) startAction(i int) *call {
	prev := r.s.Steps[i]
	st := prev
	if st.Status == saga.StepStatusExecuting {
		// A call was in flight when the saga's previous owner let go.
		r.addEvent(saga.EventSagaRecovered, intPtr(i), map[string]any{"kind": participant.KindAction, "attempt": st.Attempts})
		r.logger().Info("call in flight at recovery: making it again", "step_index", i, "attempt", st.Attempts)
	}
	st.Status = saga.StepStatusExecuting
	st.Attempts++
	r.putStep(st, true, false)
	r.addEventJSON(saga.EventStepStarted, intPtr(i), startedData(st.Attempts, string(participant.KindAction)))
	return r.newActionCall(i, prev)
}

// newActionCall returns the call of step i's current attempt.
func (r *runner) newActionCall(i int, prev saga.Step) *call {
	def := r.s.Definition.Steps[i]
	return &call{
		Call: participant.Call{
			SagaID:        r.s.ID,
			TransactionID: r.s.TransactionID,
			StepIndex:     i,
			StepName:      def.Name,
			Kind:          participant.KindAction,
			Attempt:       r.s.Steps[i].Attempts,
			Request:       def.Action,
			Context:       r.s.Context,
			Outputs:       r.outputs(i - 1),
		},
		policy:   def.Retry.WithDefaults(),
		prevStep: prev,
	}
}

// startCompensation writes step j's compensation as started with its next
// attempt.
func (r *runner) startCompensation(j int) *call {
	var prev *saga.Compensation
	comp := saga.Compensation{StepIndex: j, Status: saga.CompensationStatusPending}
	if c := r.s.Steps[j].Compensation; c != nil {
		p := *c
		prev = &p
		comp = p
	}
	if comp.Status == saga.CompensationStatusExecuting {
		r.addEvent(saga.EventSagaRecovered, intPtr(j), map[string]any{"kind": participant.KindCompensation, "attempt": comp.Attempts})
		r.logger().Info("compensation in flight at recovery: making it again", "step_index", j, "attempt", comp.Attempts)
	}
	comp.Status = saga.CompensationStatusExecuting
	comp.Attempts++
	r.putComp(j, comp, true, false)
	r.addEventJSON(saga.EventCompensationStarted, intPtr(j), startedData(comp.Attempts, string(participant.KindCompensation)))

	def := r.s.Definition.Steps[j]
	policy := def.Retry.WithDefaults()
	policy.MaxAttempts = max(policy.MaxAttempts, saga.CompensationMaxAttempts)
	return &call{
		Call: participant.Call{
			SagaID:        r.s.ID,
			TransactionID: r.s.TransactionID,
			StepIndex:     j,
			StepName:      def.Name,
			Kind:          participant.KindCompensation,
			Attempt:       comp.Attempts,
			Request:       *def.Compensation,
			Context:       r.s.Context,
			Outputs:       r.outputs(j),
		},
		policy:   policy,
		prevComp: prev,
	}
}

// outputs returns the outputs of the completed steps with index <= upTo.
func (r *runner) outputs(upTo int) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, upTo+1)
	for i := 0; i <= upTo && i < len(r.s.Steps); i++ {
		if st := r.s.Steps[i]; st.Status == saga.StepStatusCompleted {
			out[st.Name] = cmpRaw(st.Output)
		}
	}
	return out
}

// record writes what came of call c and moves the saga on accordingly.
func (r *runner) record(c *call, res participant.Result) {
	data := outcomeData{c: c, res: &res, backoff: -1}
	if c.Kind == participant.KindAction {
		r.recordAction(c, res, data)
	} else {
		r.recordCompensation(c, res, data)
	}
}

// outcomeData is the data of the event recording a call's outcome.
type outcomeData struct {
	c       *call
	res     *participant.Result
	backoff time.Duration // before the next attempt; < 0: none
}

// json encodes d with its members in key order: attempt, backoff_ms,
// duration_ms, error, kind, status_code, uncertain (the last three as
// they apply).
func (d outcomeData) json() json.RawMessage {
	failed := d.res.Outcome != participant.OutcomeSuccess
	size := 96
	if failed {
		size += 32 + len(d.res.Error)
	}
	o := newObject(size)
	o.int("attempt", int64(d.c.Attempt))
	if d.backoff >= 0 {
		o.int("backoff_ms", d.backoff.Milliseconds())
	}
	o.int("duration_ms", d.res.Duration.Milliseconds())
	if failed {
		o.str("error", d.res.Error)
	}
	o.str("kind", string(d.c.Kind))
	if d.res.StatusCode != 0 {
		o.int("status_code", int64(d.res.StatusCode))
	}
	if failed {
		o.bool("uncertain", d.res.Uncertain)
	}
	return o.done()
}

func (r *runner) recordAction(c *call, res participant.Result, data outcomeData) {
	i := c.StepIndex
	st := r.s.Steps[i]
	if res.Outcome == participant.OutcomeSuccess {
		st.Status = saga.StepStatusCompleted
		st.Output = cmpRaw(res.Output)
		st.Error = ""
		st.Uncertain = false
		r.putStep(st, true, true)
		r.addEventJSON(saga.EventStepCompleted, intPtr(i), data.json())
		r.s.CompletedSteps = r.completedSteps()
		r.tx.checkpoint = &saga.Checkpoint{StepIndex: i, Context: r.checkpoint()}
		return
	}
	log := r.logger().With("step_index", i, "step", st.Name, "attempt", c.Attempt)
	timedOut := r.deadlinePassed()
	if res.Outcome == participant.OutcomeTransient && !timedOut && c.Attempt < c.policy.MaxAttempts {
		wait := r.backoff(c, res)
		st.Status = saga.StepStatusRetrying
		st.Error = res.Error
		st.Uncertain = res.Uncertain
		r.putStep(st, true, false)
		data.backoff = wait
		r.addEventJSON(saga.EventStepRetrying, intPtr(i), data.json())
		r.retryAt = r.c.now() + wait
		r.c.obs.StepRetried(participant.KindAction)
		log.Debug("step failed: retrying", "error", res.Error, "backoff", wait)
		return
	}
	st.Status = saga.StepStatusFailed
	st.Error = res.Error
	st.Uncertain = res.Uncertain
	r.putStep(st, true, true)
	r.addEventJSON(saga.EventStepFailed, intPtr(i), data.json())
	switch {
	case timedOut:
		log.Info("step failed at the saga deadline", "error", res.Error, "uncertain", res.Uncertain)
		r.beginCompensation(saga.SagaStatusTimedOut, fmt.Sprintf("saga deadline exceeded during step %q: %s", st.Name, res.Error))
	default:
		why := "refused"
		if res.Outcome == participant.OutcomeTransient {
			why = "retries exhausted"
		}
		log.Info("step failed: "+why, "error", res.Error, "uncertain", res.Uncertain)
		r.beginCompensation(saga.SagaStatusCompensated, fmt.Sprintf("step %q failed (%s): %s", st.Name, why, res.Error))
	}
}

func (r *runner) recordCompensation(c *call, res participant.Result, data outcomeData) {
	j := c.StepIndex
	comp := *r.s.Steps[j].Compensation
	if res.Outcome == participant.OutcomeSuccess {
		comp.Status = saga.CompensationStatusCompleted
		comp.Output = cmpRaw(res.Output)
		comp.Error = ""
		r.putComp(j, comp, false, true)
		r.addEventJSON(saga.EventCompensationCompleted, intPtr(j), data.json())
		return
	}
	log := r.logger().With("step_index", j, "step", c.StepName, "attempt", c.Attempt)
	if res.Outcome == participant.OutcomeTransient && c.Attempt < c.policy.MaxAttempts {
		wait := r.backoff(c, res)
		comp.Status = saga.CompensationStatusRetrying
		comp.Error = res.Error
		r.putComp(j, comp, false, false)
		data.backoff = wait
		r.addEventJSON(saga.EventCompensationRetrying, intPtr(j), data.json())
		r.retryAt = r.c.now() + wait
		r.c.obs.StepRetried(participant.KindCompensation)
		log.Debug("compensation failed: retrying", "error", res.Error, "backoff", wait)
		return
	}
	comp.Status = saga.CompensationStatusFailed
	comp.Error = res.Error
	r.putComp(j, comp, false, true)
	r.addEventJSON(saga.EventCompensationFailed, intPtr(j), data.json())
	r.s.Error = fmt.Sprintf("compensation of step %q failed: %s", c.StepName, res.Error)
	r.end(saga.SagaStatusFailed)
}

// backoff returns the wait before the next attempt of c: the policy's
// jittered backoff, or the participant's Retry-After when longer.
func (r *runner) backoff(c *call, res participant.Result) time.Duration {
	d := participant.Backoff(c.policy, c.Attempt, r.c.cfg.Random)
	return min(max(d, res.RetryAfter), saga.MaxBackoffLimit)
}

func (r *runner) completedSteps() int {
	n := 0
	for _, st := range r.s.Steps {
		if st.Status == saga.StepStatusCompleted {
			n++
		}
	}
	return n
}

// checkpoint returns the recovery context: the saga context and every
// output so far, {"context":…,"outputs":{name: output, …}} with the names
// sorted.
func (r *runner) checkpoint() json.RawMessage {
	outs := r.outputs(len(r.s.Steps) - 1)
	names := make([]string, 0, len(outs))
	size := 32 + len(r.s.Context)
	for name, out := range outs {
		names = append(names, name)
		size += len(name) + len(out) + 4
	}
	slices.Sort(names)
	o := newObject(size)
	o.raw("context", cmpRaw(r.s.Context))
	o.key("outputs")
	o.b = append(o.b, '{')
	for k, name := range names {
		if k > 0 {
			o.b = append(o.b, ',')
		}
		o.b = appendJSONString(o.b, name)
		o.b = append(o.b, ':')
		o.b = appendCompact(o.b, outs[name])
	}
	o.b = append(o.b, '}')
	return o.done()
}

// setStatus changes the saga's status in the transition being built.
func (r *runner) setStatus(s saga.SagaStatus) {
	r.s.Status = s
	r.tx.status = s
}

// putStep sets a step's row locally and in the transition.
func (r *runner) putStep(st saga.Step, start, end bool) {
	r.s.Steps[st.Index] = st
	r.tx.putStep(saga.StepUpdate{
		Index:     st.Index,
		Status:    st.Status,
		Attempts:  st.Attempts,
		Output:    st.Output,
		Error:     st.Error,
		Uncertain: st.Uncertain,
		Start:     start,
		End:       end,
	})
}

// putComp sets a compensation row locally and in the transition.
func (r *runner) putComp(j int, comp saga.Compensation, start, end bool) {
	comp.StepIndex = j
	c := comp
	r.s.Steps[j].Compensation = &c
	r.tx.putComp(saga.CompensationUpdate{
		StepIndex: j,
		Status:    comp.Status,
		Attempts:  comp.Attempts,
		Output:    comp.Output,
		Error:     comp.Error,
		Start:     start,
		End:       end,
	})
}

func (r *runner) addEvent(t saga.EventType, stepIndex *int, data map[string]any) {
	r.tx.events = append(r.tx.events, r.c.event(t, stepIndex, data))
}

func (r *runner) addEventJSON(t saga.EventType, stepIndex *int, data json.RawMessage) {
	r.tx.events = append(r.tx.events, r.c.eventJSON(t, stepIndex, data))
}

// tx is a transition being built by a runner.
type tx struct {
	status       saga.SagaStatus
	clearControl saga.ControlAction // the request carried out, to clear
	started      bool
	ended        bool
	release      bool
	wake         saga.Wake
	steps        []saga.StepUpdate
	comps        []saga.CompensationUpdate
	events       []saga.Event
	checkpoint   *saga.Checkpoint
}

// putStep adds u, replacing an earlier update of the same step.
func (t *tx) putStep(u saga.StepUpdate) {
	for k := range t.steps {
		if p := t.steps[k]; p.Index == u.Index {
			u.Start = u.Start || p.Start
			u.End = u.End || p.End
			t.steps[k] = u
			return
		}
	}
	t.steps = append(t.steps, u)
}

// putComp adds u, replacing an earlier update of the same compensation.
func (t *tx) putComp(u saga.CompensationUpdate) {
	for k := range t.comps {
		if p := t.comps[k]; p.StepIndex == u.StepIndex {
			u.Start = u.Start || p.Start
			u.End = u.End || p.End
			t.comps[k] = u
			return
		}
	}
	t.comps = append(t.comps, u)
}

// build returns the store transition of t for r's saga.
func (t *tx) build(r *runner) saga.Transition {
	out := saga.Transition{
		SagaID:         r.id,
		Lease:          r.lease,
		LeaseFor:       r.c.cfg.LeaseDuration,
		Release:        t.release,
		Status:         t.status,
		CompletedSteps: r.s.CompletedSteps,
		Error:          r.s.Error,
		CompensateTo:   r.s.CompensateTo,
		ClearControl:   t.clearControl,
		Started:        t.started || (r.s.Status != saga.SagaStatusCreated && r.s.StartedAt == nil),
		Ended:          t.ended,
		Wake:           t.wake,
		Steps:          t.steps,
		Compensations:  t.comps,
		Events:         t.events,
		Checkpoint:     t.checkpoint,
	}
	if t.release {
		out.LeaseFor = 0
	}
	return out
}

// cmpRaw returns raw, or JSON null when it is empty.
func cmpRaw(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

func cmpStatus(s, def saga.SagaStatus) saga.SagaStatus {
	if s == "" {
		return def
	}
	return s
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}
