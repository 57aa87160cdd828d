package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrationState is one migration and whether the database has it.
type MigrationState struct {
	Version   int64
	Name      string // file name, e.g. 00001_init.sql
	Applied   bool
	AppliedAt time.Time // zero when not applied
}

// migrate applies the embedded migrations that db lacks (goose, each in a
// transaction) and returns the schema version it then has. The file lock
// Open holds makes it the only process migrating the file.
func migrate(ctx context.Context, db *sql.DB, logger *slog.Logger) (int64, error) {
	provider, err := newProvider(db, logger)
	if err != nil {
		return 0, err
	}
	results, err := provider.Up(ctx)
	for _, r := range results {
		if r.Error != nil {
			continue
		}
		logger.Info("migration applied", "version", r.Source.Version,
			"file", path.Base(r.Source.Path), "duration_ms", r.Duration.Milliseconds())
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
// whether the database file has it, without changing the file
// (the migrate status command). It takes the file's lock, so it fails,
// wrapping ErrLocked, while a service runs on it.
func MigrationStatus(ctx context.Context, file string) ([]MigrationState, error) {
	cfg, err := Config{Path: file}.check()
	if err != nil {
		return nil, err
	}
	lock, err := acquireLock(cfg.Path, "migrate status")
	if err != nil {
		return nil, err
	}
	defer lock.release()
	db, err := openDB(cfg.Path, cfg.BusyTimeout, false)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	provider, err := newProvider(db, orDiscard(nil))
	if err != nil {
		return nil, err
	}
	statuses, err := provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read migration status of %s: %w", cfg.Path, err)
	}
	out := make([]MigrationState, 0, len(statuses))
	for _, st := range statuses {
		out = append(out, MigrationState{
			Version:   st.Source.Version,
			Name:      path.Base(st.Source.Path),
			Applied:   st.State == goose.StateApplied,
			AppliedAt: st.AppliedAt,
		})
	}
	return out, nil
}

// newProvider returns a goose provider of the embedded migrations on db,
// logging to logger.
func newProvider(db *sql.DB, logger *slog.Logger) (*goose.Provider, error) {
	migrations, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("open embedded migrations: %w", err)
	}
	provider, err := goose.NewProvider(goose.DialectSQLite3, db, migrations,
		goose.WithSlog(logger.With("component", "migrate")))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return provider, nil
}
