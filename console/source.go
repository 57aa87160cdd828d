package console

import (
	"context"

	saga "github.com/tracseq/transaction-service"
)

// StoreSource returns a Source that reads a store directly, for a console
// without an engine (tools, tests, benchmarks). instanceID names the
// reader on the health page.
func StoreSource(store saga.Store, instanceID string) Source {
	return storeSource{store: store, id: instanceID}
}

type storeSource struct {
	store saga.Store
	id    string
}

func (s storeSource) List(ctx context.Context, f saga.Filter) (saga.Page, error) {
	return s.store.ListSagas(ctx, f)
}

func (s storeSource) Get(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	return s.store.GetSaga(ctx, id)
}

func (s storeSource) Events(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error) {
	return s.store.ListEvents(ctx, id, afterSeq, limit)
}

func (s storeSource) Health(ctx context.Context) saga.Health { return s.store.Health(ctx) }

func (s storeSource) InstanceID() string { return s.id }
