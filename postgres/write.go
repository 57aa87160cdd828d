package postgres

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
)

// createAttempts bounds CreateSaga's loop when the saga holding its
// idempotency key disappears between the conflict and the read.
const createAttempts = 3

// resolveTimeout bounds how long CreateSaga tries to find out whether a
// create whose commit went unanswered took place.
const resolveTimeout = 30 * time.Second

// Rows passed to the statements as JSON arrays (jsonb_to_recordset).
type (
	newStepJSON struct {
		ID        saga.ID         `json:"id"`
		Name      string          `json:"name"`
		Index     int             `json:"idx"`
		Status    saga.StepStatus `json:"status"`
		Input     json.RawMessage `json:"input,omitempty"`
		Output    json.RawMessage `json:"output,omitempty"`
		Attempts  int             `json:"attempts"`
		Error     string          `json:"error,omitempty"`
		Uncertain bool            `json:"uncertain"`
		Started   bool            `json:"started"`
		Ended     bool            `json:"ended"`
	}
	stepUpdateJSON struct {
		Index     int             `json:"idx"`
		Status    saga.StepStatus `json:"status"`
		Attempts  int             `json:"attempts"`
		Output    json.RawMessage `json:"output,omitempty"`
		Error     string          `json:"error,omitempty"`
		Uncertain bool            `json:"uncertain"`
		Start     bool            `json:"start"`
		Stop      bool            `json:"stop"`
	}
	compensationUpdateJSON struct {
		ID       saga.ID                 `json:"id"`
		Index    int                     `json:"idx"`
		Status   saga.CompensationStatus `json:"status"`
		Attempts int                     `json:"attempts"`
		Before   int                     `json:"before_retry,omitempty"`
		Output   json.RawMessage         `json:"output,omitempty"`
		Error    string                  `json:"error,omitempty"`
		Start    bool                    `json:"start"`
		Stop     bool                    `json:"stop"`
	}
)

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
	at := s.clock.now()
	args, chain, err := s.createArgs(ctx, id, c, at)
	if err != nil {
		return nil, false, fmt.Errorf("create saga %s: %w", id, err)
	}
	doing := "create saga " + id.String()
	for range createAttempts {
		var (
			now      time.Time
			deadline *time.Time
			leaseExp *time.Time
		)
		op := &writeOp{sql: sqlCreateSaga, args: args, dest: []any{&now, &deadline, &leaseExp}}
		sent := time.Now()
		if err := s.committer.submit(ctx, op); err != nil {
			// op.sent is final once submit answered for the write (ctx not
			// done): the committer no longer touches op.
			if ctx.Err() != nil || op.sent == 0 {
				return nil, false, unsentError(interpretError(doing, err), op)
			}
			// The write went out and no answer says whether it committed
			// (the connection was lost during the commit, say): find out,
			// rather than answer "unavailable" for a saga that exists and
			// have the client create it again.
			sg, rerr := s.resolveCreate(ctx, id)
			switch {
			case rerr == nil:
				s.logger.Warn("create saga: the commit went unanswered but the saga was created", "saga_id", id.String(), "error", err)
				return sg, false, nil
			case errors.Is(rerr, saga.ErrNotFound):
				// Read back: it was not committed.
				ierr := interpretError(doing, err)
				if errors.Is(ierr, saga.ErrUnavailable) {
					ierr = fmt.Errorf("%w (%w)", ierr, saga.ErrNotWritten)
				}
				return nil, false, ierr
			}
			return nil, false, fmt.Errorf("%s: the database stopped answering during the commit and whether the saga was created is unknown "+
				"(retry with the same idempotency key): %w: %w", doing, saga.ErrUnavailable, errors.Join(err, rerr))
		}
		if op.found {
			s.clock.observe(now, sent, time.Now())
			out := created(in, id, c, at, utc(deadline), utc(leaseExp))
			if c.LeaseFor > 0 {
				// This instance writes the saga next.
				s.heads.put(id, head{seq: chain.Seq, hash: chain.Hash, at: at})
			}
			return out, false, nil
		}

		// Nothing inserted: a saga holds the id or the idempotency key.
		sg, err := s.loadSaga(ctx, id)
		switch {
		case err == nil && op.sent > 1:
			// An earlier attempt committed but its answer was lost.
			return sg, false, nil
		case err == nil:
			return nil, false, fmt.Errorf("%s: a saga with this id already exists", doing)
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, false, interpretError(doing, err)
		}
		if in.IdempotencyKey == "" {
			continue
		}
		var existingID saga.ID
		err = retry(ctx, func(ctx context.Context) error {
			return s.pool.QueryRow(ctx, sqlGetSagaByKey, in.IdempotencyKey).Scan(&existingID)
		})
		if err == nil {
			sg, err = s.loadSaga(ctx, existingID)
		}
		switch {
		case err == nil:
			return sg, true, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, false, interpretError(doing, err)
		}
		// The saga holding the key was deleted in between: try again.
	}
	return nil, false, fmt.Errorf("%s: it conflicts with a saga that cannot be read", doing)
}

