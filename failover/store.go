package failover

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
	ProbeEveryDefault    = 500 * time.Millisecond
	ImportTimeoutDefault = 10 * time.Second
	MoveSliceDefault     = 100 * time.Millisecond
	// RecentKeysDefault is how many idempotency keys of sagas written to the
	// database the Store remembers, to refuse a repeated submit of one of
	// them while the database is away (see Store).
	RecentKeysDefault = 1 << 15
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
// required unless Database is given.
type Config struct {
	// Connect opens the database store and migrates its schema. It is
	// called until it succeeds; its error is shown by Health.
	Connect func(ctx context.Context) (Durable, error)
	// Database, when set, is the database store, open and migrated: the
	// Store starts durable on it instead of in memory mode.
	Database Durable
	// Fallback makes the Store go back to memory mode whenever the database
	// stops answering, not only before it was first reached: new sagas are
	// then accepted in memory and moved to the database when it answers
	// again. Without it, once durable the Store stays durable and passes the
	// database's errors on.
	Fallback bool
	// RetryEvery is the wait after the first failed attempt to connect or
	// move; it doubles after each further failure, up to RetryMax.
	RetryEvery time.Duration
	// RetryMax bounds the wait between attempts.
	RetryMax time.Duration
	// ProbeEvery is the wait between two checks of a database that stopped
	// answering after it had been in use (Fallback).
	ProbeEvery time.Duration
	// ImportTimeout bounds one Import, and one check of the database. Calls
	// that use memory wait while an Import runs, so it must not hang on a
	// database that went away.
	ImportTimeout time.Duration
	// MoveSlice is how long the move keeps calls waiting at a time before
	// letting them through and carrying on.
	MoveSlice time.Duration
	// RecentKeys is how many idempotency keys of sagas written to the
	// database are remembered (RecentKeysDefault).
	RecentKeys int
	// Logger receives the mode changes and failed attempts; default
	// slog.Default().
	Logger *slog.Logger
	// OnModeChange is told the persistence mode: from New (false, or true
	// with Database), then at every change, in order.
	OnModeChange func(durable bool)
	// Chain hashes the audit events of the sagas held in memory; it must
	// be the database store's (default: plain SHA-256).
	Chain *saga.Chain
}

// Store is a saga.Store that serves from memory while the database cannot
// be reached, then moves what it holds there and serves from the database.
// It is safe for concurrent use. Build one with New.
type Store struct {
	connect       func(ctx context.Context) (Durable, error)
	fallback      bool
	retryEvery    time.Duration
	retryMax      time.Duration
	probeEvery    time.Duration
	importTimeout time.Duration
	sliceLen      time.Duration
	logger        *slog.Logger

	mem   *memory.Store // sagas accepted while the database was away
	aside *memory.Store // sagas whose Import failed: outcome unknown, read-only

	// durable is set while memory and aside are empty and the database
	// serves every call; then mu is not needed. It is set only under the
	// write lock of mu with memory empty, and cleared before memory takes a
	// saga (markDown, or under the read lock).
	durable atomic.Bool
	// dbDown is set when a call to the database found it unreachable: new
	// sagas go to memory, and the loop checks the database before moving.
	dbDown   atomic.Bool
	switched chan struct{} // closed when durable is first set
	once     sync.Once
	wake     chan struct{} // tells the loop that the database went away

	// mu is held for reading by calls that use mem or aside, or that decide
	// where a saga is, and for writing by the move.
	mu      sync.RWMutex
	db      Durable            // nil until Connect succeeded; never changes after
	asideID map[saga.ID]bool   // the sagas aside holds
	keys    map[string]saga.ID // idempotency keys of sagas moved (or set aside) since the last switch
	lastErr atomic.Pointer[string]

	// recent holds the idempotency keys of sagas written to the database, or
	// that may have been (a create whose answer was lost).
	recent *keySet

	modeMu       sync.Mutex
	onModeChange func(durable bool)
	reported     bool // the mode last told to onModeChange

	loopMu  sync.Mutex
	started bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when the loop has returned
}

var (
	_ saga.Store      = (*Store)(nil)
	_ saga.AuditStore = (*Store)(nil)
)

