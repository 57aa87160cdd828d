package main

import (
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// envOf returns an env function over a map.
func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(envOf(nil))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	host, _ := os.Hostname()
	want := Config{
		DatabaseURL:        DatabaseURLDefault,
		SQLitePath:         "tracseq.db",
		DBCommitWriters:    2,
		DBCommitMaxBatch:   128,
		DBMaxConns:         20,
		DBMinConns:         5,
		DBConnectTimeout:   30 * time.Second,
		Persistence:        true,
		CleanupAfter:       24 * time.Hour,
		CleanupCompensated: 24 * time.Hour,
		CleanupCancelled:   24 * time.Hour,
		CleanupTimedOut:    24 * time.Hour,
		DBReadMaxLag:       time.Second,
		Listen:             true,
		HTTPAddr:           ":8080",
		LogLevel:           slog.LevelInfo,
		LogFormat:          "text",
		InstanceID:         fmt.Sprintf("%s-%d", host, os.Getpid()),
		LeaseDuration:      15 * time.Second,
		MaxConcurrentSagas: 1000,
		MaxConnsPerHost:    256,
		SlowQuery:          200 * time.Millisecond,
		OutageMode:         "fallback",
		GaugeTTL:           5 * time.Second,
		Tracing:            TracingConfig{ServiceName: ServiceNameDefault},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestLoadConfigValues(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"DATABASE_URL":                    "postgres://u:p@db:5433/x?sslmode=disable",
		"DB_MAX_CONNECTIONS":              "40",
		"DB_MIN_CONNECTIONS":              "0",
		"DB_COMMIT_WRITERS":               "8",
		"DB_COMMIT_MAX_BATCH":             "64",
		"DB_CONNECTION_TIMEOUT_SECONDS":   "5",
		"ENABLE_PERSISTENCE":              "false",
		"CLEANUP_AFTER_HOURS":             "48",
		"HTTP_ADDR":                       "127.0.0.1:0",
		"LOG_LEVEL":                       "DEBUG",
		"LOG_FORMAT":                      "JSON",
		"API_TOKENS":                      " a1 , ,b2,",
		"INSTANCE_ID":                     "node-7",
		"LEASE_SECONDS":                   "30",
		"MAX_CONCURRENT_SAGAS":            "64",
		"PARTICIPANT_ALLOWED_HOSTS":       "inventory.local, payments.local:8443",
		"PARTICIPANT_MAX_CONNS_PER_HOST":  "1024",
		"DB_SLOW_QUERY_MS":                "50",
		"PPROF_ADDR":                      "localhost:6060",
		"DATABASE_DIRECT_URL":             "postgres://u:p@db:5432/x?sslmode=disable",
		"DATABASE_READ_URL":               "postgres://u:p@r1:5432/x, postgres://u:p@r2:5432/x",
		"DB_READ_MAX_LAG_MS":              "250",
		"DB_POOLER":                       "PgBouncer",
		"CLEANUP_COMPENSATED_AFTER_HOURS": "720",
		"CLEANUP_TIMED_OUT_AFTER_HOURS":   "168",
		"CLAIM_POLL_SECONDS":              "30",
		"METRICS_GAUGE_TTL_MS":            "250",
		"OTEL_EXPORTER_OTLP_ENDPOINT":     "http://collector:4318",
		"OTEL_SERVICE_NAME":               "tx-eu",
		"DB_OUTAGE_MODE":                  "Reject",
	}
	cfg, err := LoadConfig(envOf(env))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := Config{
		DatabaseURL:        "postgres://u:p@db:5433/x?sslmode=disable",
		DBMaxConns:         40,
		DBMinConns:         0,
		DBCommitWriters:    8,
		DBCommitMaxBatch:   64,
		DBConnectTimeout:   5 * time.Second,
		Persistence:        false,
		CleanupAfter:       48 * time.Hour,
		CleanupCompensated: 720 * time.Hour,
		CleanupCancelled:   48 * time.Hour,
		CleanupTimedOut:    168 * time.Hour,
		DatabaseDirectURL:  "postgres://u:p@db:5432/x?sslmode=disable",
		DatabaseReadURLs:   []string{"postgres://u:p@r1:5432/x", "postgres://u:p@r2:5432/x"},
		DBReadMaxLag:       250 * time.Millisecond,
		DBPooler:           "pgbouncer",
		ClaimPoll:          30 * time.Second,
		Listen:             true,
		HTTPAddr:           "127.0.0.1:0",
		LogLevel:           slog.LevelDebug,
		LogFormat:          "json",
		APITokens:          []string{"a1", "b2"},
		InstanceID:         "node-7",
		LeaseDuration:      30 * time.Second,
		MaxConcurrentSagas: 64,
		AllowedHosts:       []string{"inventory.local", "payments.local:8443"},
		MaxConnsPerHost:    1024,
		SlowQuery:          50 * time.Millisecond,
		PprofAddr:          "localhost:6060",
		OutageMode:         "reject",
		GaugeTTL:           250 * time.Millisecond,
		Tracing:            TracingConfig{Exporter: TracesOTLP, Endpoint: "http://collector:4318/v1/traces", ServiceName: "tx-eu"},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("values:\n got %+v\nwant %+v", cfg, want)
	}
}

func TestLoadConfigStore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env             map[string]string
		wantURL, wantDB string // DatabaseURL, SQLitePath
	}{
		{nil, "sqlite://tracseq.db", "tracseq.db"},
		{map[string]string{"TRACSEQ_DATA_DIR": "/var/lib/tracseq"}, "sqlite:///var/lib/tracseq/tracseq.db", "/var/lib/tracseq/tracseq.db"},
		{map[string]string{"TRACSEQ_DATA_DIR": "data"}, "sqlite://data/tracseq.db", "data/tracseq.db"},
		{map[string]string{"DATABASE_URL": "sqlite:///srv/saga.db", "TRACSEQ_DATA_DIR": "/ignored"}, "sqlite:///srv/saga.db", "/srv/saga.db"},
		{map[string]string{"DATABASE_URL": "sqlite://rel/saga.db"}, "sqlite://rel/saga.db", "rel/saga.db"},
		{map[string]string{"DATABASE_URL": "postgres://u@db/x"}, "postgres://u@db/x", ""},
		{map[string]string{"DATABASE_URL": "postgresql://u@db/x"}, "postgresql://u@db/x", ""},
		{map[string]string{"DATABASE_URL": "host=db dbname=x"}, "host=db dbname=x", ""},
	}
	for _, tc := range tests {
		cfg, err := LoadConfig(envOf(tc.env))
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if cfg.DatabaseURL != tc.wantURL || cfg.SQLitePath != tc.wantDB {
			t.Errorf("%v: DatabaseURL %q SQLitePath %q, want %q %q", tc.env, cfg.DatabaseURL, cfg.SQLitePath, tc.wantURL, tc.wantDB)
		}
	}
}

func TestLoadConfigBadValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string // substrings of the error
		not  string   // must not appear in the error
	}{
		{"max conns not a number", map[string]string{"DB_MAX_CONNECTIONS": "abc"},
			[]string{`DB_MAX_CONNECTIONS="abc": must be a positive integer`}, ""},
		{"max conns zero", map[string]string{"DB_MAX_CONNECTIONS": "0"},
			[]string{`DB_MAX_CONNECTIONS="0": must be a positive integer`}, ""},
		{"max conns huge", map[string]string{"DB_MAX_CONNECTIONS": "99999999999"},
			[]string{`DB_MAX_CONNECTIONS="99999999999"`}, ""},
		{"min conns negative", map[string]string{"DB_MIN_CONNECTIONS": "-1"},
			[]string{`DB_MIN_CONNECTIONS="-1": must be a non-negative integer`}, ""},
		{"min above max", map[string]string{"DB_MIN_CONNECTIONS": "30", "DB_MAX_CONNECTIONS": "10"},
			[]string{"DB_MIN_CONNECTIONS=30 must not exceed DB_MAX_CONNECTIONS=10"}, ""},
		{"writers zero", map[string]string{"DB_COMMIT_WRITERS": "0"},
			[]string{`DB_COMMIT_WRITERS="0": must be a positive integer`}, ""},
		{"writers above max", map[string]string{"DB_COMMIT_WRITERS": "9", "DB_MAX_CONNECTIONS": "8"},
			[]string{"DB_COMMIT_WRITERS=9 must not exceed DB_MAX_CONNECTIONS=8"}, ""},
		{"writers above default max", map[string]string{"DB_COMMIT_WRITERS": "21"},
			[]string{"DB_COMMIT_WRITERS=21 must not exceed DB_MAX_CONNECTIONS=20"}, ""},
		{"max batch zero", map[string]string{"DB_COMMIT_MAX_BATCH": "0"},
			[]string{`DB_COMMIT_MAX_BATCH="0": must be a positive integer`}, ""},
		{"min above default max", map[string]string{"DB_MIN_CONNECTIONS": "21"},
			[]string{"DB_MIN_CONNECTIONS=21 must not exceed DB_MAX_CONNECTIONS=20"}, ""},
		{"timeout float", map[string]string{"DB_CONNECTION_TIMEOUT_SECONDS": "1.5"},
			[]string{`DB_CONNECTION_TIMEOUT_SECONDS="1.5": must be a positive integer`}, ""},
		{"persistence", map[string]string{"ENABLE_PERSISTENCE": "maybe"},
			[]string{`ENABLE_PERSISTENCE="maybe": must be true or false`}, ""},
		{"cleanup", map[string]string{"CLEANUP_AFTER_HOURS": "0"},
			[]string{`CLEANUP_AFTER_HOURS="0": must be a positive integer`}, ""},
		{"http addr", map[string]string{"HTTP_ADDR": "8080"},
			[]string{`HTTP_ADDR="8080": must be host:port or :port`}, ""},
		{"http port", map[string]string{"HTTP_ADDR": ":99999"},
			[]string{`HTTP_ADDR=":99999": port must be a number`}, ""},
		{"log level", map[string]string{"LOG_LEVEL": "verbose"},
			[]string{`LOG_LEVEL="verbose": must be one of debug, info, warn, error`}, ""},
		{"gauge ttl", map[string]string{"METRICS_GAUGE_TTL_MS": "0"},
			[]string{`METRICS_GAUGE_TTL_MS="0": must be a positive integer`}, ""},
		{"log format", map[string]string{"LOG_FORMAT": "xml"},
			[]string{`LOG_FORMAT="xml": must be text or json`}, ""},
		{"token with space", map[string]string{"API_TOKENS": "good,bad token"},
			[]string{"API_TOKENS: token 2 contains whitespace"}, "bad token"},
		{"instance id", map[string]string{"INSTANCE_ID": "a b"},
			[]string{`INSTANCE_ID="a b": must be at most`}, ""},
		{"lease", map[string]string{"LEASE_SECONDS": "-5"},
			[]string{`LEASE_SECONDS="-5": must be a positive integer`}, ""},
		{"participant conns", map[string]string{"PARTICIPANT_MAX_CONNS_PER_HOST": "0"},
			[]string{`PARTICIPANT_MAX_CONNS_PER_HOST="0": must be`}, ""},
		{"max sagas", map[string]string{"MAX_CONCURRENT_SAGAS": "lots"},
			[]string{`MAX_CONCURRENT_SAGAS="lots": must be a positive integer`}, ""},
		{"allowed hosts url", map[string]string{"PARTICIPANT_ALLOWED_HOSTS": "ok.local,http://x.local/"},
			[]string{`PARTICIPANT_ALLOWED_HOSTS="ok.local,http://x.local/"`, "not a host name"}, ""},
		{"slow query", map[string]string{"DB_SLOW_QUERY_MS": "fast"},
			[]string{`DB_SLOW_QUERY_MS="fast": must be a positive integer`}, ""},
		{"pprof addr", map[string]string{"PPROF_ADDR": "nowhere"},
			[]string{`PPROF_ADDR="nowhere": must be host:port`}, ""},
		{"pprof on api addr", map[string]string{"PPROF_ADDR": ":8080"},
			[]string{`PPROF_ADDR=":8080" must differ from HTTP_ADDR`}, ""},
		{"outage mode", map[string]string{"DB_OUTAGE_MODE": "memory"},
			[]string{`DB_OUTAGE_MODE="memory": must be fallback or reject`}, ""},
		{"database url", map[string]string{"DATABASE_URL": "postgres://u:secret@db:notaport/x"},
			[]string{"DATABASE_URL: not a PostgreSQL connection string", "invalid port"}, "secret"},
		{"pooler", map[string]string{"DB_POOLER": "pgpool"},
			[]string{`DB_POOLER="pgpool": must be none or pgbouncer`}, ""},
		{"pooler without direct url", map[string]string{"DB_POOLER": "pgbouncer"},
			[]string{"DB_POOLER=pgbouncer needs DATABASE_DIRECT_URL"}, ""},
		{"read url", map[string]string{"DATABASE_READ_URL": "postgres://r1/x,postgres://u:secret@r2:port/x"},
			[]string{"DATABASE_READ_URL: item 2 is not a PostgreSQL connection URL"}, "secret"},
		{"read lag", map[string]string{"DB_READ_MAX_LAG_MS": "0"},
			[]string{`DB_READ_MAX_LAG_MS="0": must be a positive integer`}, ""},
		{"retention", map[string]string{"CLEANUP_COMPENSATED_AFTER_HOURS": "-1"},
			[]string{`CLEANUP_COMPENSATED_AFTER_HOURS="-1": must be a positive integer`}, ""},
		{"claim poll", map[string]string{"CLAIM_POLL_SECONDS": "0"},
			[]string{`CLAIM_POLL_SECONDS="0": must be a positive integer`}, ""},
		{"database scheme", map[string]string{"DATABASE_URL": "mysql://u:secret@db/x"},
			[]string{"DATABASE_URL: unknown scheme \"mysql\"", "sqlite://"}, "secret"},
		{"sqlite url", map[string]string{"DATABASE_URL": "sqlite://tracseq.db?_pragma=synchronous(OFF)"},
			[]string{"DATABASE_URL: a sqlite:// URL takes no parameters"}, "synchronous(OFF)"},
		{"several at once", map[string]string{"DB_MAX_CONNECTIONS": "x", "LOG_FORMAT": "yaml"},
			[]string{`DB_MAX_CONNECTIONS="x"`, `LOG_FORMAT="yaml"`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadConfig(envOf(tt.env))
			if err == nil {
				t.Fatalf("LoadConfig(%v) succeeded, want an error", tt.env)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.not != "" && strings.Contains(err.Error(), tt.not) {
				t.Errorf("error %q reveals %q", err, tt.not)
			}
		})
	}
}

