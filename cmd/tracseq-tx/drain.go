package main

import (
	"context"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/failover"
	"github.com/tracseq/transaction-service/memory"
)

// drainPollInterval is how often a shutdown in memory mode looks whether
// the running sagas have ended.
const drainPollInterval = 100 * time.Millisecond

// inMemory reports whether the sagas this service holds live only in its
// memory: persistence disabled, or the database not reached yet.
func (s *service) inMemory() bool {
	switch st := s.store.(type) {
	case *memory.Store:
		return true
	case *failover.Store:
		return !st.Durable()
	}
	return false
}

// unfinished counts the sagas of the store that have not ended: active
// ones (Created, Executing, Compensating), which end by themselves, and
// those waiting for an operator (Paused, Failed), which do not.
func (s *service) unfinished(ctx context.Context) (active, waiting int64, err error) {
	st, err := s.store.Stats(ctx, time.Minute)
	if err != nil {
		return 0, 0, err
	}
	active = st.ByStatus[saga.SagaStatusCreated] + st.ByStatus[saga.SagaStatusExecuting] + st.ByStatus[saga.SagaStatusCompensating]
	waiting = st.ByStatus[saga.SagaStatusPaused] + st.ByStatus[saga.SagaStatusFailed]
	return active, waiting, nil
}

// drainMemory waits, until ctx is done, for the sagas held in memory to
// end, saying loudly what is at stake and what was lost. The engine keeps
// running them (and claiming those queued) meanwhile; the API is closed
// already.
func (s *service) drainMemory(ctx context.Context) {
	active, waiting, err := s.unfinished(ctx)
	if err != nil {
		s.logger.Error("MEMORY MODE: cannot count the sagas held in memory before stopping", "error", err)
		return
	}
	if waiting > 0 {
		s.logger.Error("MEMORY MODE: sagas waiting for an operator (Paused or Failed) live only in memory and are LOST when the process stops",
			"sagas", waiting)
	}
	if active == 0 {
		return
	}
	limit := "the shutdown timeout"
	if d, ok := ctx.Deadline(); ok {
		limit = time.Until(d).Round(time.Second).String()
	}
	s.logger.Error("MEMORY MODE: sagas are still running and live only in memory; waiting up to "+limit+
		" for them to end before stopping; those still running then are LOST",
		"sagas", active, "running_here", s.engine.Running())
	started := time.Now()
	ticker := time.NewTicker(drainPollInterval)
	defer ticker.Stop()
	for active > 0 {
		select {
		case <-ctx.Done():
			s.logger.Error("MEMORY MODE: shutdown timeout reached: sagas still running are LOST",
				"sagas", active, "waited_ms", time.Since(started).Milliseconds())
			return
		case <-ticker.C:
		}
		if active, _, err = s.unfinished(ctx); err != nil {
			active = 1 // try again at the next tick
		}
	}
	s.logger.Warn("MEMORY MODE: every running saga ended before stopping", "waited_ms", time.Since(started).Milliseconds())
}
