package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// querier runs the statements of a read, in the writer's transaction (wtx)
// or in a read transaction on a reader connection (rtx).
type querier interface {
	query(query string, args ...any) (*sql.Rows, error)
	queryRow(query string, args []any, dest ...any) error
}

// rtx is a read transaction: one snapshot of the database (WAL), on a
// reader connection, beside the writer.
type rtx struct {
	ctx context.Context
	tx  *sql.Tx
	s   *Store
}

// readQueries are the statements of reads, prepared once on the reader
// pool when the store opens (see prepareAll).
var readQueries = []string{
	sqlSagaExists, sqlGetSaga, sqlGetSteps, sqlGetStepsOf, sqlSagaStatuses,
	sqlListSagas, sqlListSagasByStatus, sqlListSagasByName, sqlListSagasByTransaction,
	sqlListEvents, sqlLatestCheckpoint,
	sqlCountByStatus, sqlStartedSince, sqlEndedSummary, sqlEndedAt,
	sqlExportSagas, sqlExportEvents, sqlExportCheckpoints, sqlCountRows, sqlPing,
	sqlGaugesRunning, sqlGaugesLeases, sqlActivityStarted, sqlActivityEndedByMinute, sqlActivityEndedAt,
	sqlActivityInstances, sqlChainHeads, sqlChainEvents, sqlAuditExport, sqlDeletions,
}

func (r *rtx) query(query string, args ...any) (*sql.Rows, error) {
	if st := r.s.readStmts[query]; st != nil {
		return r.tx.StmtContext(r.ctx, st).QueryContext(r.ctx, args...)
	}
	return r.tx.QueryContext(r.ctx, query, args...)
}

func (r *rtx) queryRow(query string, args []any, dest ...any) error {
	if st := r.s.readStmts[query]; st != nil {
		return r.tx.StmtContext(r.ctx, st).QueryRowContext(r.ctx, args...).Scan(dest...)
	}
	return r.tx.QueryRowContext(r.ctx, query, args...).Scan(dest...)
}

// readTx runs fn in a read transaction.
func (s *Store) readTx(ctx context.Context, fn func(r *rtx) error) error {
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it does nothing
	if err := fn(&rtx{ctx: ctx, tx: tx, s: s}); err != nil {
		return err
	}
	return tx.Commit()
}

// GetSaga returns a saga with its steps and compensations, read from one
// snapshot, or an error wrapping saga.ErrNotFound.
func (s *Store) GetSaga(ctx context.Context, id saga.ID) (sg *saga.Saga, err error) {
	defer s.observe(opGetSaga, time.Now(), &err)
	err = s.readTx(ctx, func(r *rtx) error {
		var err error
		sg, err = loadSaga(r, id, s.sealer)
		return err
	})
	if err != nil {
		return nil, interpretError("get saga "+id.String(), err)
	}
	return sg, nil
}

// SagaStatuses returns the status of each of ids the store holds, in one
// statement. See saga.Store.
func (s *Store) SagaStatuses(ctx context.Context, ids []saga.ID) (out map[saga.ID]saga.SagaStatus, err error) {
	defer s.observe(opSagaStatuses, time.Now(), &err)
	out = make(map[saga.ID]saga.SagaStatus, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	texts := make([]string, len(ids))
	for i, id := range ids {
		texts[i] = idText(id)
	}
	idsJSON, err := json.Marshal(texts)
	if err != nil {
		return nil, fmt.Errorf("read saga statuses: %w", err)
	}
	err = s.readTx(ctx, func(r *rtx) error {
		rows, err := r.query(sqlSagaStatuses, sql.Named("ids", string(idsJSON)))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id     saga.ID
				status saga.SagaStatus
			)
			if err := rows.Scan(idCol{&id}, textCol[saga.SagaStatus]{&status}); err != nil {
				return err
			}
			out[id] = status
		}
		return rows.Err()
	})
	if err != nil {
		return nil, interpretError("read saga statuses", err)
	}
	return out, nil
}

// loadSaga reads a saga and its steps; sql.ErrNoRows when there is none.
func loadSaga(q querier, id saga.ID, sealer *saga.Sealer) (*saga.Saga, error) {
	var sg *saga.Saga
	err := q.queryRow(sqlGetSaga, []any{sql.Named("id", idText(id))}, sagaDest(&sg, sealer)...)
	if err != nil {
		return nil, err
	}
	rows, err := q.query(sqlGetSteps, sql.Named("id", idText(id)))
	if err != nil {
		return nil, err
	}
	steps, err := collectSteps(rows)
	if err != nil {
		return nil, err
	}
	sg.Steps = steps[id]
	if sg.Steps == nil {
		sg.Steps = []saga.Step{}
	}
	return sg, nil
}

