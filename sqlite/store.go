package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite", pure Go

	saga "github.com/tracseq/transaction-service"
)

// Operation names passed to Config.Observe (those of the PostgreSQL store).
const (
	opCreateSaga       = "create_saga"
	opGetSaga          = "get_saga"
	opSagaStatuses     = "saga_statuses"
	opListSagas        = "list_sagas"
	opListEvents       = "list_events"
	opLatestCheckpoint = "latest_checkpoint"
	opApply            = "apply"
	opClaim            = "claim"
	opRenewLeases      = "renew_leases"
	opRequestControl   = "request_control"
	opStats            = "stats"
	opDeleteFinished   = "delete_finished"
	opSetLegalHold     = "set_legal_hold"
	opHealth           = "health"
	opExport           = "export"
	opGroupCommit      = "group_commit"
)

// Backend is the Health.Backend of the store.
const Backend = "sqlite"

// deleteBatchDefault is DeleteFinished's batch when the caller gives none.
const deleteBatchDefault = 1000

// driverName is the database/sql driver of modernc.org/sqlite.
const driverName = "sqlite"

// ErrMoved is wrapped by Open when the file's sagas were moved to
// PostgreSQL: serving it again would run its sagas in two places.
var ErrMoved = errors.New("the sagas of this SQLite database were moved to PostgreSQL")

// Store is the saga.Store on a SQLite file. It is safe for concurrent use.
// One process at a time uses a file (Open holds a lock on it); within it,
// one connection writes (group-committed) and several read in parallel.
type Store struct {
	path     string
	logger   *slog.Logger
	observeF func(op string, d time.Duration, err error)
	slow     time.Duration
	hooks    hooks
	clock    clock
	chain    *saga.Chain
	sealer   *saga.Sealer // seals secret header values of definitions; nil: none

	lock      *fileLock
	write     *sql.DB // one connection, owned by writer
	read      *sql.DB // ReadConns connections, query_only
	readConns int
	writer    *writer
	readStmts map[string]*sql.Stmt // readQueries prepared on read; read-only after Open
	version   int64                // schema version after Open's migration
	closeOnce sync.Once
}

var _ saga.Store = (*Store)(nil)

// hooks let tests of this package intervene in the store's work.
type hooks struct {
	// beforeBatch is called by the writer with the number of writes of a
	// group before it runs them (it may block, so that more gather).
	beforeBatch func(writes int)
	// beforeCommit is called before a group's COMMIT; an error fails the
	// group's transaction as a failed COMMIT would.
	beforeCommit func() error
	// now replaces the process clock.
	now func() time.Time
}

// Open opens (creating it if needed) the SQLite database at cfg.Path for
// this process alone, applies the embedded migrations it lacks, and starts
// the writer. It fails, wrapping ErrLocked, when another process holds the
// file, and, wrapping ErrMoved, when the file's sagas were moved to
// PostgreSQL. The error names the file.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	return open(ctx, cfg, hooks{})
}

func open(ctx context.Context, cfg Config, h hooks) (_ *Store, err error) {
	cfg, err = cfg.check()
	if err != nil {
		return nil, err
	}
	s := &Store{
		path:      cfg.Path,
		logger:    orDiscard(cfg.Logger).With("component", "sqlite"),
		observeF:  cfg.Observe,
		slow:      cfg.SlowQuery,
		hooks:     h,
		readConns: cfg.ReadConns,
		chain:     cfg.Chain,
		sealer:    cfg.Sealer,
	}
	s.clock.now = time.Now
	if h.now != nil {
		s.clock.now = h.now
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o750); err != nil {
		return nil, fmt.Errorf("create the directory of SQLite database %s: %w", s.path, err)
	}
	if s.lock, err = acquireLock(s.path, cfg.InstanceID); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.closeHandles()
		}
	}()

	if s.write, err = openDB(s.path, cfg.BusyTimeout, false); err != nil {
		return nil, err
	}
	s.write.SetMaxOpenConns(1)
	s.write.SetMaxIdleConns(1)
	s.write.SetConnMaxLifetime(0)
	s.write.SetConnMaxIdleTime(0)
	if err := s.write.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", s.path, err)
	}
	if s.version, err = migrate(ctx, s.write, s.logger); err != nil {
		return nil, fmt.Errorf("migrate SQLite database %s: %w", s.path, err)
	}
	if err := checkNotMoved(ctx, s.write, s.path); err != nil {
		return nil, err
	}

	if s.read, err = openDB(s.path, cfg.BusyTimeout, true); err != nil {
		return nil, err
	}
	s.read.SetMaxOpenConns(cfg.ReadConns)
	s.read.SetMaxIdleConns(cfg.ReadConns)
	s.read.SetConnMaxLifetime(0)
	s.read.SetConnMaxIdleTime(0)
	if err := s.read.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("open SQLite database %s for reading: %w", s.path, err)
	}
	if s.readStmts, err = prepareAll(ctx, s.read, readQueries); err != nil {
		return nil, fmt.Errorf("open SQLite database %s for reading: %w", s.path, err)
	}
	if s.writer, err = newWriter(ctx, s, s.write, cfg.MaxBatch); err != nil {
		return nil, fmt.Errorf("open SQLite database %s for writing: %w", s.path, err)
	}
	return s, nil
}

