package sim

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/memory"
)

// The errors the simulated network between instances and the store
// answers with. None is a lost lease, a missing saga or an invalid
// transition, so the runner retries them all while its lease lasts.
var (
	errUnreachable = errors.New("sim: store unreachable: connection refused")
	errTransient   = errors.New("sim: store: serialization failure, not committed")
	errPermanent   = errors.New("sim: store: the write fails every time")
	errAmbiguous   = errors.New("sim: store: connection lost after the commit")
	errCancelled   = errors.New("sim: store: operation cancelled by the caller")
	errRefused     = fmt.Errorf("sim: store: a data exception, every time: %w", saga.ErrRefused)
)

// store is the one store of a run: the real memory store on the virtual
// clock, reached over a simulated network. An operation is sent, carried
// out after a latency (the instant its transaction commits, by the
// store's clock) and answered after another; faults are drawn when it is
// sent. It also watches every write for the invariants that concern the
// store, and keeps what was committed for the checks at the end.
type store struct {
	w     *world
	mem   *memory.Store
	chain *saga.Chain // hashes the trails

	// By saga, from the writes committed: the ids of the events written,
	// in order, and the status.
	trail  map[saga.ID][]saga.ID
	status map[saga.ID]saga.SagaStatus
	orders map[saga.ID]*order
	order  []saga.ID // the sagas in the order they were created
	// running counts the sagas not in an end state; failed, those Failed.
	running int
	failed  map[saga.ID]bool
	// poisoned holds the write series (a write and its retries) that fail
	// for good, refused those whose data the store refuses for good.
	poisoned map[uint64]bool
	refused  map[uint64]bool
	seen     map[uint64]bool // the series sent at least once
}

func newStore(w *world) *store {
	chain := saga.NewChain(nil)
	return &store{
		w:        w,
		chain:    chain,
		mem:      memory.New(memory.Config{Now: w.storeNow, Chain: chain}),
		trail:    map[saga.ID][]saga.ID{},
		status:   map[saga.ID]saga.SagaStatus{},
		orders:   map[saga.ID]*order{},
		failed:   map[saga.ID]bool{},
		poisoned: map[uint64]bool{},
		refused:  map[uint64]bool{},
		seen:     map[uint64]bool{},
	}
}

// op is one operation of an instance on the store.
type op struct {
	kind string
	// series names a write and its retries (0: none): a write that fails
	// for good fails at every retry.
	series uint64
	write  bool // a failed answer may hide a commit
	// cancelled reports, when the store carries the operation out, that
	// the caller gave up on it: it commits or not, at random.
	cancelled func() bool
	// exec carries the operation out at the store.
	exec func() error
	// answer receives the outcome on the instance (not called when the
	// instance crashed meanwhile).
	answer func(error)
}

// latency is one way of a round trip to the store.
func (s *store) latency() time.Duration {
	w := s.w
	if w.chance(0.02) {
		return w.between(5*time.Millisecond, 200*time.Millisecond)
	}
	return w.between(100*time.Microsecond, 2*time.Millisecond)
}

// do sends o from instance in.
func (s *store) do(in *instance, o op) {
	w := s.w
	if in.crashPoint("before " + o.kind) {
		return
	}
	fault := ""
	switch {
	case o.series != 0 && s.poisoned[o.series]:
		fault = "permanent"
	case o.series != 0 && s.refused[o.series]:
		fault = "refused"
	case !w.faulty:
	case in.storeDownUntil > w.now:
		fault = "unreachable"
	case w.chance(0.004 * w.p.intensity):
		fault = "transient"
	case o.write && w.chance(0.003*w.p.intensity):
		fault = "ambiguous"
	case o.series != 0 && !s.seen[o.series] && w.chance(0.0005*w.p.intensity):
		// A write that fails for good fails from its first attempt: a
		// retry of one that committed is recognised, never refused.
		fault = "permanent"
		s.poisoned[o.series] = true
	case o.series != 0 && !s.seen[o.series] && w.chance(0.0003*w.p.intensity):
		// A data exception: refused for good (saga.ErrRefused).
		fault = "refused"
		s.refused[o.series] = true
	case w.chance(0.0002 * w.p.intensity):
		// The instance loses the store for a while.
		fault = "unreachable"
		in.storeDownUntil = w.now + w.between(100*time.Millisecond, 3*w.p.leaseFor)
		w.fault("store outage")
	}
	if o.series != 0 {
		s.seen[o.series] = true
	}
	if fault != "" {
		w.fault("store " + fault)
	}
	gen := in.gen
	w.after(s.latency(), func() {
		var err error
		switch fault {
		case "unreachable":
			err = errUnreachable
		case "transient":
			err = errTransient
		case "permanent":
			err = errPermanent
		case "refused":
			err = errRefused
		default:
			if o.cancelled != nil && o.cancelled() && w.chance(0.5) {
				err = errCancelled
				break
			}
			err = o.exec()
			if err == nil && fault == "ambiguous" {
				err = errAmbiguous
			}
		}
		if in.gen != gen || in.crashPoint("after "+o.kind) {
			return
		}
		in.afterIn(gen, s.latency(), func() { o.answer(err) })
	})
}

