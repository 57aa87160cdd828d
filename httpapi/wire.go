package httpapi

import (
	"cmp"
	"encoding/json"
	"strconv"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// The wire format: JSON field names are snake_case, times RFC 3339 in UTC,
// ids canonical UUID strings. Absent times are null; absent text is "".

// SagaJSON is a saga as the API returns it.
type SagaJSON struct {
	ID             string             `json:"id"`
	Name           string             `json:"name"`
	Status         saga.SagaStatus    `json:"status"`
	TransactionID  string             `json:"transaction_id"`
	UserID         *string            `json:"user_id"`
	Context        json.RawMessage    `json:"context"`
	CompletedSteps int                `json:"completed_steps"`
	TotalSteps     int                `json:"total_steps"`
	CreatedAt      time.Time          `json:"created_at"`
	UpdatedAt      time.Time          `json:"updated_at"`
	StartedAt      *time.Time         `json:"started_at"`
	CompletedAt    *time.Time         `json:"completed_at"`
	Deadline       *time.Time         `json:"deadline"`
	Error          string             `json:"error"`
	Durable        bool               `json:"durable"`
	LegalHold      bool               `json:"legal_hold"`
	IdempotencyKey string             `json:"idempotency_key"`
	ControlRequest saga.ControlAction `json:"control_request"`
	OwnerID        string             `json:"owner_id"`
	// MaxParallel (calls of the saga in flight at once: 1 for a chain) and
	// Steps are absent in lists and present when one saga is read.
	MaxParallel int        `json:"max_parallel,omitzero"`
	Steps       []StepJSON `json:"steps,omitzero"`
	// Definition is the definition as submitted, present when one saga is
	// read, with the values of its secret headers shown as [redacted] and
	// its URLs' query values and user information redacted.
	Definition *saga.Definition `json:"definition,omitempty"`
}

// StepJSON is one step of a saga.
type StepJSON struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// DependsOn names the steps this one waits for: the previous step in a
	// chain, the definition's depends_on in a graph.
	DependsOn []string `json:"depends_on"`
	// Compensable is false when the step's definition has no compensation:
	// it is left as it is when the saga compensates.
	Compensable  bool              `json:"compensable"`
	Status       saga.StepStatus   `json:"status"`
	Attempts     int               `json:"attempts"`
	Input        json.RawMessage   `json:"input"`
	Output       json.RawMessage   `json:"output"`
	Error        string            `json:"error"`
	StartedAt    *time.Time        `json:"started_at"`
	CompletedAt  *time.Time        `json:"completed_at"`
	Compensation *CompensationJSON `json:"compensation,omitempty"`
}

// CompensationJSON is the compensation of a step, present once it has begun.
type CompensationJSON struct {
	Status   saga.CompensationStatus `json:"status"`
	Attempts int                     `json:"attempts"`
	// AttemptsBeforeRetry is Attempts when an operator last retried the
	// saga: the retry budget counts the attempts after it.
	AttemptsBeforeRetry int             `json:"attempts_before_retry,omitempty"`
	StartedAt           *time.Time      `json:"started_at"`
	CompletedAt         *time.Time      `json:"completed_at"`
	Error               string          `json:"error"`
	Output              json.RawMessage `json:"output"`
}

// EventJSON is one entry of a saga's audit trail.
type EventJSON struct {
	ID         string          `json:"id"`
	SagaID     string          `json:"saga_id"`
	Seq        int64           `json:"seq"`
	Type       saga.EventType  `json:"type"`
	StepIndex  *int            `json:"step_index"`
	Data       json.RawMessage `json:"data"`
	InstanceID string          `json:"instance_id"`
	// Actor is who asked for what the event records (the name of the API
	// token of an operator request or a submit); "" for the engine's own.
	Actor     string    `json:"actor"`
	CreatedAt time.Time `json:"created_at"`
}

// EventsJSON is the answer of GET /api/v1/sagas/{id}/events.
type EventsJSON struct {
	Events []EventJSON `json:"events"`
}

// ListJSON is one page of GET /api/v1/sagas. NextCursor is null on the last
// page; otherwise pass it as ?cursor= to read the next one.
type ListJSON struct {
	Sagas      []SagaJSON `json:"sagas"`
	NextCursor *string    `json:"next_cursor"`
}

