package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Defaults of the flags.
const (
	// URLDefault is where --url points when neither it nor $TRACSEQ_URL is set.
	URLDefault = "http://localhost:8080"
	// DatabaseURLDefault is the PostgreSQL of docker-compose.yml, used when
	// neither --database-url nor $DATABASE_URL is set.
	DatabaseURLDefault = "postgres://tracseq:tracseq_password@localhost:5432/tracseq_transactions?sslmode=disable"

	ConcurrencyDefault     = 16
	DurationDefault        = 10 * time.Second
	StepsDefault           = 2
	VerifyDefault          = 50
	CeilingDurationDefault = 5 * time.Second
	WarmupDefault          = 2 * time.Second
	// StatsWaitDefault exceeds PostgreSQL's PGSTAT_IDLE_INTERVAL (10s), the
	// longest an idle backend keeps its transaction counts to itself.
	StatsWaitDefault = 11 * time.Second

	maxConcurrency = 10_000
)

// Config is one load run, as the flags describe it.
type Config struct {
	URL         string // the service to drive (ignored with Start)
	Token       string // API bearer token, if the service wants one
	Start       bool   // start the service as a child process
	Bin         string // the tracseq-tx binary to run with Start; empty: go build it
	DatabaseURL string // the service's database: commit counts, ceiling, and DATABASE_URL with Start

	Concurrency int           // sagas in flight
	Duration    time.Duration // how long to start sagas; 0: until Sagas are done
	Sagas       int           // how many sagas to run; 0: until Duration has passed
	Warmup      time.Duration // load before measuring, not counted in throughput or latency

	Steps    int           // steps per saga
	Latency  time.Duration // the stubs' answer delay
	FailStep int           // the 1-based step that refuses (HTTP 400); 0: none
	FailRate float64       // the fraction of sagas whose FailStep refuses

	Verify          int           // how many sagas of each end state to read back; 0: none
	CeilingDuration time.Duration // how long to measure the INSERT ceiling; 0: skip it
	StatsWait       time.Duration // quiet time before reading the final commit count
	JSON            bool          // print the report as JSON on stdout (the table goes to stderr)
}

// errSilent marks an error already reported (by the flag package).
var errSilent = errors.New("already reported")

// usageError is a wrong command line: exit status 2, like the flag package.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCode is the process status for err: 2 for a usage error, 1 otherwise.
func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

