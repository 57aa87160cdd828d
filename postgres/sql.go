package postgres

// The store's SQL. Every statement is a constant; optional filters are
// parameters, never string-built. Durations travel as microseconds and are
// added to the database's now(), so that every correctness-relevant time
// comes from the database clock.

// sagaColumns is the column list scanned by scanSaga, on alias s.
const sagaColumns = `s.id, s.name, s.status, s.transaction_id, s.user_id, s.transaction_context,
	s.definition, s.idempotency_key, s.completed_steps, s.total_steps, s.error, s.compensate_to,
	s.control_request, s.deadline, s.owner_id, s.lease_expires_at, s.lease_epoch, s.next_run_at,
	s.event_seq, s.created_at, s.updated_at, s.started_at, s.completed_at, s.legal_hold`

// headColumns follow sagaColumns where the store learns the head of the
// saga's chain (scanSagaHead): the hash of its latest event and the
// attribution of its pending request.
const headColumns = `s.last_hash, s.control_seq, s.control_by`

// stepColumns is the column list scanned by scanStep, on aliases st (the
// step) and c (its compensation, left-joined).
const stepColumns = `st.saga_id, st.step_index, st.step_name, st.status, st.attempts, st.input_data,
	st.output_data, st.error, st.uncertain, st.started_at, st.completed_at,
	c.status, c.attempts, c.attempts_before_retry, c.output_data, c.error, c.started_at, c.completed_at`

// Transaction control of group-committed batches and consistent reads.
//
// A group-committed transaction runs its statements with generic plans:
// they are written to plan well without their parameters' values (lookups
// by primary key, no predicate that needs a constant to be pruned), and
// planning them afresh at every execution, as PostgreSQL otherwise keeps
// doing for them, costs as much as running them.
const (
	sqlBegin         = `BEGIN`
	sqlGenericPlans  = `SET LOCAL plan_cache_mode = force_generic_plan`
	sqlBeginSnapshot = `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`
	sqlCommit        = `COMMIT`
	sqlRollback      = `ROLLBACK`
)

// sqlCreateSaga inserts a saga with its steps and events in one statement.
// ON CONFLICT DO NOTHING (the idempotency key, or the id when a retried
// write had in fact committed) makes a conflict an empty answer rather than
// an error, which would abort the other writes of the group commit.
//
// $1 id, $2 name, $3 status, $4 transaction_id, $5 user_id, $6 context,
// $7 definition, $8 idempotency_key, $9 completed_steps, $10 total_steps,
// $11 error, $12 compensate_to, $13 timeout (µs, 0: no deadline),
// $14 owner, $15 lease (µs, 0: none), $16 runnable, $17 event count,
// $18 started, $19 ended, $20 steps (JSON array), $21 events (JSON array,
// sealed: numbered and hashed), $22 the time of the write, $23 the hash
// of the last event. The saga's times, its deadline (created_at +
// timeout) and its events' times are the time of the write; its lease and
// next-run time are on the database clock.
const sqlCreateSaga = `
WITH ins AS (
	INSERT INTO sagas (id, name, status, transaction_id, user_id, transaction_context, definition,
		idempotency_key, completed_steps, total_steps, error, compensate_to, deadline,
		owner_id, lease_expires_at, lease_epoch, next_run_at, event_seq,
		started_at, completed_at, created_at, updated_at, last_hash)
	VALUES ($1, $2, $3, $4, $5, coalesce($6::jsonb, '{}'), $7,
		$8, $9, $10, $11, $12,
		CASE WHEN $13::bigint > 0 THEN $22::timestamptz + $13::bigint * interval '1 microsecond' END,
		CASE WHEN $15::bigint > 0 THEN $14::text END,
		CASE WHEN $15::bigint > 0 THEN now() + $15::bigint * interval '1 microsecond' END,
		CASE WHEN $15::bigint > 0 THEN 1 ELSE 0 END,
		CASE WHEN $16::bool THEN now() END,
		$17,
		CASE WHEN $18::bool THEN $22::timestamptz END,
		CASE WHEN $19::bool THEN $22::timestamptz END,
		$22::timestamptz, $22::timestamptz, $23::bytea)
	ON CONFLICT DO NOTHING
	RETURNING id, deadline, lease_expires_at
), step_rows AS (
	INSERT INTO saga_steps (id, saga_id, step_name, step_index, status, input_data, output_data,
		attempts, error, uncertain, started_at, completed_at, created_at, updated_at)
	SELECT u.id, ins.id, u.name, u.idx, u.status, u.input, u.output,
		u.attempts, u.error, u.uncertain,
		CASE WHEN u.started THEN $22::timestamptz END, CASE WHEN u.ended THEN $22::timestamptz END,
		$22::timestamptz, $22::timestamptz
	FROM ins, jsonb_to_recordset($20::jsonb) AS u(id uuid, name text, idx int, status step_status,
		input jsonb, output jsonb, attempts int, error text, uncertain bool, started bool, ended bool)
), event_rows AS (
	INSERT INTO saga_events (id, saga_id, seq, event_type, step_index, data, instance_id, actor, created_at, hash)
	SELECT e.id, ins.id, e.seq, e.type, e.step, e.data, e.instance, e.actor, $22::timestamptz, e.hash
	FROM ins, jsonb_to_recordset($21::jsonb) AS ` + eventRecord + `
)
SELECT now(), deadline, lease_expires_at FROM ins`

