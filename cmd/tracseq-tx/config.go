package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5/pgxpool"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/sqlite"
)

// Defaults of the environment variables. DESIGN.md and the specification
// fix most of them; README.md lists them all.
const (
	// DatabaseURLDefault is the store when DATABASE_URL is unset: a SQLite
	// file in the working directory (or TRACSEQ_DATA_DIR), so that the
	// first command of the README is durable with nothing installed.
	DatabaseURLDefault         = "sqlite://" + sqlite.FileDefault
	DBMaxConnectionsDefault    = 20
	DBMinConnectionsDefault    = 5
	DBCommitWritersDefault     = postgres.WritersDefault
	DBCommitMaxBatchDefault    = postgres.MaxBatchDefault
	DBConnectionTimeoutDefault = 30 * time.Second
	PersistenceDefault         = true
	CleanupAfterDefault        = 24 * time.Hour
	HTTPAddrDefault            = ":8080"
	LogLevelDefault            = slog.LevelInfo
	LogFormatDefault           = "text"
	LeaseDurationDefault       = 15 * time.Second
	MaxConcurrentSagasDefault  = 1000
	SlowQueryDefault           = 200 * time.Millisecond
	MaxConnsPerHostDefault     = 256
	DBReadMaxLagDefault        = time.Second
	// ClaimPollDefault is the claim loop's safety-net poll while the
	// instance LISTENs for runnable work (PostgreSQL); without it (memory)
	// the engine's 1 s applies.
	ClaimPollDefault = 5 * time.Second
	// ClaimPollUnlistenedDefault is the poll with DB_LISTEN=false.
	ClaimPollUnlistenedDefault = time.Second
	OutageModeDefault          = OutageFallback
	GaugeTTLDefault            = 5 * time.Second
)

// DB_OUTAGE_MODE values: what the service does with new sagas while the
// database stops answering after start-up.
const (
	// OutageFallback accepts them in memory ("durable": false), runs them,
	// and moves them to the database when it answers again.
	OutageFallback = "fallback"
	// OutageReject refuses them with 503 and Retry-After.
	OutageReject = "reject"
)

// Upper bounds that catch typos (an extra zero or two) rather than limit
// real deployments.
const (
	maxDBConnections     = 10_000
	maxCommitBatch       = 10_000
	maxConnectTimeoutSec = 3600
	maxCleanupHours      = 24 * 365 * 10
	maxLeaseSeconds      = 3600
	maxConcurrentSagas   = 1_000_000
	maxSlowQueryMs       = 3_600_000
	maxConnsPerHost      = 100_000
	maxInstanceIDLength  = 200
	minAuditKeyLength    = 16
	maxReadLagMs         = 3_600_000
	maxClaimPollSeconds  = 3600
	maxGaugeTTLMs        = 3_600_000
)

