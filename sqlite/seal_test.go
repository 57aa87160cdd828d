package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/sqlite"
	"github.com/tracseq/transaction-service/storetest"
)

// With a sealer, secret header values are encrypted in the file and
// decrypted on every read (get, claim, export).
func TestDefinitionSecretsEncryptedAtRest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sealer, err := saga.NewSealer(bytes.Repeat([]byte{42}, 32))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tracseq.db")
	s, err := sqlite.Open(ctx, sqlite.Config{Path: path, InstanceID: t.Name(), Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	in := storetest.NewTestSaga("", 2)
	in.Definition.SecretHeaders = []string{"X-Internal-Token"}
	in.Definition.Steps[0].Action.Headers["Authorization"] = "Bearer s3cret-auth"
	in.Definition.Steps[1].Compensation.Headers = map[string]string{"x-internal-token": "s3cret-token"}
	if _, _, err := s.CreateSaga(ctx, saga.NewSaga{Saga: in}); err != nil {
		t.Fatal(err)
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
	got, err := s.GetSaga(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	check("GetSaga", got)
	claimed, err := s.ClaimSagas(ctx, "w", time.Minute, 10)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("ClaimSagas = %d, %v", len(claimed), err)
	}
	check("ClaimSagas", claimed[0])
	if err := s.Export(ctx, 10, func(recs []saga.SagaRecord) error {
		for _, r := range recs {
			check("Export", r.Saga)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	var raw string
	if err := db.QueryRow(`SELECT definition FROM sagas`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if strings.Contains(raw, "s3cret") || !strings.Contains(raw, "tracseq-sealed:v1:") || !strings.Contains(raw, `"X-Test"`) {
		t.Errorf("stored definition: %s", raw)
	}

	// Without the key the saga cannot be read, and says why.
	plain, err := sqlite.Open(ctx, sqlite.Config{Path: path, InstanceID: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.GetSaga(ctx, in.ID); !errors.Is(err, saga.ErrSealed) {
		t.Errorf("GetSaga without the key: %v; want ErrSealed", err)
	}
}