// eventRecord is the row type of the sealed events passed as a JSON array.
const eventRecord = `e(id uuid, seq bigint, type text, step int, data jsonb, instance text, actor text, hash bytea)`

// sqlApply writes one fenced transition in one statement. The saga row is
// updated only while the writer's lease is live; every other write joins
// the updated row, so a refused write changes nothing and, returning no
// row, raises no error. A step or compensation update naming a step the
// saga does not have fails the statement (a NOT NULL and a foreign key
// violation), so nothing of the transition is written. A retried write
// whose first attempt did commit (its reply lost with the connection) is
// refused: the saga row keeps the id of the first event of the latest
// transition written (last_write_id), so the test costs no lookup.
//
// $1 id, $2 owner, $3 epoch, $4 status (NULL: keep), $5 completed_steps,
// $6 error, $7 compensate_to, $8 the control request to clear (NULL: none), $9 started, $10 ended,
// $11 wake kind, $12 wake after (µs), $13 wake at, $14 release,
// $15 lease (µs), $16 event count,
// $17 steps, $18 compensations, $19 events (JSON arrays),
// $20 checkpoint id, $21 checkpoint step, $22 checkpoint context (NULL: none),
// $23 the time of the write, $24 the event_seq the events were chained
// after (NULL: no fence on it), $25 the hash of the last event (NULL: keep),
// $26 the id of the first event (NULL: none).
// The rows' times and the events' are the time of the write, and so is the
// deadline test (the deadline is created_at + timeout); the lease and the
// next-run time are on the database clock.
const sqlApply = `
WITH upd AS (
	UPDATE sagas SET
		status = coalesce($4::saga_status, status),
		completed_steps = $5,
		error = $6,
		compensate_to = $7::saga_status,
		control_request = CASE WHEN control_request = $8::text THEN NULL ELSE control_request END,
		control_seq = CASE WHEN control_request = $8::text THEN NULL ELSE control_seq END,
		control_by = CASE WHEN control_request = $8::text THEN NULL ELSE control_by END,
		started_at = CASE WHEN $9::bool THEN coalesce(started_at, $23::timestamptz) ELSE started_at END,
		completed_at = CASE WHEN $10::bool THEN $23::timestamptz ELSE completed_at END,
		-- A request this write does not carry out is due now (SET sees the
		-- old row: control_request is the request pending before it).
		next_run_at = CASE
			WHEN control_request IS NOT NULL AND control_request IS DISTINCT FROM $8::text THEN now()
			WHEN $11::int = 1 THEN NULL
			WHEN $11::int = 2 THEN now() + $12::bigint * interval '1 microsecond'
			WHEN $11::int = 3 THEN $13::timestamptz
			ELSE next_run_at END,
		owner_id = CASE WHEN $14::bool THEN NULL ELSE owner_id END,
		lease_expires_at = CASE
			WHEN $14::bool THEN NULL
			ELSE now() + $15::bigint * interval '1 microsecond' END,
		event_seq = event_seq + $16::int,
		last_hash = coalesce($25::bytea, last_hash),
		last_write_id = coalesce($26::uuid, last_write_id),
		updated_at = $23::timestamptz
	WHERE id = $1 AND owner_id = $2 AND lease_epoch = $3 AND lease_expires_at > now()
		AND ($24::bigint IS NULL OR event_seq = $24::bigint)
		AND ($26::uuid IS NULL OR last_write_id IS DISTINCT FROM $26::uuid)
	RETURNING id, event_seq, lease_expires_at, control_request, control_seq, control_by,
		(deadline IS NOT NULL AND deadline <= $23::timestamptz) AS deadline_exceeded
), step_rows AS (
	UPDATE saga_steps AS st SET
		status = u.status,
		attempts = u.attempts,
		output_data = coalesce(u.output, st.output_data),
		error = u.error,
		uncertain = u.uncertain,
		started_at = CASE WHEN u.start THEN coalesce(st.started_at, $23::timestamptz) ELSE st.started_at END,
		completed_at = CASE WHEN u.stop THEN $23::timestamptz ELSE st.completed_at END,
		updated_at = $23::timestamptz
	FROM upd, jsonb_to_recordset($17::jsonb) AS u(idx int, status step_status, attempts int,
		output jsonb, error text, uncertain bool, start bool, stop bool)
	WHERE st.saga_id = upd.id AND st.step_index = u.idx
	RETURNING st.step_index
), missing_steps AS (
	-- A step update whose step has no row would be lost: turn it into an
	-- insert without a name, which fails (step_name is NOT NULL) and so
	-- fails the whole transition.
	INSERT INTO saga_steps (id, saga_id, step_name, step_index, status)
	SELECT gen_random_uuid(), upd.id, NULL, u.idx, u.status
	FROM upd, jsonb_to_recordset($17::jsonb) AS u(idx int, status step_status)
	WHERE u.idx NOT IN (SELECT step_index FROM step_rows)
), compensation_rows AS (
	INSERT INTO saga_compensations AS c (id, saga_id, step_index, status, attempts, attempts_before_retry,
		output_data, error, started_at, completed_at, created_at, updated_at)
	SELECT u.id, upd.id, u.idx, u.status, u.attempts, coalesce(u.before_retry, 0), u.output, u.error,
		CASE WHEN u.start THEN $23::timestamptz END, CASE WHEN u.stop THEN $23::timestamptz END,
		$23::timestamptz, $23::timestamptz
	FROM upd, jsonb_to_recordset($18::jsonb) AS u(id uuid, idx int, status compensation_status,
		attempts int, before_retry int, output jsonb, error text, start bool, stop bool)
	ON CONFLICT (saga_id, step_index) DO UPDATE SET
		status = excluded.status,
		attempts = excluded.attempts,
		attempts_before_retry = excluded.attempts_before_retry,
		output_data = coalesce(excluded.output_data, c.output_data),
		error = excluded.error,
		started_at = coalesce(c.started_at, excluded.started_at),
		completed_at = coalesce(excluded.completed_at, c.completed_at),
		updated_at = $23::timestamptz
), event_rows AS (
	INSERT INTO saga_events (id, saga_id, seq, event_type, step_index, data, instance_id, actor, created_at, hash)
	SELECT e.id, upd.id, e.seq, e.type, e.step, e.data, e.instance, e.actor, $23::timestamptz, e.hash
	FROM upd, jsonb_to_recordset($19::jsonb) AS ` + eventRecord + `
), checkpoint_row AS (
	INSERT INTO saga_checkpoints (id, saga_id, step_index, context, created_at)
	SELECT $20::uuid, upd.id, $21::int, $22::jsonb, $23::timestamptz FROM upd WHERE $22::jsonb IS NOT NULL
)
SELECT now(), lease_expires_at, control_request, control_seq, control_by, deadline_exceeded, event_seq FROM upd`

