package sqlite

import (
	"context"
	"database/sql"
	"math"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Operation names of the saga.GaugeReader methods, for Config.Observe.
const (
	opGauges   = "gauges"
	opActivity = "activity"
)

var _ saga.GaugeReader = (*Store)(nil)

// The SQL of the saga.GaugeReader queries, on the indexes the PostgreSQL
// store's use. A stored time t counts in microseconds since the epoch as
// unixepoch(substr(t, 1, 19)) * 1000000 + the six digits after the point,
// exactly (SQLite's date functions keep milliseconds only).
const (
	// sqlGaugesRunning reads, over the running and Failed sagas: the
	// creation of the oldest running one, the Failed ones waiting for an
	// operator (no retry requested) and the stuck ones (running, no live
	// lease, no next-run time).
	sqlGaugesRunning = `
SELECT min(CASE WHEN status IN ('Created', 'Executing', 'Compensating') THEN created_at END),
	coalesce(sum(status = 'Failed' AND control_request IS NOT 'retry'), 0),
	coalesce(sum(status IN ('Created', 'Executing', 'Compensating')
		AND (owner_id IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= :now)
		AND next_run_at IS NULL), 0)
FROM sagas
WHERE status IN ('Created', 'Executing', 'Compensating', 'Failed')`

	// sqlGaugesLeases lists the sagas not ended that hold a live lease, by
	// owner, oldest first (they are the sagas in flight: few).
	sqlGaugesLeases = `
SELECT owner_id, id, status, lease_expires_at
FROM sagas
WHERE status IN ('Created', 'Executing', 'Compensating', 'Paused')
	AND owner_id IS NOT NULL AND lease_expires_at > :now
ORDER BY owner_id, created_at, id`

	// sqlActivityStarted counts the sagas created since :since by minute
	// (the minute number since the epoch).
	sqlActivityStarted = `
SELECT unixepoch(substr(created_at, 1, 19)) / 60, count(*)
FROM sagas WHERE created_at > :since
GROUP BY 1`

	// sqlActivityEnded is the sagas that ended since :since, with their
	// durations in µs.
	sqlActivityEnded = `
WITH ended AS (
	SELECT status, completed_at,
		(unixepoch(substr(completed_at, 1, 19)) - unixepoch(substr(created_at, 1, 19))) * 1000000
			+ CAST(substr(completed_at, 21, 6) AS INTEGER) - CAST(substr(created_at, 21, 6) AS INTEGER) AS us
	FROM sagas INDEXED BY sagas_finished_completed_at_idx
	WHERE status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut') AND completed_at > :since
	UNION ALL
	SELECT status, completed_at,
		(unixepoch(substr(completed_at, 1, 19)) - unixepoch(substr(created_at, 1, 19))) * 1000000
			+ CAST(substr(completed_at, 21, 6) AS INTEGER) - CAST(substr(created_at, 21, 6) AS INTEGER)
	FROM sagas
	WHERE status = 'Failed' AND completed_at > :since
)`
	// sqlActivityEndedByMinute counts them by minute, Completed and not.
	sqlActivityEndedByMinute = sqlActivityEnded + `
SELECT unixepoch(substr(completed_at, 1, 19)) / 60, sum(status = 'Completed'), sum(status <> 'Completed')
FROM ended GROUP BY 1`
	// sqlActivityEndedAt reads the duration at rank :offset (0-based,
	// ascending).
	sqlActivityEndedAt = sqlActivityEnded + `
SELECT us FROM ended ORDER BY us LIMIT 1 OFFSET :offset`

	// sqlActivityInstances lists the instances that wrote events for the
	// :limit newest sagas created since :since, most recently seen first.
	sqlActivityInstances = `
WITH recent AS (
	SELECT id FROM sagas
	WHERE created_at > :since
	ORDER BY created_at DESC, id DESC
	LIMIT :limit
)
SELECT e.instance_id, max(e.created_at), count(*)
FROM recent JOIN saga_events AS e ON e.saga_id = recent.id
WHERE e.instance_id IS NOT NULL AND e.instance_id <> ''
GROUP BY e.instance_id
ORDER BY max(e.created_at) DESC, e.instance_id`
)

// Gauges returns the cluster-wide figures of saga.GaugeReader, read from
// one snapshot at the store's clock.
func (s *Store) Gauges(ctx context.Context) (g saga.Gauges, err error) {
	defer s.observe(opGauges, time.Now(), &err)
	err = s.readTx(ctx, func(r *rtx) error {
		g = saga.Gauges{Now: s.clock.read(), ByStatus: make(map[saga.SagaStatus]int64, len(saga.SagaStatuses))}
		now := sql.Named("now", fmtTime(g.Now))
		for _, st := range saga.SagaStatuses {
			g.ByStatus[st] = 0
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
			g.ByStatus[status] = n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		var oldest *time.Time
		if err := r.queryRow(sqlGaugesRunning, []any{now}, nullTimeCol{&oldest}, &g.FailedWaiting, &g.Stuck); err != nil {
			return err
		}
		if oldest != nil {
			g.OldestRunningAge = max(g.Now.Sub(*oldest), 0)
		}
		rows, err = r.query(sqlGaugesLeases, now)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				owner   string
				id      saga.ID
				status  saga.SagaStatus
				expires time.Time
			)
			if err := rows.Scan(&owner, idCol{&id}, textCol[saga.SagaStatus]{&status}, timeCol{&expires}); err != nil {
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
		}
		return rows.Err()
	})
	if err != nil {
		return saga.Gauges{}, interpretError("read gauges", err)
	}
	return g, nil
}

// Activity returns the window figures of saga.GaugeReader, read from one
// snapshot at the store's clock.
func (s *Store) Activity(ctx context.Context, window time.Duration) (a saga.Activity, err error) {
	defer s.observe(opActivity, time.Now(), &err)
	window = saga.ClampActivityWindow(window)
	err = s.readTx(ctx, func(r *rtx) error {
		a = saga.Activity{Now: s.clock.read(), Window: window}
		since := sql.Named("since", fmtTime(a.Now.Add(-window)))
		a.Buckets = saga.NewActivityBuckets(a.Now, window)
		bucket := func(minute int64) *saga.ActivityPoint {
			if i := saga.BucketIndex(a.Buckets, time.Unix(minute*60, 0)); i >= 0 {
				return &a.Buckets[i]
			}
			return nil
		}
		if err := eachRow(r, sqlActivityStarted, []any{since}, func(rows *sql.Rows) error {
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
		if err := eachRow(r, sqlActivityEndedByMinute, []any{since}, func(rows *sql.Rows) error {
			var minute, completed, failed int64
			if err := rows.Scan(&minute, &completed, &failed); err != nil {
				return err
			}
			a.Ended += completed + failed
			if p := bucket(minute); p != nil {
				p.Completed += completed
				p.Failed += failed
			}
			return nil
		}); err != nil {
			return err
		}
		var err error
		if a.P50, err = nearestRank(r, since, a.Ended, 0.5); err != nil {
			return err
		}
		if a.P95, err = nearestRank(r, since, a.Ended, 0.95); err != nil {
			return err
		}
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
	return a, nil
}

// nearestRank returns the q-quantile of the durations of the n sagas that
// ended since, by the nearest-rank method (PostgreSQL's percentile_disc).
func nearestRank(r *rtx, since sql.NamedArg, n int64, q float64) (time.Duration, error) {
	if n == 0 {
		return 0, nil
	}
	rank := max(int64(math.Ceil(q*float64(n)))-1, 0)
	var us int64
	if err := r.queryRow(sqlActivityEndedAt, []any{since, sql.Named("offset", rank)}, &us); err != nil {
		return 0, err
	}
	return time.Duration(us) * time.Microsecond, nil
}

// eachRow runs query and calls scan on each of its rows.
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
