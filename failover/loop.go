package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/memory"
)

// Start runs the loop in the background until ctx is done, or Stop or
// Close is called: it connects and moves the sagas held in memory to the
// database, and, with Fallback, does so again after every outage. Without
// Fallback it ends once switched. It returns at once; a second call does
// nothing.
func (s *Store) Start(ctx context.Context) {
	s.loopMu.Lock()
	defer s.loopMu.Unlock()
	if s.started {
		return
	}
	s.started = true
	ctx, s.cancel = context.WithCancel(ctx)
	go s.run(ctx)
}

// Stop stops the loop and waits for it to return. The Store keeps serving
// in the mode it is in.
func (s *Store) Stop() {
	s.loopMu.Lock()
	started, cancel := s.started, s.cancel
	s.loopMu.Unlock()
	if !started {
		return
	}
	cancel()
	<-s.done
}

// run calls runOnce until it has switched, waiting after each failure:
// before the first switch RetryEvery, doubled each time up to RetryMax;
// after it ProbeEvery. While durable it waits to be told the database went
// away (with Fallback; without, it returns).
func (s *Store) run(ctx context.Context) {
	defer close(s.done)
	wait := s.retryEvery
	attempt := 0
	for {
		if s.durable.Load() {
			if !s.fallback {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			attempt = 0
			continue
		}
		attempt++
		switched, err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if switched {
			continue
		}
		s.setErr(err.Error())
		d := wait
		if s.wasDurable() {
			d = s.probeEvery
		} else {
			wait = min(wait*2, s.retryMax)
		}
		switch {
		case errors.Is(err, saga.ErrAccessRefused):
			// It answers: not an outage. Said at every attempt, loudly; the
			// sagas held in memory keep the service from stopping.
			s.logger.Error("the database REFUSES the connection (wrong password, unknown role or database): "+
				"a configuration error; new sagas are kept in memory only until DATABASE_URL or the database is fixed",
				"attempt", attempt, "retry_in", d.String(), "error", err)
		case attempt == 1:
			s.logger.Error("database not in use: new sagas are kept in memory only",
				"attempt", attempt, "retry_in", d.String(), "error", err)
		case !s.wasDurable() || attempt%30 == 0:
			s.logger.Warn("database not in use: new sagas are kept in memory only",
				"attempt", attempt, "retry_in", d.String(), "error", err)
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// wasDurable reports whether the Store has been durable before.
func (s *Store) wasDurable() bool {
	select {
	case <-s.switched:
		return true
	default:
		return false
	}
}

// runOnce connects when not yet connected, or checks that the database
// answers when it was found away, then moves every saga from memory to the
// database and switches. It reports whether the Store is now durable; on an
// error the loop tries again later with the same database store (which
// reconnects by itself).
func (s *Store) runOnce(ctx context.Context) (bool, error) {
	if s.durable.Load() {
		return true, nil
	}
	s.mu.RLock()
	db := s.db
	s.mu.RUnlock()
	switch {
	case db == nil:
		var err error
		db, err = s.connect(ctx)
		if err != nil {
			return false, fmt.Errorf("connect to the database: %w", err)
		}
		if db == nil {
			return false, errors.New("connect to the database: Connect returned no store")
		}
		s.mu.Lock()
		s.db = db
		s.mu.Unlock()
		s.dbDown.Store(false)
		s.logger.Info("database reachable: moving sagas from memory to the database")
	case s.dbDown.Load():
		pctx, cancel := context.WithTimeout(ctx, s.importTimeout)
		h := db.Health(pctx)
		cancel()
		if h.Error != "" {
			return false, fmt.Errorf("database does not answer: %s", h.Error)
		}
		s.dbDown.Store(false)
		s.setErr("the database answers again: moving the sagas held in memory to it")
		s.logger.Info("database answers again: new sagas go to it; moving the sagas held in memory to it")
	}
	total := 0
	for {
		switched, n, err := s.moveSlice(ctx)
		total += n
		if err != nil {
			s.dbDown.Store(true)
			return false, fmt.Errorf("move sagas to the database (%d moved this attempt): %w", total, err)
		}
		if switched {
			s.setErr("")
			s.logger.Info("persistence is durable: every saga is in the database", "moved", total)
			s.notifyMode()
			s.once.Do(func() { close(s.switched) })
			return true, nil
		}
	}
}

// errAwayAgain ends a move that found the database away again.
var errAwayAgain = errors.New("the database stopped answering during the move")

// moveSlice moves sagas to the database for up to MoveSlice, holding the
// write lock so no call uses memory meanwhile. When memory is empty it
// switches the Store to the database. It returns whether it switched and how
// many sagas it moved.
func (s *Store) moveSlice(ctx context.Context) (switched bool, moved int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	deadline := time.Now().Add(s.sliceLen)
	// Sagas set aside first: Import is idempotent, so trying again tells
	// whether the failed Import committed.
	for _, src := range []*memory.Store{s.aside, s.mem} {
		recs, err := src.Export(ctx)
		if err != nil {
			return false, moved, fmt.Errorf("export sagas: %w", err)
		}
		for _, r := range recs {
			if err := s.moveOne(ctx, src, r); err != nil {
				return false, moved, err
			}
			moved++
			if time.Now().After(deadline) {
				return false, moved, nil
			}
		}
	}
	if s.dbDown.Load() {
		// Another call found the database away meanwhile: check it first.
		return false, moved, errAwayAgain
	}
	// Memory is empty, and stays so while the lock is held: move the
	// tombstones of the sagas deleted in memory, then switch.
	if err := s.moveDeletions(ctx); err != nil {
		return false, moved, err
	}
	s.durable.Store(true)
	clear(s.asideID)
	clear(s.keys)
	return true, moved, nil
}

// moveDeletions writes the tombstones kept in memory to the database and
// forgets them. The caller holds the write lock.
func (s *Store) moveDeletions(ctx context.Context) error {
	var all []saga.Deletion
	err := s.mem.Deletions(ctx, time.Time{}, time.Unix(1<<40, 0), func(d saga.Deletion) error {
		all = append(all, d)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read tombstones in memory: %w", err)
	}
	for _, d := range all {
		ictx, cancel := context.WithTimeout(ctx, s.importTimeout)
		err := s.db.ImportDeletion(ictx, d)
		cancel()
		if err != nil {
			return fmt.Errorf("move tombstone of saga %s: %w", d.SagaID, err)
		}
	}
	s.mem.ForgetDeletions()
	return nil
}

// moveOne imports one saga and removes it from src. The caller holds the
// write lock.
func (s *Store) moveOne(ctx context.Context, src *memory.Store, r saga.SagaRecord) error {
	id := r.Saga.ID
	existed, err := s.importRecord(ctx, r)
	// Memory must be kept right even when the loop is being stopped.
	mctx := context.WithoutCancel(ctx)
	if err != nil {
		if src == s.mem {
			// The Import may have committed before the error: keep the saga
			// read-only until the next attempt tells, so that no change is
			// made to a copy the database may already hold.
			if aerr := s.setAside(mctx, r); aerr != nil {
				return fmt.Errorf("import saga %s: %w (and set it aside: %w)", id, err, aerr)
			}
		}
		return fmt.Errorf("import saga %s: %w", id, err)
	}
	if err := src.Delete(mctx, id); err != nil {
		return fmt.Errorf("remove moved saga %s from memory: %w", id, err)
	}
	delete(s.asideID, id)
	if k := r.Saga.IdempotencyKey; k != "" {
		s.keys[k] = id
		s.recent.add(k)
	}
	if existed {
		s.logger.Info("saga was already in the database", "saga_id", id.String())
	}
	return nil
}

// importRecord imports r into the database. When the database refuses it
// (it answered: the error is not saga.ErrUnavailable) while answering that
// it does not hold the saga, and the saga has an idempotency key, the likely
// cause is that another saga took the key while this one was in memory (a
// client submitted twice, to two instances, during the outage); the saga is
// then imported without its key, so that neither saga is lost, and a
// warning is logged. An Import that failed because the database did not
// answer is tried again later as it is.
func (s *Store) importRecord(ctx context.Context, r saga.SagaRecord) (existed bool, err error) {
	ictx, cancel := context.WithTimeout(ctx, s.importTimeout)
	defer cancel()
	existed, err = s.db.Import(ictx, r)
	if err == nil || r.Saga.IdempotencyKey == "" || errors.Is(err, saga.ErrUnavailable) || ictx.Err() != nil {
		return existed, err
	}
	if _, gerr := s.db.GetSaga(ictx, r.Saga.ID); !errors.Is(gerr, saga.ErrNotFound) {
		return false, err // unreachable, or the saga is there after all: try again later
	}
	keyless := r
	sg := *r.Saga
	sg.IdempotencyKey = ""
	keyless.Saga = &sg
	existed, kerr := s.db.Import(ictx, keyless)
	if kerr != nil {
		return false, err
	}
	s.logger.Warn("saga moved to the database without its idempotency key: another saga there holds it",
		"saga_id", r.Saga.ID.String(), "idempotency_key", r.Saga.IdempotencyKey, "import_error", err)
	return existed, nil
}

// setAside moves r from memory to the read-only store. The caller holds the
// write lock.
func (s *Store) setAside(ctx context.Context, r saga.SagaRecord) error {
	if _, err := s.aside.Import(ctx, r); err != nil {
		return fmt.Errorf("keep saga aside: %w", err)
	}
	if err := s.mem.Delete(ctx, r.Saga.ID); err != nil {
		return fmt.Errorf("remove saga set aside from memory: %w", err)
	}
	s.asideID[r.Saga.ID] = true
	if k := r.Saga.IdempotencyKey; k != "" {
		s.keys[k] = r.Saga.ID
	}
	return nil
}
