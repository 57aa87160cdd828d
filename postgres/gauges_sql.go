package postgres

// The SQL of the saga.GaugeReader queries. Each reads an index: the counts
// by status scan sagas_status_created_at_id_idx alone; the running, Failed
// and leased sagas are found through the same index by status (they are
// few: the rest have ended); the window figures read the created_at index
// and the partial index of finished sagas.

// sqlGaugesRunning reads, over the running and Failed sagas: the creation
// time of the oldest running one, the Failed ones waiting for an operator
// (no retry requested) and the stuck ones (running, no live lease, no
// next-run time).
const sqlGaugesRunning = `
SELECT now(),
	min(s.created_at) FILTER (WHERE s.status IN ('Created', 'Executing', 'Compensating')),
	count(*) FILTER (WHERE s.status = 'Failed' AND s.control_request IS DISTINCT FROM 'retry'),
	count(*) FILTER (WHERE s.status IN ('Created', 'Executing', 'Compensating')
		AND (s.owner_id IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= now())
		AND s.next_run_at IS NULL)
FROM sagas AS s
WHERE s.status IN ('Created', 'Executing', 'Compensating', 'Failed')`

// sqlGaugesLeases lists the instances holding live leases on sagas not
// ended, with how many of each status, their latest expiry and the first
// $1 held sagas, oldest first.
const sqlGaugesLeases = `
SELECT s.owner_id, count(*), max(s.lease_expires_at),
	(array_agg(s.id ORDER BY s.created_at, s.id))[1:$1],
	count(*) FILTER (WHERE s.status = 'Created'),
	count(*) FILTER (WHERE s.status = 'Executing'),
	count(*) FILTER (WHERE s.status = 'Compensating'),
	count(*) FILTER (WHERE s.status = 'Paused')
FROM sagas AS s
WHERE s.status IN ('Created', 'Executing', 'Compensating', 'Paused')
	AND s.owner_id IS NOT NULL AND s.lease_expires_at > now()
GROUP BY s.owner_id
ORDER BY s.owner_id COLLATE "C"`

// sqlActivityStarted counts the sagas created in the $1 µs before now(),
// by minute (the minute number since the epoch).
const sqlActivityStarted = `
SELECT floor(extract(epoch FROM s.created_at) / 60)::bigint, count(*)
FROM sagas AS s
WHERE s.created_at > now() - $1::bigint * interval '1 microsecond'
GROUP BY 1`

// sqlActivityEnded counts the sagas that ended in the $1 µs before now()
// by minute, Completed and otherwise, and, in the row whose minute is NULL,
// the total with the median and 95th percentile duration in µs (nearest
// rank).
const sqlActivityEnded = `
WITH ended AS (
	SELECT s.status, s.completed_at,
		(extract(epoch FROM s.completed_at - s.created_at) * 1000000)::bigint AS us
	FROM sagas AS s
	WHERE s.status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut')
		AND s.completed_at > now() - $1::bigint * interval '1 microsecond'
	UNION ALL
	SELECT s.status, s.completed_at,
		(extract(epoch FROM s.completed_at - s.created_at) * 1000000)::bigint
	FROM sagas AS s
	WHERE s.status = 'Failed' AND s.completed_at > now() - $1::bigint * interval '1 microsecond'
)
SELECT floor(extract(epoch FROM completed_at) / 60)::bigint,
	count(*) FILTER (WHERE status = 'Completed'),
	count(*) FILTER (WHERE status <> 'Completed'),
	coalesce(percentile_disc(0.5) WITHIN GROUP (ORDER BY us), 0),
	coalesce(percentile_disc(0.95) WITHIN GROUP (ORDER BY us), 0)
FROM ended
GROUP BY GROUPING SETS ((1), ())`

// sqlActivityInstances lists the instances that wrote events for the $2
// newest sagas created in the $1 µs before now(), most recently seen first.
const sqlActivityInstances = `
WITH recent AS (
	SELECT s.id FROM sagas AS s
	WHERE s.created_at > now() - $1::bigint * interval '1 microsecond'
	ORDER BY s.created_at DESC, s.id DESC
	LIMIT $2
)
SELECT e.instance_id, max(e.created_at), count(*)
FROM recent JOIN saga_events AS e ON e.saga_id = recent.id
WHERE e.instance_id IS NOT NULL AND e.instance_id <> ''
GROUP BY e.instance_id
ORDER BY max(e.created_at) DESC, e.instance_id COLLATE "C"`
