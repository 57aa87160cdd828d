package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

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

// runner runs one saga while this instance holds its lease: a loop of
// decide (machine.go) → write, fenced → call → record the outcome →
// decide. What it knows of the saga between decisions, and the rules by
// which that changes, are its loop (loop.go); the runner does the I/O.
// Its fields below the atomics are touched by its own goroutine only.
type runner struct {
	c      *Coordinator
	name   string          // the saga's: read by other goroutines (logs), never changed
	ctx    context.Context // cancelled when the lease is lost or on a hard stop
	cancel context.CancelFunc
	poke   chan struct{} // an operator request arrived

	logOnce sync.Once
	log     *slog.Logger // with the saga's attributes: built on first use, see logger

	lost      atomic.Bool
	finishing atomic.Bool  // writing its releasing transition: not renewed
	leaseEnd  atomic.Int64 // local estimate of the lease expiry (Coordinator.now)
	// holdUntil is when (Coordinator.now) the longest call in flight may
	// still be answered: renewals keep the lease at least that long.
	holdUntil atomic.Int64

	loop
	results chan outcome // outcomes of calls sent on their own goroutine
	sawStop bool
	// refused is the error of the last write the store refused for good
	// (saga.ErrRefused).
	refused error
}

// newRunner returns the runner of s, leased by a claim or create sent at
// sent (the coordinator's clock): its estimate of the lease's end errs
// early, however long the answer took (a runner launched after a long
// pause must not believe its lease fresh).
func newRunner(c *Coordinator, s *saga.Saga, sent time.Duration, claimed bool, p *plan, unsent []*call) *runner {
	ctx, cancel := context.WithCancel(c.runCtx)
	r := &runner{
		c:      c,
		name:   s.Name,
		ctx:    ctx,
		cancel: cancel,
		poke:   make(chan struct{}, 1),
		loop:   newLoop(s, claimed, p, unsent, c.cfg.LeaseDuration, c.now),
	}
	r.results = make(chan outcome, r.plan.maxParallel)
	r.leaseEnd.Store(int64(sent + c.cfg.LeaseDuration))
	if len(unsent) > 0 {
		// Created here with these calls started, leased for them.
		end := int64(sent + callLease(c.cfg.LeaseDuration, unsent))
		r.leaseEnd.Store(end)
		r.holdUntil.Store(end)
	}
	return r
}

// run is the runner's goroutine.
func (r *runner) run() {
	defer r.c.finish(r)
	var span trace.Span
	r.ctx, span = r.c.startRunSpan(r.ctx, r.s, r.claimed)
	defer func() {
		end := RunReleased
		switch {
		case r.lost.Load():
			end = RunLostLease
		case r.s.Status.Terminal():
			end = RunEnded
		}
		endRunSpan(span, r.s.Status, end)
	}()
	if r.claimed {
		r.restore()
	}
	recovering := false
	for {
		in := r.input(r.c.isStopping())
		d := decide(in)
		if d.err != nil {
			r.refuse(d)
			return
		}
		r.decided(&d)
		if d.write && !r.write(&d) {
			if r.refused == nil || len(in.outcomes) == 0 || recovering {
				return
			}
			// The store will never keep what came of the calls: record
			// them as failed by the engine instead (the participant may
			// have acted, so uncertain), and decide again.
			r.logger().Error("the store refused the outcome of a call: failing the step", "error", r.refused)
			r.refusedWrite(r.refused)
			r.refused, recovering = nil, true
			continue
		}
		recovering = false
		r.observe(&d)
		if d.exit {
			return
		}
		if len(d.send) > 0 && !leaseFresh(time.Duration(r.leaseEnd.Load()), r.c.now(), r.c.cfg.LeaseDuration) {
			// The lease may have run out while this runner stood still (a
			// pause of the process, a slow write): no call goes out before
			// a write renews it (the store refuses it if the saga was taken
			// meanwhile); the next decision sends the calls, or withdraws
			// them if the write revealed a reason to.
			if !r.probe() {
				return
			}
			r.unsent = append(d.send, d.start...)
			continue
		}
		if len(d.start) > 0 {
			// Started and durable: the next decision sends them, or
			// withdraws them if the write revealed a reason to. The calls
			// this decision sends (a graph's, beside those it started) go
			// out now: dropped, their steps would look abandoned to the
			// next decision, which would make them again (the simulator
			// found sagas writing so for ever).
			r.sendAll(d.send)
			r.unsent = d.start
			continue
		}
		if len(d.send) == 1 && len(r.inFlight) == 0 && r.plan.maxParallel == 1 {
			// The common case, one call and nothing else to watch: make it
			// on this goroutine.
			ctx, cancel := r.callContext(d.send[0])
			r.outcomes = append(r.outcomes, r.invoke(ctx, cancel, d.send[0]))
			if r.lost.Load() || r.ctx.Err() != nil {
				return
			}
			if r.poked() && !r.probe() {
				return
			}
			continue
		}
		r.sendAll(d.send)
		if !r.await(d.wakeAt) {
			return
		}
	}
}

