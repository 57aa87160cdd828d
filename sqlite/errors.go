package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	saga "github.com/tracseq/transaction-service"
)

// Primary result codes after which the database may answer again: another
// connection holds a lock longer than the busy timeout, or the file cannot
// be written for now (an I/O error, a full disk, a file that cannot be
// opened). The API answers 503 for them.
var unavailableCodes = map[int]bool{
	sqlite3.SQLITE_BUSY:     true,
	sqlite3.SQLITE_LOCKED:   true,
	sqlite3.SQLITE_IOERR:    true,
	sqlite3.SQLITE_FULL:     true,
	sqlite3.SQLITE_CANTOPEN: true,
}

// refusedCodes are the result codes of data the database refuses for
// good, whatever the attempt (a CHECK of the schema, such as a name longer
// than 255 characters; a value over SQLite's size limit; a value of the
// wrong type): saga.ErrRefused, as PostgreSQL's data exceptions.
var refusedCodes = map[int]bool{
	sqlite3.SQLITE_CONSTRAINT_CHECK:    true,
	sqlite3.SQLITE_CONSTRAINT_NOTNULL:  true,
	sqlite3.SQLITE_TOOBIG:              true,
	sqlite3.SQLITE_MISMATCH:            true,
	sqlite3.SQLITE_CONSTRAINT_DATATYPE: true,
}

// errorCode returns the extended result code of a driver error, or 0.
func errorCode(err error) int {
	var se *msqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// interpretError turns a driver error into the error a store method
// returns, wrapped with what the method was doing. It is the one place
// where driver errors become domain errors. Errors it made already (they
// wrap a saga sentinel) pass through.
func interpretError(doing string, err error) error {
	code := errorCode(err)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%s: %w", doing, saga.ErrNotFound)
	case errors.Is(err, saga.ErrUnavailable), errors.Is(err, saga.ErrNotFound), errors.Is(err, saga.ErrLeaseLost),
		errors.Is(err, saga.ErrInvalidTransition), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", doing, err)
	case code == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%s: a compensation names a step index the saga does not have: %w", doing, err)
	case unavailableCodes[code&0xff]:
		return fmt.Errorf("%s: %w: %w", doing, saga.ErrUnavailable, err)
	case refusedCodes[code]:
		return fmt.Errorf("%s: %w: %w", doing, saga.ErrRefused, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}
