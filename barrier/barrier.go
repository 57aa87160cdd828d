package barrier

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tracseq/transaction-service/participant"
)

// DDL creates the barrier's tables (saga_barrier, saga_barrier_epoch) when
// they do not exist.
//
//go:embed schema.sql
var DDL string

// Execer runs SQL: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// CreateTables applies DDL.
func CreateTables(ctx context.Context, db Execer) error {
	if _, err := db.Exec(ctx, DDL); err != nil {
		return fmt.Errorf("create barrier tables: %w", err)
	}
	return nil
}

// Beginner starts transactions: a *pgxpool.Pool or a *pgx.Conn.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// HandlerFunc is a participant's handler behind the barrier. It does its
// business writes in tx and answers on w; the barrier commits tx (with its
// record of the call) when the answer is a success, rolls back the writes
// but keeps the record when it is a refusal, and rolls back everything when
// it is a transient failure. The handler must not commit or roll back tx.
type HandlerFunc func(w http.ResponseWriter, r *http.Request, tx pgx.Tx)

// Op is the kind of a call: a step's action or its compensation.
type Op string

// The ops.
const (
	OpAction       Op = "action"
	OpCompensation Op = "compensation"
)

// Key identifies a call of a saga step.
type Key struct {
	Saga string // the saga id, or DTM's gid
	Step string // the step index, or DTM's branch_id
	Op   Op
	// DTM is true when the call came in DTM's protocol (gid, branch_id and
	// op in the query): its answers are read as DTM reads them.
	DTM bool
	// Epoch is the X-Saga-Attempt-Epoch of the call, or -1 when absent.
	Epoch int64
}

// Header names the barrier reads.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderAttemptEpoch   = "X-Saga-Attempt-Epoch"
	// HeaderReplayed is set to "true" on an answer the barrier repeats.
	HeaderReplayed = "Idempotent-Replayed"
)

// KeyFromRequest reads the key of a call: DTM's gid, branch_id and op when
// the query has them, else the Idempotency-Key header. The error names what
// is missing or malformed.
func KeyFromRequest(r *http.Request) (Key, error) {
	k := Key{Epoch: -1}
	if v := r.Header.Get(HeaderAttemptEpoch); v != "" {
		e, err := strconv.ParseInt(v, 10, 64)
		if err != nil || e < 0 {
			return Key{}, fmt.Errorf("%s: must be a non-negative integer (got %q)", HeaderAttemptEpoch, v)
		}
		k.Epoch = e
	}
	q := r.URL.Query()
	if gid := q.Get("gid"); gid != "" {
		k.Saga, k.Step, k.DTM = gid, q.Get("branch_id"), true
		switch op := q.Get("op"); op {
		case participant.DTMOpAction:
			k.Op = OpAction
		case participant.DTMOpCompensate:
			k.Op = OpCompensation
		default:
			return Key{}, fmt.Errorf("query op: must be action or compensate (got %q)", op)
		}
		if k.Step == "" {
			return Key{}, errors.New("query branch_id: missing beside gid")
		}
		return k, nil
	}
	v := r.Header.Get(HeaderIdempotencyKey)
	if v == "" {
		return Key{}, errors.New("the call names no saga step: neither an Idempotency-Key header nor DTM's gid, branch_id and op")
	}
	rest, kind, ok1 := cutLast(v, ":")
	sagaID, step, ok2 := cutLast(rest, ":")
	if !ok1 || !ok2 || sagaID == "" || step == "" {
		return Key{}, fmt.Errorf("%s: must be <saga>:<step>:<action|compensation> (got %q)", HeaderIdempotencyKey, v)
	}
	switch Op(kind) {
	case OpAction, OpCompensation:
		k.Op = Op(kind)
	default:
		return Key{}, fmt.Errorf("%s: the kind must be action or compensation (got %q)", HeaderIdempotencyKey, kind)
	}
	k.Saga, k.Step = sagaID, step
	return k, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// Config configures a Barrier.
type Config struct {
	// DB is the participant's database. Required.
	DB Beginner
	// Logger receives what goes wrong with the barrier's own writes
	// (default: discarded).
	Logger *slog.Logger
}

// Barrier wraps participant handlers. It is safe for concurrent use.
type Barrier struct {
	db  Beginner
	log *slog.Logger
}

// New returns a Barrier on cfg.DB, whose tables must exist (CreateTables).
func New(cfg Config) (*Barrier, error) {
	if cfg.DB == nil {
		return nil, errors.New("barrier: Config.DB is required")
	}
	return &Barrier{db: cfg.DB, log: cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))}, nil
}

