package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/sqlite"
)

// The audit commands read the database of DATABASE_URL directly (like
// migrate), not through a running service: an inspector checks what is
// stored, with the key of AUDIT_HMAC_KEY when the service has one. A
// SQLite file is held by one process at a time: stop the service first
// (or read one saga's trail through the API, GET /api/v1/sagas/{id}/audit).

// auditStore is what the audit commands need of a store.
type auditStore interface {
	saga.Store
	saga.AuditStore
}

// openAuditStore opens the store of DATABASE_URL for reading the audit
// trail, with the chain of AUDIT_HMAC_KEY.
func openAuditStore(ctx context.Context, env func(string) string, stderr io.Writer) (auditStore, *saga.Chain, error) {
	cfg, err := LoadConfig(env)
	if err != nil {
		return nil, nil, err
	}
	chain := saga.NewChain(cfg.AuditKey)
	logger := newLogger(Config{LogLevel: slog.LevelWarn, LogFormat: cfg.LogFormat}, stderr)
	if cfg.SQLitePath != "" {
		st, err := sqlite.Open(ctx, sqlite.Config{Path: cfg.SQLitePath, InstanceID: "tracseq-tx audit", Logger: logger, Chain: chain})
		if err != nil {
			return nil, nil, fmt.Errorf("open DATABASE_URL %s: %w", cfg.DatabaseURL, err)
		}
		return st, chain, nil
	}
	pg, err := postgres.Open(ctx, postgres.Config{
		URL:            cfg.DatabaseURL,
		MaxConns:       2,
		MinConns:       0,
		ConnectTimeout: cfg.DBConnectTimeout,
		Logger:         logger,
		Chain:          chain,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("open database %s: %w", redactURL(cfg.DatabaseURL), err)
	}
	return pg, chain, nil
}

// runAudit dispatches `audit verify|replay|export|deletions`.
func (m *Main) runAudit(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	usage := func() {
		fmt.Fprintln(stderr, `Usage: tracseq-tx audit verify [--saga ID] [--since T] [--json]
       tracseq-tx audit replay ID [--json]
       tracseq-tx audit export --from T [--to T] [--format csv|json] [--output FILE]
       tracseq-tx audit deletions [--from T] [--to T] [--json]

They read the database of DATABASE_URL (with AUDIT_HMAC_KEY when set).
verify checks the hash chain of every saga (exit status 1 if one is broken);
replay rebuilds a saga from its events alone and shows how it differs from
the stored one (exit status 1 if it does); export writes the events of a time
range with their hashes; deletions lists the tombstones of deleted sagas.
Times are RFC 3339 or a duration meaning that long ago (24h).`)
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		usage()
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return nil
		}
		return usagef("audit needs a subcommand: verify, replay, export or deletions")
	}
	switch args[0] {
	case "verify":
		return m.runAuditVerify(ctx, args[1:], env, stdout, stderr)
	case "replay":
		return m.runAuditReplay(ctx, args[1:], env, stdout, stderr)
	case "export":
		return m.runAuditExport(ctx, args[1:], env, stdout, stderr)
	case "deletions":
		return m.runAuditDeletions(ctx, args[1:], env, stdout, stderr)
	}
	usage()
	return usagef("unknown audit subcommand %q (want verify, replay, export or deletions)", args[0])
}

func newAuditFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("audit "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tracseq-tx audit %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// timeFlag parses an RFC 3339 time or a duration ago; zero when empty.
// parseTimeRange parses the flags of an audit subcommand that takes no
// arguments and the times of its --from and --to flags; no --to means now
// plus slack.
func parseTimeRange(fs *flag.FlagSet, args []string, from, to *string, slack time.Duration) (fromT, toT time.Time, err error) {
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return fromT, toT, flagError(err)
	}
	if len(rest) > 0 {
		fs.Usage()
		return fromT, toT, usagef("%s takes no arguments, got %q", fs.Name(), rest)
	}
	now := time.Now()
	if fromT, err = timeFlag("from", *from, now); err != nil {
		return fromT, toT, err
	}
	if toT, err = timeFlag("to", *to, now); err != nil {
		return fromT, toT, err
	}
	if *to == "" {
		toT = now.UTC().Add(slack)
	}
	return fromT, toT, nil
}

