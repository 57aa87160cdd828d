package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// errIDTaken is CreateSaga's error when a saga with the new saga's id
// exists.
var errIDTaken = errors.New("a saga with this id already exists")

// CreateSaga inserts a new saga with its steps and events, group-committed
// with other writes. See saga.Store.
func (s *Store) CreateSaga(ctx context.Context, c saga.NewSaga) (out *saga.Saga, existed bool, err error) {
	defer s.observe(opCreateSaga, time.Now(), &err)
	in := c.Saga
	if in == nil {
		return nil, false, errors.New("create saga: no saga given")
	}
	id := in.ID
	if id.IsZero() {
		id = saga.NewID()
	}
	doing := "create saga " + id.String()
	def, err := checkNewSaga(c, s.sealer)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", doing, err)
	}
	// The write runs on the writer's goroutine, which may still run it
	// after this call gave up: it sets only its own variables.
	var (
		stored *saga.Saga
		found  bool
	)
	err = s.writer.submit(ctx, func(t *wtx) error {
		stored, found = nil, false
		inserted, err := s.insertSaga(ctx, t, id, c, def)
		if err != nil || inserted {
			if err == nil {
				stored = newlyCreated(in, id, c, t.now)
			}
			return err
		}
		// Nothing inserted: a saga holds the id or the idempotency key.
		var one int
		switch err := t.queryRow(sqlSagaExists, []any{sql.Named("id", idText(id))}, &one); {
		case err == nil:
			return errIDTaken
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if in.IdempotencyKey == "" {
			return errors.New("the saga was not inserted, yet no saga holds its id")
		}
		var holder saga.ID
		if err := t.queryRow(sqlSagaIDByKey, []any{sql.Named("key", in.IdempotencyKey)}, idCol{&holder}); err != nil {
			return err
		}
		stored, err = loadSaga(t, holder, s.sealer)
		found = err == nil
		return err
	})
	if err != nil {
		return nil, false, interpretError(doing, err)
	}
	return stored, found, nil
}

// checkNewSaga validates a new saga and returns its definition as stored.
func checkNewSaga(c saga.NewSaga, sealer *saga.Sealer) ([]byte, error) {
	in := c.Saga
	status := cmp.Or(in.Status, saga.SagaStatusCreated)
	switch {
	case !status.Valid():
		return nil, fmt.Errorf("unknown saga status %q", in.Status)
	case in.CompensateTo != "" && !in.CompensateTo.Valid():
		return nil, fmt.Errorf("unknown compensate_to status %q", in.CompensateTo)
	case c.LeaseFor > 0 && in.OwnerID == "":
		return nil, errors.New("a lease needs an owner id")
	case len(in.Steps) != len(in.Definition.Steps):
		return nil, fmt.Errorf("%d step rows for %d definition steps", len(in.Steps), len(in.Definition.Steps))
	}
	for i, st := range in.Steps {
		if s := cmp.Or(st.Status, saga.StepStatusPending); !s.Valid() {
			return nil, fmt.Errorf("step %d: unknown step status %q", i, st.Status)
		}
	}
	for i, e := range c.Events {
		if e.Type == "" {
			return nil, fmt.Errorf("event %d has no type", i)
		}
	}
	def, err := sealer.EncodeDefinition(&in.Definition)
	if err != nil {
		return nil, fmt.Errorf("encode definition: %w", err)
	}
	return def, nil
}

