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
	if _, err := postgres.Migrate(ctx, s.Pool(), nil); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}
