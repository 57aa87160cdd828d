package saga

import (
	"encoding/json"
	"time"
)

// Saga is the whole state of one saga as a store keeps it: the sagas row
// and, when loaded with them, its steps (each with its compensation).
type Saga struct {
	ID             ID
	Name           string
	Status         SagaStatus
	TransactionID  ID
	UserID         *ID
	Context        json.RawMessage // transaction_context: the client's context object
	Definition     Definition      // as submitted, defaults not applied
	IdempotencyKey string          // empty when the client gave none
	CompletedSteps int
	TotalSteps     int
	Error          string

	// CompensateTo is the end status a compensating saga takes once every
	// compensation has run: Compensated after a failed step, Cancelled after
	// an operator's cancel, TimedOut after the deadline. Empty otherwise.
	CompensateTo SagaStatus
	// Control is an operator's request not yet carried out.
	Control ControlAction

	Deadline *time.Time // nil: no deadline

	// Lease: which instance runs the saga, until when, and the fencing epoch
	// (incremented on every claim).
	OwnerID        string
	LeaseExpiresAt *time.Time
	LeaseEpoch     int64

	// NextRunAt is when the saga is next runnable by a claim; nil means
	// never (end states, Failed, Paused without deadline).
	NextRunAt *time.Time
	// EventSeq is the sequence number of the saga's latest event. Its hash
	// (the head of the saga's audit chain, see Chain) is kept by the store
	// beside the saga and read with AuditStore.Chains.
	EventSeq int64
	// LegalHold keeps the saga from cleanup whatever its age, until the
	// hold is cleared (Store.SetLegalHold).
	LegalHold bool
	// Durable is false when the saga lives only in memory (no database, or
	// the database was unreachable when it was accepted). Not stored.
	Durable bool

	CreatedAt   time.Time
	UpdatedAt   time.Time
	StartedAt   *time.Time
	CompletedAt *time.Time

	Steps []Step // by index; nil when loaded without steps
}

// Lease returns the saga's lease as a fencing token for writes.
func (s *Saga) Lease() Lease { return Lease{Owner: s.OwnerID, Epoch: s.LeaseEpoch} }

// Step is the saga_steps row of one step, with its compensation.
type Step struct {
	Index       int
	Name        string
	Status      StepStatus
	Attempts    int
	Input       json.RawMessage // input_data: the action's body
	Output      json.RawMessage // output_data: the participant's JSON answer
	Error       string
	StartedAt   *time.Time
	CompletedAt *time.Time
	// Uncertain is true when the step failed in a way that leaves its effect
	// unknown (timeout, 5xx, broken connection): it is compensated too.
	Uncertain    bool
	Compensation *Compensation // nil until compensation of the step begins
}

// Compensation is the saga_compensations row of one step.
type Compensation struct {
	StepIndex int
	Status    CompensationStatus
	Attempts  int // every attempt, operator retries included
	// AttemptsBeforeRetry is Attempts when an operator last retried the
	// saga (0 before any retry): the retry budget counts the attempts
	// after it.
	AttemptsBeforeRetry int
	Output              json.RawMessage
	Error               string
	StartedAt           *time.Time
	CompletedAt         *time.Time
}

// Checkpoint is the state recovery restarts from: the context after a
// completed step (the client's context and every output so far).
type Checkpoint struct {
	SagaID    ID
	StepIndex int
	Context   json.RawMessage
	CreatedAt time.Time
}

// EventType names an audit event.
type EventType string

// The audit events.
const (
	EventSagaCreated           EventType = "SagaCreated"
	EventSagaStarted           EventType = "SagaStarted"
	EventStepStarted           EventType = "StepStarted"
	EventStepCompleted         EventType = "StepCompleted"
	EventStepFailed            EventType = "StepFailed"
	EventStepRetrying          EventType = "StepRetrying"
	EventStepSkipped           EventType = "StepSkipped"
	EventCompensationStarted   EventType = "CompensationStarted"
	EventCompensationCompleted EventType = "CompensationCompleted"
	EventCompensationFailed    EventType = "CompensationFailed"
	EventCompensationRetrying  EventType = "CompensationRetrying"
	// EventCompensationNotNeeded: a step that completed (or may have acted)
	// is left as it is when the saga compensates, because its definition
	// has no compensation.
	EventCompensationNotNeeded EventType = "CompensationNotNeeded"
	// EventCallWithdrawn: a call written as started did not go out after
	// all (a pause, cancel or deadline came first, or the instance stopped).
	EventCallWithdrawn    EventType = "CallWithdrawn"
	EventSagaCompleted    EventType = "SagaCompleted"
	EventSagaCompensating EventType = "SagaCompensating"
	EventSagaCompensated  EventType = "SagaCompensated"
	EventSagaPaused       EventType = "SagaPaused"
	EventSagaResumed      EventType = "SagaResumed"
	EventSagaCancelled    EventType = "SagaCancelled"
	EventSagaTimedOut     EventType = "SagaTimedOut"
	EventSagaFailed       EventType = "SagaFailed"
	EventSagaRetried      EventType = "SagaRetried"
	EventControlRequested EventType = "ControlRequested"
	EventLeaseTaken       EventType = "LeaseTaken"
	EventSagaRecovered    EventType = "SagaRecovered"
)

// Event is one entry of a saga's audit trail. Stores assign ID (when zero),
// Seq (1, 2, … per saga, in the order written), CreatedAt (the store's
// clock) and Hash (see Chain.Seal).
type Event struct {
	ID         ID
	SagaID     ID
	Seq        int64
	Type       EventType
	StepIndex  *int
	Data       json.RawMessage // a JSON object, or nil
	InstanceID string          // the instance that wrote it
	// Actor is who asked for what the event records: the name of the API
	// token of an operator request or a submit; empty for the engine's own
	// events.
	Actor     string
	CreatedAt time.Time
	// Hash chains the event to the one before it in its saga.
	Hash []byte
}

// Stats are the figures of GET /api/v1/statistics.
type Stats struct {
	ByStatus map[SagaStatus]int64
	Total    int64
	// Over the window ending now (the database clock):
	Window        time.Duration
	Started       int64 // created in the window
	Completed     int64 // ended Completed in the window
	Failed        int64 // ended in any other end state in the window
	MeanDuration  time.Duration
	P95Duration   time.Duration
	EndedInWindow int64
}

// Health is a store's answer to a health check.
type Health struct {
	Durable          bool          // false: in-memory
	Mode             string        // "durable" or "memory"
	Backend          string        // the store serving: "postgres", "sqlite" or "memory"
	Path             string        // the database file of the SQLite store; empty otherwise
	RoundTrip        time.Duration // one database round trip; 0 in memory
	PoolTotal        int32
	PoolIdle         int32
	PoolInUse        int32
	PoolMax          int32
	MigrationVersion int64
	Error            string // why the store is not healthy, if it is not
	// Replicas are the read replicas (none unless configured); a replica
	// that is not usable does not make the store unhealthy: reads go to
	// the primary.
	Replicas []ReplicaHealth
	// Unreachable is set with Error when the backend could not be reached
	// at all (refused or lost connections), as opposed to answering slowly
	// or wrongly.
	Unreachable bool
}
