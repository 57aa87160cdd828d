package failover

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/memory"
)

// Defaults of Config.
const (
	RetryEveryDefault    = 2 * time.Second
	RetryMaxDefault      = 30 * time.Second
	ImportTimeoutDefault = 10 * time.Second
	MoveSliceDefault     = 100 * time.Millisecond
)

// Health.Mode values.
const (
	ModeDurable = "durable"
	ModeMemory  = "memory"
)

// Durable is what failover needs of the database store: a saga.Store that
// can take a whole saga as it is. (*postgres.Store satisfies it.)
type Durable interface {
	saga.Store
	// Import writes the record (saga row with its lease, steps,
	// compensations, events, checkpoints) in one transaction, keeping its
	// ids, sequence numbers and times. It is idempotent by saga id: when the
	// saga is already there nothing is written and existed is true.
	Import(ctx context.Context, r saga.SagaRecord) (existed bool, err error)
	// ImportDeletion writes the tombstone of a saga deleted in memory; a
	// tombstone of the same saga already there is kept.
	ImportDeletion(ctx context.Context, d saga.Deletion) error
}

// Config configures a Store. Zero fields take the defaults; Connect is
// required.
type Config struct {
	// Connect opens the database store and migrates its schema. It is
	// called until it succeeds; its error is shown by Health.
	Connect func(ctx context.Context) (Durable, error)
	// RetryEvery is the wait after the first failed attempt to connect or
	// move; it doubles after each further failure, up to RetryMax.
	RetryEvery time.Duration
	// RetryMax bounds the wait between attempts.
	RetryMax time.Duration
	// ImportTimeout bounds one Import. Calls that use memory wait while an
	// Import runs, so it must not hang on a database that went away.
	ImportTimeout time.Duration
	// MoveSlice is how long the move keeps calls waiting at a time before
	// letting them through and carrying on.
	MoveSlice time.Duration
	// Logger receives the mode changes and failed attempts; default
	// slog.Default().
	Logger *slog.Logger
	// OnModeChange is told the persistence mode: false from New, true once
	// the Store has switched to the database (a metric, say).
	OnModeChange func(durable bool)
	// Chain hashes the audit events of the sagas held in memory; it must
	// be the database store's (default: plain SHA-256).
	Chain *saga.Chain
}

// Store is a saga.Store that serves from memory until the database can be
// reached, then moves what it holds there and serves from the database. It
// is safe for concurrent use. Build one with New.
type Store struct {
	connect       func(ctx context.Context) (Durable, error)
	retryEvery    time.Duration
	retryMax      time.Duration
	importTimeout time.Duration
	sliceLen      time.Duration
	logger        *slog.Logger
	onModeChange  func(durable bool)

	mem   *memory.Store // sagas accepted while the database was away
	aside *memory.Store // sagas whose Import failed: outcome unknown, read-only

	// durable is set once every saga is in the database; from then on db
	// serves every call and mu is no longer needed.
	durable  atomic.Bool
	switched chan struct{} // closed when durable is set

	// mu is held for reading by calls that use mem or aside, or that decide
	// where a saga is, and for writing by the move.
	mu      sync.RWMutex
	db      Durable            // nil until Connect succeeded
	moved   map[saga.ID]bool   // sagas moved to db before the switch
	asideID map[saga.ID]bool   // the sagas aside holds
	keys    map[string]saga.ID // idempotency keys of moved and set-aside sagas
	lastErr atomic.Pointer[string]

	loopMu  sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when the loop has returned
}

var (
	_ saga.Store      = (*Store)(nil)
	_ saga.AuditStore = (*Store)(nil)
)

