package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
)

// maxID is the largest UUID: the keyset cursor of the first page.
var maxID = saga.ID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// GetSaga returns a saga with its steps and compensations, read from one
// snapshot, or an error wrapping saga.ErrNotFound.
func (s *Store) GetSaga(ctx context.Context, id saga.ID) (sg *saga.Saga, err error) {
	defer s.observe(opGetSaga, time.Now(), &err)
	sg, err = s.loadSaga(ctx, id)
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
	err = retry(ctx, s.reading(func(ctx context.Context, pool *pgxpool.Pool) error {
		clear(out)
		rows, err := pool.Query(ctx, sqlSagaStatuses, ids)
		if err != nil {
			return err
		}
		var (
			id     saga.ID
			status string
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &status}, func() error {
			out[id] = saga.SagaStatus(status)
			return nil
		})
		return err
	}))
	if err != nil {
		return nil, interpretError("read saga statuses", err)
	}
	return out, nil
}

// loadSaga reads a saga and its steps in one round trip, from one
// snapshot (a read-only repeatable-read transaction), retrying transient
// errors. pgx.ErrNoRows when there is no such saga.
// resolveCreate finds out whether the saga id exists, after a create whose
// commit went unanswered: the saga, an error wrapping saga.ErrNotFound when
// it does not exist, or the last error when the database did not answer
// within resolveTimeout (or ctx).
func (s *Store) resolveCreate(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		sg, err := s.loadSaga(ctx, id)
		switch {
		case err == nil:
			return sg, nil
		case errors.Is(err, pgx.ErrNoRows):
			return nil, fmt.Errorf("saga %s: %w", id, saga.ErrNotFound)
		}
		if werr := backoff(ctx, min(attempt, 6)); werr != nil {
			return nil, errors.Join(err, werr)
		}
	}
}

func (s *Store) loadSaga(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	var sg *saga.Saga
	err := retry(ctx, s.reading(func(ctx context.Context, pool *pgxpool.Pool) error {
		b := &pgx.Batch{}
		b.Queue(sqlBeginSnapshot)
		b.Queue(sqlGetSaga, id)
		b.Queue(sqlGetSteps, []saga.ID{id})
		b.Queue(sqlCommit)
		br := pool.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		var err error
		if sg, err = scanSaga(br.QueryRow(), s.sealer); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		steps, err := collectSteps(rows)
		if err != nil {
			return err
		}
		sg.Steps = steps[id]
		if sg.Steps == nil {
			sg.Steps = []saga.Step{}
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		return br.Close()
	}))
	return sg, err
}

// collectSteps reads the rows of sqlGetSteps, by saga.
func collectSteps(rows pgx.Rows) (map[saga.ID][]saga.Step, error) {
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
	after := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	if f.CreatedAfter != nil {
		after = pgtype.Timestamptz{Time: *f.CreatedAfter, Valid: true}
	}
	before := pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	beforeID := maxID
	if f.Cursor != nil {
		before = pgtype.Timestamptz{Time: f.Cursor.CreatedAt, Valid: true}
		beforeID = f.Cursor.ID
	}
	limit := f.EffectiveLimit()
	var sagas []*saga.Saga
	err = retry(ctx, s.reading(func(ctx context.Context, pool *pgxpool.Pool) error {
		rows, err := pool.Query(ctx, query, nullString(f.Status), nullString(f.Name), f.TransactionID,
			after, before, beforeID, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		sagas = sagas[:0]
		for rows.Next() {
			sg, err := scanSaga(rows, s.sealer)
			if err != nil {
				return err
			}
			sagas = append(sagas, sg)
		}
		return rows.Err()
	}))
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
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	err = retry(ctx, s.reading(func(ctx context.Context, pool *pgxpool.Pool) error {
		rows, err := pool.Query(ctx, sqlListEvents, id, afterSeq, lim)
		if err != nil {
			return err
		}
		defer rows.Close()
		events = events[:0]
		found := false
		for rows.Next() {
			found = true
			var (
				eventID   *saga.ID
				seq       *int64
				typ       *string
				step      *int32
				data      json.RawMessage
				instance  *string
				actor     *string
				createdAt *time.Time
				hash      []byte
			)
			if err := rows.Scan(&eventID, &seq, &typ, &step, &data, &instance, &actor, &createdAt, &hash); err != nil {
				return err
			}
			if eventID == nil {
				continue // the saga has no such events
			}
			e := saga.Event{ID: *eventID, SagaID: id, Seq: *seq, Type: saga.EventType(*typ), Data: data,
				InstanceID: deref(instance), Actor: deref(actor), CreatedAt: createdAt.UTC(), Hash: hash}
			if step != nil {
				i := int(*step)
				e.StepIndex = &i
			}
			events = append(events, e)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if !found {
			return pgx.ErrNoRows
		}
		return nil
	}))
	if err != nil {
		return nil, interpretError("list events of saga "+id.String(), err)
	}
	if events == nil {
		events = []saga.Event{}
	}
	return events, nil
}

// LatestCheckpoint returns the saga's newest checkpoint, nil when it has
// none, or an error wrapping saga.ErrNotFound.
func (s *Store) LatestCheckpoint(ctx context.Context, id saga.ID) (cp *saga.Checkpoint, err error) {
	defer s.observe(opLatestCheckpoint, time.Now(), &err)
	var (
		step      *int32
		cpContext json.RawMessage
		createdAt *time.Time
	)
	err = retry(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, sqlLatestCheckpoint, id).Scan(&step, &cpContext, &createdAt)
	})
	if err != nil {
		return nil, interpretError("read latest checkpoint of saga "+id.String(), err)
	}
	if step == nil {
		return nil, nil
	}
	return &saga.Checkpoint{SagaID: id, StepIndex: int(*step), Context: cpContext, CreatedAt: createdAt.UTC()}, nil
}
