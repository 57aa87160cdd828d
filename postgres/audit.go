package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
)

var _ saga.AuditStore = (*Store)(nil)

// Operation names of the audit reads.
const (
	opChains       = "audit_chains"
	opExportEvents = "audit_export"
	opDeletions    = "audit_deletions"
)

// The audit reads. Each is one statement, so it reads one snapshot, and
// its rows are streamed to the caller as they arrive.
const (
	// sqlChains: the heads of up to $4 sagas with an id above $1, updated
	// at or after $2 (NULL: any), among $3 (NULL: all), each with its
	// events in seq order (a saga without events: one row of NULLs).
	sqlChains = `
WITH h AS (
	SELECT id, event_seq, last_hash FROM sagas
	WHERE id > $1 AND ($2::timestamptz IS NULL OR updated_at >= $2::timestamptz)
		AND ($3::uuid[] IS NULL OR id = ANY($3::uuid[]))
	ORDER BY id
	LIMIT $4
)
SELECT h.id, h.event_seq, h.last_hash,
	e.id, e.seq, e.event_type, e.step_index, e.data, e.instance_id, e.actor, e.created_at, e.hash
FROM h LEFT JOIN saga_events AS e ON e.saga_id = h.id
ORDER BY h.id, e.seq`

	// sqlExportEvents: the events created in [$1, $2), by saga and seq,
	// with the hash of the event before each.
	sqlExportEvents = `
SELECT e.id, e.saga_id, e.seq, e.event_type, e.step_index, e.data, e.instance_id, e.actor, e.created_at, e.hash,
	(SELECT p.hash FROM saga_events AS p WHERE p.saga_id = e.saga_id AND p.seq = e.seq - 1)
FROM saga_events AS e
WHERE e.created_at >= $1 AND e.created_at < $2
ORDER BY e.saga_id, e.seq`

	// sqlDeletions: the tombstones of the sagas deleted in [$1, $2).
	sqlDeletions = `
SELECT saga_id, name, final_status, event_seq, last_hash, completed_at, deleted_at, rule, actor, reason, client_addr
FROM saga_deletions
WHERE deleted_at >= $1 AND deleted_at < $2
ORDER BY deleted_at, saga_id`

	// sqlImportDeletion writes a tombstone unless the saga has one.
	sqlImportDeletion = `
INSERT INTO saga_deletions (saga_id, name, final_status, event_seq, last_hash, completed_at,
	deleted_at, rule, actor, reason, client_addr)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (saga_id) DO NOTHING`

	// sqlSetLegalHold sets saga $1's legal hold to $2 at $3, with the
	// events $6 (sealed) ending its chain at seq $4 with hash $5.
	sqlSetLegalHold = `
WITH upd AS (
	UPDATE sagas AS s SET legal_hold = $2, updated_at = $3, event_seq = $4, last_hash = $5
	WHERE s.id = $1
	RETURNING ` + sagaColumns + `
), event_rows AS (
	INSERT INTO saga_events (id, saga_id, seq, event_type, step_index, data, instance_id, actor, created_at, hash)
	SELECT e.id, upd.id, e.seq, e.type, e.step, e.data, e.instance, e.actor, $3, e.hash
	FROM upd, jsonb_to_recordset($6::jsonb) AS ` + eventRecord + `
)
SELECT * FROM upd`
)

// finishEvent completes a scanned event with its nullable columns.
func finishEvent(e *saga.Event, typ, instance, actor string, step *int32) {
	e.Type = saga.EventType(typ)
	e.InstanceID, e.Actor = instance, actor
	e.CreatedAt = e.CreatedAt.UTC()
	e.StepIndex = nil
	if step != nil {
		i := int(*step)
		e.StepIndex = &i
	}
}

