package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// TestRetentionAndLegalHold runs the service with a longer retention for
// Compensated sagas, ages its sagas in the database, and checks what
// cleanup (on demand, and --direct) deletes: the Completed ones, not the
// Compensated ones still within their retention, never a held one.
func TestRetentionAndLegalHold(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbURL := pgtest.NewDatabase(t)
	env := map[string]string{"DATABASE_URL": dbURL, "CLEANUP_AFTER_HOURS": "24", "CLEANUP_COMPENSATED_AFTER_HOURS": "72"}
	b := setup(t, env)
	p := newParticipant(t)
	p.handle("/payments/charge", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("refuse") != "" {
			http.Error(w, `{"error": "refused"}`, http.StatusPaymentRequired)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	})
	submit := func(name string, refuse bool) string {
		t.Helper()
		def := p.twoStep(name)
		if refuse {
			def.Steps[1].Action.URL += "?refuse=1"
		}
		s, _, err := b.client.Submit(ctx, def, 20*time.Second)
		if err != nil {
			t.Fatalf("submit %s: %v", name, err)
		}
		return s.ID
	}
	completed, held, compensated := submit("completed", false), submit("held", false), submit("compensated", true)

	out, err := b.cli(t, "hold", held, "--reason", "litigation 2024-17")
	if err != nil || !strings.Contains(out, "under legal hold") {
		t.Fatalf("hold: %q, %v", out, err)
	}
	events, err := b.client.Events(ctx, held)
	if err != nil {
		t.Fatal(err)
	}
	if e := events[len(events)-1]; e.Type != saga.EventLegalHoldChanged || e.Actor != saga.AnonymousActor ||
		!strings.Contains(string(e.Data), `"legal_hold":true`) || !strings.Contains(string(e.Data), `"reason":"litigation 2024-17"`) {
		t.Errorf("the last event of the held saga is %+v, want LegalHoldChanged with the hold and its reason", e)
	}
	if shown, err := b.client.Get(ctx, held); err != nil || !shown.LegalHold {
		t.Fatalf("the held saga reads %+v, %v", shown, err)
	}

	// Two days pass.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `UPDATE sagas SET completed_at = completed_at - interval '48 hours'`); err != nil {
		t.Fatal(err)
	}
	out, err = b.cli(t, "cleanup", "--json", "--reason", "quarterly purge")
	if err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	var cleaned httpapi.CleanupJSON
	if err := json.Unmarshal([]byte(out), &cleaned); err != nil || cleaned.Deleted != 1 {
		t.Fatalf("cleanup = %s, %v; want the one Completed saga not held", out, err)
	}
	status := func(id string) string {
		var st string
		err := conn.QueryRow(ctx, `SELECT status::text FROM sagas WHERE id = $1`, id).Scan(&st)
		if err == pgx.ErrNoRows {
			return "deleted"
		}
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for id, want := range map[string]string{completed: "deleted", held: "Completed", compensated: "Compensated"} {
		if got := status(id); got != want {
			t.Errorf("saga %s: %s, want %s", id, got, want)
		}
	}

	// Two more days: the Compensated saga's 72 h have passed; the held one
	// stays until its hold is cleared. cleanup --direct works on the
	// database without the service.
	if _, err := conn.Exec(ctx, `UPDATE sagas SET completed_at = completed_at - interval '48 hours'`); err != nil {
		t.Fatal(err)
	}
	direct := map[string]string{"DATABASE_URL": dbURL, "CLEANUP_AFTER_HOURS": "24", "CLEANUP_COMPENSATED_AFTER_HOURS": "72", "LOG_LEVEL": "warn"}
	out, err = runCLI(t, direct, nil, "cleanup", "--direct", "--reason", "backlog")
	if err != nil || !strings.Contains(out, "deleted 1 finished sagas") {
		t.Fatalf("cleanup --direct: %q, %v", out, err)
	}
	if got := status(compensated); got != "deleted" {
		t.Errorf("the Compensated saga past its retention: %s", got)
	}
	if out, err := b.cli(t, "unhold", held); err != nil || !strings.Contains(out, "no longer under legal hold") {
		t.Fatalf("unhold: %q, %v", out, err)
	}
	if out, err := runCLI(t, direct, nil, "cleanup", "--direct"); err != nil || !strings.Contains(out, "deleted 1 finished sagas") {
		t.Fatalf("cleanup --direct after unhold: %q, %v", out, err)
	}
	if _, err := b.cli(t, "hold", saga.NewID().String()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("hold of an unknown saga: %v, want 404", err)
	}

	// Each deleted saga left its tombstone: the rule of its status and
	// who asked, why.
	type tomb struct{ status, rule, actor, reason string }
	want := map[string]tomb{
		completed:   {"Completed", "retention: Completed more than 24h0m0s ago", saga.AnonymousActor, "quarterly purge"},
		compensated: {"Compensated", "retention: Compensated more than 72h0m0s ago", DirectCleanupActor, "backlog"},
		held:        {"Completed", "retention: Completed more than 24h0m0s ago", DirectCleanupActor, ""},
	}
	rows, err := conn.Query(ctx, `SELECT saga_id::text, final_status::text, rule, coalesce(actor, ''), coalesce(reason, ''),
		last_hash IS NOT NULL FROM saga_deletions`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]tomb{}
	for rows.Next() {
		var (
			id     string
			tb     tomb
			hashed bool
		)
		if err := rows.Scan(&id, &tb.status, &tb.rule, &tb.actor, &tb.reason, &hashed); err != nil {
			t.Fatal(err)
		}
		if !hashed {
			t.Errorf("the tombstone of saga %s keeps no last hash", id)
		}
		got[id] = tb
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("tombstones = %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("tombstone of saga %s = %+v, want %+v", id, got[id], w)
		}
	}
	if out, err := runCLI(t, direct, nil, "audit", "verify"); err != nil || !strings.Contains(out, "0 broken") {
		t.Errorf("audit verify after the deletions: %q, %v", out, err)
	}
}
