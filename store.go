package saga

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Store keeps sagas durably (or, for the memory store, for the life of the
// process). It is the repository of the specification. Implementations are
// safe for concurrent use and agree on the semantics below, which the
// conformance suite in storetest checks.
//
// Time that matters for correctness (lease expiry, deadlines, next-run
// times, cleanup cut-offs) is computed by the store from its own clock (the
// database's now()), never from the caller's, so that instances with skewed
// clocks cannot steal each other's sagas. That is why durations, not
// instants, are passed in.
type Store interface {
	// CreateSaga inserts a new saga with its step rows (all Pending unless
	// the caller set otherwise), its events and, when c.LeaseFor > 0, a lease
	// for c.Saga.OwnerID (epoch 1). When c.Saga.IdempotencyKey is set and a
	// saga with that key exists, nothing is written and the existing saga is
	// returned with existed = true. Deadline is set to now() + TimeoutMs when
	// the definition has a timeout. The returned saga carries the store's
	// timestamps and event sequence.
	CreateSaga(ctx context.Context, c NewSaga) (s *Saga, existed bool, err error)

	// GetSaga returns a saga with its steps and compensations, or
	// ErrNotFound.
	GetSaga(ctx context.Context, id ID) (*Saga, error)

	// SagaStatuses returns the status of each of ids that the store holds,
	// in one read; ids it does not hold are absent from the answer. It is
	// how one poller follows many sagas at the cost of one query (see
	// engine's Wait); an empty ids reads nothing.
	SagaStatuses(ctx context.Context, ids []ID) (map[ID]SagaStatus, error)

	// ListSagas returns sagas matching f, newest first (created_at, id
	// descending), without steps, and the cursor of the next page.
	ListSagas(ctx context.Context, f Filter) (Page, error)

	// ListEvents returns a saga's events with Seq > afterSeq in order, at
	// most limit of them (0: all). ErrNotFound when the saga does not exist.
	ListEvents(ctx context.Context, id ID, afterSeq int64, limit int) ([]Event, error)

	// LatestCheckpoint returns the saga's newest checkpoint, or nil when it
	// has none. ErrNotFound when the saga does not exist.
	LatestCheckpoint(ctx context.Context, id ID) (*Checkpoint, error)

	// Apply writes one transition atomically: the saga row, the step and
	// compensation rows, the events and the checkpoint, or nothing. It is
	// fenced on t.Lease: when the writer's lease is not live (expired, or
	// another owner or epoch holds it) nothing is written and ErrLeaseLost is
	// returned. Unless t.Release is set, the lease is extended to now() +
	// t.LeaseFor. ErrNotFound when the saga does not exist.
	//
	// A transition is recognised by the id of its first event, which its
	// writer fixes (the engine does when it builds a transition): when the
	// store holds that event already (an earlier attempt committed and its
	// answer was lost with the connection), nothing is written again and
	// the answer is that of the store as it is, with EventSeq the seq of
	// the transition's last event, whoever holds the lease by then.
	Apply(ctx context.Context, t Transition) (Applied, error)

	// ClaimSagas leases up to limit runnable sagas to owner for leaseFor and
	// returns them with their steps. Runnable means NextRunAt <= now() and no
	// live lease. Each claim increments the saga's LeaseEpoch. Concurrent
	// claimers never receive the same saga while its lease is live.
	ClaimSagas(ctx context.Context, owner string, leaseFor time.Duration, limit int) ([]*Saga, error)

	// RenewLeases extends to now() + leaseFor the leases that owner holds
	// live on the given sagas, and returns the ids it renewed. A saga whose
	// lease was lost is absent from the answer. A saga that a concurrent
	// Apply is writing at that moment may be reported renewed without being
	// extended: that Apply extends the lease itself, or reports it lost.
	RenewLeases(ctx context.Context, owner string, leases map[ID]int64, leaseFor time.Duration) ([]ID, error)

	// RequestControl records an operator action on the saga and makes the
	// saga runnable at once (NextRunAt = now()), so that the instance holding
	// or next claiming it carries the action out. ErrNotFound when there is
	// no such saga; an error wrapping ErrInvalidTransition when the action is
	// not allowed in the saga's status (see ControlAction.AllowedIn). It
	// returns the saga (without steps) as it is after the request.
	RequestControl(ctx context.Context, id ID, action ControlAction) (*Saga, error)

	// Stats counts sagas by status and summarises those that ended within
	// window before now().
	Stats(ctx context.Context, window time.Duration) (Stats, error)

	// DeleteFinished deletes sagas in an end state (Completed, Compensated,
	// Cancelled, TimedOut) whose completed_at is older than now() - age, with
	// their rows in every table, at most batch sagas per transaction, and
	// returns how many it deleted. Failed sagas are kept: they wait for an
	// operator; so are sagas under legal hold.
	DeleteFinished(ctx context.Context, age time.Duration, batch int) (int, error)

	// DeleteExpired is DeleteFinished with an age per end status (see
	// Retention.For): it deletes the sagas that ended in a status that
	// cleanup deletes longer ago than that status's retention, other than
	// those under legal hold, at most batch per transaction, and returns
	// how many it deleted. DeleteFinished(age) is
	// DeleteExpired(UniformRetention(age)).
	DeleteExpired(ctx context.Context, r Retention, batch int) (int, error)

	// SetLegalHold sets (hold = true) or clears the legal hold of a saga,
	// which keeps cleanup from deleting it, and returns the saga (without
	// steps) as it is after. It writes a LegalHoldChanged event
	// (Chain.SealLegalHold) attributed to the requester ctx carries.
	// ErrNotFound when there is no such saga.
	SetLegalHold(ctx context.Context, id ID, hold bool) (*Saga, error)

	// Health reports on the store's backend.
	Health(ctx context.Context) Health

	// Close releases the store's resources.
	Close()
}

// NewSaga is the input of Store.CreateSaga.
type NewSaga struct {
	Saga     *Saga // Steps must hold one entry per definition step
	Events   []Event
	LeaseFor time.Duration // > 0: lease the new saga to Saga.OwnerID
}

// Lease is the fencing token of a writer: the owner and the epoch it got
// when it claimed (or created) the saga.
type Lease struct {
	Owner string
	Epoch int64
}

// Transition is one fenced, atomic write of a saga's progress.
type Transition struct {
	SagaID   ID
	Lease    Lease
	LeaseFor time.Duration // extend the lease to now() + LeaseFor (ignored with Release)
	Release  bool          // clear owner and lease expiry after writing

	// New values of the saga row. Status "" keeps the status. Error,
	// CompletedSteps and CompensateTo are always written.
	Status         SagaStatus
	CompletedSteps int
	Error          string
	CompensateTo   SagaStatus
	// ClearControl removes the pending operator request if it is this
	// action (the one the writer carried out); a different request that
	// arrived since stays pending. Whenever a request is pending after the
	// write, the saga is runnable at once (NextRunAt = now()) whatever Wake
	// says, so that a request never waits on a released saga.
	ClearControl ControlAction
	// Started sets started_at = now() if unset; Ended sets completed_at = now().
	Started bool
	Ended   bool
	Wake    Wake

	Steps         []StepUpdate         // upserts keyed by step index
	Compensations []CompensationUpdate // upserts keyed by step index
	Events        []Event
	Checkpoint    *Checkpoint // SagaID and CreatedAt are filled by the store
}

// StepUpdate writes a step row. Times are set from the store clock: Start
// sets started_at = now() (on the first attempt), End sets completed_at.
type StepUpdate struct {
	Index     int
	Status    StepStatus
	Attempts  int
	Output    json.RawMessage // nil keeps the stored output
	Error     string
	Uncertain bool
	Start     bool
	End       bool
}

// CompensationUpdate writes a compensation row, inserting it on first use.
type CompensationUpdate struct {
	StepIndex           int
	Status              CompensationStatus
	Attempts            int
	AttemptsBeforeRetry int
	Output              json.RawMessage
	Error               string
	Start               bool
	End                 bool
}

// WakeKind says how a transition changes NextRunAt.
type WakeKind int

// The ways to set NextRunAt.
const (
	WakeUnchanged WakeKind = iota // keep it
	WakeNever                     // NULL: not runnable (end states, Failed)
	WakeAfter                     // now() + After
	WakeAt                        // At (a time the store gave out, such as Deadline)
)

// Wake sets a saga's next-run time in a transition.
type Wake struct {
	Kind  WakeKind
	After time.Duration
	At    time.Time
}

// Applied is what the store tells a writer after a transition: its clock and
// signals the engine must act on.
type Applied struct {
	Now              time.Time
	LeaseExpiresAt   time.Time     // zero when released
	Control          ControlAction // a pending operator request
	DeadlineExceeded bool          // now() is past the saga's deadline
	EventSeq         int64         // the seq of the last event written
}

// Filter selects sagas for ListSagas. Zero fields do not filter.
type Filter struct {
	Status        SagaStatus
	Name          string
	TransactionID *ID
	CreatedAfter  *time.Time
	Limit         int     // 0: ListLimitDefault; capped at ListLimitMax
	Cursor        *Cursor // continue after this position
}

// Pagination limits.
const (
	ListLimitDefault = 50
	ListLimitMax     = 1000
)

// EffectiveLimit returns f.Limit bounded to [1, ListLimitMax], defaulting
// to ListLimitDefault.
func (f Filter) EffectiveLimit() int {
	switch {
	case f.Limit <= 0:
		return ListLimitDefault
	case f.Limit > ListLimitMax:
		return ListLimitMax
	}
	return f.Limit
}

// Page is one page of ListSagas.
type Page struct {
	Sagas []*Saga
	Next  *Cursor // nil on the last page
}

// Cursor is a keyset position in the (created_at, id) descending order.
type Cursor struct {
	CreatedAt time.Time
	ID        ID
}

// String encodes the cursor as an opaque URL-safe token.
func (c Cursor) String() string {
	raw := c.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + c.ID.String()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// errBadCursor is returned by ParseCursor.
var errBadCursor = errors.New("is not a cursor this service issued")

// ParseCursor decodes a token made by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, errBadCursor
	}
	ts, idText, ok := strings.Cut(string(raw), "|")
	if !ok {
		return Cursor{}, errBadCursor
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return Cursor{}, errBadCursor
	}
	id, err := ParseID(idText)
	if err != nil {
		return Cursor{}, errBadCursor
	}
	return Cursor{CreatedAt: t, ID: id}, nil
}
