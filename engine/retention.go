package engine

import (
	"context"
	"fmt"

	saga "github.com/tracseq/transaction-service"
)

// CleanupExpired deletes the sagas whose end status's retention in r has
// passed (Failed sagas and sagas under legal hold are never deleted), in
// batches of CleanupBatch, and returns how many it deleted.
func (c *Coordinator) CleanupExpired(ctx context.Context, r saga.Retention) (int, error) {
	n, err := c.store.DeleteExpired(ctx, r, CleanupBatch)
	if err != nil {
		return n, fmt.Errorf("delete expired sagas: %w", err)
	}
	return n, nil
}

// SetLegalHold sets (hold = true) or clears the legal hold of a saga:
// while it is set, cleanup never deletes the saga. It returns the saga as
// it is after, or an error wrapping saga.ErrNotFound.
func (c *Coordinator) SetLegalHold(ctx context.Context, id saga.ID, hold bool) (*saga.Saga, error) {
	s, err := c.store.SetLegalHold(ctx, id, hold)
	if err != nil {
		return nil, fmt.Errorf("set legal hold: %w", err)
	}
	c.log.Info("legal hold changed", "saga_id", id.String(), "legal_hold", hold)
	return s, nil
}
