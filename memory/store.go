package memory

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// DeleteBatchDefault is the batch size of DeleteFinished when it is given
// none (batch <= 0).
const DeleteBatchDefault = 500

// Config configures a Store. The zero value is ready to use.
type Config struct {
	// Now is the store's clock, standing in for the database's now().
	// Default time.Now.
	Now func() time.Time
	// Chain hashes the audit events (default: plain SHA-256).
	Chain *saga.Chain
}

// Store is a saga.Store in memory. It is safe for concurrent use; the zero
// value is not usable, call New.
type Store struct {
	now   func() time.Time
	chain *saga.Chain

	mu        sync.Mutex
	sagas     map[saga.ID]*entry
	keys      map[string]saga.ID     // idempotency key → saga
	runnable  map[saga.ID]*saga.Saga // sagas whose NextRunAt is set
	deletions []saga.Deletion        // tombstones, oldest first
}

// entry is everything the store holds about one saga.
type entry struct {
	saga        *saga.Saga // with steps
	events      []saga.Event
	checkpoints []saga.Checkpoint
	lastHash    []byte // the hash of the latest event
	ctlSeq      int64  // the OperatorRequested event of saga.Control
	ctlBy       string // and who asked
}

// head returns the end of the saga's audit chain.
func (e *entry) head() saga.ChainHead {
	return saga.ChainHead{SagaID: e.saga.ID, Seq: e.saga.EventSeq, Hash: e.lastHash}
}

// pending returns the saga's pending operator request.
func (e *entry) pending() saga.PendingControl {
	return saga.PendingControl{Action: e.saga.Control, Seq: e.ctlSeq, Actor: e.ctlBy}
}

var _ saga.Store = (*Store)(nil)

// New returns an empty store.
func New(cfg Config) *Store {
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Store{
		now:      now,
		chain:    cfg.Chain,
		sagas:    make(map[saga.ID]*entry),
		keys:     make(map[string]saga.ID),
		runnable: make(map[saga.ID]*saga.Saga),
	}
}

// clock returns the store's now() at the precision PostgreSQL keeps.
func (s *Store) clock() time.Time {
	return precise(s.now())
}

// precise drops the monotonic reading and the location of t and truncates it
// to microseconds, as a timestamptz column would.
func precise(t time.Time) time.Time {
	return t.Round(0).UTC().Truncate(time.Microsecond)
}

// index keeps the runnable index in step with sg.NextRunAt. The caller holds mu.
func (s *Store) index(sg *saga.Saga) {
	if sg.NextRunAt != nil {
		s.runnable[sg.ID] = sg
	} else {
		delete(s.runnable, sg.ID)
	}
}

// remove forgets a saga. The caller holds mu.
func (s *Store) remove(e *entry) {
	delete(s.sagas, e.saga.ID)
	delete(s.runnable, e.saga.ID)
	if k := e.saga.IdempotencyKey; k != "" && s.keys[k] == e.saga.ID {
		delete(s.keys, k)
	}
}

// own returns sealed events (saga.Chain.SealTransition and the like) as
// the store keeps them: sharing no memory with the caller's.
func own(evs []saga.Event, head saga.ChainHead, err error) ([]saga.Event, saga.ChainHead, error) {
	return cloneEvents(evs), head, err
}

// appendEvents stores events sealed by seal and moves the saga's head.
// The caller holds mu.
func (e *entry) appendEvents(evs []saga.Event, head saga.ChainHead) {
	e.events = append(e.events, evs...)
	e.saga.EventSeq, e.lastHash = head.Seq, head.Hash
}

