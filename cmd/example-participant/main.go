package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Defaults of the flags.
const (
	AddrDefault            = ":9090"
	shutdownTimeoutDefault = 5 * time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "example-participant:", err)
		os.Exit(1)
	}
}

// stringList is a flag that may be repeated and holds comma-separated values.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// run parses args, serves until ctx is done and shuts down. ready, when not
// nil, is told the address the server listens on.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	fs := flag.NewFlagSet("example-participant", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg   Config
		fails stringList
	)
	addr := fs.String("addr", AddrDefault, "listen address")
	fs.Var(&fails, "fail-step", "route that answers 402, e.g. payments/charge (repeatable, comma-separated)")
	fs.Float64Var(&cfg.FailRate, "fail-rate", 0, "probability (0 to 1) of answering 503")
	fs.DurationVar(&cfg.Latency, "latency", 0, "time waited before each answer, e.g. 20ms")
	dbURL := fs.String("database-url", "", "PostgreSQL URL: keep effects in the database behind the saga barrier (exactly once, late actions refused)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		return fmt.Errorf("-fail-rate must be between 0 and 1 (got %v)", cfg.FailRate)
	}
	if cfg.Latency < 0 {
		return fmt.Errorf("-latency must not be negative (got %v)", cfg.Latency)
	}
	known := make(map[string]bool, len(routes))
	for _, r := range routes {
		known[r.path] = true
	}
	for _, f := range fails {
		if !known[strings.Trim(f, "/ ")] {
			return fmt.Errorf("-fail-step %q is not a route of this service", f)
		}
	}
	cfg.FailSteps = fails
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	var handler http.Handler = NewServer(cfg)
	if *dbURL != "" {
		pool, err := pgxpool.New(ctx, *dbURL)
		if err != nil {
			return fmt.Errorf("-database-url: %w", err)
		}
		defer pool.Close()
		if handler, err = NewDurableServer(ctx, pool, cfg); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	cfg.Logger.Info("example participant listening", "addr", ln.Addr().String(),
		"fail_steps", fails.String(), "fail_rate", cfg.FailRate, "latency", cfg.Latency)
	if ready != nil {
		ready(ln.Addr().String())
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeoutDefault)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
