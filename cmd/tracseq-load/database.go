package main

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
)

// The tool's SQL.
const (
	// sqlClearSnapshot discards the statistics snapshot of this session, so
	// that the next read sees the shared counters as they are now.
	sqlClearSnapshot = `SELECT pg_stat_clear_snapshot()`
	// sqlCommitCount is the commit counter of the connected database.
	sqlCommitCount = `SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()`
	// sqlDatabaseFacts describes the server for the report.
	sqlDatabaseFacts = `SELECT current_database(), current_setting('server_version'), current_setting('synchronous_commit')`
	// sqlCreateCeiling creates the scratch table of the ceiling
	// measurement. It fails when the table exists: another tracseq-load is
	// measuring, or one was killed (then drop the table by hand).
	sqlCreateCeiling = `CREATE TABLE tracseq_load_ceiling (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	worker     integer NOT NULL,
	payload    jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
)`
	// sqlInsertCeiling is one commit of the ceiling measurement: a single
	// row, about the size of a saga event, in its own transaction.
	sqlInsertCeiling = `INSERT INTO tracseq_load_ceiling (worker, payload) VALUES ($1, $2)`
	// sqlDropCeiling removes the scratch table.
	sqlDropCeiling = `DROP TABLE IF EXISTS tracseq_load_ceiling`

	// ceilingTable names the scratch table in messages.
	ceilingTable = "tracseq_load_ceiling"
	// ceilingPayload is the JSON stored by each ceiling insert.
	ceilingPayload = `{"type":"StepCompleted","step_index":1,"data":{"output":{"done":true,"step":"1"}},"instance_id":"tracseq-load"}`
	// dropTimeout bounds dropping the scratch table, also after an interrupt.
	dropTimeout = 30 * time.Second
	// pgDuplicateTable is SQLSTATE duplicate_table.
	pgDuplicateTable = "42P07"
)

// databaseFacts describe the PostgreSQL server measured.
type databaseFacts struct {
	Name              string `json:"name"`
	ServerVersion     string `json:"server_version"`
	SynchronousCommit string `json:"synchronous_commit"`
}

// readDatabaseFacts connects to url and reads its facts.
func readDatabaseFacts(ctx context.Context, url string) (databaseFacts, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return databaseFacts{}, fmt.Errorf("connect to the database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var f databaseFacts
	if err := conn.QueryRow(ctx, sqlDatabaseFacts).Scan(&f.Name, &f.ServerVersion, &f.SynchronousCommit); err != nil {
		return databaseFacts{}, fmt.Errorf("read database facts: %w", err)
	}
	return f, nil
}

// readCommitCount returns xact_commit of the database url names, on a
// connection of its own that is closed afterwards: a backend reports its
// own counts when it exits, so the read's own commit lands before the next
// read rather than up to 10s later.
func readCommitCount(ctx context.Context, url string) (int64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, fmt.Errorf("connect to the database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int64
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sqlClearSnapshot); err != nil {
			return err
		}
		return tx.QueryRow(ctx, sqlCommitCount).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("read commit count: %w", err)
	}
	return n, nil
}

// ceilingResult is the database ceiling: single-row INSERT commits per
// second at a concurrency.
type ceilingResult struct {
	Concurrency      int     `json:"concurrency"`
	Seconds          float64 `json:"seconds"`
	Commits          int64   `json:"commits"`
	CommitsPerSecond float64 `json:"commits_per_second"`
}

// measureCeiling creates the scratch table in the database url names, has
// concurrency connections insert one row per transaction into it for d,
// and drops it again.
func measureCeiling(ctx context.Context, url string, concurrency int, d time.Duration) (res *ceilingResult, err error) {
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	pcfg.MaxConns = int32(concurrency)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connect to the database: %w", err)
	}
	defer pool.Close()

	if _, err := pool.Exec(ctx, sqlCreateCeiling); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgDuplicateTable {
			return nil, fmt.Errorf("create %s: it exists: another tracseq-load is measuring this database, or one was killed (then DROP TABLE %s): %w",
				ceilingTable, ceilingTable, err)
		}
		return nil, fmt.Errorf("create %s: %w", ceilingTable, err)
	}
	defer func() {
		dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropTimeout)
		defer cancel()
		if _, derr := pool.Exec(dropCtx, sqlDropCeiling); derr != nil && err == nil {
			err = fmt.Errorf("drop %s: %w", ceilingTable, derr)
		}
	}()

	// Open every connection before the clock starts.
	conns := make([]*pgxpool.Conn, 0, concurrency)
	for range concurrency {
		c, err := pool.Acquire(ctx)
		if err != nil {
			for _, c := range conns {
				c.Release()
			}
			return nil, fmt.Errorf("open connections: %w", err)
		}
		conns = append(conns, c)
	}

	var (
		commits  atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	runCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	begin := time.Now()
	for i, c := range conns {
		wg.Go(func() {
			defer c.Release()
			for runCtx.Err() == nil {
				if _, err := c.Exec(runCtx, sqlInsertCeiling, i, ceilingPayload); err != nil {
					if runCtx.Err() == nil {
						errOnce.Do(func() { firstErr = err })
						cancel()
					}
					return
				}
				commits.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if firstErr != nil {
		return nil, fmt.Errorf("insert into %s: %w", ceilingTable, firstErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("measure the ceiling: %w", err)
	}
	n := commits.Load()
	return &ceilingResult{
		Concurrency:      concurrency,
		Seconds:          elapsed.Seconds(),
		Commits:          n,
		CommitsPerSecond: float64(n) / elapsed.Seconds(),
	}, nil
}
