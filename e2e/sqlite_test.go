package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracseq/transaction-service/sqlite"
)

// TestSQLiteSecondInstanceRefused starts a second instance on the SQLite
// file an instance runs on: it must exit at once with status 1, saying
// that the file is in use, by whom, and that PostgreSQL runs several
// instances; the first instance keeps serving.
func TestSQLiteSecondInstanceRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tracseq.db")
	first := startInstance(t, instanceConfig{DatabaseURL: sqlite.URL(path), InstanceID: "sqlite-first"})

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, "serve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "DATABASE_URL=" + sqlite.URL(path),
		"INSTANCE_ID=sqlite-second", "HTTP_ADDR=127.0.0.1:0"}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the second instance still ran after %v:\n%s", startTimeout, out)
	}
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 {
		t.Errorf("the second instance exited with %v (status %d), want status 1", err, code)
	}
	for _, want := range []string{"in use by another process", "instance=sqlite-first", path, "PostgreSQL"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the second instance's output lacks %q:\n%s", want, out)
		}
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	if r, status, err := first.client.Ready(rctx); err != nil || status != 200 || r.Persistence != "sqlite" || r.Path != path {
		t.Errorf("the first instance after the refusal: %+v (HTTP %d, %v)", r, status, err)
	}
}
