package postgres

import (
	"encoding/json"
	"fmt"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// scanner is what pgx.Row and pgx.Rows have in common.
type scanner interface {
	Scan(dest ...any) error
}

// scanSaga reads the columns of sagaColumns into a saga (without steps),
// opening the sealed values of its definition with sealer, and the columns
// that follow into more.
func scanSaga(row scanner, sealer *saga.Sealer, more ...any) (*saga.Saga, error) {
	var (
		s                                        saga.Saga
		status                                   string
		definition                               []byte
		key, errText, compensateTo, control, own *string
		completedSteps, totalSteps               int32
		createdAt, updatedAt                     time.Time
	)
	err := row.Scan(append([]any{&s.ID, &s.Name, &status, &s.TransactionID, &s.UserID, &s.Context,
		&definition, &key, &completedSteps, &totalSteps, &errText, &compensateTo,
		&control, &s.Deadline, &own, &s.LeaseExpiresAt, &s.LeaseEpoch, &s.NextRunAt,
		&s.EventSeq, &createdAt, &updatedAt, &s.StartedAt, &s.CompletedAt, &s.LegalHold}, more...)...)
	if err != nil {
		return nil, err
	}
	if err := sealer.DecodeDefinition(definition, &s.Definition); err != nil {
		return nil, fmt.Errorf("decode definition of saga %s: %w", s.ID, err)
	}
	s.Status = saga.SagaStatus(status)
	s.IdempotencyKey = deref(key)
	s.CompletedSteps = int(completedSteps)
	s.TotalSteps = int(totalSteps)
	s.Error = deref(errText)
	s.CompensateTo = saga.SagaStatus(deref(compensateTo))
	s.Control = saga.ControlAction(deref(control))
	s.OwnerID = deref(own)
	s.CreatedAt = createdAt.UTC()
	s.UpdatedAt = updatedAt.UTC()
	s.Deadline = utc(s.Deadline)
	s.LeaseExpiresAt = utc(s.LeaseExpiresAt)
	s.NextRunAt = utc(s.NextRunAt)
	s.StartedAt = utc(s.StartedAt)
	s.CompletedAt = utc(s.CompletedAt)
	s.Durable = true
	return &s, nil
}

// scanSagaHead reads the columns of sagaColumns and headColumns: a saga
// (without steps) and the head of its chain.
func scanSagaHead(row scanner, sealer *saga.Sealer) (*saga.Saga, head, error) {
	var (
		lastHash []byte
		ctlSeq   *int64
		ctlBy    *string
	)
	s, err := scanSaga(row, sealer, &lastHash, &ctlSeq, &ctlBy)
	if err != nil {
		return nil, head{}, err
	}
	return s, head{seq: s.EventSeq, hash: lastHash, at: s.UpdatedAt, pending: saga.PendingControl{
		Action: s.Control, Seq: deref(ctlSeq), Actor: deref(ctlBy)}}, nil
}

// scanStep reads the columns of stepColumns: a step with its compensation,
// if it has one.
func scanStep(row scanner) (saga.ID, saga.Step, error) {
	var (
		sagaID                   saga.ID
		st                       saga.Step
		index, attempts          int32
		status                   string
		errText                  *string
		cStatus, cErr            *string
		cAttempts, cBefore       *int32
		cOutput                  json.RawMessage
		cStartedAt, cCompletedAt *time.Time
	)
	err := row.Scan(&sagaID, &index, &st.Name, &status, &attempts, &st.Input,
		&st.Output, &errText, &st.Uncertain, &st.StartedAt, &st.CompletedAt,
		&cStatus, &cAttempts, &cBefore, &cOutput, &cErr, &cStartedAt, &cCompletedAt)
	if err != nil {
		return sagaID, st, err
	}
	st.Index = int(index)
	st.Status = saga.StepStatus(status)
	st.Attempts = int(attempts)
	st.Error = deref(errText)
	st.StartedAt = utc(st.StartedAt)
	st.CompletedAt = utc(st.CompletedAt)
	if cStatus != nil {
		st.Compensation = &saga.Compensation{
			StepIndex:           st.Index,
			Status:              saga.CompensationStatus(*cStatus),
			Attempts:            int(deref(cAttempts)),
			AttemptsBeforeRetry: int(deref(cBefore)),
			Output:              cOutput,
			Error:               deref(cErr),
			StartedAt:           utc(cStartedAt),
			CompletedAt:         utc(cCompletedAt),
		}
	}
	return sagaID, st, nil
}

// deref returns *p, or the zero value when p is nil.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// utc returns t in UTC (nil stays nil).
func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// nullString maps "" to SQL NULL.
func nullString[S ~string](s S) *string {
	if s == "" {
		return nil
	}
	v := string(s)
	return &v
}

// micros converts d to whole microseconds, the unit durations travel in.
func micros(d time.Duration) int64 { return d.Microseconds() }
