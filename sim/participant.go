package sim

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// participants are the services the sagas call, behind a network that
// delays, loses the answers of, and duplicates requests. Each is
// idempotent the way a participant honouring Idempotency-Key is: it keeps
// the answer of each key (saga:step:kind) and gives it again to a repeat,
// and it refuses an action whose compensation it has already carried out
// (a barrier). Its ledger counts the effects applied and undone per step,
// which the invariants read.
type participants struct {
	w      *world
	keys   map[string]*answer
	effect map[stepKey]*effect
}

// stepKey names one step of one saga.
type stepKey struct {
	saga saga.ID
	step int
}

// answer is what a participant keeps for an idempotency key it settled.
type answer struct {
	status int
	output []byte
}

// effect is a step's effect at its participant: applied by the action,
// undone by the compensation.
type effect struct {
	applied, undone int
	// barred: the compensation came first (nothing to undo), so the
	// action is refused whenever it comes.
	barred bool
}

func newParticipants(w *world) *participants {
	return &participants{w: w, keys: map[string]*answer{}, effect: map[stepKey]*effect{}}
}

func (p *participants) effectOf(k stepKey) *effect {
	e := p.effect[k]
	if e == nil {
		e = &effect{}
		p.effect[k] = e
	}
	return e
}

// behaviour is how one delivery of a call is treated, drawn when the call
// is made.
type behaviour int

const (
	behaveWell      behaviour = iota
	behave5xxBefore           // 503 before acting
	behave5xxAfter            // acts, then 500
	behave429                 // a gateway refuses for now, before the service sees it
	behaveRefuse              // a business refusal (409/422)
	behaveNotSent             // the connection is refused: nothing reaches it
)

// draw picks the behaviour of a delivery of a call of kind.
func (p *participants) draw(kind participant.Kind) behaviour {
	w := p.w
	if !w.faulty {
		return behaveWell
	}
	x := w.rng.Float64() / w.p.intensity
	if kind == participant.KindAction {
		switch {
		case x < 0.03:
			return behaveRefuse
		case x < 0.06:
			return behave5xxBefore
		case x < 0.08:
			return behave5xxAfter
		case x < 0.10:
			return behave429
		case x < 0.11:
			return behaveNotSent
		}
		return behaveWell
	}
	switch {
	case x < 0.03:
		return behave5xxBefore
	case x < 0.045:
		return behave5xxAfter
	case x < 0.055:
		return behave429
	case x < 0.06:
		return behaveNotSent
	case x < 0.063:
		return behaveRefuse
	}
	return behaveWell
}

// call makes c for instance in, which waits for the answer at most
// timeout (by the instance's clock); done gets the result on the
// instance, as the engine's Invoker returns it. It returns when the
// answer is due, for the crash during a call.
func (p *participants) call(in *instance, c *participant.Call, timeout time.Duration, done func(participant.Result)) time.Duration {
	w := p.w
	w.stats.Calls++
	t0 := w.now
	gen := in.gen
	giveUp := in.trueDuration(timeout)
	b := p.draw(c.Kind)
	if b != behaveWell {
		w.fault("participant " + b.String())
	}
	if w.tracef != nil {
		w.logf(c.SagaID, "%s %d attempt %d sent by %s (timeout %v): %s", c.Kind, c.StepIndex, c.Attempt, in.name, giveUp, b)
	}
	if b == behaveNotSent {
		at := w.between(100*time.Microsecond, time.Millisecond)
		in.after(at, func() {
			err := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
			done(p.result(in, c, t0, 0, nil, err))
		})
		return t0 + at
	}
	// There and back, and the time the service takes.
	there, back := p.latency(), p.latency()
	work := w.between(100*time.Microsecond, 2*time.Millisecond)
	if w.faulty && w.chance(0.03*w.p.intensity) {
		work = w.between(50*time.Millisecond, 3*time.Second) // a slow answer
		w.fault("participant slow")
	}
	if w.faulty && w.chance(0.01*w.p.intensity) {
		there = w.between(time.Second, 30*time.Second) // delivered late
		w.fault("participant late delivery")
	}
	if w.faulty && w.chance(0.02*w.p.intensity) {
		// The network delivers the request a second time.
		w.fault("participant duplicate delivery")
		again := there + w.between(0, 2*time.Second)
		cc := *c
		w.after(again, func() { p.serve(&cc, b) })
	}
	if there+work+back > giveUp {
		// The caller gives up first; the request still arrives.
		cc := *c
		w.after(there, func() { p.serve(&cc, b) })
		in.after(giveUp, func() {
			done(p.result(in, c, t0, 0, nil, context.DeadlineExceeded))
		})
		return t0 + giveUp
	}
	cc := *c
	w.after(there+work, func() {
		status, out := p.serve(&cc, b)
		in.afterIn(gen, back, func() { done(p.result(in, c, t0, status, out, nil)) })
	})
	return t0 + there + work + back
}

