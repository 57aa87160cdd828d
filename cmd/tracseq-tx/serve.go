package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/console"
	"github.com/tracseq/transaction-service/dtmapi"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/failover"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/metrics"
	participantclient "github.com/tracseq/transaction-service/participant"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/sqlite"
)

// Shutdown budget. Kubernetes and docker compose wait 30s by default before
// SIGKILL; the two phases fit in that.
const (
	// httpShutdownTimeout bounds the wait for in-flight API requests
	// (including ?wait= submits) after the listener closed.
	httpShutdownTimeout = 10 * time.Second
	// engineStopTimeout bounds the wait for running sagas to finish their
	// current participant call and release their leases.
	engineStopTimeout = 15 * time.Second

	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	// writeTimeout must exceed the longest ?wait= the API honours.
	writeTimeout = httpapi.MaxWaitDefault + 30*time.Second
)

// service is the running server: everything serve started, in the order
// close stops it.
type service struct {
	logger   *slog.Logger
	listener net.Listener
	http     *http.Server
	pprof    *http.Server
	engine   *engine.Coordinator
	notify   *postgres.Listener // nil without PostgreSQL
	store    saga.Store
	tracing  *sdktrace.TracerProvider // nil when tracing is off
	cancel   context.CancelFunc       // background work (failover reconnects)
	failed   chan error               // the HTTP server stopped on its own
	wg       sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

func (s *service) addr() string { return s.listener.Addr().String() }

// runServe starts the service and returns once it listens.
func (m *Main) runServe(ctx context.Context, args []string, env func(string) string, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: tracseq-tx serve\n\nRuns the service. It takes no flags: it is configured from the environment (see README.md).")
	}
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 {
		return usagef("serve takes no arguments (configuration comes from the environment)")
	}
	cfg, err := LoadConfig(env)
	if err != nil {
		return err
	}
	svc, err := startService(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.service != nil {
		go svc.close()
		return errors.New("serve: Main already used")
	}
	m.service = svc
	return nil
}

// newLogger returns the process logger: text or JSON on w, at the level.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// startService wires the store, the engine and the API, and starts them.
// On error everything started so far is stopped again.
func startService(ctx context.Context, cfg Config, stderr io.Writer) (_ *service, err error) {
	logger := newLogger(cfg, stderr)
	logger.Info("starting", "instance_id", cfg.InstanceID, "version", versionString(), "http_addr", cfg.HTTPAddr,
		"enable_persistence", cfg.Persistence, "database", redactURL(cfg.DatabaseURL), "max_concurrent_sagas", cfg.MaxConcurrentSagas,
		"lease_seconds", int(cfg.LeaseDuration/time.Second))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mx := metrics.New(reg)

	// Background work lives until Close, not until ctx (the signal context):
	// shutdown must be able to use it.
	bgCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	svc := &service{logger: logger, cancel: cancel, failed: make(chan error, 2)}
	defer func() {
		if err != nil {
			svc.close()
		}
	}()

	chain := saga.NewChain(cfg.AuditKey)
	svc.store, err = openStore(ctx, bgCtx, cfg, chain, logger, mx)
	if err != nil {
		return nil, err
	}

	if gr, ok := svc.store.(saga.GaugeReader); ok {
		mx.RegisterGauges(gr.Gauges, cfg.GaugeTTL)
	}
	svc.tracing, err = newTracerProvider(ctx, cfg.Tracing, cfg.InstanceID, stderr)
	if err != nil {
		return nil, err
	}
	var tracerProvider trace.TracerProvider
	if svc.tracing != nil {
		tracerProvider = svc.tracing
		logger.Info("tracing on", "exporter", cfg.Tracing.Exporter, "endpoint", cfg.Tracing.Endpoint,
			"service_name", cfg.Tracing.ServiceName)
	}

	// With PostgreSQL, work released by other instances and retries come
	// due are announced by NOTIFY: the poll is only a safety net. Without
	// LISTEN (DB_LISTEN=false, SQLite, memory) it is how they are found.
	listening := cfg.Persistence && cfg.Listen && cfg.SQLitePath == "" && isPostgresURL(cfg.DatabaseURL)
	claimInterval := cfg.claimPoll(listening)
	retention := cfg.retention()
	svc.engine, err = engine.New(svc.store, engine.Config{
		InstanceID:    cfg.InstanceID,
		ClaimInterval: claimInterval,
		// The engine's own cleanup deletes only what every status's
		// retention lets go; the retention loop below applies each one.
		CleanupAfter:       retention.Longest(),
		LeaseDuration:      cfg.LeaseDuration,
		MaxConcurrentSagas: cfg.MaxConcurrentSagas,
		AllowedHosts:       cfg.AllowedHosts,
		Invoker: participantclient.New(participantclient.Config{
			MaxConnsPerHost: cfg.MaxConnsPerHost,
			Observe:         mx.ParticipantCall,
		}),
		Observer:       mx,
		Logger:         logger,
		TracerProvider: tracerProvider,
	})
	if err != nil {
		return nil, fmt.Errorf("create engine: %w", err)
	}
	if err := svc.engine.Start(bgCtx); err != nil {
		return nil, fmt.Errorf("start engine: %w", err)
	}
	if listening {
		svc.notify, err = postgres.NewListener(postgres.ListenerConfig{
			DB:     dbConfig(cfg, logger, nil),
			Wake:   svc.engine.Wake,
			Logger: logger,
		})
		if err != nil {
			return nil, err
		}
		if err := svc.notify.Start(bgCtx); err != nil {
			return nil, fmt.Errorf("start listener: %w", err)
		}
	}

	svc.wg.Go(func() { runRetention(bgCtx, svc.engine, retention, logger) })

	auditStore, _ := svc.store.(saga.AuditStore)
	dtm, err := dtmapi.New(dtmapi.Config{
		Coordinator: svc.engine,
		Version:     versionString(),
		Logger:      logger.With("component", "dtm"),
	})
	if err != nil {
		return nil, fmt.Errorf("create DTM endpoint: %w", err)
	}
	api, err := httpapi.NewServer(httpapi.Config{
		Routes:         dtm.Routes(),
		Coordinator:    apiCoordinator{Coordinator: svc.engine, retention: retention},
		Tokens:         cfg.APITokens,
		Audit:          auditStore,
		Chain:          chain,
		Logger:         logger.With("component", "http"),
		Metrics:        mx.Handler(),
		Version:        versionString(),
		ObserveRequest: mx.ObserveHTTP,
		ReadAfterWrite: 2 * cfg.DBReadMaxLag,
	})
	if err != nil {
		return nil, fmt.Errorf("create API server: %w", err)
	}
	handler, err := withConsole(api, svc, logger)
	if err != nil {
		return nil, err
	}
	if len(cfg.APITokens) == 0 {
		logger.Warn("API_TOKENS is empty: the API is OPEN, anyone who reaches " + cfg.HTTPAddr +
			" can submit and control sagas; set API_TOKENS to require a bearer token")
	}

	svc.listener, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	svc.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	svc.serve(svc.http, svc.listener, "api")

	if cfg.PprofAddr != "" {
		ln, err := net.Listen("tcp", cfg.PprofAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on PPROF_ADDR %s: %w", cfg.PprofAddr, err)
		}
		svc.pprof = &http.Server{Handler: pprofHandler(), ReadHeaderTimeout: readHeaderTimeout}
		svc.serve(svc.pprof, ln, "pprof")
		logger.Warn("profiling enabled: pprof listening on "+ln.Addr().String()+" (keep it private)", "addr", ln.Addr().String())
	}

	logger.Info("listening on "+svc.addr(), "addr", svc.addr())
	return svc, nil
}

// withConsole mounts the web console at /ui/ (and GET / redirects there)
// beside the API. The console reads through the engine, as the API does
// (with the API's read routing: httpapi.Server.ReplicaReads),
// and the store's gauges; its data need the API's token when one is set.
func withConsole(api *httpapi.Server, svc *service, logger *slog.Logger) (http.Handler, error) {
	gr, ok := svc.store.(saga.GaugeReader)
	if !ok {
		logger.Warn("the web console is off: the store does not report gauges", "store", fmt.Sprintf("%T", svc.store))
		return api.Handler(), nil
	}
	cfg := console.Config{
		Source:  svc.engine,
		Gauges:  gr,
		Logger:  logger.With("component", "console"),
		Version: versionString(),
	}
	if api.TokensRequired() {
		cfg.Authorize = api.Authorize
	}
	con, err := console.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("create console: %w", err)
	}
	mux := http.NewServeMux()
	// The console's pages read like the API's GETs: from a read replica
	// when one is configured, except right after the same client's action.
	mux.Handle(console.Prefix, api.ReplicaReads(con.Handler()))
	mux.HandleFunc("GET /{$}", console.RedirectHome)
	mux.Handle("/", api.Handler())
	return mux, nil
}