// The barrier's SQL.
const (
	sqlEpoch = `INSERT INTO saga_barrier_epoch (saga_id, step, epoch) VALUES ($1, $2, $3)
		ON CONFLICT (saga_id, step) DO UPDATE SET epoch = GREATEST(saga_barrier_epoch.epoch, EXCLUDED.epoch)
		RETURNING epoch`
	sqlEpochShare = `SELECT epoch FROM saga_barrier_epoch WHERE saga_id = $1 AND step = $2 FOR SHARE`
	sqlInsert     = `INSERT INTO saga_barrier (saga_id, step, op, outcome, status, content_type, body)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (saga_id, step, op) DO NOTHING`
	sqlAnswer = `UPDATE saga_barrier SET outcome = $4, status = $5, content_type = $6, body = $7
		WHERE saga_id = $1 AND step = $2 AND op = $3`
	sqlRead = `SELECT outcome, status, content_type, body FROM saga_barrier
		WHERE saga_id = $1 AND step = $2 AND op = $3`
)

// Outcomes of a recorded call (the outcome column).
const (
	outcomeDone    = "done"
	outcomeRefused = "refused"
	outcomeBlocked = "blocked"
	outcomeSkipped = "skipped"
)

// The barrier's own answers.
var (
	bodyBlocked = []byte(`{"dtm_result":"FAILURE","error":"this action arrived after its compensation: it does nothing"}`)
	bodySkipped = []byte(`{"dtm_result":"SUCCESS","barrier":"nothing to compensate"}`)
)

const contentTypeJSON = "application/json"

// answer is a kept or buffered HTTP answer.
type answer struct {
	outcome     string
	status      int
	contentType string
	body        []byte
}

// Handler returns h behind the barrier.
func (b *Barrier) Handler(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, err := KeyFromRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a, replayed, err := b.serve(r.Context(), key, h, r)
		if err != nil {
			if r.Context().Err() == nil {
				b.log.Error("saga barrier", "saga_id", key.Saga, "step", key.Step, "op", string(key.Op), "err", err)
			}
			http.Error(w, "barrier: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if replayed {
			w.Header().Set(HeaderReplayed, "true")
		}
		a.write(w)
	})
}

