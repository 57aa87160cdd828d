package postgres

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
)

// Defaults of Config.
const (
	MaxConnsDefault        int32 = 20
	MinConnsDefault        int32 = 5
	ConnectTimeoutDefault        = 30 * time.Second
	SlowQueryDefault             = 200 * time.Millisecond
	MaxBatchDefault              = 128
	ApplicationNameDefault       = "tracseq-transaction-service"
)

// Config configures Open. The zero value of each field means its default.
type Config struct {
	URL            string        // DATABASE_URL (URL or keyword/value form)
	MaxConns       int32         // DB_MAX_CONNECTIONS, default 20
	MinConns       int32         // DB_MIN_CONNECTIONS, default 5 (at most MaxConns)
	ConnectTimeout time.Duration // DB_CONNECTION_TIMEOUT_SECONDS, default 30s
	SlowQuery      time.Duration // DB_SLOW_QUERY_MS, default 200ms: a warning is logged per slower operation
	Logger         *slog.Logger  // default: discard

	// Observe, when set, is called after every store operation with its
	// name ("create_saga", "apply", "claim", ...; "group_commit" for each
	// group-committed transaction), its duration and its error (nil on
	// success). It feeds metrics; it must be fast and safe for concurrent
	// use.
	Observe func(op string, d time.Duration, err error)

	// MaxBatch is the most writes group-committed in one transaction,
	// default 128.
	MaxBatch int

	// Chain hashes the audit events (AUDIT_HMAC_KEY; default: plain
	// SHA-256).
	Chain *saga.Chain
	// Sealer, when set (DEFINITION_ENCRYPTION_KEY), encrypts the values of
	// the definitions' secret headers in sagas.definition, and decrypts
	// them when sagas are read. Without it they are stored as they are,
	// and a definition stored sealed cannot be read (saga.ErrSealed).
	Sealer *saga.Sealer
}

// poolConfig validates c, applies the defaults and returns the pool
// configuration. Errors name the environment variable at fault.
func (c Config) poolConfig() (*pgxpool.Config, error) {
	if c.URL == "" {
		return nil, errors.New("DATABASE_URL is empty")
	}
	switch {
	case c.MaxConns < 0:
		return nil, fmt.Errorf("DB_MAX_CONNECTIONS must be positive (got %d)", c.MaxConns)
	case c.MinConns < 0:
		return nil, fmt.Errorf("DB_MIN_CONNECTIONS must not be negative (got %d)", c.MinConns)
	case c.ConnectTimeout < 0:
		return nil, fmt.Errorf("DB_CONNECTION_TIMEOUT_SECONDS must not be negative (got %v)", c.ConnectTimeout)
	case c.SlowQuery < 0:
		return nil, fmt.Errorf("DB_SLOW_QUERY_MS must not be negative (got %v)", c.SlowQuery)
	case c.MaxBatch < 0:
		return nil, fmt.Errorf("postgres: MaxBatch must not be negative (got %d)", c.MaxBatch)
	}
	maxConns := cmp.Or(c.MaxConns, MaxConnsDefault)
	minConns := c.MinConns
	if minConns == 0 {
		minConns = min(MinConnsDefault, maxConns)
	}
	if minConns > maxConns {
		return nil, fmt.Errorf("DB_MIN_CONNECTIONS (%d) must not exceed DB_MAX_CONNECTIONS (%d)", minConns, maxConns)
	}
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pc.MaxConns = maxConns
	pc.MinConns = minConns
	pc.ConnConfig.ConnectTimeout = cmp.Or(c.ConnectTimeout, ConnectTimeoutDefault)
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = ApplicationNameDefault
	}
	return pc, nil
}
