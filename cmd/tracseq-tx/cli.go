package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/client"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/sqlite"
)

// Defaults of the operator commands.
const (
	// URLDefault is where the operator commands find the service.
	URLDefault = "http://localhost:8080"
	// requestTimeoutDefault bounds one API call of an operator command.
	requestTimeoutDefault = 30 * time.Second
	// serverMaxWait is the longest ?wait= the service honours in one call;
	// submit --wait polls beyond it.
	serverMaxWait = 60 * time.Second
	// waitPollInterval is how often submit --wait polls after that.
	waitPollInterval = 500 * time.Millisecond
	// maxDefinitionBytes bounds a definition file.
	maxDefinitionBytes = 1 << 20
)

// clientFlags are the flags every operator command takes.
type clientFlags struct {
	url     string
	token   string
	json    bool
	timeout time.Duration
}

// newClientFlagSet returns a flag set with the common operator flags.
func newClientFlagSet(name, usage string, stderr io.Writer) (*flag.FlagSet, *clientFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := &clientFlags{}
	fs.StringVar(&cf.url, "url", "", "base URL of the service (default $TRACSEQ_URL or "+URLDefault+")")
	fs.StringVar(&cf.token, "token", "", "API bearer token (default $TRACSEQ_TOKEN)")
	fs.BoolVar(&cf.json, "json", false, "print JSON instead of tables")
	fs.DurationVar(&cf.timeout, "timeout", requestTimeoutDefault, "time limit of each API call")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tracseq-tx %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs, cf
}

// client returns the API client the flags and environment describe.
func (cf *clientFlags) client(env func(string) string) (*client.Client, error) {
	base := cmpOr(cf.url, strings.TrimSpace(env("TRACSEQ_URL")), URLDefault)
	token := cmpOr(cf.token, strings.TrimSpace(env("TRACSEQ_TOKEN")))
	c, err := client.New(base, client.WithToken(token), client.WithHTTPClient(&http.Client{}))
	if err != nil {
		return nil, usagef("--url (or TRACSEQ_URL): %v", err)
	}
	return c, nil
}

// cmpOr returns the first non-empty string.
func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (`show ID --json`) and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

// parseOneID parses the flags and the single saga id argument.
func parseOneID(fs *flag.FlagSet, args []string) (string, error) {
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return "", flagError(err)
	}
	if len(rest) != 1 {
		fs.Usage()
		return "", usagef("%s needs exactly one saga id", fs.Name())
	}
	if _, err := saga.ParseID(rest[0]); err != nil {
		return "", usagef("%s: %v", fs.Name(), err)
	}
	return rest[0], nil
}

// withTimeout bounds ctx by the command's per-call time limit.
func (cf *clientFlags) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if cf.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, cf.timeout)
}

