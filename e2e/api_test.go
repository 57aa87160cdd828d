package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/client"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/apitest"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// apiToken is the bearer token of TestAPIErrorsOnPostgres's instance.
const apiToken = "e2e-token-1"

// rawCall sends one request to the instance and returns the answer.
func rawCall(t *testing.T, in *instance, method, path, contentType, token string, body []byte, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, in.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer of %s %s: %v", method, path, err)
	}
	return resp, raw
}

// decodeProblem decodes a problem answer, checking its media type and
// status.
func decodeProblem(t *testing.T, resp *http.Response, body []byte) *httpapi.Problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json; body %s", ct, body)
	}
	var p httpapi.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("decode problem %s: %v", body, err)
	}
	if p.Status != resp.StatusCode {
		t.Errorf("problem status %d, HTTP status %d", p.Status, resp.StatusCode)
	}
	if p.Title == "" || !strings.HasPrefix(p.Type, httpapi.ProblemTypePrefix) {
		t.Errorf("problem lacks a title or a type of the service: %+v", p)
	}
	return &p
}

// rowCounts counts the rows of the saga tables.
type rowCounts struct{ sagas, steps, events int }

func countRows(t *testing.T, dbURL string) rowCounts {
	t.Helper()
	return rowCounts{
		sagas:  queryInt(t, dbURL, sqlCountSagas),
		steps:  queryInt(t, dbURL, sqlCountSteps),
		events: queryInt(t, dbURL, sqlCountEvents),
	}
}

// TestAPIErrorsOnPostgres sends the API's table of bad input to the real
// program on PostgreSQL and checks each answer, and that nothing was
// written; then 401, 404 and 409.
func TestAPIErrorsOnPostgres(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	p := newStub(t, 0, 0)
	in := startInstance(t, instanceConfig{DatabaseURL: dbURL, InstanceID: "api-1", APITokens: apiToken + ",e2e-token-2"})
	ctx := context.Background()

	// One saga that ran to its end, for 409 and so that the tables are not
	// trivially empty.
	done, _, err := in.client.Submit(ctx, p.definition("api-done", "api-done", plan{flakyStep: -1}), client.WithWait(30*time.Second))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if done.Status != saga.SagaStatusCompleted {
		t.Fatalf("saga %s is %s after waiting, want Completed", done.ID, done.Status)
	}
	before := countRows(t, dbURL)

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range apitest.BadRequests() {
			t.Run(tc.Name, func(t *testing.T) {
				t.Parallel()
				resp, raw := rawCall(t, in, tc.Method, tc.Path, tc.SendContentType(), apiToken, tc.Payload(), tc.Header)
				if resp.StatusCode != tc.Status {
					t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.Status, raw)
				}
				pr := decodeProblem(t, resp, raw)
				for _, m := range tc.Mismatches(resp.StatusCode, pr.Field, pr.Detail) {
					t.Error(m)
				}
			})
		}
	})

	unknown := saga.NewID().String()
	statusTests := []struct {
		name   string
		method string
		path   string
		token  string
		status int
	}{
		{"no token", http.MethodGet, "/api/v1/sagas", "", http.StatusUnauthorized},
		{"wrong token", http.MethodGet, "/api/v1/sagas/" + done.ID, "not-the-token", http.StatusUnauthorized},
		{"submit without token", http.MethodPost, "/api/v1/sagas", "", http.StatusUnauthorized},
		{"cancel without token", http.MethodPost, "/api/v1/sagas/" + done.ID + "/cancel", "", http.StatusUnauthorized},
		{"unknown saga", http.MethodGet, "/api/v1/sagas/" + unknown, apiToken, http.StatusNotFound},
		{"events of an unknown saga", http.MethodGet, "/api/v1/sagas/" + unknown + "/events", apiToken, http.StatusNotFound},
		{"pause an unknown saga", http.MethodPost, "/api/v1/sagas/" + unknown + "/pause", apiToken, http.StatusNotFound},
		{"resume a Completed saga", http.MethodPost, "/api/v1/sagas/" + done.ID + "/resume", apiToken, http.StatusConflict},
		{"pause a Completed saga", http.MethodPost, "/api/v1/sagas/" + done.ID + "/pause", "e2e-token-2", http.StatusConflict},
		{"cancel a Completed saga", http.MethodPost, "/api/v1/sagas/" + done.ID + "/cancel", apiToken, http.StatusConflict},
		{"retry a Completed saga", http.MethodPost, "/api/v1/sagas/" + done.ID + "/retry", apiToken, http.StatusConflict},
	}
	t.Run("status", func(t *testing.T) {
		for _, tc := range statusTests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				var body []byte
				ct := ""
				if tc.method == http.MethodPost && strings.HasSuffix(tc.path, "/sagas") {
					def, _ := json.Marshal(p.definition("api-unauthorized", "", plan{flakyStep: -1}))
					body, ct = def, "application/json"
				}
				resp, raw := rawCall(t, in, tc.method, tc.path, ct, tc.token, body, nil)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, raw)
				}
				pr := decodeProblem(t, resp, raw)
				if tc.status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("401 without WWW-Authenticate")
				}
				if pr.Detail == "" {
					t.Errorf("problem without detail: %+v", pr)
				}
			})
		}
	})

	after := countRows(t, dbURL)
	if after != before {
		t.Errorf("rows (sagas, steps, events) were %+v before the bad requests and %+v after", before, after)
	}
	got, err := in.client.Get(ctx, done.ID)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Status != saga.SagaStatusCompleted || got.ControlRequest != saga.ControlNone || !got.UpdatedAt.Equal(done.UpdatedAt) {
		t.Errorf("the refused requests changed the saga: %+v", got)
	}
	if sum := p.summary(); sum.Calls != len(stepNames) {
		t.Errorf("the participant saw %d calls, want the %d of the one good saga", sum.Calls, len(stepNames))
	}
	// Liveness stays open without a token.
	if resp, raw := rawCall(t, in, http.MethodGet, "/health", "", "", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /health without token: %d %s", resp.StatusCode, raw)
	}
}
