package engine_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
)

// readCounter is a store that counts the reads a waiting coordinator makes.
type readCounter struct {
	saga.Store
	mu       sync.Mutex
	gets     int
	batches  int
	maxBatch int // the most ids one SagaStatuses asked for
}

func (s *readCounter) GetSaga(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	s.mu.Lock()
	s.gets++
	s.mu.Unlock()
	return s.Store.GetSaga(ctx, id)
}

func (s *readCounter) SagaStatuses(ctx context.Context, ids []saga.ID) (map[saga.ID]saga.SagaStatus, error) {
	s.mu.Lock()
	s.batches++
	s.maxBatch = max(s.maxBatch, len(ids))
	s.mu.Unlock()
	return s.Store.SagaStatuses(ctx, ids)
}

func (s *readCounter) counts() (gets, batches, maxBatch int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets, s.batches, s.maxBatch
}

// Waiters on a coordinator that does not run the sagas read the store once
// per poll for all of them, and each saga whole only once it has ended:
// not one read per saga per poll.
func TestWaitRemoteReadsOneBatchPerPoll(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		const n = 20
		b := setup(t, kind, nil) // runs the sagas
		counted := &readCounter{Store: b.store}
		waiter, err := engine.New(counted, testConfig(t, "engine-b")) // never started: runs nothing
		if err != nil {
			t.Fatalf("new coordinator: %v", err)
		}
		g := newGate(t)
		b.stub.on("action", "a", g.handler())
		ids := make([]saga.ID, n)
		for i := range ids {
			ids[i] = b.submit(t, b.definition("remote-wait", "a", "b")).ID
		}

		type answer struct {
			s   *saga.Saga
			err error
		}
		answers := make([]answer, n)
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				s, err := waiter.Wait(ctx, id)
				answers[i] = answer{s, err}
			})
		}

		// Three polls of every saga while none has ended.
		var seen int
		eventually(t, "a poll of all the sagas", func() bool {
			_, batches, most := counted.counts()
			seen = batches
			return most == n
		})
		eventually(t, "three more polls", func() bool {
			_, batches, _ := counted.counts()
			return batches >= seen+3
		})
		if gets, batches, most := counted.counts(); gets != 0 || most > n {
			t.Fatalf("while %d sagas ran elsewhere, %d polls made %d reads of a saga and asked for up to %d ids; "+
				"want no saga read and at most %d ids a poll", n, batches, gets, most, n)
		}

		g.open()
		wg.Wait()
		gets, _, _ := counted.counts()
		for i, a := range answers {
			if a.err != nil {
				t.Fatalf("wait for saga %s: %v", ids[i], a.err)
			}
			if a.s.ID != ids[i] || a.s.Status != saga.SagaStatusCompleted {
				t.Fatalf("waiter of saga %s got saga %s %s, want it Completed", ids[i], a.s.ID, a.s.Status)
			}
			stored, err := b.store.GetSaga(context.Background(), ids[i])
			if err != nil {
				t.Fatalf("get saga: %v", err)
			}
			if got, want := normalized(t, a.s), normalized(t, stored); got != want {
				t.Fatalf("the waiter got a saga that differs from the stored one:\nwait:   %s\nstored: %s", got, want)
			}
		}
		if gets != n {
			t.Errorf("%d reads of a saga for %d sagas that ended; want one each", gets, n)
		}
	})
}

// A wait for a saga the store does not hold answers ErrNotFound from the
// poll of statuses.
func TestWaitRemoteUnknownSaga(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, kind storeKind) {
		counted := &readCounter{Store: kind.open(t)}
		waiter, err := engine.New(counted, testConfig(t, "engine-b"))
		if err != nil {
			t.Fatalf("new coordinator: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err = waiter.Wait(ctx, saga.NewID())
		if !errors.Is(err, saga.ErrNotFound) {
			t.Fatalf("wait for an unknown saga: %v, want ErrNotFound", err)
		}
		if gets, batches, _ := counted.counts(); gets != 0 || batches == 0 {
			t.Errorf("%d reads of a saga and %d polls of statuses; want none and at least one", gets, batches)
		}
	})
}