func (m *Main) runList(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("list", "[flags]", stderr)
	var q httpapi.ListQuery
	var status, createdAfter string
	var all bool
	fs.StringVar(&status, "status", "", "only sagas in this status ("+statusList()+")")
	fs.StringVar(&q.Name, "name", "", "only sagas with this name")
	fs.StringVar(&q.TransactionID, "transaction-id", "", "only sagas of this transaction id")
	fs.StringVar(&createdAfter, "created-after", "", "only sagas created after this time (RFC 3339, or a duration such as 1h meaning that long ago)")
	fs.IntVar(&q.Limit, "limit", 0, "sagas per page (default 50, at most 1000)")
	fs.StringVar(&q.Cursor, "cursor", "", "continue from the next_cursor of a previous page")
	fs.BoolVar(&all, "all", false, "follow the pages to the end")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(rest) > 0 {
		fs.Usage()
		return usagef("list takes no arguments, got %q", rest)
	}
	if status != "" {
		st, err := saga.ParseSagaStatus(status)
		if err != nil {
			return usagef("--status: %v", err)
		}
		q.Status = string(st)
	}
	if createdAfter != "" {
		t, err := parseTimeOrAgo(createdAfter, time.Now())
		if err != nil {
			return usagef("--created-after: %v", err)
		}
		q.CreatedAfter = t
	}

	c, err := cf.client(env)
	if err != nil {
		return err
	}
	var sagas []httpapi.SagaJSON
	var next *string
	for {
		callCtx, cancel := cf.withTimeout(ctx)
		page, err := c.ListPage(callCtx, q)
		cancel()
		if err != nil {
			return apiError(err)
		}
		sagas = append(sagas, page.Sagas...)
		next = nil
		if page.NextCursor != "" {
			next = &page.NextCursor
		}
		if !all || next == nil {
			break
		}
		q.Cursor = *next
	}
	if cf.json {
		return writeJSON(stdout, httpapi.ListJSON{Sagas: nonNil(sagas), NextCursor: next})
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tSTEPS\tCREATED\tDURATION\tDURABLE")
	for _, s := range sagas {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", s.ID, s.Name, s.Status,
			s.CompletedSteps, s.TotalSteps, formatTime(&s.CreatedAt), sagaDuration(s), yesNo(s.Durable))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(sagas) == 0 {
		fmt.Fprintln(stdout, "(no sagas)")
	}
	if next != nil {
		fmt.Fprintf(stdout, "\nmore: tracseq-tx list --cursor %s (or --all)\n", *next)
	}
	return nil
}

// nonNil returns s, or an empty slice for nil (JSON [] rather than null).
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// parseTimeOrAgo parses an RFC 3339 time, or a duration meaning that long
// before now.
func parseTimeOrAgo(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2025-01-31T12:00:00Z) nor a duration (90m)", v)
}

func statusList() string {
	names := make([]string, len(saga.SagaStatuses))
	for i, s := range saga.SagaStatuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func (m *Main) runShow(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("show", "ID [flags]", stderr)
	id, err := parseOneID(fs, args)
	if err != nil || id == "" {
		return err
	}
	c, err := cf.client(env)
	if err != nil {
		return err
	}
	callCtx, cancel := cf.withTimeout(ctx)
	defer cancel()
	s, err := c.Get(callCtx, id)
	if err != nil {
		return apiError(err)
	}
	events, err := c.Events(callCtx, id)
	if err != nil {
		return apiError(err)
	}
	if cf.json {
		return writeJSON(stdout, struct {
			Saga   *httpapi.SagaJSON   `json:"saga"`
			Events []httpapi.EventJSON `json:"events"`
		}{s, nonNil(events)})
	}
	printSaga(stdout, s)
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "Events:")
	printEvents(stdout, events)
	return nil
}

// printSaga prints a saga's fields and its steps.
func printSaga(w io.Writer, s *httpapi.SagaJSON) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("Saga", s.ID)
	row("Name", s.Name)
	row("Status", string(s.Status))
	row("Progress", fmt.Sprintf("%d of %d steps completed", s.CompletedSteps, s.TotalSteps))
	row("Transaction", s.TransactionID)
	if s.UserID != nil {
		row("User", *s.UserID)
	}
	row("Durable", yesNo(s.Durable))
	row("Created", formatTime(&s.CreatedAt))
	row("Started", formatTime(s.StartedAt))
	row("Completed", formatTime(s.CompletedAt))
	row("Deadline", formatTime(s.Deadline))
	row("Duration", sagaDuration(*s))
	row("Owner", s.OwnerID)
	row("Control", string(s.ControlRequest))
	row("Idempotency key", s.IdempotencyKey)
	row("Error", s.Error)
	if len(s.Context) > 0 && string(s.Context) != "null" && string(s.Context) != "{}" {
		row("Context", compactJSON(s.Context, 200))
	}
	_ = tw.Flush()
	if len(s.Steps) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Steps:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tNAME\tAFTER\tSTATUS\tATTEMPTS\tDURATION\tCOMPENSATION\tERROR\tOUTPUT")
	for _, st := range s.Steps {
		comp := "-"
		if !st.Compensable {
			comp = "none (not undone)"
		}
		if c := st.Compensation; c != nil {
			comp = fmt.Sprintf("%s (%d)", c.Status, c.Attempts)
			if c.AttemptsBeforeRetry > 0 {
				comp = fmt.Sprintf("%s (%d, %d since the retry)", c.Status, c.Attempts, c.Attempts-c.AttemptsBeforeRetry)
			}
			if c.Error != "" {
				comp += ": " + oneLine(c.Error, 60)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", st.Index, st.Name, dash(strings.Join(st.DependsOn, ",")),
			st.Status, st.Attempts, between(st.StartedAt, st.CompletedAt), comp, dash(oneLine(st.Error, 80)), dash(compactJSON(st.Output, 80)))
	}
	_ = tw.Flush()
	if s.MaxParallel > 1 {
		printStages(w, s)
	}
}

