package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// ClaimSagas leases up to limit runnable sagas to owner for leaseFor, in
// one statement of the writer, and returns them with their steps, read in
// the same transaction. See saga.Store.
func (s *Store) ClaimSagas(ctx context.Context, owner string, leaseFor time.Duration, limit int) (claimed []*saga.Saga, err error) {
	defer s.observe(opClaim, time.Now(), &err)
	switch {
	case owner == "":
		return nil, errors.New("claim sagas: owner is empty")
	case leaseFor <= 0:
		return nil, fmt.Errorf("claim sagas: lease duration %v is not positive", leaseFor)
	case limit <= 0:
		return nil, nil
	}
	var got []*saga.Saga // set on the writer's goroutine only
	err = s.writer.submit(ctx, func(w *wtx) error {
		got = nil
		rows, err := w.query(sqlClaimSagas, sql.Named("owner", owner),
			sql.Named("lease_until", fmtTime(after(w.now, max(leaseFor, time.Microsecond)))),
			sql.Named("now", w.nowText()), sql.Named("limit", limit))
		if err != nil {
			return err
		}
		sagas, err := collectSagas(rows, s.sealer)
		if err != nil || len(sagas) == 0 {
			return err
		}
		if err := loadSteps(w, sagas); err != nil {
			return err
		}
		got = sagas
		return nil
	})
	if err != nil {
		return nil, interpretError("claim sagas", err)
	}
	// RETURNING gives no order: due longest first, as the claim chose them.
	slices.SortFunc(got, func(a, b *saga.Saga) int {
		if c := deref(a.NextRunAt).Compare(deref(b.NextRunAt)); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})
	return got, nil
}

// loadSteps reads the steps of sagas into them.
func loadSteps(q querier, sagas []*saga.Saga) error {
	ids := make([]string, len(sagas))
	for i, sg := range sagas {
		ids[i] = idText(sg.ID)
	}
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	rows, err := q.query(sqlGetStepsOf, sql.Named("ids", string(idsJSON)))
	if err != nil {
		return err
	}
	steps, err := collectSteps(rows)
	if err != nil {
		return err
	}
	for _, sg := range sagas {
		sg.Steps = steps[sg.ID]
		if sg.Steps == nil {
			sg.Steps = []saga.Step{}
		}
	}
	return nil
}

// RenewLeases extends the live leases owner holds on the given sagas (at
// the given epochs), in one statement, and returns the ids it renewed. See
// saga.Store.
func (s *Store) RenewLeases(ctx context.Context, owner string, leases map[saga.ID]int64, leaseFor time.Duration) (renewed []saga.ID, err error) {
	defer s.observe(opRenewLeases, time.Now(), &err)
	if len(leases) == 0 {
		return nil, nil
	}
	if leaseFor <= 0 {
		return nil, fmt.Errorf("renew leases: lease duration %v is not positive", leaseFor)
	}
	byID := make(map[string]int64, len(leases))
	for id, epoch := range leases {
		byID[idText(id)] = epoch
	}
	leasesJSON, err := json.Marshal(byID)
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	var ids []saga.ID // set on the writer's goroutine only
	err = s.writer.submitUrgent(ctx, func(w *wtx) error {
		ids = ids[:0]
		rows, err := w.query(sqlRenewLeases, sql.Named("leases", string(leasesJSON)), sql.Named("owner", owner),
			sql.Named("lease_until", fmtTime(after(w.now, max(leaseFor, time.Microsecond)))), sql.Named("now", w.nowText()))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id saga.ID
			if err := rows.Scan(idCol{&id}); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, interpretError("renew leases", err)
	}
	return ids, nil
}

// RequestControl records an operator action on a saga whose status allows
// it and makes the saga runnable at once, with the events of the request
// (saga.Chain.SealControl), in one write. See saga.Store.
func (s *Store) RequestControl(ctx context.Context, id saga.ID, action saga.ControlAction) (sg *saga.Saga, err error) {
	defer s.observe(opRequestControl, time.Now(), &err)
	doing := fmt.Sprintf("request %s of saga %s", action, id)
	if len(action.AllowedStatuses()) == 0 {
		return nil, fmt.Errorf("%s: unknown operator action %q: %w", doing, action, saga.ErrInvalidTransition)
	}
	var got *saga.Saga // set on the writer's goroutine only
	err = s.writer.submit(ctx, func(w *wtx) error {
		h, err := readHead(w, id)
		if err != nil {
			return err
		}
		if !action.AllowedIn(h.status) {
			return fmt.Errorf("cannot %s a saga that is %s: %w", action, h.status, saga.ErrInvalidTransition)
		}
		events, next, err := s.chain.SealControl(ctx, h.chain, action, h.pending, w.now)
		if err != nil {
			return err
		}
		req := events[len(events)-1]
		var out *saga.Saga
		err = w.queryRow(sqlRequestControl, []any{sql.Named("action", string(action)), sql.Named("now", w.nowText()),
			sql.Named("id", idText(id)), sql.Named("control_seq", req.Seq), sql.Named("control_by", nullText(req.Actor)),
			sql.Named("event_seq", next.Seq), sql.Named("last_hash", next.Hash)}, sagaDest(&out, s.sealer)...)
		if err != nil {
			return err
		}
		if err := insertEvents(w, events); err != nil {
			return err
		}
		got = out
		return nil
	})
	if err != nil {
		return nil, interpretError(doing, err)
	}
	return got, nil
}

// deref returns *p, or the zero value when p is nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