// serve runs srv on ln in the background; an unexpected stop is reported
// on s.failed.
func (s *service) serve(srv *http.Server, ln net.Listener, name string) {
	s.wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.failed <- fmt.Errorf("%s server: %w", name, err)
		}
	})
}

// openStore returns the store the configuration asks for: memory when
// persistence is off; otherwise PostgreSQL (migrated) inside a failover
// store, which serves from memory while the database cannot be reached (at
// start-up, and with DB_OUTAGE_MODE=fallback whenever it stops answering)
// and moves what memory holds to it when it answers. With
// DB_OUTAGE_MODE=reject and a database that answers at start-up, the
// PostgreSQL store itself, whose outages are answered 503.
func openStore(ctx, bgCtx context.Context, cfg Config, chain *saga.Chain, logger *slog.Logger, mx *metrics.Metrics) (saga.Store, error) {
	if !cfg.Persistence {
		logger.Warn("persistence disabled: sagas live in memory only (ENABLE_PERSISTENCE=false)")
		mx.SetPersistence(false)
		return memory.New(memory.Config{Chain: chain}), nil
	}

	sealer, err := cfg.sealer()
	if err != nil {
		return nil, err
	}
	if sealer != nil {
		logger.Info("secret header values of definitions are encrypted at rest", "keys", len(cfg.DefinitionKeys))
	}
	if cfg.SQLitePath != "" {
		return openSQLite(ctx, cfg, sealer, chain, logger, mx)
	}

	// The pool gauges follow whichever PostgreSQL store is in use.
	var current atomic.Pointer[postgres.Store]
	mx.RegisterPool(func() (total, idle, inUse, maxConns int32) {
		pg := current.Load()
		if pg == nil {
			return 0, 0, 0, 0
		}
		st := pg.Pool().Stat()
		return st.TotalConns(), st.IdleConns(), st.AcquiredConns(), st.MaxConns()
	})
	var sizingChecked atomic.Bool
	connect := func(ctx context.Context) (*postgres.Store, error) {
		pcfg := dbConfig(cfg, logger, mx.ObserveDB)
		pcfg.Sealer = sealer
		pcfg.Chain = chain
		pg, err := postgres.Open(ctx, pcfg)
		if err != nil {
			return nil, err
		}
		version, err := pg.Migrate(ctx, logger)
		if err != nil {
			pg.Close()
			return nil, err
		}
		logger.Info("database ready", "persistence", postgres.Backend, "durable", true, "migration_version", version, "database", redactURL(cfg.DatabaseURL),
			"read_replicas", len(cfg.DatabaseReadURLs), "pooler", cmp.Or(cfg.DBPooler, "none"))
		if !sizingChecked.Swap(true) {
			checkPoolSizing(ctx, pg, cfg, logger)
		}
		current.Store(pg)
		return pg, nil
	}

	pg, err := connect(ctx)
	fallback := cfg.OutageMode == OutageFallback
	switch {
	case err == nil && !fallback:
		// DB_OUTAGE_MODE=reject: an outage after start-up is answered 503.
		mx.SetPersistence(true)
		return pg, nil
	case err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("open database: %w", err)
	case errors.Is(err, saga.ErrAccessRefused):
		// Memory mode is for a database that does not answer; one that
		// answers and refuses is misconfigured, and would refuse forever.
		return nil, fmt.Errorf("DATABASE_URL %s: the database answered and refused the connection; "+
			"fix the user, password or database name (this is a configuration error, not an outage): %w",
			redactURL(cfg.DatabaseURL), err)
	case err != nil:
		logger.Warn("DATABASE UNREACHABLE: starting in MEMORY mode; sagas accepted now are NOT durable "+
			"(\"durable\": false) until the database answers; reconnecting in the background",
			"database", redactURL(cfg.DatabaseURL), "error", err)
	}
	fcfg := failover.Config{
		Connect: func(ctx context.Context) (failover.Durable, error) {
			pg, err := connect(ctx)
			if err != nil {
				return nil, err // never a typed nil in the interface
			}
			return pg, nil
		},
		// DB_OUTAGE_MODE=fallback: an outage after start-up is met as one
		// at start-up, new sagas in memory until the database answers.
		Fallback:     fallback,
		Logger:       logger,
		Chain:        chain,
		OnModeChange: mx.SetPersistence,
	}
	if pg != nil {
		fcfg.Database = pg
	}
	fo, err := failover.New(fcfg)
	if err != nil {
		if pg != nil {
			pg.Close()
		}
		return nil, err
	}
	fo.Start(bgCtx)
	return fo, nil
}

