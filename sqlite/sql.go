package sqlite

// The store's SQL. Every statement is a constant with named parameters
// (:name); optional filters are parameters, never string-built. Times are
// computed by the store's clock and bound as text (see timeLayout), so that
// SQL only compares them.

// sagaColumns is the column list scanned by scanSaga.
const sagaColumns = `id, name, status, transaction_id, user_id, transaction_context,
	definition, idempotency_key, completed_steps, total_steps, error, compensate_to,
	control_request, deadline, owner_id, lease_expires_at, lease_epoch, next_run_at,
	event_seq, created_at, updated_at, started_at, completed_at, legal_hold`

// headColumns are the end of a saga's audit chain and the attribution of
// its pending request (sqlReadHead, Export).
const headColumns = `event_seq, last_hash, control_request, control_seq, control_by`

// stepColumns is the column list scanned by scanStep, on aliases st (the
// step) and c (its compensation, left-joined).
const stepColumns = `st.saga_id, st.step_index, st.step_name, st.status, st.attempts, st.input_data,
	st.output_data, st.error, st.uncertain, st.started_at, st.completed_at,
	c.status, c.attempts, c.attempts_before_retry, c.output_data, c.error, c.started_at, c.completed_at`

// Writes of CreateSaga. A conflict on the id or the idempotency key
// inserts nothing (no error), so that it does not abort the other writes
// of the group commit.
const (
	sqlInsertSaga = `
INSERT INTO sagas (id, name, status, transaction_id, user_id, transaction_context, definition,
	idempotency_key, completed_steps, total_steps, error, compensate_to, deadline,
	owner_id, lease_expires_at, lease_epoch, next_run_at, event_seq,
	started_at, completed_at, created_at, updated_at, last_hash)
VALUES (:id, :name, :status, :transaction_id, :user_id, coalesce(:context, '{}'), :definition,
	:idempotency_key, :completed_steps, :total_steps, :error, :compensate_to, :deadline,
	:owner_id, :lease_expires_at, :lease_epoch, :next_run_at, :event_seq,
	:started_at, :completed_at, :now, :now, :last_hash)
ON CONFLICT DO NOTHING`

	sqlInsertStep = `
INSERT INTO saga_steps (id, saga_id, step_name, step_index, status, input_data, output_data,
	attempts, error, uncertain, started_at, completed_at, created_at, updated_at)
VALUES (:id, :saga_id, :name, :idx, :status, :input, :output,
	:attempts, :error, :uncertain, :started_at, :completed_at, :now, :now)`

	sqlInsertEvent = `
INSERT INTO saga_events (id, saga_id, seq, event_type, step_index, data, instance_id, actor, created_at, hash)
VALUES (:id, :saga_id, :seq, :type, :step, :data, :instance, :actor, :now, :hash)`
)

// sqlReadHead reads the status of saga :id and the end of its chain.
const sqlReadHead = `SELECT status, ` + headColumns + ` FROM sagas WHERE id = :id`

// sqlApplySaga updates the saga row of a transition, fenced on the
// writer's lease: no row comes back when the lease is not live. SET sees
// the row as it was: control_request is the request pending before the
// write, and one this write does not carry out makes the saga due now.
const sqlApplySaga = `
UPDATE sagas SET
	status = coalesce(:status, status),
	completed_steps = :completed_steps,
	error = :error,
	compensate_to = :compensate_to,
	control_request = CASE WHEN control_request = :clear_control THEN NULL ELSE control_request END,
	control_seq = CASE WHEN control_request = :clear_control THEN NULL ELSE control_seq END,
	control_by = CASE WHEN control_request = :clear_control THEN NULL ELSE control_by END,
	started_at = CASE WHEN :started THEN coalesce(started_at, :now) ELSE started_at END,
	completed_at = CASE WHEN :ended THEN :now ELSE completed_at END,
	next_run_at = CASE
		WHEN control_request IS NOT NULL AND control_request IS NOT :clear_control THEN :now
		WHEN :wake_kind = 1 THEN NULL
		WHEN :wake_kind IN (2, 3) THEN :wake_at
		ELSE next_run_at END,
	owner_id = CASE WHEN :release THEN NULL ELSE owner_id END,
	lease_expires_at = CASE WHEN :release THEN NULL ELSE :lease_until END,
	event_seq = event_seq + :events,
	last_hash = coalesce(:last_hash, last_hash),
	updated_at = :now
WHERE id = :id AND owner_id = :owner AND lease_epoch = :epoch AND lease_expires_at > :now
RETURNING event_seq, lease_expires_at, control_request, deadline IS NOT NULL AND deadline <= :now`