// restore reads the checkpoint a claimed saga restarts from (see
// loop.restoreFrom).
func (r *runner) restore() {
	cp, err := r.c.store.LatestCheckpoint(r.ctx, r.id)
	if err != nil {
		r.logger().Warn("read the latest checkpoint: recovering from the step rows alone", "error", err)
		return
	}
	r.restoreFrom(cp, r.logger().Error)
}

// write writes the decision's transition, fenced on the lease. It returns
// false when the runner must stop: its lease is lost, or the store kept
// failing.
func (r *runner) write(d *decision) bool {
	t := r.transition(d)
	start := r.c.now()
	if end := int64(start + t.LeaseFor); len(d.start) > 0 && end > r.holdUntil.Load() {
		r.holdUntil.Store(end)
	}
	if known := max(time.Duration(r.holdUntil.Load()), time.Duration(r.leaseEnd.Load())) - start; !t.Release && known > t.LeaseFor {
		// The store sets the lease, it does not extend it: no write
		// shortens the lease as the runner knows it (one a call was
		// allowed under, which may still be in flight, or a renewal's),
		// which the runner's estimate, the longest it was told, would
		// outlast (the simulator found calls sent under a lease run out
		// so).
		t.LeaseFor = known
	}
	if t.Release {
		r.finishing.Store(true)
	}
	r.c.stampEvents(t.Events)
	applied, err := r.apply(t)
	if err != nil {
		r.finishing.Store(false)
		switch {
		case errors.Is(err, saga.ErrLeaseLost):
			r.loseLease("write refused")
		case r.ctx.Err() != nil:
			// Stopped: the lease runs out and another claim continues.
		case errors.Is(err, saga.ErrRefused):
			r.refused = err
		default:
			r.logger().Error("write saga transition: giving up the saga until its lease expires", "error", err)
		}
		return false
	}
	if !t.Release {
		r.extendLeaseTo(start + t.LeaseFor)
	}
	r.written(t, applied)
	if t.Release && applied.Control != saga.ControlNone {
		// An operator request arrived that this write did not carry out: the
		// store made the saga runnable now; claim it without waiting for
		// the poll.
		r.c.signal()
	}
	if d.signalAfter > 0 {
		time.AfterFunc(d.signalAfter+claimDueMargin, r.c.signal)
	}
	return true
}

