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
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// badRequest is one bad input and the answer it must get: a status and a
// problem naming the field. The table is httpapi's (badinput_test.go),
// copied as data, here sent to the real program on PostgreSQL.
type badRequest struct {
	name        string
	method      string
	path        string // with the query string
	contentType string // "" with a body means application/json; "-" sends none
	header      map[string]string
	body        string
	bodyBytes   int    // > 0: send a definition padded to this many bytes instead of body
	status      int    // the HTTP status expected
	field       string // the problem's field ("" when the problem names none)
	detail      string // a substring of the problem's detail
}

// knownID is a well-formed saga id for cases where the id is not the point.
const knownID = "0190f1c2-7a3b-7c4d-8e5f-0123456789ab"

// badRequests returns the table of bad inputs. None may write anything.
func badRequests() []badRequest {
	const steps = `"steps":[{"name":"reserve","action":{"method":"POST","url":"http://inventory.local/reserve"}}]`
	return []badRequest{
		// The body of a submit.
		{name: "malformed JSON", method: "POST", path: "/api/v1/sagas", body: `{"name":"order",`, status: 400, detail: "not valid JSON"},
		{name: "not JSON", method: "POST", path: "/api/v1/sagas", body: `name=order`, status: 400, detail: "not valid JSON"},
		{name: "empty body", method: "POST", path: "/api/v1/sagas", body: ``, status: 400, detail: "empty"},
		{name: "array body", method: "POST", path: "/api/v1/sagas", body: `[]`, status: 400, detail: "JSON object"},
		{name: "trailing data", method: "POST", path: "/api/v1/sagas", body: `{"name":"a",` + steps + `} {"name":"b"}`, status: 400, detail: "single JSON value"},
		{name: "unknown field", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","colour":"red",` + steps + `}`, status: 400, field: "colour", detail: "unknown field"},
		{name: "unknown nested field", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","verb":"GET"}}]}`, status: 400, field: "verb", detail: "unknown field"},
		{name: "missing steps", method: "POST", path: "/api/v1/sagas", body: `{"name":"a"}`, status: 400, field: "steps", detail: "at least one step"},
		{name: "zero steps", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[]}`, status: 400, field: "steps", detail: "at least one step"},
		{name: "null steps", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":null}`, status: 400, field: "steps", detail: "at least one step"},
		{name: "missing name", method: "POST", path: "/api/v1/sagas", body: `{` + steps + `}`, status: 400, field: "name", detail: "must not be empty"},
		{name: "name of the wrong type", method: "POST", path: "/api/v1/sagas", body: `{"name":5,` + steps + `}`, status: 400, field: "name", detail: "must be a string"},
		{name: "timeout of the wrong type", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","timeout_ms":"10",` + steps + `}`, status: 400, field: "timeout_ms", detail: "integer"},
		{name: "negative saga timeout", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","timeout_ms":-1,` + steps + `}`, status: 400, field: "timeout_ms", detail: "negative"},
		{name: "negative call timeout", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","timeout_ms":-5}}]}`, status: 400, field: "steps[0].action.timeout_ms", detail: "negative"},
		{name: "relative URL", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"/reserve"}}]}`, status: 400, field: "steps[0].action.url", detail: "absolute http or https URL"},
		{name: "non-http URL", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"ftp://x.local/reserve"}}]}`, status: 400, field: "steps[0].action.url", detail: "absolute http or https URL"},
		{name: "file URL in a compensation", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/"},"compensation":{"method":"POST","url":"file:///etc/passwd"}}]}`, status: 400, field: "steps[0].compensation.url", detail: "absolute http or https URL"},
		{name: "URL with credentials", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://u:p@x.local/"}}]}`, status: 400, field: "steps[0].action.url", detail: "without credentials"},
		{name: "unknown method", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"FETCH","url":"http://x.local/"}}]}`, status: 400, field: "steps[0].action.method", detail: "must be one of"},
		{name: "reserved header", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","headers":{"idempotency-key":"x"}}}]}`, status: 400, field: "steps[0].action.headers", detail: "may not be overridden"},
		{name: "duplicate step names", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/"}},{"name":"s","action":{"method":"POST","url":"http://x.local/"}}]}`, status: 400, field: "steps[1].name", detail: "already the name"},
		{name: "bad retry", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/"},"retry":{"max_attempts":1000}}]}`, status: 400, field: "steps[0].retry.max_attempts", detail: "between"},
		{name: "context not an object", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","context":[1],` + steps + `}`, status: 400, field: "context", detail: "JSON object"},
		{name: "transaction id not a UUID", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","transaction_id":"tx-1",` + steps + `}`, status: 400, field: "transaction_id", detail: "UUID"},
		{name: "user id not a UUID", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","user_id":"alice",` + steps + `}`, status: 400, field: "user_id", detail: "UUID"},
		{name: "nil transaction id", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","transaction_id":"00000000-0000-0000-0000-000000000000",` + steps + `}`, status: 400, field: "transaction_id", detail: "nil UUID"},
		{name: "idempotency key too long", method: "POST", path: "/api/v1/sagas", body: `{"name":"a","idempotency_key":"` + strings.Repeat("k", 256) + `",` + steps + `}`, status: 400, field: "idempotency_key", detail: "at most 255"},
		{name: "idempotency key header differs", method: "POST", path: "/api/v1/sagas", header: map[string]string{"Idempotency-Key": "other"}, body: `{"name":"a","idempotency_key":"k1",` + steps + `}`, status: 400, field: "idempotency_key", detail: "differs"},
		{name: "10 MiB body", method: "POST", path: "/api/v1/sagas", bodyBytes: 10 << 20, status: 413, detail: "at most"},
		{name: "text/plain body", method: "POST", path: "/api/v1/sagas", contentType: "text/plain", body: `{"name":"a",` + steps + `}`, status: 415, detail: "application/json"},
		{name: "no content type", method: "POST", path: "/api/v1/sagas", contentType: "-", body: `{"name":"a",` + steps + `}`, status: 415, detail: "application/json"},
		{name: "bad wait", method: "POST", path: "/api/v1/sagas?wait=soon", body: `{"name":"a",` + steps + `}`, status: 400, field: "wait", detail: "duration"},
		{name: "negative wait", method: "POST", path: "/api/v1/sagas?wait=-1s", body: `{"name":"a",` + steps + `}`, status: 400, field: "wait", detail: "non-negative"},
		{name: "unknown submit parameter", method: "POST", path: "/api/v1/sagas?wiat=1s", body: `{"name":"a",` + steps + `}`, status: 400, field: "wiat", detail: "unknown query parameter"},

		// Ids in the path.
		{name: "saga id not a UUID", method: "GET", path: "/api/v1/sagas/42", status: 400, field: "id", detail: "UUID"},
		{name: "saga id almost a UUID", method: "GET", path: "/api/v1/sagas/0190f1c2-7a3b-7c4d-8e5f-0123456789az", status: 400, field: "id", detail: "UUID"},
		{name: "events of a non-UUID", method: "GET", path: "/api/v1/sagas/abc/events", status: 400, field: "id", detail: "UUID"},
		{name: "pause a non-UUID", method: "POST", path: "/api/v1/sagas/abc/pause", status: 400, field: "id", detail: "UUID"},
		{name: "cancel a non-UUID", method: "POST", path: "/api/v1/sagas/abc/cancel", status: 400, field: "id", detail: "UUID"},
		{name: "unknown action", method: "POST", path: "/api/v1/sagas/" + knownID + "/explode", status: 404, detail: "no route"},

		// Events parameters.
		{name: "negative after_seq", method: "GET", path: "/api/v1/sagas/" + knownID + "/events?after_seq=-1", status: 400, field: "after_seq", detail: "integer"},
		{name: "events limit 0", method: "GET", path: "/api/v1/sagas/" + knownID + "/events?limit=0", status: 400, field: "limit", detail: "between 1 and 1000"},
		{name: "events limit too big", method: "GET", path: "/api/v1/sagas/" + knownID + "/events?limit=5000", status: 400, field: "limit", detail: "between 1 and 1000"},

		// List filters.
		{name: "unknown status", method: "GET", path: "/api/v1/sagas?status=Running", status: 400, field: "status", detail: "unknown status"},
		{name: "status in the wrong case", method: "GET", path: "/api/v1/sagas?status=completed", status: 400, field: "status", detail: "unknown status"},
		{name: "transaction filter not a UUID", method: "GET", path: "/api/v1/sagas?transaction_id=123", status: 400, field: "transaction_id", detail: "UUID"},
		{name: "created_after not a time", method: "GET", path: "/api/v1/sagas?created_after=yesterday", status: 400, field: "created_after", detail: "RFC 3339"},
		{name: "created_after without zone", method: "GET", path: "/api/v1/sagas?created_after=2026-05-01T12:00:00", status: 400, field: "created_after", detail: "RFC 3339"},
		{name: "created_after month 13", method: "GET", path: "/api/v1/sagas?created_after=2026-13-01T00:00:00Z", status: 400, field: "created_after", detail: "RFC 3339"},
		{name: "limit 0", method: "GET", path: "/api/v1/sagas?limit=0", status: 400, field: "limit", detail: "between 1 and 1000"},
		{name: "limit 1001", method: "GET", path: "/api/v1/sagas?limit=1001", status: 400, field: "limit", detail: "between 1 and 1000"},
		{name: "limit not a number", method: "GET", path: "/api/v1/sagas?limit=ten", status: 400, field: "limit", detail: "integer"},
		{name: "limit given twice", method: "GET", path: "/api/v1/sagas?limit=1&limit=2", status: 400, field: "limit", detail: "at most once"},
		{name: "cursor not base64", method: "GET", path: "/api/v1/sagas?cursor=!!!", status: 400, field: "cursor", detail: "not a cursor"},
		{name: "cursor of another shape", method: "GET", path: "/api/v1/sagas?cursor=aGVsbG8", status: 400, field: "cursor", detail: "not a cursor"},
		{name: "misspelt filter", method: "GET", path: "/api/v1/sagas?stauts=Failed", status: 400, field: "stauts", detail: "unknown query parameter"},

		// Statistics.
		{name: "window not a duration", method: "GET", path: "/api/v1/statistics?window=day", status: 400, field: "window", detail: "duration"},
		{name: "negative window", method: "GET", path: "/api/v1/statistics?window=-1h", status: 400, field: "window", detail: "duration"},
		{name: "zero window", method: "GET", path: "/api/v1/statistics?window=0s", status: 400, field: "window", detail: "duration"},

		// Methods and routes.
		{name: "DELETE a saga", method: "DELETE", path: "/api/v1/sagas/" + knownID, status: 405, detail: "not allowed"},
		{name: "unknown API route", method: "GET", path: "/api/v2/sagas", status: 404, detail: "no route"},
	}
}

// paddedDefinition returns a valid-looking definition of n bytes.
func paddedDefinition(n int) string {
	const head, tail = `{"name":"`, `","steps":[]}`
	return head + strings.Repeat("a", max(0, n-len(head)-len(tail))) + tail
}

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
	done, _, err := in.client.Submit(ctx, p.definition("api-done", "api-done", plan{flakyStep: -1}), 30*time.Second)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if done.Status != saga.SagaStatusCompleted {
		t.Fatalf("saga %s is %s after waiting, want Completed", done.ID, done.Status)
	}
	before := countRows(t, dbURL)

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range badRequests() {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				body := []byte(tc.body)
				if tc.bodyBytes > 0 {
					body = []byte(paddedDefinition(tc.bodyBytes))
				}
				ct := tc.contentType
				switch {
				case ct == "-":
					ct = ""
				case ct == "" && (len(body) > 0 || tc.method == http.MethodPost):
					ct = "application/json"
				}
				resp, raw := rawCall(t, in, tc.method, tc.path, ct, apiToken, body, tc.header)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, raw)
				}
				pr := decodeProblem(t, resp, raw)
				if pr.Field != tc.field {
					t.Errorf("field %q, want %q (detail %q)", pr.Field, tc.field, pr.Detail)
				}
				if !strings.Contains(pr.Detail, tc.detail) {
					t.Errorf("detail %q does not contain %q", pr.Detail, tc.detail)
				}
				if tc.field != "" && !strings.Contains(pr.Detail, tc.field) {
					t.Errorf("detail %q does not name the field %q", pr.Detail, tc.field)
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
