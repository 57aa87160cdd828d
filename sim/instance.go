package sim

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
)

// The runner's constants (engine/runner.go).
const (
	applyRetryInitial = 50 * time.Millisecond
	applyRetryMax     = time.Second
	claimDueMargin    = 20 * time.Millisecond
)

// instance is one simulated process of the service: a Coordinator with
// its claim loop, lease renewer and runners (engine/coordinator.go). It
// crashes, stalls, stops and restarts; each start is a new incarnation
// (gen), and the events of an incarnation that crashed never happen.
type instance struct {
	w     *world
	index int
	name  string // the instance id leases are taken as
	gen   uint64
	up    bool
	boots int

	// Its clocks: monotonic since boot, running at rate; the wall clock
	// off the store's by offset.
	bootAt time.Duration
	rate   float64
	offset time.Duration

	stalledUntil   time.Duration
	storeDownUntil time.Duration

	runners  map[saga.ID]*runner
	used     int // worker slots taken
	stopping bool
	backlog  bool

	claimBusy, wakePending, tickPending bool
	renewBusy, renewPending             bool
}

func newInstance(w *world, i int) *instance {
	return &instance{w: w, index: i}
}

// local is the instance's monotonic clock (Coordinator.now).
func (in *instance) local() time.Duration {
	return time.Duration(float64(in.w.now-in.bootAt) * in.rate)
}

// wall is the instance's wall clock (time.Now), skewed.
func (in *instance) wall() time.Time {
	return epoch.Add(in.offset + time.Duration(float64(in.w.now)*in.rate))
}

// trueDuration converts a duration of the instance's clock to virtual
// time (rounded up: a timer of 1 ns does not fire at once); localDuration
// the other way.
func (in *instance) trueDuration(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(float64(d) / in.rate))
}

func (in *instance) localDuration(d time.Duration) time.Duration {
	return time.Duration(float64(d) * in.rate)
}

// after schedules fn on the instance d of virtual time from now.
func (in *instance) after(d time.Duration, fn func()) *event {
	e := &event{at: in.w.now + max(d, 0), inst: in, gen: in.gen, fn: fn}
	if !in.up {
		// What a crashed incarnation goes on to do in the step that
		// crashed it never happens.
		e.dead = true
		return e
	}
	in.w.push(e)
	return e
}

// afterIn schedules fn on incarnation gen of the instance, d from now:
// nothing happens if it is no longer that incarnation.
func (in *instance) afterIn(gen uint64, d time.Duration, fn func()) {
	in.w.push(&event{at: in.w.now + max(d, 0), inst: in, gen: gen, fn: fn})
}

// afterLocal schedules fn d from now by the instance's clock (a timer).
func (in *instance) afterLocal(d time.Duration, fn func()) *event {
	return in.after(in.trueDuration(d), fn)
}

// next runs fn as the instance's next step: a goroutine scheduled again,
// which a stall or crash can come before.
func (in *instance) next(fn func()) { in.after(0, fn) }

// every runs fn every period of the instance's clock (a ticker).
func (in *instance) every(period time.Duration, fn func()) {
	var tick func()
	tick = func() {
		fn()
		in.afterLocal(period, tick)
	}
	in.afterLocal(period, tick)
}

// boot starts a new incarnation (Coordinator.New and Start).
func (in *instance) boot() {
	w := in.w
	in.gen++
	in.boots++
	in.up = true
	in.stopping = false
	in.runners = map[saga.ID]*runner{}
	in.used = 0
	in.backlog = false
	in.claimBusy, in.wakePending, in.tickPending = false, false, false
	in.renewBusy, in.renewPending = false, false
	in.stalledUntil, in.storeDownUntil = 0, 0
	in.bootAt = w.now
	in.rate = 1 + w.p.drift*(2*w.rng.Float64()-1)
	in.offset = time.Duration(float64(w.p.skew) * (2*w.rng.Float64() - 1))
	switch {
	case in.boots == 1:
		in.name = fmt.Sprintf("sim-%d", in.index)
	case w.chance(0.3):
		// INSTANCE_ID configured: the same id as before the restart.
	default:
		in.name = fmt.Sprintf("sim-%d.%d", in.index, in.boots)
	}
	w.note("boot", saga.NilID, in.index)
	if w.tracef != nil {
		w.logf(saga.NilID, "%s boots", in.name)
	}
	in.every(w.p.claimInterval, func() { in.tickPending = true; in.kickClaim() })
	in.every(w.p.leaseFor/3, in.renewTick)
	in.signal()
}

// crashPoint is a point where the instance may crash (SIGKILL): it
// reports whether it did.
func (in *instance) crashPoint(point string) bool {
	w := in.w
	if !w.faulty || !in.up || !w.chance(0.0008*w.p.intensity) {
		return false
	}
	w.fault("crash " + point)
	in.crash()
	return true
}