// printStages prints a graph's order: the steps that may run together, stage
// by stage (a step's stage is one more than the latest of its
// dependencies').
func printStages(w io.Writer, s *httpapi.SagaJSON) {
	index := make(map[string]int, len(s.Steps))
	for i, st := range s.Steps {
		index[st.Name] = i
	}
	stage := make([]int, len(s.Steps))
	for changed := true; changed; {
		changed = false
		for i, st := range s.Steps {
			for _, d := range st.DependsOn {
				if j, ok := index[d]; ok && stage[j]+1 > stage[i] && stage[j] < len(s.Steps) {
					stage[i], changed = stage[j]+1, true
				}
			}
		}
	}
	var stages [][]string
	for i, st := range s.Steps {
		for len(stages) <= stage[i] {
			stages = append(stages, nil)
		}
		stages[stage[i]] = append(stages[stage[i]], st.Name)
	}
	fmt.Fprintf(w, "\nOrder (at most %d calls at once):\n", s.MaxParallel)
	for k, names := range stages {
		fmt.Fprintf(w, "  %d. %s\n", k+1, strings.Join(names, " | "))
	}
}

// printEvents prints an audit trail.
func printEvents(w io.Writer, events []httpapi.EventJSON) {
	if len(events) == 0 {
		fmt.Fprintln(w, "(no events)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tSTEP\tINSTANCE\tACTOR\tDATA")
	for _, e := range events {
		step := "-"
		if e.StepIndex != nil {
			step = strconv.Itoa(*e.StepIndex)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.CreatedAt.UTC().Format("15:04:05.000"),
			e.Type, step, dash(e.InstanceID), dash(e.Actor), dash(compactJSON(e.Data, 100)))
	}
	_ = tw.Flush()
}

func (m *Main) runSubmit(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("submit", "FILE|- [flags]", stderr)
	wait := fs.Duration("wait", 0, "wait up to this long for the saga to end (e.g. 30s)")
	reason := fs.String("reason", "", "why the saga is submitted (recorded in its audit trail)")
	key := fs.String("idempotency-key", "", "the submit's idempotency key (default: the definition's, else a new one, printed); give the printed key again to retry a submit whose answer was lost")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(rest) != 1 {
		fs.Usage()
		return usagef("submit needs one definition file (or - for standard input)")
	}
	if *wait < 0 {
		return usagef("--wait must not be negative")
	}
	def, err := m.readDefinition(rest[0])
	if err != nil {
		return err
	}
	switch {
	case *key != "" && def.IdempotencyKey != "" && *key != def.IdempotencyKey:
		return usagef("--idempotency-key %q differs from the definition's idempotency_key %q", *key, def.IdempotencyKey)
	case *key != "":
		def.IdempotencyKey = *key
	case def.IdempotencyKey == "":
		// Always a key, so that a submit retried (by the client, or by
		// the operator with the printed key) creates one saga.
		def.IdempotencyKey = saga.NewID().String()
	}
	if err := def.Validate(); err != nil {
		return fmt.Errorf("definition %s is invalid:%s", rest[0], listProblems(err))
	}

	c, err := cf.client(env)
	if err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, cf.timeout+min(*wait, serverMaxWait))
	s, replayed, err := c.Submit(callCtx, *def, client.WithWait(min(*wait, serverMaxWait)), client.WithSubmitReason(*reason))
	cancel()
	if err != nil {
		return apiError(err)
	}
	if *wait > serverMaxWait && !s.Status.Terminal() {
		if s, err = waitForEnd(ctx, c, cf, s, *wait-serverMaxWait); err != nil {
			return err
		}
	}
	if cf.json {
		return writeJSON(stdout, s)
	}
	verb := "submitted"
	if replayed {
		verb = "already submitted with this idempotency key"
	}
	fmt.Fprintf(stdout, "saga %s %s: %s (idempotency key %s)\n", s.ID, verb, s.Status, def.IdempotencyKey)
	if *wait > 0 {
		fmt.Fprintln(stdout)
		printSaga(stdout, s)
	}
	return nil
}

