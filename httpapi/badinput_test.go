package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

// badRequest is one bad input and the answer it must get: a status and a
// problem naming the field. The cases are plain data (no helpers, no
// server state) so that the end-to-end suite can run the same table against
// the real engine and PostgreSQL.
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

// badRequests returns the table of bad inputs. None may reach the
// coordinator.
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

// TestBadRequests sends every bad input through real HTTP and checks the
// status, the problem's field and detail, and that the coordinator was
// never called.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	for _, tc := range badRequests() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			body := []byte(tc.body)
			if tc.bodyBytes > 0 {
				body = []byte(paddedDefinition(tc.bodyBytes))
			}
			ct := tc.contentType
			switch {
			case ct == "-":
				ct = ""
			case ct == "" && len(body) > 0 || ct == "" && tc.method == http.MethodPost:
				ct = contentTypeJSON
			}
			h := http.Header{}
			for k, v := range tc.header {
				h.Set(k, v)
			}
			resp, raw := b.do(t, tc.method, tc.path, ct, body, h)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, raw)
			}
			p := decodeProblem(t, resp, raw)
			if p.Field != tc.field {
				t.Errorf("field %q, want %q (detail %q)", p.Field, tc.field, p.Detail)
			}
			if !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", p.Detail, tc.detail)
			}
			if tc.field != "" && !strings.Contains(p.Detail, tc.field) {
				t.Errorf("detail %q does not name the field %q", p.Detail, tc.field)
			}
			if calls := b.fake.Calls(); len(calls) != 0 {
				t.Errorf("bad input reached the coordinator: %v", calls)
			}
		})
	}
}
