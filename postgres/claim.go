package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
)

// ClaimSagas leases up to limit runnable sagas to owner for leaseFor, in
// one statement, and returns them with their steps (read by one more
// query). See saga.Store.
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
	var claimedHeads []head
	err = retry(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, sqlClaimSagas, owner, max(micros(leaseFor), 1), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		claimed, claimedHeads = claimed[:0], claimedHeads[:0]
		for rows.Next() {
			sg, h, err := scanSagaHead(rows, s.sealer)
			if err != nil {
				return err
			}
			claimed = append(claimed, sg)
			claimedHeads = append(claimedHeads, h)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, interpretError("claim sagas", err)
	}
	if len(claimed) == 0 {
		return nil, nil
	}
	// This instance writes the claimed sagas next.
	for i, sg := range claimed {
		s.heads.put(sg.ID, claimedHeads[i])
	}
	slices.SortFunc(claimed, func(a, b *saga.Saga) int {
		if c := deref(a.NextRunAt).Compare(deref(b.NextRunAt)); c != 0 {
			return c
		}
		return slices.Compare(a.ID[:], b.ID[:])
	})

	// The claimed sagas are ours now: their steps cannot change under us.
	ids := make([]saga.ID, len(claimed))
	for i, sg := range claimed {
		ids[i] = sg.ID
	}
	var steps map[saga.ID][]saga.Step
	err = retry(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, sqlGetSteps, ids)
		if err != nil {
			return err
		}
		steps, err = collectSteps(rows)
		return err
	})
	if err != nil {
		// The sagas stay leased to owner until the lease expires; then
		// another claim takes them.
		return nil, interpretError("load steps of claimed sagas", err)
	}
	for _, sg := range claimed {
		sg.Steps = steps[sg.ID]
		if sg.Steps == nil {
			sg.Steps = []saga.Step{}
		}
	}
	return claimed, nil
}

// RenewLeases extends the live leases owner holds on the given sagas (at
// the given epochs) and returns the ids it renewed. See saga.Store.
func (s *Store) RenewLeases(ctx context.Context, owner string, leases map[saga.ID]int64, leaseFor time.Duration) (renewed []saga.ID, err error) {
	defer s.observe(opRenewLeases, time.Now(), &err)
	if len(leases) == 0 {
		return nil, nil
	}
	if leaseFor <= 0 {
		return nil, fmt.Errorf("renew leases: lease duration %v is not positive", leaseFor)
	}
	ids := make([]saga.ID, 0, len(leases))
	epochs := make([]int64, 0, len(leases))
	for id, epoch := range leases {
		ids = append(ids, id)
		epochs = append(epochs, epoch)
	}
	err = retry(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, sqlRenewLeases, owner, ids, epochs, max(micros(leaseFor), 1))
		if err != nil {
			return err
		}
		renewed, err = pgx.CollectRows(rows, pgx.RowTo[saga.ID])
		return err
	})
	if err != nil {
		return nil, interpretError("renew leases", err)
	}
	return renewed, nil
}

// RequestControl records an operator action on a saga whose status allows
// it and makes the saga runnable at once, with the events of the request
// (saga.Chain.SealControl), in one transaction that locks the saga's row to
// chain them. See saga.Store.
func (s *Store) RequestControl(ctx context.Context, id saga.ID, action saga.ControlAction) (sg *saga.Saga, err error) {
	defer s.observe(opRequestControl, time.Now(), &err)
	doing := fmt.Sprintf("request %s of saga %s", action, id)
	if len(action.AllowedStatuses()) == 0 {
		return nil, fmt.Errorf("%s: unknown operator action %q: %w", doing, action, saga.ErrInvalidTransition)
	}
	var (
		refusedIn saga.SagaStatus
		next      head
	)
	err = s.lockedWrite(ctx, id, func(tx pgx.Tx, status saga.SagaStatus, h head, at time.Time) error {
		refusedIn = ""
		if !action.AllowedIn(status) {
			refusedIn = status
			return nil
		}
		events, chain, err := s.chain.SealControl(ctx, h.chainHead(id), action, h.pending, at)
		if err != nil {
			return err
		}
		eventsJSON, _, err := encodeEvents(events)
		if err != nil {
			return err
		}
		req := events[len(events)-1]
		sg, next, err = scanSagaHead(tx.QueryRow(ctx, sqlRequestControl, id, string(action), req.Seq, nullString(req.Actor),
			at, chain.Seq, chain.Hash, eventsJSON), s.sealer)
		return err
	})
	switch {
	case err != nil:
		return nil, interpretError(doing, err)
	case refusedIn != "":
		return nil, fmt.Errorf("%s: cannot %s a saga that is %s: %w", doing, action, refusedIn, saga.ErrInvalidTransition)
	}
	// The instance running the saga here chains its next write after these
	// events without reading them back.
	s.heads.advance(id, next)
	return sg, nil
}

// lockedWrite runs fn in a transaction that holds the lock of saga id's
// row, with its status, its chain head and the time of the write. It is
// the path of the writes outside a lease (operator requests, legal holds):
// they chain events after whatever the saga's writer wrote last.
func (s *Store) lockedWrite(ctx context.Context, id saga.ID, fn func(tx pgx.Tx, status saga.SagaStatus, h head, at time.Time) error) error {
	return retry(ctx, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var (
				status  string
				h       head
				control *string
				ctlSeq  *int64
				ctlBy   *string
			)
			if err := tx.QueryRow(ctx, sqlLockSaga, id).Scan(&status, &h.seq, &h.hash, &control, &ctlSeq, &ctlBy, &h.at); err != nil {
				return err
			}
			h.at = h.at.UTC()
			h.pending = saga.PendingControl{Action: saga.ControlAction(deref(control)), Seq: deref(ctlSeq), Actor: deref(ctlBy)}
			return fn(tx, saga.SagaStatus(status), h, s.clock.writeTime(h))
		})
	})
}