// openDB returns a handle on the database file with the store's settings:
// WAL, synchronous=FULL (a committed transaction survives a power loss,
// not only a crash), foreign keys on, the busy timeout, and BEGIN
// IMMEDIATE for write transactions. Read handles are query_only.
func openDB(path string, busy time.Duration, readOnly bool) (*sql.DB, error) {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busy.Milliseconds(), 10))
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	if readOnly {
		q.Set("_query_only", "1")
	}
	dsn := (&url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}).String()
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("open SQLite database %s: %w", path, err)
	}
	return db, nil
}

// checkNotMoved fails, wrapping ErrMoved, when the file records a move of
// its sagas to PostgreSQL.
func checkNotMoved(ctx context.Context, db *sql.DB, path string) error {
	var (
		target string
		at     time.Time
		n      int64
	)
	err := db.QueryRowContext(ctx, sqlLastMove).Scan(&target, timeCol{&at}, &n)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("read SQLite database %s: %w", path, err)
	}
	return fmt.Errorf("%s: %w (%s, %d sagas, at %s): set DATABASE_URL to that database; "+
		"the file is kept as it was, for reference", path, ErrMoved, target, n, at.Format(time.RFC3339))
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// MigrationVersion returns the schema version the file had after Open.
func (s *Store) MigrationVersion() int64 { return s.version }

// Close waits for the writes already accepted to be committed (for up to
// ten seconds, after which it cancels them), closes the connections and
// releases the file. Writes submitted after Close fail with
// saga.ErrUnavailable.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		if s.writer != nil {
			s.writer.close()
		}
		s.closeHandles()
	})
}

// closeHandles closes the database handles and releases the lock.
func (s *Store) closeHandles() {
	for _, st := range s.readStmts {
		_ = st.Close()
	}
	if s.read != nil {
		_ = s.read.Close()
	}
	if s.write != nil {
		_ = s.write.Close()
	}
	s.lock.release()
}

// Health reports a round trip on a reader connection, the connections
// (one writer and the readers) and the schema version. A failing round
// trip is reported in Error.
func (s *Store) Health(ctx context.Context) (h saga.Health) {
	var err error
	defer s.observe(opHealth, time.Now(), &err)
	h = saga.Health{Durable: true, Mode: "durable", Backend: Backend, Path: s.path, MigrationVersion: s.version}
	start := time.Now()
	var one int
	if err = s.read.QueryRowContext(ctx, sqlPing).Scan(&one); err != nil {
		h.Error = interpretError("ping database", err).Error()
	} else {
		h.RoundTrip = time.Since(start)
	}
	st := s.read.Stats()
	h.PoolTotal = int32(st.OpenConnections) + 1
	h.PoolIdle = int32(st.Idle)
	h.PoolInUse = int32(st.InUse) + 1
	h.PoolMax = int32(s.readConns) + 1
	return h
}

// PoolStats returns the connections as Health counts them, for metrics:
// the writer and the readers.
func (s *Store) PoolStats() (total, idle, inUse, maxConns int32) {
	st := s.read.Stats()
	return int32(st.OpenConnections) + 1, int32(st.Idle), int32(st.InUse) + 1, int32(s.readConns) + 1
}

// observe reports one operation to Config.Observe and logs it when slow.
// Use it deferred: defer s.observe(op, time.Now(), &err).
func (s *Store) observe(op string, start time.Time, errp *error) {
	d := time.Since(start)
	var err error
	if errp != nil {
		err = *errp
	}
	if s.observeF != nil {
		s.observeF(op, d, err)
	}
	if d >= s.slow {
		s.logger.Warn("slow store operation", "op", op, "duration_ms", d.Milliseconds(),
			"slow_ms", s.slow.Milliseconds(), "error", errString(err))
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