// New returns a Store in memory mode. It calls cfg.OnModeChange(false). It
// returns an error when cfg.Connect is nil.
func New(cfg Config) (*Store, error) {
	if cfg.Connect == nil {
		return nil, errors.New("failover: Config.Connect is required")
	}
	s := &Store{
		connect:       cfg.Connect,
		retryEvery:    cmp.Or(cfg.RetryEvery, RetryEveryDefault),
		retryMax:      cmp.Or(cfg.RetryMax, RetryMaxDefault),
		importTimeout: cmp.Or(cfg.ImportTimeout, ImportTimeoutDefault),
		sliceLen:      cmp.Or(cfg.MoveSlice, MoveSliceDefault),
		logger:        cfg.Logger,
		onModeChange:  cfg.OnModeChange,
		mem:           memory.New(memory.Config{Chain: cfg.Chain}),
		aside:         memory.New(memory.Config{Chain: cfg.Chain}),
		switched:      make(chan struct{}),
		moved:         make(map[saga.ID]bool),
		asideID:       make(map[saga.ID]bool),
		keys:          make(map[string]saga.ID),
		done:          make(chan struct{}),
	}
	s.retryMax = max(s.retryMax, s.retryEvery)
	if s.logger == nil {
		s.logger = slog.Default()
	}
	s.logger = s.logger.With("component", "failover")
	if s.onModeChange == nil {
		s.onModeChange = func(bool) {}
	}
	s.setErr("")
	s.onModeChange(false)
	return s, nil
}

// Durable reports whether the Store has switched to the database.
func (s *Store) Durable() bool { return s.durable.Load() }

// Switched returns a channel closed once the Store has switched to the
// database.
func (s *Store) Switched() <-chan struct{} { return s.switched }

func (s *Store) setErr(msg string) { s.lastErr.Store(&msg) }

// where a saga's call goes.
type place int

const (
	inMemory   place = iota // mem; the read lock is held
	inDatabase              // db; no lock held
	setAside                // aside, read-only; the read lock is held
)

// locate says where the saga id is. With inMemory and setAside the read
// lock is held and the caller must call s.mu.RUnlock; with inDatabase it is
// not, and db is the store to use (a moved saga never moves back).
func (s *Store) locate(id saga.ID) (place, Durable) {
	if s.durable.Load() {
		return inDatabase, s.db
	}
	s.mu.RLock()
	switch {
	case s.durable.Load() || s.moved[id]:
		db := s.db
		s.mu.RUnlock()
		return inDatabase, db
	case s.asideID[id]:
		return setAside, nil
	}
	return inMemory, nil
}

// readOnly is the error of a write to a saga set aside.
func readOnly(doing string, id saga.ID) error {
	return fmt.Errorf("%s: saga %s is being moved to the database: %w", doing, id, saga.ErrUnavailable)
}

// CreateSaga stores a new saga: in memory until the switch, then in the
// database. An idempotency key is recognised wherever its saga is.
func (s *Store) CreateSaga(ctx context.Context, c saga.NewSaga) (*saga.Saga, bool, error) {
	if s.durable.Load() {
		return s.db.CreateSaga(ctx, c)
	}
	s.mu.RLock()
	if s.durable.Load() {
		s.mu.RUnlock()
		return s.db.CreateSaga(ctx, c)
	}
	if c.Saga != nil && c.Saga.IdempotencyKey != "" {
		if id, ok := s.keys[c.Saga.IdempotencyKey]; ok {
			if s.asideID[id] {
				defer s.mu.RUnlock()
				sg, err := s.aside.GetSaga(ctx, id)
				if err != nil {
					return nil, false, fmt.Errorf("create saga: %w", err)
				}
				return sg, true, nil
			}
			db := s.db
			s.mu.RUnlock()
			sg, err := db.GetSaga(ctx, id)
			if err != nil {
				return nil, false, fmt.Errorf("create saga: find saga of idempotency key: %w", err)
			}
			return sg, true, nil
		}
	}
	defer s.mu.RUnlock()
	return s.mem.CreateSaga(ctx, c)
}