// The other writes of a transition. An update of a step the saga does not
// have changes no row (the caller fails the transition); a compensation of
// such a step violates its foreign key.
const (
	sqlUpdateStep = `
UPDATE saga_steps SET
	status = :status,
	attempts = :attempts,
	output_data = coalesce(:output, output_data),
	error = :error,
	uncertain = :uncertain,
	started_at = CASE WHEN :start THEN coalesce(started_at, :now) ELSE started_at END,
	completed_at = CASE WHEN :stop THEN :now ELSE completed_at END,
	updated_at = :now
WHERE saga_id = :saga_id AND step_index = :idx`

	sqlUpsertCompensation = `
INSERT INTO saga_compensations (id, saga_id, step_index, status, attempts, attempts_before_retry,
	output_data, error, started_at, completed_at, created_at, updated_at)
VALUES (:id, :saga_id, :idx, :status, :attempts, :before_retry, :output, :error,
	CASE WHEN :start THEN :now END, CASE WHEN :stop THEN :now END, :now, :now)
ON CONFLICT (saga_id, step_index) DO UPDATE SET
	status = excluded.status,
	attempts = excluded.attempts,
	attempts_before_retry = excluded.attempts_before_retry,
	output_data = coalesce(excluded.output_data, output_data),
	error = excluded.error,
	started_at = coalesce(started_at, excluded.started_at),
	completed_at = coalesce(excluded.completed_at, completed_at),
	updated_at = excluded.updated_at`

	sqlInsertCheckpoint = `
INSERT INTO saga_checkpoints (id, saga_id, step_index, context, created_at)
VALUES (:id, :saga_id, :idx, :context, :now)`
)

// A transition written already (a caller retrying it after an error, with
// the same event ids): its first event, and the saga row's answer.
const (
	sqlEventSeq      = `SELECT seq FROM saga_events WHERE id = :id AND saga_id = :saga_id`
	sqlAppliedAnswer = `
SELECT lease_expires_at, control_request, deadline IS NOT NULL AND deadline <= :now
FROM sagas WHERE id = :saga_id`
)

// Reads of one saga.
const (
	sqlSagaExists  = `SELECT 1 FROM sagas WHERE id = :id`
	sqlSagaStatus  = `SELECT status FROM sagas WHERE id = :id`
	sqlSagaIDByKey = `SELECT id FROM sagas WHERE idempotency_key = :key`
	sqlGetSaga     = `SELECT ` + sagaColumns + ` FROM sagas WHERE id = :id`
	// sqlSagaStatuses reads the statuses of the sagas whose ids are in the
	// JSON array :ids.
	sqlSagaStatuses = `SELECT id, status FROM sagas WHERE id IN (SELECT value FROM json_each(:ids))`
	sqlGetStepsJoin = `
FROM saga_steps AS st
LEFT JOIN saga_compensations AS c ON c.saga_id = st.saga_id AND c.step_index = st.step_index`
	sqlGetSteps = `SELECT ` + stepColumns + sqlGetStepsJoin + `
WHERE st.saga_id = :id
ORDER BY st.step_index`
	// sqlGetStepsOf reads the steps of the sagas whose ids are in the JSON
	// array :ids.
	sqlGetStepsOf = `SELECT ` + stepColumns + sqlGetStepsJoin + `
WHERE st.saga_id IN (SELECT value FROM json_each(:ids))
ORDER BY st.saga_id, st.step_index`
)

// sqlListWhere is the tail shared by the list queries: optional filters
// (NULL: none), the created_after bound (:after, timeMin when absent) and
// the keyset cursor (:before, :before_id: timeMax and the largest UUID when
// absent), newest first. Each list query leads with the equality its index
// serves.
const sqlListWhere = `
	AND (:status IS NULL OR status = :status)
	AND (:name IS NULL OR name = :name)
	AND (:transaction_id IS NULL OR transaction_id = :transaction_id)
	AND created_at > :after
	AND (created_at, id) < (:before, :before_id)
ORDER BY created_at DESC, id DESC
LIMIT :limit`

