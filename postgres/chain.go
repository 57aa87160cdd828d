package postgres

import (
	"encoding/hex"
	"sync"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// The audit chain. Every event is hashed in Go, at the store boundary, by
// saga.Chain: over its content, its seq, its time and the hash of the
// event before it. To write a transition in one statement without first
// reading where the saga's chain ends, the store remembers the head of the
// chain of each saga it writes (head), learnt from its own writes and
// claims. Every write that adds events is fenced on the head it chained
// to (event_seq = the head's seq): a head that went stale (an operator
// request written by another instance) makes the write match no row; the
// store then reads the head and writes again. The cache is never trusted
// for correctness, only for saving the read.
//
// The time of an event is part of its hash, so it is chosen in Go too: the
// store's estimate of the database clock (dbClock), and never earlier than
// the saga's previous write. The statement gives the rows it writes the
// same time, so that the trail and the rows agree exactly (saga.Replay).
// Leases, deadlines checks and next-run times stay on the database's now().

// maxHeads bounds the cache of chain heads: past it, the cache is emptied
// (the next write of each saga reads its head again).
const maxHeads = 1 << 16

// head is what the store remembers of a saga's chain.
type head struct {
	seq     int64
	hash    []byte
	at      time.Time // the time of the saga's latest write; no event is later
	pending saga.PendingControl
}

// heads caches chain heads by saga.
type heads struct {
	mu sync.Mutex
	m  map[saga.ID]head
}

func (h *heads) get(id saga.ID) (head, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.m[id]
	return v, ok
}

// put records v unless the cache knows a later head of the saga.
func (h *heads) put(id saga.ID, v head) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= maxHeads {
		h.m = make(map[saga.ID]head)
	}
	if old, ok := h.m[id]; ok && old.seq > v.seq {
		return
	}
	h.m[id] = v
}

// advance records v if the cache holds the saga already (a write of this
// store that the saga's writer here should know of).
func (h *heads) advance(id saga.ID, v head) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old, ok := h.m[id]; ok && old.seq < v.seq {
		h.m[id] = v
	}
}

func (h *heads) drop(id saga.ID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, id)
}

// chainHead returns h as the saga's chain head.
func (h head) chainHead(id saga.ID) saga.ChainHead {
	return saga.ChainHead{SagaID: id, Seq: h.seq, Hash: h.hash}
}

// dbClock estimates the database's clock from the now() its statements
// return, the way NTP does: the offset between it and the local clock at
// the middle of a round trip is off by at most half the round trip, so the
// sample of the shortest round trip is kept (a write that waited for a
// group commit makes a long one), its round trip counted as growing with
// its age so that a fresh sample replaces it in time. The times it gives
// out never go back, so that the sagas one process writes in turn are in
// time order too.
type dbClock struct {
	mu     sync.Mutex
	offset time.Duration // to add to the local clock
	rtt    time.Duration // of the sample kept
	at     time.Time     // local time of the sample kept; zero: none
	last   int64         // the latest time given out, Unix microseconds
}

// clockAging is how much a kept sample's round trip counts as growing per
// second of its age.
const clockAging = 100 * time.Microsecond

// observe records that the database said db during a round trip sent at
// sent and answered at recv (local clock).
func (c *dbClock) observe(db, sent, recv time.Time) {
	if db.IsZero() {
		return
	}
	rtt := recv.Sub(sent)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() {
		aged := c.rtt + time.Duration(recv.Sub(c.at).Seconds()*float64(clockAging))
		if rtt >= aged {
			return
		}
	}
	c.offset = db.Sub(sent.Add(rtt / 2))
	c.rtt, c.at = rtt, recv
}

// now returns the estimated database time, UTC, to the microsecond, never
// earlier than a time it gave out before.
func (c *dbClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := time.Now().Add(c.offset).UnixMicro()
	if t < c.last {
		t = c.last
	}
	c.last = t
	return time.UnixMicro(t).UTC()
}

// writeTime returns the time of a write that follows h: the estimated
// database time, but later than h's.
func (c *dbClock) writeTime(h head) time.Time {
	t := c.now()
	if !h.at.IsZero() && !t.After(h.at) {
		t = h.at.Add(time.Microsecond)
	}
	return t
}

// hashText encodes a hash as PostgreSQL's bytea input reads it from JSON
// text ("\x…"); empty for none.
func hashText(h []byte) string {
	if len(h) == 0 {
		return ""
	}
	return `\x` + hex.EncodeToString(h)
}

// nullBytes maps empty to SQL NULL.
func nullBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