func TestLoadConfigBooleans(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{"true": true, "TRUE": true, "1": true, "yes": true, "false": false, "0": false, "off": false, "": true} {
		cfg, err := LoadConfig(envOf(map[string]string{"ENABLE_PERSISTENCE": v}))
		if err != nil {
			t.Fatalf("ENABLE_PERSISTENCE=%q: %v", v, err)
		}
		if cfg.Persistence != want {
			t.Errorf("ENABLE_PERSISTENCE=%q: got %v, want %v", v, cfg.Persistence, want)
		}
	}
}

func TestClaimPollByMode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		set       time.Duration
		listening bool
		want      time.Duration
	}{
		{0, true, ClaimPollDefault},
		{0, false, ClaimPollUnlistenedDefault},
		{30 * time.Second, true, 30 * time.Second},
		{30 * time.Second, false, 30 * time.Second},
	} {
		if got := (Config{ClaimPoll: tc.set}).claimPoll(tc.listening); got != tc.want {
			t.Errorf("claimPoll(set %v, listening %v) = %v, want %v", tc.set, tc.listening, got, tc.want)
		}
	}
}

// Unset, DB_COMMIT_WRITERS is at most the pool's size.
func TestLoadConfigWritersFitPool(t *testing.T) {
	t.Parallel()
	cfg, err := LoadConfig(envOf(map[string]string{"DB_MAX_CONNECTIONS": "1", "DB_MIN_CONNECTIONS": "0"}))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.DBCommitWriters != 1 {
		t.Errorf("DBCommitWriters = %d with a pool of 1, want 1", cfg.DBCommitWriters)
	}
}