// unsentError adds saga.ErrNotWritten to err, the failure of op's submit
// interpreted, when the database could not be reached and op was never
// sent: then it certainly was not committed. (The earlier attempts of a
// CreateSaga were answered: they wrote nothing of it either.) op.sent is
// read only when the committer has answered, which an error wrapping
// saga.ErrUnavailable implies: a caller giving up gets its context's error.
func unsentError(err error, op *writeOp) error {
	if !errors.Is(err, saga.ErrUnavailable) || op.sent > 0 {
		return err
	}
	return fmt.Errorf("%w (%w)", err, saga.ErrNotWritten)
}

// createArgs validates a new saga and returns the arguments of
// sqlCreateSaga, its events sealed at time at, and the head of its chain.
func (s *Store) createArgs(ctx context.Context, id saga.ID, c saga.NewSaga, at time.Time) ([]any, saga.ChainHead, error) {
	var chain saga.ChainHead
	in := c.Saga
	status := cmp.Or(in.Status, saga.SagaStatusCreated)
	if !status.Valid() {
		return nil, chain, fmt.Errorf("unknown saga status %q", in.Status)
	}
	if in.CompensateTo != "" && !in.CompensateTo.Valid() {
		return nil, chain, fmt.Errorf("unknown compensate_to status %q", in.CompensateTo)
	}
	if c.LeaseFor > 0 && in.OwnerID == "" {
		return nil, chain, errors.New("a lease needs an owner id")
	}
	if len(in.Steps) != len(in.Definition.Steps) {
		return nil, chain, fmt.Errorf("%d step rows for %d definition steps", len(in.Steps), len(in.Definition.Steps))
	}
	def, err := s.sealer.EncodeDefinition(&in.Definition)
	if err != nil {
		return nil, chain, fmt.Errorf("encode definition: %w", err)
	}
	steps := make([]newStepJSON, len(in.Steps))
	for i, st := range in.Steps {
		stStatus := cmp.Or(st.Status, saga.StepStatusPending)
		if !stStatus.Valid() {
			return nil, chain, fmt.Errorf("step %d: unknown step status %q", i, st.Status)
		}
		steps[i] = newStepJSON{
			ID: saga.NewID(), Name: st.Name, Index: i, Status: stStatus,
			Input: st.Input, Output: st.Output, Attempts: st.Attempts, Error: st.Error, Uncertain: st.Uncertain,
			Started: st.StartedAt != nil || stepStarted(stStatus),
			Ended:   st.CompletedAt != nil || stStatus == saga.StepStatusCompleted || stStatus == saga.StepStatusFailed,
		}
	}
	stepsJSON, err := json.Marshal(steps)
	if err != nil {
		return nil, chain, fmt.Errorf("encode steps: %w", err)
	}
	events, chain, err := s.chain.SealCreate(ctx, saga.ChainHead{SagaID: id}, in, c.Events, at)
	if err != nil {
		return nil, chain, err
	}
	eventsJSON, _, err := encodeEvents(events)
	if err != nil {
		return nil, chain, err
	}
	var leaseFor int64
	if c.LeaseFor > 0 {
		leaseFor = max(micros(c.LeaseFor), 1)
	}
	args := []any{
		id, in.Name, string(status), in.TransactionID, in.UserID, nullJSON(in.Context), def,
		nullString(in.IdempotencyKey), in.CompletedSteps, cmp.Or(in.TotalSteps, len(in.Steps)),
		nullString(in.Error), nullString(in.CompensateTo),
		micros(in.Definition.Timeout()), in.OwnerID, leaseFor,
		!status.Terminal(), // runnable: claimable once no lease holds it
		len(events),
		status != saga.SagaStatusCreated || in.StartedAt != nil,
		status.Terminal() || in.CompletedAt != nil,
		stepsJSON, eventsJSON,
		at, nullBytes(chain.Hash),
	}
	return args, chain, nil
}

