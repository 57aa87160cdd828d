package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
)

// Stats counts sagas by status (every status present, zero or not) and
// summarises those created and ended within window before now(). See
// saga.Store.
func (s *Store) Stats(ctx context.Context, window time.Duration) (st saga.Stats, err error) {
	defer s.observe(opStats, time.Now(), &err)
	if window < 0 {
		return saga.Stats{}, fmt.Errorf("read statistics: window %v is negative", window)
	}
	err = retry(ctx, s.reading(func(ctx context.Context, pool *pgxpool.Pool) error {
		st = saga.Stats{ByStatus: make(map[saga.SagaStatus]int64, len(saga.SagaStatuses)), Window: window}
		for _, status := range saga.SagaStatuses {
			st.ByStatus[status] = 0
		}
		b := &pgx.Batch{}
		b.Queue(sqlCountByStatus)
		b.Queue(sqlWindowStats, micros(window))
		br := pool.SendBatch(ctx, b)
		defer br.Close()
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				status string
				n      int64
			)
			if err := rows.Scan(&status, &n); err != nil {
				rows.Close()
				return err
			}
			st.ByStatus[saga.SagaStatus(status)] = n
			st.Total += n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var mean, p95 float64
		if err := br.QueryRow().Scan(&st.Started, &st.Completed, &st.Failed, &st.EndedInWindow, &mean, &p95); err != nil {
			return err
		}
		st.MeanDuration = seconds(mean)
		st.P95Duration = seconds(p95)
		return br.Close()
	}))
	if err != nil {
		return saga.Stats{}, interpretError("read statistics", err)
	}
	return st, nil
}

// seconds converts a number of seconds to a Duration, rounded to the
// microsecond (the database's precision).
func seconds(secs float64) time.Duration {
	return time.Duration(secs * float64(time.Second)).Round(time.Microsecond)
}

// DeleteFinished deletes sagas that ended (Completed, Compensated,
// Cancelled, TimedOut) longer than age ago, other than those under legal
// hold, leaving a tombstone of each. See DeleteExpired and saga.Store.
func (s *Store) DeleteFinished(ctx context.Context, age time.Duration, batch int) (int, error) {
	if age < 0 {
		return 0, fmt.Errorf("delete finished sagas: age %v is negative", age)
	}
	return s.DeleteExpired(ctx, saga.UniformRetention(age), batch)
}

// DeleteExpired deletes, status by status, the sagas whose retention has
// passed and that are not under legal hold, batch sagas per transaction
// (1,000 when batch <= 0), their other rows following by cascade, writes a
// tombstone of each to saga_deletions (the rule, and the requester ctx
// carries), and returns how many it deleted. See saga.Store.
func (s *Store) DeleteExpired(ctx context.Context, r saga.Retention, batch int) (deleted int, err error) {
	defer s.observe(opDeleteFinished, time.Now(), &err)
	if batch <= 0 {
		batch = deleteBatchDefault
	}
	req, _ := saga.RequesterFrom(ctx)
	for _, status := range saga.RetainedStatuses {
		age, _ := r.For(status)
		if age < 0 {
			return deleted, fmt.Errorf("delete finished sagas: retention %v of %s is negative", age, status)
		}
		for {
			var n int64
			err = retry(ctx, func(ctx context.Context) error {
				tag, err := s.pool.Exec(ctx, sqlDeleteExpired, string(status), micros(age), batch,
					saga.RetentionRule(status, age), nullString(req.Actor), nullString(req.Reason), nullString(req.Address),
					s.clock.now())
				n = tag.RowsAffected()
				return err
			})
			if err != nil {
				return deleted, interpretError("delete finished sagas", err)
			}
			deleted += int(n)
			if n < int64(batch) {
				break
			}
			if err := ctx.Err(); err != nil {
				return deleted, fmt.Errorf("delete finished sagas: %w", err)
			}
		}
	}
	return deleted, nil
}
