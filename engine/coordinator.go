package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Coordinator runs sagas on a Store. Create it with New, start its
// background loops with Start and stop it with Stop. All methods are safe
// for concurrent use.
type Coordinator struct {
	store saga.Store
	cfg   Config
	log   *slog.Logger
	obs   Observer
	// base is the start of the coordinator's monotonic clock (lease
	// expiry estimates).
	base time.Time

	slots   chan struct{} // one token per running saga
	wakeCh  chan struct{} // wakes the claim loop
	backlog atomic.Bool   // runnable work may be waiting for a slot

	mu       sync.Mutex
	runners  map[saga.ID]*runner
	watches  map[saga.ID]*watch // sagas someone Waits for
	pollWake chan struct{}      // wakes the watch poller
	polling  bool               // the watch poller runs
	started  bool
	stopped  bool
	stopping chan struct{} // closed by Stop

	runCtx      context.Context // parent of runner contexts
	runCancel   context.CancelFunc
	loopCancel  context.CancelFunc
	renewCancel context.CancelFunc
	runWG       sync.WaitGroup // runners
	loopWG      sync.WaitGroup // claim and cleanup loops
	renewWG     sync.WaitGroup // lease renewer
}

// New returns a Coordinator on store. It returns an error naming the
// configuration field at fault.
func New(store saga.Store, cfg Config) (*Coordinator, error) {
	if store == nil {
		return nil, errors.New("engine: store must not be nil")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Coordinator{
		store:    store,
		cfg:      cfg,
		log:      cfg.Logger.With("component", "engine", "instance_id", cfg.InstanceID),
		obs:      cfg.Observer,
		base:     time.Now(),
		slots:    make(chan struct{}, cfg.MaxConcurrentSagas),
		wakeCh:   make(chan struct{}, 1),
		runners:  make(map[saga.ID]*runner),
		watches:  make(map[saga.ID]*watch),
		pollWake: make(chan struct{}, 1),
		stopping: make(chan struct{}),
	}, nil
}

// InstanceID returns the instance id this coordinator leases sagas as.
func (c *Coordinator) InstanceID() string { return c.cfg.InstanceID }

// Start starts the claim loop, the lease renewer and the cleanup loop, and
// claims runnable sagas at once (those a dead instance left behind among
// them). It returns when they are started. The loops stop when ctx is
// cancelled or Stop is called; sagas being run are let go only by Stop.
func (c *Coordinator) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return errors.New("engine: coordinator already started")
	}
	c.started = true
	c.runCtx, c.runCancel = context.WithCancel(context.WithoutCancel(ctx))
	loopCtx, loopCancel := context.WithCancel(ctx)
	c.loopCancel = loopCancel
	renewCtx, renewCancel := context.WithCancel(context.WithoutCancel(ctx))
	c.renewCancel = renewCancel

	c.loopWG.Add(2)
	go c.claimLoop(loopCtx)
	go c.cleanupLoop(loopCtx)
	c.renewWG.Add(1)
	go c.renewLoop(renewCtx)
	c.signal()
	c.log.Info("coordinator started",
		"lease_duration", c.cfg.LeaseDuration, "max_concurrent_sagas", c.cfg.MaxConcurrentSagas)
	return nil
}

// Stop stops claiming work and lets the running sagas go: each runner
// finishes the call it is making, writes its outcome and releases the saga
// (status kept, runnable at once by any instance) instead of making the
// next call. Stop waits for them until ctx is done; then it abandons the
// calls still in flight (their sagas are recovered when their leases
// expire) and returns ctx's error. A stopped coordinator cannot be started
// again.
func (c *Coordinator) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	close(c.stopping)
	started := c.started
	c.mu.Unlock()
	if !started {
		return nil
	}
	c.loopCancel()
	c.loopWG.Wait()

	done := make(chan struct{})
	go func() {
		c.runWG.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("stop coordinator: %w", ctx.Err())
		c.log.Warn("stop deadline passed: abandoning calls in flight")
		c.runCancel()
		<-done
	}
	c.renewCancel()
	c.renewWG.Wait()
	c.runCancel()
	c.log.Info("coordinator stopped")
	return err
}

// isStopping reports whether Stop was called.
func (c *Coordinator) isStopping() bool {
	select {
	case <-c.stopping:
		return true
	default:
		return false
	}
}

// signal wakes the claim loop.
func (c *Coordinator) signal() {
	select {
	case c.wakeCh <- struct{}{}:
	default:
	}
}

// reserve takes up to n free worker slots for new runners and returns how
// many it took; zero once the coordinator is stopping or not started.
func (c *Coordinator) reserve(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || c.stopped {
		return 0
	}
	got := 0
	for got < n {
		select {
		case c.slots <- struct{}{}:
			got++
			continue
		default:
		}
		break
	}
	c.runWG.Add(got)
	return got
}

