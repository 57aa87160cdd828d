package sqlite

import (
	"context"
	"database/sql"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Operation names of the saga.GaugeReader methods, for Observe.
const (
	opGauges   = "gauges"
	opActivity = "activity"
)

var _ saga.GaugeReader = (*Store)(nil)

// The SQL of the saga.GaugeReader queries. The running, Failed and leased
// sagas are read through the index by status (the others have ended); the
// window figures through the created_at index and the partial index of
// finished sagas.
const (
	sqlGaugesRunning = `
SELECT min(CASE WHEN status IN ('Created', 'Executing', 'Compensating') THEN created_at END),
	coalesce(sum(status = 'Failed' AND control_request IS NOT 'retry'), 0),
	coalesce(sum(status IN ('Created', 'Executing', 'Compensating')
		AND (owner_id IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= :now)
		AND next_run_at IS NULL), 0)
FROM sagas
WHERE status IN ('Created', 'Executing', 'Compensating', 'Failed')`
	sqlGaugesLeases = `
SELECT owner_id, status, id, lease_expires_at
FROM sagas
WHERE status IN ('Created', 'Executing', 'Compensating', 'Paused')
	AND owner_id IS NOT NULL AND lease_expires_at > :now
ORDER BY owner_id, created_at, id`
	// Times are stored as 2006-01-02T15:04:05.000000Z: the first 16
	// characters are the minute.
	sqlActivityStarted = `
SELECT substr(created_at, 1, 16), count(*) FROM sagas WHERE created_at > :since GROUP BY 1`
	sqlActivityEnded = `
SELECT status, created_at, completed_at
FROM sagas INDEXED BY sagas_finished_completed_at_idx
WHERE status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut') AND completed_at > :since
UNION ALL
SELECT status, created_at, completed_at FROM sagas WHERE status = 'Failed' AND completed_at > :since`
	sqlActivityInstances = `
WITH recent AS (
	SELECT id FROM sagas WHERE created_at > :since ORDER BY created_at DESC, id DESC LIMIT :limit
)
SELECT e.instance_id, max(e.created_at), count(*)
FROM recent JOIN saga_events AS e ON e.saga_id = recent.id
WHERE e.instance_id IS NOT NULL AND e.instance_id <> ''
GROUP BY e.instance_id`
)

// minuteLayout is the minute prefix of a stored time.
const minuteLayout = "2006-01-02T15:04"

// Gauges returns the figures of saga.GaugeReader, read from one snapshot.
func (s *Store) Gauges(ctx context.Context) (g saga.Gauges, err error) {
	defer s.observe(opGauges, time.Now(), &err)
	now := s.clock.read()
	at := sql.Named("now", fmtTime(now))
	err = s.readTx(ctx, func(r *rtx) error {
		g = saga.Gauges{Now: now, ByStatus: make(map[saga.SagaStatus]int64, len(saga.SagaStatuses))}
		for _, st := range saga.SagaStatuses {
			g.ByStatus[st] = 0
		}
		if err := eachRow(r, sqlCountByStatus, nil, func(rows *sql.Rows) error {
			var (
				status saga.SagaStatus
				n      int64
			)
			err := rows.Scan(textCol[saga.SagaStatus]{&status}, &n)
			g.ByStatus[status] = n
			return err
		}); err != nil {
			return err
		}
		var oldest *time.Time
		if err := r.queryRow(sqlGaugesRunning, []any{at}, nullTimeCol{&oldest}, &g.FailedWaiting, &g.Stuck); err != nil {
			return err
		}
		if oldest != nil {
			g.OldestRunningAge = max(now.Sub(*oldest), 0)
		}
		return eachRow(r, sqlGaugesLeases, []any{at}, func(rows *sql.Rows) error {
			var (
				owner   string
				status  saga.SagaStatus
				id      saga.ID
				expires time.Time
			)
			if err := rows.Scan(&owner, textCol[saga.SagaStatus]{&status}, idCol{&id}, timeCol{&expires}); err != nil {
				return err
			}
			if n := len(g.Instances); n == 0 || g.Instances[n-1].ID != owner {
				g.Instances = append(g.Instances, saga.InstanceLeases{ID: owner, ByStatus: map[saga.SagaStatus]int64{}})
			}
			in := &g.Instances[len(g.Instances)-1]
			in.Held++
			in.ByStatus[status]++
			if len(in.Sagas) < saga.HeldSagasListed {
				in.Sagas = append(in.Sagas, id)
			}
			if expires.After(in.LeaseExpiresAt) {
				in.LeaseExpiresAt = expires
			}
			return nil
		})
	})
	if err != nil {
		return saga.Gauges{}, interpretError("read gauges", err)
	}
	return g, nil
}

// Activity returns the window figures of saga.GaugeReader, read from one
// snapshot.
func (s *Store) Activity(ctx context.Context, window time.Duration) (a saga.Activity, err error) {
	defer s.observe(opActivity, time.Now(), &err)
	window = saga.ClampActivityWindow(window)
	now := s.clock.read()
	since := sql.Named("since", fmtTime(now.Add(-window)))
	err = s.readTx(ctx, func(r *rtx) error {
		a = saga.Activity{Now: now, Window: window, Buckets: saga.NewActivityBuckets(now, window)}
		if err := eachRow(r, sqlActivityStarted, []any{since}, func(rows *sql.Rows) error {
			var (
				minute string
				n      int64
			)
			if err := rows.Scan(&minute, &n); err != nil {
				return err
			}
			t, err := time.Parse(minuteLayout, minute)
			if err != nil {
				return err
			}
			if i := saga.BucketIndex(a.Buckets, t); i >= 0 {
				a.Buckets[i].Started += n
			}
			return nil
		}); err != nil {
			return err
		}
		var durations []time.Duration
		if err := eachRow(r, sqlActivityEnded, []any{since}, func(rows *sql.Rows) error {
			var (
				status           saga.SagaStatus
				created, endedAt time.Time
			)
			if err := rows.Scan(textCol[saga.SagaStatus]{&status}, timeCol{&created}, timeCol{&endedAt}); err != nil {
				return err
			}
			durations = append(durations, max(endedAt.Sub(created), 0))
			if i := saga.BucketIndex(a.Buckets, endedAt); i >= 0 {
				if status == saga.SagaStatusCompleted {
					a.Buckets[i].Completed++
				} else {
					a.Buckets[i].Failed++
				}
			}
			return nil
		}); err != nil {
			return err
		}
		a.Ended = int64(len(durations))
		a.P50, a.P95 = saga.NearestRank(durations, 0.50), saga.NearestRank(durations, 0.95)
		return eachRow(r, sqlActivityInstances, []any{since, sql.Named("limit", saga.RecentSagasSampled)}, func(rows *sql.Rows) error {
			var in saga.InstanceSeen
			err := rows.Scan(&in.ID, timeCol{&in.LastSeen}, &in.Events)
			a.Instances = append(a.Instances, in)
			return err
		})
	})
	if err != nil {
		return saga.Activity{}, interpretError("read activity", err)
	}
	saga.SortInstancesSeen(a.Instances)
	return a, nil
}

// eachRow runs query in r and calls scan on each row.
func eachRow(r *rtx, query string, args []any, scan func(rows *sql.Rows) error) error {
	rows, err := r.query(query, args...)
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