// isPostgresURL reports whether a DATABASE_URL names PostgreSQL (a
// postgres:// or postgresql:// URL, or a keyword/value string): only then
// is there a server to LISTEN to.
func isPostgresURL(v string) bool {
	scheme, _, found := strings.Cut(v, "://")
	return !found || scheme == "postgres" || scheme == "postgresql"
}

// retention is the per-status retention of CLEANUP_*_AFTER_HOURS.
func (cfg Config) retention() saga.Retention {
	return saga.Retention{Completed: cfg.CleanupAfter, Compensated: cfg.CleanupCompensated,
		Cancelled: cfg.CleanupCancelled, TimedOut: cfg.CleanupTimedOut}
}

// apiCoordinator is the engine as the API serves it: on-demand cleanup
// applies the per-status retention.
type apiCoordinator struct {
	*engine.Coordinator
	retention saga.Retention
}

// Cleanup deletes the sagas whose retention has passed.
func (a apiCoordinator) Cleanup(ctx context.Context) (int, error) {
	return a.CleanupExpired(ctx, a.retention)
}

// runRetention deletes the sagas whose retention has passed every
// engine.CleanupIntervalDefault, until ctx ends.
func runRetention(ctx context.Context, c *engine.Coordinator, r saga.Retention, logger *slog.Logger) {
	ticker := time.NewTicker(engine.CleanupIntervalDefault)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		n, err := c.CleanupExpired(ctx, r)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Warn("clean up expired sagas", "error", err)
		case n > 0:
			logger.Info("cleaned up expired sagas", "deleted", n)
		}
	}
}