// waitForEnd polls the saga until it ends or d passes, and returns it as it
// is then.
func waitForEnd(ctx context.Context, c *client.Client, cf *clientFlags, s *httpapi.SagaJSON, d time.Duration) (*httpapi.SagaJSON, error) {
	deadline := time.Now().Add(d)
	ticker := time.NewTicker(waitPollInterval)
	defer ticker.Stop()
	for !s.Status.Terminal() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return s, nil
		case <-ticker.C:
		}
		callCtx, cancel := cf.withTimeout(ctx)
		next, err := c.Get(callCtx, s.ID)
		cancel()
		if err != nil {
			return nil, apiError(err)
		}
		s = next
	}
	return s, nil
}

// readDefinition reads a saga definition from a file, or standard input for
// "-". Unknown fields are refused here already, naming them.
func (m *Main) readDefinition(path string) (*saga.Definition, error) {
	var r io.Reader
	if path == "-" {
		r = m.stdin()
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read definition: %w", err)
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxDefinitionBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read definition: %w", err)
	}
	if len(raw) > maxDefinitionBytes {
		return nil, fmt.Errorf("definition %s: larger than %d bytes", path, maxDefinitionBytes)
	}
	def, err := httpapi.DecodeDefinition(raw)
	if err != nil {
		return nil, fmt.Errorf("definition %s is not a saga definition:%s", path, listProblems(err))
	}
	return &def, nil
}

// controlCommand returns the command that requests action on a saga.
func controlCommand(action saga.ControlAction) func(*Main, context.Context, []string, func(string) string, io.Writer, io.Writer) error {
	return func(_ *Main, ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
		fs, cf := newClientFlagSet(string(action), "ID [flags]", stderr)
		reason := fs.String("reason", "", "why (recorded with the request in the saga's audit trail)")
		id, err := parseOneID(fs, args)
		if err != nil || id == "" {
			return err
		}
		callCtx, cancel := cf.withTimeout(ctx)
		defer cancel()
		c, err := cf.client(env)
		if err != nil {
			return err
		}
		s, err := c.Control(callCtx, id, action, client.WithReason(*reason))
		if err != nil {
			return apiError(err)
		}
		if cf.json {
			return writeJSON(stdout, s)
		}
		fmt.Fprintf(stdout, "%s requested for saga %s (status now %s); the instance running it carries it out\n", action, s.ID, s.Status)
		return nil
	}
}

// holdCommand sets (hold) or clears a saga's legal hold.
func holdCommand(hold bool) func(*Main, context.Context, []string, func(string) string, io.Writer, io.Writer) error {
	name := "hold"
	if !hold {
		name = "unhold"
	}
	return func(_ *Main, ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
		fs, cf := newClientFlagSet(name, "ID [flags]", stderr)
		reason := fs.String("reason", "", "why (recorded on the LegalHoldChanged event of the saga's audit trail)")
		id, err := parseOneID(fs, args)
		if err != nil || id == "" {
			return err
		}
		c, err := cf.client(env)
		if err != nil {
			return err
		}
		callCtx, cancel := cf.withTimeout(ctx)
		defer cancel()
		s, err := c.SetLegalHold(callCtx, id, hold, client.WithReason(*reason))
		if err != nil {
			return apiError(err)
		}
		if cf.json {
			return writeJSON(stdout, s)
		}
		if s.LegalHold {
			fmt.Fprintf(stdout, "saga %s is under legal hold: cleanup will not delete it\n", s.ID)
		} else {
			fmt.Fprintf(stdout, "saga %s is no longer under legal hold\n", s.ID)
		}
		return nil
	}
}

