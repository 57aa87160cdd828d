package postgres

import (
	"context"
	"slices"
	"testing"
	"time"
)

// When the server ends the sessions of the store (as a restart does), the
// first statement to find its connection dead resets the pool: the other
// idle connections, dead too, are closed rather than each failing a later
// statement. The store's retries then start from a fresh connection.
func TestServerShutdownResetsPool(t *testing.T) {
	t.Parallel()
	b := setup(t, hooks{})
	pool := b.store.Pool()
	ctx := b.ctx

	// Fill the pool with idle connections and note their backends.
	const n = 4
	conns := make([]interface{ Release() }, 0, n)
	var pids []uint32
	for range n {
		c, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, c.Conn().PgConn().PID())
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release()
	}
	released := time.Now()
	// The server ends them all while they are idle.
	for _, pid := range pids {
		b.kill(t, int32(pid))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left int
		if err := b.db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)`, pids).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d terminated backends still there", left)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Within a second of their last use (the pool pings connections idle
	// longer before handing them out): a statement without retries meets a
	// dead connection and fails.
	if _, err := pool.Exec(ctx, `SELECT 1`); err == nil {
		t.Fatal("a statement on a connection the server ended succeeded")
	}
	if d := time.Since(released); d > 900*time.Millisecond {
		t.Logf("the connections were idle %v: the pool may have pinged them", d)
	}
	idle := pool.AcquireAllIdle(context.Background())
	defer func() {
		for _, c := range idle {
			c.Release()
		}
	}()
	for _, c := range idle {
		if pid := c.Conn().PgConn().PID(); slices.Contains(pids, pid) {
			t.Errorf("idle connection to ended backend %d still in the pool", pid)
		}
	}
}
