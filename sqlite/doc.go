// Package sqlite is the saga.Store on a SQLite file, through the pure-Go
// driver modernc.org/sqlite (no cgo: `go run` and the static binary keep
// working). It is the service's durable default: with no DATABASE_URL the
// service runs on sqlite://tracseq.db, so that one node survives kill -9
// with nothing installed. PostgreSQL is for several instances.
//
// The schema is the PostgreSQL store's five tables with the same columns
// and status values (CHECK constraints in STRICT tables), in
// migrations/*.sql, embedded and applied by goose at Open.
//
// One process uses a file at a time: Open takes an exclusive lock on the
// file path + ".lock" (released by the operating system when the process
// ends, SIGKILL included) and a second process is refused with an error,
// wrapping ErrLocked, that names the holder and the way to several
// instances (PostgreSQL). Within the process the file is opened in WAL
// mode with synchronous=FULL: one connection writes, several read in
// parallel from snapshots.
//
// Every write (transitions, creates, claims, lease renewals, control
// requests, cleanup) goes to the one writer goroutine, which runs the
// writes waiting at that moment in one transaction, each in a savepoint so
// that one failing write is undone alone, and commits them together: one
// fsync for the group, each caller still waiting for its own commit. A
// lone write is committed at once; nothing waits on a timer.
//
// Times that matter for correctness (lease expiry, deadlines, next-run
// times, cleanup cut-offs) come from the store's clock: the process's,
// read once per group commit and never going back. With one process per
// file it is the database's clock, as now() is for PostgreSQL. Times are
// stored as fixed-width UTC text with microseconds, ids as UUID text, JSON
// as the text the client sent.
package sqlite
