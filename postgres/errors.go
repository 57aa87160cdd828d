package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	saga "github.com/tracseq/transaction-service"
)

// Retries of transient errors: a few attempts with exponential backoff and
// jitter, bounded by the caller's context.
const (
	retryAttempts = 5
	retryBackoff  = 25 * time.Millisecond
	retryMaxWait  = time.Second
)

// PostgreSQL error codes the store acts on.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeNotNullViolation    = "23502"

	// Constraints named in errors.
	constraintIdempotencyKey   = "sagas_idempotency_key_key"
	constraintCompensationStep = "saga_compensations_saga_id_step_index_fkey"
)

// transientCodes are the SQLSTATEs after which the same statement may
// succeed: serialization failure, deadlock, the server shutting down or
// refusing connections for now. Class 08 (connection exception) is handled
// by prefix.
var transientCodes = map[string]bool{
	"40001": true, // serialization_failure
	"40P01": true, // deadlock_detected
	"57P01": true, // admin_shutdown (also pg_terminate_backend)
	"57P02": true, // crash_shutdown
	"57P03": true, // cannot_connect_now
	"53300": true, // too_many_connections
}

// accessRefused reports whether err is a database answering that it will
// not let us in: SQLSTATE class 28 (invalid authorization: 28P01 wrong
// password, 28000 unknown role or not allowed by pg_hba.conf) or 3D000
// (unknown database).
func accessRefused(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "28") || pgErr.Code == "3D000")
}

// isTransient reports whether err is worth retrying: a lost or refused
// connection, or a database error that says "try again".
func isTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return transientCodes[pgErr.Code] || strings.HasPrefix(pgErr.Code, "08")
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

// interpretError turns a driver error into the error a store method
// returns, wrapped with what the method was doing. It is the one place
// where driver errors become domain errors.
func interpretError(doing string, err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%s: %w", doing, saga.ErrNotFound)
	case errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolation && pgErr.ConstraintName == constraintIdempotencyKey:
		return fmt.Errorf("%s: another saga holds its idempotency key: %w", doing, err)
	case errors.As(err, &pgErr) && pgErr.Code == codeForeignKeyViolation && pgErr.ConstraintName == constraintCompensationStep:
		return fmt.Errorf("%s: a compensation names a step index the saga does not have: %w", doing, err)
	case errors.As(err, &pgErr) && pgErr.Code == codeNotNullViolation && pgErr.TableName == "saga_steps" && pgErr.ColumnName == "step_name":
		return fmt.Errorf("%s: a step update names a step index the saga does not have: %w", doing, err)
	case isTransient(err):
		return fmt.Errorf("%s: %w: %w", doing, saga.ErrUnavailable, err)
	case errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "54")):
		// Data exception (a NUL in text, invalid UTF-8, a number out of
		// range) or a program limit (a value too large): the same data
		// will be refused again.
		return fmt.Errorf("%s: %w: %w", doing, saga.ErrRefused, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// retry runs fn until it succeeds, fails for a reason that is not
// transient, ctx ends, or retryAttempts attempts failed.
func retry(ctx context.Context, fn func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || !isTransient(err) || attempt >= retryAttempts {
			return err
		}
		if werr := backoff(ctx, attempt); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

// backoff waits before retry number attempt, or until ctx ends.
func backoff(ctx context.Context, attempt int) error {
	wait := min(retryBackoff<<(attempt-1), retryMaxWait)
	wait = wait/2 + rand.N(wait/2+1) // jitter: [wait/2, wait]
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
