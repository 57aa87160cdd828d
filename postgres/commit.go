package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
)

// Group commit. A synchronous commit costs a flush of the WAL; by sending
// the writes that arrive while another transaction commits together, as
// one pipelined transaction, many writers share one flush. Nothing waits on
// a timer: a lone write is sent at once, as a batch of one, by its caller's
// own goroutine when nothing is queued and a writer's slot is free.
const (
	// batchTimeout bounds one group-committed transaction with its
	// retries.
	batchTimeout = time.Minute
	// closeGrace is how long Close waits for accepted writes to commit
	// before it cancels them (the database may be unreachable).
	closeGrace = 10 * time.Second
)

// errClosed is returned by writes submitted after Close.
var errClosed = fmt.Errorf("store closed: %w", saga.ErrUnavailable)

// writeOp is one write in a group commit: a statement that returns at most
// one row and never fails for an expected outcome (a fenced update that
// matched nothing, an insert that conflicted: both return no row).
type writeOp struct {
	ctx  context.Context // the caller's: a write whose caller gave up is not sent
	sql  string
	args []any
	dest []any // scan targets of the returned row

	// Set by the committer before done is signalled.
	found bool // the statement returned its row
	sent  int  // how many times the write may have reached the database
	done  chan error
}

// committer gathers writeOps and commits them in batches.
type committer struct {
	pool     *pgxpool.Pool
	store    *Store
	queue    chan *writeOp
	maxBatch int

	// slots holds one token per transaction in flight, at most one per
	// writer: a writer goroutine takes one before it sends a batch, and so
	// does a caller that sends its own write.
	slots chan struct{}
	// waiting counts the writes accepted but not yet in a batch: queued,
	// or taken by a writer goroutine that waits for a slot.
	waiting atomic.Int64

	mu     sync.RWMutex // guards closed against sends on a closed queue
	closed bool
	wg     sync.WaitGroup

	// ctx is the parent of every batch; cancel ends the batches still
	// running closeGrace after Close.
	ctx    context.Context
	cancel context.CancelFunc
}