// maxEvents is more events than a saga of the simulation writes unless
// something loops.
const maxEvents = 3000

func eventTypes(evs []saga.Event) []string {
	types := make([]string, len(evs))
	for i, e := range evs {
		types[i] = string(e.Type)
		if e.StepIndex != nil {
			types[i] += "@" + strconv.Itoa(*e.StepIndex)
		}
	}
	return types
}

// precise is the store's clock at the precision it keeps.
func (s *store) precise() time.Time { return s.w.storeNow().Truncate(time.Microsecond) }

// created records a saga the store created with its events.
func (s *store) created(sg *saga.Saga, events []saga.Event) {
	ids := make([]saga.ID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	s.trail[sg.ID] = ids
	s.orders[sg.ID] = newOrder(&sg.Definition)
	s.order = append(s.order, sg.ID)
	s.setStatus(sg.ID, sg.Status)
	s.w.stats.Writes++
}

// setStatus tracks the status of a saga from the writes.
func (s *store) setStatus(id saga.ID, st saga.SagaStatus) {
	old, known := s.status[id]
	was, is := known && !old.Terminal(), !st.Terminal()
	switch {
	case is && !was:
		s.running++
	case was && !is:
		s.running--
	}
	s.status[id] = st
	if st == saga.SagaStatusFailed {
		s.failed[id] = true
	} else {
		delete(s.failed, id)
	}
}

// apply writes t for runner r, checking that only a live lease writes.
func (s *store) apply(r *runner, t saga.Transition) (saga.Applied, error) {
	w := s.w
	now := s.precise()
	var live bool
	var seq int64
	var held string
	s.mem.Inspect(t.SagaID, func(sg *saga.Saga) {
		live = sg.OwnerID == t.Lease.Owner && sg.LeaseEpoch == t.Lease.Epoch &&
			sg.LeaseExpiresAt != nil && sg.LeaseExpiresAt.After(now)
		seq = sg.EventSeq
		if !live {
			held = fmt.Sprintf("%s/%d until %v", sg.OwnerID, sg.LeaseEpoch, sg.LeaseExpiresAt)
		}
	})
	a, err := s.mem.Apply(context.Background(), t)
	w.note("apply", t.SagaID, len(t.Events))
	if err != nil {
		if w.tracef != nil {
			w.logf(t.SagaID, "write by %s/%d refused: %v", t.Lease.Owner, t.Lease.Epoch, err)
		}
		return a, err
	}
	if w.tracef != nil {
		w.logf(t.SagaID, "write by %s/%d committed (live lease %v): status %q release %v events %v", t.Lease.Owner, t.Lease.Epoch, live, t.Status, t.Release, eventTypes(t.Events))
	}
	wrote := len(t.Events) == 0 || a.EventSeq > seq
	if !wrote {
		w.stats.Faults["store recognised a retried write"]++
		return a, nil
	}
	if !live {
		w.violate(t.SagaID, "a write under lease %s/%d was accepted, but the lease held is %s (store now %v)",
			t.Lease.Owner, t.Lease.Epoch, held, now)
	}
	trail := s.trail[t.SagaID]
	for _, e := range t.Events {
		trail = append(trail, e.ID)
	}
	s.trail[t.SagaID] = trail
	if len(trail) > maxEvents && len(trail)-len(t.Events) <= maxEvents {
		w.violate(t.SagaID, "runs away: more than %d events (the last write: %v)", maxEvents, eventTypes(t.Events))
		w.aborted = true
	}
	if t.Status != "" {
		s.setStatus(t.SagaID, t.Status)
	}
	w.stats.Writes++
	return a, nil
}
