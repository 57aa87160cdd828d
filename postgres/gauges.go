package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
)

// Operation names of the saga.GaugeReader methods, for ObserveDB.
const (
	opGauges   = "gauges"
	opActivity = "activity"
)

var _ saga.GaugeReader = (*Store)(nil)

// sqlNow reads the database clock.
const sqlNow = `SELECT now()`

// eachRow reads the rows of the batch's next query, calling scan on each.
func eachRow(br pgx.BatchResults, scan func(rows pgx.Rows) error) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// readSnapshot sends the queries of queue between a read-only
// repeatable-read BEGIN and COMMIT, so that they see one snapshot and one
// now(), and reads their answers with read.
func (s *Store) readSnapshot(ctx context.Context, queue func(b *pgx.Batch), read func(br pgx.BatchResults) error) error {
	return retry(ctx, func(ctx context.Context) error {
		b := &pgx.Batch{}
		b.Queue(sqlBeginSnapshot)
		queue(b)
		b.Queue(sqlCommit)
		br := s.pool.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := read(br); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	})
}

// Gauges returns the cluster-wide figures of saga.GaugeReader, read in one
// round trip from one snapshot.
func (s *Store) Gauges(ctx context.Context) (g saga.Gauges, err error) {
	defer s.observe(opGauges, time.Now(), &err)
	err = s.readSnapshot(ctx, func(b *pgx.Batch) {
		b.Queue(sqlCountByStatus)
		b.Queue(sqlGaugesRunning)
		b.Queue(sqlGaugesLeases, saga.HeldSagasListed)
	}, func(br pgx.BatchResults) error {
		g = saga.Gauges{ByStatus: make(map[saga.SagaStatus]int64, len(saga.SagaStatuses))}
		for _, st := range saga.SagaStatuses {
			g.ByStatus[st] = 0
		}
		if err := eachRow(br, func(rows pgx.Rows) error {
			var (
				status string
				n      int64
			)
			err := rows.Scan(&status, &n)
			g.ByStatus[saga.SagaStatus(status)] = n
			return err
		}); err != nil {
			return err
		}
		var oldest *time.Time
		if err := br.QueryRow().Scan(&g.Now, &oldest, &g.FailedWaiting, &g.Stuck); err != nil {
			return err
		}
		g.Now = g.Now.UTC()
		if oldest != nil {
			g.OldestRunningAge = max(g.Now.Sub(*oldest), 0)
		}
		return eachRow(br, func(rows pgx.Rows) error {
			var (
				in    saga.InstanceLeases
				by    [4]int64 // Created, Executing, Compensating, Paused
				names = [4]saga.SagaStatus{saga.SagaStatusCreated, saga.SagaStatusExecuting,
					saga.SagaStatusCompensating, saga.SagaStatusPaused}
			)
			if err := rows.Scan(&in.ID, &in.Held, &in.LeaseExpiresAt, &in.Sagas, &by[0], &by[1], &by[2], &by[3]); err != nil {
				return err
			}
			in.LeaseExpiresAt = in.LeaseExpiresAt.UTC()
			in.ByStatus = map[saga.SagaStatus]int64{}
			for i, n := range by {
				if n > 0 {
					in.ByStatus[names[i]] = n
				}
			}
			g.Instances = append(g.Instances, in)
			return nil
		})
	})
	if err != nil {
		return saga.Gauges{}, interpretError("read gauges", err)
	}
	return g, nil
}

// Activity returns the window figures of saga.GaugeReader, read in one
// round trip from one snapshot.
func (s *Store) Activity(ctx context.Context, window time.Duration) (a saga.Activity, err error) {
	defer s.observe(opActivity, time.Now(), &err)
	window = saga.ClampActivityWindow(window)
	err = s.readSnapshot(ctx, func(b *pgx.Batch) {
		b.Queue(sqlNow)
		b.Queue(sqlActivityStarted, micros(window))
		b.Queue(sqlActivityEnded, micros(window))
		b.Queue(sqlActivityInstances, micros(window), saga.RecentSagasSampled)
	}, func(br pgx.BatchResults) error {
		a = saga.Activity{Window: window}
		if err := br.QueryRow().Scan(&a.Now); err != nil {
			return err
		}
		a.Now = a.Now.UTC()
		a.Buckets = saga.NewActivityBuckets(a.Now, window)
		bucket := func(minute int64) *saga.ActivityPoint {
			if i := saga.BucketIndex(a.Buckets, time.Unix(minute*60, 0)); i >= 0 {
				return &a.Buckets[i]
			}
			return nil
		}
		if err := eachRow(br, func(rows pgx.Rows) error {
			var minute, n int64
			if err := rows.Scan(&minute, &n); err != nil {
				return err
			}
			if p := bucket(minute); p != nil {
				p.Started += n
			}
			return nil
		}); err != nil {
			return err
		}
		if err := eachRow(br, func(rows pgx.Rows) error {
			var (
				minute            *int64
				completed, failed int64
				p50, p95          int64
			)
			if err := rows.Scan(&minute, &completed, &failed, &p50, &p95); err != nil {
				return err
			}
			if minute == nil {
				a.Ended = completed + failed
				a.P50, a.P95 = time.Duration(p50)*time.Microsecond, time.Duration(p95)*time.Microsecond
			} else if p := bucket(*minute); p != nil {
				p.Completed += completed
				p.Failed += failed
			}
			return nil
		}); err != nil {
			return err
		}
		return eachRow(br, func(rows pgx.Rows) error {
			var in saga.InstanceSeen
			err := rows.Scan(&in.ID, &in.LastSeen, &in.Events)
			in.LastSeen = in.LastSeen.UTC()
			a.Instances = append(a.Instances, in)
			return err
		})
	})
	if err != nil {
		return saga.Activity{}, interpretError("read activity", err)
	}
	return a, nil
}
