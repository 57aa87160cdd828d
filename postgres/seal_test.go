package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/storetest"
)

// withSecrets gives a test saga secret headers: an Authorization, and one
// the definition names in secret_headers.
func withSecrets(sg *saga.Saga) *saga.Saga {
	sg.Definition.SecretHeaders = []string{"X-Internal-Token"}
	sg.Definition.Steps[0].Action.Headers["Authorization"] = "Bearer s3cret-auth"
	sg.Definition.Steps[1].Compensation.Headers = map[string]string{"x-internal-token": "s3cret-token"}
	return sg
}

// With a sealer, secret header values are encrypted in sagas.definition
// and decrypted on every read (get, claim, import); the other headers
// stay plain.
func TestDefinitionSecretsEncryptedAtRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	key := bytes.Repeat([]byte{42}, 32)
	sealer, err := saga.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	s := newStoreWith(t, postgres.Config{Sealer: sealer})

	created, _, err := s.CreateSaga(ctx, saga.NewSaga{Saga: withSecrets(storetest.NewTestSaga("", 2))})
	if err != nil {
		t.Fatal(err)
	}
	rec := importRecord()
	withSecrets(rec.Saga)
	if _, err := s.Import(ctx, rec); err != nil {
		t.Fatal(err)
	}

	rows, err := s.Pool().Query(ctx, `SELECT definition::text FROM sagas`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		n++
		if strings.Contains(raw, "s3cret") || !strings.Contains(raw, "tracseq-sealed:v1:") || !strings.Contains(raw, `"X-Test"`) {
			t.Errorf("stored definition: %s", raw)
		}
	}
	if rows.Err() != nil || n != 2 {
		t.Fatalf("%d definitions read: %v", n, rows.Err())
	}

	check := func(what string, sg *saga.Saga) {
		t.Helper()
		if got := sg.Definition.Steps[0].Action.Headers["Authorization"]; got != "Bearer s3cret-auth" {
			t.Errorf("%s: Authorization = %q", what, got)
		}
		if got := sg.Definition.Steps[1].Compensation.Headers["x-internal-token"]; got != "s3cret-token" {
			t.Errorf("%s: x-internal-token = %q", what, got)
		}
	}
	got, err := s.GetSaga(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("GetSaga", got)
	imported, err := s.GetSaga(ctx, rec.Saga.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("GetSaga of the imported saga", imported)
	claimed, err := s.ClaimSagas(ctx, "w", time.Minute, 10)
	if err != nil || len(claimed) == 0 {
		t.Fatalf("ClaimSagas = %d, %v", len(claimed), err)
	}
	for _, sg := range claimed {
		check("ClaimSagas", sg)
	}

	// The same database without the key: the saga cannot be read, and says
	// why.
	plain := openMigrated(t, postgres.Config{URL: poolURL(t, s)})
	if _, err := plain.GetSaga(ctx, created.ID); !errors.Is(err, saga.ErrSealed) {
		t.Errorf("GetSaga without the key: %v; want ErrSealed", err)
	}
}

// poolURL returns the connection string of s's database.
func poolURL(t *testing.T, s *postgres.Store) string {
	t.Helper()
	return s.Pool().Config().ConnString()
}