func newCommitter(s *Store, writers, maxBatch int) *committer {
	c := &committer{
		pool:     s.pool,
		store:    s,
		queue:    make(chan *writeOp, maxBatch*writers),
		maxBatch: maxBatch,
		slots:    make(chan struct{}, max(writers, 1)),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	for range max(writers, 1) {
		c.wg.Go(c.run)
	}
	return c
}

// submit hands op to a writer and waits for the commit of its transaction
// (or ctx). A nil error means op was committed; op.found then says whether
// its statement returned its row.
func (c *committer) submit(ctx context.Context, op *writeOp) error {
	op.ctx = ctx
	op.done = make(chan error, 1)
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return errClosed
	}
	if c.waiting.Load() == 0 {
		select {
		case c.slots <- struct{}{}:
			c.wg.Add(1) // before close can wait: it takes mu first
			c.mu.RUnlock()
			return c.sendOwn(ctx, op)
		default:
		}
	}
	c.waiting.Add(1)
	select {
	case c.queue <- op:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.waiting.Add(-1)
		c.mu.RUnlock()
		return ctx.Err()
	}
	select {
	case err := <-op.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sendOwn commits op alone on the caller's goroutine, in a slot taken by
// submit, so that a write finding the committer idle does not wait for a
// writer goroutine to be scheduled, twice. The caller giving up cancels
// the write, as does the end of Close's grace.
func (c *committer) sendOwn(ctx context.Context, op *writeOp) error {
	defer c.wg.Done()
	defer func() { <-c.slots }()
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	c.commit(bctx, []*writeOp{op})
	if err := <-op.done; err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return err
	}
	return nil
}

// close stops accepting writes and waits until those accepted are
// committed or have failed; after closeGrace it cancels them.
func (c *committer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	drained := make(chan struct{})
	go func() {
		c.wg.Wait()
		close(drained)
	}()
	timer := time.NewTimer(closeGrace)
	defer timer.Stop()
	select {
	case <-drained:
	case <-timer.C:
		c.store.logger.Warn("writes still pending at close; cancelling them", "grace_ms", closeGrace.Milliseconds())
		c.cancel()
		<-drained
	}
	c.cancel()
}

// run is one writer: it takes the first waiting write and a slot, adds
// whatever else is waiting (up to maxBatch), commits them together, and
// repeats.
func (c *committer) run() {
	batch := make([]*writeOp, 0, c.maxBatch)
	for op := range c.queue {
		c.slots <- struct{}{}
		batch = append(batch[:0], op)
	gather:
		for len(batch) < c.maxBatch {
			select {
			case op, ok := <-c.queue:
				if !ok {
					break gather
				}
				batch = append(batch, op)
			default:
				break gather
			}
		}
		c.waiting.Add(-int64(len(batch)))
		c.commit(c.ctx, batch)
		<-c.slots
	}
}

// commit writes ops in one transaction, retried on transient errors, within
// parent. When the transaction fails for another reason (a bad value in one
// write), the writes are retried one per transaction so that only the bad
// one fails.
func (c *committer) commit(parent context.Context, ops []*writeOp) {
	live := make([]*writeOp, 0, len(ops))
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
	ctx, cancel := context.WithTimeout(parent, batchTimeout)
	defer cancel()
	err := retry(ctx, func(ctx context.Context) error { return c.exec(ctx, live) })
	if err == nil {
		for _, op := range live {
			op.done <- nil
		}
		return
	}
	if len(live) > 1 && !isTransient(err) && ctx.Err() == nil && c.ctx.Err() == nil {
		c.store.logger.Warn("group commit failed; writing its writes one by one",
			"writes", len(live), "error", err)
		for _, op := range live {
			c.commit(parent, []*writeOp{op})
		}
		return
	}
	for _, op := range live {
		op.done <- err
	}
}

// exec sends BEGIN, the writes and COMMIT as one pipelined batch: one
// round trip and one WAL flush for all of them. The batch's statements run
// with generic plans (see sqlGenericPlans).
func (c *committer) exec(ctx context.Context, ops []*writeOp) (err error) {
	defer c.store.observe(opGroupCommit, time.Now(), &err)
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()

	var before, after []string
	if c.store.hooks.beforeSend != nil {
		before, after = c.store.hooks.beforeSend(len(ops))
	}
	b := &pgx.Batch{}
	b.Queue(sqlBegin)
	b.Queue(sqlGenericPlans)
	for _, op := range ops {
		b.Queue(op.sql, op.args...)
		op.sent++
	}
	for _, q := range before {
		b.Queue(q)
	}
	b.Queue(sqlCommit)
	for _, q := range after {
		b.Queue(q)
	}

	br := conn.SendBatch(ctx, b)
	err = readBatch(br, ops, len(before), len(after))
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if pgconn.SafeToRetry(err) {
			// The batch failed before any of it left for the server (a
			// connection found dead): it was not sent after all.
			for _, op := range ops {
				op.sent--
			}
		}
		rollback(ctx, conn)
	}
	return err
}

// readBatch reads the results of a batch made by exec, with before and
// after statements added by a test hook.
func readBatch(br pgx.BatchResults, ops []*writeOp, before, after int) error {
	for range 2 { // BEGIN, SET LOCAL
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
	}
	for _, op := range ops {
		err := br.QueryRow().Scan(op.dest...)
		switch {
		case err == nil:
			op.found = true
		case errors.Is(err, pgx.ErrNoRows):
			op.found = false
		default:
			return err
		}
	}
	for range before {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	for range after {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	return nil
}

// rollback ends a transaction a failed batch left open, so that the
// connection can be reused; the pool discards a connection it cannot
// clean.
func rollback(ctx context.Context, conn *pgxpool.Conn) {
	pc := conn.Conn().PgConn()
	if conn.Conn().IsClosed() || pc.TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = conn.Exec(ctx, sqlRollback)
}
