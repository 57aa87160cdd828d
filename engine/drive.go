package engine

import (
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// This file lends the engine's decisions to code that does the I/O
// itself: the deterministic simulator (package sim) runs many instances
// of the coordinator on one simulated store under a virtual clock, and
// drives each saga through a Loop, so that what it tests are the
// engine's own state machine and the runner's own bookkeeping, not a
// copy of them. A Coordinator does not use these types; its runner uses
// what they wrap.

// Loop is one saga as a runner runs it, without the runner's I/O: the
// state machine (decide) and what the runner keeps between decisions
// (the saga as stored after its last write, the calls sent and not back,
// the calls started and not sent, the outcomes not yet recorded, the due
// times of retries). The caller writes each decision's transition with
// Store.Apply, sends its calls, and reports what came of both. A Loop is
// not safe for concurrent use.
type Loop struct{ l loop }

// Call is a participant call a decision allowed.
type Call struct{ c *call }

// Participant returns the call as an Invoker receives it. The caller must
// not change it.
func (c Call) Participant() *participant.Call { return &c.c.Call }

// Decision is one decision of the state machine, as the runner acts on
// it.
type Decision struct {
	// Transition is to be written with Store.Apply when Write is set. It
	// is fenced on the loop's lease and extends it (or releases the saga);
	// its events have no ids yet.
	Transition saga.Transition
	Write      bool
	// Start holds the calls Transition writes as started: the next
	// decision sends them, once the write is durable. Send holds the
	// calls to send now.
	Start, Send []Call
	// WakeAt is when to decide again if nothing else happens (zero: only
	// when an outcome or an operator request comes).
	WakeAt time.Time
	// SignalAfter > 0 asks the claim loop to look again that much later
	// (the saga was released to wait for a retry).
	SignalAfter time.Duration
	// Exit: the transition releases the saga; the runner stops after
	// writing it.
	Exit bool
	// Ended is the end status the transition writes, if any.
	Ended saga.SagaStatus
	// Err reports a transition the state machine refuses as impossible (a
	// bug): nothing is to be written, and the runner stops.
	Err error
}

// NewLoop returns the loop of a saga claimed with Store.ClaimSagas (with
// its steps), leased for leaseFor. clock is the instance's monotonic
// clock, from which the loop estimates the store's between writes.
func NewLoop(claimed *saga.Saga, leaseFor time.Duration, clock func() time.Duration) *Loop {
	return &Loop{l: newLoop(cloneSaga(claimed), true, nil, nil, leaseFor, clock)}
}

// Restore restores the claimed saga's outputs from its latest checkpoint
// (nil: none), as a runner does before its first decision.
func (l *Loop) Restore(cp *saga.Checkpoint) { l.l.restoreFrom(cp, nil) }

// Decide returns the next decision. stopping says that the instance is
// stopping (start nothing new; release the saga once nothing is in
// flight).
func (l *Loop) Decide(stopping bool) Decision {
	d := decide(l.l.input(stopping))
	if d.err != nil {
		return Decision{Err: d.err}
	}
	l.l.decided(&d)
	return l.export(&d)
}

// Probe returns a decision that writes nothing but the lease, as a
// runner writes to learn of an operator request that poked it.
func (l *Loop) Probe() Decision {
	d := l.l.probeDecision()
	return l.export(&d)
}

func (l *Loop) export(d *decision) Decision {
	return Decision{
		Transition:  l.l.transition(d),
		Write:       d.write,
		Start:       exportCalls(d.start),
		Send:        exportCalls(d.send),
		WakeAt:      d.wakeAt,
		SignalAfter: d.signalAfter,
		Exit:        d.exit,
		Ended:       d.ended,
	}
}

func exportCalls(cs []*call) []Call {
	if len(cs) == 0 {
		return nil
	}
	out := make([]Call, len(cs))
	for i, c := range cs {
		out[i] = Call{c}
	}
	return out
}

// Refused records that the store refused the write of the last decision
// for good (an error wrapping saga.ErrRefused), as a runner does when that
// decision recorded outcomes: the next decision records them as failed
// by the engine instead.
func (l *Loop) Refused(err error) { l.l.refusedWrite(err) }

// DecidedOutcomes reports how many outcomes the last decision recorded.
func (l *Loop) DecidedOutcomes() int { return len(l.l.in.outcomes) }

// Written records that t (a decision's Transition) was written and the
// store answered a.
func (l *Loop) Written(t saga.Transition, a saga.Applied) { l.l.written(t, a) }

// Unsent records calls written as started and not sent yet (a
// decision's Start, once its transition is written): the next decision
// sends them, or withdraws them.
func (l *Loop) Unsent(calls []Call) {
	l.l.unsent = make([]*call, len(calls))
	for i, c := range calls {
		l.l.unsent[i] = c.c
	}
}

// Sent records that c went out and its outcome is awaited.
func (l *Loop) Sent(c Call) { l.l.inFlight[c.c.key()] = c.c }

// Returned records what came of call c, drawing the backoff of a retry
// with random as the runner does.
func (l *Loop) Returned(c Call, res participant.Result, random func() float64) {
	l.l.received(newOutcome(c.c, res, random))
}

// LeaseFresh reports whether a lease that runs out at leaseEnd (by the
// instance's clock) is fresh enough at now for a call to go out under it;
// when it is not, the runner renews it with Probe first.
func LeaseFresh(leaseEnd, now, leaseFor time.Duration) bool {
	return leaseFresh(leaseEnd, now, leaseFor)
}

// Saga returns the saga as the loop believes it stored. The caller must
// not change it.
func (l *Loop) Saga() *saga.Saga { return l.l.s }

// Lease returns the lease the loop writes under.
func (l *Loop) Lease() saga.Lease { return l.l.lease }

// MaxParallel returns how many calls of the saga may be in flight at
// once: 1 for a chain.
func (l *Loop) MaxParallel() int { return l.l.plan.maxParallel }

// InFlight returns how many calls were sent and are not back.
func (l *Loop) InFlight() int { return len(l.l.inFlight) }

// EstimatedStoreNow returns the loop's estimate of the store's clock.
func (l *Loop) EstimatedStoreNow() time.Time { return l.l.estimatedDBNow() }

// Submission is what Coordinator.Submit writes for a new saga.
type Submission struct {
	Saga   *saga.Saga
	Events []saga.Event // without ids
	// LeaseFor > 0: the saga is created leased to its owner, with the
	// calls of its first decision started.
	LeaseFor time.Duration
	sub      submission
	leaseFor time.Duration // the lease duration
}

// NewSubmission builds what Submit writes for def as saga id: with
// leased (a worker slot of owner is free), the saga is created leased to
// owner with the first decision at now (the instance's clock, as Submit
// reads it) written with it.
func NewSubmission(def saga.Definition, id saga.ID, owner string, leased bool, now time.Time, leaseFor time.Duration) *Submission {
	sub := newSubmission(def, id, owner, leased, now, false, leaseFor)
	return &Submission{Saga: sub.s, Events: sub.events, LeaseFor: sub.leaseFor, sub: sub, leaseFor: leaseFor}
}

// Loop returns the loop of the saga created from a leased submission
// (created is what Store.CreateSaga returned), whose first calls are
// started and not sent.
func (s *Submission) Loop(created *saga.Saga, clock func() time.Duration) *Loop {
	if len(created.Steps) != len(s.sub.s.Steps) {
		created.Steps = s.sub.s.Steps
	}
	return &Loop{l: newLoop(cloneSaga(created), false, s.sub.plan, s.sub.first, s.leaseFor, clock)}
}