// unreserve gives back n slots reserve took that no runner uses.
func (c *Coordinator) unreserve(n int) {
	for range n {
		<-c.slots
		c.runWG.Done()
	}
}

// Submit validates def and creates its saga. When a worker slot is free the
// saga is created already leased to this instance with its first step
// started, and runs at once; otherwise it is created runnable and the claim
// loop of some instance takes it when a slot frees. When def's idempotency
// key is already known, the first saga with it is returned with existed =
// true and nothing runs.
//
// Errors: a *saga.ValidationError naming every bad field; a *saga.Error with
// code ECodeForbidden naming the field of a participant URL whose host is not
// allowed; or the store's error.
func (c *Coordinator) Submit(ctx context.Context, def saga.Definition) (*saga.Saga, bool, error) {
	if err := def.Validate(); err != nil {
		return nil, false, err
	}
	if err := checkHosts(c.cfg.AllowedHosts, &def); err != nil {
		return nil, false, err
	}
	s := newSaga(def)
	data := newObject(48 + len(s.Name))
	data.str("name", s.Name)
	data.int("total_steps", int64(s.TotalSteps))
	events := make([]saga.Event, 1, 4)
	events[0] = saga.Event{Type: saga.EventSagaCreated, Data: data.done()}
	leaseFor := time.Duration(0)
	var p *plan
	var first []*call
	if c.reserve(1) == 1 {
		// A free slot: the machine's first decision (the saga started, its
		// first steps started) is written with the saga itself, leased here.
		p = newPlan(&s.Definition)
		s.OwnerID, s.LeaseEpoch = c.cfg.InstanceID, 1 // as CreateSaga leases it
		d := decide(&input{s: s, plan: p, now: time.Now(), stopping: c.isStopping(), leaseFor: c.cfg.LeaseDuration})
		if d.err != nil || d.exit || len(d.start) == 0 {
			// Not the usual first decision (the instance is stopping, say):
			// create the saga runnable and let a claim decide.
			c.unreserve(1)
			s.OwnerID, s.LeaseEpoch = "", 0
		} else {
			s.ApplyTransition(d.t, time.Time{})
			events = append(events, d.t.Events...)
			leaseFor = c.callLease(d.start)
			first = d.start
		}
	}
	c.stampEvents(events)
	created, existed, err := c.store.CreateSaga(ctx, saga.NewSaga{Saga: s, Events: events, LeaseFor: leaseFor})
	fast := leaseFor > 0
	if err != nil || existed {
		if fast {
			c.unreserve(1)
		}
		if err != nil {
			return nil, false, fmt.Errorf("create saga: %w", err)
		}
		return created, true, nil
	}
	if fast {
		if len(created.Steps) != len(s.Steps) {
			created.Steps = s.Steps
		}
		c.obs.SagaStarted(created.Name)
		c.launch(created, false, p, first)
	} else {
		c.backlog.Store(true)
		c.signal()
	}
	return created, false, nil
}

// newSaga builds the saga of def as a new, unleased saga.
func newSaga(def saga.Definition) *saga.Saga {
	s := &saga.Saga{
		ID:             saga.NewID(),
		Name:           def.Name,
		Status:         saga.SagaStatusCreated,
		UserID:         def.UserID,
		Context:        def.Context,
		Definition:     def,
		IdempotencyKey: def.IdempotencyKey,
		TotalSteps:     len(def.Steps),
		Durable:        true,
		Steps:          make([]saga.Step, len(def.Steps)),
	}
	if def.TransactionID != nil {
		s.TransactionID = *def.TransactionID
	} else {
		s.TransactionID = saga.NewID()
	}
	if len(s.Context) == 0 {
		s.Context = json.RawMessage(`{}`)
	}
	for i, st := range def.Steps {
		s.Steps[i] = saga.Step{Index: i, Name: st.Name, Status: saga.StepStatusPending, Input: st.Action.Body}
	}
	return s
}

// launch starts the runner of s, for which a slot was reserved: claimed,
// or created here with the calls unsent written as started (p is then its
// plan).
func (c *Coordinator) launch(s *saga.Saga, claimed bool, p *plan, unsent []*call) {
	r := newRunner(c, cloneSaga(s), claimed, p, unsent)
	c.mu.Lock()
	old := c.runners[s.ID]
	c.runners[s.ID] = r
	n := len(c.runners)
	c.mu.Unlock()
	if old != nil {
		// Our own earlier lease ran out and this instance claimed the saga
		// again: the old runner is fenced off.
		old.loseLease("saga claimed again")
	}
	c.obs.InFlight(n)
	go r.run()
}