// collectSteps reads the rows of sqlGetSteps or sqlGetStepsOf, by saga.
func collectSteps(rows *sql.Rows) (map[saga.ID][]saga.Step, error) {
	defer rows.Close()
	out := make(map[saga.ID][]saga.Step)
	for rows.Next() {
		sagaID, st, err := scanStep(rows)
		if err != nil {
			return nil, err
		}
		out[sagaID] = append(out[sagaID], st)
	}
	return out, rows.Err()
}

// collectSagas reads rows of sagaColumns.
func collectSagas(rows *sql.Rows, sealer *saga.Sealer) ([]*saga.Saga, error) {
	defer rows.Close()
	var out []*saga.Saga
	for rows.Next() {
		var sg *saga.Saga
		if err := rows.Scan(sagaDest(&sg, sealer)...); err != nil {
			return nil, err
		}
		out = append(out, sg)
	}
	return out, rows.Err()
}

// ListSagas returns sagas matching f, newest first, without steps. See
// saga.Store.
func (s *Store) ListSagas(ctx context.Context, f saga.Filter) (page saga.Page, err error) {
	defer s.observe(opListSagas, time.Now(), &err)
	if f.Status != "" && !f.Status.Valid() {
		return saga.Page{}, saga.Errorf(saga.ECodeInvalid, "status", "unknown saga status %q", f.Status)
	}
	query := sqlListSagas
	switch {
	case f.TransactionID != nil:
		query = sqlListSagasByTransaction
	case f.Status != "":
		query = sqlListSagasByStatus
	case f.Name != "":
		query = sqlListSagasByName
	}
	afterText := timeMin
	if f.CreatedAfter != nil {
		afterText = fmtTime(*f.CreatedAfter)
	}
	before, beforeID := timeMax, maxIDText
	if f.Cursor != nil {
		before, beforeID = fmtTime(f.Cursor.CreatedAt), idText(f.Cursor.ID)
	}
	limit := f.EffectiveLimit()
	var sagas []*saga.Saga
	err = s.readTx(ctx, func(r *rtx) error {
		rows, err := r.query(query,
			sql.Named("status", nullText(f.Status)), sql.Named("name", nullText(f.Name)),
			sql.Named("transaction_id", nullIDText(f.TransactionID)), sql.Named("after", afterText),
			sql.Named("before", before), sql.Named("before_id", beforeID), sql.Named("limit", limit+1))
		if err != nil {
			return err
		}
		sagas, err = collectSagas(rows, s.sealer)
		return err
	})
	if err != nil {
		return saga.Page{}, interpretError("list sagas", err)
	}
	if len(sagas) > limit {
		sagas = sagas[:limit]
		last := sagas[limit-1]
		page.Next = &saga.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	if sagas == nil {
		sagas = []*saga.Saga{}
	}
	page.Sagas = sagas
	return page, nil
}

// ListEvents returns a saga's events after afterSeq, in order, at most
// limit (0: all), or an error wrapping saga.ErrNotFound.
func (s *Store) ListEvents(ctx context.Context, id saga.ID, afterSeq int64, limit int) (events []saga.Event, err error) {
	defer s.observe(opListEvents, time.Now(), &err)
	lim := int64(-1)
	if limit > 0 {
		lim = int64(limit)
	}
	err = s.readTx(ctx, func(r *rtx) error {
		var one int
		if err := r.queryRow(sqlSagaExists, []any{sql.Named("id", idText(id))}, &one); err != nil {
			return err
		}
		rows, err := r.query(sqlListEvents, sql.Named("id", idText(id)), sql.Named("after", afterSeq), sql.Named("limit", lim))
		if err != nil {
			return err
		}
		defer rows.Close()
		events = events[:0]
		for rows.Next() {
			e := saga.Event{SagaID: id}
			if err := rows.Scan(eventDest(&e)...); err != nil {
				return err
			}
			events = append(events, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, interpretError("list events of saga "+id.String(), err)
	}
	if events == nil {
		events = []saga.Event{}
	}
	return events, nil
}

// eventDest is the scan destination of the event columns after saga_id:
// id, seq, event_type, step_index, data, instance_id, created_at, actor,
// hash.
func eventDest(e *saga.Event) []any {
	return []any{idCol{&e.ID}, &e.Seq, textCol[saga.EventType]{&e.Type}, &e.StepIndex,
		jsonCol{&e.Data}, textCol[string]{&e.InstanceID}, timeCol{&e.CreatedAt}, textCol[string]{&e.Actor}, &e.Hash}
}

// LatestCheckpoint returns the saga's newest checkpoint, nil when it has
// none, or an error wrapping saga.ErrNotFound.
func (s *Store) LatestCheckpoint(ctx context.Context, id saga.ID) (cp *saga.Checkpoint, err error) {
	defer s.observe(opLatestCheckpoint, time.Now(), &err)
	err = s.readTx(ctx, func(r *rtx) error {
		var one int
		if err := r.queryRow(sqlSagaExists, []any{sql.Named("id", idText(id))}, &one); err != nil {
			return err
		}
		c := &saga.Checkpoint{SagaID: id}
		err := r.queryRow(sqlLatestCheckpoint, []any{sql.Named("id", idText(id))},
			&c.StepIndex, jsonCol{&c.Context}, timeCol{&c.CreatedAt})
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return err
		}
		cp = c
		return nil
	})
	if err != nil {
		return nil, interpretError("read latest checkpoint of saga "+id.String(), err)
	}
	return cp, nil
}

// sagaDest returns the scan destinations of sagaColumns, the definition
// opened with sealer; *out is set to
// the saga they fill (without steps).
func sagaDest(out **saga.Saga, sealer *saga.Sealer) []any {
	sg := &saga.Saga{Durable: true}
	*out = sg
	return []any{idCol{&sg.ID}, &sg.Name, textCol[saga.SagaStatus]{&sg.Status}, idCol{&sg.TransactionID},
		nullIDCol{&sg.UserID}, jsonCol{&sg.Context}, definitionCol{&sg.Definition, sg, sealer}, textCol[string]{&sg.IdempotencyKey},
		&sg.CompletedSteps, &sg.TotalSteps, textCol[string]{&sg.Error}, textCol[saga.SagaStatus]{&sg.CompensateTo},
		textCol[saga.ControlAction]{&sg.Control}, nullTimeCol{&sg.Deadline}, textCol[string]{&sg.OwnerID},
		nullTimeCol{&sg.LeaseExpiresAt}, &sg.LeaseEpoch, nullTimeCol{&sg.NextRunAt}, &sg.EventSeq,
		timeCol{&sg.CreatedAt}, timeCol{&sg.UpdatedAt}, nullTimeCol{&sg.StartedAt}, nullTimeCol{&sg.CompletedAt}, &sg.LegalHold}
}

// definitionCol scans the definition column, decoding its JSON.
type definitionCol struct {
	def    *saga.Definition
	sg     *saga.Saga // for the error
	sealer *saga.Sealer
}

func (c definitionCol) Scan(v any) error {
	var raw json.RawMessage
	if err := (jsonCol{&raw}).Scan(v); err != nil {
		return err
	}
	if err := c.sealer.DecodeDefinition(raw, c.def); err != nil {
		return fmt.Errorf("decode the definition of saga %s: %w", c.sg.ID, err)
	}
	return nil
}

// scanStep reads the columns of stepColumns: a step with its compensation,
// if it has one.
func scanStep(rows *sql.Rows) (saga.ID, saga.Step, error) {
	var (
		sagaID    saga.ID
		st        saga.Step
		cStatus   saga.CompensationStatus
		cAttempts sql.NullInt64
		cBefore   sql.NullInt64
		c         saga.Compensation
	)
	err := rows.Scan(idCol{&sagaID}, &st.Index, &st.Name, textCol[saga.StepStatus]{&st.Status}, &st.Attempts,
		jsonCol{&st.Input}, jsonCol{&st.Output}, textCol[string]{&st.Error}, &st.Uncertain,
		nullTimeCol{&st.StartedAt}, nullTimeCol{&st.CompletedAt},
		textCol[saga.CompensationStatus]{&cStatus}, &cAttempts, &cBefore, jsonCol{&c.Output}, textCol[string]{&c.Error},
		nullTimeCol{&c.StartedAt}, nullTimeCol{&c.CompletedAt})
	if err != nil {
		return sagaID, st, err
	}
	if cStatus != "" {
		c.StepIndex = st.Index
		c.Status = cStatus
		c.Attempts = int(cAttempts.Int64)
		c.AttemptsBeforeRetry = int(cBefore.Int64)
		st.Compensation = &c
	}
	return sagaID, st, nil
}
