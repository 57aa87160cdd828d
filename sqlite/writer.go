package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// The one writer. SQLite lets one transaction write at a time, so every
// write of the store (transitions, creates, claims, renewals, control
// requests, cleanup) is handed to one goroutine that owns the one write
// connection. It takes the writes that are waiting, runs each in a
// savepoint of one transaction, and commits them together: one WAL fsync
// (synchronous=FULL) for all, each caller still waiting for the commit of
// its own write. Nothing waits on a timer: a lone write is committed at
// once, and the writes that arrive during a commit form the next batch.
const (
	// closeGrace is how long Close waits for accepted writes to commit
	// before it cancels them.
	closeGrace = 10 * time.Second
)

// errClosed is returned by writes submitted after Close.
var errClosed = fmt.Errorf("store closed: %w", saga.ErrUnavailable)

// writeFunc is one write: it runs its statements through w, all in the
// group's transaction, and returns an error to undo them (its savepoint is
// rolled back; the other writes of the group are kept). It runs on the
// writer's goroutine and must not wait for anything but the database.
type writeFunc func(w *wtx) error

// writeOp is one write waiting for its group commit.
type writeOp struct {
	ctx  context.Context // the caller's: a write whose caller gave up is not run
	fn   writeFunc
	done chan error
}

// writer owns the write connection and commits writes in groups.
type writer struct {
	db       *sql.DB // one connection
	store    *Store
	queue    chan *writeOp
	urgent   chan *writeOp // lease renewals: first into the next group
	maxBatch int
	stmts    map[string]*sql.Stmt // writeQueries prepared on db; read-only after newWriter

	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	done   chan struct{} // closed when run has returned

	// ctx is the context of every statement: a caller giving up must not
	// interrupt a transaction other writes share. cancel ends the writes
	// still running closeGrace after Close.
	ctx    context.Context
	cancel context.CancelFunc
}

// newWriter prepares the writer's statements on db and starts it.
func newWriter(ctx context.Context, s *Store, db *sql.DB, maxBatch int) (*writer, error) {
	stmts, err := prepareAll(ctx, db, writeQueries)
	if err != nil {
		return nil, err
	}
	w := &writer{
		db:       db,
		store:    s,
		queue:    make(chan *writeOp, maxBatch),
		urgent:   make(chan *writeOp, maxBatch),
		maxBatch: maxBatch,
		stmts:    stmts,
		done:     make(chan struct{}),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w, nil
}

// submit hands fn to the writer and waits for the commit of its group (or
// ctx). A nil error means fn's writes were committed.
func (w *writer) submit(ctx context.Context, fn writeFunc) error {
	return w.send(ctx, w.queue, fn)
}

// submitUrgent is submit for lease renewals: they go into the next group
// before the writes queued, so that a long queue (many sagas writing on a
// starved CPU) does not let the leases of the sagas waiting in it expire.
func (w *writer) submitUrgent(ctx context.Context, fn writeFunc) error {
	return w.send(ctx, w.urgent, fn)
}

func (w *writer) send(ctx context.Context, queue chan *writeOp, fn writeFunc) error {
	op := &writeOp{ctx: ctx, fn: fn, done: make(chan error, 1)}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		return errClosed
	}
	select {
	case queue <- op:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops accepting writes and waits until those accepted are
// committed or have failed; after closeGrace it cancels them. Then it
// closes the statements.
func (w *writer) close() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.queue)
		close(w.urgent)
	}
	w.mu.Unlock()
	timer := time.NewTimer(closeGrace)
	defer timer.Stop()
	select {
	case <-w.done:
	case <-timer.C:
		w.store.logger.Warn("writes still pending at close; cancelling them", "grace_ms", closeGrace.Milliseconds())
		w.cancel()
		<-w.done
	}
	w.cancel()
	for _, st := range w.stmts {
		_ = st.Close()
	}
}

// run takes the first waiting write (an urgent one if any), adds whatever
// else is waiting (urgent writes first, up to maxBatch), commits them
// together, and repeats until both queues are closed.
func (w *writer) run() {
	defer close(w.done)
	urgent, queue := w.urgent, w.queue
	batch := make([]*writeOp, 0, w.maxBatch)
	for urgent != nil || queue != nil {
		var (
			op *writeOp
			ok bool
		)
		select {
		case op, ok = <-urgent:
		default:
			select {
			case op, ok = <-urgent:
			case op, ok = <-queue:
				if !ok {
					queue = nil
					continue
				}
			}
		}
		if !ok {
			urgent = nil
			continue
		}
		batch = append(batch[:0], op)
		for _, ch := range []chan *writeOp{urgent, queue} {
		gather:
			for ch != nil && len(batch) < w.maxBatch {
				select {
				case op, ok := <-ch:
					if !ok {
						break gather
					}
					batch = append(batch, op)
				default:
					break gather
				}
			}
		}
		w.commit(batch)
	}
}

// commit runs the live writes of ops in one transaction, each in a
// savepoint, and reports to each its own outcome once the transaction has
// committed. When the transaction itself fails (BEGIN, a savepoint, the
// COMMIT), every write of the group gets that error: none was written.
func (w *writer) commit(ops []*writeOp) {
	live := ops[:0:0]
	for _, op := range ops {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
		live = append(live, op)
	}
	if len(live) == 0 {
		return
	}
	if h := w.store.hooks.beforeBatch; h != nil {
		h(len(live))
	}
	errs, err := w.exec(live)
	for i, op := range live {
		if err != nil {
			op.done <- err
			continue
		}
		op.done <- errs[i]
	}
}

