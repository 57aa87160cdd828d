package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

func TestRefusedCodes(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"28P01": true, "28000": true, "3D000": true,
		"08006": false, "57P03": false, "53300": false, "42P01": false,
	} {
		err := fmt.Errorf("connect: %w", &pgconn.PgError{Code: code})
		if got := accessRefused(err); got != want {
			t.Errorf("accessRefused(SQLSTATE %s) = %v; want %v", code, got, want)
		}
	}
	if accessRefused(errors.New("dial tcp: connection refused")) {
		t.Error("a connection that never opened counts as refused by the database")
	}
}

// A database that answers and refuses (unknown role, unknown database) is
// ErrRefused, not ErrUnavailable: a configuration error.
func TestOpenRefused(t *testing.T) {
	t.Parallel()
	server, err := url.Parse(pgtest.ServerURL())
	if err != nil || server.Host == "" {
		t.Fatalf("TEST_DATABASE_URL %q is not a URL with a host", pgtest.ServerURL())
	}
	unknownRole := *server
	unknownRole.User = url.User("tracseq_no_such_role")
	unknownDB := *server
	unknownDB.Path = "/tracseq_no_such_database"
	for name, u := range map[string]string{"unknown role": unknownRole.String(), "unknown database": unknownDB.String()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Open(context.Background(), Config{URL: u, ConnectTimeout: 10 * time.Second})
			if !errors.Is(err, saga.ErrAccessRefused) || errors.Is(err, saga.ErrUnavailable) {
				t.Errorf("Open: %v; want ErrRefused", err)
			}
		})
	}
}
