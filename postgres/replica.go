package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
)

// Checks of the replicas' lag: every half of the allowed lag, within these
// bounds.
const (
	replicaCheckMin = 50 * time.Millisecond
	replicaCheckMax = time.Second
	// replicaConnectTimeout bounds a connection attempt to a replica
	// (unless DB_READ_MAX_LAG_MS is longer).
	replicaConnectTimeout = 2 * time.Second
)

// Lag queries. The primary's WAL position and a replica's replay position,
// as byte offsets.
const (
	sqlPrimaryLSN = `SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`
	sqlReplicaLSN = `SELECT pg_is_in_recovery(), coalesce((pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, 0)`
)

// readRouter sends the reads that may be stale to a read replica whose lag
// is within maxLag, and the others to the primary.
//
// Lag is measured by WAL position, not by replay timestamps (which stand
// still while the primary is idle): at each check the router samples the
// primary's current LSN, then each replica's replay LSN. A replica that has
// replayed up to the primary's latest sample is not behind; otherwise its
// lag is the age of the newest sample it has replayed past (an upper bound,
// at most one check interval high).
type readRouter struct {
	primary  *pgxpool.Pool
	replicas []*replica
	maxLag   time.Duration
	interval time.Duration
	logger   *slog.Logger

	mu      sync.Mutex
	samples []lsnSample // the primary's positions, oldest first
	next    int         // round robin among usable replicas

	cancel context.CancelFunc
	done   chan struct{}
}

type lsnSample struct {
	at  time.Time
	lsn int64
}

// replica is one read replica and what the last check found.
type replica struct {
	name string
	pool *pgxpool.Pool

	mu     sync.Mutex
	health saga.ReplicaHealth
}

// newReadRouter opens a pool per replica URL (without waiting for them to
// answer) and starts the lag checks. Errors name DATABASE_READ_URL.
func newReadRouter(cfg Config, primary *pgxpool.Pool, logger *slog.Logger) (*readRouter, error) {
	maxLag := cfg.ReadMaxLag
	if maxLag == 0 {
		maxLag = ReadMaxLagDefault
	}
	r := &readRouter{
		primary:  primary,
		maxLag:   maxLag,
		interval: min(max(maxLag/2, replicaCheckMin), replicaCheckMax),
		logger:   logger.With("component", "replicas"),
		done:     make(chan struct{}),
	}
	maxConns := primary.Config().MaxConns
	for i, url := range cfg.ReadURLs {
		variable := "DATABASE_READ_URL item " + strconv.Itoa(i+1)
		pc, err := cfg.poolConfigFor(variable, url, maxConns, 0)
		if err != nil {
			r.closePools()
			return nil, err
		}
		// A replica that does not answer must not hold reads up for long:
		// they go to the primary instead.
		pc.ConnConfig.ConnectTimeout = min(pc.ConnConfig.ConnectTimeout, max(2*maxLag, replicaConnectTimeout))
		pool, err := pgxpool.NewWithConfig(context.Background(), pc)
		if err != nil {
			r.closePools()
			return nil, fmt.Errorf("%s: %w", variable, err)
		}
		name := fmt.Sprintf("%s:%d/%s", pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.Database)
		rep := &replica{name: name, pool: pool}
		rep.health = saga.ReplicaHealth{Name: name, Error: "not checked yet"}
		r.replicas = append(r.replicas, rep)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.check(ctx)
	go r.loop(ctx)
	return r, nil
}

// close stops the checks and closes the replicas' pools.
func (r *readRouter) close() {
	r.cancel()
	<-r.done
	r.closePools()
}

func (r *readRouter) closePools() {
	for _, rep := range r.replicas {
		rep.pool.Close()
	}
}

func (r *readRouter) loop(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.check(ctx)
	}
}

// check samples the primary's position, then measures every replica.
func (r *readRouter) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(r.interval, r.maxLag))
	defer cancel()
	var lsn int64
	primaryErr := r.primary.QueryRow(ctx, sqlPrimaryLSN).Scan(&lsn)
	now := time.Now()
	r.mu.Lock()
	if primaryErr == nil {
		r.samples = append(r.samples, lsnSample{at: now, lsn: lsn})
		// Keep the samples of the last few lag spans: older ones only
		// matter for replicas that are unusable anyway.
		keep := int(4*r.maxLag/r.interval) + 4
		if len(r.samples) > keep {
			r.samples = append(r.samples[:0], r.samples[len(r.samples)-keep:]...)
		}
	}
	samples := r.samples
	r.mu.Unlock()

	var wg sync.WaitGroup
	for _, rep := range r.replicas {
		wg.Go(func() { r.checkReplica(ctx, rep, samples, primaryErr) })
	}
	wg.Wait()
}