// GetSaga returns the saga wherever it is; see saga.Store.
func (s *Store) GetSaga(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	switch p, db := s.locate(id); p {
	case inDatabase:
		return db.GetSaga(ctx, id)
	case setAside:
		defer s.mu.RUnlock()
		return s.aside.GetSaga(ctx, id)
	}
	defer s.mu.RUnlock()
	return s.mem.GetSaga(ctx, id)
}

// ListEvents returns the saga's events wherever it is; see saga.Store.
func (s *Store) ListEvents(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error) {
	switch p, db := s.locate(id); p {
	case inDatabase:
		return db.ListEvents(ctx, id, afterSeq, limit)
	case setAside:
		defer s.mu.RUnlock()
		return s.aside.ListEvents(ctx, id, afterSeq, limit)
	}
	defer s.mu.RUnlock()
	return s.mem.ListEvents(ctx, id, afterSeq, limit)
}

// LatestCheckpoint returns the saga's newest checkpoint wherever it is; see
// saga.Store.
func (s *Store) LatestCheckpoint(ctx context.Context, id saga.ID) (*saga.Checkpoint, error) {
	switch p, db := s.locate(id); p {
	case inDatabase:
		return db.LatestCheckpoint(ctx, id)
	case setAside:
		defer s.mu.RUnlock()
		return s.aside.LatestCheckpoint(ctx, id)
	}
	defer s.mu.RUnlock()
	return s.mem.LatestCheckpoint(ctx, id)
}

// Apply writes a transition where the saga is; see saga.Store. A saga set
// aside during a failed move refuses it with an error wrapping
// saga.ErrUnavailable.
func (s *Store) Apply(ctx context.Context, t saga.Transition) (saga.Applied, error) {
	switch p, db := s.locate(t.SagaID); p {
	case inDatabase:
		return db.Apply(ctx, t)
	case setAside:
		s.mu.RUnlock()
		return saga.Applied{}, readOnly("apply transition", t.SagaID)
	}
	defer s.mu.RUnlock()
	return s.mem.Apply(ctx, t)
}

// RequestControl records an operator action where the saga is; see
// saga.Store. A saga set aside refuses it with an error wrapping
// saga.ErrUnavailable.
func (s *Store) RequestControl(ctx context.Context, id saga.ID, action saga.ControlAction) (*saga.Saga, error) {
	switch p, db := s.locate(id); p {
	case inDatabase:
		return db.RequestControl(ctx, id, action)
	case setAside:
		s.mu.RUnlock()
		return nil, readOnly("request control", id)
	}
	defer s.mu.RUnlock()
	return s.mem.RequestControl(ctx, id, action)
}

// ClaimSagas claims runnable sagas; see saga.Store. Before the switch only
// the sagas in memory are claimed.
func (s *Store) ClaimSagas(ctx context.Context, owner string, leaseFor time.Duration, limit int) ([]*saga.Saga, error) {
	if s.durable.Load() {
		return s.db.ClaimSagas(ctx, owner, leaseFor, limit)
	}
	s.mu.RLock()
	if s.durable.Load() {
		s.mu.RUnlock()
		return s.db.ClaimSagas(ctx, owner, leaseFor, limit)
	}
	defer s.mu.RUnlock()
	return s.mem.ClaimSagas(ctx, owner, leaseFor, limit)
}

// RenewLeases renews leases wherever their sagas are; see saga.Store. The
// lease of a saga set aside is not renewed.
func (s *Store) RenewLeases(ctx context.Context, owner string, leases map[saga.ID]int64, leaseFor time.Duration) ([]saga.ID, error) {
	if s.durable.Load() {
		return s.db.RenewLeases(ctx, owner, leases, leaseFor)
	}
	s.mu.RLock()
	if s.durable.Load() {
		s.mu.RUnlock()
		return s.db.RenewLeases(ctx, owner, leases, leaseFor)
	}
	inMem := make(map[saga.ID]int64, len(leases))
	inDB := make(map[saga.ID]int64)
	for id, epoch := range leases {
		switch {
		case s.moved[id]:
			inDB[id] = epoch
		case !s.asideID[id]:
			inMem[id] = epoch
		}
	}
	renewed, err := s.mem.RenewLeases(ctx, owner, inMem, leaseFor)
	db := s.db
	s.mu.RUnlock()
	if err != nil || len(inDB) == 0 {
		return renewed, err
	}
	more, err := db.RenewLeases(ctx, owner, inDB, leaseFor)
	if err != nil {
		return renewed, fmt.Errorf("renew leases of sagas moved to the database: %w", err)
	}
	return append(renewed, more...), nil
}