// StatsJSON is the answer of GET /api/v1/statistics. ByStatus holds every
// status, zero or not. The window figures cover the WindowSeconds before
// now: sagas started, ended Completed, ended otherwise (Failed counts
// Compensated, Cancelled, TimedOut and Failed), their rates per second, and
// the mean and 95th percentile duration of those that ended.
type StatsJSON struct {
	ByStatus           map[saga.SagaStatus]int64 `json:"by_status"`
	Total              int64                     `json:"total"`
	WindowSeconds      float64                   `json:"window_seconds"`
	Started            int64                     `json:"started"`
	Completed          int64                     `json:"completed"`
	Failed             int64                     `json:"failed"`
	Ended              int64                     `json:"ended"`
	StartedPerSecond   float64                   `json:"started_per_second"`
	CompletedPerSecond float64                   `json:"completed_per_second"`
	FailedPerSecond    float64                   `json:"failed_per_second"`
	MeanDurationMs     float64                   `json:"mean_duration_ms"`
	P95DurationMs      float64                   `json:"p95_duration_ms"`
}

// CleanupJSON is the answer of POST /api/v1/maintenance/cleanup.
type CleanupJSON struct {
	Deleted int `json:"deleted"`
}

// HealthJSON is the answer of GET /health (liveness).
type HealthJSON struct {
	Status     string `json:"status"`
	InstanceID string `json:"instance_id"`
	Version    string `json:"version,omitempty"`
}

// ReadyJSON is the answer of GET /health/ready. Status is "ready" (HTTP
// 200) or "not_ready" (503). Persistence names the store: "postgres",
// "sqlite" or "memory"; Durable is false only in memory, where the service
// is ready but Warning says that accepted sagas are lost on restart. Path
// is the database file of the SQLite store. Database is null when no
// database is in use.
type ReadyJSON struct {
	Status      string        `json:"status"`
	Persistence string        `json:"persistence"`
	Durable     bool          `json:"durable"`
	Path        string        `json:"path,omitempty"`
	InstanceID  string        `json:"instance_id"`
	Version     string        `json:"version,omitempty"`
	Database    *DatabaseJSON `json:"database"`
	Error       string        `json:"error,omitempty"`
	Warning     string        `json:"warning,omitempty"`
}

// DatabaseJSON describes the database in ReadyJSON.
type DatabaseJSON struct {
	RoundTripMs      float64  `json:"round_trip_ms"`
	Pool             PoolJSON `json:"pool"`
	MigrationVersion int64    `json:"migration_version"`
	// Replicas are the read replicas (DATABASE_READ_URL), omitted when none
	// is configured. One that is not usable does not make the service not
	// ready: reads go to the primary.
	Replicas []ReplicaJSON `json:"replicas,omitempty"`
}

// ReplicaJSON is one read replica in DatabaseJSON.
type ReplicaJSON struct {
	Name      string     `json:"name"` // "replica 1", … in the order of DATABASE_READ_URL
	Usable    bool       `json:"usable"`
	LagMs     float64    `json:"lag_ms"`
	Error     string     `json:"error,omitempty"`
	CheckedAt *time.Time `json:"checked_at"`
}

// PoolJSON is the connection pool in DatabaseJSON.
type PoolJSON struct {
	Total int32 `json:"total"`
	Idle  int32 `json:"idle"`
	InUse int32 `json:"in_use"`
	Max   int32 `json:"max"`
}

// Readiness and persistence words of ReadyJSON and HealthJSON.
const (
	// ReadyErrorDatabase is ReadyJSON.Error when the store reports a
	// problem with its database, whatever it is.
	ReadyErrorDatabase = "database unreachable"
	StatusOK           = "ok"
	StatusReady        = "ready"
	StatusNotReady     = "not_ready"
	// The stores of ReadyJSON.Persistence.
	PersistencePostgres = "postgres"
	PersistenceSQLite   = "sqlite"
	PersistenceMemory   = "memory"
)

// NewSagaJSON converts s to its wire form, with its steps when withSteps is
// set and s holds them.
func NewSagaJSON(s *saga.Saga, withSteps bool) SagaJSON {
	out := SagaJSON{
		ID:             s.ID.String(),
		Name:           s.Name,
		Status:         s.Status,
		TransactionID:  s.TransactionID.String(),
		Context:        s.Context,
		CompletedSteps: s.CompletedSteps,
		TotalSteps:     s.TotalSteps,
		CreatedAt:      s.CreatedAt.UTC(),
		UpdatedAt:      s.UpdatedAt.UTC(),
		StartedAt:      utc(s.StartedAt),
		CompletedAt:    utc(s.CompletedAt),
		Deadline:       utc(s.Deadline),
		Error:          s.Error,
		Durable:        s.Durable,
		LegalHold:      s.LegalHold,
		IdempotencyKey: s.IdempotencyKey,
		ControlRequest: s.Control,
		OwnerID:        s.OwnerID,
	}
	if s.UserID != nil {
		u := s.UserID.String()
		out.UserID = &u
	}
	if withSteps && s.Steps != nil {
		out.Steps = make([]StepJSON, len(s.Steps))
		g := s.Definition.Graph()
		for i := range s.Steps {
			out.Steps[i] = newStepJSON(&s.Steps[i])
			out.Steps[i].DependsOn = []string{}
			out.Steps[i].Compensable = i < len(s.Definition.Steps) && s.Definition.Steps[i].Compensation != nil
			if i < len(g.Deps) {
				for _, j := range g.Deps[i] {
					out.Steps[i].DependsOn = append(out.Steps[i].DependsOn, s.Definition.Steps[j].Name)
				}
			}
		}
		out.MaxParallel = 1
		if !g.Chain {
			out.MaxParallel = s.Definition.EffectiveMaxParallel()
		}
		if len(s.Definition.Steps) > 0 {
			def := s.Definition.Redacted()
			out.Definition = &def
		}
	}
	return out
}