// created is the saga CreateSaga returns: the input as stored, with the
// store's timestamps, lease and event sequence. It shares no memory with
// the input; its definition is a deep copy of the caller's rather than a
// decoding of the stored JSON, which would cost as much as the rest of
// CreateSaga's own work.
func created(in *saga.Saga, id saga.ID, c saga.NewSaga, now time.Time, deadline, leaseExp *time.Time) *saga.Saga {
	out := &saga.Saga{
		ID:             id,
		Name:           in.Name,
		Status:         cmp.Or(in.Status, saga.SagaStatusCreated),
		TransactionID:  in.TransactionID,
		Context:        cloneJSON(in.Context),
		Definition:     in.Definition.Clone(),
		IdempotencyKey: in.IdempotencyKey,
		CompletedSteps: in.CompletedSteps,
		TotalSteps:     cmp.Or(in.TotalSteps, len(in.Steps)),
		Error:          in.Error,
		CompensateTo:   in.CompensateTo,
		Deadline:       deadline,
		LeaseExpiresAt: leaseExp,
		EventSeq:       int64(len(c.Events)),
		Durable:        true,
		CreatedAt:      now,
		UpdatedAt:      now,
		Steps:          make([]saga.Step, len(in.Steps)),
	}
	if out.Context == nil {
		out.Context = json.RawMessage(`{}`)
	}
	if in.UserID != nil {
		u := *in.UserID
		out.UserID = &u
	}
	if c.LeaseFor > 0 {
		out.OwnerID = in.OwnerID
		out.LeaseEpoch = 1
	}
	at := func(set bool) *time.Time {
		if !set {
			return nil
		}
		t := now
		return &t
	}
	out.NextRunAt = at(!out.Status.Terminal())
	out.StartedAt = at(out.Status != saga.SagaStatusCreated || in.StartedAt != nil)
	out.CompletedAt = at(out.Status.Terminal() || in.CompletedAt != nil)
	for i, st := range in.Steps {
		status := cmp.Or(st.Status, saga.StepStatusPending)
		out.Steps[i] = saga.Step{
			Index: i, Name: st.Name, Status: status, Attempts: st.Attempts,
			Input: cloneJSON(st.Input), Output: cloneJSON(st.Output), Error: st.Error, Uncertain: st.Uncertain,
			StartedAt:   at(st.StartedAt != nil || stepStarted(status)),
			CompletedAt: at(st.CompletedAt != nil || status == saga.StepStatusCompleted || status == saga.StepStatusFailed),
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

// applyAttempts bounds the writes of one Apply whose chain head went stale
// in between (operator requests written meanwhile).
const applyAttempts = 5

// Apply writes one fenced transition, group-committed with other writes.
// See saga.Store. Its events are chained after the saga's head, which the
// store remembers from its last write (or reads); a write refused because
// the head moved meanwhile is sealed again on the new head and resent.
func (s *Store) Apply(ctx context.Context, t saga.Transition) (a saga.Applied, err error) {
	defer s.observe(opApply, time.Now(), &err)
	doing := "apply transition to saga " + t.SagaID.String()
	// The engine's events keep their ids across attempts: the first one
	// tells an attempt that did commit.
	t.Events = slices.Clone(t.Events)
	for i := range t.Events {
		if t.Events[i].ID.IsZero() {
			t.Events[i].ID = saga.NewID()
		}
	}
	chained := len(t.Events) > 0 || t.ClearControl != saga.ControlNone
	h, known := s.heads.get(t.SagaID)
	if !known && chained {
		if h, err = s.readHead(ctx, t.SagaID); err != nil {
			return saga.Applied{}, interpretError(doing, err)
		}
	}
	for attempt := 1; ; attempt++ {
		at := s.clock.writeTime(h)
		events, next, err := s.chain.SealTransition(h.chainHead(t.SagaID), t, h.pending, at)
		if err != nil {
			return saga.Applied{}, fmt.Errorf("%s: %w", doing, err)
		}
		var after *int64
		if chained {
			after = &h.seq
		}
		args, marker, err := applyArgs(t, events, at, after, next.Hash)
		if err != nil {
			return saga.Applied{}, fmt.Errorf("%s: %w", doing, err)
		}
		var (
			now        time.Time
			leaseExp   *time.Time
			control    *string
			controlSeq *int64
			controlBy  *string
			exceeded   bool
			seq        int64
		)
		op := &writeOp{sql: sqlApply, args: args, dest: []any{&now, &leaseExp, &control, &controlSeq, &controlBy, &exceeded, &seq}}
		sent := time.Now()
		if err := s.committer.submit(ctx, op); err != nil {
			return saga.Applied{}, interpretError(doing, err)
		}
		if op.found {
			s.clock.observe(now, sent, time.Now())
			if t.Release {
				s.heads.drop(t.SagaID)
			} else {
				hash := h.hash
				if len(events) > 0 {
					hash = next.Hash
				}
				s.heads.put(t.SagaID, head{seq: seq, hash: hash, at: at, pending: saga.PendingControl{
					Action: saga.ControlAction(deref(control)), Seq: deref(controlSeq), Actor: deref(controlBy)}})
			}
			return saga.Applied{
				Now:              at,
				LeaseExpiresAt:   deref(utc(leaseExp)),
				Control:          saga.ControlAction(deref(control)),
				DeadlineExceeded: exceeded,
				EventSeq:         seq,
			}, nil
		}

		// Refused: no such saga, a lost lease, a head that moved, or already
		// written by an earlier attempt whose answer was lost.
		var (
			markerSeq *int64
			held      bool
			cur       head
		)
		err = retry(ctx, func(ctx context.Context) error {
			return s.pool.QueryRow(ctx, sqlApplyRefused, t.SagaID, marker, t.Lease.Owner, t.Lease.Epoch, at).
				Scan(&markerSeq, &now, &leaseExp, &control, &exceeded, &held,
					&cur.seq, &cur.hash, &controlSeq, &controlBy, &cur.at)
		})
		switch {
		case err != nil:
			s.heads.drop(t.SagaID)
			return saga.Applied{}, interpretError(doing, err)
		case markerSeq != nil:
			s.heads.drop(t.SagaID)
			return saga.Applied{
				Now:              at,
				LeaseExpiresAt:   deref(utc(leaseExp)),
				Control:          saga.ControlAction(deref(control)),
				DeadlineExceeded: exceeded,
				EventSeq:         *markerSeq + int64(len(events)) - 1,
			}, nil
		case !held:
			s.heads.drop(t.SagaID)
			return saga.Applied{}, fmt.Errorf("%s: %w", doing, saga.ErrLeaseLost)
		case !chained || cur.seq == h.seq && bytes.Equal(cur.hash, h.hash):
			s.heads.drop(t.SagaID)
			return saga.Applied{}, fmt.Errorf("%s: refused although the lease is held and the chain did not move", doing)
		case attempt >= applyAttempts:
			s.heads.drop(t.SagaID)
			return saga.Applied{}, fmt.Errorf("%s: the saga's audit chain moved under %d attempts in a row", doing, attempt)
		}
		cur.at = cur.at.UTC()
		cur.pending = saga.PendingControl{Action: saga.ControlAction(deref(control)), Seq: deref(controlSeq), Actor: deref(controlBy)}
		h = cur
		s.heads.put(t.SagaID, h)
	}
}

// readHead reads the end of a saga's chain and its pending request from
// its row; pgx.ErrNoRows when there is no such saga.
func (s *Store) readHead(ctx context.Context, id saga.ID) (head, error) {
	var (
		h       head
		control *string
		ctlSeq  *int64
		ctlBy   *string
	)
	err := retry(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, sqlReadHead, id).Scan(&h.seq, &h.hash, &control, &ctlSeq, &ctlBy, &h.at)
	})
	h.at = h.at.UTC()
	h.pending = saga.PendingControl{Action: saga.ControlAction(deref(control)), Seq: deref(ctlSeq), Actor: deref(ctlBy)}
	return h, err
}

// applyArgs validates a transition and returns the arguments of sqlApply
// for writing it with events (sealed) at time at, fenced on the chain
// ending at seq after (nil: no fence) and ending at lastHash, and the id
// of its first event (nil when it has none).
func applyArgs(t saga.Transition, events []saga.Event, at time.Time, after *int64, lastHash []byte) ([]any, *saga.ID, error) {
	if t.Status != "" && !t.Status.Valid() {
		return nil, nil, fmt.Errorf("unknown saga status %q", t.Status)
	}
	if t.CompensateTo != "" && !t.CompensateTo.Valid() {
		return nil, nil, fmt.Errorf("unknown compensate_to status %q", t.CompensateTo)
	}

	// Updates keyed by step index: the last one of an index wins.
	steps := make([]stepUpdateJSON, 0, len(t.Steps))
	stepAt := make(map[int]int, len(t.Steps))
	for _, u := range t.Steps {
		if !u.Status.Valid() {
			return nil, nil, fmt.Errorf("step %d: unknown step status %q", u.Index, u.Status)
		}
		if u.Index < 0 {
			return nil, nil, fmt.Errorf("step index %d is negative", u.Index)
		}
		row := stepUpdateJSON{Index: u.Index, Status: u.Status, Attempts: u.Attempts, Output: u.Output,
			Error: u.Error, Uncertain: u.Uncertain, Start: u.Start, Stop: u.End}
		if i, ok := stepAt[u.Index]; ok {
			steps[i] = row
			continue
		}
		stepAt[u.Index] = len(steps)
		steps = append(steps, row)
	}
	comps := make([]compensationUpdateJSON, 0, len(t.Compensations))
	compAt := make(map[int]int, len(t.Compensations))
	for _, u := range t.Compensations {
		if !u.Status.Valid() {
			return nil, nil, fmt.Errorf("compensation %d: unknown compensation status %q", u.StepIndex, u.Status)
		}
		if u.StepIndex < 0 {
			return nil, nil, fmt.Errorf("compensation step index %d is negative", u.StepIndex)
		}
		row := compensationUpdateJSON{ID: saga.NewID(), Index: u.StepIndex, Status: u.Status, Attempts: u.Attempts,
			Before: u.AttemptsBeforeRetry, Output: u.Output, Error: u.Error, Start: u.Start, Stop: u.End}
		if i, ok := compAt[u.StepIndex]; ok {
			comps[i] = row
			continue
		}
		compAt[u.StepIndex] = len(comps)
		comps = append(comps, row)
	}
	stepsJSON, err := encodeArray(steps)
	if err != nil {
		return nil, nil, fmt.Errorf("encode step updates: %w", err)
	}
	compsJSON, err := encodeArray(comps)
	if err != nil {
		return nil, nil, fmt.Errorf("encode compensation updates: %w", err)
	}
	eventsJSON, marker, err := encodeEvents(events)
	if err != nil {
		return nil, nil, err
	}
	var hash []byte
	if len(events) > 0 {
		hash = lastHash
	}

	var wakeAt *time.Time
	switch t.Wake.Kind {
	case saga.WakeUnchanged, saga.WakeNever, saga.WakeAfter:
	case saga.WakeAt:
		at := t.Wake.At
		wakeAt = &at
	default:
		return nil, nil, fmt.Errorf("unknown wake kind %d", t.Wake.Kind)
	}
	var (
		cpID      *saga.ID
		cpStep    int
		cpContext []byte
	)
	if cp := t.Checkpoint; cp != nil {
		id := saga.NewID()
		cpID, cpStep, cpContext = &id, cp.StepIndex, cp.Context
		if len(cpContext) == 0 {
			cpContext = []byte(`{}`)
		}
		if !json.Valid(cpContext) {
			return nil, nil, errors.New("checkpoint context is not valid JSON")
		}
	}
	args := []any{
		t.SagaID, t.Lease.Owner, t.Lease.Epoch,
		nullString(t.Status), t.CompletedSteps, nullString(t.Error), nullString(t.CompensateTo),
		nullString(t.ClearControl), t.Started, t.Ended,
		int(t.Wake.Kind), micros(t.Wake.After), wakeAt,
		t.Release, max(micros(t.LeaseFor), 0),
		len(events),
		stepsJSON, compsJSON, eventsJSON,
		cpID, cpStep, cpContext,
		at, after, hash, marker,
	}
	return args, marker, nil
}

// encodeEvents returns sealed events (saga.Chain.Seal) as the JSON array
// the statements read, and the id of the first event. It is written by
// hand, not with json.Marshal: every write encodes its events, and their
// data, canonical JSON from Seal already, needs no second check.
func encodeEvents(events []saga.Event) ([]byte, *saga.ID, error) {
	if len(events) == 0 {
		return nil, nil, nil
	}
	size := 2
	for i := range events {
		e := &events[i]
		if e.Type == "" {
			return nil, nil, fmt.Errorf("event %d has no type", i)
		}
		size += 128 + len(e.Type) + len(e.Data) + len(e.InstanceID) + len(e.Actor) + 2*len(e.Hash)
	}
	b := make([]byte, 0, size)
	b = append(b, '[')
	for i := range events {
		e := &events[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = append(b, e.ID.String()...)
		b = append(b, `","seq":`...)
		b = strconv.AppendInt(b, e.Seq, 10)
		b = append(b, `,"type":`...)
		b = saga.AppendJSONString(b, string(e.Type))
		if e.StepIndex != nil {
			b = append(b, `,"step":`...)
			b = strconv.AppendInt(b, int64(*e.StepIndex), 10)
		}
		if len(e.Data) > 0 {
			b = append(b, `,"data":`...)
			b = append(b, e.Data...)
		}
		if e.InstanceID != "" {
			b = append(b, `,"instance":`...)
			b = saga.AppendJSONString(b, e.InstanceID)
		}
		if e.Actor != "" {
			b = append(b, `,"actor":`...)
			b = saga.AppendJSONString(b, e.Actor)
		}
		if len(e.Hash) > 0 {
			// bytea text: \x and hex, the backslash escaped for JSON.
			b = append(b, `,"hash":"\\x`...)
			b = hex.AppendEncode(b, e.Hash)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ']')
	first := events[0].ID
	return b, &first, nil
}

// encodeArray returns rows as a JSON array, or nil (SQL NULL: no rows).
func encodeArray[T any](rows []T) ([]byte, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	return json.Marshal(rows)
}

// nullJSON maps empty JSON to SQL NULL.
func nullJSON(raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return nil
	}
	return raw
}

// cloneJSON returns a copy of raw that shares no memory with it.
func cloneJSON(raw json.RawMessage) json.RawMessage {
	if raw == nil {
		return nil
	}
	return append(json.RawMessage(nil), raw...)
}
