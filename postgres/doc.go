// Package postgres is the saga.Store on PostgreSQL, through pgx/v5 and
// pgxpool.
//
// The schema lives in migrations/*.sql, embedded in the binary and applied
// by Migrate under a session advisory lock, so that several instances
// starting at once apply each migration once.
//
// Every correctness-relevant time (lease expiry, deadlines, next-run
// times, cleanup cut-offs) is computed by the database's now(), never by the
// caller's clock.
//
// Writes that callers wait on (CreateSaga and Apply) are group-committed:
// writer goroutines gather the writes that arrive while the previous
// transaction commits and send them, pipelined, as one transaction. Each
// write is one statement that never raises an error for an expected outcome
// (a lost lease, an existing idempotency key), so one caller's outcome does
// not abort another's. Each caller still waits for the commit of its own
// write: durability is not traded for throughput.
//
// Transient database errors (a lost connection, a serialization failure, a
// deadlock, a server shutting down) are retried with backoff for a few
// attempts, bounded by the caller's context; after that the error wraps
// saga.ErrUnavailable.
package postgres