func (m *Main) runStats(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("stats", "[flags]", stderr)
	window := fs.Duration("window", time.Hour, "the window of the rates and durations")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(rest) > 0 {
		fs.Usage()
		return usagef("stats takes no arguments, got %q", rest)
	}
	callCtx, cancel := cf.withTimeout(ctx)
	defer cancel()
	c, err := cf.client(env)
	if err != nil {
		return err
	}
	st, err := c.Statistics(callCtx, *window)
	if err != nil {
		return apiError(err)
	}
	if cf.json {
		return writeJSON(stdout, st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tSAGAS")
	for _, s := range saga.SagaStatuses {
		fmt.Fprintf(tw, "%s\t%d\n", s, st.ByStatus[s])
	}
	fmt.Fprintf(tw, "total\t%d\n", st.Total)
	fmt.Fprintln(tw)
	win := time.Duration(st.WindowSeconds * float64(time.Second))
	fmt.Fprintf(tw, "IN THE LAST %s\tSAGAS\tPER SECOND\n", strings.TrimSuffix(strings.TrimSuffix(win.String(), "0s"), "0m"))
	fmt.Fprintf(tw, "started\t%d\t%.3f\n", st.Started, st.StartedPerSecond)
	fmt.Fprintf(tw, "completed\t%d\t%.3f\n", st.Completed, st.CompletedPerSecond)
	fmt.Fprintf(tw, "ended otherwise\t%d\t%.3f\n", st.Failed, st.FailedPerSecond)
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "duration of ended sagas\tmean %.1f ms\tp95 %.1f ms\n", st.MeanDurationMs, st.P95DurationMs)
	return tw.Flush()
}

func (m *Main) runCleanup(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("cleanup", "[--direct] [--reason R] [flags]", stderr)
	direct := fs.Bool("direct", false, "clean up in this process, on DATABASE_URL with the CLEANUP_*_AFTER_HOURS of the environment, without a running service and without a time limit (cron jobs, large backlogs)")
	reason := fs.String("reason", "", "why (recorded on the tombstone of each saga deleted)")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(rest) > 0 {
		fs.Usage()
		return usagef("cleanup takes no arguments, got %q", rest)
	}
	if *direct {
		return cleanupDirect(ctx, env, *reason, cf.json, stdout, stderr)
	}
	callCtx, cancel := cf.withTimeout(ctx)
	defer cancel()
	c, err := cf.client(env)
	if err != nil {
		return err
	}
	n, err := c.Cleanup(callCtx, client.WithReason(*reason))
	if err != nil {
		return apiError(err)
	}
	if cf.json {
		return writeJSON(stdout, httpapi.CleanupJSON{Deleted: n})
	}
	fmt.Fprintf(stdout, "deleted %d finished sagas\n", n)
	return nil
}

// DirectCleanupActor is the actor the tombstones of cleanup --direct name.
const DirectCleanupActor = "tracseq-tx cleanup --direct"

// cleanupDirect deletes the sagas whose retention has passed straight
// from the database, and says how many and how fast. Its tombstones name
// DirectCleanupActor and reason.
func cleanupDirect(ctx context.Context, env func(string) string, reason string, asJSON bool, stdout, stderr io.Writer) error {
	cfg, err := LoadConfig(env)
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	var store saga.Store
	if cfg.SQLitePath != "" {
		// The file's lock makes this fail while a service runs on it: use
		// the service's cleanup then.
		store, err = sqlite.Open(ctx, sqlite.Config{Path: cfg.SQLitePath, InstanceID: "tracseq-tx cleanup", Logger: logger})
	} else {
		store, err = postgres.Open(ctx, postgres.Config{URL: cfg.DatabaseURL, MaxConns: 2, ConnectTimeout: cfg.DBConnectTimeout, Logger: logger})
	}
	if err != nil {
		return fmt.Errorf("open database %s: %w", redactURL(cfg.DatabaseURL), err)
	}
	defer store.Close()
	start := time.Now()
	ctx = saga.WithRequester(ctx, saga.Requester{Actor: DirectCleanupActor, Reason: reason})
	n, err := store.DeleteExpired(ctx, cfg.retention(), engine.CleanupBatch)
	took := time.Since(start)
	if err != nil {
		return fmt.Errorf("cleanup (%d sagas deleted before the error): %w", n, err)
	}
	if asJSON {
		return writeJSON(stdout, map[string]any{"deleted": n, "seconds": took.Seconds()})
	}
	fmt.Fprintf(stdout, "deleted %d finished sagas in %v (%.0f sagas/s)\n", n, took.Round(time.Millisecond), float64(n)/max(took.Seconds(), 1e-9))
	return nil
}

// runHealth asks a running service whether it is alive (GET /health) or,
// with --ready, ready (GET /health/ready). The container health check uses
// it: the runtime image has no shell or curl.
func (m *Main) runHealth(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs, cf := newClientFlagSet("health", "[--ready] [flags]", stderr)
	ready := fs.Bool("ready", false, "check readiness (database, persistence mode) instead of liveness")
	cf.timeout = 5 * time.Second
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return flagError(err)
	}
	if len(rest) > 0 {
		fs.Usage()
		return usagef("health takes no arguments, got %q", rest)
	}
	c, err := cf.client(env)
	if err != nil {
		return err
	}
	callCtx, cancel := cf.withTimeout(ctx)
	defer cancel()
	if *ready {
		r, status, err := c.Ready(callCtx)
		if err != nil && r == nil {
			return apiError(err)
		}
		if cf.json {
			if err := writeJSON(stdout, r); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stdout, "%s (persistence %s", r.Status, r.Persistence)
			if r.Path != "" {
				fmt.Fprintf(stdout, ", %s", r.Path)
			}
			fmt.Fprint(stdout, ")")
			if r.Database != nil {
				fmt.Fprintf(stdout, ", database round trip %.1f ms, pool %d/%d in use, schema version %d",
					r.Database.RoundTripMs, r.Database.Pool.InUse, r.Database.Pool.Max, r.Database.MigrationVersion)
			}
			fmt.Fprintln(stdout)
			if r.Warning != "" {
				fmt.Fprintln(stdout, "warning:", r.Warning)
			}
			if r.Error != "" {
				fmt.Fprintln(stdout, "error:", r.Error)
			}
		}
		if status != http.StatusOK {
			return fmt.Errorf("%w: not ready (HTTP %d)", errSilent, status)
		}
		return nil
	}
	h, err := c.Health(callCtx)
	if err != nil {
		return apiError(err)
	}
	if cf.json {
		return writeJSON(stdout, h)
	}
	fmt.Fprintf(stdout, "%s (instance %s, version %s)\n", dash(h.Status), dash(h.InstanceID), dash(h.Version))
	return nil
}

