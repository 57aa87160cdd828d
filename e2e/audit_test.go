package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/client"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// runBinary runs a one-shot command of the service binary with env and
// returns its standard output and exit status.
func runBinary(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String() + errOut.String(), exit.ExitCode()
	}
	t.Fatalf("run %v: %v", args, err)
	return "", 0
}

// checkAuditChains runs `tracseq-tx audit verify` on the database an
// end-to-end test leaves (its instances stopped first when it is a SQLite
// file, which one process holds at a time) and fails the test unless
// every saga's chain holds.
func checkAuditChains(t *testing.T, dbURL string, sagas int, stop ...*instance) {
	t.Helper()
	if strings.HasPrefix(dbURL, "sqlite:") {
		for _, in := range stop {
			in.terminate(t)
			if _, ok := in.waitExit(exitTimeout); !ok {
				t.Fatalf("%s did not exit", in.id)
			}
		}
	}
	out, code := runBinary(t, []string{"DATABASE_URL=" + dbURL}, "audit", "verify", "--json")
	var rep struct {
		Sagas  int   `json:"sagas"`
		Events int64 `json:"events"`
		Broken []struct {
			SagaID  string `json:"saga_id"`
			Seq     int64  `json:"seq"`
			Problem string `json:"problem"`
		} `json:"broken"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || rep.Sagas < sagas || len(rep.Broken) != 0 {
		t.Errorf("audit verify: exit %d, %d sagas (want %d), broken %v (%v)\n%s", code, rep.Sagas, sagas, rep.Broken, err, out)
		return
	}
	t.Logf("audit verify: %d sagas, %d events, every chain holds", rep.Sagas, rep.Events)
}

// TestOperatorRequestsInTheTrail pauses a saga with a reason through the
// command line under a named token, and sends a cancel while a pause is
// being carried out: the events say who asked what and why, both requests
// are in the trail, and audit verify finds every chain intact; after one
// event's data is edited with SQL it names that saga and event.
func TestOperatorRequestsInTheTrail(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	p := newStub(t, 400*time.Millisecond, 400*time.Millisecond)
	in := startInstance(t, instanceConfig{DatabaseURL: dbURL, InstanceID: "audit-1",
		APITokens: "lab-ops:e2e-ops-secret,ci-bot:e2e-ci-secret"})
	ctx := context.Background()
	submit := func(key string) string {
		t.Helper()
		s, _, err := in.client.Submit(ctx, p.definition("audited", key, plan{flakyStep: -1}), client.WithSubmitReason("e2e "+key))
		if err != nil {
			t.Fatal(err)
		}
		return s.ID
	}
	cli := func(args ...string) {
		t.Helper()
		if out, code := runBinary(t, []string{"TRACSEQ_URL=" + in.url, "TRACSEQ_TOKEN=e2e-ops-secret"}, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}

	paused := submit("audit-pause")
	cli("pause", paused, "--reason", "waiting for the stock count")
	both := submit("audit-both")
	cli("pause", both, "--reason", "hold on")
	cli("cancel", both, "--reason", "order withdrawn")

	waitPaused := func(id string) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			s, err := in.client.Get(ctx, id)
			if err == nil && s.Status == saga.SagaStatusPaused {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("saga %s not Paused after 30 s", id)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitPaused(paused)
	waitEnded(t, in.client, []string{both}, 60*time.Second)

	requests := func(id string) []string {
		t.Helper()
		evs, err := in.client.Events(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range evs {
			if e.Type != saga.EventOperatorRequested && e.Type != saga.EventOperatorRequestSuperseded &&
				e.Type != saga.EventOperatorRequestCarriedOut && e.Type != saga.EventSagaCreated {
				continue
			}
			var d map[string]any
			_ = json.Unmarshal(e.Data, &d)
			line := string(e.Type) + " by " + e.Actor
			if a, ok := d["action"].(string); ok {
				line += " " + a
			}
			if r, ok := d["reason"].(string); ok {
				line += ": " + r
			}
			out = append(out, line)
		}
		return out
	}
	got := requests(paused)
	want := []string{"SagaCreated by lab-ops: e2e audit-pause", "OperatorRequested by lab-ops pause: waiting for the stock count",
		"OperatorRequestCarriedOut by lab-ops pause"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("trail of the paused saga:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	got = requests(both)
	joined := strings.Join(got, "|")
	for _, w := range []string{"OperatorRequested by lab-ops pause: hold on", "OperatorRequested by lab-ops cancel: order withdrawn",
		"OperatorRequestCarriedOut by lab-ops cancel"} {
		if !strings.Contains(joined, w) {
			t.Errorf("trail of the saga paused then cancelled lacks %q:\n  %s", w, strings.Join(got, "\n  "))
		}
	}
	if s, err := in.client.Get(ctx, both); err != nil || s.Status != saga.SagaStatusCancelled {
		t.Errorf("saga paused then cancelled ended %v (%v), want Cancelled", s.Status, err)
	}

	checkAuditChains(t, dbURL, 2)
	pg := queryInt(t, dbURL, `SELECT count(*) FROM saga_events WHERE actor = 'lab-ops'`)
	if pg < 5 {
		t.Errorf("%d events by lab-ops in the database, want at least 5", pg)
	}
	// An edit of one event's data is found and named.
	seq := queryInt(t, dbURL, `SELECT seq FROM saga_events WHERE saga_id = '`+paused+`' AND event_type = 'OperatorRequested'`)
	execSQL(t, dbURL, `UPDATE saga_events SET data = '{"action": "pause", "reason": "nothing to see"}' WHERE saga_id = '`+paused+
		`' AND event_type = 'OperatorRequested'`)
	out, code := runBinary(t, []string{"DATABASE_URL=" + dbURL}, "audit", "verify")
	if code != 1 || !strings.Contains(out, fmt.Sprintf("BROKEN saga %s: event %d", paused, seq)) || strings.Contains(out, both) {
		t.Errorf("audit verify after the edit: exit %d\n%s", code, out)
	}
}

// execSQL runs a statement on the test's PostgreSQL database.
func execSQL(t *testing.T, dbURL, query string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to the test database: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