// sqlReadHead reads the end of saga $1's chain and its pending request.
const sqlReadHead = `
SELECT event_seq, last_hash, control_request, control_seq, control_by, updated_at FROM sagas WHERE id = $1`

// sqlApplyRefused explains an Apply that updated nothing: whether the saga
// exists, whether the transition had in fact been written by an earlier
// attempt (its first event, $2, is there), whether the writer ($3, epoch
// $4) still holds the lease, whether the deadline has passed at the time
// of the write ($5), and where the saga's chain ends now (the write was
// chained to another head).
const sqlApplyRefused = `
SELECT (SELECT e.seq FROM saga_events e WHERE e.id = $2::uuid AND e.saga_id = s.id),
	now(), s.lease_expires_at, s.control_request,
	(s.deadline IS NOT NULL AND s.deadline <= $5::timestamptz),
	coalesce(s.owner_id = $3 AND s.lease_epoch = $4 AND s.lease_expires_at > now(), false),
	s.event_seq, s.last_hash, s.control_seq, s.control_by, s.updated_at
FROM sagas s WHERE s.id = $1`

// Reads of one saga.
const (
	sqlGetSaga      = `SELECT ` + sagaColumns + ` FROM sagas AS s WHERE s.id = $1`
	sqlGetSagaByKey = `SELECT id FROM sagas WHERE idempotency_key = $1`
	// sqlSagaStatuses reads the statuses of the sagas $1 by primary key.
	sqlSagaStatuses = `SELECT id, status FROM sagas WHERE id = ANY($1::uuid[])`
	sqlGetSteps     = `
SELECT ` + stepColumns + `
FROM saga_steps AS st
LEFT JOIN saga_compensations AS c ON c.saga_id = st.saga_id AND c.step_index = st.step_index
WHERE st.saga_id = ANY($1::uuid[])
ORDER BY st.saga_id, st.step_index`
)

