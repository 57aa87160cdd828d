package postgres_test

import (
	"context"
	"testing"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) saga.Store {
		return newStore(t)
	})
}

// newStore returns a store on a fresh, migrated database, closed when the
// test ends. Pools are small: many tests run at once on one server.
func newStore(t testing.TB) *postgres.Store {
	t.Helper()
	return newStoreWith(t, postgres.Config{})
}

// newStoreWith is newStore with cfg (its URL is filled in).
func newStoreWith(t testing.TB, cfg postgres.Config) *postgres.Store {
	t.Helper()
	cfg.URL = pgtest.NewDatabase(t)
	return openMigrated(t, cfg)
}

// openMigrated opens a store on cfg.URL and migrates its database.
func openMigrated(t testing.TB, cfg postgres.Config) *postgres.Store {
	t.Helper()
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 4
	}
	if cfg.MinConns == 0 {
		cfg.MinConns = 1
	}
	ctx := context.Background()
	s, err := postgres.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	if _, err := s.Migrate(ctx, nil); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// TestConformanceThroughPgBouncer runs the conformance suite through the
// PgBouncer in transaction pooling mode that scripts/test.sh starts, with
// DB_POOLER=pgbouncer: no prepared statement outlives its transaction.
// Migrations go straight to the server (DirectURL), as in the service.
func TestConformanceThroughPgBouncer(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) saga.Store {
		direct := pgtest.NewDatabase(t)
		s := openMigrated(t, postgres.Config{URL: pgtest.PgBouncerURL(t, direct), DirectURL: direct,
			Pooler: postgres.PoolerPgBouncer})
		return s
	})
}

func TestMinConnsZeroIsKept(t *testing.T) {
	t.Parallel()
	s, err := postgres.Open(t.Context(), postgres.Config{URL: pgtest.NewDatabase(t), MaxConns: 3, MinConns: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Pool().Config().MinConns; got != 0 {
		t.Fatalf("MinConns 0 became %d", got)
	}
}