// CreateSaga stores a new saga; see saga.Store. The store assigns an id when
// c.Saga.ID is zero. An error comes back when the steps do not match the
// definition or a saga with the same id exists.
func (s *Store) CreateSaga(ctx context.Context, c saga.NewSaga) (*saga.Saga, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fmt.Errorf("create saga: %w", err)
	}
	if c.Saga == nil {
		return nil, false, errors.New("create saga: no saga given")
	}
	if len(c.Saga.Steps) != len(c.Saga.Definition.Steps) {
		return nil, false, fmt.Errorf("create saga: %d step rows for %d definition steps", len(c.Saga.Steps), len(c.Saga.Definition.Steps))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if k := c.Saga.IdempotencyKey; k != "" {
		if id, ok := s.keys[k]; ok {
			return cloneSaga(s.sagas[id].saga, true), true, nil
		}
	}
	if _, ok := s.sagas[c.Saga.ID]; ok {
		return nil, false, fmt.Errorf("create saga: saga %s already exists", c.Saga.ID)
	}

	now := s.clock()
	sg := cloneSaga(c.Saga, true)
	if sg.ID.IsZero() {
		sg.ID = saga.NewID()
	}
	if sg.Status == "" {
		sg.Status = saga.SagaStatusCreated
	}
	if sg.TotalSteps == 0 {
		sg.TotalSteps = len(sg.Steps)
	}
	if len(sg.Context) == 0 {
		sg.Context = []byte("{}")
	}
	for i := range sg.Steps {
		sg.Steps[i].Index = i
		if sg.Steps[i].Status == "" {
			sg.Steps[i].Status = saga.StepStatusPending
		}
	}
	sg.Control = saga.ControlNone
	sg.CreatedAt, sg.UpdatedAt = now, now
	// Timestamps come from the store clock, as in PostgreSQL: a saga created
	// past Created (or with StartedAt set) has started now, and so has each
	// step created in a started status.
	sg.StartedAt, sg.CompletedAt = nil, nil
	if sg.Status != saga.SagaStatusCreated || c.Saga.StartedAt != nil {
		sg.StartedAt = new(now)
	}
	for i := range sg.Steps {
		st := &sg.Steps[i]
		st.StartedAt, st.CompletedAt = nil, nil
		if c.Saga.Steps[i].StartedAt != nil || stepStarted(st.Status) {
			st.StartedAt = new(now)
		}
	}
	sg.Deadline = nil
	if d := sg.Definition.Timeout(); d > 0 {
		sg.Deadline = new(now.Add(d))
	}
	sg.OwnerID, sg.LeaseExpiresAt, sg.LeaseEpoch = "", nil, 0
	if c.LeaseFor > 0 {
		sg.OwnerID = c.Saga.OwnerID
		sg.LeaseExpiresAt = new(now.Add(c.LeaseFor))
		sg.LeaseEpoch = 1
	}
	sg.NextRunAt = nil
	if !sg.Status.Terminal() {
		sg.NextRunAt = new(now)
	}
	sg.EventSeq = 0

	e := &entry{saga: sg}
	evs, head, err := own(s.chain.SealCreate(ctx, e.head(), sg, c.Events, now))
	if err != nil {
		return nil, false, fmt.Errorf("create saga %s: %w", sg.ID, err)
	}
	e.appendEvents(evs, head)
	s.sagas[sg.ID] = e
	if sg.IdempotencyKey != "" {
		s.keys[sg.IdempotencyKey] = sg.ID
	}
	s.index(sg)
	return cloneSaga(sg, true), false, nil
}

// GetSaga returns a copy of the saga with its steps, or an error wrapping
// saga.ErrNotFound.
func (s *Store) GetSaga(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get saga: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sagas[id]
	if !ok {
		return nil, fmt.Errorf("get saga %s: %w", id, saga.ErrNotFound)
	}
	return cloneSaga(e.saga, true), nil
}

// SagaStatuses returns the status of each of ids the store holds; see
// saga.Store.
func (s *Store) SagaStatuses(ctx context.Context, ids []saga.ID) (map[saga.ID]saga.SagaStatus, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read saga statuses: %w", err)
	}
	out := make(map[saga.ID]saga.SagaStatus, len(ids))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if e, ok := s.sagas[id]; ok {
			out[id] = e.saga.Status
		}
	}
	return out, nil
}

