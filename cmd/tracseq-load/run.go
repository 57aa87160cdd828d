package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/sqlite"
)

const (
	// readyCheckTimeout bounds the readiness check of a running service.
	readyCheckTimeout = 10 * time.Second
	// pgStatIdleInterval is PGSTAT_IDLE_INTERVAL: the longest an idle
	// backend keeps its transaction counts before publishing them.
	pgStatIdleInterval = 10 * time.Second
)

// errNotAsPlanned is returned after the report when the run had errors,
// unexpected end states or failed verifications.
var errNotAsPlanned = errors.New("the run did not go as planned: see the errors, unexpected end states or verification above")

// Run runs the load tool with the command-line arguments args (without the
// program name). env reads the environment (os.Getenv in production). The
// report goes to stdout (with --json the JSON does, and the table goes to
// stderr); progress and messages go to stderr. It returns errNotAsPlanned
// after printing the report when the run had errors, sagas ending
// otherwise than planned, or failed verifications.
func Run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, env, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	rep, err := runLoad(ctx, cfg, stderr)
	if rep != nil {
		if cfg.JSON {
			if werr := rep.writeTable(stderr); werr != nil {
				return werr
			}
			if werr := rep.writeJSON(stdout); werr != nil {
				return werr
			}
		} else if werr := rep.writeTable(stdout); werr != nil {
			return werr
		}
	}
	if err != nil {
		return err
	}
	if !rep.OK() {
		return errNotAsPlanned
	}
	return nil
}