// sqlListWhere is the tail shared by the list queries: optional filters
// ($1 status, $2 name, $3 transaction id), the created_after bound ($4,
// -infinity when absent) and the keyset cursor ($5, $6: infinity and the
// largest UUID when absent), newest first, $7 rows. Each list query leads
// with the equality its index serves, so a generic plan still uses it.
const sqlListWhere = `
	AND ($1::saga_status IS NULL OR s.status = $1::saga_status)
	AND ($2::text IS NULL OR s.name = $2::text)
	AND ($3::uuid IS NULL OR s.transaction_id = $3::uuid)
	AND s.created_at > $4::timestamptz
	AND (s.created_at, s.id) < ($5::timestamptz, $6::uuid)
ORDER BY s.created_at DESC, s.id DESC
LIMIT $7`

// The list queries, by the filter that leads.
const (
	sqlListSagas              = `SELECT ` + sagaColumns + ` FROM sagas AS s WHERE true` + sqlListWhere
	sqlListSagasByStatus      = `SELECT ` + sagaColumns + ` FROM sagas AS s WHERE s.status = $1::saga_status` + sqlListWhere
	sqlListSagasByName        = `SELECT ` + sagaColumns + ` FROM sagas AS s WHERE s.name = $2::text` + sqlListWhere
	sqlListSagasByTransaction = `SELECT ` + sagaColumns + ` FROM sagas AS s WHERE s.transaction_id = $3::uuid` + sqlListWhere
)

// sqlListEvents returns a saga's events after seq $2, at most $3 (NULL: all),
// and one row of NULLs when the saga has none: no row at all means no saga.
const sqlListEvents = `
SELECT e.id, e.seq, e.event_type, e.step_index, e.data, e.instance_id, e.actor, e.created_at, e.hash
FROM sagas AS s
LEFT JOIN LATERAL (
	SELECT * FROM saga_events WHERE saga_id = s.id AND seq > $2 ORDER BY seq LIMIT $3
) AS e ON true
WHERE s.id = $1
ORDER BY e.seq`

// sqlLatestCheckpoint returns a saga's newest checkpoint, NULLs when it has
// none, and no row when there is no such saga.
const sqlLatestCheckpoint = `
SELECT c.step_index, c.context, c.created_at
FROM sagas AS s
LEFT JOIN LATERAL (
	SELECT * FROM saga_checkpoints WHERE saga_id = s.id ORDER BY created_at DESC, id DESC LIMIT 1
) AS c ON true
WHERE s.id = $1`

// sqlClaimSagas leases up to $3 runnable sagas to $1 for $2 µs. Runnable:
// due (next_run_at <= now(), served by the partial index on next_run_at)
// and without a live lease. SKIP LOCKED lets concurrent claimers pass each
// other by; the epoch increment fences the previous holder. The update
// finds the locked rows by primary key (= ANY of an array), which a
// generic plan does too, where a join with the CTE may scan the table.
const sqlClaimSagas = `
WITH runnable AS (
	SELECT id FROM sagas
	WHERE next_run_at <= now() AND (owner_id IS NULL OR lease_expires_at <= now())
	ORDER BY next_run_at
	LIMIT $3
	FOR UPDATE SKIP LOCKED
)
UPDATE sagas AS s SET
	owner_id = $1,
	lease_expires_at = now() + $2::bigint * interval '1 microsecond',
	lease_epoch = s.lease_epoch + 1,
	updated_at = greatest(now(), s.updated_at)
WHERE s.id = ANY (ARRAY(SELECT id FROM runnable))
RETURNING ` + sagaColumns + `, ` + headColumns