// insertSaga writes the rows of a new saga at the group's time, its events
// sealed (saga.Chain.SealCreate, attributed to the requester ctx carries).
// It reports false, having written nothing, when the id or the idempotency
// key is taken.
func (s *Store) insertSaga(ctx context.Context, t *wtx, id saga.ID, c saga.NewSaga, def []byte) (bool, error) {
	in := c.Saga
	now := t.nowText()
	events, head, err := s.chain.SealCreate(ctx, saga.ChainHead{SagaID: id}, in, c.Events, t.now)
	if err != nil {
		return false, err
	}
	status := cmp.Or(in.Status, saga.SagaStatusCreated)
	var deadline, owner, leaseExp, nextRun, started, completed any
	if d := in.Definition.Timeout(); d > 0 {
		deadline = fmtTime(after(t.now, d))
	}
	epoch := 0
	if c.LeaseFor > 0 {
		owner, leaseExp, epoch = in.OwnerID, fmtTime(after(t.now, max(c.LeaseFor, time.Microsecond))), 1
	}
	if !status.Terminal() {
		nextRun = now // runnable: claimable once no lease holds it
	}
	if status != saga.SagaStatusCreated || in.StartedAt != nil {
		started = now
	}
	if status.Terminal() || in.CompletedAt != nil {
		completed = now
	}
	res, err := t.exec(sqlInsertSaga,
		sql.Named("id", idText(id)), sql.Named("name", in.Name), sql.Named("status", string(status)),
		sql.Named("transaction_id", idText(in.TransactionID)), sql.Named("user_id", nullIDText(in.UserID)),
		sql.Named("context", jsonText(in.Context)), sql.Named("definition", string(def)),
		sql.Named("idempotency_key", nullText(in.IdempotencyKey)),
		sql.Named("completed_steps", in.CompletedSteps), sql.Named("total_steps", cmp.Or(in.TotalSteps, len(in.Steps))),
		sql.Named("error", nullText(in.Error)), sql.Named("compensate_to", nullText(in.CompensateTo)),
		sql.Named("deadline", deadline), sql.Named("owner_id", owner), sql.Named("lease_expires_at", leaseExp),
		sql.Named("lease_epoch", epoch), sql.Named("next_run_at", nextRun), sql.Named("event_seq", len(c.Events)),
		sql.Named("started_at", started), sql.Named("completed_at", completed), sql.Named("now", now),
		sql.Named("last_hash", nullBytes(head.Hash)))
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return false, err
	}
	for i, st := range in.Steps {
		status := cmp.Or(st.Status, saga.StepStatusPending)
		var startedAt, completedAt any
		if st.StartedAt != nil || stepStarted(status) {
			startedAt = now
		}
		if st.CompletedAt != nil || stepEnded(status) {
			completedAt = now
		}
		_, err := t.exec(sqlInsertStep,
			sql.Named("id", idText(saga.NewID())), sql.Named("saga_id", idText(id)), sql.Named("name", st.Name),
			sql.Named("idx", i), sql.Named("status", string(status)), sql.Named("input", jsonText(st.Input)),
			sql.Named("output", jsonText(st.Output)), sql.Named("attempts", st.Attempts), sql.Named("error", nullText(st.Error)),
			sql.Named("uncertain", boolInt(st.Uncertain)), sql.Named("started_at", startedAt),
			sql.Named("completed_at", completedAt), sql.Named("now", now))
		if err != nil {
			return false, fmt.Errorf("insert step %d: %w", i, err)
		}
	}
	return true, insertEvents(t, events)
}

// insertEvents writes events sealed by saga.Chain (numbered, timed at the
// group's time, hashed).
func insertEvents(t *wtx, events []saga.Event) error {
	for i, e := range events {
		var step any
		if e.StepIndex != nil {
			step = *e.StepIndex
		}
		_, err := t.exec(sqlInsertEvent,
			sql.Named("id", idText(e.ID)), sql.Named("saga_id", idText(e.SagaID)), sql.Named("seq", e.Seq),
			sql.Named("type", string(e.Type)), sql.Named("step", step), sql.Named("data", jsonText(e.Data)),
			sql.Named("instance", nullText(e.InstanceID)), sql.Named("actor", nullText(e.Actor)),
			sql.Named("now", fmtTime(e.CreatedAt)), sql.Named("hash", e.Hash))
		if err != nil {
			return fmt.Errorf("insert event %d (%s): %w", i, e.Type, err)
		}
	}
	return nil
}

// nullBytes maps empty to SQL NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// head is the end of a saga's chain and its pending request, read in the
// writer's transaction.
type head struct {
	status  saga.SagaStatus
	chain   saga.ChainHead
	pending saga.PendingControl
}

// readHead reads the status and the chain head of saga id in the writer's
// transaction; sql.ErrNoRows when there is no such saga.
func readHead(t *wtx, id saga.ID) (head, error) {
	h := head{chain: saga.ChainHead{SagaID: id}}
	var ctlSeq sql.NullInt64
	err := t.queryRow(sqlReadHead, []any{sql.Named("id", idText(id))},
		textCol[saga.SagaStatus]{&h.status}, &h.chain.Seq, &h.chain.Hash,
		textCol[saga.ControlAction]{&h.pending.Action}, &ctlSeq, textCol[string]{&h.pending.Actor})
	h.pending.Seq = ctlSeq.Int64
	return h, err
}