// crash kills the incarnation: its runners, timers and answers are gone;
// what it sent still arrives. It restarts a little later.
func (in *instance) crash() {
	w := in.w
	in.gen++
	in.up = false
	in.runners = nil
	w.note("crash", saga.NilID, in.index)
	if w.tracef != nil {
		w.logf(saga.NilID, "%s crashes", in.name)
	}
	gen := in.gen
	w.after(w.between(10*time.Millisecond, 5*time.Second), func() {
		if !in.up && in.gen == gen {
			in.boot()
		}
	})
}

// stall makes the process stand still for a while (a long pause): its
// clocks run on, what it does waits.
func (in *instance) stall() {
	w := in.w
	d := w.between(10*time.Millisecond, 3*w.p.leaseFor)
	in.stalledUntil = w.now + d
	w.fault("instance stall")
	if w.tracef != nil {
		w.logf(saga.NilID, "%s stalls for %v", in.name, d)
	}
}

// gracefulStop is Coordinator.Stop with a grace period: the runners
// release their sagas; those still running when it passes are abandoned.
func (in *instance) gracefulStop() {
	w := in.w
	if !in.up || in.stopping {
		return
	}
	w.fault("instance graceful stop")
	in.stopping = true
	for _, r := range in.sortedRunners() {
		r.stopSignal()
	}
	in.stoppedIfIdle()
	gen := in.gen
	in.afterLocal(w.between(100*time.Millisecond, 10*time.Second), func() {
		if in.gen == gen && in.up {
			w.fault("instance stop abandoned calls")
			in.down()
		}
	})
}

// stoppedIfIdle ends a stop once no runner is left.
func (in *instance) stoppedIfIdle() {
	if in.stopping && len(in.runners) == 0 {
		in.down()
	}
}

// down ends the incarnation after a stop; it starts again later.
func (in *instance) down() {
	w := in.w
	in.gen++
	in.up = false
	in.runners = nil
	gen := in.gen
	w.after(w.between(10*time.Millisecond, 2*time.Second), func() {
		if !in.up && in.gen == gen {
			in.boot()
		}
	})
}

func (in *instance) sortedRunners() []*runner {
	out := make([]*runner, 0, len(in.runners))
	for _, r := range in.runners {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *runner) int { return bytes.Compare(a.id[:], b.id[:]) })
	return out
}

// signal wakes the claim loop.
func (in *instance) signal() {
	in.wakePending = true
	in.kickClaim()
}

// kickClaim starts an iteration of the claim loop when it waits and a
// tick or a wake-up is pending (the select of claimLoop).
func (in *instance) kickClaim() {
	if !in.up || in.claimBusy || in.stopping {
		return
	}
	switch {
	case in.wakePending && in.tickPending:
		if in.w.chance(0.5) {
			in.wakePending = false
		} else {
			in.tickPending = false
		}
	case in.wakePending:
		in.wakePending = false
	case in.tickPending:
		in.tickPending = false
	default:
		return
	}
	in.claimBusy = true
	in.next(in.claimOnce)
}

func (in *instance) claimDone() {
	in.claimBusy = false
	in.kickClaim()
}

// reserve takes up to n free worker slots.
func (in *instance) reserve(n int) int {
	if !in.up || in.stopping {
		return 0
	}
	got := min(n, in.w.p.maxConcurrent-in.used)
	in.used += got
	return got
}

func (in *instance) unreserve(n int) { in.used -= n }

// claimOnce is Coordinator.claimOnce, looping while full batches come.
func (in *instance) claimOnce() {
	w := in.w
	n := in.reserve(w.p.claimBatch)
	if n == 0 {
		in.claimDone()
		return
	}
	var got []*saga.Saga
	sent := in.local()
	w.db.do(in, op{kind: "claim", write: true,
		exec: func() error {
			var err error
			got, err = w.db.mem.ClaimSagas(context.Background(), in.name, w.p.leaseFor, n)
			w.note("claim", saga.NilID, len(got))
			return err
		},
		answer: func(err error) {
			if err != nil {
				in.unreserve(n)
				in.claimDone()
				return
			}
			in.unreserve(n - len(got))
			for _, s := range got {
				in.launch(s.ID, engine.NewLoop(s, w.p.leaseFor, in.local), sent, w.p.leaseFor, true)
			}
			full := len(got) == n
			in.backlog = full
			if full && n == w.p.claimBatch {
				in.next(in.claimOnce)
				return
			}
			in.claimDone()
		}})
}

// launch starts the runner of a saga for which a slot was reserved.
func (in *instance) launch(id saga.ID, l *engine.Loop, sent, leaseFor time.Duration, claimed bool) {
	r := newRunner(in, id, l, sent, leaseFor, claimed)
	old := in.runners[id]
	in.runners[id] = r
	if old != nil {
		// Our own earlier lease ran out and we claimed the saga again.
		old.loseLease()
	}
	in.next(r.run)
}

// finish is Coordinator.finish: the runner is done with its saga.
func (in *instance) finish(r *runner) {
	if in.runners[r.id] == r {
		delete(in.runners, r.id)
	}
	in.used--
	if in.backlog {
		in.signal()
	}
	in.stoppedIfIdle()
}

