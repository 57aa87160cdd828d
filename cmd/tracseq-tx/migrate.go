package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/sqlite"
)

// migrationJSON is one line of `migrate status --json`.
type migrationJSON struct {
	Version   int64      `json:"version"`
	Name      string     `json:"name"`
	Applied   bool       `json:"applied"`
	AppliedAt *time.Time `json:"applied_at"`
}

// runMigrate applies the migrations (`migrate` or `migrate up`) or lists
// them (`migrate status`) on DATABASE_URL, PostgreSQL or SQLite. The
// service applies them at start-up too, through the same function. With
// --from and --to it moves every saga of a SQLite database to PostgreSQL
// instead (see runMove).
func (m *Main) runMigrate(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	from := fs.String("from", "", "move the sagas of this SQLite database (sqlite://…) …")
	to := fs.String("to", "", "… to this PostgreSQL database (postgres://…), migrating it first")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tracseq-tx migrate [up|status] [--json]\n"+
			"       tracseq-tx migrate --from sqlite://FILE --to postgres://… [--json]\n\n"+
			"up (the default) applies the pending migrations to DATABASE_URL (PostgreSQL under an advisory\n"+
			"lock, SQLite under its file lock); status lists every migration and whether it is applied.\n"+
			"--from/--to moves every saga, with its steps, compensations, checkpoints and events, from a\n"+
			"SQLite file to PostgreSQL, and marks the file as moved. No service may run on the file meanwhile.")
		fs.PrintDefaults()
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
	}
	if *from != "" || *to != "" {
		if *from == "" || *to == "" || len(rest) > 0 {
			fs.Usage()
			return usagef("a move takes --from sqlite://FILE and --to postgres://… and no action")
		}
		cfg, err := LoadConfig(env)
		if err != nil {
			return err
		}
		sealer, err := cfg.sealer()
		if err != nil {
			return err
		}
		return runMove(ctx, *from, *to, *asJSON, sealer, newLogger(cfg, stderr), stdout)
	}
	action := "up"
	switch len(rest) {
	case 0:
	case 1:
		action = rest[0]
	default:
		fs.Usage()
		return usagef("migrate takes one action (up or status), got %q", rest)
	}
	if action != "up" && action != "status" {
		fs.Usage()
		return usagef("unknown migrate action %q (want up or status)", action)
	}

	cfg, err := LoadConfig(env)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	ctx, cancel := context.WithTimeout(ctx, cfg.DBConnectTimeout+5*time.Minute)
	defer cancel()

	var (
		version int64
		states  []migrationJSON
	)
	switch {
	case cfg.SQLitePath != "" && action == "up":
		st, err := sqlite.Open(ctx, sqlite.Config{Path: cfg.SQLitePath, InstanceID: "tracseq-tx migrate", Logger: logger})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", cfg.DatabaseURL, err)
		}
		version = st.MigrationVersion()
		st.Close()
	case cfg.SQLitePath != "":
		list, err := sqlite.MigrationStatus(ctx, cfg.SQLitePath)
		if err != nil {
			return fmt.Errorf("migration status: %w", err)
		}
		for _, s := range list {
			states = append(states, newMigrationJSON(s.Version, s.Name, s.Applied, s.AppliedAt))
		}
	default:
		// Migrations hold a session lock: they go straight to the primary
		// (DATABASE_DIRECT_URL), never through a pooler.
		store, err := postgres.Open(ctx, postgres.Config{
			URL:            cmp.Or(cfg.DatabaseDirectURL, cfg.DatabaseURL),
			MaxConns:       2,
			MinConns:       0,
			ConnectTimeout: cfg.DBConnectTimeout,
			Logger:         logger,
		})
		if err != nil {
			return fmt.Errorf("open database %s: %w", redactURL(cfg.DatabaseURL), err)
		}
		defer store.Close()
		if action == "up" {
			if version, err = postgres.Migrate(ctx, store.Pool(), logger); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			break
		}
		list, err := postgres.MigrationStatus(ctx, store.Pool())
		if err != nil {
			return fmt.Errorf("migration status: %w", err)
		}
		for _, s := range list {
			states = append(states, newMigrationJSON(s.Version, s.Name, s.Applied, s.AppliedAt))
		}
	}

	if action == "up" {
		if *asJSON {
			return writeJSON(stdout, map[string]int64{"version": version})
		}
		fmt.Fprintf(stdout, "database schema at version %d\n", version)
		return nil
	}
	if *asJSON {
		return writeJSON(stdout, map[string]any{"migrations": states})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED\tAPPLIED AT")
	for _, s := range states {
		applied, at := "no", "-"
		if s.Applied {
			applied = "yes"
			if s.AppliedAt != nil {
				at = s.AppliedAt.Format(time.RFC3339)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Version, s.Name, applied, at)
	}
	return tw.Flush()
}

// newMigrationJSON is a migration as the status command shows it.
func newMigrationJSON(version int64, name string, applied bool, at time.Time) migrationJSON {
	j := migrationJSON{Version: version, Name: name, Applied: applied}
	if applied && !at.IsZero() {
		t := at.UTC()
		j.AppliedAt = &t
	}
	return j
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
