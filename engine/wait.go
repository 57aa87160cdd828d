package engine

import (
	"context"
	"fmt"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// waitPollInterval is how often the watch poller reads the sagas waited for
// that no runner of this instance holds.
const waitPollInterval = 100 * time.Millisecond

// watch is what every Wait on one saga shares: one answer, told by the
// saga's runner on this instance when it ends the saga, or by the one
// poller that reads the sagas run elsewhere.
type watch struct {
	id      saga.ID
	waiters int
	done    chan struct{} // closed once final or err is set
	final   *saga.Saga    // the ended saga as stored
	taken   bool          // the first waiter took final; the others copy it
	err     error
}

// Wait returns the saga once it is in an end state (saga.SagaStatus.Terminal),
// or as it is when ctx is done; ctx ending is not an error. Waiters of one
// saga share one watch: its runner tells them at once when it runs here,
// and when it runs elsewhere one poller reads the statuses of all the
// sagas waited for in one query per period, whatever their number, and
// reads a saga whole only once it has ended. An error wraps
// saga.ErrNotFound for an unknown saga.
func (c *Coordinator) Wait(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	w := c.join(id)
	defer c.leave(w)
	select {
	case <-w.done:
		return c.answer(w)
	case <-ctx.Done():
	}
	// Read it as it is now, past ctx.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s, err := c.store.GetSaga(lctx, id)
	if err != nil {
		return nil, fmt.Errorf("get saga: %w", err)
	}
	return s, nil
}

// answer returns what w ended with.
func (c *Coordinator) answer(w *watch) (*saga.Saga, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w.err != nil {
		return nil, w.err
	}
	if !w.taken {
		w.taken = true
		return w.final, nil
	}
	return cloneSaga(w.final), nil
}

// join adds a waiter to the watch of id, creating it (and starting the
// poller) when it is the first.
func (c *Coordinator) join(id saga.ID) *watch {
	c.mu.Lock()
	w := c.watches[id]
	if w == nil {
		w = &watch{id: id, done: make(chan struct{})}
		c.watches[id] = w
	}
	w.waiters++
	_, local := c.runners[id]
	start := !c.polling
	c.polling = true
	c.mu.Unlock()
	if start {
		go c.pollWatches()
	}
	if !local {
		c.pokePoller() // read it now: it may have ended already
	}
	return w
}

// leave removes a waiter; the last one drops the watch.
func (c *Coordinator) leave(w *watch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w.waiters--
	if w.waiters == 0 && c.watches[w.id] == w {
		delete(c.watches, w.id)
	}
}

// resolve gives w its answer, once.
func (c *Coordinator) resolve(w *watch, final *saga.Saga, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-w.done:
		return
	default:
	}
	w.final, w.err = final, err
	if c.watches[w.id] == w {
		// Later waiters start a watch of their own and read the saga.
		delete(c.watches, w.id)
	}
	close(w.done)
}

func (c *Coordinator) pokePoller() {
	select {
	case c.pollWake <- struct{}{}:
	default:
	}
}

// pollWatches reads, every waitPollInterval or when poked, the statuses
// of the sagas waited for that no runner of this instance holds, and
// resolves those that ended. It returns when nothing is waited for.
func (c *Coordinator) pollWatches() {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-c.pollWake:
		}
		c.mu.Lock()
		if len(c.watches) == 0 {
			c.polling = false
			c.mu.Unlock()
			return
		}
		var remote []*watch
		for id, w := range c.watches {
			if _, local := c.runners[id]; !local {
				remote = append(remote, w)
			}
		}
		c.mu.Unlock()
		if len(remote) > 0 {
			c.pollRemote(remote)
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(waitPollInterval)
	}
}

// pollRemote reads the statuses of the watched sagas in one query, then
// each saga that ended (the rest are not read). A failed read of the
// statuses leaves the waiters waiting for the next period; the store has
// retried what was transient.
func (c *Coordinator) pollRemote(remote []*watch) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ids := make([]saga.ID, len(remote))
	for i, w := range remote {
		ids[i] = w.id
	}
	statuses, err := c.store.SagaStatuses(ctx, ids)
	if err != nil {
		c.log.Warn("read statuses of awaited sagas", "sagas", len(ids), "error", err)
		return
	}
	for _, w := range remote {
		st, ok := statuses[w.id]
		switch {
		case !ok:
			c.resolve(w, nil, fmt.Errorf("get saga %s: %w", w.id, saga.ErrNotFound))
		case st.Terminal():
			c.pollEnded(ctx, w)
		}
	}
}

// pollEnded reads a saga the poller saw ended and gives its watch the
// answer. A saga moved on since (an operator's retry of a Failed saga) is
// left to the next period.
func (c *Coordinator) pollEnded(ctx context.Context, w *watch) {
	s, err := c.store.GetSaga(ctx, w.id)
	switch {
	case err != nil:
		c.resolve(w, nil, fmt.Errorf("get saga: %w", err))
	case s.Status.Terminal():
		c.resolve(w, s, nil)
	}
}
