package sqlite

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Defaults of Config.
const (
	// BusyTimeoutDefault is how long a statement waits for a lock another
	// connection holds (a checkpoint, a migration) before it fails.
	BusyTimeoutDefault = 10 * time.Second
	SlowQueryDefault   = 200 * time.Millisecond
	MaxBatchDefault    = 128
	// ReadConnsMax bounds the default number of reader connections.
	ReadConnsMax = 8
	// FileDefault is the database file of the default DATABASE_URL,
	// sqlite://tracseq.db.
	FileDefault = "tracseq.db"
	// Scheme is the URL scheme of SQLite databases: sqlite:///abs/path.db
	// or sqlite://relative/path.db.
	Scheme = "sqlite"
)

// Config configures Open. The zero value of each field but Path means its
// default.
type Config struct {
	// Path is the database file. A relative path is taken from the working
	// directory. Missing parent directories are created.
	Path string
	// InstanceID names the process holding the file, in the lock file and
	// in the error of a second process that finds the file taken.
	InstanceID string
	// ReadConns is the number of reader connections (reads run in
	// parallel, beside the one writer); default GOMAXPROCS, between 2 and
	// ReadConnsMax.
	ReadConns int
	// BusyTimeout, default BusyTimeoutDefault.
	BusyTimeout time.Duration
	// SlowQuery, default 200ms: a warning is logged per slower operation
	// (DB_SLOW_QUERY_MS).
	SlowQuery time.Duration
	// MaxBatch is the most writes group-committed in one transaction,
	// default 128.
	MaxBatch int
	Logger   *slog.Logger // default: discard

	// Observe, when set, is called after every store operation with its
	// name ("create_saga", "apply", "claim", ...; "group_commit" for each
	// group-committed transaction), its duration and its error. It feeds
	// metrics; it must be fast and safe for concurrent use.
	Observe func(op string, d time.Duration, err error)
	// Chain hashes the audit events (AUDIT_HMAC_KEY; default: plain
	// SHA-256).
	Chain *saga.Chain

	// Sealer, when set (DEFINITION_ENCRYPTION_KEY), encrypts the values of
	// the definitions' secret headers in the file, and decrypts them when
	// sagas are read. Without it they are stored as they are, and a
	// definition stored sealed cannot be read (saga.ErrSealed).
	Sealer *saga.Sealer
}

// check validates c and applies the defaults. Errors name the field.
func (c Config) check() (Config, error) {
	switch {
	case strings.TrimSpace(c.Path) == "":
		return c, errors.New("sqlite: no database file given")
	case c.ReadConns < 0:
		return c, fmt.Errorf("sqlite: ReadConns must not be negative (got %d)", c.ReadConns)
	case c.BusyTimeout < 0:
		return c, fmt.Errorf("sqlite: BusyTimeout must not be negative (got %v)", c.BusyTimeout)
	case c.SlowQuery < 0:
		return c, fmt.Errorf("DB_SLOW_QUERY_MS must not be negative (got %v)", c.SlowQuery)
	case c.MaxBatch < 0:
		return c, fmt.Errorf("sqlite: MaxBatch must not be negative (got %d)", c.MaxBatch)
	}
	abs, err := filepath.Abs(c.Path)
	if err != nil {
		return c, fmt.Errorf("sqlite: database file %q: %w", c.Path, err)
	}
	c.Path = abs
	if c.ReadConns == 0 {
		c.ReadConns = min(max(runtime.GOMAXPROCS(0), 2), ReadConnsMax)
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = BusyTimeoutDefault
	}
	if c.SlowQuery == 0 {
		c.SlowQuery = SlowQueryDefault
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = MaxBatchDefault
	}
	return c, nil
}

// IsURL reports whether raw is a SQLite database URL (its scheme is
// sqlite), well formed or not.
func IsURL(raw string) bool {
	scheme, _, ok := strings.Cut(raw, "://")
	return ok && strings.EqualFold(scheme, Scheme)
}

// ParseURL returns the database file a SQLite URL names:
// sqlite:///absolute/path.db is an absolute path, sqlite://relative/path.db
// (and sqlite://tracseq.db) one relative to the working directory. Percent
// escapes are decoded. The URL takes no user, port, query or fragment. The
// error says what is wrong with the URL without quoting more than its path.
func ParseURL(raw string) (string, error) {
	if !IsURL(raw) {
		return "", fmt.Errorf("%q is not a sqlite:// URL", raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("not a valid sqlite:// URL: %w", err)
	}
	switch {
	case u.User != nil:
		return "", errors.New("a sqlite:// URL takes no user or password")
	case u.Port() != "":
		return "", errors.New("a sqlite:// URL takes no port")
	case u.RawQuery != "" || u.ForceQuery:
		return "", errors.New("a sqlite:// URL takes no parameters (?...): the store sets WAL, synchronous=FULL and its busy timeout itself")
	case u.Fragment != "":
		return "", errors.New("a sqlite:// URL takes no fragment (#...)")
	}
	// sqlite://rel/path.db parses as host "rel", path "/path.db".
	path := u.Host + u.Path
	if path == "" || strings.HasSuffix(path, "/") {
		return "", errors.New("a sqlite:// URL must name a file: sqlite:///absolute/path.db or sqlite://relative/path.db")
	}
	return filepath.FromSlash(path), nil
}

// URL returns the sqlite:// URL of a file path: sqlite:///abs/path.db for
// an absolute path, sqlite://rel/path.db for a relative one.
func URL(path string) string {
	p := filepath.ToSlash(path)
	if filepath.IsAbs(path) && !strings.HasPrefix(p, "/") {
		p = "/" + p // a Windows drive letter
	}
	return Scheme + "://" + (&url.URL{Path: p}).EscapedPath()
}

func orDiscard(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}
