package engine

import (
	"slices"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// loop is what a runner knows of its saga between two decisions, and the
// rules by which that changes: the input of each decision, what a
// decision leaves behind, the saga as stored after a write, the outcomes
// that came back. It does no I/O and reads no clock but the one it is
// given. The runner (runner.go) embeds it and does the I/O around it;
// Loop (drive.go) lends it to the deterministic simulator (package sim),
// which does its own I/O under a virtual clock, so that both run these
// rules rather than copies of them.
type loop struct {
	id       saga.ID
	lease    saga.Lease
	leaseFor time.Duration
	clock    func() time.Duration // the instance's monotonic clock

	// s is the saga as the store holds it after the last write.
	s    *saga.Saga
	plan *plan
	// exact is true while every write's times came from the store, so s
	// matches the stored saga.
	exact bool
	// The store's clock at the last write, and when that was by ours.
	dbNow   time.Time
	dbNowAt time.Duration

	inFlight map[callKey]*call
	unsent   []*call
	outcomes []outcome
	retryAt  map[callKey]time.Time
	claimed  bool
	// checkpoint is the checkpoint a claimed saga was restored from.
	checkpoint *saga.Checkpoint
	in         input // the input of the current decision
}

// newLoop returns the loop of s, claimed or created here with the calls
// unsent written as started (p is then its plan; nil: made from s).
func newLoop(s *saga.Saga, claimed bool, p *plan, unsent []*call, leaseFor time.Duration, clock func() time.Duration) loop {
	if p == nil {
		p = newPlan(&s.Definition)
	}
	l := loop{
		id:       s.ID,
		lease:    s.Lease(),
		leaseFor: leaseFor,
		clock:    clock,
		s:        s,
		plan:     p,
		exact:    true,
		dbNow:    s.UpdatedAt,
		dbNowAt:  clock(),
		inFlight: make(map[callKey]*call),
		unsent:   unsent,
		claimed:  claimed,
	}
	if l.dbNow.IsZero() {
		l.dbNow = s.CreatedAt
	}
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
	return l
}

// input is what the loop knows, for decide. It is the loop's own field,
// overwritten at each decision: decide keeps nothing of it.
func (l *loop) input(stopping bool) *input {
	l.in = input{
		s:          l.s,
		plan:       l.plan,
		now:        l.estimatedDBNow(),
		inFlight:   l.inFlight,
		unsent:     l.unsent,
		outcomes:   l.outcomes,
		retryAt:    l.retryAt,
		claimed:    l.claimed,
		checkpoint: l.checkpoint,
		stopping:   stopping,
		leaseFor:   l.leaseFor,
	}
	return &l.in
}

// decided forgets what the decision d took in: the outcomes and unsent
// calls are in it, and the retry times are its own.
func (l *loop) decided(d *decision) {
	l.outcomes, l.unsent, l.claimed = nil, nil, false
	l.retryAt = d.retryAt
}

// transition returns d's transition fenced on the lease, extending it
// (for the whole of the calls it starts, see callLease) unless it
// releases the saga.
func (l *loop) transition(d *decision) saga.Transition {
	t := d.t
	t.SagaID, t.Lease, t.LeaseFor = l.id, l.lease, l.leaseFor
	if len(d.start) > 0 {
		t.LeaseFor = callLease(l.leaseFor, d.start)
	}
	if t.Release {
		t.LeaseFor = 0
	}
	return t
}

// refusedWrite goes back to the input of the decision whose write the
// store refused for good (saga.ErrRefused, err): the outcomes it recorded
// are to be recorded as failed by the engine instead (see
// refusedOutcomes), with the same unsent calls and retry times.
func (l *loop) refusedWrite(err error) {
	in := &l.in
	l.outcomes = refusedOutcomes(in.outcomes, err)
	l.unsent, l.claimed, l.retryAt = in.unsent, in.claimed, in.retryAt
}

// probeDecision is a write of nothing but the lease (to renew it, or to
// learn of a pending operator request). The fields every transition
// writes keep their stored values.
func (l *loop) probeDecision() decision {
	return decision{write: true, t: saga.Transition{
		CompletedSteps: l.s.CompletedSteps,
		Error:          l.s.Error,
		CompensateTo:   l.s.CompensateTo,
	}}
}

// written records that t was written and the store answered applied.
func (l *loop) written(t saga.Transition, applied saga.Applied) {
	l.s = l.stored(t, applied)
}

// stored returns the saga as the store holds it after writing t: the
// previous copy with t applied by saga.ApplyTransition (the rule the
// stores follow) at the store's clock, and the request and event
// sequence the store reported.
func (l *loop) stored(t saga.Transition, applied saga.Applied) *saga.Saga {
	now := applied.Now
	if now.IsZero() {
		// A store that does not report its clock: the copy's times are
		// estimates, and finalSaga will not be used.
		l.exact = false
		now = l.estimatedDBNow()
	} else {
		l.dbNow, l.dbNowAt = now, l.clock()
	}
	next := *l.s
	next.Steps = slices.Clone(l.s.Steps)
	next.ApplyTransition(t, now)
	next.Control = applied.Control
	next.EventSeq = applied.EventSeq
	if next.Control != saga.ControlNone {
		due := now
		next.NextRunAt = &due
	}
	if !t.Release && !applied.LeaseExpiresAt.IsZero() {
		next.LeaseExpiresAt = new(applied.LeaseExpiresAt)
	}
	return &next
}

// received records an outcome that came back.
func (l *loop) received(o outcome) {
	delete(l.inFlight, o.call.key())
	l.outcomes = append(l.outcomes, o)
}

// estimatedDBNow estimates the store's clock now from the last write.
func (l *loop) estimatedDBNow() time.Time {
	return l.dbNow.Add(l.clock() - l.dbNowAt)
}

// restoreFrom restores a claimed saga's outputs from its latest
// checkpoint cp (nil: none): the checkpoint's outputs are the saga's
// context up to its step; the step rows hold what completed after it. A
// checkpoint that disagrees with a step row is reported to report (when
// not nil): the row, written later, wins.
func (l *loop) restoreFrom(cp *saga.Checkpoint, report func(msg string, args ...any)) {
	l.checkpoint = cp
	if cp == nil {
		return
	}
	if report == nil {
		report = func(string, ...any) {}
	}
	outs, err := checkpointOutputs(cp.Context)
	if err != nil {
		report("checkpoint unreadable: recovering from the step rows alone", "error", err, "checkpoint_step", cp.StepIndex)
		return
	}
	for i := range l.s.Steps {
		st := &l.s.Steps[i]
		out, ok := outs[st.Name]
		if !ok || st.Status != saga.StepStatusCompleted {
			continue
		}
		if !jsonSame(out, st.Output) {
			report("checkpoint disagrees with a step row: keeping the row", "step_index", i, "checkpoint_step", cp.StepIndex)
			continue
		}
		st.Output = out
	}
}

// newOutcome is what came of call c: res, and for a transient failure
// the backoff before the next attempt (drawn with random, at least the
// participant's Retry-After, at most saga.MaxBackoffLimit).
func newOutcome(c *call, res participant.Result, random func() float64) outcome {
	o := outcome{call: c, res: res}
	if res.Outcome == participant.OutcomeTransient {
		d := participant.Backoff(c.policy, c.budgetAttempt(), random)
		o.backoff = min(max(d, res.RetryAfter), saga.MaxBackoffLimit)
	}
	return o
}

// leaseFresh reports whether a lease that runs out at leaseEnd (the
// instance's clock, an estimate that errs early) still has more than a
// quarter of its duration left at now. A call goes out only under a
// fresh lease: a runner that stalled (a long pause of the process)
// renews its lease with a probe write first, which the store refuses if
// another instance has taken the saga meanwhile. The quarter covers a
// local clock running up to a quarter slower than the store's.
func leaseFresh(leaseEnd, now, leaseFor time.Duration) bool {
	return leaseEnd-now > leaseFor/4
}