// finish is called by a runner when it is done with its saga.
func (c *Coordinator) finish(r *runner) {
	r.cancel()
	c.mu.Lock()
	if c.runners[r.id] == r {
		delete(c.runners, r.id)
	}
	w := c.watches[r.id]
	n := len(c.runners)
	c.mu.Unlock()
	if w != nil {
		// Waiters of the saga learn its end from the runner's copy when it
		// is exact, else from the poller, which reads it now.
		if final := r.finalSaga(); final != nil {
			c.resolve(w, final, nil)
		} else {
			c.pokePoller()
		}
	}
	<-c.slots
	c.obs.InFlight(n)
	if c.backlog.Load() {
		c.signal()
	}
	c.runWG.Done()
}

// claimLoop claims runnable sagas on a slow ticker and whenever woken.
func (c *Coordinator) claimLoop(ctx context.Context) {
	defer c.loopWG.Done()
	ticker := time.NewTicker(c.cfg.ClaimInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-c.wakeCh:
		}
		for {
			more, err := c.claimOnce(ctx)
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("claim sagas", "error", err)
				}
				break
			}
			if !more || ctx.Err() != nil {
				break
			}
		}
	}
}

// claimOnce claims as many runnable sagas as there are free slots (at most
// ClaimBatch) and starts their runners. more reports that a full batch came
// back, so more work may be waiting.
func (c *Coordinator) claimOnce(ctx context.Context) (more bool, err error) {
	n := c.reserve(c.cfg.ClaimBatch)
	if n == 0 {
		return false, nil
	}
	sagas, err := c.store.ClaimSagas(ctx, c.cfg.InstanceID, c.cfg.LeaseDuration, n)
	if err != nil {
		c.unreserve(n)
		return false, fmt.Errorf("claim sagas: %w", err)
	}
	c.unreserve(n - len(sagas))
	for _, s := range sagas {
		c.launch(s, true, nil, nil)
	}
	full := len(sagas) == n
	c.backlog.Store(full)
	return full && n == c.cfg.ClaimBatch, nil
}

// renewLoop renews every held lease each LeaseDuration/3.
func (c *Coordinator) renewLoop(ctx context.Context) {
	defer c.renewWG.Done()
	ticker := time.NewTicker(c.cfg.LeaseDuration / 3)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if err := c.renewOnce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("renew leases", "error", err)
		}
	}
}

