package postgres

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLockID is the key of the session advisory lock held while
// migrating, so that instances starting at once apply each migration once.
// It is goose's default key: a goose CLI run against the same database
// takes the same lock.
const migrationLockID = lock.DefaultLockID

// MigrationState is one migration and whether the database has it.
type MigrationState struct {
	Version   int64
	Name      string // file name, e.g. 00001_init.sql
	Applied   bool
	AppliedAt time.Time // zero when not applied
}

// Migrate applies the embedded migrations that the database lacks and
// returns the schema version it then has. It holds a PostgreSQL session
// advisory lock while it works, so that processes starting at the same time
// on one database apply each migration exactly once; the others wait for
// the lock and then find nothing to do. Start-up and the migrate command
// call it.
func Migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) (int64, error) {
	logger = orDiscard(logger)
	provider, db, err := newProvider(pool, logger)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	results, err := provider.Up(ctx)
	for _, r := range results {
		if r.Error != nil {
			continue
		}
		logger.Info("migration applied", "version", r.Source.Version,
			"file", baseName(r.Source.Path), "duration_ms", r.Duration.Milliseconds())
	}
	if err != nil {
		return 0, fmt.Errorf("apply migrations: %w", err)
	}
	version, err := provider.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return version, nil
}

// MigrationStatus lists every embedded migration, oldest first, with
// whether the database has it (the migrate status command).
func MigrationStatus(ctx context.Context, pool *pgxpool.Pool) ([]MigrationState, error) {
	provider, db, err := newProvider(pool, orDiscard(nil))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	statuses, err := provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read migration status: %w", err)
	}
	out := make([]MigrationState, 0, len(statuses))
	for _, st := range statuses {
		out = append(out, MigrationState{
			Version:   st.Source.Version,
			Name:      baseName(st.Source.Path),
			Applied:   st.State == goose.StateApplied,
			AppliedAt: st.AppliedAt,
		})
	}
	return out, nil
}

// MigrationVersion returns the schema version of the database: the newest
// applied migration, or 0 when none is (not even the version table exists).
func MigrationVersion(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var exists bool
	if err := pool.QueryRow(ctx, sqlVersionTableExists).Scan(&exists); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var version int64
	if err := pool.QueryRow(ctx, sqlMigrationVersion).Scan(&version); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return version, nil
}

// Queries of goose's version table (goose_db_version, goose's default).
const (
	sqlVersionTableExists = `SELECT to_regclass('goose_db_version') IS NOT NULL`
	// The newest version goose applied. goose records a down migration by
	// deleting the version's row, so the maximum is the current version.
	sqlMigrationVersion = `SELECT coalesce(max(version_id), 0) FROM goose_db_version`
)

// newProvider returns a goose provider on a database/sql handle sharing the
// pool's connections, logging to logger (not nil). The caller closes the
// handle, which leaves the pool open.
func newProvider(pool *pgxpool.Pool, logger *slog.Logger) (*goose.Provider, *sql.DB, error) {
	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(migrationLockID),
		// Poll for the lock every second for up to ten minutes: another
		// instance may be running a long migration.
		lock.WithLockTimeout(1, 600),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("create migration lock: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations,
		goose.WithSessionLocker(locker),
		goose.WithSlog(logger.With("component", "migrate")))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("load migrations: %w", err)
	}
	return provider, db, nil
}

func baseName(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[i+1:]
		}
	}
	return path
}

func orDiscard(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}