// dbConfig is the PostgreSQL store's configuration.
func dbConfig(cfg Config, logger *slog.Logger, observe func(string, time.Duration, error)) postgres.Config {
	return postgres.Config{
		URL:            cfg.DatabaseURL,
		DirectURL:      cfg.DatabaseDirectURL,
		ReadURLs:       cfg.DatabaseReadURLs,
		ReadMaxLag:     cfg.DBReadMaxLag,
		Pooler:         cfg.DBPooler,
		InstanceID:     cfg.InstanceID,
		MaxConns:       cfg.DBMaxConns,
		MinConns:       cfg.DBMinConns,
		Writers:        cfg.DBCommitWriters,
		MaxBatch:       cfg.DBCommitMaxBatch,
		ConnectTimeout: cfg.DBConnectTimeout,
		SlowQuery:      cfg.SlowQuery,
		Logger:         logger,
		Observe:        observe,
	}
}

// checkPoolSizing warns when the instances' pools together may open more
// connections than the server allows.
func checkPoolSizing(ctx context.Context, pg *postgres.Store, cfg Config, logger *slog.Logger) {
	if cfg.DBPooler != "" {
		logger.Info("connections go through " + cfg.DBPooler + ": size its server pool (default_pool_size) against max_connections")
		return
	}
	p, err := pg.CheckPoolSizing(ctx)
	switch {
	case err != nil:
		logger.Warn("could not check the pool sizing", "error", err)
	case !p.Fits():
		logger.Warn("POOL SIZING: the instances may open more connections than the database allows: "+p.String()+
			"; lower DB_MAX_CONNECTIONS, raise max_connections, or put PgBouncer in front (DB_POOLER)",
			"instances", p.Instances, "per_instance", p.PerInstance, "need", p.Need, "max_connections", p.MaxConnections)
	default:
		logger.Info("pool sizing: "+p.String(), "instances", p.Instances, "need", p.Need, "max_connections", p.MaxConnections)
	}
}

