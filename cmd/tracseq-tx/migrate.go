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
)

// migrationJSON is one line of `migrate status --json`.
type migrationJSON struct {
	Version   int64      `json:"version"`
	Name      string     `json:"name"`
	Applied   bool       `json:"applied"`
	AppliedAt *time.Time `json:"applied_at"`
}

// runMigrate applies the migrations (`migrate` or `migrate up`) or lists
// them (`migrate status`) on DATABASE_URL. The service applies them at
// start-up too, through the same function.
func (m *Main) runMigrate(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tracseq-tx migrate [up|status] [--json]\n\n"+
			"up (the default) applies the pending migrations to DATABASE_URL under an advisory lock;\n"+
			"status lists every migration and whether it is applied.")
		fs.PrintDefaults()
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
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
		v, err := postgres.Migrate(ctx, store.Pool(), logger)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if *asJSON {
			return writeJSON(stdout, map[string]int64{"version": v})
		}
		fmt.Fprintf(stdout, "database schema at version %d\n", v)
		return nil
	}

	states, err := postgres.MigrationStatus(ctx, store.Pool())
	if err != nil {
		return fmt.Errorf("migration status: %w", err)
	}
	if *asJSON {
		out := make([]migrationJSON, 0, len(states))
		for _, s := range states {
			j := migrationJSON{Version: s.Version, Name: s.Name, Applied: s.Applied}
			if s.Applied && !s.AppliedAt.IsZero() {
				t := s.AppliedAt.UTC()
				j.AppliedAt = &t
			}
			out = append(out, j)
		}
		return writeJSON(stdout, map[string]any{"migrations": out})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED\tAPPLIED AT")
	for _, s := range states {
		applied, at := "no", "-"
		if s.Applied {
			applied = "yes"
			if !s.AppliedAt.IsZero() {
				at = s.AppliedAt.UTC().Format(time.RFC3339)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", s.Version, s.Name, applied, at)
	}
	return tw.Flush()
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