// parseConfig reads the command line. env supplies TRACSEQ_URL,
// TRACSEQ_TOKEN and DATABASE_URL as defaults. Asking for help returns
// flag.ErrHelp.
func parseConfig(args []string, env func(string) string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("tracseq-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg Config
	fs.StringVar(&cfg.URL, "url", "", "drive the service running at this URL on this host (default $TRACSEQ_URL or "+URLDefault+")")
	fs.StringVar(&cfg.Token, "token", "", "API bearer token (default $TRACSEQ_TOKEN)")
	fs.BoolVar(&cfg.Start, "start", false, "start the service as a child process (go build ./cmd/tracseq-tx, or --bin) and stop it at the end")
	fs.StringVar(&cfg.Bin, "bin", "", "with --start: the tracseq-tx binary to run instead of building one")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "the service's database: postgres://… (commit counts, ceiling) or sqlite://FILE (default $DATABASE_URL or the PostgreSQL of docker-compose.yml)")
	fs.IntVar(&cfg.Concurrency, "c", ConcurrencyDefault, "concurrency: sagas in flight")
	fs.DurationVar(&cfg.Duration, "d", DurationDefault, "duration of the measured load (not with -n unless given too)")
	fs.IntVar(&cfg.Sagas, "n", 0, "number of sagas to measure instead of a duration")
	fs.DurationVar(&cfg.Warmup, "warmup", WarmupDefault, "load before measuring (0: none)")
	fs.IntVar(&cfg.Steps, "steps", StepsDefault, "steps per saga, each with a compensation")
	fs.DurationVar(&cfg.Latency, "latency", 0, "how long the participant stubs take to answer")
	fs.IntVar(&cfg.FailStep, "fail-step", 0, "the step (1-based) that refuses with HTTP 400, making sagas compensate (0: none)")
	fs.Float64Var(&cfg.FailRate, "fail-rate", 1, "with --fail-step: the fraction of sagas refused (0 to 1)")
	fs.BoolVar(&cfg.JSON, "json", false, "print the report as JSON on stdout (the table goes to stderr)")
	fs.IntVar(&cfg.Verify, "verify", VerifyDefault, "sagas of each end state to read back and check (0: none)")
	fs.DurationVar(&cfg.CeilingDuration, "ceiling-duration", CeilingDurationDefault, "how long to measure single-row INSERT commits/s (0: skip)")
	fs.DurationVar(&cfg.StatsWait, "stats-wait", StatsWaitDefault, "quiet time before reading the final commit count (PostgreSQL flushes idle backends' counts after up to 10s)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tracseq-load [--start | --url URL] [-c N] [-d D | -n N] [flags]")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Drives 2-step sagas against loopback participant stubs and reports throughput,")
		fmt.Fprintln(stderr, "latency, database commits per saga, service CPU and memory, and the database ceiling.")
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, "Flags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, err
		}
		return Config{}, fmt.Errorf("%w: %w", errSilent, &usageError{msg: err.Error()})
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return Config{}, usagef("tracseq-load takes no arguments, got %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if cfg.Start && set["url"] {
		return Config{}, usagef("--url and --start exclude each other: drive a running service or start one")
	}
	cfg.URL = strings.TrimRight(firstNonEmpty(cfg.URL, strings.TrimSpace(env("TRACSEQ_URL")), URLDefault), "/")
	cfg.Token = firstNonEmpty(cfg.Token, strings.TrimSpace(env("TRACSEQ_TOKEN")))
	cfg.DatabaseURL = firstNonEmpty(cfg.DatabaseURL, strings.TrimSpace(env("DATABASE_URL")), DatabaseURLDefault)
	if set["n"] && !set["d"] {
		cfg.Duration = 0 // -n alone: as long as the sagas take
	}
	if set["bin"] && !cfg.Start {
		return Config{}, usagef("--bin needs --start")
	}
	if set["fail-rate"] && cfg.FailStep == 0 {
		return Config{}, usagef("--fail-rate needs --fail-step")
	}
	if cfg.FailStep == 0 {
		cfg.FailRate = 0
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// validate checks the values, naming the flag of the first bad one.
func (c *Config) validate() error {
	switch {
	case c.Concurrency < 1 || c.Concurrency > maxConcurrency:
		return usagef("-c must be between 1 and %d, got %d", maxConcurrency, c.Concurrency)
	case c.Duration < 0:
		return usagef("-d must not be negative, got %s", c.Duration)
	case c.Sagas < 0:
		return usagef("-n must not be negative, got %d", c.Sagas)
	case c.Duration == 0 && c.Sagas == 0:
		return usagef("-d or -n must be positive: nothing to run")
	case c.Warmup < 0:
		return usagef("--warmup must not be negative, got %s", c.Warmup)
	case c.Steps < 1 || c.Steps > saga.MaxSteps:
		return usagef("--steps must be between 1 and %d, got %d", saga.MaxSteps, c.Steps)
	case c.Latency < 0:
		return usagef("--latency must not be negative, got %s", c.Latency)
	case c.FailStep < 0 || c.FailStep > c.Steps:
		return usagef("--fail-step must be between 1 and --steps (%d), got %d", c.Steps, c.FailStep)
	case c.FailRate < 0 || c.FailRate > 1:
		return usagef("--fail-rate must be between 0 and 1, got %g", c.FailRate)
	case c.Verify < 0:
		return usagef("--verify must not be negative, got %d", c.Verify)
	case c.CeilingDuration < 0:
		return usagef("--ceiling-duration must not be negative, got %s", c.CeilingDuration)
	case c.StatsWait < 0:
		return usagef("--stats-wait must not be negative, got %s", c.StatsWait)
	}
	return nil
}

// firstNonEmpty returns the first non-empty string.
func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