// Formatting helpers of the tables.

func formatTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func between(from, to *time.Time) string {
	if from == nil || to == nil {
		return "-"
	}
	return roundDuration(to.Sub(*from)).String()
}

func sagaDuration(s httpapi.SagaJSON) string {
	if s.CompletedAt == nil {
		return "-"
	}
	return roundDuration(s.CompletedAt.Sub(s.CreatedAt)).String()
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine shortens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// compactJSON renders raw on one line, shortened to n runes; "" for none.
func compactJSON(raw json.RawMessage, n int) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return oneLine(string(raw), n)
	}
	return oneLine(buf.String(), n)
}

// apiError returns err with every field problem of an API answer listed,
// one per line, so that a definition can be fixed in one go.
func apiError(err error) error {
	var p *httpapi.Problem
	if !errors.As(err, &p) || len(p.Errors) < 2 {
		return err
	}
	var b strings.Builder
	b.WriteString(err.Error())
	for _, fe := range p.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", fe.Field, fe.Message)
	}
	return errors.New(b.String())
}

// listProblems renders every problem of a validation error, one per line.
func listProblems(err error) string {
	var ve *saga.ValidationError
	if !errors.As(err, &ve) {
		return " " + err.Error()
	}
	var b strings.Builder
	for _, p := range ve.Problems {
		b.WriteString("\n  " + p.Error())
	}
	return b.String()
}