// newlyCreated is the saga CreateSaga returns: the input as stored, with
// the store's times, lease and event sequence, sharing no memory with the
// input.
func newlyCreated(in *saga.Saga, id saga.ID, c saga.NewSaga, now time.Time) *saga.Saga {
	at := func(set bool) *time.Time {
		if !set {
			return nil
		}
		t := now
		return &t
	}
	status := cmp.Or(in.Status, saga.SagaStatusCreated)
	out := &saga.Saga{
		ID:             id,
		Name:           in.Name,
		Status:         status,
		TransactionID:  in.TransactionID,
		Context:        cloneJSON(in.Context),
		Definition:     in.Definition.Clone(),
		IdempotencyKey: in.IdempotencyKey,
		CompletedSteps: in.CompletedSteps,
		TotalSteps:     cmp.Or(in.TotalSteps, len(in.Steps)),
		Error:          in.Error,
		CompensateTo:   in.CompensateTo,
		EventSeq:       int64(len(c.Events)),
		Durable:        true,
		CreatedAt:      now,
		UpdatedAt:      now,
		NextRunAt:      at(!status.Terminal()),
		StartedAt:      at(status != saga.SagaStatusCreated || in.StartedAt != nil),
		CompletedAt:    at(status.Terminal() || in.CompletedAt != nil),
		Steps:          make([]saga.Step, len(in.Steps)),
	}
	if out.Context == nil {
		out.Context = json.RawMessage(`{}`)
	}
	if in.UserID != nil {
		u := *in.UserID
		out.UserID = &u
	}
	if d := in.Definition.Timeout(); d > 0 {
		t := after(now, d)
		out.Deadline = &t
	}
	if c.LeaseFor > 0 {
		t := after(now, max(c.LeaseFor, time.Microsecond))
		out.OwnerID, out.LeaseExpiresAt, out.LeaseEpoch = in.OwnerID, &t, 1
	}
	for i, st := range in.Steps {
		status := cmp.Or(st.Status, saga.StepStatusPending)
		out.Steps[i] = saga.Step{
			Index: i, Name: st.Name, Status: status, Attempts: st.Attempts,
			Input: cloneJSON(st.Input), Output: cloneJSON(st.Output), Error: st.Error, Uncertain: st.Uncertain,
			StartedAt:   at(st.StartedAt != nil || stepStarted(status)),
			CompletedAt: at(st.CompletedAt != nil || stepEnded(status)),
		}
	}
	return out
}

// stepStarted reports whether a step created in status has started.
func stepStarted(status saga.StepStatus) bool {
	switch status {
	case saga.StepStatusExecuting, saga.StepStatusRetrying, saga.StepStatusCompleted, saga.StepStatusFailed:
		return true
	}
	return false
}

// stepEnded reports whether a step created in status has ended.
func stepEnded(status saga.StepStatus) bool {
	return status == saga.StepStatusCompleted || status == saga.StepStatusFailed
}

// Apply writes one fenced transition, group-committed with other writes.
// See saga.Store.
func (s *Store) Apply(ctx context.Context, t saga.Transition) (a saga.Applied, err error) {
	defer s.observe(opApply, time.Now(), &err)
	doing := "apply transition to saga " + t.SagaID.String()
	steps, comps, err := checkTransition(t)
	if err != nil {
		return saga.Applied{}, fmt.Errorf("%s: %w", doing, err)
	}
	var applied saga.Applied // set on the writer's goroutine only
	err = s.writer.submit(ctx, func(w *wtx) error {
		var err error
		applied, err = s.applyTransition(w, t, steps, comps)
		return err
	})
	if err != nil {
		return saga.Applied{}, interpretError(doing, err)
	}
	return applied, nil
}

