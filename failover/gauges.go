package failover

import (
	"context"
	"fmt"
	"time"

	saga "github.com/tracseq/transaction-service"
)

var _ saga.GaugeReader = (*Store)(nil)

// gaugeReader returns the store that answers saga.GaugeReader now: the
// database once switched, memory before. While sagas are being moved, the
// figures are memory's alone. The read lock is held on return when
// unlock is not nil.
func (s *Store) gaugeReader() (gr saga.GaugeReader, unlock func(), err error) {
	if !s.durable.Load() {
		s.mu.RLock()
		if !s.durable.Load() {
			return s.mem, s.mu.RUnlock, nil
		}
		s.mu.RUnlock()
	}
	gr, ok := s.db.(saga.GaugeReader)
	if !ok {
		return nil, nil, fmt.Errorf("the database store %T does not report gauges", s.db)
	}
	return gr, nil, nil
}

// Gauges returns the figures of saga.GaugeReader from the store in use.
func (s *Store) Gauges(ctx context.Context) (saga.Gauges, error) {
	gr, unlock, err := s.gaugeReader()
	if err != nil {
		return saga.Gauges{}, err
	}
	if unlock != nil {
		defer unlock()
	}
	return gr.Gauges(ctx)
}

// Activity returns the figures of saga.GaugeReader from the store in use.
func (s *Store) Activity(ctx context.Context, window time.Duration) (saga.Activity, error) {
	gr, unlock, err := s.gaugeReader()
	if err != nil {
		return saga.Activity{}, err
	}
	if unlock != nil {
		defer unlock()
	}
	return gr.Activity(ctx, window)
}