// ListSagas lists sagas; see saga.Store. While sagas are being moved, it
// merges the pages of memory and the database.
func (s *Store) ListSagas(ctx context.Context, f saga.Filter) (saga.Page, error) {
	if s.durable.Load() {
		return s.db.ListSagas(ctx, f)
	}
	s.mu.RLock()
	if s.durable.Load() {
		s.mu.RUnlock()
		return s.db.ListSagas(ctx, f)
	}
	// Memory first, then the database: a saga leaves memory only after it
	// is in the database, so none can be missed (one seen twice is kept once).
	memPage, err := s.mem.ListSagas(ctx, f)
	db, moving := s.db, len(s.moved) > 0
	s.mu.RUnlock()
	if err != nil || !moving {
		return memPage, err
	}
	dbPage, err := db.ListSagas(ctx, f)
	if err != nil {
		return saga.Page{}, fmt.Errorf("list sagas in the database: %w", err)
	}
	return mergePages(f.EffectiveLimit(), dbPage, memPage), nil
}

// mergePages merges pages in (created_at, id) descending order, keeping the
// first copy of a saga seen twice, and cuts the result to limit.
func mergePages(limit int, pages ...saga.Page) saga.Page {
	var all []*saga.Saga
	seen := make(map[saga.ID]bool)
	more := false
	for _, p := range pages {
		more = more || p.Next != nil
		for _, sg := range p.Sagas {
			if !seen[sg.ID] {
				seen[sg.ID] = true
				all = append(all, sg)
			}
		}
	}
	slices.SortFunc(all, func(a, b *saga.Saga) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return bytes.Compare(b.ID[:], a.ID[:])
	})
	if len(all) > limit {
		all, more = all[:limit], true
	}
	out := saga.Page{Sagas: all}
	if more && len(all) > 0 {
		last := all[len(all)-1]
		out.Next = &saga.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return out
}

// Stats counts sagas; see saga.Store. While sagas are being moved, it adds
// the figures of memory and the database (P95Duration is the larger of
// the two).
func (s *Store) Stats(ctx context.Context, window time.Duration) (saga.Stats, error) {
	if s.durable.Load() {
		return s.db.Stats(ctx, window)
	}
	s.mu.RLock()
	if s.durable.Load() {
		s.mu.RUnlock()
		return s.db.Stats(ctx, window)
	}
	memStats, err := s.mem.Stats(ctx, window)
	db, moving := s.db, len(s.moved) > 0
	s.mu.RUnlock()
	if err != nil || !moving {
		return memStats, err
	}
	dbStats, err := db.Stats(ctx, window)
	if err != nil {
		return saga.Stats{}, fmt.Errorf("stats of the database: %w", err)
	}
	return addStats(memStats, dbStats), nil
}

// addStats adds two sets of figures over the same window.
func addStats(a, b saga.Stats) saga.Stats {
	out := saga.Stats{
		ByStatus:      make(map[saga.SagaStatus]int64, len(a.ByStatus)+len(b.ByStatus)),
		Total:         a.Total + b.Total,
		Window:        a.Window,
		Started:       a.Started + b.Started,
		Completed:     a.Completed + b.Completed,
		Failed:        a.Failed + b.Failed,
		EndedInWindow: a.EndedInWindow + b.EndedInWindow,
		P95Duration:   max(a.P95Duration, b.P95Duration),
	}
	for _, m := range []map[saga.SagaStatus]int64{a.ByStatus, b.ByStatus} {
		for st, n := range m {
			out.ByStatus[st] += n
		}
	}
	if out.EndedInWindow > 0 {
		sum := float64(a.MeanDuration)*float64(a.EndedInWindow) + float64(b.MeanDuration)*float64(b.EndedInWindow)
		out.MeanDuration = time.Duration(sum / float64(out.EndedInWindow))
	}
	return out
}