func timeFlag(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := parseTimeOrAgo(v, now)
	if err != nil {
		return time.Time{}, usagef("--%s: %v", name, err)
	}
	return t.UTC(), nil
}

// verifyReport is the outcome of `audit verify`.
type verifyReport struct {
	Sagas        int            `json:"sagas"`
	Events       int64          `json:"events"`
	Broken       []brokenReport `json:"broken"`
	LegacySagas  int            `json:"legacy_sagas"`
	LegacyEvents int64          `json:"legacy_events"`
	Keyed        bool           `json:"keyed"`
}

type brokenReport struct {
	SagaID  string  `json:"saga_id"`
	Seq     int64   `json:"seq"`
	EventID *string `json:"event_id"`
	Problem string  `json:"problem"`
}

func (m *Main) runAuditVerify(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := newAuditFlagSet("verify", "[--saga ID] [--since T] [--json]", stderr)
	sagaID := fs.String("saga", "", "verify this saga only")
	since := fs.String("since", "", "verify the sagas written since this time (RFC 3339, or a duration such as 24h meaning that long ago)")
	batch := fs.Int("batch", saga.ChainBatchDefault, "sagas read per batch")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(rest) > 0 {
		fs.Usage()
		return usagef("audit verify takes no arguments, got %q", rest)
	}
	q := saga.ChainQuery{Limit: *batch}
	if *batch <= 0 {
		return usagef("--batch must be positive")
	}
	if q.Since, err = timeFlag("since", *since, time.Now()); err != nil {
		return err
	}
	if *sagaID != "" {
		id, err := saga.ParseID(*sagaID)
		if err != nil {
			return usagef("--saga: %v", err)
		}
		q.IDs = []saga.ID{id}
	}
	store, chain, err := openAuditStore(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer store.Close()

	rep := verifyReport{Broken: []brokenReport{}, Keyed: chain.Keyed()}
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	report := func(b *saga.ChainBreak) {
		br := brokenReport{SagaID: b.SagaID.String(), Seq: b.Seq, Problem: b.Problem}
		if !b.EventID.IsZero() {
			id := b.EventID.String()
			br.EventID = &id
		}
		rep.Broken = append(rep.Broken, br)
		if !*asJSON {
			event := "missing"
			if br.EventID != nil {
				event = *br.EventID
			}
			fmt.Fprintf(out, "BROKEN saga %s: event %d (%s): %s\n", br.SagaID, br.Seq, event, br.Problem)
		}
	}
	if err := verifyChains(ctx, store, chain, q, &rep, report); err != nil {
		return err
	}
	if q.IDs != nil && rep.Sagas == 0 {
		return fmt.Errorf("audit verify: no saga has id %s", *sagaID)
	}
	if *asJSON {
		if err := writeJSON(out, rep); err != nil {
			return err
		}
	} else {
		key := "plain SHA-256 (no AUDIT_HMAC_KEY)"
		if rep.Keyed {
			key = "HMAC-SHA-256 with AUDIT_HMAC_KEY"
		}
		fmt.Fprintf(out, "verified %d sagas, %d events, %s: %d broken\n", rep.Sagas, rep.Events, key, len(rep.Broken))
		if rep.LegacySagas > 0 {
			fmt.Fprintf(out, "note: %d sagas start with %d events written before the audit chain existed (not verifiable)\n",
				rep.LegacySagas, rep.LegacyEvents)
		}
	}
	if len(rep.Broken) > 0 {
		return fmt.Errorf("%w: %d sagas with a broken audit chain", errSilent, len(rep.Broken))
	}
	return nil
}

// verifyChains walks the chains matching q batch by batch and reports each
// broken one. Only one batch's verifiers are held at a time, and one saga's
// at that: the walk streams.
func verifyChains(ctx context.Context, store saga.AuditStore, chain *saga.Chain, q saga.ChainQuery, rep *verifyReport, report func(*saga.ChainBreak)) error {
	var v *saga.ChainVerifier
	finish := func() {
		if v == nil {
			return
		}
		rep.Sagas++
		if b := v.Finish(); b != nil {
			report(b)
		}
		if n := v.Legacy(); n > 0 {
			rep.LegacySagas++
			rep.LegacyEvents += n
		}
		v = nil
	}
	for {
		n, last, err := store.Chains(ctx, q,
			func(h saga.ChainHead) error {
				finish()
				v = chain.Verifier(h)
				return nil
			},
			func(e saga.Event) error {
				rep.Events++
				v.Add(e)
				return nil
			})
		if err != nil {
			return fmt.Errorf("audit verify: %w", err)
		}
		finish()
		if n < q.EffectiveLimit() || q.IDs != nil {
			return nil
		}
		q.After = last
	}
}

// replayOutput is `audit replay --json`.
type replayOutput struct {
	Rebuilt     httpapi.SagaJSON `json:"rebuilt"`
	Differences []string         `json:"differences"`
	Chain       string           `json:"chain"`
}

// replayReads bounds the reads of a saga that moves while it is read.
const replayReads = 5

func (m *Main) runAuditReplay(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := newAuditFlagSet("replay", "ID [--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(rest) != 1 {
		fs.Usage()
		return usagef("audit replay needs exactly one saga id")
	}
	id, err := saga.ParseID(rest[0])
	if err != nil {
		return usagef("audit replay: %v", err)
	}
	store, chain, err := openAuditStore(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer store.Close()

	// The events, then the saga; again if it moved in between.
	var (
		stored *saga.Saga
		events []saga.Event
	)
	for range replayReads {
		if events, err = store.ListEvents(ctx, id, 0, 0); err != nil {
			return fmt.Errorf("audit replay: %w", err)
		}
		if stored, err = store.GetSaga(ctx, id); err != nil {
			return fmt.Errorf("audit replay: %w", err)
		}
		if len(events) > 0 && events[len(events)-1].Seq == stored.EventSeq {
			break
		}
	}
	verdict := "verified"
	var brk *saga.ChainBreak
	_, _, err = store.Chains(ctx, saga.ChainQuery{IDs: []saga.ID{id}, Limit: 1},
		func(h saga.ChainHead) error {
			brk = chain.Verify(h, events)
			return nil
		}, func(saga.Event) error { return nil })
	switch {
	case err != nil:
		return fmt.Errorf("audit replay: %w", err)
	case brk != nil:
		verdict = "BROKEN: " + brk.Error()
	}
	rebuilt, err := saga.Replay(events)
	if err != nil {
		return fmt.Errorf("audit replay of saga %s: %w", id, err)
	}
	rebuilt.Durable = stored.Durable
	diff := saga.ReplayDiff(stored, rebuilt)
	if *asJSON {
		if err := writeJSON(stdout, replayOutput{Rebuilt: httpapi.NewSagaJSON(rebuilt, true), Differences: nonNil(diff), Chain: verdict}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "Saga %s rebuilt from its %d events (chain %s):\n\n", id, len(events), verdict)
		printSaga(stdout, ptr(httpapi.NewSagaJSON(rebuilt, true)))
		fmt.Fprintln(stdout)
		if len(diff) == 0 {
			fmt.Fprintln(stdout, "No differences from the stored saga.")
		} else {
			fmt.Fprintf(stdout, "%d differences from the stored saga:\n", len(diff))
			for _, d := range diff {
				fmt.Fprintln(stdout, "  "+d)
			}
		}
	}
	if len(diff) > 0 || brk != nil {
		return fmt.Errorf("%w: saga %s differs from its replay or its chain is broken", errSilent, id)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func (m *Main) runAuditExport(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := newAuditFlagSet("export", "--from T [--to T] [--format csv|json] [--output FILE]", stderr)
	from := fs.String("from", "", "first time of the range (RFC 3339, or a duration such as 24h meaning that long ago); required")
	to := fs.String("to", "", "end of the range, excluded (default now)")
	format := fs.String("format", "csv", "csv or json")
	output := fs.String("output", "", "write to this file instead of standard output")
	fromT, toT, err := parseTimeRange(fs, args, from, to, 0)
	if err != nil {
		return err
	}
	if *from == "" {
		fs.Usage()
		return usagef("audit export needs --from")
	}
	if !toT.After(fromT) {
		return usagef("--to (%s) must be after --from (%s)", toT.Format(time.RFC3339), fromT.Format(time.RFC3339))
	}
	if *format != "csv" && *format != "json" {
		return usagef("--format must be csv or json (got %q)", *format)
	}
	store, _, err := openAuditStore(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer store.Close()

	w := stdout
	var file *os.File
	if *output != "" {
		if file, err = os.Create(*output); err != nil {
			return fmt.Errorf("audit export: %w", err)
		}
		w = file
	}
	n, err := exportEvents(ctx, store, fromT, toT, *format, w)
	if file != nil {
		if cerr := file.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	if *output != "" {
		fmt.Fprintf(stderr, "exported %d events to %s\n", n, *output)
	}
	return nil
}

// exportEvents streams the events created in [from, to) to w as CSV
// (httpapi.AuditCSVHeader) or as a JSON array of httpapi.AuditEventJSON,
// one event at a time, and returns how many it wrote.
func exportEvents(ctx context.Context, store saga.AuditStore, from, to time.Time, format string, w io.Writer) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	var err error
	if format == "csv" {
		cw := csv.NewWriter(bw)
		if err := cw.Write(httpapi.AuditCSVHeader); err != nil {
			return 0, err
		}
		err = store.ExportEvents(ctx, from, to, func(e saga.Event, prev []byte) error {
			n++
			return cw.Write(httpapi.AuditCSVRecord(httpapi.NewAuditEventJSON(e, prev)))
		})
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
	} else {
		if _, err := bw.WriteString("["); err != nil {
			return 0, err
		}
		err = store.ExportEvents(ctx, from, to, func(e saga.Event, prev []byte) error {
			b, err := json.Marshal(httpapi.NewAuditEventJSON(e, prev))
			if err != nil {
				return err
			}
			sep := ",\n"
			if n == 0 {
				sep = "\n"
			}
			n++
			if _, err := bw.WriteString(sep); err != nil {
				return err
			}
			_, err = bw.Write(b)
			return err
		})
		if err == nil {
			_, err = bw.WriteString("\n]\n")
		}
	}
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// deletionJSON is one tombstone in `audit deletions --json`.
type deletionJSON struct {
	SagaID      string          `json:"saga_id"`
	Name        string          `json:"name"`
	Status      saga.SagaStatus `json:"final_status"`
	EventSeq    int64           `json:"event_seq"`
	LastHash    string          `json:"last_hash"`
	CompletedAt *string         `json:"completed_at"`
	DeletedAt   string          `json:"deleted_at"`
	Rule        string          `json:"rule"`
	Actor       string          `json:"actor"`
	Reason      string          `json:"reason"`
	Address     string          `json:"client_addr"`
}

func (m *Main) runAuditDeletions(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := newAuditFlagSet("deletions", "[--from T] [--to T] [--json]", stderr)
	from := fs.String("from", "", "first deletion time (RFC 3339 or a duration ago; default: the beginning)")
	to := fs.String("to", "", "end of the range, excluded (default now)")
	asJSON := fs.Bool("json", false, "print JSON lines")
	fromT, toT, err := parseTimeRange(fs, args, from, to, time.Second)
	if err != nil {
		return err
	}
	store, _, err := openAuditStore(ctx, env, stderr)
	if err != nil {
		return err
	}
	defer store.Close()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	n := 0
	err = store.Deletions(ctx, fromT, toT, func(d saga.Deletion) error {
		n++
		j := deletionJSON{SagaID: d.SagaID.String(), Name: d.Name, Status: d.Status, EventSeq: d.EventSeq,
			LastHash: fmt.Sprintf("%x", d.LastHash), DeletedAt: httpapi.AuditTime(d.DeletedAt), Rule: d.Rule,
			Actor: d.Actor, Reason: d.Reason, Address: d.Address}
		if d.CompletedAt != nil {
			j.CompletedAt = ptr(httpapi.AuditTime(*d.CompletedAt))
		}
		if *asJSON {
			b, err := json.Marshal(j)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(out, "%s\n", b)
			return err
		}
		by := dash(j.Actor)
		if j.Reason != "" {
			by += " (" + j.Reason + ")"
		}
		_, err := fmt.Fprintf(out, "%s  %s  %s  %s  seq %d  %s  by %s  last hash %s\n",
			j.DeletedAt, j.SagaID, j.Name, j.Status, j.EventSeq, j.Rule, by, j.LastHash)
		return err
	})
	if err != nil {
		return fmt.Errorf("audit deletions: %w", err)
	}
	if n == 0 && !*asJSON {
		fmt.Fprintln(out, "(no deletions)")
	}
	return nil
}
