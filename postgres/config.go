package postgres

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
)

// Defaults of Config.
const (
	MaxConnsDefault int32 = 20
	// MinConnsDefault is the default of DB_MIN_CONNECTIONS, applied by the
	// service's configuration; Config.MinConns itself takes 0 as "none".
	MinConnsDefault       int32 = 5
	ConnectTimeoutDefault       = 30 * time.Second
	SlowQueryDefault            = 200 * time.Millisecond
	MaxBatchDefault             = 128
	// WritersDefault is DB_COMMIT_WRITERS: group-committed transactions
	// in flight at once, so that one batch is gathered and sent while
	// another commits.
	WritersDefault         = 2
	ApplicationNameDefault = "tracseq-transaction-service"
	// ReadMaxLagDefault is DB_READ_MAX_LAG_MS: a replica further behind is
	// not read from.
	ReadMaxLagDefault = time.Second
)

// Poolers Config.Pooler names.
const (
	PoolerNone      = ""          // connections go straight to PostgreSQL
	PoolerPgBouncer = "pgbouncer" // a transaction-pooling PgBouncer (or alike) sits in between
)

// Config configures Open. The zero value of each field means its default.
type Config struct {
	URL      string // DATABASE_URL (URL or keyword/value form)
	MaxConns int32  // DB_MAX_CONNECTIONS, default 20
	// MinConns is DB_MIN_CONNECTIONS: connections kept open when idle, at
	// most MaxConns. 0 keeps none (the service's own default is 5,
	// MinConnsDefault).
	MinConns       int32
	ConnectTimeout time.Duration // DB_CONNECTION_TIMEOUT_SECONDS, default 30s
	SlowQuery      time.Duration // DB_SLOW_QUERY_MS, default 200ms: a warning is logged per slower operation
	Logger         *slog.Logger  // default: discard

	// InstanceID, when set, is appended to the connections'
	// application_name (unless the URL sets one), so that
	// pg_stat_activity tells the instances apart and CheckPoolSizing can
	// count them.
	InstanceID string

	// Pooler is DB_POOLER: PoolerPgBouncer when URL leads to a PgBouncer
	// in transaction pooling mode. Statements are then sent without named
	// prepared statements, which would outlive the transaction whose
	// server connection they were prepared on: pgx's
	// QueryExecModeCacheDescribe parses every query as the unnamed
	// statement, bound and executed in the same round trip, with the
	// parameter and result types it learnt once per query (so JSON and
	// UUID arguments keep their binary encodings). No session state is
	// relied on (SET LOCAL only, inside transactions). LISTEN and the
	// migrations' advisory lock need a session: see DirectURL.
	Pooler string

	// DirectURL is DATABASE_DIRECT_URL: a connection straight to the
	// primary, for what needs a session (LISTEN, the migration lock).
	// Default: URL.
	DirectURL string

	// ReadURLs is DATABASE_READ_URL: streaming replicas that reads marked
	// with saga.WithReplicaRead may be served from. Empty: every read goes
	// to URL.
	ReadURLs []string
	// ReadMaxLag is DB_READ_MAX_LAG_MS, default 1 s: a replica further
	// behind the primary, or not answering, is skipped.
	ReadMaxLag time.Duration

	// Observe, when set, is called after every store operation with its
	// name ("create_saga", "apply", "claim", ...; "group_commit" for each
	// group-committed transaction), its duration and its error (nil on
	// success). It feeds metrics; it must be fast and safe for concurrent
	// use.
	Observe func(op string, d time.Duration, err error)

	// MaxBatch is DB_COMMIT_MAX_BATCH: the most writes group-committed in
	// one transaction, default 128.
	MaxBatch int
	// Writers is DB_COMMIT_WRITERS: the most group-committed transactions
	// in flight at once, each on its own connection; at most MaxConns.
	// Default WritersDefault (or MaxConns, when smaller).
	Writers int

	// Chain hashes the audit events (AUDIT_HMAC_KEY; default: plain
	// SHA-256).
	Chain *saga.Chain
	// Sealer, when set (DEFINITION_ENCRYPTION_KEY), encrypts the values of
	// the definitions' secret headers in sagas.definition, and decrypts
	// them when sagas are read. Without it they are stored as they are,
	// and a definition stored sealed cannot be read (saga.ErrSealed).
	Sealer *saga.Sealer
}

