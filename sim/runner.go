package sim

import (
	"context"
	"errors"
	"slices"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/participant"
)

// runner is the runner of one saga on one instance (engine/runner.go),
// step for step around the engine's own Loop. Its goroutine is a chain of
// instance events; where the real runner blocks (a store operation, a
// call made inline, a backoff, await), this one waits for an event.
type runner struct {
	in      *instance
	id      saga.ID
	loop    *engine.Loop
	lease   saga.Lease
	claimed bool

	lost      bool // the lease was found lost
	cancelled bool // its context is cancelled
	finishing bool // writing its releasing transition: not renewed
	done      bool
	leaseEnd  time.Duration // the local estimate of the lease expiry
	// holdUntil is when (local) the longest call in flight may still be
	// answered: renewals keep the lease at least that long.
	holdUntil time.Duration
	// refused: the last write was refused for good (saga.ErrRefused);
	// recovering: the decision after one.
	refused    error
	recovering bool

	// blocked: waiting for one answer (a store operation, an inline call,
	// a backoff); token invalidates the answer once the wait ends
	// otherwise (cancelled).
	blocked bool
	token   uint64

	// await: waiting for any of results, a poke, the stop or the timer.
	waiting   bool
	resolving bool
	timer     *event
	timerDue  bool
	poke      bool
	sawStop   bool
	results   []returned
	inFlight  int // calls sent and not back, for the invariants

	// Decisions at one virtual instant, to catch a busy loop.
	spinAt time.Duration
	spins  int
}

// spinLimit is how many decisions of one runner at one virtual instant
// make a busy loop.
const spinLimit = 1000

// returned is an outcome on the results channel.
type returned struct {
	c   engine.Call
	res participant.Result
}

// newRunner is the runner of a saga claimed or created by a request sent
// at sent (local), leased for leaseFor.
func newRunner(in *instance, id saga.ID, l *engine.Loop, sent, leaseFor time.Duration, claimed bool) *runner {
	r := &runner{
		in:       in,
		id:       id,
		loop:     l,
		lease:    l.Lease(),
		claimed:  claimed,
		leaseEnd: sent + leaseFor,
	}
	if leaseFor > in.w.p.leaseFor {
		r.holdUntil = r.leaseEnd
	}
	return r
}

// run is runner.run.
func (r *runner) run() {
	if r.claimed {
		r.restore()
		return
	}
	r.iterate()
}

// restore reads the latest checkpoint (runner.restore).
func (r *runner) restore() {
	w := r.in.w
	var cp *saga.Checkpoint
	tok := r.block()
	w.db.do(r.in, op{kind: "checkpoint read",
		exec: func() error {
			var err error
			cp, err = w.db.mem.LatestCheckpoint(context.Background(), r.id)
			return err
		},
		answer: func(err error) {
			if !r.resume(tok) {
				return
			}
			if err == nil {
				r.loop.Restore(cp)
			}
			r.iterate()
		}})
}

// iterate is one pass of the loop of runner.run.
func (r *runner) iterate() {
	if r.spinAt == r.in.w.now {
		r.spins++
		if r.spins == spinLimit {
			r.in.w.violate(r.id, "the runner decided %d times at one instant: a busy loop (saga %s)", spinLimit, r.loop.Saga().Status)
			if r.in.w.tracef != nil {
				r.in.w.logf(r.id, "busy loop: %+v", r.loop.Saga())
			}
			r.exit()
			return
		}
	} else {
		r.spinAt, r.spins = r.in.w.now, 0
	}
	d := r.loop.Decide(r.in.stopping)
	if r.in.w.tracef != nil {
		r.in.w.logf(r.id, "%s/%d decides at %v: write %v start %d send %d wake %v exit %v (in flight %d)", r.in.name, r.lease.Epoch, r.loop.EstimatedStoreNow(), d.Write, len(d.Start), len(d.Send), d.WakeAt, d.Exit, r.loop.InFlight())
	}
	if d.Err != nil {
		r.in.w.violate(r.id, "the state machine refused a transition: %v", d.Err)
		r.exit()
		return
	}
	if !d.Write {
		r.recovering = false
		r.acted(&d)
		return
	}
	r.write(&d, func() {
		r.recovering = false
		r.acted(&d)
	})
}

// acted goes on after the decision d was written.
func (r *runner) acted(d *engine.Decision) {
	if r.in.w.tracef != nil {
		r.in.w.logf(r.id, "%s/%d acts: lease until %v (local), now %v, hold until %v", r.in.name, r.lease.Epoch, r.leaseEnd, r.in.local(), r.holdUntil)
	}
	switch {
	case d.Exit:
		r.exit()
	case len(d.Send) > 0 && !engine.LeaseFresh(r.leaseEnd, r.in.local(), r.in.w.p.leaseFor):
		// No call under a lease that may have run out: a probe renews it
		// (or finds it lost), then the next decision sends the calls.
		r.in.w.fault("runner renews a stale lease before a call")
		r.probe(func() {
			r.loop.Unsent(append(slices.Clone(d.Send), d.Start...))
			r.in.next(r.iterate)
		})
	case len(d.Start) > 0:
		for _, c := range d.Send {
			r.callAsync(c)
		}
		r.loop.Unsent(d.Start)
		r.in.next(r.iterate)
	case len(d.Send) == 1 && r.loop.InFlight() == 0 && r.loop.MaxParallel() == 1:
		r.callInline(d.Send[0])
	default:
		for _, c := range d.Send {
			r.callAsync(c)
		}
		r.await(d.WakeAt)
	}
}

