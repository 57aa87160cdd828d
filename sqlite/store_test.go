package sqlite_test

import (
	"path/filepath"
	"testing"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/sqlite"
	"github.com/tracseq/transaction-service/storetest"
)

// newStore opens a store on a new file in a directory of the test's own.
func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "tracseq.db"), InstanceID: t.Name()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) saga.Store { return newStore(t) })
}