// Config is the service's configuration, read from the environment by
// LoadConfig. Every field has a default.
type Config struct {
	DatabaseURL        string        // DATABASE_URL (PostgreSQL), or the sqlite:// URL of SQLitePath
	SQLitePath         string        // the SQLite file when DATABASE_URL is sqlite:// or unset; empty for PostgreSQL
	DataDir            string        // TRACSEQ_DATA_DIR: where the default SQLite file is; default the working directory
	DatabaseDirectURL  string        // DATABASE_DIRECT_URL; empty: DATABASE_URL
	DatabaseReadURLs   []string      // DATABASE_READ_URL (comma-separated); empty: reads go to DATABASE_URL
	DBReadMaxLag       time.Duration // DB_READ_MAX_LAG_MS
	DBPooler           string        // DB_POOLER: "" or pgbouncer
	DBMaxConns         int32         // DB_MAX_CONNECTIONS
	DBMinConns         int32         // DB_MIN_CONNECTIONS
	DBCommitWriters    int           // DB_COMMIT_WRITERS
	DBCommitMaxBatch   int           // DB_COMMIT_MAX_BATCH
	DBConnectTimeout   time.Duration // DB_CONNECTION_TIMEOUT_SECONDS
	Persistence        bool          // ENABLE_PERSISTENCE
	CleanupAfter       time.Duration // CLEANUP_AFTER_HOURS (Completed, and the default of the three below)
	CleanupCompensated time.Duration // CLEANUP_COMPENSATED_AFTER_HOURS
	CleanupCancelled   time.Duration // CLEANUP_CANCELLED_AFTER_HOURS
	CleanupTimedOut    time.Duration // CLEANUP_TIMED_OUT_AFTER_HOURS
	ClaimPoll          time.Duration // CLAIM_POLL_SECONDS; 0: by mode (claimPoll)
	Listen             bool          // DB_LISTEN: LISTEN for runnable work (PostgreSQL)
	HTTPAddr           string        // HTTP_ADDR
	LogLevel           slog.Level    // LOG_LEVEL
	LogFormat          string        // LOG_FORMAT: text or json
	APITokens          []string      // API_TOKENS ("name:secret" or "secret"); empty: the API is open
	InstanceID         string        // INSTANCE_ID
	LeaseDuration      time.Duration // LEASE_SECONDS
	MaxConcurrentSagas int           // MAX_CONCURRENT_SAGAS
	AllowedHosts       []string      // PARTICIPANT_ALLOWED_HOSTS; empty: any host
	MaxConnsPerHost    int           // PARTICIPANT_MAX_CONNS_PER_HOST
	SlowQuery          time.Duration // DB_SLOW_QUERY_MS
	PprofAddr          string        // PPROF_ADDR; empty: no profiling listener
	AuditKey           []byte        // AUDIT_HMAC_KEY; empty: the audit chain is plain SHA-256
	// DefinitionKeys (DEFINITION_ENCRYPTION_KEY, newest first) encrypt the
	// secret header values of definitions at rest; empty: not encrypted.
	DefinitionKeys [][]byte
	OutageMode     string        // DB_OUTAGE_MODE: OutageFallback or OutageReject
	GaugeTTL       time.Duration // METRICS_GAUGE_TTL_MS
	Tracing        TracingConfig // OTEL_* (see tracing.go)
}

