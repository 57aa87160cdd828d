package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// percentile is the quantile of Stats.P95Duration.
const percentile = 0.95

// Stats counts sagas by status (every status present, zero or not) and
// summarises those created and ended within window before now, read from
// one snapshot. See saga.Store.
func (s *Store) Stats(ctx context.Context, window time.Duration) (st saga.Stats, err error) {
	defer s.observe(opStats, time.Now(), &err)
	if window < 0 {
		return saga.Stats{}, fmt.Errorf("read statistics: window %v is negative", window)
	}
	since := sql.Named("since", fmtTime(s.clock.read().Add(-window)))
	err = s.readTx(ctx, func(r *rtx) error {
		st = saga.Stats{ByStatus: make(map[saga.SagaStatus]int64, len(saga.SagaStatuses)), Window: window}
		for _, status := range saga.SagaStatuses {
			st.ByStatus[status] = 0
		}
		rows, err := r.query(sqlCountByStatus)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				status saga.SagaStatus
				n      int64
			)
			if err := rows.Scan(textCol[saga.SagaStatus]{&status}, &n); err != nil {
				return err
			}
			st.ByStatus[status] = n
			st.Total += n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if err := r.queryRow(sqlStartedSince, []any{since}, &st.Started); err != nil {
			return err
		}
		var mean float64
		if err := r.queryRow(sqlEndedSummary, []any{since}, &st.EndedInWindow, &st.Completed, &mean); err != nil {
			return err
		}
		st.Failed = st.EndedInWindow - st.Completed
		st.MeanDuration = seconds(mean)
		p95, err := endedPercentile(r, since, st.EndedInWindow)
		st.P95Duration = seconds(p95)
		return err
	})
	if err != nil {
		return saga.Stats{}, interpretError("read statistics", err)
	}
	return st, nil
}

// endedPercentile returns the percentile of the durations of the n sagas
// that ended in the window, interpolated between the two nearest ranks as
// PostgreSQL's percentile_cont does.
func endedPercentile(r *rtx, since sql.NamedArg, n int64) (float64, error) {
	if n == 0 {
		return 0, nil
	}
	pos := percentile * float64(n-1)
	lower := math.Floor(pos)
	rows, err := r.query(sqlEndedAt, since, sql.Named("offset", int64(lower)))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var vals []float64
	for rows.Next() {
		var v float64
		if err := rows.Scan(&v); err != nil {
			return 0, err
		}
		vals = append(vals, v)
	}
	if err := rows.Err(); err != nil || len(vals) == 0 {
		return 0, err
	}
	if len(vals) == 1 {
		return vals[0], nil
	}
	return vals[0] + (pos-lower)*(vals[1]-vals[0]), nil
}

// seconds converts a number of seconds to a Duration, rounded to the
// microsecond.
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
// passed and that are not under legal hold, batch sagas per write (1,000
// when batch <= 0), their other rows following by cascade, writes a
// tombstone of each to saga_deletions (the rule, and the requester ctx
// carries), and returns how many it deleted. See saga.Store.
func (s *Store) DeleteExpired(ctx context.Context, r saga.Retention, batch int) (deleted int, err error) {
	defer s.observe(opDeleteFinished, time.Now(), &err)
	for _, status := range saga.RetainedStatuses {
		if age, _ := r.For(status); age < 0 {
			return 0, fmt.Errorf("delete finished sagas: retention %v of %s is negative", age, status)
		}
	}
	if batch <= 0 {
		batch = deleteBatchDefault
	}
	req, _ := saga.RequesterFrom(ctx)
	for _, status := range saga.RetainedStatuses {
		age, _ := r.For(status)
		rule := saga.RetentionRule(status, age)
		for {
			var n int64 // set on the writer's goroutine only
			err = s.writer.submit(ctx, func(w *wtx) error {
				n = 0
				gone, err := deleteBatch(w, status, age, batch)
				if err != nil {
					return err
				}
				for _, d := range gone {
					_, err := w.exec(sqlInsertDeletion, sql.Named("saga_id", idText(d.SagaID)), sql.Named("name", d.Name),
						sql.Named("status", string(d.Status)), sql.Named("event_seq", d.EventSeq),
						sql.Named("last_hash", nullBytes(d.LastHash)), sql.Named("completed_at", fmtTimePtr(d.CompletedAt)),
						sql.Named("now", w.nowText()), sql.Named("rule", rule),
						sql.Named("actor", nullText(req.Actor)), sql.Named("reason", nullText(req.Reason)),
						sql.Named("client_addr", nullText(req.Address)))
					if err != nil {
						return fmt.Errorf("write the tombstone of saga %s: %w", d.SagaID, err)
					}
				}
				n = int64(len(gone))
				return nil
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

// deleteBatch deletes up to batch sagas that ended in status more than age
// ago in the writer's transaction and returns what their tombstones keep.
func deleteBatch(w *wtx, status saga.SagaStatus, age time.Duration, batch int) ([]saga.Deletion, error) {
	rows, err := w.query(sqlDeleteExpired, sql.Named("status", string(status)),
		sql.Named("cutoff", fmtTime(w.now.Add(-age))), sql.Named("batch", batch))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var gone []saga.Deletion
	for rows.Next() {
		var d saga.Deletion
		if err := rows.Scan(idCol{&d.SagaID}, &d.Name, textCol[saga.SagaStatus]{&d.Status}, &d.EventSeq, &d.LastHash,
			nullTimeCol{&d.CompletedAt}); err != nil {
			return nil, err
		}
		gone = append(gone, d)
	}
	return gone, rows.Err()
}