// New returns a Store in memory mode, or in durable mode on cfg.Database.
// It tells cfg.OnModeChange the mode. It returns an error when neither
// cfg.Connect nor cfg.Database is set.
func New(cfg Config) (*Store, error) {
	if cfg.Connect == nil && cfg.Database == nil {
		return nil, errors.New("failover: Config.Connect is required (or Config.Database)")
	}
	s := &Store{
		connect:       cfg.Connect,
		fallback:      cfg.Fallback,
		retryEvery:    cmp.Or(cfg.RetryEvery, RetryEveryDefault),
		retryMax:      cmp.Or(cfg.RetryMax, RetryMaxDefault),
		probeEvery:    cmp.Or(cfg.ProbeEvery, ProbeEveryDefault),
		importTimeout: cmp.Or(cfg.ImportTimeout, ImportTimeoutDefault),
		sliceLen:      cmp.Or(cfg.MoveSlice, MoveSliceDefault),
		logger:        cfg.Logger,
		onModeChange:  cfg.OnModeChange,
		mem:           memory.New(memory.Config{Chain: cfg.Chain}),
		aside:         memory.New(memory.Config{Chain: cfg.Chain}),
		switched:      make(chan struct{}),
		wake:          make(chan struct{}, 1),
		asideID:       make(map[saga.ID]bool),
		keys:          make(map[string]saga.ID),
		recent:        newKeySet(cmp.Or(cfg.RecentKeys, RecentKeysDefault)),
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
	if cfg.Database != nil {
		s.db = cfg.Database
		s.durable.Store(true)
		s.once.Do(func() { close(s.switched) })
	}
	s.reported = s.durable.Load()
	s.onModeChange(s.reported)
	return s, nil
}

// Durable reports whether the Store serves every call from the database.
func (s *Store) Durable() bool { return s.durable.Load() }

// Switched returns a channel closed once the Store has first switched to
// the database (at once with Config.Database).
func (s *Store) Switched() <-chan struct{} { return s.switched }

func (s *Store) setErr(msg string) { s.lastErr.Store(&msg) }

// notifyMode tells onModeChange the mode now, if it is not the one last
// told. Reading the mode under modeMu keeps the reports in order.
func (s *Store) notifyMode() {
	s.modeMu.Lock()
	defer s.modeMu.Unlock()
	if d := s.durable.Load(); d != s.reported {
		s.reported = d
		s.onModeChange(d)
	}
}

// check notes an error of the database: when it says the database cannot
// be reached, the Store takes new sagas in memory until the loop finds it
// answering again (with Fallback, or before the first switch).
func (s *Store) check(err error) {
	if err == nil || !errors.Is(err, saga.ErrUnavailable) {
		return
	}
	if !s.fallback && s.durable.Load() {
		return
	}
	s.setErr(err.Error())
	s.dbDown.Store(true)
	if s.durable.CompareAndSwap(true, false) {
		s.logger.Error("DATABASE UNREACHABLE: new sagas are accepted in MEMORY (\"durable\": false) until it answers "+
			"again, then moved to it; sagas in the database wait for it", "error", err)
		s.notifyMode()
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// unsent reports whether err is a write that certainly did not reach an
// unreachable database.
func unsent(err error) bool {
	return errors.Is(err, saga.ErrUnavailable) && errors.Is(err, saga.ErrNotWritten)
}

// where a saga's call goes.
type place int

const (
	inMemory   place = iota // mem; the read lock is held
	inDatabase              // db; no lock held
	setAside                // aside, read-only; the read lock is held
)

// locate says where the saga id is. With inMemory and setAside the read
// lock is held and the caller must call s.mu.RUnlock; with inDatabase it is
// not, and db is the store to use (a saga in the database stays there).
func (s *Store) locate(id saga.ID) (place, Durable) {
	if s.durable.Load() {
		return inDatabase, s.db
	}
	s.mu.RLock()
	switch {
	case s.durable.Load():
	case s.asideID[id]:
		return setAside, nil
	case s.db == nil || s.mem.Holds(id):
		return inMemory, nil
	}
	db := s.db
	s.mu.RUnlock()
	return inDatabase, db
}

// readOnly is the error of a write to a saga set aside.
func readOnly(doing string, id saga.ID) error {
	return fmt.Errorf("%s: saga %s is being moved to the database: %w", doing, id, saga.ErrUnavailable)
}

// CreateSaga stores a new saga: in the database when it answers, else in
// memory. An idempotency key is recognised wherever its saga is. A create
// whose write may have reached the database before it stopped answering is
// refused with its error (wrapping saga.ErrUnavailable) rather than taken in
// memory, and so is a saga whose idempotency key the database may hold:
// either would make a second saga of one submit.
func (s *Store) CreateSaga(ctx context.Context, c saga.NewSaga) (*saga.Saga, bool, error) {
	var key string
	if c.Saga != nil {
		key = c.Saga.IdempotencyKey
	}
	if s.durable.Load() {
		sg, existed, err := s.createInDB(ctx, s.db, c, key)
		if !s.fallback || !unsent(err) {
			return sg, existed, err
		}
		return s.createAway(ctx, c, key, err)
	}
	return s.createAway(ctx, c, key, nil)
}

// createInDB creates the saga in db and remembers its key.
func (s *Store) createInDB(ctx context.Context, db Durable, c saga.NewSaga, key string) (*saga.Saga, bool, error) {
	sg, existed, err := db.CreateSaga(ctx, c)
	if err == nil || !unsent(err) {
		s.recent.add(key)
	}
	s.check(err)
	return sg, existed, err
}

// createAway creates a saga while the Store is not durable. dbErr is the
// error of a create the database just refused unwritten: then memory takes
// the saga without trying the database again.
func (s *Store) createAway(ctx context.Context, c saga.NewSaga, key string, dbErr error) (*saga.Saga, bool, error) {
	s.mu.RLock()
	if key != "" {
		if id, ok := s.keys[key]; ok {
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
			s.check(err)
			if err != nil {
				return nil, false, fmt.Errorf("create saga: find saga of idempotency key: %w", err)
			}
			return sg, true, nil
		}
		if sg, err := s.mem.SagaOfKey(ctx, key); err == nil {
			s.mu.RUnlock()
			return sg, true, nil
		}
	}
	if db := s.db; db != nil && dbErr == nil && !s.dbDown.Load() {
		// The database answers (the move is under way): new sagas go there.
		s.mu.RUnlock()
		sg, existed, err := s.createInDB(ctx, db, c, key)
		if !unsent(err) {
			return sg, existed, err
		}
		return s.createAway(ctx, c, key, err)
	}
	defer s.mu.RUnlock()
	if s.durable.Load() {
		// Switched meanwhile: memory may take the saga only with Fallback.
		if !s.fallback {
			return nil, false, dbErr
		}
		s.durable.Store(false)
		defer s.notifyMode()
	}
	if key != "" && s.recent.has(key) {
		return nil, false, fmt.Errorf("create saga: idempotency key %q may belong to a saga in the database, which does not answer now: %w",
			key, saga.ErrUnavailable)
	}
	return s.mem.CreateSaga(ctx, c)
}

// GetSaga returns the saga wherever it is; see saga.Store.
func (s *Store) GetSaga(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	switch p, db := s.locate(id); p {
	case inDatabase:
		sg, err := db.GetSaga(ctx, id)
		s.check(err)
		return sg, err
	case setAside:
		defer s.mu.RUnlock()
		return s.aside.GetSaga(ctx, id)
	}
	defer s.mu.RUnlock()
	return s.mem.GetSaga(ctx, id)
}

// SagaStatuses returns the status of each of ids wherever it is: one read
// of the database for those it holds, the others from memory; see
// saga.Store.
func (s *Store) SagaStatuses(ctx context.Context, ids []saga.ID) (map[saga.ID]saga.SagaStatus, error) {
	if s.durable.Load() {
		out, err := s.db.SagaStatuses(ctx, ids)
		s.check(err)
		return out, err
	}
	out := make(map[saga.ID]saga.SagaStatus, len(ids))
	var (
		db     Durable
		inDB   []saga.ID
		status func(context.Context, []saga.ID) (map[saga.ID]saga.SagaStatus, error)
	)
	for _, id := range ids {
		p, d := s.locate(id)
		switch p {
		case inDatabase:
			db = d
			inDB = append(inDB, id)
			continue
		case setAside:
			status = s.aside.SagaStatuses
		default:
			status = s.mem.SagaStatuses
		}
		got, err := status(ctx, []saga.ID{id})
		s.mu.RUnlock()
		if err != nil {
			return nil, err
		}
		maps.Copy(out, got)
	}
	if len(inDB) == 0 {
		return out, nil
	}
	got, err := db.SagaStatuses(ctx, inDB)
	s.check(err)
	if err != nil {
		return nil, err
	}
	maps.Copy(out, got)
	return out, nil
}

// ListEvents returns the saga's events wherever it is; see saga.Store.
func (s *Store) ListEvents(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error) {
	switch p, db := s.locate(id); p {
	case inDatabase:
		evs, err := db.ListEvents(ctx, id, afterSeq, limit)
		s.check(err)
		return evs, err
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
		cp, err := db.LatestCheckpoint(ctx, id)
		s.check(err)
		return cp, err
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
		a, err := db.Apply(ctx, t)
		s.check(err)
		return a, err
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
		sg, err := db.RequestControl(ctx, id, action)
		s.check(err)
		return sg, err
	case setAside:
		s.mu.RUnlock()
		return nil, readOnly("request control", id)
	}
	defer s.mu.RUnlock()
	return s.mem.RequestControl(ctx, id, action)
}

// ClaimSagas claims runnable sagas; see saga.Store. When not durable it
// claims from memory first, then from the database unless that is known
// to be away; a database that fails then costs nothing of what memory gave.
func (s *Store) ClaimSagas(ctx context.Context, owner string, leaseFor time.Duration, limit int) ([]*saga.Saga, error) {
	if s.durable.Load() {
		sagas, err := s.db.ClaimSagas(ctx, owner, leaseFor, limit)
		s.check(err)
		return sagas, err
	}
	s.mu.RLock()
	got, err := s.mem.ClaimSagas(ctx, owner, leaseFor, limit)
	db, down := s.db, s.dbDown.Load()
	s.mu.RUnlock()
	if err != nil || len(got) >= limit || db == nil || down {
		return got, err
	}
	more, err := db.ClaimSagas(ctx, owner, leaseFor, limit-len(got))
	s.check(err)
	if err != nil {
		if len(got) > 0 {
			return got, nil
		}
		return nil, fmt.Errorf("claim sagas in the database: %w", err)
	}
	return append(got, more...), nil
}

// RenewLeases renews leases wherever their sagas are; see saga.Store. The
// lease of a saga set aside is not renewed. When the database fails, the
// error is returned even though the leases in memory were renewed: the
// caller cannot tell which renewals failed.
func (s *Store) RenewLeases(ctx context.Context, owner string, leases map[saga.ID]int64, leaseFor time.Duration) ([]saga.ID, error) {
	if s.durable.Load() {
		renewed, err := s.db.RenewLeases(ctx, owner, leases, leaseFor)
		s.check(err)
		return renewed, err
	}
	s.mu.RLock()
	inMem := make(map[saga.ID]int64, len(leases))
	inDB := make(map[saga.ID]int64)
	for id, epoch := range leases {
		switch {
		case s.asideID[id]:
		case s.db == nil || s.mem.Holds(id):
			inMem[id] = epoch
		default:
			inDB[id] = epoch
		}
	}
	renewed, err := s.mem.RenewLeases(ctx, owner, inMem, leaseFor)
	db := s.db
	s.mu.RUnlock()
	if err != nil || len(inDB) == 0 {
		return renewed, err
	}
	more, err := db.RenewLeases(ctx, owner, inDB, leaseFor)
	s.check(err)
	if err != nil {
		return renewed, fmt.Errorf("renew leases of sagas in the database: %w", err)
	}
	return append(renewed, more...), nil
}

// ListSagas lists sagas; see saga.Store. When not durable it merges the
// pages of memory and of the database (once connected); a database that
// fails fails the list, which would otherwise be silently incomplete.
func (s *Store) ListSagas(ctx context.Context, f saga.Filter) (saga.Page, error) {
	if s.durable.Load() {
		p, err := s.db.ListSagas(ctx, f)
		s.check(err)
		return p, err
	}
	s.mu.RLock()
	// Memory first, then the database: a saga leaves memory only after it
	// is in the database, so none can be missed (one seen twice is kept once).
	memPage, err := s.mem.ListSagas(ctx, f)
	db := s.db
	s.mu.RUnlock()
	if err != nil || db == nil {
		return memPage, err
	}
	dbPage, err := db.ListSagas(ctx, f)
	s.check(err)
	if err != nil {
		return saga.Page{}, fmt.Errorf("list sagas in the database: %w", err)
	}
	return mergePages(f.EffectiveLimit(), dbPage, memPage), nil
}

// Stats counts sagas; see saga.Store. When not durable it adds the figures
// of memory and of the database, once connected (P95Duration is the larger
// of the two).
func (s *Store) Stats(ctx context.Context, window time.Duration) (saga.Stats, error) {
	if s.durable.Load() {
		st, err := s.db.Stats(ctx, window)
		s.check(err)
		return st, err
	}
	s.mu.RLock()
	memStats, err := s.mem.Stats(ctx, window)
	db := s.db
	s.mu.RUnlock()
	if err != nil || db == nil {
		return memStats, err
	}
	dbStats, err := db.Stats(ctx, window)
	s.check(err)
	if err != nil {
		return saga.Stats{}, fmt.Errorf("stats of the database: %w", err)
	}
	return addStats(memStats, dbStats), nil
}

// DeleteFinished deletes old finished sagas; see saga.Store. When not
// durable it cleans memory, and the database unless that is known to be
// away.
func (s *Store) DeleteFinished(ctx context.Context, age time.Duration, batch int) (int, error) {
	if s.durable.Load() {
		n, err := s.db.DeleteFinished(ctx, age, batch)
		s.check(err)
		return n, err
	}
	s.mu.RLock()
	n, err := s.mem.DeleteFinished(ctx, age, batch)
	db, down := s.db, s.dbDown.Load()
	s.mu.RUnlock()
	if err != nil || db == nil || down {
		return n, err
	}
	more, err := db.DeleteFinished(ctx, age, batch)
	s.check(err)
	if err != nil {
		return n, fmt.Errorf("delete finished sagas in the database: %w", err)
	}
	return n + more, nil
}

// DeleteExpired deletes the sagas whose retention has passed where they
// are held now; see saga.Store.
func (s *Store) DeleteExpired(ctx context.Context, r saga.Retention, batch int) (int, error) {
	if s.durable.Load() {
		return s.db.DeleteExpired(ctx, r, batch)
	}
	s.mu.RLock()
	if s.durable.Load() {
		s.mu.RUnlock()
		return s.db.DeleteExpired(ctx, r, batch)
	}
	defer s.mu.RUnlock()
	return s.mem.DeleteExpired(ctx, r, batch)
}

// SetLegalHold sets or clears a saga's legal hold where the saga is held;
// see saga.Store. A saga set aside while moving cannot be changed.
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

// Health reports the database's health while durable. Otherwise it reports
// Mode "memory", Durable false, and in Error why the database is not in use
// (the last error of Connect, of a check or of the move). With Fallback, a
// durable Store whose database cannot be reached for the health check
// (Health.Unreachable; a database that answers slowly is not an outage)
// goes to memory mode and reports it.
func (s *Store) Health(ctx context.Context) saga.Health {
	if s.durable.Load() {
		h := s.db.Health(ctx)
		if !h.Unreachable || !s.fallback {
			return h
		}
		s.check(fmt.Errorf("database health check: %w: %s", saga.ErrUnavailable, h.Error))
	}
	h := s.mem.Health(ctx)
	h.Durable = false
	h.Mode = ModeMemory
	h.Error = *s.lastErr.Load()
	return h
}

// Close stops the loop, waits for it, and closes the database store if one
// was opened.
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