// LoadConfig reads the configuration from env (os.Getenv in production).
// Unset or empty variables take their defaults. Every bad value is reported,
// each naming the variable and the value, joined in one error; the service
// must not start with any of them.
func LoadConfig(env func(string) string) (Config, error) {
	p := envParser{env: env}
	dataDir, _ := p.value("TRACSEQ_DATA_DIR")
	dbURL, sqlitePath := p.databaseURL("DATABASE_URL", dataDir)
	cfg := Config{
		DatabaseURL:        dbURL,
		SQLitePath:         sqlitePath,
		DataDir:            dataDir,
		DatabaseDirectURL:  p.optionalDatabaseURL("DATABASE_DIRECT_URL"),
		DatabaseReadURLs:   p.databaseURLs("DATABASE_READ_URL"),
		DBReadMaxLag:       time.Duration(p.integer("DB_READ_MAX_LAG_MS", int(DBReadMaxLagDefault/time.Millisecond), 1, maxReadLagMs)) * time.Millisecond,
		DBPooler:           p.pooler("DB_POOLER"),
		DBMaxConns:         int32(p.integer("DB_MAX_CONNECTIONS", DBMaxConnectionsDefault, 1, maxDBConnections)),
		DBMinConns:         int32(p.integer("DB_MIN_CONNECTIONS", DBMinConnectionsDefault, 0, maxDBConnections)),
		DBCommitWriters:    p.integer("DB_COMMIT_WRITERS", DBCommitWritersDefault, 1, maxDBConnections),
		DBCommitMaxBatch:   p.integer("DB_COMMIT_MAX_BATCH", DBCommitMaxBatchDefault, 1, maxCommitBatch),
		DBConnectTimeout:   time.Duration(p.integer("DB_CONNECTION_TIMEOUT_SECONDS", int(DBConnectionTimeoutDefault/time.Second), 1, maxConnectTimeoutSec)) * time.Second,
		Persistence:        p.boolean("ENABLE_PERSISTENCE", PersistenceDefault),
		CleanupAfter:       time.Duration(p.integer("CLEANUP_AFTER_HOURS", int(CleanupAfterDefault/time.Hour), 1, maxCleanupHours)) * time.Hour,
		Listen:             p.boolean("DB_LISTEN", true),
		HTTPAddr:           p.address("HTTP_ADDR", HTTPAddrDefault),
		LogLevel:           p.logLevel("LOG_LEVEL"),
		LogFormat:          p.logFormat("LOG_FORMAT"),
		APITokens:          p.tokens("API_TOKENS"),
		InstanceID:         p.instanceID("INSTANCE_ID"),
		LeaseDuration:      time.Duration(p.integer("LEASE_SECONDS", int(LeaseDurationDefault/time.Second), 1, maxLeaseSeconds)) * time.Second,
		MaxConcurrentSagas: p.integer("MAX_CONCURRENT_SAGAS", MaxConcurrentSagasDefault, 1, maxConcurrentSagas),
		AllowedHosts:       p.hosts("PARTICIPANT_ALLOWED_HOSTS"),
		MaxConnsPerHost:    p.integer("PARTICIPANT_MAX_CONNS_PER_HOST", MaxConnsPerHostDefault, 1, maxConnsPerHost),
		SlowQuery:          time.Duration(p.integer("DB_SLOW_QUERY_MS", int(SlowQueryDefault/time.Millisecond), 1, maxSlowQueryMs)) * time.Millisecond,
		PprofAddr:          p.address("PPROF_ADDR", ""),
		AuditKey:           p.secret("AUDIT_HMAC_KEY", minAuditKeyLength),
		DefinitionKeys:     p.keys("DEFINITION_ENCRYPTION_KEY"),
		OutageMode:         p.outageMode("DB_OUTAGE_MODE"),
		GaugeTTL:           time.Duration(p.integer("METRICS_GAUGE_TTL_MS", int(GaugeTTLDefault/time.Millisecond), 1, maxGaugeTTLMs)) * time.Millisecond,
		Tracing:            p.tracing(),
	}
	// Unset, the poll depends on whether the instance listens (see
	// Config.claimPoll).
	cfg.ClaimPoll = time.Duration(p.integer("CLAIM_POLL_SECONDS", 0, 1, maxClaimPollSeconds)) * time.Second
	cfg.CleanupCompensated = p.hours("CLEANUP_COMPENSATED_AFTER_HOURS", cfg.CleanupAfter)
	cfg.CleanupCancelled = p.hours("CLEANUP_CANCELLED_AFTER_HOURS", cfg.CleanupAfter)
	cfg.CleanupTimedOut = p.hours("CLEANUP_TIMED_OUT_AFTER_HOURS", cfg.CleanupAfter)
	if cfg.DBPooler != "" && cfg.DatabaseDirectURL == "" && p.ok("DATABASE_DIRECT_URL") {
		p.fail("DATABASE_DIRECT_URL", "DB_POOLER="+cfg.DBPooler+" needs DATABASE_DIRECT_URL: a connection straight to the primary for LISTEN and the migration lock, which a transaction pooler cannot carry")
	}
	if cfg.DBMinConns > cfg.DBMaxConns && p.ok("DB_MIN_CONNECTIONS") && p.ok("DB_MAX_CONNECTIONS") {
		p.fail("DB_MIN_CONNECTIONS", fmt.Sprintf("DB_MIN_CONNECTIONS=%d must not exceed DB_MAX_CONNECTIONS=%d", cfg.DBMinConns, cfg.DBMaxConns))
	}
	if _, set := p.value("DB_COMMIT_WRITERS"); !set {
		cfg.DBCommitWriters = min(cfg.DBCommitWriters, int(cfg.DBMaxConns)) // a pool of one has one writer
	} else if cfg.DBCommitWriters > int(cfg.DBMaxConns) && p.ok("DB_COMMIT_WRITERS") && p.ok("DB_MAX_CONNECTIONS") {
		p.fail("DB_COMMIT_WRITERS", fmt.Sprintf("DB_COMMIT_WRITERS=%d must not exceed DB_MAX_CONNECTIONS=%d: each writer holds a connection", cfg.DBCommitWriters, cfg.DBMaxConns))
	}
	if cfg.PprofAddr != "" && cfg.PprofAddr == cfg.HTTPAddr && !strings.HasSuffix(cfg.PprofAddr, ":0") {
		p.fail("PPROF_ADDR", fmt.Sprintf("PPROF_ADDR=%q must differ from HTTP_ADDR", cfg.PprofAddr))
	}
	if len(p.errs) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %w", errors.Join(p.errs...))
	}
	return cfg, nil
}

// envParser reads variables and collects one error per bad variable.
type envParser struct {
	env  func(string) string
	errs []error
	bad  map[string]bool
}

// value returns the trimmed value of name and whether it is set.
func (p *envParser) value(name string) (string, bool) {
	v := strings.TrimSpace(p.env(name))
	return v, v != ""
}