// checkReplica measures one replica against the primary's samples.
func (r *readRouter) checkReplica(ctx context.Context, rep *replica, samples []lsnSample, primaryErr error) {
	var (
		inRecovery bool
		replayed   int64
	)
	err := rep.pool.QueryRow(ctx, sqlReplicaLSN).Scan(&inRecovery, &replayed)
	now := time.Now()
	h := saga.ReplicaHealth{Name: rep.name, CheckedAt: now.UTC()}
	// Error is a short reason (health is served on an open endpoint);
	// detail goes to the log.
	var detail string
	switch {
	case err != nil:
		h.Error = "not answering"
		detail = interpretError("check replica "+rep.name, err).Error()
	case !inRecovery:
		h.Error = "not a replica (pg_is_in_recovery() is false)"
	case primaryErr != nil || len(samples) == 0:
		h.Error = "the primary's position is unknown"
		detail = errString(primaryErr)
	default:
		h.Lag = lagOf(samples, replayed, now)
		h.Usable = h.Lag <= r.maxLag
		if !h.Usable {
			h.Error = "lagging more than DB_READ_MAX_LAG_MS"
			detail = fmt.Sprintf("%v behind the primary, %v allowed", h.Lag.Round(time.Millisecond), r.maxLag)
		}
	}
	rep.mu.Lock()
	was := rep.health.Usable
	rep.health = h
	rep.mu.Unlock()
	if was != h.Usable {
		if h.Usable {
			r.logger.Info("reading from replica", "replica", rep.name, "lag_ms", h.Lag.Milliseconds())
		} else {
			r.logger.Warn("not reading from replica: reads go to the primary", "replica", rep.name,
				"reason", h.Error, "detail", detail)
		}
	}
}

// lagOf is how far a replica that replayed up to position replayed is
// behind, given the primary's samples (oldest first): zero when it has the
// newest, else the age of the newest sample it has.
func lagOf(samples []lsnSample, replayed int64, now time.Time) time.Duration {
	newest := samples[len(samples)-1]
	if replayed >= newest.lsn {
		return 0
	}
	for i := len(samples) - 2; i >= 0; i-- {
		if replayed >= samples[i].lsn {
			// It has what the primary had at samples[i], not what it had
			// at samples[i+1].
			return now.Sub(samples[i+1].at)
		}
	}
	return now.Sub(samples[0].at) + time.Nanosecond // older than every sample
}

// pick returns a usable replica, round robin, or nil.
func (r *readRouter) pick() *replica {
	r.mu.Lock()
	start := r.next
	r.next++
	r.mu.Unlock()
	for i := range r.replicas {
		rep := r.replicas[(start+i)%len(r.replicas)]
		if rep.usable() {
			return rep
		}
	}
	return nil
}

func (rep *replica) usable() bool {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	return rep.health.Usable
}

// markDown takes a replica out of use until the next check finds it well
// (the caller logs why).
func (rep *replica) markDown() {
	rep.mu.Lock()
	defer rep.mu.Unlock()
	rep.health.Usable = false
	rep.health.Error = "not answering"
}

// healths returns what the last checks found, in configuration order.
func (r *readRouter) healths() []saga.ReplicaHealth {
	out := make([]saga.ReplicaHealth, len(r.replicas))
	for i, rep := range r.replicas {
		rep.mu.Lock()
		out[i] = rep.health
		rep.mu.Unlock()
	}
	return out
}

// reading returns fn as a function for retry, run by read.
func (s *Store) reading(fn func(ctx context.Context, pool *pgxpool.Pool) error) func(ctx context.Context) error {
	return func(ctx context.Context) error { return s.read(ctx, fn) }
}

// read runs fn on the pool a read should use: a usable replica when ctx
// allows stale reads (saga.WithReplicaRead), else the primary. When fn
// fails on a replica with an error the primary may not have (a connection
// problem, or pgx.ErrNoRows: the row may not have reached the replica
// yet), fn runs again on the primary; a replica that failed to answer is
// taken out of use until its next check.
func (s *Store) read(ctx context.Context, fn func(ctx context.Context, pool *pgxpool.Pool) error) error {
	if s.readers == nil || !saga.ReplicaReadAllowed(ctx) {
		return fn(ctx, s.pool)
	}
	rep := s.readers.pick()
	if rep == nil {
		return fn(ctx, s.pool)
	}
	err := fn(ctx, rep.pool)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return fn(ctx, s.pool)
	case isTransient(err) && ctx.Err() == nil:
		rep.markDown()
		s.logger.Warn("replica read failed: reading from the primary", "replica", rep.name, "error", err)
		return fn(ctx, s.pool)
	}
	return err
}