// sqlRenewLeases extends the live leases $1 holds on the sagas $2 at the
// epochs $3 to now() + $4 µs. Rows another transaction is writing are
// skipped, not waited for: that write is the holder's own transition, which
// extends the lease itself (or finds it lost). Waiting instead would let the
// renewal and a group commit lock the same rows in opposite orders, and
// each such deadlock costs deadlock_timeout. Skipped rows whose lease is
// live in the statement's snapshot are reported as renewed.
const sqlRenewLeases = `
WITH held AS (
	SELECT s.id FROM sagas AS s
	JOIN unnest($2::uuid[], $3::bigint[]) AS l(id, epoch) ON s.id = l.id
	WHERE s.owner_id = $1 AND s.lease_epoch = l.epoch AND s.lease_expires_at > now()
), locked AS (
	SELECT s.id FROM sagas AS s WHERE s.id IN (SELECT id FROM held)
	FOR UPDATE SKIP LOCKED
), renewed AS (
	UPDATE sagas AS s SET lease_expires_at = now() + $4::bigint * interval '1 microsecond'
	FROM locked JOIN unnest($2::uuid[], $3::bigint[]) AS l(id, epoch) ON l.id = locked.id
	WHERE s.id = locked.id AND s.owner_id = $1 AND s.lease_epoch = l.epoch AND s.lease_expires_at > now()
	RETURNING s.id
)
SELECT id FROM renewed
UNION ALL
SELECT id FROM held WHERE id NOT IN (SELECT id FROM locked)`

// sqlLockSaga locks saga $1 and reads its status and the end of its chain,
// for an operator request.
const sqlLockSaga = `
SELECT status, event_seq, last_hash, control_request, control_seq, control_by, updated_at
FROM sagas WHERE id = $1 FOR UPDATE`

// sqlRequestControl records operator action $2 on saga $1, requested by
// event $3 of actor $4 at $5, with the events $8 (sealed) ending the chain
// at seq $6 with hash $7, and makes the saga runnable at once.
const sqlRequestControl = `
WITH upd AS (
	UPDATE sagas AS s SET control_request = $2, control_seq = $3, control_by = $4,
		next_run_at = now(), updated_at = $5, event_seq = $6, last_hash = $7
	WHERE s.id = $1
	RETURNING ` + sagaColumns + `, ` + headColumns + `
), event_rows AS (
	INSERT INTO saga_events (id, saga_id, seq, event_type, step_index, data, instance_id, actor, created_at, hash)
	SELECT e.id, upd.id, e.seq, e.type, e.step, e.data, e.instance, e.actor, $5, e.hash
	FROM upd, jsonb_to_recordset($8::jsonb) AS ` + eventRecord + `
)
SELECT * FROM upd`

// Statistics: counts by status, then the window of $1 µs before now().
const (
	sqlCountByStatus = `SELECT status, count(*) FROM sagas GROUP BY status`
	sqlWindowStats   = `
WITH w AS (
	SELECT now() - $1::bigint * interval '1 microsecond' AS since
), ended AS (
	SELECT s.status, extract(epoch FROM s.completed_at - s.created_at)::float8 AS secs
	FROM sagas AS s, w
	WHERE s.status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut') AND s.completed_at > w.since
	UNION ALL
	SELECT s.status, extract(epoch FROM s.completed_at - s.created_at)::float8
	FROM sagas AS s, w
	WHERE s.status = 'Failed' AND s.completed_at > w.since
)
SELECT
	(SELECT count(*) FROM sagas AS s, w WHERE s.created_at > w.since),
	count(*) FILTER (WHERE status = 'Completed'),
	count(*) FILTER (WHERE status <> 'Completed'),
	count(*),
	coalesce(avg(secs), 0)::float8,
	coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY secs), 0)::float8
FROM ended`
)

