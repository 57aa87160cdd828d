package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
)

// Rows of an imported saga, passed as JSON arrays.
type (
	importStepJSON struct {
		ID          saga.ID         `json:"id"`
		Name        string          `json:"name"`
		Index       int             `json:"idx"`
		Status      saga.StepStatus `json:"status"`
		Input       json.RawMessage `json:"input,omitempty"`
		Output      json.RawMessage `json:"output,omitempty"`
		Attempts    int             `json:"attempts"`
		Error       string          `json:"error,omitempty"`
		Uncertain   bool            `json:"uncertain"`
		StartedAt   *time.Time      `json:"started_at,omitempty"`
		CompletedAt *time.Time      `json:"completed_at,omitempty"`
	}
	importCompensationJSON struct {
		ID          saga.ID                 `json:"id"`
		Index       int                     `json:"idx"`
		Status      saga.CompensationStatus `json:"status"`
		Attempts    int                     `json:"attempts"`
		Before      int                     `json:"before_retry,omitempty"`
		Output      json.RawMessage         `json:"output,omitempty"`
		Error       string                  `json:"error,omitempty"`
		StartedAt   *time.Time              `json:"started_at,omitempty"`
		CompletedAt *time.Time              `json:"completed_at,omitempty"`
	}
	importEventJSON struct {
		ID        saga.ID         `json:"id"`
		Seq       int64           `json:"seq"`
		Type      saga.EventType  `json:"type"`
		Step      *int            `json:"step,omitempty"`
		Data      json.RawMessage `json:"data,omitempty"`
		Instance  string          `json:"instance,omitempty"`
		Actor     string          `json:"actor,omitempty"`
		CreatedAt time.Time       `json:"created_at"`
		Hash      string          `json:"hash,omitempty"` // bytea text
	}
	importCheckpointJSON struct {
		ID        saga.ID         `json:"id"`
		Index     int             `json:"idx"`
		Context   json.RawMessage `json:"context"`
		CreatedAt time.Time       `json:"created_at"`
	}
)

// Import writes a whole saga (row, steps, compensations, events,
// checkpoints) as it is, timestamps and lease included, in one statement.
// When a saga with its id exists it writes nothing and returns existed =
// true; that includes a retry after a first attempt whose commit answer was
// lost, which is harmless since the saga is then stored. It moves sagas
// accepted in memory during an outage to the database. A saga whose
// idempotency key another saga holds is refused with an error.
func (s *Store) Import(ctx context.Context, r saga.SagaRecord) (existed bool, err error) {
	defer s.observe(opImport, time.Now(), &err)
	if r.Saga == nil {
		return false, errors.New("import saga: no saga given")
	}
	doing := "import saga " + r.Saga.ID.String()
	args, err := importArgs(r, s.sealer)
	if err != nil {
		return false, fmt.Errorf("%s: %w", doing, err)
	}
	var id saga.ID
	err = retry(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, sqlImport, args...).Scan(&id)
	})
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, pgx.ErrNoRows):
		return true, nil
	}
	return false, interpretError(doing, err)
}

// micro truncates t to microseconds, as the driver does with the times it
// sends: times sent as JSON text would be rounded by the database instead.
func micro(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.Truncate(time.Microsecond)
	return &u
}

// nullInt maps 0 to SQL NULL.
func nullInt(n int64) *int64 {
	if n == 0 {
		return nil
	}
	return &n
}