// Inspect calls fn with the saga id as the store holds it (with its
// steps), under the store's lock, and reports whether the store holds it.
// It is for checks that read a saga many times without copying it (the
// simulator's invariants): fn must not change the saga, keep it, or call
// the store.
func (s *Store) Inspect(id saga.ID, fn func(*saga.Saga)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sagas[id]
	if ok {
		fn(e.saga)
	}
	return ok
}

// Holds reports whether the store holds the saga id.
func (s *Store) Holds(id saga.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sagas[id]
	return ok
}

// SagaOfKey returns a copy of the saga holding the idempotency key, with its
// steps, or an error wrapping saga.ErrNotFound when none does.
func (s *Store) SagaOfKey(ctx context.Context, key string) (*saga.Saga, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("find saga of idempotency key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.keys[key]
	if !ok || key == "" {
		return nil, fmt.Errorf("find saga of idempotency key %q: %w", key, saga.ErrNotFound)
	}
	return cloneSaga(s.sagas[id].saga, true), nil
}

// comparePos compares positions (created_at, id) of the newest-first order
// of ListSagas: negative when a comes first (is newer).
func comparePos(aAt time.Time, aID saga.ID, bAt time.Time, bID saga.ID) int {
	if c := bAt.Compare(aAt); c != 0 {
		return c
	}
	return bytes.Compare(bID[:], aID[:])
}

// ListSagas returns sagas matching f, newest first, without steps.
func (s *Store) ListSagas(ctx context.Context, f saga.Filter) (saga.Page, error) {
	if err := ctx.Err(); err != nil {
		return saga.Page{}, fmt.Errorf("list sagas: %w", err)
	}
	limit := f.EffectiveLimit()
	s.mu.Lock()
	var match []*saga.Saga
	for _, e := range s.sagas {
		sg := e.saga
		switch {
		case f.Status != "" && sg.Status != f.Status,
			f.Name != "" && sg.Name != f.Name,
			f.TransactionID != nil && sg.TransactionID != *f.TransactionID,
			f.CreatedAfter != nil && !sg.CreatedAt.After(*f.CreatedAfter),
			f.Cursor != nil && comparePos(sg.CreatedAt, sg.ID, f.Cursor.CreatedAt, f.Cursor.ID) <= 0:
			continue
		}
		match = append(match, sg)
	}
	slices.SortFunc(match, func(a, b *saga.Saga) int {
		return comparePos(a.CreatedAt, a.ID, b.CreatedAt, b.ID)
	})
	var page saga.Page
	if len(match) > limit {
		match = match[:limit]
		last := match[limit-1]
		page.Next = &saga.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	page.Sagas = make([]*saga.Saga, len(match))
	for i, sg := range match {
		page.Sagas[i] = cloneSaga(sg, false)
	}
	s.mu.Unlock()
	return page, nil
}

// ListEvents returns the saga's events with Seq > afterSeq, at most limit
// (0: all), or an error wrapping saga.ErrNotFound.
func (s *Store) ListEvents(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sagas[id]
	if !ok {
		return nil, fmt.Errorf("list events of saga %s: %w", id, saga.ErrNotFound)
	}
	from := sort.Search(len(e.events), func(i int) bool { return e.events[i].Seq > afterSeq })
	evs := e.events[from:]
	if limit > 0 && len(evs) > limit {
		evs = evs[:limit]
	}
	return cloneEvents(evs), nil
}

// LatestCheckpoint returns the saga's newest checkpoint, nil when it has
// none, or an error wrapping saga.ErrNotFound.
func (s *Store) LatestCheckpoint(ctx context.Context, id saga.ID) (*saga.Checkpoint, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("latest checkpoint: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sagas[id]
	if !ok {
		return nil, fmt.Errorf("latest checkpoint of saga %s: %w", id, saga.ErrNotFound)
	}
	if len(e.checkpoints) == 0 {
		return nil, nil
	}
	cp := cloneCheckpoint(e.checkpoints[len(e.checkpoints)-1])
	return &cp, nil
}

// holds reports whether lease is the saga's live lease at now.
func holds(sg *saga.Saga, lease saga.Lease, now time.Time) bool {
	return lease.Owner != "" && sg.OwnerID == lease.Owner && sg.LeaseEpoch == lease.Epoch &&
		sg.LeaseExpiresAt != nil && sg.LeaseExpiresAt.After(now)
}

// Apply writes one transition atomically, fenced on t.Lease; see
// saga.Store. Errors wrap saga.ErrNotFound or saga.ErrLeaseLost; a step or
// compensation index outside the saga's steps is an error too, and nothing
// is written.
func (s *Store) Apply(ctx context.Context, t saga.Transition) (saga.Applied, error) {
	if err := ctx.Err(); err != nil {
		return saga.Applied{}, fmt.Errorf("apply transition: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sagas[t.SagaID]
	if !ok {
		return saga.Applied{}, fmt.Errorf("apply transition to saga %s: %w", t.SagaID, saga.ErrNotFound)
	}
	sg := e.saga
	now := s.clock()
	if seq, ok := e.written(t.Events); ok {
		// A retry of a write whose first attempt was written (its answer
		// lost, as a database's can be): nothing is written again, as in
		// PostgreSQL.
		return e.applied(now, seq+int64(len(t.Events))-1), nil
	}
	if !holds(sg, t.Lease, now) {
		return saga.Applied{}, fmt.Errorf("apply transition to saga %s as %s epoch %d: %w", sg.ID, t.Lease.Owner, t.Lease.Epoch, saga.ErrLeaseLost)
	}
	for _, u := range t.Steps {
		if u.Index < 0 || u.Index >= len(sg.Steps) {
			return saga.Applied{}, fmt.Errorf("apply transition to saga %s: step index %d out of range", sg.ID, u.Index)
		}
	}
	for _, u := range t.Compensations {
		if u.StepIndex < 0 || u.StepIndex >= len(sg.Steps) {
			return saga.Applied{}, fmt.Errorf("apply transition to saga %s: compensation step index %d out of range", sg.ID, u.StepIndex)
		}
	}
	evs, head, err := own(s.chain.SealTransition(e.head(), t, e.pending(), now))
	if err != nil {
		return saga.Applied{}, fmt.Errorf("apply transition to saga %s: %w", sg.ID, err)
	}

	// Nothing below fails: the write is all or nothing.
	if t.Wake.Kind == saga.WakeAt {
		t.Wake.At = precise(t.Wake.At)
	}
	t.Steps = slices.Clone(t.Steps)
	for k := range t.Steps {
		t.Steps[k].Output = cloneRaw(t.Steps[k].Output)
	}
	t.Compensations = slices.Clone(t.Compensations)
	for k := range t.Compensations {
		t.Compensations[k].Output = cloneRaw(t.Compensations[k].Output)
	}
	sg.ApplyTransition(t, now)
	if sg.Control == saga.ControlNone {
		e.ctlSeq, e.ctlBy = 0, ""
	}
	e.appendEvents(evs, head)
	if t.Checkpoint != nil {
		cp := cloneCheckpoint(*t.Checkpoint)
		cp.SagaID, cp.CreatedAt = sg.ID, now
		e.checkpoints = append(e.checkpoints, cp)
	}
	s.index(sg)
	return e.applied(now, sg.EventSeq), nil
}

// written reports whether the saga holds the first of evs already (a
// transition is recognised by the id of its first event, fixed by its
// writer), and its seq. The caller holds mu.
func (e *entry) written(evs []saga.Event) (int64, bool) {
	if len(evs) == 0 || evs[0].ID.IsZero() {
		return 0, false
	}
	// A retry follows its first attempt closely: look from the newest.
	for i := len(e.events) - 1; i >= 0; i-- {
		if e.events[i].ID == evs[0].ID {
			return e.events[i].Seq, true
		}
	}
	return 0, false
}

// applied is the answer to a writer at now, whose last event has seq. The
// caller holds mu.
func (e *entry) applied(now time.Time, seq int64) saga.Applied {
	sg := e.saga
	a := saga.Applied{
		Now:              now,
		Control:          sg.Control,
		DeadlineExceeded: saga.DeadlineReached(sg.Deadline, now),
		EventSeq:         seq,
	}
	if sg.LeaseExpiresAt != nil {
		a.LeaseExpiresAt = *sg.LeaseExpiresAt
	}
	return a
}

// ClaimSagas leases up to limit runnable sagas to owner, those due longest
// first; see saga.Store.
func (s *Store) ClaimSagas(ctx context.Context, owner string, leaseFor time.Duration, limit int) ([]*saga.Saga, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("claim sagas: %w", err)
	}
	if owner == "" {
		return nil, errors.New("claim sagas: empty owner")
	}
	if limit <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	var due []*saga.Saga
	for _, sg := range s.runnable {
		if !sg.NextRunAt.After(now) && (sg.LeaseExpiresAt == nil || !sg.LeaseExpiresAt.After(now)) {
			due = append(due, sg)
		}
	}
	slices.SortFunc(due, func(a, b *saga.Saga) int {
		if c := a.NextRunAt.Compare(*b.NextRunAt); c != 0 {
			return c
		}
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	if len(due) > limit {
		due = due[:limit]
	}
	out := make([]*saga.Saga, len(due))
	for i, sg := range due {
		sg.OwnerID = owner
		sg.LeaseEpoch++
		sg.LeaseExpiresAt = new(now.Add(leaseFor))
		sg.UpdatedAt = now
		out[i] = cloneSaga(sg, true)
	}
	return out, nil
}

// RenewLeases extends the live leases owner holds among leases and returns
// their ids, in id order; see saga.Store.
func (s *Store) RenewLeases(ctx context.Context, owner string, leases map[saga.ID]int64, leaseFor time.Duration) ([]saga.ID, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	var renewed []saga.ID
	for id, epoch := range leases {
		e, ok := s.sagas[id]
		if !ok || !holds(e.saga, saga.Lease{Owner: owner, Epoch: epoch}, now) {
			continue
		}
		e.saga.LeaseExpiresAt = new(now.Add(leaseFor))
		renewed = append(renewed, id)
	}
	slices.SortFunc(renewed, func(a, b saga.ID) int { return bytes.Compare(a[:], b[:]) })
	return renewed, nil
}

// RequestControl records an operator action and makes the saga runnable
// now; see saga.Store. Errors wrap saga.ErrNotFound or
// saga.ErrInvalidTransition.
func (s *Store) RequestControl(ctx context.Context, id saga.ID, action saga.ControlAction) (*saga.Saga, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("request control: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sagas[id]
	if !ok {
		return nil, fmt.Errorf("request %q on saga %s: %w", action, id, saga.ErrNotFound)
	}
	sg := e.saga
	if !action.AllowedIn(sg.Status) {
		return nil, fmt.Errorf("request %q on saga %s in status %s: %w", action, id, sg.Status, saga.ErrInvalidTransition)
	}
	now := s.clock()
	evs, head, err := own(s.chain.SealControl(ctx, e.head(), action, e.pending(), now))
	if err != nil {
		return nil, fmt.Errorf("request %q on saga %s: %w", action, id, err)
	}
	e.appendEvents(evs, head)
	last := evs[len(evs)-1]
	sg.Control, e.ctlSeq, e.ctlBy = action, last.Seq, last.Actor
	sg.NextRunAt = new(now)
	sg.UpdatedAt = now
	s.index(sg)
	return cloneSaga(sg, false), nil
}

// Stats counts sagas by status and summarises those that ended within
// window before now. Durations run from a saga's creation to its end.
func (s *Store) Stats(ctx context.Context, window time.Duration) (saga.Stats, error) {
	if err := ctx.Err(); err != nil {
		return saga.Stats{}, fmt.Errorf("stats: %w", err)
	}
	st := saga.Stats{ByStatus: make(map[saga.SagaStatus]int64, len(saga.SagaStatuses)), Window: window}
	for _, status := range saga.SagaStatuses {
		st.ByStatus[status] = 0
	}
	var durations []time.Duration
	s.mu.Lock()
	now := s.clock()
	since := now.Add(-window)
	for _, e := range s.sagas {
		sg := e.saga
		st.ByStatus[sg.Status]++
		st.Total++
		if sg.CreatedAt.After(since) {
			st.Started++
		}
		if !sg.Status.Terminal() || sg.CompletedAt == nil || !sg.CompletedAt.After(since) {
			continue
		}
		if sg.Status == saga.SagaStatusCompleted {
			st.Completed++
		} else {
			st.Failed++
		}
		durations = append(durations, max(sg.CompletedAt.Sub(sg.CreatedAt), 0))
	}
	s.mu.Unlock()

	st.EndedInWindow = int64(len(durations))
	if len(durations) > 0 {
		slices.Sort(durations)
		var sum time.Duration
		for _, d := range durations {
			sum += d
		}
		st.MeanDuration = sum / time.Duration(len(durations))
		// Nearest rank.
		rank := int(math.Ceil(0.95*float64(len(durations)))) - 1
		st.P95Duration = durations[max(rank, 0)]
	}
	return st, nil
}

// finished reports whether DeleteFinished may delete a saga in status st.
func finished(st saga.SagaStatus) bool {
	switch st {
	case saga.SagaStatusCompleted, saga.SagaStatusCompensated, saga.SagaStatusCancelled, saga.SagaStatusTimedOut:
		return true
	}
	return false
}

// DeleteFinished deletes sagas in an end state other than Failed that ended
// more than age ago, batch at a time (DeleteBatchDefault when batch <= 0),
// and returns how many it deleted.
func (s *Store) DeleteFinished(ctx context.Context, age time.Duration, batch int) (int, error) {
	if age < 0 {
		return 0, fmt.Errorf("delete finished sagas: age %v is negative", age)
	}
	return s.DeleteExpired(ctx, saga.UniformRetention(age), batch)
}

// DeleteExpired deletes the sagas whose end status's retention has passed
// (none under legal hold), batch at a time; see saga.Store.
func (s *Store) DeleteExpired(ctx context.Context, r saga.Retention, batch int) (int, error) {
	for _, st := range saga.RetainedStatuses {
		if age, _ := r.For(st); age < 0 {
			return 0, fmt.Errorf("delete finished sagas: retention %v of %s is negative", age, st)
		}
	}
	if batch <= 0 {
		batch = DeleteBatchDefault
	}
	deleted := 0
	for {
		if err := ctx.Err(); err != nil {
			return deleted, fmt.Errorf("delete finished sagas: %w", err)
		}
		n := s.deleteBatch(ctx, r, batch)
		deleted += n
		if n < batch {
			return deleted, nil
		}
	}
}

// deleteBatch deletes up to batch sagas whose retention has passed,
// leaving a tombstone of each.
func (s *Store) deleteBatch(ctx context.Context, r saga.Retention, batch int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock()
	n := 0
	for _, e := range s.sagas {
		if n == batch {
			break
		}
		sg := e.saga
		age, ok := r.For(sg.Status)
		if ok && !sg.LegalHold && sg.CompletedAt != nil && sg.CompletedAt.Before(now.Add(-age)) {
			s.deletions = append(s.deletions, saga.NewDeletion(ctx, sg, e.lastHash, age, now))
			s.remove(e)
			n++
		}
	}
	return n
}

// Backend is the Health.Backend of the store.
const Backend = "memory"

// Health reports the memory mode: never durable, always healthy.
func (s *Store) Health(context.Context) saga.Health {
	return saga.Health{Durable: false, Mode: "memory", Backend: Backend}
}

// Close does nothing: the store holds no outside resources. The store stays
// usable.
func (s *Store) Close() {}

// Export returns every saga the store holds as records (with steps, events
// and checkpoints), oldest first, for writing to PostgreSQL after an outage.
func (s *Store) Export(ctx context.Context) ([]saga.SagaRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("export sagas: %w", err)
	}
	s.mu.Lock()
	out := make([]saga.SagaRecord, 0, len(s.sagas))
	for _, e := range s.sagas {
		out = append(out, saga.SagaRecord{
			Saga:        cloneSaga(e.saga, true),
			Events:      cloneEvents(e.events),
			Checkpoints: cloneCheckpoints(e.checkpoints),
			Pending:     e.pending(),
		})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b saga.SagaRecord) int {
		if c := a.Saga.CreatedAt.Compare(b.Saga.CreatedAt); c != 0 {
			return c
		}
		return bytes.Compare(a.Saga.ID[:], b.Saga.ID[:])
	})
	return out, nil
}

// Delete removes one saga with its events and checkpoints (after it was
// moved to the database). It returns an error wrapping saga.ErrNotFound when
// the store does not hold the saga.
func (s *Store) Delete(ctx context.Context, id saga.ID) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete saga: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sagas[id]
	if !ok {
		return fmt.Errorf("delete saga %s: %w", id, saga.ErrNotFound)
	}
	s.remove(e)
	return nil
}

// Import adds a record as it is: its saga row (lease, epoch, times and
// all), steps, events and checkpoints. When the store already holds a saga
// with the record's id, nothing is written and existed is true. A record
// whose idempotency key belongs to another saga is refused with an error.
func (s *Store) Import(ctx context.Context, r saga.SagaRecord) (existed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("import saga: %w", err)
	}
	if r.Saga == nil {
		return false, errors.New("import saga: record without saga")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.Saga.ID
	if _, ok := s.sagas[id]; ok {
		return true, nil
	}
	if k := r.Saga.IdempotencyKey; k != "" {
		if other, ok := s.keys[k]; ok {
			return false, fmt.Errorf("import saga %s: idempotency key %q belongs to saga %s", id, k, other)
		}
	}
	e := &entry{
		saga:        cloneSaga(r.Saga, true),
		events:      cloneEvents(r.Events),
		checkpoints: cloneCheckpoints(r.Checkpoints),
		ctlSeq:      r.Pending.Seq,
		ctlBy:       r.Pending.Actor,
	}
	slices.SortStableFunc(e.events, func(a, b saga.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	if n := len(e.events); n > 0 {
		last := e.events[n-1]
		if last.Seq >= e.saga.EventSeq {
			e.saga.EventSeq, e.lastHash = last.Seq, bytes.Clone(last.Hash)
		}
	}
	s.sagas[id] = e
	if k := e.saga.IdempotencyKey; k != "" {
		s.keys[k] = id
	}
	s.index(e.saga)
	return false, nil
}

// stepStarted reports whether a step created in status has started.
func stepStarted(status saga.StepStatus) bool {
	switch status {
	case saga.StepStatusExecuting, saga.StepStatusRetrying, saga.StepStatusCompleted, saga.StepStatusFailed:
		return true
	}
	return false
}

var _ saga.AuditStore = (*Store)(nil)

// Chains reads the chains of up to q.EffectiveLimit() sagas matching q, in
// ascending id order; see saga.AuditStore. Each saga is copied under the
// lock and passed to the callbacks outside it.
func (s *Store) Chains(ctx context.Context, q saga.ChainQuery, head func(saga.ChainHead) error, event func(saga.Event) error) (int, saga.ID, error) {
	if err := ctx.Err(); err != nil {
		return 0, saga.NilID, fmt.Errorf("read chains: %w", err)
	}
	var only map[saga.ID]bool
	if q.IDs != nil {
		only = make(map[saga.ID]bool, len(q.IDs))
		for _, id := range q.IDs {
			only[id] = true
		}
	}
	type chain struct {
		head   saga.ChainHead
		events []saga.Event
	}
	s.mu.Lock()
	var ids []saga.ID
	for id, e := range s.sagas {
		switch {
		case bytes.Compare(id[:], q.After[:]) <= 0,
			only != nil && !only[id],
			!q.Since.IsZero() && e.saga.UpdatedAt.Before(q.Since):
			continue
		}
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b saga.ID) int { return bytes.Compare(a[:], b[:]) })
	if limit := q.EffectiveLimit(); len(ids) > limit {
		ids = ids[:limit]
	}
	chains := make([]chain, len(ids))
	for i, id := range ids {
		e := s.sagas[id]
		h := e.head()
		h.Hash = bytes.Clone(h.Hash)
		chains[i] = chain{head: h, events: cloneEvents(e.events)}
	}
	s.mu.Unlock()
	for _, c := range chains {
		if err := head(c.head); err != nil {
			return 0, saga.NilID, err
		}
		for _, ev := range c.events {
			if err := event(ev); err != nil {
				return 0, saga.NilID, err
			}
		}
	}
	if len(ids) == 0 {
		return 0, saga.NilID, nil
	}
	return len(ids), ids[len(ids)-1], nil
}

// ExportEvents calls fn with every event created in [from, to), by saga id
// then seq, with the hash of the event before it; see saga.AuditStore.
func (s *Store) ExportEvents(ctx context.Context, from, to time.Time, fn func(saga.Event, []byte) error) error {
	s.mu.Lock()
	ids := make([]saga.ID, 0, len(s.sagas))
	for id := range s.sagas {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	slices.SortFunc(ids, func(a, b saga.ID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("export events: %w", err)
		}
		s.mu.Lock()
		var evs []saga.Event
		if e, ok := s.sagas[id]; ok {
			evs = cloneEvents(e.events)
		}
		s.mu.Unlock()
		var prev []byte
		for _, ev := range evs {
			if !ev.CreatedAt.Before(from) && ev.CreatedAt.Before(to) {
				if err := fn(ev, prev); err != nil {
					return err
				}
			}
			prev = ev.Hash
		}
	}
	return nil
}

// Deletions calls fn with the tombstones of sagas deleted in [from, to),
// oldest first; see saga.AuditStore.
func (s *Store) Deletions(ctx context.Context, from, to time.Time, fn func(saga.Deletion) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("read deletions: %w", err)
	}
	s.mu.Lock()
	var out []saga.Deletion
	for _, d := range s.deletions {
		if !d.DeletedAt.Before(from) && d.DeletedAt.Before(to) {
			out = append(out, d.Clone())
		}
	}
	s.mu.Unlock()
	for _, d := range out {
		if err := fn(d); err != nil {
			return err
		}
	}
	return nil
}

// SetLegalHold sets or clears the legal hold of a saga, with its
// LegalHoldChanged event; see saga.Store. Cleanup never deletes a saga
// under hold. An error wraps saga.ErrNotFound for an unknown saga.
func (s *Store) SetLegalHold(ctx context.Context, id saga.ID, hold bool) (*saga.Saga, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("set legal hold: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.sagas[id]
	if !ok {
		return nil, fmt.Errorf("set legal hold of saga %s: %w", id, saga.ErrNotFound)
	}
	now := s.clock()
	evs, head, err := own(s.chain.SealLegalHold(ctx, e.head(), hold, now))
	if err != nil {
		return nil, fmt.Errorf("set legal hold of saga %s: %w", id, err)
	}
	e.appendEvents(evs, head)
	e.saga.LegalHold = hold
	e.saga.UpdatedAt = now
	return cloneSaga(e.saga, false), nil
}

// ForgetDeletions drops every tombstone (after they were moved to the
// database).
func (s *Store) ForgetDeletions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletions = nil
}