// sqlDeleteExpired deletes up to $3 sagas that ended in status $1 more
// than $2 µs before $8 (the time of the write, the frame of completed_at)
// and are not under legal hold, and writes the tombstone of each (rule $4,
// requested by actor $5 with reason $6 from address $7), and their other
// rows (a compensation goes with its step). The status leads the index it walks, oldest
// first.
const sqlDeleteExpired = `
WITH gone AS (
	DELETE FROM sagas WHERE id = ANY (ARRAY(
		SELECT id FROM sagas
		WHERE status = $1::saga_status AND status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut')
			AND completed_at < $8::timestamptz - $2::bigint * interval '1 microsecond'
			AND NOT legal_hold
		ORDER BY completed_at
		LIMIT $3
		FOR UPDATE SKIP LOCKED
	))
	RETURNING id, name, status, event_seq, last_hash, completed_at
), gone_steps AS (
	DELETE FROM saga_steps WHERE saga_id IN (SELECT id FROM gone)
), gone_events AS (
	DELETE FROM saga_events WHERE saga_id IN (SELECT id FROM gone)
), gone_checkpoints AS (
	DELETE FROM saga_checkpoints WHERE saga_id IN (SELECT id FROM gone)
)
INSERT INTO saga_deletions (saga_id, name, final_status, event_seq, last_hash, completed_at,
	deleted_at, rule, actor, reason, client_addr)
SELECT id, name, status, event_seq, last_hash, completed_at, now(), $4, $5, $6, $7 FROM gone`

// sqlPing is the health check's round trip.
const sqlPing = `SELECT 1`

// sqlImport writes a whole saga as it is, in one statement, unless a saga
// with its id exists (then nothing is written and no row comes back).
//
// $1 id, $2 name, $3 status, $4 transaction_id, $5 user_id, $6 context,
// $7 definition, $8 idempotency_key, $9 completed_steps, $10 total_steps,
// $11 error, $12 compensate_to, $13 control_request, $14 deadline,
// $15 owner_id, $16 lease_expires_at, $17 lease_epoch, $18 next_run_at,
// $19 event_seq, $20 created_at, $21 updated_at, $22 started_at,
// $23 completed_at, $24 steps, $25 compensations, $26 events,
// $27 checkpoints (JSON arrays), $28 last_hash, $29 control_seq,
// $30 control_by, $31 legal_hold.
const sqlImport = `
WITH ins AS (
	INSERT INTO sagas (id, name, status, transaction_id, user_id, transaction_context, definition,
		idempotency_key, completed_steps, total_steps, error, compensate_to, control_request, deadline,
		owner_id, lease_expires_at, lease_epoch, next_run_at, event_seq,
		created_at, updated_at, started_at, completed_at,
		last_hash, control_seq, control_by, legal_hold)
	VALUES ($1, $2, $3, $4, $5, coalesce($6::jsonb, '{}'), $7,
		$8, $9, $10, $11, $12, $13, $14,
		$15, $16, $17, $18, $19,
		$20, $21, $22, $23,
		$28, $29, $30, $31)
	ON CONFLICT (id) DO NOTHING
	RETURNING id
), step_rows AS (
	INSERT INTO saga_steps (id, saga_id, step_name, step_index, status, input_data, output_data,
		attempts, error, uncertain, started_at, completed_at, created_at, updated_at)
	SELECT u.id, ins.id, u.name, u.idx, u.status, u.input, u.output, u.attempts, u.error, u.uncertain,
		u.started_at, u.completed_at, $20, $21
	FROM ins, jsonb_to_recordset($24::jsonb) AS u(id uuid, name text, idx int, status step_status,
		input jsonb, output jsonb, attempts int, error text, uncertain bool,
		started_at timestamptz, completed_at timestamptz)
), compensation_rows AS (
	INSERT INTO saga_compensations (id, saga_id, step_index, status, attempts, attempts_before_retry,
		output_data, error, started_at, completed_at, created_at, updated_at)
	SELECT u.id, ins.id, u.idx, u.status, u.attempts, coalesce(u.before_retry, 0), u.output, u.error,
		u.started_at, u.completed_at, $20, $21
	FROM ins, jsonb_to_recordset($25::jsonb) AS u(id uuid, idx int, status compensation_status,
		attempts int, before_retry int, output jsonb, error text, started_at timestamptz, completed_at timestamptz)
), event_rows AS (
	INSERT INTO saga_events (id, saga_id, seq, event_type, step_index, data, instance_id, actor, created_at, hash)
	SELECT e.id, ins.id, e.seq, e.type, e.step, e.data, e.instance, e.actor, e.created_at, e.hash
	FROM ins, jsonb_to_recordset($26::jsonb) AS e(id uuid, seq bigint, type text, step int,
		data jsonb, instance text, actor text, created_at timestamptz, hash bytea)
), checkpoint_rows AS (
	INSERT INTO saga_checkpoints (id, saga_id, step_index, context, created_at)
	SELECT c.id, ins.id, c.idx, c.context, c.created_at
	FROM ins, jsonb_to_recordset($27::jsonb) AS c(id uuid, idx int, context jsonb, created_at timestamptz)
)
SELECT id FROM ins`