// runLoad does the run cfg describes and returns its report. A report may
// come back with an error when the run failed after measuring something
// (the service failed to stop, say).
func runLoad(ctx context.Context, cfg Config, stderr io.Writer) (rep *Report, err error) {
	progress := &progressWriter{w: stderr, tty: isTerminal(stderr)}
	rep = &Report{
		Run: runReport{
			Steps:           cfg.Steps,
			Concurrency:     cfg.Concurrency,
			DurationSeconds: cfg.Duration.Seconds(),
			SagasLimit:      cfg.Sagas,
			WarmupSeconds:   cfg.Warmup.Seconds(),
			LatencyMs:       ms(cfg.Latency),
			FailStep:        cfg.FailStep,
			FailRate:        cfg.FailRate,
		},
		Started: cfg.Start,
		Host:    readHost(),
	}

	st, err := startStubs(cfg.Latency)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := st.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()

	var (
		facts  databaseFacts
		haveDB bool
	)
	if sqlite.IsURL(cfg.DatabaseURL) {
		// The service's own file: the tool reads nothing of it (the service
		// holds it), so commits per saga and the ceiling are PostgreSQL's.
		facts.Name = cfg.DatabaseURL
		rep.Notes = append(rep.Notes, "SQLite: commits per saga and the INSERT ceiling are measured on PostgreSQL only")
	} else {
		var err error
		facts, err = readDatabaseFacts(ctx, cfg.DatabaseURL)
		haveDB = err == nil
		if err != nil {
			if cfg.Start {
				return nil, fmt.Errorf("the service's database (--database-url): %w", err)
			}
			rep.Notes = append(rep.Notes, fmt.Sprintf("database not reachable (%v): commits per saga and the ceiling are n/a", err))
		}
	}

	url := cfg.URL
	var svc *service
	if cfg.Start {
		svc, err = startService(ctx, cfg.Bin, cfg.DatabaseURL, progress)
		if err != nil {
			return nil, err
		}
		defer func() {
			if serr := svc.stop(); serr != nil && err == nil {
				err = serr
			}
		}()
		url = svc.url
		progress.printf("started tracseq-tx (pid %d) at %s on database %s\n", svc.pid(), url, facts.Name)
	}
	rep.ServiceURL = url
	client := newAPIClient(url, cfg.Token, cfg.Concurrency)
	if rep.Persistence, err = checkReady(ctx, client); err != nil {
		return nil, err
	}
	if rep.Persistence == httpapi.PersistenceMemory {
		rep.Notes = append(rep.Notes, "the service keeps sagas in memory: its database commits are not those of the sagas")
	}

	d := &driver{cfg: cfg, client: client, stubs: st, runID: saga.NewID().String(), progress: progress}
	var commits0, accepted int64
	if haveDB {
		if commits0, err = readCommitCount(ctx, cfg.DatabaseURL); err != nil {
			return nil, err
		}
	}
	if cfg.Warmup > 0 {
		w, err := d.runPhase(ctx, "warmup", cfg.Warmup, 0)
		if err != nil {
			return nil, err
		}
		accepted += w.Accepted
		if w.Errors > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%d errors during the warmup, such as: %s", w.Errors, oneLine(w.ErrorSamples[0], 160)))
		}
	}

	calls0 := st.counts()
	var use0, use1 procUsage
	if svc != nil {
		if use0, err = readProcUsage(svc.pid()); err != nil {
			return nil, err
		}
	}
	self0 := selfCPU()
	m, err := d.runPhase(ctx, "load", cfg.Duration, int64(cfg.Sagas))
	if err != nil {
		return nil, err
	}
	selfUsed := selfCPU() - self0
	if svc != nil {
		if use1, err = readProcUsage(svc.pid()); err != nil {
			return nil, err
		}
	}
	rep.Host.LoadAvgAfter = readLoadAvg()
	accepted += m.Accepted
	calls1 := st.counts()
	rep.Participant = stubCounts{
		Actions:       calls1.Actions - calls0.Actions,
		Refusals:      calls1.Refusals - calls0.Refusals,
		Compensations: calls1.Compensations - calls0.Compensations,
	}
	rep.fillOutcomes(m)
	rep.Host.ToolCPUCores = selfUsed.Seconds() / max(rep.Seconds, 1e-9)

	if svc != nil {
		rep.fillService(svc.pid(), use0, use1)
	} else {
		rep.Notes = append(rep.Notes, "service CPU and peak RSS are n/a: the tool did not start the service (--start)")
	}

	if haveDB {
		if cfg.StatsWait > 0 {
			progress.printf("waiting %s for PostgreSQL's statistics (idle backends report their commits after up to 10s)\n", cfg.StatsWait)
			if !pause(ctx, cfg.StatsWait) {
				return nil, fmt.Errorf("wait for statistics: %w", ctx.Err())
			}
		}
		commits1, err := readCommitCount(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err
		}
		if cfg.StatsWait < pgStatIdleInterval {
			rep.Notes = append(rep.Notes, fmt.Sprintf("--stats-wait %s is shorter than PostgreSQL's %s idle flush interval: commits per saga may be undercounted", cfg.StatsWait, pgStatIdleInterval))
		}
		db := &databaseReport{databaseFacts: facts, Commits: commits1 - commits0, Sagas: accepted}
		if accepted > 0 {
			db.CommitsPerSaga = float64(db.Commits) / float64(accepted)
			db.CommitsPerSecond = db.CommitsPerSaga * rep.SagasPerSecond
		}
		rep.Database = db
	}

	if cfg.Verify > 0 {
		progress.printf("verifying up to %d sagas of each end state\n", cfg.Verify)
		rep.Verification = verifySample(ctx, client, m.Outcomes, cfg.Verify, cfg)
	}

	if haveDB && cfg.CeilingDuration > 0 {
		progress.printf("measuring the database ceiling: single-row INSERT commits at c=%d for %s\n", cfg.Concurrency, cfg.CeilingDuration)
		c, err := measureCeiling(ctx, cfg.DatabaseURL, cfg.Concurrency, cfg.CeilingDuration)
		if err != nil {
			return rep, err
		}
		rep.Ceiling = c
		rep.fillRatio()
	}
	return rep, nil
}

// checkReady asks the service whether it is ready and returns its
// persistence mode.
func checkReady(ctx context.Context, c *httpapi.Client) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, readyCheckTimeout)
	defer cancel()
	r, status, err := c.Ready(ctx)
	if err != nil {
		return "", fmt.Errorf("reach the service at %s: %w", c.BaseURL, err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("the service at %s is not ready (HTTP %d): %s", c.BaseURL, status, r.Error)
	}
	return r.Persistence, nil
}

// isTerminal reports whether w is a terminal, where the progress line is
// rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
