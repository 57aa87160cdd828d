package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/sqlite"
)

// movePage is how many sagas a move reads, writes and checks at a time.
const movePage = 100

// moveReport is what `migrate --from --to` did.
type moveReport struct {
	From         string           `json:"from"`
	To           string           `json:"to"`
	Sagas        int              `json:"sagas"`
	InFlight     int              `json:"in_flight"`
	AlreadyThere int              `json:"already_there"`
	Source       saga.TableCounts `json:"source"` // the rows of the SQLite file
	Target       saga.TableCounts `json:"target"` // the rows of the moved sagas in PostgreSQL
}

// runMove moves every saga of the SQLite database from (sqlite://…) to the
// PostgreSQL database to (migrated first): each saga with its steps,
// compensations, checkpoints and events, keeping ids, times, sequence
// numbers and epochs, through the import of the failover path
// (postgres.Store.Import, idempotent by saga id, so an interrupted move is
// run again and continues). Every page of sagas is checked: their rows in
// PostgreSQL must be as many as in SQLite, table by table. Sagas in flight
// are moved with their lease cleared, so that the first instance on
// PostgreSQL claims them at once; that is safe because the move holds the
// file's lock: no instance runs them meanwhile. At the end the file is
// marked as moved, and a service started on it refuses to run, so that no
// saga runs in two places.
func runMove(ctx context.Context, from, to string, asJSON bool, sealer *saga.Sealer, logger *slog.Logger, stdout io.Writer) error {
	path, err := sqlite.ParseURL(from)
	if err != nil {
		return usagef("--from: %v", err)
	}
	if scheme, _, _ := strings.Cut(to, "://"); !strings.EqualFold(scheme, "postgres") && !strings.EqualFold(scheme, "postgresql") {
		return usagef("--to must be a postgres:// or postgresql:// URL")
	}
	rep := moveReport{From: from, To: redactURL(to)}
	src, err := sqlite.Open(ctx, sqlite.Config{Path: path, InstanceID: "tracseq-tx migrate --from", Logger: logger, Sealer: sealer})
	if err != nil {
		return fmt.Errorf("open --from %s: %w", from, err)
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, postgres.Config{URL: to, MaxConns: 4, MinConns: 0, Logger: logger, Sealer: sealer})
	if err != nil {
		return fmt.Errorf("open --to %s: %w", rep.To, err)
	}
	defer dst.Close()
	if _, err := postgres.Migrate(ctx, dst.Pool(), logger); err != nil {
		return fmt.Errorf("migrate --to %s: %w", rep.To, err)
	}
	if rep.Source, err = src.CountRows(ctx); err != nil {
		return err
	}

	err = src.Export(ctx, movePage, func(page []saga.SagaRecord) error {
		ids := make([]saga.ID, len(page))
		var want saga.TableCounts
		for i, r := range page {
			ids[i] = r.Saga.ID
			want.Add(r)
			if !r.Saga.Status.Terminal() {
				rep.InFlight++
				r.Saga.OwnerID, r.Saga.LeaseExpiresAt = "", nil
			}
			existed, err := dst.Import(ctx, r)
			if err != nil {
				return fmt.Errorf("move saga %s: %w", r.Saga.ID, err)
			}
			if existed {
				rep.AlreadyThere++
			}
		}
		got, err := dst.CountRows(ctx, ids)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("the sagas %s to %s have these rows in PostgreSQL: %+v, and in SQLite: %+v "+
				"(a saga of the same id was there before with other rows?)", ids[0], ids[len(ids)-1], got, want)
		}
		rep.Sagas += len(page)
		addCounts(&rep.Target, got)
		logger.Info("sagas moved", "sagas", rep.Sagas, "of", rep.Source.Sagas)
		return nil
	})
	if err != nil {
		return err
	}
	if rep.Target != rep.Source {
		return fmt.Errorf("moved rows %+v differ from the file's %+v", rep.Target, rep.Source)
	}
	if err := src.RecordMove(ctx, rep.To, rep.Sagas); err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, rep)
	}
	fmt.Fprintf(stdout, "moved %d sagas from %s to %s (%d in flight, %d were there already)\n",
		rep.Sagas, rep.From, rep.To, rep.InFlight, rep.AlreadyThere)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rows\tsagas\tsaga_steps\tsaga_compensations\tsaga_checkpoints\tsaga_events\t")
	for _, row := range []struct {
		name string
		c    saga.TableCounts
	}{{"SQLite", rep.Source}, {"PostgreSQL", rep.Target}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", row.name, row.c.Sagas, row.c.Steps, row.c.Compensations, row.c.Checkpoints, row.c.Events)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "the file is marked as moved: a service started on it refuses to run. "+
		"Run the service with DATABASE_URL=%s; sagas in flight continue there.\n", rep.To)
	return nil
}

// addCounts adds b to a.
func addCounts(a *saga.TableCounts, b saga.TableCounts) {
	a.Sagas += b.Sagas
	a.Steps += b.Steps
	a.Compensations += b.Compensations
	a.Checkpoints += b.Checkpoints
	a.Events += b.Events
}