// apply writes t, retrying store errors other than a lost lease with
// backoff while the lease lasts. Every retry is the same write (the events
// carry their ids), so a write whose first attempt committed unseen is
// recognised by the store.
func (r *runner) apply(t saga.Transition) (saga.Applied, error) {
	backoff := applyRetryInitial
	// While the lease the write began under lasts: the renewals that go on
	// meanwhile do not extend it, or a write the store keeps refusing
	// would be retried for ever with the saga held (the simulator found
	// sagas stuck so).
	until := time.Duration(r.leaseEnd.Load())
	for {
		applied, err := r.c.store.Apply(r.ctx, t)
		if err == nil {
			return applied, nil
		}
		if errors.Is(err, saga.ErrLeaseLost) || errors.Is(err, saga.ErrNotFound) ||
			errors.Is(err, saga.ErrInvalidTransition) || errors.Is(err, saga.ErrRefused) || r.ctx.Err() != nil {
			return applied, err
		}
		if left := until - r.c.now(); left < backoff {
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

// refusedOutcomes turns outcomes whose record the store refused into
// permanent, uncertain failures that name why, without the participant's
// answer.
func refusedOutcomes(outs []outcome, err error) []outcome {
	out := make([]outcome, len(outs))
	for k, o := range outs {
		o.res = participant.Result{
			Outcome:    participant.OutcomePermanent,
			StatusCode: o.res.StatusCode,
			Error:      saga.StorableText("the store refused to keep the participant's answer: " + err.Error()),
			Uncertain:  true,
			Duration:   o.res.Duration,
		}
		out[k] = o
	}
	return out
}

// sendAll makes the calls, each on its own goroutine; their outcomes come
// back on r.results.
func (r *runner) sendAll(calls []*call) {
	for _, c := range calls {
		r.inFlight[c.key()] = c
		ctx, cancel := r.callContext(c)
		go func() { r.results <- r.invoke(ctx, cancel, c) }()
	}
}

// probe writes nothing but the lease, to renew it or to learn a pending
// operator request.
func (r *runner) probe() bool {
	d := r.probeDecision()
	return r.write(&d)
}

// await waits for an outcome, an operator request, the instance stopping or
// wakeAt (the store's clock; zero: no timed wake-up). It returns false when
// the runner must stop.
func (r *runner) await(wakeAt time.Time) bool {
	var timer <-chan time.Time
	if !wakeAt.IsZero() {
		t := time.NewTimer(max(wakeAt.Sub(r.estimatedDBNow()), 0))
		defer t.Stop()
		timer = t.C
	}
	stopping := r.c.stopping
	if r.sawStop {
		stopping = nil
	}
	select {
	case o := <-r.results:
		r.received(o)
		for {
			select {
			case o := <-r.results:
				r.received(o)
			default:
				return !r.lost.Load() && r.ctx.Err() == nil
			}
		}
	case <-r.poke:
		return r.probe()
	case <-stopping:
		r.sawStop = true
		return true
	case <-timer:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// poked reports, and consumes, a pending operator request signal.
func (r *runner) poked() bool {
	select {
	case <-r.poke:
		return true
	default:
		return false
	}
}

// invoke makes the call, bounded by the saga's deadline for actions, and
// draws the backoff of a retry. It runs on the runner's goroutine or its
// own: what it needs of the runner's state is read before, by callContext.
func (r *runner) invoke(ctx context.Context, cancel context.CancelFunc, c *call) outcome {
	defer cancel()
	res := r.c.cfg.Invoker.Invoke(ctx, c.Call)
	endCallSpan(trace.SpanFromContext(ctx), res)
	r.c.obs.StepAttempt(c.Kind, res.Outcome, res.Duration)
	return newOutcome(c, res, r.c.cfg.Random)
}

// callContext returns the context of a call: the runner's, with the call's
// span, bounded by the saga's deadline for actions.
func (r *runner) callContext(c *call) (context.Context, context.CancelFunc) {
	ctx, _ := r.c.startCallSpan(r.ctx, c.Call)
	if c.Kind == participant.KindAction && r.s.Deadline != nil {
		left := max(r.s.Deadline.Sub(r.estimatedDBNow()), 0)
		return context.WithTimeout(ctx, left)
	}
	return ctx, func() {}
}

// observe reports a written decision to the metrics and the log.
func (r *runner) observe(d *decision) {
	if d.started {
		r.c.obs.SagaStarted(r.s.Name)
	}
	for _, k := range d.retried {
		r.c.obs.StepRetried(k)
	}
	if d.ended != "" {
		age := r.estimatedDBNow().Sub(r.s.CreatedAt)
		r.c.obs.SagaEnded(r.s.Name, d.ended, max(age, 0))
	}
	r.notes(d.messages)
}

func (r *runner) notes(ns []note) {
	for _, n := range ns {
		switch n.level {
		case 0:
			if r.c.log.Enabled(context.Background(), slog.LevelDebug) {
				r.logger().Debug(n.msg, n.args...)
			}
		case 1:
			r.logger().Info(n.msg, n.args...)
		case 2:
			r.logger().Warn(n.msg, n.args...)
		default:
			r.logger().Error(n.msg, n.args...)
		}
	}
}

// refuse reports a decision the state machine refused as impossible.
// Nothing is written: the lease runs out and the saga is looked at again.
func (r *runner) refuse(d decision) {
	r.notes(d.messages)
	r.logger().Error("saga state machine refused a transition: not written (a bug)", "error", d.err, "status", r.s.Status)
	if o, ok := r.c.obs.(interface{ TransitionRefused() }); ok {
		o.TransitionRefused()
	}
}

// logger returns the runner's logger. It is built on first use: most
// sagas log nothing, and a logger with attributes costs allocations and
// formatting.
func (r *runner) logger() *slog.Logger {
	r.logOnce.Do(func() {
		r.log = r.c.log.With("saga_id", r.id.String(), "saga_name", r.name)
	})
	return r.log
}

// callLease returns how long the write that allows calls leases the
// saga: the lease duration leaseFor, or, for a call that may outlast it, the whole
// call and a margin, so that an owner that stalls meanwhile is not taken
// over while its call may still be answered.
func callLease(leaseFor time.Duration, calls []*call) time.Duration {
	d := leaseFor
	for _, cl := range calls {
		d = max(d, cl.Request.Timeout()+leaseFor/3)
	}
	return d
}

// renewFor returns how long a renewal at now must lease the saga: the
// lease duration, or up to the end of the longest call in flight.
//
// Nor less than the lease as the runner knows it (leaseEnd): the store
// sets the lease, so a renewal (or a write) for less would shorten it,
// and the runner, which keeps the longest end it was told, would believe
// a lease the store no longer grants (the simulator found calls sent
// under such a lease after a pause).
func (r *runner) renewFor(now time.Duration) time.Duration {
	d := r.c.cfg.LeaseDuration
	left := max(time.Duration(r.holdUntil.Load()), time.Duration(r.leaseEnd.Load())) - now
	if left > d {
		// Whole seconds, so that runners share few renewal statements.
		d = left.Truncate(time.Second) + time.Second
	}
	return d
}

// extendLeaseTo records that the lease was extended to end (the
// coordinator's clock, from when the extending write was sent).
func (r *runner) extendLeaseTo(end0 time.Duration) {
	end := int64(end0)
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

// finalSaga returns a copy of the saga as the store holds it after the
// runner's last write, or nil when that is not known exactly (the lease
// was lost, a write failed, or the store does not report its clock).
func (r *runner) finalSaga() *saga.Saga {
	if !r.exact || r.lost.Load() || !r.s.Status.Terminal() {
		return nil
	}
	return cloneSaga(r.s)
}
