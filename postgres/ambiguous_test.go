package postgres

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/storetest"
)

// killOwnBackend ends the connection that runs it.
const killOwnBackend = `SELECT pg_terminate_backend(pg_backend_pid()) /* tracseq ambiguous commit */`

// killEveryBatch returns hooks that end the connection of each of the next n
// batches, after its COMMIT (committed, answer lost) or before it (never
// committed).
func killEveryBatch(n int32, afterCommit bool) hooks {
	left := new(atomic.Int32)
	left.Store(n)
	return hooks{beforeSend: func(int) (before, after []string) {
		if left.Add(-1) < 0 {
			return nil, nil
		}
		if afterCommit {
			return nil, []string{killOwnBackend}
		}
		return []string{killOwnBackend}, nil
	}}
}

// A create whose commit is never answered, however often it is retried,
// is found to have happened: the saga is returned, not an "unavailable"
// that would make the client create it again.
func TestCreateOutcomeUnknownIsResolved(t *testing.T) {
	t.Parallel()
	b := setup(t, killEveryBatch(retryAttempts+1, true))
	in := storetest.NewTestSaga("w", 2)
	sg, existed, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: in,
		Events: []saga.Event{{Type: saga.EventSagaCreated}}, LeaseFor: time.Hour})
	if err != nil || existed {
		t.Fatalf("CreateSaga after every commit lost its answer: existed %v, %v", existed, err)
	}
	if sg.ID != in.ID || sg.OwnerID != "w" || sg.LeaseEpoch != 1 || len(sg.Steps) != 2 {
		t.Errorf("CreateSaga returned %+v", sg)
	}
	var n int
	if err := b.db.QueryRow(b.ctx, `SELECT count(*) FROM sagas`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d sagas stored (%v); want 1", n, err)
	}
}

// A create whose connection dies before every COMMIT did not happen: the
// answer is unavailable, and nothing is stored.
func TestCreateNeverCommittedIsUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t, killEveryBatch(retryAttempts+1, false))
	_, _, err := b.store.CreateSaga(b.ctx, saga.NewSaga{Saga: storetest.NewTestSaga("w", 2),
		Events: []saga.Event{{Type: saga.EventSagaCreated}}, LeaseFor: time.Hour})
	if !errors.Is(err, saga.ErrUnavailable) {
		t.Fatalf("CreateSaga: %v; want ErrUnavailable", err)
	}
	var n int
	if err := b.db.QueryRow(b.ctx, `SELECT count(*) FROM sagas`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d sagas stored (%v); want 0", n, err)
	}
}