// The list queries, by the filter that leads.
const (
	sqlListSagas              = `SELECT ` + sagaColumns + ` FROM sagas WHERE true` + sqlListWhere
	sqlListSagasByStatus      = `SELECT ` + sagaColumns + ` FROM sagas WHERE status = :status` + sqlListWhere
	sqlListSagasByName        = `SELECT ` + sagaColumns + ` FROM sagas WHERE name = :name` + sqlListWhere
	sqlListSagasByTransaction = `SELECT ` + sagaColumns + ` FROM sagas WHERE transaction_id = :transaction_id` + sqlListWhere
)

// sqlListEvents returns a saga's events after seq :after, at most :limit
// (-1: all).
const sqlListEvents = `
SELECT id, seq, event_type, step_index, data, instance_id, created_at, actor, hash
FROM saga_events WHERE saga_id = :id AND seq > :after
ORDER BY seq
LIMIT :limit`

// sqlLatestCheckpoint returns a saga's newest checkpoint.
const sqlLatestCheckpoint = `
SELECT step_index, context, created_at FROM saga_checkpoints
WHERE saga_id = :id
ORDER BY created_at DESC, id DESC
LIMIT 1`

// sqlClaimSagas leases up to :limit runnable sagas to :owner until
// :lease_until. Runnable: due (next_run_at <= now, served by the partial
// index on next_run_at) and without a live lease. The one writer makes the
// claim exclusive; the epoch increment fences the previous holder.
const sqlClaimSagas = `
UPDATE sagas SET
	owner_id = :owner,
	lease_expires_at = :lease_until,
	lease_epoch = lease_epoch + 1,
	updated_at = :now
WHERE id IN (
	SELECT id FROM sagas
	WHERE next_run_at <= :now AND (owner_id IS NULL OR lease_expires_at <= :now)
	ORDER BY next_run_at
	LIMIT :limit)
RETURNING ` + sagaColumns

// sqlRenewLeases extends to :lease_until the live leases :owner holds on
// the sagas of :leases, a JSON object of saga id to epoch.
const sqlRenewLeases = `
UPDATE sagas SET lease_expires_at = :lease_until
FROM (SELECT key AS id, value AS epoch FROM json_each(:leases)) AS l
WHERE sagas.id = l.id AND sagas.lease_epoch = l.epoch
	AND sagas.owner_id = :owner AND sagas.lease_expires_at > :now
RETURNING id`

// sqlRequestControl records operator action :action on saga :id, asked
// by event :control_seq of :control_by, whose chain now ends at :event_seq
// with :last_hash, and makes it runnable now.
const sqlRequestControl = `
UPDATE sagas SET control_request = :action, control_seq = :control_seq, control_by = :control_by,
	next_run_at = :now, updated_at = :now, event_seq = :event_seq, last_hash = :last_hash
WHERE id = :id
RETURNING ` + sagaColumns

// sqlSetLegalHold sets saga :id's legal hold to :hold; its chain ends at
// :event_seq with :last_hash.
const sqlSetLegalHold = `
UPDATE sagas SET legal_hold = :hold, updated_at = :now, event_seq = :event_seq, last_hash = :last_hash
WHERE id = :id
RETURNING ` + sagaColumns

// Statistics: counts by status, then the window since :since.
const (
	sqlCountByStatus = `SELECT status, count(*) FROM sagas GROUP BY status`
	sqlStartedSince  = `SELECT count(*) FROM sagas WHERE created_at > :since`
	// sqlEnded is the sagas that ended since :since with their durations in
	// seconds. The finished statuses and Failed are read apart, so that the
	// first part uses the partial index of finished sagas (named: without
	// statistics the planner would rather read every finished saga by
	// status).
	sqlEnded = `
WITH ended AS (
	SELECT status, (julianday(completed_at) - julianday(created_at)) * 86400.0 AS secs
	FROM sagas INDEXED BY sagas_finished_completed_at_idx
	WHERE status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut') AND completed_at > :since
	UNION ALL
	SELECT status, (julianday(completed_at) - julianday(created_at)) * 86400.0
	FROM sagas
	WHERE status = 'Failed' AND completed_at > :since
)`
	sqlEndedSummary = sqlEnded + `
SELECT count(*), coalesce(sum(status = 'Completed'), 0), coalesce(avg(secs), 0.0) FROM ended`
	// sqlEndedAt reads the durations at positions :offset and :offset + 1
	// in ascending order, between which the percentile lies.
	sqlEndedAt = sqlEnded + `
SELECT secs FROM ended ORDER BY secs LIMIT 2 OFFSET :offset`
)

