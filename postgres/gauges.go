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

// Gauges returns the cluster-wide figures of saga.GaugeReader, read in one
// round trip from one snapshot.
func (s *Store) Gauges(ctx context.Context) (g saga.Gauges, err error) {
	defer s.observe(opGauges, time.Now(), &err)
	err = retry(ctx, func(ctx context.Context) error {
		g = saga.Gauges{ByStatus: make(map[saga.SagaStatus]int64, len(saga.SagaStatuses))}
		for _, st := range saga.SagaStatuses {
			g.ByStatus[st] = 0
		}
		b := &pgx.Batch{}
		b.Queue(sqlBeginSnapshot)
		b.Queue(sqlCountByStatus)
		b.Queue(sqlGaugesRunning)
		b.Queue(sqlGaugesLeases, saga.HeldSagasListed)
		b.Queue(sqlCommit)
		br := s.pool.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		if err := scanCounts(br, g.ByStatus); err != nil {
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
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				in                                    saga.InstanceLeases
				created, executing, compensating, psd int64
			)
			if err := rows.Scan(&in.ID, &in.Held, &in.LeaseExpiresAt, &in.Sagas,
				&created, &executing, &compensating, &psd); err != nil {
				rows.Close()
				return err
			}
			in.LeaseExpiresAt = in.LeaseExpiresAt.UTC()
			in.ByStatus = map[saga.SagaStatus]int64{}
			for st, n := range map[saga.SagaStatus]int64{
				saga.SagaStatusCreated: created, saga.SagaStatusExecuting: executing,
				saga.SagaStatusCompensating: compensating, saga.SagaStatusPaused: psd,
			} {
				if n > 0 {
					in.ByStatus[st] = n
				}
			}
			g.Instances = append(g.Instances, in)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	})
	if err != nil {
		return saga.Gauges{}, interpretError("read gauges", err)
	}
	return g, nil
}

// scanCounts reads the rows of sqlCountByStatus into byStatus.
func scanCounts(br pgx.BatchResults, byStatus map[saga.SagaStatus]int64) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			status string
			n      int64
		)
		if err := rows.Scan(&status, &n); err != nil {
			return err
		}
		byStatus[saga.SagaStatus(status)] = n
	}
	return rows.Err()
}

// Activity returns the window figures of saga.GaugeReader, read in one
// round trip from one snapshot.
func (s *Store) Activity(ctx context.Context, window time.Duration) (a saga.Activity, err error) {
	defer s.observe(opActivity, time.Now(), &err)
	window = saga.ClampActivityWindow(window)
	err = retry(ctx, func(ctx context.Context) error {
		a = saga.Activity{Window: window}
		b := &pgx.Batch{}
		b.Queue(sqlBeginSnapshot)
		b.Queue(sqlNow)
		b.Queue(sqlActivityStarted, micros(window))
		b.Queue(sqlActivityEnded, micros(window))
		b.Queue(sqlActivityInstances, micros(window), saga.RecentSagasSampled)
		b.Queue(sqlCommit)
		br := s.pool.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
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
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var minute, n int64
			if err := rows.Scan(&minute, &n); err != nil {
				rows.Close()
				return err
			}
			if p := bucket(minute); p != nil {
				p.Started += n
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if rows, err = br.Query(); err != nil {
			return err
		}
		for rows.Next() {
			var (
				minute            *int64
				completed, failed int64
				p50, p95          int64
			)
			if err := rows.Scan(&minute, &completed, &failed, &p50, &p95); err != nil {
				rows.Close()
				return err
			}
			if minute == nil {
				a.Ended = completed + failed
				a.P50, a.P95 = time.Duration(p50)*time.Microsecond, time.Duration(p95)*time.Microsecond
				continue
			}
			if p := bucket(*minute); p != nil {
				p.Completed += completed
				p.Failed += failed
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if rows, err = br.Query(); err != nil {
			return err
		}
		for rows.Next() {
			var in saga.InstanceSeen
			if err := rows.Scan(&in.ID, &in.LastSeen, &in.Events); err != nil {
				rows.Close()
				return err
			}
			in.LastSeen = in.LastSeen.UTC()
			a.Instances = append(a.Instances, in)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	})
	if err != nil {
		return saga.Activity{}, interpretError("read activity", err)
	}
	return a, nil
}

// sqlNow reads the database clock.
const sqlNow = `SELECT now()`
