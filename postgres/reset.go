package postgres

import (
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Codes with which the server says it is ending every session: a fast or
// immediate shutdown (a restart among them). A connection that receives
// one tells that the pool's idle connections are most likely dead too.
const (
	codeAdminShutdown = "57P01" // also pg_terminate_backend
	codeCrashShutdown = "57P02"
)

// resetOnShutdown makes the pool of pc close all its connections when one
// of them is told the server is shutting down (an error, or the warning of
// an immediate shutdown), so that the writes and reads that follow connect
// afresh instead of each finding, and failing on, a connection the server
// has already closed. (A write that fails on a dead connection may have to
// be reported as of unknown outcome.) Call the returned function with the
// pool once made.
func resetOnShutdown(pc *pgxpool.Config) func(*pgxpool.Pool) {
	var pool atomic.Pointer[pgxpool.Pool]
	reset := func(code string) {
		if code != codeAdminShutdown && code != codeCrashShutdown {
			return
		}
		if p := pool.Load(); p != nil {
			p.Reset()
		}
	}
	onError := pc.ConnConfig.OnPgError
	pc.ConnConfig.OnPgError = func(c *pgconn.PgConn, e *pgconn.PgError) bool {
		reset(e.Code)
		if onError != nil {
			return onError(c, e)
		}
		return e.Severity != "FATAL"
	}
	onNotice := pc.ConnConfig.OnNotice
	pc.ConnConfig.OnNotice = func(c *pgconn.PgConn, n *pgconn.Notice) {
		reset(n.Code)
		if onNotice != nil {
			onNotice(c, n)
		}
	}
	return func(p *pgxpool.Pool) { pool.Store(p) }
}