// sqlDeleteExpired deletes up to :batch sagas that ended in :status before
// :cutoff and are not under legal hold, oldest first along the index led
// by the status, and returns what their tombstones keep; the foreign keys
// cascade to their other rows.
const sqlDeleteExpired = `
DELETE FROM sagas WHERE id IN (
	SELECT id FROM sagas INDEXED BY sagas_finished_status_completed_at_idx
	WHERE status = :status AND status IN ('Completed', 'Compensated', 'Cancelled', 'TimedOut')
		AND completed_at < :cutoff AND NOT legal_hold
	ORDER BY completed_at
	LIMIT :batch)
RETURNING id, name, status, event_seq, last_hash, completed_at`

// sqlInsertDeletion writes a tombstone, unless the saga has one.
const sqlInsertDeletion = `
INSERT INTO saga_deletions (saga_id, name, final_status, event_seq, last_hash, completed_at,
	deleted_at, rule, actor, reason, client_addr)
VALUES (:saga_id, :name, :status, :event_seq, :last_hash, :completed_at, :now, :rule, :actor, :reason, :client_addr)
ON CONFLICT (saga_id) DO NOTHING`

// sqlPing is the health check's round trip.
const sqlPing = `SELECT 1`

// Export: sagas by id after :after, and the events and checkpoints of the
// sagas of the JSON array :ids.
const (
	sqlExportSagas  = `SELECT ` + sagaColumns + `, ` + headColumns + ` FROM sagas WHERE id > :after ORDER BY id LIMIT :limit`
	sqlExportEvents = `
SELECT saga_id, id, seq, event_type, step_index, data, instance_id, created_at, actor, hash
FROM saga_events WHERE saga_id IN (SELECT value FROM json_each(:ids))
ORDER BY saga_id, seq`
	sqlExportCheckpoints = `
SELECT saga_id, step_index, context, created_at
FROM saga_checkpoints WHERE saga_id IN (SELECT value FROM json_each(:ids))
ORDER BY saga_id, created_at, id`
	// sqlCountRows counts the rows of the five tables.
	sqlCountRows = `
SELECT (SELECT count(*) FROM sagas), (SELECT count(*) FROM saga_steps),
	(SELECT count(*) FROM saga_compensations), (SELECT count(*) FROM saga_checkpoints),
	(SELECT count(*) FROM saga_events)`
)

// The record of a move to PostgreSQL.
const (
	sqlRecordMove = `INSERT INTO store_moves (target, moved_at, sagas) VALUES (:target, :now, :sagas)`
	sqlLastMove   = `SELECT target, moved_at, sagas FROM store_moves ORDER BY moved_at DESC LIMIT 1`
)

// The audit reads (saga.AuditStore), each in one read transaction.
const (
	// sqlChainHeads: the heads of up to :limit sagas with an id above
	// :after, updated at or after :since, among :ids (a JSON array; NULL:
	// all).
	sqlChainHeads = `
SELECT id, event_seq, last_hash FROM sagas
WHERE id > :after AND updated_at >= :since
	AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
ORDER BY id
LIMIT :limit`

	// sqlChainEvents: the events of the sagas of the JSON array :ids, by
	// saga and seq.
	sqlChainEvents = `
SELECT saga_id, id, seq, event_type, step_index, data, instance_id, created_at, actor, hash
FROM saga_events WHERE saga_id IN (SELECT value FROM json_each(:ids))
ORDER BY saga_id, seq`

	// sqlAuditExport: the events created in [:from, :to), by saga and
	// seq, with the hash of the event before each.
	sqlAuditExport = `
SELECT e.saga_id, e.id, e.seq, e.event_type, e.step_index, e.data, e.instance_id, e.created_at, e.actor, e.hash,
	(SELECT p.hash FROM saga_events AS p WHERE p.saga_id = e.saga_id AND p.seq = e.seq - 1)
FROM saga_events AS e
WHERE e.created_at >= :from AND e.created_at < :to
ORDER BY e.saga_id, e.seq`

	// sqlDeletions: the tombstones of the sagas deleted in [:from, :to).
	sqlDeletions = `
SELECT saga_id, name, final_status, event_seq, last_hash, completed_at, deleted_at, rule, actor, reason, client_addr
FROM saga_deletions
WHERE deleted_at >= :from AND deleted_at < :to
ORDER BY deleted_at, saga_id`
)