// serve runs one call through the barrier and returns the answer to give.
func (b *Barrier) serve(ctx context.Context, key Key, h HandlerFunc, r *http.Request) (a *answer, replayed bool, err error) {
	if key.Epoch >= 0 {
		// The epoch is remembered whatever comes of the call (a transient
		// failure rolls the call back, not the epoch).
		seen, err := b.recordEpoch(ctx, key)
		if err != nil {
			return nil, false, err
		}
		if seen > key.Epoch {
			return staleAnswer(key.Epoch, seen), false, nil
		}
	}
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if tx != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if key.Epoch >= 0 {
		// Held until the call ends: a newer owner's call of the step waits
		// for this one, and one that came first makes this one stale.
		var seen int64
		if err := tx.QueryRow(ctx, sqlEpochShare, key.Saga, key.Step).Scan(&seen); err != nil {
			return nil, false, fmt.Errorf("read attempt epoch: %w", err)
		}
		if seen > key.Epoch {
			return staleAnswer(key.Epoch, seen), false, nil
		}
	}
	commit := func() error {
		err := tx.Commit(ctx)
		tx = nil
		if err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
	if key.Op == OpCompensation {
		// A compensation first closes the door on its action: if the
		// action has no record, none may ever be applied.
		tag, err := tx.Exec(ctx, sqlInsert, key.Saga, key.Step, OpAction, outcomeBlocked, http.StatusConflict, contentTypeJSON, bodyBlocked)
		if err != nil {
			return nil, false, fmt.Errorf("record compensation: %w", err)
		}
		if tag.RowsAffected() == 1 {
			a := jsonAnswer(http.StatusOK, string(bodySkipped))
			if err := b.insert(ctx, tx, key, outcomeSkipped, a); err != nil {
				return nil, false, err
			}
			return a, false, commit()
		}
	}
	tag, err := tx.Exec(ctx, sqlInsert, key.Saga, key.Step, key.Op, outcomeDone, 0, "", []byte{})
	if err != nil {
		return nil, false, fmt.Errorf("record call: %w", err)
	}
	if tag.RowsAffected() == 0 {
		// A repeated call: the first answer, or the refusal of an action
		// whose compensation came first.
		kept, err := read(ctx, tx, key.Saga, key.Step, key.Op)
		if err != nil {
			return nil, false, err
		}
		return kept, kept.outcome != outcomeBlocked, commit()
	}
	if key.Op == OpCompensation {
		action, err := read(ctx, tx, key.Saga, key.Step, OpAction)
		if err != nil {
			return nil, false, err
		}
		if action.outcome != outcomeDone {
			// The action was refused: nothing to undo.
			a := jsonAnswer(http.StatusOK, string(bodySkipped))
			if _, err := tx.Exec(ctx, sqlAnswer, key.Saga, key.Step, key.Op, outcomeSkipped, a.status, a.contentType, a.body); err != nil {
				return nil, false, fmt.Errorf("record compensation: %w", err)
			}
			return a, false, commit()
		}
	}

	// The first call: the handler runs in a savepoint, so that a refusal
	// undoes its writes and keeps the record.
	sp, err := tx.Begin(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("savepoint: %w", err)
	}
	rec := newRecorder()
	if err := runHandler(h, rec, r, sp); err != nil {
		return nil, false, err
	}
	a = rec.answer()
	switch b.classify(key, a) {
	case participant.OutcomeSuccess:
		if err := sp.Commit(ctx); err != nil {
			return nil, false, fmt.Errorf("release savepoint: %w", err)
		}
		a.outcome = outcomeDone
	case participant.OutcomePermanent:
		if key.Op == OpCompensation {
			return a, false, nil // not undone: the coordinator retries
		}
		if err := sp.Rollback(ctx); err != nil {
			return nil, false, fmt.Errorf("roll back to savepoint: %w", err)
		}
		a.outcome = outcomeRefused
	default:
		return a, false, nil // transient: nothing kept, the retry runs afresh
	}
	if _, err := tx.Exec(ctx, sqlAnswer, key.Saga, key.Step, key.Op, a.outcome, a.status, a.contentType, a.body); err != nil {
		return nil, false, fmt.Errorf("record answer: %w", err)
	}
	return a, false, commit()
}

// recordEpoch raises the step's epoch to the call's and returns the
// highest seen, in a transaction of its own.
func (b *Barrier) recordEpoch(ctx context.Context, key Key) (int64, error) {
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var seen int64
	if err := tx.QueryRow(ctx, sqlEpoch, key.Saga, key.Step, key.Epoch).Scan(&seen); err != nil {
		return 0, fmt.Errorf("record attempt epoch: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("record attempt epoch: %w", err)
	}
	return seen, nil
}

func staleAnswer(epoch, seen int64) *answer {
	return jsonAnswer(http.StatusConflict, fmt.Sprintf(
		`{"dtm_result":"FAILURE","error":"stale call: attempt epoch %d, and epoch %d was seen for this step"}`, epoch, seen))
}

// runHandler calls h, turning a panic into an error.
func runHandler(h HandlerFunc, w http.ResponseWriter, r *http.Request, tx pgx.Tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			err = fmt.Errorf("handler panicked: %v", v)
		}
	}()
	h(w, r, tx)
	return nil
}

// classify reads an answer as the coordinator will.
func (b *Barrier) classify(key Key, a *answer) participant.Outcome {
	kind := participant.KindAction
	if key.Op == OpCompensation {
		kind = participant.KindCompensation
	}
	if key.DTM {
		o, _ := participant.ClassifyDTM(kind, a.status, a.body)
		return o
	}
	if a.status == http.StatusTooEarly {
		return participant.OutcomeTransient
	}
	o, _ := participant.Classify(a.status, nil)
	return o
}

func (b *Barrier) insert(ctx context.Context, tx pgx.Tx, key Key, outcome string, a *answer) error {
	if _, err := tx.Exec(ctx, sqlInsert, key.Saga, key.Step, key.Op, outcome, a.status, a.contentType, a.body); err != nil {
		return fmt.Errorf("record call: %w", err)
	}
	return nil
}

func read(ctx context.Context, tx pgx.Tx, sagaID, step string, op Op) (*answer, error) {
	var a answer
	err := tx.QueryRow(ctx, sqlRead, sagaID, step, op).Scan(&a.outcome, &a.status, &a.contentType, &a.body)
	if err != nil {
		return nil, fmt.Errorf("read barrier record: %w", err)
	}
	return &a, nil
}

func jsonAnswer(status int, body string) *answer {
	return &answer{status: status, contentType: contentTypeJSON, body: []byte(body)}
}

func (a *answer) write(w http.ResponseWriter) {
	if a.contentType != "" {
		w.Header().Set("Content-Type", a.contentType)
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// recorder buffers a handler's answer until the barrier has committed.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

func (r *recorder) answer() *answer {
	return &answer{status: cmp.Or(r.status, http.StatusOK), contentType: r.header.Get("Content-Type"), body: r.body.Bytes()}
}