// validate checks the fields that do not depend on a URL. Errors name the
// environment variable at fault.
func (c Config) validate() error {
	switch {
	case c.URL == "":
		return errors.New("DATABASE_URL is empty")
	case c.MaxConns < 0:
		return fmt.Errorf("DB_MAX_CONNECTIONS must be positive (got %d)", c.MaxConns)
	case c.MinConns < 0:
		return fmt.Errorf("DB_MIN_CONNECTIONS must not be negative (got %d)", c.MinConns)
	case c.MinConns > cmp.Or(c.MaxConns, MaxConnsDefault):
		return fmt.Errorf("DB_MIN_CONNECTIONS (%d) must not exceed DB_MAX_CONNECTIONS (%d)", c.MinConns, cmp.Or(c.MaxConns, MaxConnsDefault))
	case c.ConnectTimeout < 0:
		return fmt.Errorf("DB_CONNECTION_TIMEOUT_SECONDS must not be negative (got %v)", c.ConnectTimeout)
	case c.SlowQuery < 0:
		return fmt.Errorf("DB_SLOW_QUERY_MS must not be negative (got %v)", c.SlowQuery)
	case c.MaxBatch < 0:
		return fmt.Errorf("DB_COMMIT_MAX_BATCH must not be negative (got %d)", c.MaxBatch)
	case c.Writers < 0:
		return fmt.Errorf("DB_COMMIT_WRITERS must not be negative (got %d)", c.Writers)
	case c.Writers > int(cmp.Or(c.MaxConns, MaxConnsDefault)):
		return fmt.Errorf("DB_COMMIT_WRITERS (%d) must not exceed DB_MAX_CONNECTIONS (%d): each writer holds a connection", c.Writers, cmp.Or(c.MaxConns, MaxConnsDefault))
	case c.ReadMaxLag < 0:
		return fmt.Errorf("DB_READ_MAX_LAG_MS must not be negative (got %v)", c.ReadMaxLag)
	case c.Pooler != PoolerNone && c.Pooler != PoolerPgBouncer:
		return fmt.Errorf("DB_POOLER must be empty or %q (got %q)", PoolerPgBouncer, c.Pooler)
	}
	return nil
}

// poolConfig validates c, applies the defaults and returns the
// configuration of the primary's pool. Errors name the environment
// variable at fault.
func (c Config) poolConfig() (*pgxpool.Config, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c.poolConfigFor("DATABASE_URL", c.URL, cmp.Or(c.MaxConns, MaxConnsDefault), c.MinConns)
}

// poolConfigFor parses one connection string (named by its variable) and
// applies the pool settings and the pooler's exec mode.
func (c Config) poolConfigFor(variable, url string, maxConns, minConns int32) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", variable, err)
	}
	pc.MaxConns = maxConns
	pc.MinConns = minConns
	pc.ConnConfig.ConnectTimeout = cmp.Or(c.ConnectTimeout, ConnectTimeoutDefault)
	if _, ok := pc.ConnConfig.RuntimeParams["application_name"]; !ok {
		pc.ConnConfig.RuntimeParams["application_name"] = applicationNameFor(c.InstanceID)
	}
	if c.Pooler == PoolerPgBouncer {
		pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
		pc.ConnConfig.StatementCacheCapacity = 0
	}
	return pc, nil
}

// directConnConfig is the configuration of a session connection to the
// primary (DATABASE_DIRECT_URL, else DATABASE_URL).
func (c Config) directConnConfig() (*pgx.ConnConfig, error) {
	variable, url := "DATABASE_DIRECT_URL", c.DirectURL
	if url == "" {
		variable, url = "DATABASE_URL", c.URL
	}
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", variable, err)
	}
	cc.ConnectTimeout = cmp.Or(c.ConnectTimeout, ConnectTimeoutDefault)
	if _, ok := cc.RuntimeParams["application_name"]; !ok {
		cc.RuntimeParams["application_name"] = applicationNameFor(c.InstanceID)
	}
	return cc, nil
}