// renewTick is a tick of the lease renewer.
func (in *instance) renewTick() {
	if in.renewBusy {
		in.renewPending = true
		return
	}
	in.renewBusy = true
	in.next(in.renewOnce)
}

func (in *instance) renewDone() {
	in.renewBusy = false
	if in.renewPending {
		in.renewPending = false
		in.renewTick()
	}
}

// renewOnce is Coordinator.renewOnce: one RenewLeases per lease
// duration asked for (the lease, or longer while a long call is in
// flight), in order of duration.
func (in *instance) renewOnce() {
	now := in.local()
	var asked []*runner
	groups := map[time.Duration]map[saga.ID]int64{}
	for _, r := range in.sortedRunners() {
		if r.finishing {
			continue
		}
		d := r.renewFor(now)
		if groups[d] == nil {
			groups[d] = map[saga.ID]int64{}
		}
		groups[d][r.id] = r.lease.Epoch
		asked = append(asked, r)
	}
	if len(asked) == 0 {
		in.renewDone()
		return
	}
	durations := make([]time.Duration, 0, len(groups))
	for d := range groups {
		durations = append(durations, d)
	}
	slices.Sort(durations)
	kept := map[saga.ID]time.Duration{}
	failed := false
	var renewGroup func(k int)
	renewGroup = func(k int) {
		if k == len(durations) {
			in.renewed(asked, kept, failed)
			return
		}
		d := durations[k]
		start := in.local()
		var renewed []saga.ID
		in.w.db.do(in, op{kind: "renew", write: true,
			exec: func() error {
				var err error
				renewed, err = in.w.db.mem.RenewLeases(context.Background(), in.name, groups[d], d)
				return err
			},
			answer: func(err error) {
				if err != nil {
					failed = true
				}
				for _, id := range renewed {
					kept[id] = start + d
				}
				renewGroup(k + 1)
			}})
	}
	renewGroup(0)
}

// renewed ends renewOnce: the runners renewed extend their lease, the
// others lost it; after an error, those past their lease by the
// instance's clock stop (stopExpired).
func (in *instance) renewed(asked []*runner, kept map[saga.ID]time.Duration, failed bool) {
	if failed {
		now := in.local()
		for _, r := range asked {
			if in.runners[r.id] == r && !r.finishing && r.leaseEnd <= now {
				r.loseLease()
			}
		}
		in.renewDone()
		return
	}
	var lost []*runner
	for _, r := range asked {
		if in.runners[r.id] != r {
			continue
		}
		if end, ok := kept[r.id]; ok {
			r.extendLeaseTo(end)
		} else if !r.finishing {
			lost = append(lost, r)
		}
	}
	for _, r := range lost {
		r.loseLease()
	}
	in.renewDone()
}

// stamp gives events their ids and this instance's id
// (Coordinator.stampEvents), from the run's deterministic ids.
func (in *instance) stamp(evs []saga.Event) {
	for i := range evs {
		if evs[i].ID.IsZero() {
			evs[i].ID = in.w.newID()
		}
		if evs[i].InstanceID == "" {
			evs[i].InstanceID = in.name
		}
	}
}

// submit is Coordinator.Submit of a valid definition as saga id.
func (in *instance) submit(def saga.Definition, id saga.ID, done func(s *saga.Saga, existed bool, err error)) {
	w := in.w
	leased := in.reserve(1) == 1
	sub := engine.NewSubmission(def, id, in.name, leased, in.wall(), w.p.leaseFor)
	fast := sub.LeaseFor > 0
	if leased && !fast {
		in.unreserve(1)
	}
	in.stamp(sub.Events)
	var created *saga.Saga
	var existed bool
	sent := in.local()
	w.db.do(in, op{kind: "create", write: true,
		exec: func() error {
			var err error
			created, existed, err = w.db.mem.CreateSaga(context.Background(), saga.NewSaga{Saga: sub.Saga, Events: sub.Events, LeaseFor: sub.LeaseFor})
			if err == nil && !existed {
				w.db.created(created, sub.Events)
			}
			w.note("create", id, len(sub.Events))
			return err
		},
		answer: func(err error) {
			if err != nil || existed {
				if fast {
					in.unreserve(1)
				}
				done(created, existed, err)
				return
			}
			if fast {
				in.launch(created.ID, sub.Loop(created, in.local), sent, sub.LeaseFor, false)
			} else {
				in.backlog = true
				in.signal()
			}
			done(created, false, nil)
		}})
}

// control is Coordinator.Control.
func (in *instance) control(id saga.ID, a saga.ControlAction, done func(error)) {
	w := in.w
	w.db.do(in, op{kind: "control", write: true,
		exec: func() error {
			_, err := w.db.mem.RequestControl(context.Background(), id, a)
			w.note("control "+string(a), id, 0)
			return err
		},
		answer: func(err error) {
			if err == nil {
				if r := in.runners[id]; r != nil {
					r.pokeNow()
				} else {
					in.signal()
				}
			}
			done(err)
		}})
}