// fail records a problem with the variable name.
func (p *envParser) fail(name, msg string) {
	if p.bad == nil {
		p.bad = make(map[string]bool)
	}
	p.bad[name] = true
	p.errs = append(p.errs, errors.New(msg))
}

// failValue records that name holds a bad value, quoting it.
func (p *envParser) failValue(name, value, why string) {
	p.fail(name, fmt.Sprintf("%s=%q: %s", name, value, why))
}

// ok reports whether name was read without a problem.
func (p *envParser) ok(name string) bool { return !p.bad[name] }

func (p *envParser) integer(name string, def, lo, hi int) int {
	v, set := p.value(name)
	if !set {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		kind := "a positive integer"
		if lo == 0 {
			kind = "a non-negative integer"
		}
		p.failValue(name, v, fmt.Sprintf("must be %s (at most %d)", kind, hi))
		return def
	}
	return n
}

func (p *envParser) boolean(name string, def bool) bool {
	v, set := p.value(name)
	if !set {
		return def
	}
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return true
	case "false", "0", "no", "off":
		return false
	}
	p.failValue(name, v, "must be true or false")
	return def
}

func (p *envParser) address(name, def string) string {
	v, set := p.value(name)
	if !set {
		return def
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		p.failValue(name, v, "must be host:port or :port")
		return def
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > math.MaxUint16 {
		p.failValue(name, v, "port must be a number between 0 and 65535")
		return def
	}
	return v
}

// databaseURL reads the store's URL: unset, the SQLite file FileDefault
// in dataDir (the working directory when empty); sqlite://… a SQLite file;
// postgres://, postgresql:// or a keyword/value string PostgreSQL. It
// returns the URL and, for SQLite, the file's path.
func (p *envParser) databaseURL(name, dataDir string) (dbURL, sqlitePath string) {
	v, set := p.value(name)
	if !set {
		path := sqlite.FileDefault
		if dataDir != "" {
			path = filepath.Join(dataDir, path)
		}
		return sqlite.URL(path), path
	}
	if sqlite.IsURL(v) {
		path, err := sqlite.ParseURL(v)
		if err != nil {
			p.fail(name, fmt.Sprintf("%s: %v", name, err))
			return "", ""
		}
		return v, path
	}
	if scheme, _, ok := strings.Cut(v, "://"); ok && !strings.EqualFold(scheme, "postgres") && !strings.EqualFold(scheme, "postgresql") {
		p.fail(name, fmt.Sprintf("%s: unknown scheme %q (want postgres://, postgresql:// or sqlite://)", name, scheme))
		return "", ""
	}
	if _, err := pgxpool.ParseConfig(v); err != nil {
		// pgx quotes the value with its password masked; never echo it raw.
		p.fail(name, fmt.Sprintf("%s: not a PostgreSQL connection string: %v", name, err))
		return "", ""
	}
	return v, ""
}

// claimPoll is the claim loop's safety-net poll: CLAIM_POLL_SECONDS when
// set, else ClaimPollDefault while the instance LISTENs for runnable work,
// and the poll it had before (1 s) when it does not (DB_LISTEN=false, or a
// store without LISTEN): then the poll is how released work and retries
// come due are found.
func (cfg Config) claimPoll(listening bool) time.Duration {
	switch {
	case cfg.ClaimPoll > 0:
		return cfg.ClaimPoll
	case listening:
		return ClaimPollDefault
	}
	return ClaimPollUnlistenedDefault
}

// optionalDatabaseURL reads a PostgreSQL URL without a default.
func (p *envParser) optionalDatabaseURL(name string) string {
	v, set := p.value(name)
	if !set {
		return ""
	}
	if _, err := pgxpool.ParseConfig(v); err != nil {
		// pgx quotes the value with its password masked; never echo it raw.
		p.fail(name, fmt.Sprintf("%s: not a PostgreSQL connection string: %v", name, err))
		return ""
	}
	return v
}

// databaseURLs reads a comma-separated list of PostgreSQL URLs (keyword/value
// strings contain no comma-free form worth supporting here: give URLs).
func (p *envParser) databaseURLs(name string) []string {
	v, _ := p.value(name)
	urls := list(v)
	for i, u := range urls {
		if _, err := pgxpool.ParseConfig(u); err != nil {
			p.fail(name, fmt.Sprintf("%s: item %d is not a PostgreSQL connection URL: %v", name, i+1, err))
			return nil
		}
	}
	return urls
}

func (p *envParser) pooler(name string) string {
	v, set := p.value(name)
	if !set {
		return ""
	}
	switch f := strings.ToLower(v); f {
	case "none":
		return ""
	case "pgbouncer":
		return f
	}
	p.failValue(name, v, "must be none or pgbouncer")
	return ""
}

// hours reads a number of hours; unset takes def.
func (p *envParser) hours(name string, def time.Duration) time.Duration {
	return time.Duration(p.integer(name, int(def/time.Hour), 1, maxCleanupHours)) * time.Hour
}

func (p *envParser) logLevel(name string) slog.Level {
	v, set := p.value(name)
	if !set {
		return LogLevelDefault
	}
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug
	case "info":
		return slog.LevelInfo
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	p.failValue(name, v, "must be one of debug, info, warn, error")
	return LogLevelDefault
}

func (p *envParser) logFormat(name string) string {
	v, set := p.value(name)
	if !set {
		return LogFormatDefault
	}
	switch f := strings.ToLower(v); f {
	case "text", "json":
		return f
	}
	p.failValue(name, v, "must be text or json")
	return LogFormatDefault
}

func (p *envParser) outageMode(name string) string {
	v, set := p.value(name)
	if !set {
		return OutageModeDefault
	}
	switch m := strings.ToLower(v); m {
	case OutageFallback, OutageReject:
		return m
	}
	p.failValue(name, v, "must be fallback or reject")
	return OutageModeDefault
}

// list splits a comma-separated value, dropping empty items.
func list(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (p *envParser) tokens(name string) []string {
	v, _ := p.value(name)
	tokens := list(v)
	names := map[string]int{}
	for i, tok := range tokens {
		if strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
			// Secrets are never echoed.
			p.fail(name, fmt.Sprintf("%s: token %d contains whitespace or a control character (value not shown)", name, i+1))
			return nil
		}
		tokName, _, err := httpapi.ParseToken(tok, i+1)
		if err != nil {
			p.fail(name, fmt.Sprintf("%s: %v", name, err))
			return nil
		}
		if first, dup := names[tokName]; dup {
			p.fail(name, fmt.Sprintf("%s: tokens %d and %d are both named %q", name, first, i+1, tokName))
			return nil
		}
		names[tokName] = i + 1
	}
	return tokens
}

// secret reads a secret of at least minLen bytes; it is never echoed.
func (p *envParser) secret(name string, minLen int) []byte {
	v, set := p.value(name)
	if !set {
		return nil
	}
	if len(v) < minLen {
		p.fail(name, fmt.Sprintf("%s: must be at least %d bytes (value not shown)", name, minLen))
		return nil
	}
	return []byte(v)
}

func (p *envParser) instanceID(name string) string {
	v, set := p.value(name)
	if !set {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "tracseq-tx"
		}
		return fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if len(v) > maxInstanceIDLength || strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		p.failValue(name, v, fmt.Sprintf("must be at most %d printable characters without spaces", maxInstanceIDLength))
		return ""
	}
	return v
}

