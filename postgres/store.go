package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
)

// Operation names passed to Config.Observe.
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
	opImport           = "import"
	opGroupCommit      = "group_commit"
)

// Backend is the Health.Backend of the store.
const Backend = "postgres"

// deleteBatchDefault is DeleteFinished's batch when the caller gives none.
const deleteBatchDefault = 1000

// Store is the saga.Store on PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	logger   *slog.Logger
	observeF func(op string, d time.Duration, err error)
	slow     time.Duration
	hooks    hooks
	chain    *saga.Chain
	heads    heads        // chain heads of the sagas this store writes
	clock    dbClock      // the database clock, estimated
	sealer   *saga.Sealer // seals secret header values of definitions; nil: none

	committer *committer
	closeOnce sync.Once

	cfg     Config      // as given to Open
	readers *readRouter // nil without ReadURLs
}

var _ saga.Store = (*Store)(nil)

// hooks let tests of this package intervene in the store's work.
type hooks struct {
	// beforeSend is called by a writer before it sends a batch of writes
	// (it may block). It returns statements to add to the batch's pipeline:
	// some after the writes, before COMMIT, and some after COMMIT.
	beforeSend func(writes int) (beforeCommit, afterCommit []string)
}

// Open connects to PostgreSQL as cfg says and checks the connection with a
// ping. It does not migrate: call Migrate on Pool() first. The error names
// the configuration problem; wrapping saga.ErrAccessRefused, why a database that
// answered refused the connection (password, role, database name); or,
// wrapping saga.ErrUnavailable, why the database cannot be reached.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	return open(ctx, cfg, hooks{})
}

func open(ctx context.Context, cfg Config, h hooks) (*Store, error) {
	pc, err := cfg.poolConfig()
	if err != nil {
		return nil, fmt.Errorf("configure PostgreSQL: %w", err)
	}
	poolMade := resetOnShutdown(pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("configure PostgreSQL: %w", err)
	}
	poolMade(pool)
	pingCtx, cancel := context.WithTimeout(ctx, pc.ConnConfig.ConnectTimeout)
	defer cancel()
	var dbNow time.Time
	sent := time.Now()
	if err := pool.QueryRow(pingCtx, sqlNow).Scan(&dbNow); err != nil {
		pool.Close()
		cause := saga.ErrUnavailable
		if accessRefused(err) {
			cause = saga.ErrAccessRefused
		}
		return nil, fmt.Errorf("connect to PostgreSQL at %s:%d/%s: %w: %w",
			pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.Database, cause, err)
	}
	s := &Store{
		pool:     pool,
		logger:   orDiscard(cfg.Logger).With("component", "postgres"),
		observeF: cfg.Observe,
		slow:     cmp.Or(cfg.SlowQuery, SlowQueryDefault),
		hooks:    h,
		chain:    cfg.Chain,
		sealer:   cfg.Sealer,
		cfg:      cfg,
	}
	if len(cfg.ReadURLs) > 0 {
		if s.readers, err = newReadRouter(cfg, pool, s.logger); err != nil {
			pool.Close()
			return nil, fmt.Errorf("configure read replicas: %w", err)
		}
	}
	s.clock.observe(dbNow, sent, time.Now())
	writers := cmp.Or(cfg.Writers, min(WritersDefault, int(pc.MaxConns)))
	s.committer = newCommitter(s, writers, cmp.Or(cfg.MaxBatch, MaxBatchDefault))
	return s, nil
}

// Migrate applies the embedded migrations (see the package function
// Migrate) on a direct connection to the primary when Config.DirectURL is
// set (a pooler cannot carry the migration's session lock), else on the
// store's pool, and returns the schema version.
func (s *Store) Migrate(ctx context.Context, logger *slog.Logger) (int64, error) {
	if s.cfg.DirectURL == "" {
		return Migrate(ctx, s.pool, logger)
	}
	cc, err := s.cfg.directConnConfig()
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	pc, err := pgxpool.ParseConfig("")
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	pc.ConnConfig = cc
	pc.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return 0, fmt.Errorf("apply migrations: DATABASE_DIRECT_URL: %w", err)
	}
	defer pool.Close()
	return Migrate(ctx, pool, logger)
}

// Pool returns the store's connection pool (for Migrate and health
// checks). It is closed by Close.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close waits for the writes already accepted to be committed (for up to
// ten seconds, after which it cancels them: the database may be gone), then
// closes the pool. Writes submitted after Close fail with
// saga.ErrUnavailable.
func (s *Store) Close() {
	s.closeOnce.Do(func() {
		s.committer.close()
		if s.readers != nil {
			s.readers.close()
		}
		s.pool.Close()
	})
}

// Health reports the database round-trip time, the pool's figures and the
// schema version. A failing round trip is reported in Error.
func (s *Store) Health(ctx context.Context) (h saga.Health) {
	var err error
	defer s.observe(opHealth, time.Now(), &err)
	h = saga.Health{Durable: true, Mode: "durable", Backend: Backend}
	start := time.Now()
	var one int
	if err = s.pool.QueryRow(ctx, sqlPing).Scan(&one); err != nil {
		err = interpretError("ping database", err)
		h.Error = err.Error()
		h.Unreachable = errors.Is(err, saga.ErrUnavailable)
	} else {
		h.RoundTrip = time.Since(start)
		version, verr := MigrationVersion(ctx, s.pool)
		if verr != nil {
			err = verr
			h.Error = verr.Error()
		}
		h.MigrationVersion = version
	}
	st := s.pool.Stat()
	h.PoolTotal = st.TotalConns()
	h.PoolIdle = st.IdleConns()
	h.PoolInUse = st.AcquiredConns()
	h.PoolMax = st.MaxConns()
	if s.readers != nil {
		h.Replicas = s.readers.healths()
	}
	return h
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