func newStepJSON(st *saga.Step) StepJSON {
	out := StepJSON{
		Name:        st.Name,
		Index:       st.Index,
		Status:      st.Status,
		Attempts:    st.Attempts,
		Input:       st.Input,
		Output:      st.Output,
		Error:       st.Error,
		StartedAt:   utc(st.StartedAt),
		CompletedAt: utc(st.CompletedAt),
	}
	if c := st.Compensation; c != nil {
		out.Compensation = &CompensationJSON{
			Status:              c.Status,
			Attempts:            c.Attempts,
			AttemptsBeforeRetry: c.AttemptsBeforeRetry,
			StartedAt:           utc(c.StartedAt),
			CompletedAt:         utc(c.CompletedAt),
			Error:               c.Error,
			Output:              c.Output,
		}
	}
	return out
}

// NewEventJSON converts e to its wire form.
func NewEventJSON(e saga.Event) EventJSON {
	return EventJSON{
		ID:         e.ID.String(),
		SagaID:     e.SagaID.String(),
		Seq:        e.Seq,
		Type:       e.Type,
		StepIndex:  e.StepIndex,
		Data:       e.Data,
		InstanceID: e.InstanceID,
		Actor:      e.Actor,
		CreatedAt:  e.CreatedAt.UTC(),
	}
}

// NewStatsJSON converts st to its wire form. window is the window asked for;
// st.Window, when set, takes precedence.
func NewStatsJSON(st saga.Stats, window time.Duration) StatsJSON {
	if st.Window > 0 {
		window = st.Window
	}
	out := StatsJSON{
		ByStatus:       make(map[saga.SagaStatus]int64, len(saga.SagaStatuses)),
		Total:          st.Total,
		WindowSeconds:  window.Seconds(),
		Started:        st.Started,
		Completed:      st.Completed,
		Failed:         st.Failed,
		Ended:          st.EndedInWindow,
		MeanDurationMs: durationMs(st.MeanDuration),
		P95DurationMs:  durationMs(st.P95Duration),
	}
	for _, s := range saga.SagaStatuses {
		out.ByStatus[s] = st.ByStatus[s]
	}
	if secs := window.Seconds(); secs > 0 {
		out.StartedPerSecond = float64(st.Started) / secs
		out.CompletedPerSecond = float64(st.Completed) / secs
		out.FailedPerSecond = float64(st.Failed) / secs
	}
	return out
}

// newReadyJSON builds the readiness answer from the store's health and the
// extra check's verdict (extraOK).
func newReadyJSON(h saga.Health, extraOK bool, instanceID, version string) ReadyJSON {
	out := ReadyJSON{
		Status:      StatusReady,
		Persistence: PersistenceMemory,
		InstanceID:  instanceID,
		Version:     version,
	}
	if h.Error != "" {
		// The store's error names the database's user, host, port and name;
		// this answer is open to anyone. The log has the details.
		out.Error = ReadyErrorDatabase
	}
	if h.Durable {
		out.Persistence = cmp.Or(h.Backend, PersistencePostgres)
		out.Durable = true
		out.Path = h.Path
		out.Database = &DatabaseJSON{
			RoundTripMs:      durationMs(h.RoundTrip),
			Pool:             PoolJSON{Total: h.PoolTotal, Idle: h.PoolIdle, InUse: h.PoolInUse, Max: h.PoolMax},
			MigrationVersion: h.MigrationVersion,
		}
		for i, r := range h.Replicas {
			// Named by position, not by address: the endpoint is open.
			rj := ReplicaJSON{Name: "replica " + strconv.Itoa(i+1), Usable: r.Usable, LagMs: durationMs(r.Lag), Error: r.Error}
			if !r.CheckedAt.IsZero() {
				rj.CheckedAt = utc(&r.CheckedAt)
			}
			out.Database.Replicas = append(out.Database.Replicas, rj)
		}
		if h.Error != "" {
			out.Status = StatusNotReady
		}
	} else {
		out.Warning = "persistence is in memory: sagas accepted now are lost if this instance stops"
	}
	if !extraOK {
		out.Status = StatusNotReady
		if out.Error == "" {
			out.Error = "the service's readiness check failed"
		}
	}
	return out
}

func durationMs(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