// importArgs returns the arguments of sqlImport. Times are kept at
// microsecond precision, truncated.
func importArgs(r saga.SagaRecord, sealer *saga.Sealer) ([]any, error) {
	sg := r.Saga
	if sg.ID.IsZero() {
		return nil, errors.New("the saga has no id")
	}
	if !sg.Status.Valid() {
		return nil, fmt.Errorf("unknown saga status %q", sg.Status)
	}
	if sg.CompensateTo != "" && !sg.CompensateTo.Valid() {
		return nil, fmt.Errorf("unknown compensate_to status %q", sg.CompensateTo)
	}
	createdAt := sg.CreatedAt
	if createdAt.IsZero() {
		createdAt = time.Now()
	}
	updatedAt := sg.UpdatedAt
	if updatedAt.IsZero() {
		updatedAt = createdAt
	}
	def, err := sealer.EncodeDefinition(&sg.Definition)
	if err != nil {
		return nil, fmt.Errorf("encode definition: %w", err)
	}
	var (
		steps []importStepJSON
		comps []importCompensationJSON
	)
	for _, st := range sg.Steps {
		if !st.Status.Valid() {
			return nil, fmt.Errorf("step %d: unknown step status %q", st.Index, st.Status)
		}
		steps = append(steps, importStepJSON{
			ID: saga.NewID(), Name: st.Name, Index: st.Index, Status: st.Status, Input: st.Input, Output: st.Output,
			Attempts: st.Attempts, Error: st.Error, Uncertain: st.Uncertain, StartedAt: micro(st.StartedAt), CompletedAt: micro(st.CompletedAt),
		})
		if c := st.Compensation; c != nil {
			if !c.Status.Valid() {
				return nil, fmt.Errorf("compensation %d: unknown compensation status %q", st.Index, c.Status)
			}
			comps = append(comps, importCompensationJSON{
				ID: saga.NewID(), Index: st.Index, Status: c.Status, Attempts: c.Attempts, Before: c.AttemptsBeforeRetry, Output: c.Output,
				Error: c.Error, StartedAt: micro(c.StartedAt), CompletedAt: micro(c.CompletedAt),
			})
		}
	}
	eventSeq := sg.EventSeq
	var lastHash []byte
	events := make([]importEventJSON, len(r.Events))
	for i, e := range r.Events {
		id := e.ID
		if id.IsZero() {
			id = saga.NewID()
		}
		seq := cmp.Or(e.Seq, int64(i+1))
		if seq >= eventSeq {
			eventSeq, lastHash = seq, e.Hash
		}
		events[i] = importEventJSON{ID: id, Seq: seq, Type: e.Type, Step: e.StepIndex, Data: e.Data,
			Instance: e.InstanceID, Actor: e.Actor, Hash: hashText(e.Hash),
			CreatedAt: cmp.Or(e.CreatedAt, createdAt).Truncate(time.Microsecond)}
	}
	checkpoints := make([]importCheckpointJSON, len(r.Checkpoints))
	for i, cp := range r.Checkpoints {
		ctxJSON := cp.Context
		if len(ctxJSON) == 0 {
			ctxJSON = json.RawMessage(`{}`)
		}
		checkpoints[i] = importCheckpointJSON{ID: saga.NewID(), Index: cp.StepIndex, Context: ctxJSON,
			CreatedAt: cmp.Or(cp.CreatedAt, createdAt).Truncate(time.Microsecond)}
	}
	stepsJSON, err := encodeArray(steps)
	if err != nil {
		return nil, fmt.Errorf("encode steps: %w", err)
	}
	compsJSON, err := encodeArray(comps)
	if err != nil {
		return nil, fmt.Errorf("encode compensations: %w", err)
	}
	eventsJSON, err := encodeArray(events)
	if err != nil {
		return nil, fmt.Errorf("encode events: %w", err)
	}
	checkpointsJSON, err := encodeArray(checkpoints)
	if err != nil {
		return nil, fmt.Errorf("encode checkpoints: %w", err)
	}
	return []any{
		sg.ID, sg.Name, string(sg.Status), sg.TransactionID, sg.UserID, nullJSON(sg.Context), def,
		nullString(sg.IdempotencyKey), sg.CompletedSteps, sg.TotalSteps, nullString(sg.Error),
		nullString(sg.CompensateTo), nullString(sg.Control), sg.Deadline,
		nullString(sg.OwnerID), sg.LeaseExpiresAt, sg.LeaseEpoch, sg.NextRunAt, eventSeq,
		createdAt, updatedAt, sg.StartedAt, sg.CompletedAt,
		stepsJSON, compsJSON, eventsJSON, checkpointsJSON,
		nullBytes(lastHash), nullInt(r.Pending.Seq), nullString(r.Pending.Actor), sg.LegalHold,
	}, nil
}
