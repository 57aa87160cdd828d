package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// testDefinitionKey is a DEFINITION_ENCRYPTION_KEY (32 bytes, base64).
const testDefinitionKey = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0zMmJ5dGU="

// Secrets given to the service are never shown: a step URL's query values
// do not reach the step and saga errors, the events or the log; the values
// of secret headers are [redacted] in every answer and the log, reach the
// participant as they are, and are encrypted in sagas.definition.
func TestSecretsAreNotShown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(t)
	p := newParticipant(t)
	b := setup(t, map[string]string{
		"DATABASE_URL": dbURL, "DB_MIN_CONNECTIONS": "1", "DB_MAX_CONNECTIONS": "4",
		"DEFINITION_ENCRYPTION_KEY": testDefinitionKey,
		"PARTICIPANT_ALLOWED_HOSTS": "127.0.0.1",
	})
	secrets := []string{"AUTH-SECRET", "TOKEN-SECRET", "COOKIE-SECRET", "KEY-SECRET-1", "KEY-SECRET-2", "USER-SECRET"}

	def := saga.Definition{
		Name:          "secrets",
		SecretHeaders: []string{"x_internal_token"},
		Steps: []saga.StepDefinition{
			{Name: "reserve",
				Action: saga.Request{Method: http.MethodPost, URL: p.srv.URL + "/reserve?api_key=KEY-SECRET-1",
					Headers: map[string]string{"Authorization": "Bearer AUTH-SECRET", "X-Internal-Token": "TOKEN-SECRET", "X-Tenant": "lab-7"}},
				Compensation: &saga.Request{Method: http.MethodPost, URL: p.srv.URL + "/release",
					Headers: map[string]string{"Cookie": "session=COOKIE-SECRET"}}},
			{Name: "charge",
				// Nothing listens there: the step fails in transport, and
				// net/http's error quotes the URL.
				Action: saga.Request{Method: http.MethodPost, URL: "http://127.0.0.1:1/charge?api_key=KEY-SECRET-2&mode=live"},
				Retry:  &saga.RetryPolicy{MaxAttempts: 1}},
		},
	}
	s, _, err := b.client.Submit(ctx, def, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != saga.SagaStatusCompensated {
		t.Fatalf("saga %s, want Compensated", s.Status)
	}
	reserve := p.callsTo("/reserve")
	release := p.callsTo("/release")
	if len(reserve) != 1 || reserve[0].headers.Get("Authorization") != "Bearer AUTH-SECRET" ||
		reserve[0].headers.Get("X-Internal-Token") != "TOKEN-SECRET" || len(release) != 1 ||
		release[0].headers.Get("Cookie") != "session=COOKIE-SECRET" {
		t.Fatalf("the participant did not get the secret headers: %v / %v", reserve, release)
	}

	// Every answer: the saga, the list, the events, the submit's own.
	var shown []string
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(b.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, raw)
		}
		return string(raw)
	}
	one := get("/api/v1/sagas/" + s.ID)
	submitted, _ := json.Marshal(s)
	shown = append(shown, one, get("/api/v1/sagas"), get("/api/v1/sagas/"+s.ID+"/events"), string(submitted))
	if !strings.Contains(one, `"Authorization":"[redacted]"`) || !strings.Contains(one, `"X-Internal-Token":"[redacted]"`) ||
		!strings.Contains(one, `api_key=[redacted]`) || !strings.Contains(one, `"X-Tenant":"lab-7"`) {
		t.Errorf("the saga's definition is not shown redacted: %s", one)
	}
	var sj httpapi.SagaJSON
	if err := json.Unmarshal([]byte(one), &sj); err != nil || !strings.Contains(sj.Steps[1].Error, "api_key=[redacted]") {
		t.Errorf("step error %q: want the redacted URL (%v)", sj.Steps[1].Error, err)
	}

	// A URL refused for its host is echoed redacted.
	bad := def
	bad.Steps = []saga.StepDefinition{{Name: "x", Action: saga.Request{Method: http.MethodPost, URL: "http://evil.local/x?token=USER-SECRET"}}}
	_, _, err = b.client.Submit(ctx, bad, 0)
	var pr *httpapi.Problem
	if !errors.As(err, &pr) || pr.Status != http.StatusForbidden {
		t.Fatalf("submit to a host not allowed: %v; want 403", err)
	}
	shown = append(shown, pr.Detail)

	for _, text := range append(shown, b.logs.String()) {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				i := strings.Index(text, secret)
				t.Errorf("%q shown: …%s…", secret, text[max(0, i-120):min(len(text), i+40)])
			}
		}
	}

	// At rest: header secrets encrypted; errors and events without the URL's.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var stored, errorsAndEvents string
	err = conn.QueryRow(ctx, `SELECT s.definition::text, coalesce(s.error, '') ||
		(SELECT string_agg(coalesce(error, ''), ' ') FROM saga_steps WHERE saga_id = s.id) ||
		(SELECT string_agg(coalesce(data::text, ''), ' ') FROM saga_events WHERE saga_id = s.id)
		FROM sagas s WHERE s.id = $1`, s.ID).Scan(&stored, &errorsAndEvents)
	if err != nil {
		t.Fatal(err)
	}
	// The definition keeps its URLs (they are called); the header secrets
	// are encrypted.
	for _, secret := range []string{"AUTH-SECRET", "TOKEN-SECRET", "COOKIE-SECRET"} {
		if strings.Contains(stored, secret) || strings.Contains(errorsAndEvents, secret) {
			t.Errorf("the database holds %q in the clear", secret)
		}
	}
	if strings.Contains(errorsAndEvents, "KEY-SECRET-2") || !strings.Contains(errorsAndEvents, "api_key=[redacted]") {
		t.Errorf("errors and events stored: %s", errorsAndEvents)
	}
	if !strings.Contains(stored, "tracseq-sealed:v1:") || !strings.Contains(stored, "lab-7") {
		t.Errorf("stored definition: %.500s", stored)
	}
}

// The open readiness answer says the database is unreachable without its
// user, host, port or name.
func TestReadyHidesDatabaseDetails(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"DATABASE_URL": "postgres://svcadmin:pw@127.0.0.1:1/proddb?sslmode=disable&connect_timeout=2"})
	var ready *httpapi.ReadyJSON
	pollUntil(t, "readiness to report the database", func() bool {
		r, _, err := b.client.Ready(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ready = r
		return r.Error != ""
	})
	if ready.Error != httpapi.ReadyErrorDatabase {
		t.Errorf("ready error %q; want %q", ready.Error, httpapi.ReadyErrorDatabase)
	}
	raw, _ := json.Marshal(ready)
	for _, detail := range []string{"svcadmin", "proddb", "127.0.0.1", ":1", "pw"} {
		if strings.Contains(string(raw), detail) {
			t.Errorf("readiness shows %q: %s", detail, raw)
		}
	}
}