// block starts a wait for one answer and returns its token.
func (r *runner) block() uint64 {
	r.token++
	r.blocked = true
	return r.token
}

// resume reports whether the answer of the wait tok is still awaited.
func (r *runner) resume(tok uint64) bool {
	if r.done || tok != r.token || !r.blocked {
		return false
	}
	r.blocked = false
	return true
}

// write is runner.write: the transition of d, fenced, retried with
// backoff while the lease lasts; then cont.
func (r *runner) write(d *engine.Decision, cont func()) {
	t := d.Transition
	start := r.in.local()
	if end := start + t.LeaseFor; len(d.Start) > 0 && end > r.holdUntil {
		r.holdUntil = end
	}
	if known := max(r.holdUntil, r.leaseEnd) - start; !t.Release && known > t.LeaseFor {
		t.LeaseFor = known
	}
	if t.Release {
		r.finishing = true
	}
	r.in.stamp(t.Events)
	series := r.in.w.newSeries()
	r.apply(t, series, r.leaseEnd, applyRetryInitial, func(a saga.Applied, err error) {
		if err != nil {
			r.finishing = false
			switch {
			case errors.Is(err, saga.ErrLeaseLost):
				r.loseLease()
			case r.cancelled:
			case errors.Is(err, saga.ErrRefused):
				if r.loop.DecidedOutcomes() > 0 && !r.recovering {
					// The store will never keep what came of the calls:
					// they are recorded as failed by the engine.
					r.loop.Refused(err)
					r.recovering = true
					r.in.next(r.iterate)
					return
				}
			}
			r.exit()
			return
		}
		if !t.Release {
			r.extendLeaseTo(start + t.LeaseFor)
		}
		r.loop.Written(t, a)
		if t.Release && a.Control != saga.ControlNone {
			r.in.signal()
		}
		if d.SignalAfter > 0 {
			r.in.afterLocal(d.SignalAfter+claimDueMargin, r.in.signal)
		}
		cont()
	})
}

// apply is runner.apply: retries last until the lease as it was when the
// write began runs out (until).
func (r *runner) apply(t saga.Transition, series uint64, until, backoff time.Duration, done func(saga.Applied, error)) {
	w := r.in.w
	if r.cancelled {
		done(saga.Applied{}, context.Canceled)
		return
	}
	tok := r.block()
	var a saga.Applied
	w.db.do(r.in, op{kind: "apply", series: series, write: true,
		cancelled: func() bool { return r.cancelled },
		exec: func() error {
			var err error
			a, err = w.db.apply(r, t)
			return err
		},
		answer: func(err error) {
			if w.tracef != nil {
				w.logf(r.id, "%s/%d write answered: %v (awaited %v)", r.in.name, r.lease.Epoch, err, tok == r.token && r.blocked)
			}
			if !r.resume(tok) {
				return
			}
			if err == nil {
				r.in.next(func() { done(a, nil) })
				return
			}
			if errors.Is(err, saga.ErrLeaseLost) || errors.Is(err, saga.ErrNotFound) ||
				errors.Is(err, saga.ErrInvalidTransition) || errors.Is(err, saga.ErrRefused) || r.cancelled {
				done(a, err)
				return
			}
			if left := until - r.in.local(); left < backoff {
				done(a, err)
				return
			}
			tok := r.block()
			r.in.afterLocal(backoff, func() {
				if r.resume(tok) {
					r.apply(t, series, until, min(backoff*2, applyRetryMax), done)
				}
			})
		}})
}

// probe is runner.probe.
func (r *runner) probe(cont func()) {
	d := r.loop.Probe()
	r.write(&d, cont)
}

// callInline makes the lone call of a chain on the runner's goroutine.
func (r *runner) callInline(c engine.Call) {
	if r.cancelled {
		r.exit()
		return
	}
	tok := r.block()
	r.call(c, func(res participant.Result) {
		if !r.resume(tok) {
			return
		}
		r.loop.Returned(c, res, r.in.w.rng.Float64)
		if r.lost || r.cancelled {
			r.exit()
			return
		}
		if r.poke {
			r.poke = false
			r.probe(func() { r.in.next(r.iterate) })
			return
		}
		r.in.next(r.iterate)
	})
}

// callAsync makes a call on a goroutine of its own: its outcome goes to
// the results channel.
func (r *runner) callAsync(c engine.Call) {
	r.loop.Sent(c)
	if r.cancelled {
		return // Invoke answers at once with the context's error: dropped
	}
	r.call(c, func(res participant.Result) {
		if r.done {
			return
		}
		r.results = append(r.results, returned{c, res})
		r.wake()
	})
}