func (p *envParser) hosts(name string) []string {
	v, _ := p.value(name)
	hosts := list(v)
	for _, h := range hosts {
		if strings.Contains(h, "/") || strings.ContainsAny(h, " \t@") {
			p.failValue(name, v, fmt.Sprintf("%q is not a host name (give host or host:port, not a URL)", h))
			return nil
		}
	}
	return hosts
}

func (p *envParser) keys(name string) [][]byte {
	v, set := p.value(name)
	if !set {
		return nil
	}
	keys, err := saga.ParseSealerKeys(v)
	if err != nil {
		// Secrets are never echoed.
		p.fail(name, fmt.Sprintf("%s (value not shown): %v", name, err))
		return nil
	}
	return keys
}

// sealer returns the Sealer of DefinitionKeys, nil when there are none.
func (cfg Config) sealer() (*saga.Sealer, error) {
	if len(cfg.DefinitionKeys) == 0 {
		return nil, nil
	}
	s, err := saga.NewSealer(cfg.DefinitionKeys...)
	if err != nil {
		return nil, fmt.Errorf("DEFINITION_ENCRYPTION_KEY: %w", err)
	}
	return s, nil
}

// redactURL returns a connection URL fit for logs: user information and
// query values (a password= parameter) hidden. A keyword/value connection
// string is not shown at all.
func redactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.Scheme == "" {
		return "(connection string not shown)"
	}
	return saga.RedactURL(v)
}