// exec runs ops in one transaction and returns each one's error, or the
// error that failed the whole transaction.
func (w *writer) exec(ops []*writeOp) (errs []error, err error) {
	defer w.store.observe(opGroupCommit, time.Now(), &err)
	tx, err := w.db.BeginTx(w.ctx, nil) // BEGIN IMMEDIATE (_txlock)
	if err != nil {
		return nil, interpretError("begin write transaction", err)
	}
	t := &wtx{tx: tx, w: w, now: w.store.clock.read()}
	fail := func(doing string, err error) ([]error, error) {
		_ = tx.Rollback()
		return nil, interpretError(doing, err)
	}
	errs = make([]error, len(ops))
	if len(ops) == 1 {
		// Alone in its transaction: a failure rolls the transaction back.
		if errs[0] = ops[0].fn(t); errs[0] != nil {
			_ = tx.Rollback()
			return errs, nil
		}
		return errs, w.finish(tx)
	}
	for i, op := range ops {
		if _, err := t.exec(sqlSavepoint); err != nil {
			return fail("open savepoint", err)
		}
		if errs[i] = op.fn(t); errs[i] != nil {
			if _, err := t.exec(sqlRollbackToSavepoint); err != nil {
				// SQLite rolled the whole transaction back (an I/O
				// error, a full disk): nothing of the group stands.
				return fail("roll back a failed write", errors.Join(errs[i], err))
			}
		}
		if _, err := t.exec(sqlReleaseSavepoint); err != nil {
			return fail("release savepoint", err)
		}
	}
	return errs, w.finish(tx)
}

// finish commits a group's transaction (rolled back on failure).
func (w *writer) finish(tx *sql.Tx) error {
	if h := w.store.hooks.beforeCommit; h != nil {
		if err := h(); err != nil {
			_ = tx.Rollback()
			return interpretError("commit", err)
		}
	}
	if err := tx.Commit(); err != nil {
		_ = tx.Rollback()
		return interpretError("commit", err)
	}
	return nil
}

// Savepoints: each write of a group runs in one, so that a write that
// fails is undone alone.
const (
	sqlSavepoint           = `SAVEPOINT write`
	sqlRollbackToSavepoint = `ROLLBACK TO write`
	sqlReleaseSavepoint    = `RELEASE write`
)

// writeQueries are the statements the writer runs, prepared once on the
// write connection before the first transaction (preparing on the pool
// during one would wait for the connection the transaction holds).
var writeQueries = []string{
	sqlSavepoint, sqlRollbackToSavepoint, sqlReleaseSavepoint,
	sqlInsertSaga, sqlInsertStep, sqlInsertEvent, sqlSagaExists, sqlSagaIDByKey, sqlGetSaga, sqlGetSteps,
	sqlApplySaga, sqlUpdateStep, sqlUpsertCompensation, sqlInsertCheckpoint, sqlEventSeq, sqlAppliedAnswer,
	sqlClaimSagas, sqlGetStepsOf, sqlRenewLeases, sqlRequestControl, sqlSagaStatus,
	sqlDeleteExpired, sqlRecordMove, sqlReadHead, sqlInsertDeletion, sqlSetLegalHold,
}

// prepareAll prepares queries on db. database/sql keeps each statement
// prepared on every connection it has run on, and prepares it on the
// connection of a transaction that uses it (tx.StmtContext) when needed.
func prepareAll(ctx context.Context, db *sql.DB, queries []string) (map[string]*sql.Stmt, error) {
	out := make(map[string]*sql.Stmt, len(queries))
	for _, q := range queries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			for _, st := range out {
				_ = st.Close()
			}
			return nil, fmt.Errorf("prepare %q: %w", firstLine(q), err)
		}
		out[q] = st
	}
	return out, nil
}

// firstLine returns the first non-empty line of a query, for errors.
func firstLine(q string) string {
	for line := range strings.Lines(q) {
		if line = strings.TrimSpace(line); line != "" {
			return line
		}
	}
	return q
}

// wtx is the group's transaction as one write sees it: its statements and
// the store clock's reading for the whole group (as PostgreSQL's now() is
// the same for a whole transaction).
type wtx struct {
	tx  *sql.Tx
	w   *writer
	now time.Time
}

// nowText is the group's time as stored.
func (t *wtx) nowText() string { return fmtTime(t.now) }

func (t *wtx) exec(query string, args ...any) (sql.Result, error) {
	if st := t.w.stmts[query]; st != nil {
		return t.tx.StmtContext(t.w.ctx, st).ExecContext(t.w.ctx, args...)
	}
	return t.tx.ExecContext(t.w.ctx, query, args...)
}

func (t *wtx) query(query string, args ...any) (*sql.Rows, error) {
	if st := t.w.stmts[query]; st != nil {
		return t.tx.StmtContext(t.w.ctx, st).QueryContext(t.w.ctx, args...)
	}
	return t.tx.QueryContext(t.w.ctx, query, args...)
}

// queryRow runs a query that returns at most one row and scans it into
// dest; sql.ErrNoRows when there is none.
func (t *wtx) queryRow(query string, args []any, dest ...any) error {
	if st := t.w.stmts[query]; st != nil {
		return t.tx.StmtContext(t.w.ctx, st).QueryRowContext(t.w.ctx, args...).Scan(dest...)
	}
	return t.tx.QueryRowContext(t.w.ctx, query, args...).Scan(dest...)
}