// openSQLite opens the SQLite store of cfg.SQLitePath, which migrates it.
// A file that cannot be opened (or that another process holds) stops the
// start: unlike an unreachable PostgreSQL, it is no outage to ride out in
// memory.
func openSQLite(ctx context.Context, cfg Config, sealer *saga.Sealer, chain *saga.Chain, logger *slog.Logger, mx *metrics.Metrics) (saga.Store, error) {
	st, err := sqlite.Open(ctx, sqlite.Config{
		Path:       cfg.SQLitePath,
		InstanceID: cfg.InstanceID,
		SlowQuery:  cfg.SlowQuery,
		Logger:     logger,
		Observe:    mx.ObserveDB,
		Sealer:     sealer,
		Chain:      chain,
	})
	if err != nil {
		return nil, fmt.Errorf("open DATABASE_URL %s: %w", cfg.DatabaseURL, err)
	}
	mx.RegisterPool(st.PoolStats)
	mx.SetPersistence(true)
	logger.Info("database ready: persistence sqlite, durable, one instance on this file (PostgreSQL for several)",
		"persistence", sqlite.Backend, "path", st.Path(), "durable", true, "migration_version", st.MigrationVersion())
	return st, nil
}

// pprofHandler serves net/http/pprof on its own mux (never the default one).
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// close stops the service: the listener first (no new requests), then the
// requests in flight, then the engine (running sagas finish their current
// call and release their leases), then the background work and the store.
func (s *service) close() error {
	s.closeOnce.Do(func() { s.closeErr = s.shutdown() })
	return s.closeErr
}

func (s *service) shutdown() error {
	var errs []error
	started := time.Now()
	s.logger.Info("shutting down")
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
		if err := s.http.Shutdown(ctx); err != nil {
			s.logger.Warn("API requests still running at the shutdown deadline: closing them", "error", err)
			_ = s.http.Close()
		}
		cancel()
	}
	if s.pprof != nil {
		_ = s.pprof.Close()
	}
	if s.engine != nil {
		ctx, cancel := context.WithTimeout(context.Background(), engineStopTimeout)
		if s.inMemory() {
			// Handing the sagas back, as Stop does, would lose them: no
			// database keeps them for another instance. Let them end first.
			s.drainMemory(ctx)
		}
		if err := s.engine.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop engine: %w", err))
		}
		cancel()
	}
	if s.notify != nil {
		s.notify.Stop()
	}
	if s.cancel != nil {
		s.cancel()
	}
	if s.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
		if err := s.tracing.Shutdown(ctx); err != nil {
			s.logger.Warn("flush spans at shutdown", "error", err)
		}
		cancel()
	}
	if s.store != nil {
		s.store.Close()
	}
	s.wg.Wait()
	err := errors.Join(errs...)
	if err != nil {
		s.logger.Error("stopped with errors", "error", err, "duration_ms", time.Since(started).Milliseconds())
	} else {
		s.logger.Info("stopped", "duration_ms", time.Since(started).Milliseconds())
	}
	return err
}
