package main

import (
	"context"
	"encoding/csv"
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

// TestAuditCommands runs sagas on PostgreSQL with an HMAC key and named
// tokens, pauses one with a reason through the command line, and then:
// audit verify passes; replay rebuilds a saga without differences; export
// writes every event with its hashes; and after the rows are edited with
// SQL (one event's data changed, one event deleted, two events' order
// swapped) verify fails naming each saga and its first bad event.
func TestAuditCommands(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	p := newParticipant(t)
	slow := make(chan struct{})
	p.handle("/payments/charge", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-slow:
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"charged": true}`))
	})
	key := "an audit key of thirty-two bytes"
	env := map[string]string{"DATABASE_URL": dbURL, "AUDIT_HMAC_KEY": key, "API_TOKENS": "lab-ops:ops-secret,ci-bot:ci-secret"}
	b := setup(t, env)
	cliEnv := map[string]string{"TRACSEQ_URL": b.url, "TRACSEQ_TOKEN": "ops-secret"}
	c := &httpapi.Client{BaseURL: b.url, Token: "ci-secret"}
	ctx := context.Background()

	var ids []string
	for i := range 4 {
		s, _, err := c.SubmitWithReason(ctx, p.twoStep("audited"), 0, "batch "+string(rune('A'+i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	// The first saga is paused by lab-ops while its charge is held, then
	// cancelled while the pause is being carried out: both requests stay
	// in its trail.
	if _, err := runCLI(t, cliEnv, nil, "pause", ids[0], "--reason", "count the stock first"); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if _, err := runCLI(t, cliEnv, nil, "cancel", ids[0], "--reason", "order withdrawn"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	close(slow)
	for _, id := range ids {
		pollUntil(t, "saga "+id+" to end", func() bool {
			s, err := c.Get(ctx, id)
			return err == nil && s.Status.Terminal()
		})
	}
	events, err := c.Events(ctx, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	var requests []string
	for _, e := range events {
		var d map[string]any
		_ = json.Unmarshal(e.Data, &d)
		switch e.Type {
		case saga.EventOperatorRequested:
			requests = append(requests, e.Actor+" "+d["action"].(string)+": "+d["reason"].(string))
			if addr, _ := d["client_addr"].(string); !strings.HasPrefix(addr, "127.0.0.1:") {
				t.Errorf("request without the client address: %s", e.Data)
			}
		case saga.EventSagaCreated:
			if e.Actor != "ci-bot" || d["reason"] != "batch A" {
				t.Errorf("SagaCreated by %q: %s", e.Actor, e.Data)
			}
		}
	}
	if want := "lab-ops pause: count the stock first|lab-ops cancel: order withdrawn"; strings.Join(requests, "|") != want {
		t.Errorf("requests in the trail: %q, want %q\n%v", requests, want, eventTypes(events))
	}

	auditEnv := map[string]string{"DATABASE_URL": dbURL, "AUDIT_HMAC_KEY": key}
	out, err := runCLI(t, auditEnv, nil, "audit", "verify")
	if err != nil || !strings.Contains(out, "verified 4 sagas") || !strings.Contains(out, "0 broken") || !strings.Contains(out, "HMAC") {
		t.Fatalf("audit verify = %q, %v", out, err)
	}
	if _, err := runCLI(t, map[string]string{"DATABASE_URL": dbURL}, nil, "audit", "verify"); err == nil {
		t.Error("audit verify without the key passed")
	}
	out, err = runCLI(t, auditEnv, nil, "audit", "replay", ids[0])
	if err != nil || !strings.Contains(out, "No differences from the stored saga.") || !strings.Contains(out, "chain verified") {
		t.Errorf("audit replay = %q, %v", out, err)
	}
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	out, err = runCLI(t, auditEnv, nil, "audit", "export", "--from", from, "--format", "csv")
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	total := 0
	for _, id := range ids {
		evs, _ := c.Events(ctx, id)
		total += len(evs)
	}
	if err != nil || len(rows) != total+1 || rows[1][3][len(rows[1][3])-5] != '.' {
		t.Fatalf("export: %d rows for %d events (%v); first %v", len(rows), total, err, rows[:min(2, len(rows))])
	}
	out, err = runCLI(t, auditEnv, nil, "audit", "export", "--from", from, "--format", "json")
	var exported []httpapi.AuditEventJSON
	if err != nil || json.Unmarshal([]byte(out), &exported) != nil || len(exported) != total {
		t.Fatalf("export json: %d events (%v)", len(exported), err)
	}

	// Edit the rows.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	eventID := func(id string, seq int) string {
		t.Helper()
		var eid string
		if err := conn.QueryRow(ctx, `SELECT id::text FROM saga_events WHERE saga_id = $1 AND seq = $2`, id, seq).Scan(&eid); err != nil {
			t.Fatal(err)
		}
		return eid
	}
	edited := eventID(ids[1], 2)
	exec(`UPDATE saga_events SET data = '{"forged": true}' WHERE saga_id = $1 AND seq = 2`, ids[1])
	exec(`DELETE FROM saga_events WHERE saga_id = $1 AND seq = 3`, ids[2])
	exec(`UPDATE saga_events SET seq = -1 WHERE saga_id = $1 AND seq = 3`, ids[3])
	exec(`UPDATE saga_events SET seq = 3 WHERE saga_id = $1 AND seq = 4`, ids[3])
	exec(`UPDATE saga_events SET seq = 4 WHERE saga_id = $1 AND seq = -1`, ids[3])

	out, err = runCLI(t, auditEnv, nil, "audit", "verify")
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("audit verify after the edits: %v, want exit status 1", err)
	}
	for _, want := range []string{
		"BROKEN saga " + ids[1] + ": event 2 (" + edited + "): its hash does not match",
		"BROKEN saga " + ids[2] + ": event 3 (missing): missing",
		"BROKEN saga " + ids[3] + ": event 3 (" + eventID(ids[3], 3) + "): its hash does not match",
		"verified 4 sagas",
		"3 broken",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit verify output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, ids[0]) {
		t.Errorf("the untouched saga is reported:\n%s", out)
	}
	out, err = runCLI(t, auditEnv, nil, "audit", "verify", "--saga", ids[0], "--json")
	var rep verifyReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.Sagas != 1 || len(rep.Broken) != 0 || !rep.Keyed {
		t.Errorf("verify --saga of the untouched one = %s, %v", out, err)
	}
	out, err = runCLI(t, auditEnv, nil, "audit", "replay", ids[1])
	if err == nil || !strings.Contains(out, "BROKEN") {
		t.Errorf("replay of the edited saga = %q, %v; want the broken chain reported", out, err)
	}

	// The API says the same of one saga.
	trail, err := (&httpapi.Client{BaseURL: b.url, Token: "ops-secret"}).Audit(ctx, ids[1])
	if err != nil || trail.Verified || trail.Broken == nil || trail.Broken.Seq != 2 || !trail.Keyed {
		t.Errorf("GET audit of the edited saga = %+v, %v", trail, err)
	}
}

// TestAuditCommandUsage checks the audit command's usage errors.
func TestAuditCommandUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"audit"}, {"audit", "nope"}, {"audit", "replay"}, {"audit", "replay", "not-a-uuid"},
		{"audit", "export"}, {"audit", "export", "--from", "1h", "--format", "xml"},
		{"audit", "export", "--from", "1h", "--to", "2h"}, {"audit", "verify", "--saga", "x"},
	} {
		if _, err := runCLI(t, map[string]string{}, nil, args...); err == nil || exitCode(err) != 2 {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