// DeleteFinished deletes old finished sagas; see saga.Store. Before the
// switch only memory is cleaned.
func (s *Store) DeleteFinished(ctx context.Context, age time.Duration, batch int) (int, error) {
	if s.durable.Load() {
		return s.db.DeleteFinished(ctx, age, batch)
	}
	s.mu.RLock()
	if s.durable.Load() {
		s.mu.RUnlock()
		return s.db.DeleteFinished(ctx, age, batch)
	}
	defer s.mu.RUnlock()
	return s.mem.DeleteFinished(ctx, age, batch)
}

// Health reports the database's health once switched. Before, it reports
// Mode "memory", Durable false, and in Error why the database is not in use
// (the last error of Connect or of the move).
func (s *Store) Health(ctx context.Context) saga.Health {
	if s.durable.Load() {
		return s.db.Health(ctx)
	}
	h := s.mem.Health(ctx)
	h.Durable = false
	h.Mode = ModeMemory
	h.Error = *s.lastErr.Load()
	return h
}

// Close stops the reconnect loop, waits for it, and closes the database
// store if one was opened.
func (s *Store) Close() {
	s.Stop()
	s.mu.Lock()
	db := s.db
	s.mu.Unlock()
	if db != nil {
		db.Close()
	}
	s.mem.Close()
	s.aside.Close()
}

// SetLegalHold sets or clears a saga's legal hold where the saga is; see
// saga.Store. A saga set aside refuses it with an error wrapping
// saga.ErrUnavailable.
func (s *Store) SetLegalHold(ctx context.Context, id saga.ID, hold bool) (*saga.Saga, error) {
	switch p, db := s.locate(id); p {
	case inDatabase:
		return db.SetLegalHold(ctx, id, hold)
	case setAside:
		s.mu.RUnlock()
		return nil, readOnly("set legal hold", id)
	}
	defer s.mu.RUnlock()
	return s.mem.SetLegalHold(ctx, id, hold)
}

// auditSource returns the store whose audit trail the audit reads use:
// the database once switched, memory before (the sagas being moved at that
// moment are in neither view).
func (s *Store) auditSource() (saga.AuditStore, error) {
	if !s.durable.Load() {
		return s.mem, nil
	}
	as, ok := s.db.(saga.AuditStore)
	if !ok {
		return nil, fmt.Errorf("read the audit trail: the database store cannot: %w", saga.ErrUnavailable)
	}
	return as, nil
}

// Chains reads audit chains; see saga.AuditStore and auditSource.
func (s *Store) Chains(ctx context.Context, q saga.ChainQuery, head func(saga.ChainHead) error, event func(saga.Event) error) (int, saga.ID, error) {
	as, err := s.auditSource()
	if err != nil {
		return 0, saga.NilID, err
	}
	return as.Chains(ctx, q, head, event)
}

// ExportEvents exports events; see saga.AuditStore and auditSource.
func (s *Store) ExportEvents(ctx context.Context, from, to time.Time, fn func(saga.Event, []byte) error) error {
	as, err := s.auditSource()
	if err != nil {
		return err
	}
	return as.ExportEvents(ctx, from, to, fn)
}

// Deletions lists tombstones; see saga.AuditStore and auditSource. Those
// written in memory move to the database with the sagas.
func (s *Store) Deletions(ctx context.Context, from, to time.Time, fn func(saga.Deletion) error) error {
	as, err := s.auditSource()
	if err != nil {
		return err
	}
	return as.Deletions(ctx, from, to, fn)
}