// call sends c to its participant and hands the result to done, on the
// instance.
func (r *runner) call(c engine.Call, done func(participant.Result)) {
	in, w := r.in, r.in.w
	pc := c.Participant()
	if in.crashPoint("before call") {
		return
	}
	r.checkSend(pc)
	r.inFlight++
	timeout := pc.Request.Timeout()
	if s := r.loop.Saga(); pc.Kind == participant.KindAction && s.Deadline != nil {
		timeout = min(timeout, max(s.Deadline.Sub(r.loop.EstimatedStoreNow()), 0))
	}
	gen := in.gen
	due := w.parts.call(in, pc, timeout, func(res participant.Result) {
		r.inFlight--
		if in.crashPoint("after call") {
			return
		}
		done(res)
	})
	if w.faulty && w.chance(0.0008*w.p.intensity) {
		w.after(w.between(0, due-w.now), func() {
			if in.gen == gen && in.up {
				w.fault("crash during call")
				in.crash()
			}
		})
	}
}

// await is runner.await: it waits for an outcome, an operator request,
// the instance stopping or wakeAt (the store's clock; zero: none).
func (r *runner) await(wakeAt time.Time) {
	if r.cancelled {
		r.exit()
		return
	}
	r.waiting = true
	r.timerDue = false
	if !wakeAt.IsZero() {
		d := max(wakeAt.Sub(r.loop.EstimatedStoreNow()), 0)
		r.timer = r.in.afterLocal(d, func() {
			r.timer = nil
			r.timerDue = true
			r.wake()
		})
	}
	r.wake()
}

// wake has the select of await look at what is ready, as the
// goroutine's next step.
func (r *runner) wake() {
	if !r.waiting || r.resolving {
		return
	}
	if len(r.results) == 0 && !r.poke && !(r.in.stopping && !r.sawStop) && !r.timerDue && !r.cancelled {
		return
	}
	r.resolving = true
	r.in.next(r.selectReady)
}

// selectReady is the select of await once something is ready: one of the
// ready cases, at random, as Go picks.
func (r *runner) selectReady() {
	r.resolving = false
	if !r.waiting || r.done {
		return
	}
	var ready []int
	if len(r.results) > 0 {
		ready = append(ready, 0)
	}
	if r.poke {
		ready = append(ready, 1)
	}
	if r.in.stopping && !r.sawStop {
		ready = append(ready, 2)
	}
	if r.timerDue {
		ready = append(ready, 3)
	}
	if r.cancelled {
		ready = append(ready, 4)
	}
	if len(ready) == 0 {
		return
	}
	r.waiting = false
	if r.timer != nil {
		r.timer.dead = true
		r.timer = nil
	}
	switch ready[r.in.w.rng.IntN(len(ready))] {
	case 0:
		for _, o := range r.results {
			r.loop.Returned(o.c, o.res, r.in.w.rng.Float64)
		}
		r.results = nil
		if r.lost || r.cancelled {
			r.exit()
			return
		}
		r.iterate()
	case 1:
		r.poke = false
		r.probe(r.iterate)
	case 2:
		r.sawStop = true
		r.iterate()
	case 3:
		r.iterate()
	default:
		r.exit()
	}
}

// pokeNow is runner.pokeNow: an operator request waits.
func (r *runner) pokeNow() {
	r.poke = true
	r.wake()
}

// stopSignal tells the runner the instance is stopping.
func (r *runner) stopSignal() { r.wake() }

// extendLeaseTo is runner.extendLeaseTo.
func (r *runner) extendLeaseTo(end time.Duration) {
	if end > r.leaseEnd {
		r.leaseEnd = end
	}
}

// renewFor is runner.renewFor: how long a renewal at now leases the saga.
func (r *runner) renewFor(now time.Duration) time.Duration {
	d := r.in.w.p.leaseFor
	if left := max(r.holdUntil, r.leaseEnd) - now; left > d {
		d = left.Truncate(time.Second) + time.Second
	}
	return d
}

// loseLease is runner.loseLease: the runner stops at once.
func (r *runner) loseLease() {
	if r.lost {
		return
	}
	r.lost = true
	r.cancel()
}

// cancel cancels the runner's context: what it waits for returns at once
// and it stops.
func (r *runner) cancel() {
	if r.cancelled || r.done {
		return
	}
	r.cancelled = true
	if r.blocked {
		r.blocked = false
		r.token++
		r.in.next(r.exit)
		return
	}
	r.wake()
}

// exit is the end of runner.run: Coordinator.finish.
func (r *runner) exit() {
	if r.done {
		return
	}
	if r.in.w.tracef != nil {
		r.in.w.logf(r.id, "%s/%d runner exits (lost %v, cancelled %v)", r.in.name, r.lease.Epoch, r.lost, r.cancelled)
	}
	r.done = true
	r.cancelled = true
	r.waiting = false
	if r.timer != nil {
		r.timer.dead = true
		r.timer = nil
	}
	if r.in.runners != nil {
		r.in.finish(r)
	}
}