// checkTransition validates a transition and returns its step and
// compensation updates with one per index (the last one of an index wins).
func checkTransition(t saga.Transition) ([]saga.StepUpdate, []saga.CompensationUpdate, error) {
	switch {
	case t.Status != "" && !t.Status.Valid():
		return nil, nil, fmt.Errorf("unknown saga status %q", t.Status)
	case t.CompensateTo != "" && !t.CompensateTo.Valid():
		return nil, nil, fmt.Errorf("unknown compensate_to status %q", t.CompensateTo)
	case t.Wake.Kind < saga.WakeUnchanged || t.Wake.Kind > saga.WakeAt:
		return nil, nil, fmt.Errorf("unknown wake kind %d", t.Wake.Kind)
	}
	steps := make([]saga.StepUpdate, 0, len(t.Steps))
	stepAt := make(map[int]int, len(t.Steps))
	for _, u := range t.Steps {
		switch {
		case !u.Status.Valid():
			return nil, nil, fmt.Errorf("step %d: unknown step status %q", u.Index, u.Status)
		case u.Index < 0:
			return nil, nil, fmt.Errorf("step index %d is negative", u.Index)
		}
		if i, ok := stepAt[u.Index]; ok {
			steps[i] = u
			continue
		}
		stepAt[u.Index] = len(steps)
		steps = append(steps, u)
	}
	comps := make([]saga.CompensationUpdate, 0, len(t.Compensations))
	compAt := make(map[int]int, len(t.Compensations))
	for _, u := range t.Compensations {
		switch {
		case !u.Status.Valid():
			return nil, nil, fmt.Errorf("compensation %d: unknown compensation status %q", u.StepIndex, u.Status)
		case u.StepIndex < 0:
			return nil, nil, fmt.Errorf("compensation step index %d is negative", u.StepIndex)
		}
		if i, ok := compAt[u.StepIndex]; ok {
			comps[i] = u
			continue
		}
		compAt[u.StepIndex] = len(comps)
		comps = append(comps, u)
	}
	for i, e := range t.Events {
		if e.Type == "" {
			return nil, nil, fmt.Errorf("event %d has no type", i)
		}
	}
	if cp := t.Checkpoint; cp != nil && len(cp.Context) > 0 && !json.Valid(cp.Context) {
		return nil, nil, errors.New("checkpoint context is not valid JSON")
	}
	return steps, comps, nil
}

