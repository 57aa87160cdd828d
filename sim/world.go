package sim

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/fnv"
	"math/rand/v2"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// epoch is the store's clock when a run begins: virtual time 0.
var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// event is one thing that happens at a virtual instant. An event of an
// instance (inst set) happens only in the incarnation it was scheduled
// in (gen), and waits while its instance is stalled.
type event struct {
	at   time.Duration
	seq  uint64
	inst *instance
	gen  uint64
	fn   func()
	dead bool // a timer stopped before it fired
}

// world is one run: the virtual clock, the event queue, the random
// source, and everything simulated.
type world struct {
	seed  uint64
	p     params
	rng   *rand.Rand
	now   time.Duration // since epoch
	seq   uint64
	queue []*event // a binary heap by (at, seq)

	db        *store
	parts     *participants
	instances []*instance
	client    *client
	ops       *operator

	ids    uint64 // the last id handed out
	series uint64 // the last write series
	stats  *Stats
	trace  hash.Hash64
	// faulty is false once the storm is over: no faults, healthy
	// participants, every instance up.
	faulty      bool
	tracef      func(string)
	traceSaga   saga.ID
	replayEvery int
	// aborted stops the run at once: it found something that would not
	// end.
	aborted bool
	// limit is when the run gives up waiting for its sagas to end.
	limit time.Duration
}

// push queues e.
func (w *world) push(e *event) {
	w.seq++
	e.seq = w.seq
	w.queue = append(w.queue, e)
	for i := len(w.queue) - 1; i > 0; {
		parent := (i - 1) / 2
		if !w.queue[i].before(w.queue[parent]) {
			break
		}
		w.queue[i], w.queue[parent] = w.queue[parent], w.queue[i]
		i = parent
	}
}

func (e *event) before(o *event) bool {
	if e.at != o.at {
		return e.at < o.at
	}
	return e.seq < o.seq
}

// pop removes and returns the earliest event.
func (w *world) pop() *event {
	q := w.queue
	top := q[0]
	last := len(q) - 1
	q[0] = q[last]
	q[last] = nil
	q = q[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(q) && q[l].before(q[m]) {
			m = l
		}
		if r < len(q) && q[r].before(q[m]) {
			m = r
		}
		if m == i {
			break
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
	w.queue = q
	return top
}

// after schedules fn d from now, whatever happens to the instances (the
// store, participants, the network, operators).
func (w *world) after(d time.Duration, fn func()) *event {
	e := &event{at: w.now + max(d, 0), fn: fn}
	w.push(e)
	return e
}

// step runs the next event; false when none is left.
func (w *world) step() bool {
	for len(w.queue) > 0 {
		e := w.pop()
		if e.dead {
			continue
		}
		if in := e.inst; in != nil {
			if e.gen != in.gen || !in.up {
				continue // its incarnation crashed
			}
			if in.stalledUntil <= e.at && w.faulty && in.up && w.chance(stallChance*w.p.intensity) {
				in.stall()
			}
			if in.stalledUntil > e.at {
				// The process stands still: everything it was to do
				// happens once it moves again, in the same order.
				e.at = in.stalledUntil
				w.push(e)
				continue
			}
		}
		w.now = e.at
		e.fn()
		return true
	}
	return false
}

// storeNow is the store's clock: the truth.
func (w *world) storeNow() time.Time { return epoch.Add(w.now) }

// newID returns the next id of the run: deterministic, unique, in order.
func (w *world) newID() saga.ID {
	w.ids++
	var id saga.ID
	binary.BigEndian.PutUint64(id[0:8], w.seed)
	binary.BigEndian.PutUint64(id[8:16], w.ids)
	id[6] = 0x70 | id[6]&0x0f
	id[8] = 0x80 | id[8]&0x3f
	return id
}

// newSeries names a new write and its retries.
func (w *world) newSeries() uint64 {
	w.series++
	return w.series
}

// chance reports true with probability p.
func (w *world) chance(p float64) bool { return p > 0 && w.rng.Float64() < p }

// between returns a duration uniformly drawn in [lo, hi].
func (w *world) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(w.rng.Int64N(int64(hi-lo)+1))
}

// note folds a happening into the run's trace, which two runs of one seed
// must agree on.
func (w *world) note(kind string, id saga.ID, n int) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(w.now))
	w.trace.Write(b[:])
	w.trace.Write([]byte(kind))
	w.trace.Write(id[:])
	binary.BigEndian.PutUint64(b[:], uint64(n))
	w.trace.Write(b[:])
}

// logf traces a happening to saga id, when tracing.
func (w *world) logf(id saga.ID, format string, args ...any) {
	if w.tracef == nil || !w.traceSaga.IsZero() && !id.IsZero() && id != w.traceSaga {
		return
	}
	w.tracef(fmt.Sprintf("%12v %s ", w.now, id) + fmt.Sprintf(format, args...))
}

// fault counts an injected fault of kind.
func (w *world) fault(kind string) {
	w.stats.Faults[kind]++
}

// violate records a broken invariant.
func (w *world) violate(id saga.ID, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !id.IsZero() {
		msg = "saga " + id.String() + ": " + msg
	}
	msg = fmt.Sprintf("at %v: %s", w.now, msg)
	w.stats.Violations++
	if len(w.stats.Messages) < maxMessages {
		w.stats.Messages = append(w.stats.Messages, msg)
	}
}

// stallChance is the chance that an instance stalls before any one of
// its steps.
const stallChance = 0.0002

// maxMessages bounds the violations a run describes.
const maxMessages = 20

func newTrace() hash.Hash64 { return fnv.New64a() }