// Chains reads the chains of up to q.EffectiveLimit() sagas matching q in
// one statement, streaming; see saga.AuditStore.
func (s *Store) Chains(ctx context.Context, q saga.ChainQuery, head func(saga.ChainHead) error, event func(saga.Event) error) (n int, last saga.ID, err error) {
	defer s.observe(opChains, time.Now(), &err)
	var since *time.Time
	if !q.Since.IsZero() {
		since = &q.Since
	}
	var ids []saga.ID
	if q.IDs != nil {
		ids = q.IDs
	}
	rows, err := s.pool.Query(ctx, sqlChains, q.After, since, ids, q.EffectiveLimit())
	if err != nil {
		return 0, saga.NilID, interpretError("read audit chains", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			h                    saga.ChainHead
			eventID              *saga.ID
			seq                  *int64
			typ, instance, actor *string
			step                 *int32
			data                 json.RawMessage
			createdAt            *time.Time
			hash                 []byte
		)
		if err := rows.Scan(&h.SagaID, &h.Seq, &h.Hash, &eventID, &seq, &typ, &step, &data, &instance, &actor, &createdAt, &hash); err != nil {
			return n, last, interpretError("read audit chains", err)
		}
		if n == 0 || h.SagaID != last {
			n++
			last = h.SagaID
			if err := head(h); err != nil {
				return n, last, err
			}
		}
		if eventID == nil {
			continue
		}
		e := saga.Event{ID: *eventID, SagaID: h.SagaID, Seq: *seq, Data: data, CreatedAt: *createdAt, Hash: hash}
		finishEvent(&e, deref(typ), deref(instance), deref(actor), step)
		if err := event(e); err != nil {
			return n, last, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, last, interpretError("read audit chains", err)
	}
	return n, last, nil
}

// ExportEvents streams the events created in [from, to) from one
// statement; see saga.AuditStore.
func (s *Store) ExportEvents(ctx context.Context, from, to time.Time, fn func(saga.Event, []byte) error) (err error) {
	defer s.observe(opExportEvents, time.Now(), &err)
	rows, err := s.pool.Query(ctx, sqlExportEvents, from, to)
	if err != nil {
		return interpretError("export events", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e               saga.Event
			typ             string
			instance, actor *string
			step            *int32
			prev            []byte
		)
		if err := rows.Scan(&e.ID, &e.SagaID, &e.Seq, &typ, &step, &e.Data, &instance, &actor, &e.CreatedAt, &e.Hash, &prev); err != nil {
			return interpretError("export events", err)
		}
		finishEvent(&e, typ, deref(instance), deref(actor), step)
		if err := fn(e, prev); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return interpretError("export events", err)
	}
	return nil
}

// Deletions streams the tombstones of the sagas deleted in [from, to);
// see saga.AuditStore.
func (s *Store) Deletions(ctx context.Context, from, to time.Time, fn func(saga.Deletion) error) (err error) {
	defer s.observe(opDeletions, time.Now(), &err)
	rows, err := s.pool.Query(ctx, sqlDeletions, from, to)
	if err != nil {
		return interpretError("read deletions", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			d                   saga.Deletion
			status              string
			actor, reason, addr *string
		)
		if err := rows.Scan(&d.SagaID, &d.Name, &status, &d.EventSeq, &d.LastHash, &d.CompletedAt, &d.DeletedAt,
			&d.Rule, &actor, &reason, &addr); err != nil {
			return interpretError("read deletions", err)
		}
		d.Status = saga.SagaStatus(status)
		d.Actor, d.Reason, d.Address = deref(actor), deref(reason), deref(addr)
		d.CompletedAt = utc(d.CompletedAt)
		d.DeletedAt = d.DeletedAt.UTC()
		if err := fn(d); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return interpretError("read deletions", err)
	}
	return nil
}

// SetLegalHold sets or clears a saga's legal hold, with its
// LegalHoldChanged event, in one transaction; see saga.Store.
func (s *Store) SetLegalHold(ctx context.Context, id saga.ID, hold bool) (sg *saga.Saga, err error) {
	defer s.observe(opSetLegalHold, time.Now(), &err)
	var next head
	err = s.lockedWrite(ctx, id, func(tx pgx.Tx, _ saga.SagaStatus, h head, at time.Time) error {
		events, chain, err := s.chain.SealLegalHold(ctx, h.chainHead(id), hold, at)
		if err != nil {
			return err
		}
		eventsJSON, _, err := encodeEvents(events)
		if err != nil {
			return err
		}
		if sg, err = scanSaga(tx.QueryRow(ctx, sqlSetLegalHold, id, hold, at, chain.Seq, chain.Hash, eventsJSON), s.sealer); err != nil {
			return err
		}
		next = head{seq: chain.Seq, hash: chain.Hash, at: at, pending: h.pending}
		return nil
	})
	if err != nil {
		return nil, interpretError(fmt.Sprintf("set legal hold of saga %s", id), err)
	}
	s.heads.advance(id, next)
	return sg, nil
}

// ImportDeletion writes the tombstone of a saga deleted elsewhere (in
// memory during an outage); a tombstone of the saga already there is kept.
func (s *Store) ImportDeletion(ctx context.Context, d saga.Deletion) (err error) {
	defer s.observe(opImport, time.Now(), &err)
	if !d.Status.Valid() {
		return fmt.Errorf("import tombstone of saga %s: unknown status %q", d.SagaID, d.Status)
	}
	err = retry(ctx, func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, sqlImportDeletion, d.SagaID, d.Name, string(d.Status), d.EventSeq,
			nullBytes(d.LastHash), d.CompletedAt, d.DeletedAt, d.Rule, nullString(d.Actor), nullString(d.Reason), nullString(d.Address))
		return err
	})
	return interpretError("import tombstone of saga "+d.SagaID.String(), err)
}