// applyTransition writes t in the group's transaction: the fenced saga
// row first (nothing else when the lease is not live), then the steps,
// compensations, events (sealed after the saga's chain, read in the same
// transaction) and checkpoint.
func (s *Store) applyTransition(w *wtx, t saga.Transition, steps []saga.StepUpdate, comps []saga.CompensationUpdate) (saga.Applied, error) {
	if a, done, err := appliedBefore(w, t); done || err != nil {
		return a, err
	}
	now := w.nowText()
	h, err := readHead(w, t.SagaID)
	if errors.Is(err, sql.ErrNoRows) {
		return saga.Applied{}, saga.ErrNotFound
	}
	if err != nil {
		return saga.Applied{}, err
	}
	events, next, err := s.chain.SealTransition(h.chain, t, h.pending, w.now)
	if err != nil {
		return saga.Applied{}, err
	}
	var wakeAt any
	switch t.Wake.Kind {
	case saga.WakeAfter:
		wakeAt = fmtTime(after(w.now, t.Wake.After))
	case saga.WakeAt:
		wakeAt = fmtTime(t.Wake.At.Truncate(time.Microsecond))
	}
	var (
		seq      int64
		leaseExp *time.Time
		control  saga.ControlAction
		exceeded bool
	)
	err = w.queryRow(sqlApplySaga, []any{
		sql.Named("id", idText(t.SagaID)), sql.Named("owner", t.Lease.Owner), sql.Named("epoch", t.Lease.Epoch),
		sql.Named("now", now), sql.Named("status", nullText(t.Status)), sql.Named("completed_steps", t.CompletedSteps),
		sql.Named("error", nullText(t.Error)), sql.Named("compensate_to", nullText(t.CompensateTo)),
		sql.Named("clear_control", nullText(t.ClearControl)), sql.Named("started", boolInt(t.Started)),
		sql.Named("ended", boolInt(t.Ended)), sql.Named("wake_kind", int(t.Wake.Kind)), sql.Named("wake_at", wakeAt),
		sql.Named("release", boolInt(t.Release)), sql.Named("lease_until", fmtTime(after(w.now, max(t.LeaseFor, 0)))),
		sql.Named("events", len(events)), sql.Named("last_hash", nullBytes(next.Hash)),
	}, &seq, nullTimeCol{&leaseExp}, textCol[saga.ControlAction]{&control}, &exceeded)
	if errors.Is(err, sql.ErrNoRows) {
		// Refused: no such saga, or a lost lease.
		var one int
		if err := w.queryRow(sqlSagaExists, []any{sql.Named("id", idText(t.SagaID))}, &one); err != nil {
			return saga.Applied{}, err
		}
		return saga.Applied{}, saga.ErrLeaseLost
	}
	if err != nil {
		return saga.Applied{}, err
	}
	sagaID := idText(t.SagaID)
	for _, u := range steps {
		res, err := w.exec(sqlUpdateStep,
			sql.Named("saga_id", sagaID), sql.Named("idx", u.Index), sql.Named("status", string(u.Status)),
			sql.Named("attempts", u.Attempts), sql.Named("output", jsonText(u.Output)), sql.Named("error", nullText(u.Error)),
			sql.Named("uncertain", boolInt(u.Uncertain)), sql.Named("start", boolInt(u.Start)),
			sql.Named("stop", boolInt(u.End)), sql.Named("now", now))
		if err != nil {
			return saga.Applied{}, fmt.Errorf("update step %d: %w", u.Index, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return saga.Applied{}, errors.Join(fmt.Errorf("a step update names step index %d, which the saga does not have", u.Index), err)
		}
	}
	for _, u := range comps {
		_, err := w.exec(sqlUpsertCompensation,
			sql.Named("id", idText(saga.NewID())), sql.Named("saga_id", sagaID), sql.Named("idx", u.StepIndex),
			sql.Named("status", string(u.Status)), sql.Named("attempts", u.Attempts), sql.Named("before_retry", u.AttemptsBeforeRetry),
			sql.Named("output", jsonText(u.Output)),
			sql.Named("error", nullText(u.Error)), sql.Named("start", boolInt(u.Start)), sql.Named("stop", boolInt(u.End)),
			sql.Named("now", now))
		if err != nil {
			return saga.Applied{}, fmt.Errorf("write compensation of step %d: %w", u.StepIndex, err)
		}
	}
	if err := insertEvents(w, events); err != nil {
		return saga.Applied{}, err
	}
	if cp := t.Checkpoint; cp != nil {
		cpContext := cp.Context
		if len(cpContext) == 0 {
			cpContext = json.RawMessage(`{}`)
		}
		_, err := w.exec(sqlInsertCheckpoint,
			sql.Named("id", idText(saga.NewID())), sql.Named("saga_id", sagaID), sql.Named("idx", cp.StepIndex),
			sql.Named("context", string(cpContext)), sql.Named("now", now))
		if err != nil {
			return saga.Applied{}, fmt.Errorf("insert checkpoint: %w", err)
		}
	}
	a := saga.Applied{Now: w.now, Control: control, DeadlineExceeded: exceeded, EventSeq: seq}
	if leaseExp != nil {
		a.LeaseExpiresAt = *leaseExp
	}
	return a, nil
}

// appliedBefore recognises a transition written already: its first event,
// given with an id, is stored. A caller that retries a transition after an
// error (its context ran out while the write was being committed) then
// gets the answer of the write instead of a second copy. done is false
// when the transition is new.
func appliedBefore(w *wtx, t saga.Transition) (a saga.Applied, done bool, err error) {
	if len(t.Events) == 0 || t.Events[0].ID.IsZero() {
		return saga.Applied{}, false, nil
	}
	sagaID := sql.Named("saga_id", idText(t.SagaID))
	var first int64
	err = w.queryRow(sqlEventSeq, []any{sql.Named("id", idText(t.Events[0].ID)), sagaID}, &first)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return saga.Applied{}, false, nil
	case err != nil:
		return saga.Applied{}, false, err
	}
	var leaseExp *time.Time
	a = saga.Applied{Now: w.now, EventSeq: first + int64(len(t.Events)) - 1}
	err = w.queryRow(sqlAppliedAnswer, []any{sql.Named("now", w.nowText()), sagaID},
		nullTimeCol{&leaseExp}, textCol[saga.ControlAction]{&a.Control}, &a.DeadlineExceeded)
	if leaseExp != nil {
		a.LeaseExpiresAt = *leaseExp
	}
	return a, true, err
}

// cloneJSON returns a copy of raw that shares no memory with it.
func cloneJSON(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return nil
	}
	return append(json.RawMessage(nil), raw...)
}