// renewOnce renews the leases of the running sagas with one RenewLeases and
// stops the runners whose lease was lost.
func (c *Coordinator) renewOnce(ctx context.Context) error {
	c.mu.Lock()
	now := c.now()
	// Leases are renewed for LeaseDuration, or longer while a call whose
	// timeout outlasts that is in flight: one RenewLeases per duration.
	groups := make(map[time.Duration]map[saga.ID]int64, 1)
	asked := make(map[saga.ID]*runner, len(c.runners))
	for id, r := range c.runners {
		if r.finishing.Load() {
			continue
		}
		d := r.renewFor(now)
		if groups[d] == nil {
			groups[d] = make(map[saga.ID]int64, len(c.runners))
		}
		groups[d][id] = r.lease.Epoch
		asked[id] = r
	}
	c.mu.Unlock()
	if len(asked) == 0 {
		return nil
	}
	kept := make(map[saga.ID]time.Duration, len(asked))
	var errs []error
	for d, leases := range groups {
		start := c.now()
		renewed, err := c.store.RenewLeases(ctx, c.cfg.InstanceID, leases, d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, id := range renewed {
			kept[id] = start + d
		}
	}
	if len(errs) > 0 {
		c.stopExpired(asked)
		return fmt.Errorf("renew leases: %w", errors.Join(errs...))
	}
	c.mu.Lock()
	var lost []*runner
	for id, r := range asked {
		if c.runners[id] != r {
			// Gone, or a later claim started another runner whose lease
			// (a newer epoch) this renewal did not ask about.
			continue
		}
		if end, ok := kept[id]; ok {
			r.extendLeaseTo(end)
		} else if !r.finishing.Load() {
			lost = append(lost, r)
		}
	}
	c.mu.Unlock()
	for _, r := range lost {
		r.loseLease("lease not renewed")
	}
	return nil
}

// stopExpired stops the runners among asked whose lease has run out by
// the coordinator's clock (an estimate that errs early): the saga may be
// claimed by another instance now.
func (c *Coordinator) stopExpired(asked map[saga.ID]*runner) {
	now := int64(c.now())
	var expired []*runner
	c.mu.Lock()
	for id, r := range asked {
		if c.runners[id] == r && !r.finishing.Load() && r.leaseEnd.Load() <= now {
			expired = append(expired, r)
		}
	}
	c.mu.Unlock()
	for _, r := range expired {
		r.loseLease("lease expired: renewals failed")
	}
}

// cleanupLoop deletes old finished sagas every CleanupInterval.
func (c *Coordinator) cleanupLoop(ctx context.Context) {
	defer c.loopWG.Done()
	ticker := time.NewTicker(c.cfg.CleanupInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		n, err := c.Cleanup(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			c.log.Warn("clean up finished sagas", "error", err)
		case n > 0:
			c.log.Info("cleaned up finished sagas", "deleted", n)
		}
	}
}

// Cleanup deletes the sagas that ended more than CleanupAfter ago (Failed
// sagas excepted) and returns how many it deleted.
func (c *Coordinator) Cleanup(ctx context.Context) (int, error) {
	n, err := c.store.DeleteFinished(ctx, c.cfg.CleanupAfter, CleanupBatch)
	if err != nil {
		return n, fmt.Errorf("delete finished sagas: %w", err)
	}
	return n, nil
}

// Get returns a saga with its steps, or an error wrapping saga.ErrNotFound.
func (c *Coordinator) Get(ctx context.Context, id saga.ID) (*saga.Saga, error) {
	s, err := c.store.GetSaga(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("get saga: %w", err)
	}
	return s, nil
}

// List returns a page of sagas matching f, newest first.
func (c *Coordinator) List(ctx context.Context, f saga.Filter) (saga.Page, error) {
	p, err := c.store.ListSagas(ctx, f)
	if err != nil {
		return saga.Page{}, fmt.Errorf("list sagas: %w", err)
	}
	return p, nil
}

// Events returns a saga's events after sequence number afterSeq, in order,
// at most limit (0: all). An error wraps saga.ErrNotFound for an unknown
// saga.
func (c *Coordinator) Events(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error) {
	evs, err := c.store.ListEvents(ctx, id, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return evs, nil
}

// Control records an operator action on a saga; the instance that holds (or
// next claims) the saga carries it out between steps. It returns the saga as
// it is after the request. Errors: a *saga.Error (ECodeInvalid, field
// "action") for an unknown action; errors wrapping saga.ErrNotFound, or
// saga.ErrInvalidTransition when the action is not allowed in the saga's
// status.
func (c *Coordinator) Control(ctx context.Context, id saga.ID, a saga.ControlAction) (*saga.Saga, error) {
	known := false
	for _, k := range saga.ControlActions {
		known = known || a == k
	}
	if !known {
		return nil, saga.Errorf(saga.ECodeInvalid, "action", "must be one of pause, resume, cancel, retry (got %q)", a)
	}
	s, err := c.store.RequestControl(ctx, id, a)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", a, err)
	}
	c.mu.Lock()
	r := c.runners[id]
	c.mu.Unlock()
	if r != nil {
		r.pokeNow()
	} else {
		c.signal()
	}
	return s, nil
}

// Statistics returns the counts by status and the figures of the sagas that
// ended within window (StatsWindowDefault when window <= 0).
func (c *Coordinator) Statistics(ctx context.Context, window time.Duration) (saga.Stats, error) {
	if window <= 0 {
		window = StatsWindowDefault
	}
	st, err := c.store.Stats(ctx, window)
	if err != nil {
		return saga.Stats{}, fmt.Errorf("saga statistics: %w", err)
	}
	return st, nil
}

// Health reports on the store.
func (c *Coordinator) Health(ctx context.Context) saga.Health {
	return c.store.Health(ctx)
}

// now returns the coordinator's monotonic clock reading.
func (c *Coordinator) now() time.Duration { return time.Since(c.base) }

// stampEvents gives events built by the state machine their id and this
// instance's id. The ids are fixed here, once per transition, so that every
// retry of one write is the same write.
func (c *Coordinator) stampEvents(evs []saga.Event) {
	for i := range evs {
		if evs[i].ID.IsZero() {
			evs[i].ID = saga.NewID()
		}
		if evs[i].InstanceID == "" {
			evs[i].InstanceID = c.cfg.InstanceID
		}
	}
}

func intPtr(i int) *int { return &i }

// cloneSaga copies s deep enough for a runner to change its copy while the
// caller reads the original.
func cloneSaga(s *saga.Saga) *saga.Saga {
	c := *s
	c.Steps = slices.Clone(s.Steps)
	for i := range c.Steps {
		if comp := c.Steps[i].Compensation; comp != nil {
			cc := *comp
			c.Steps[i].Compensation = &cc
		}
	}
	return &c
}