func (b behaviour) String() string {
	return [...]string{"well", "5xx before acting", "5xx after acting", "429", "refusal", "connection refused"}[b]
}

func (p *participants) latency() time.Duration {
	return p.w.between(50*time.Microsecond, 3*time.Millisecond)
}

// result is the engine's view of an answer, classified by the engine's
// own rules.
func (p *participants) result(in *instance, c *participant.Call, t0 time.Duration, status int, out []byte, err error) participant.Result {
	res := participant.Result{StatusCode: status, Duration: in.localDuration(p.w.now - t0)}
	res.Outcome, res.Uncertain = participant.Classify(status, err)
	if p.w.tracef != nil {
		defer func() {
			p.w.logf(c.SagaID, "%s %d attempt %d answered to %s: %v %s", c.Kind, c.StepIndex, c.Attempt, in.name, res.Outcome, res.Error)
		}()
	}
	switch {
	case err != nil:
		res.Error = err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			res.Error = "timeout: " + res.Error
		}
	case res.Outcome == participant.OutcomeSuccess:
		res.Output = out
	default:
		res.Error = "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)
	}
	return res
}

// serve is the participant receiving one delivery of c.
func (p *participants) serve(c *participant.Call, b behaviour) (status int, output []byte) {
	w := p.w
	key := c.IdempotencyKey()
	k := stepKey{c.SagaID, c.StepIndex}
	w.note("serve "+string(c.Kind), c.SagaID, c.StepIndex)
	if w.tracef != nil {
		defer func() { w.logf(c.SagaID, "%s %d attempt %d served: %d", c.Kind, c.StepIndex, c.Attempt, status) }()
	}
	switch b {
	case behaveNotSent, behave429:
		return http.StatusTooManyRequests, nil
	case behave5xxBefore:
		return http.StatusServiceUnavailable, nil
	}
	if a := p.keys[key]; a != nil {
		w.stats.Faults["participant answered a repeat from its ledger"]++
		return a.status, a.output
	}
	e := p.effectOf(k)
	if c.Kind == participant.KindAction {
		if e.barred {
			w.stats.Faults["participant refused an action after its compensation"]++
			p.keys[key] = &answer{status: http.StatusConflict}
			return http.StatusConflict, nil
		}
		if b == behaveRefuse {
			p.keys[key] = &answer{status: http.StatusConflict}
			return http.StatusConflict, nil
		}
		p.checkDependencies(c)
		e.applied++
		if e.applied > 1 {
			w.violate(c.SagaID, "step %d applied %d times at its participant", c.StepIndex, e.applied)
		}
		out := []byte(`{"applied":"` + key + `","attempt":` + strconv.Itoa(c.Attempt) + `}`)
		p.keys[key] = &answer{status: http.StatusOK, output: out}
		if b == behave5xxAfter {
			return http.StatusInternalServerError, nil
		}
		return http.StatusOK, out
	}
	if b == behaveRefuse {
		// Compensations are refused only for now: not kept.
		return http.StatusUnprocessableEntity, nil
	}
	p.checkUndoOrder(c)
	if e.applied > e.undone {
		e.undone++
	} else {
		e.barred = true
	}
	out := []byte(`{"undone":"` + key + `"}`)
	p.keys[key] = &answer{status: http.StatusOK, output: out}
	if b == behave5xxAfter {
		return http.StatusInternalServerError, nil
	}
	return http.StatusOK, out
}

// checkDependencies checks, as the action of a step with a compensation
// takes effect, that every step it depends on has taken effect and not
// been undone.
func (p *participants) checkDependencies(c *participant.Call) {
	o := p.w.db.orders[c.SagaID]
	if o == nil || !o.compensable[c.StepIndex] {
		return
	}
	for _, d := range o.deps[c.StepIndex] {
		e := p.effect[stepKey{c.SagaID, d}]
		if e == nil || e.applied-e.undone != 1 {
			p.w.violate(c.SagaID, "the action of step %d took effect before step %d it depends on (or after its undoing)", c.StepIndex, d)
		}
	}
}

// checkUndoOrder checks, as a compensation takes effect, that every step
// depending on its step (transitively) with a compensation of its own has
// no effect left.
func (p *participants) checkUndoOrder(c *participant.Call) {
	o := p.w.db.orders[c.SagaID]
	if o == nil {
		return
	}
	for _, k := range o.descendants[c.StepIndex] {
		if !o.compensable[k] {
			continue
		}
		if e := p.effect[stepKey{c.SagaID, k}]; e != nil && e.applied > e.undone {
			p.w.violate(c.SagaID, "step %d was undone while step %d that depends on it still had its effect", c.StepIndex, k)
		}
	}
}
