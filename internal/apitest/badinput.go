// Package apitest holds what the API's tests share: the table of bad inputs
// that the httpapi tests send to a fake coordinator and the end-to-end tests
// send to the real program on PostgreSQL.
package apitest

import (
	"fmt"
	"net/http"
	"strings"
)

// BadRequest is one bad input and the answer it must get: a status and a
// problem naming the field.
type BadRequest struct {
	Name        string
	Method      string
	Path        string // with the query string
	ContentType string // "" with a body means application/json; "-" sends none
	Header      map[string]string
	Body        string
	BodyBytes   int    // > 0: send a definition padded to this many bytes instead of Body
	Status      int    // the HTTP status expected
	Field       string // the problem's field ("" when the problem names none)
	Detail      string // a substring of the problem's detail
}

// KnownID is a well-formed saga id for cases where the id is not the point.
const KnownID = "0190f1c2-7a3b-7c4d-8e5f-0123456789ab"

// Payload returns the bytes to send: Body, or a definition padded to
// BodyBytes.
func (r BadRequest) Payload() []byte {
	if r.BodyBytes > 0 {
		return []byte(PaddedDefinition(r.BodyBytes))
	}
	return []byte(r.Body)
}

// SendContentType returns the Content-Type to send, "" for none: JSON by
// default whenever there is a body or the method is POST.
func (r BadRequest) SendContentType() string {
	switch {
	case r.ContentType == "-":
		return ""
	case r.ContentType == "" && (len(r.Payload()) > 0 || r.Method == http.MethodPost):
		return "application/json"
	}
	return r.ContentType
}

// Mismatches compares an answer (its status and its problem's field and
// detail) with what r expects and describes each difference.
func (r BadRequest) Mismatches(status int, field, detail string) []string {
	var out []string
	if status != r.Status {
		out = append(out, fmt.Sprintf("status %d, want %d (detail %q)", status, r.Status, detail))
	}
	if field != r.Field {
		out = append(out, fmt.Sprintf("field %q, want %q (detail %q)", field, r.Field, detail))
	}
	if !strings.Contains(detail, r.Detail) {
		out = append(out, fmt.Sprintf("detail %q does not contain %q", detail, r.Detail))
	}
	if r.Field != "" && !strings.Contains(detail, r.Field) {
		out = append(out, fmt.Sprintf("detail %q does not name the field %q", detail, r.Field))
	}
	return out
}

// PaddedDefinition returns a valid-looking definition of n bytes.
func PaddedDefinition(n int) string {
	const head, tail = `{"name":"`, `","steps":[]}`
	return head + strings.Repeat("a", max(0, n-len(head)-len(tail))) + tail
}

// BadRequests returns the table of bad inputs. None may reach the
// coordinator or write anything.
func BadRequests() []BadRequest {
	const steps = `"steps":[{"name":"reserve","action":{"method":"POST","url":"http://inventory.local/reserve"}}]`
	return []BadRequest{
		// The body of a submit.
		{Name: "malformed JSON", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"order",`, Status: 400, Detail: "not valid JSON"},
		{Name: "not JSON", Method: "POST", Path: "/api/v1/sagas", Body: `name=order`, Status: 400, Detail: "not valid JSON"},
		{Name: "empty body", Method: "POST", Path: "/api/v1/sagas", Body: ``, Status: 400, Detail: "empty"},
		{Name: "array body", Method: "POST", Path: "/api/v1/sagas", Body: `[]`, Status: 400, Detail: "JSON object"},
		{Name: "trailing data", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a",` + steps + `} {"name":"b"}`, Status: 400, Detail: "single JSON value"},
		{Name: "unknown field", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","colour":"red",` + steps + `}`, Status: 400, Field: "colour", Detail: "unknown field"},
		{Name: "unknown nested field", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","verb":"GET"}}]}`, Status: 400, Field: "steps[0].action.verb", Detail: "unknown field"},
		{Name: "misspelt compensation", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/"},"compensaton":{"method":"POST","url":"http://x.local/undo"}}]}`, Status: 400, Field: "steps[0].compensaton", Detail: `unknown field "compensaton" (did you mean "compensation"?)`},
		{Name: "every unknown field", Method: "POST", Path: "/api/v1/sagas", Body: `{"nmae":"a","colour":1,"steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","timeout":5}}]}`, Status: 400, Field: "colour", Detail: "and 2 more problems"},

		// What the database cannot store (issue: input reaching the
		// database and coming back as 500).
		{Name: "NUL in the context", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","context":{"s":"\u0000"},` + steps + `}`, Status: 400, Field: "context.s", Detail: "NUL"},
		{Name: "NUL in the name", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a\u0000b",` + steps + `}`, Status: 400, Field: "name", Detail: "NUL"},
		{Name: "raw 0xff in the name", Method: "POST", Path: "/api/v1/sagas", Body: "{\"name\":\"a\xffb\"," + steps + "}", Status: 400, Field: "name", Detail: "UTF-8"},
		{Name: "raw 0xff in the context", Method: "POST", Path: "/api/v1/sagas", Body: "{\"name\":\"a\",\"context\":{\"k\":\"\xff\"}," + steps + "}", Status: 400, Field: "context.k", Detail: "UTF-8"},
		{Name: "lone surrogate in the name", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"\ud800",` + steps + `}`, Status: 400, Field: "name", Detail: "surrogate"},
		{Name: "1e1000000 in the context", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","context":{"n":1e1000000},` + steps + `}`, Status: 400, Field: "context.n", Detail: "out of range"},
		{Name: "1e-1000000 in the context", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","context":{"n":1e-1000000},` + steps + `}`, Status: 400, Field: "context.n", Detail: "out of range"},
		{Name: "1 and 200,000 zeros", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","context":{"n":1` + strings.Repeat("0", 200_000) + `},` + steps + `}`, Status: 400, Field: "context.n", Detail: "out of range"},
		{Name: "1e1000000 as the timeout", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","timeout_ms":1e1000000,` + steps + `}`, Status: 400, Field: "timeout_ms", Detail: "out of range"},
		{Name: "NUL in a step body", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","body":{"a":["\u0000"]}}}]}`, Status: 400, Field: "steps[0].action.body.a[0]", Detail: "NUL"},

		// Durations that would wrap.
		{Name: "saga timeout that wraps", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","timeout_ms":9223372036854776,` + steps + `}`, Status: 400, Field: "timeout_ms", Detail: "at most"},
		{Name: "largest saga timeout", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","timeout_ms":9223372036854775807,` + steps + `}`, Status: 400, Field: "timeout_ms", Detail: "at most"},
		{Name: "call timeout that wraps", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","timeout_ms":9223372036854776}}]}`, Status: 400, Field: "steps[0].action.timeout_ms", Detail: "at most"},
		{Name: "backoff that wraps", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/"},"retry":{"initial_backoff_ms":9223372036854776}}]}`, Status: 400, Field: "steps[0].retry.initial_backoff_ms", Detail: "between"},

		// Headers that would strip idempotency or forge the service's.
		{Name: "Connection header", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","headers":{"Connection":"Idempotency-Key"}}}]}`, Status: 400, Field: "steps[0].action.headers", Detail: "hop-by-hop"},
		{Name: "Transfer-Encoding header", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","headers":{"transfer-encoding":"chunked"}}}]}`, Status: 400, Field: "steps[0].action.headers", Detail: "hop-by-hop"},
		{Name: "Idempotency_Key header", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","headers":{"Idempotency_Key":"x"}}}]}`, Status: 400, Field: "steps[0].action.headers", Detail: "set by the service"},
		{Name: "X_Saga_Id header", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","headers":{"X_Saga_Id":"x"}}}]}`, Status: 400, Field: "steps[0].action.headers", Detail: "set by the service"},
		{Name: "header value with \\u0001", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","headers":{"X-A":"a\u0001b"}}}]}`, Status: 400, Field: "steps[0].action.headers", Detail: "valid header field value"},
		{Name: "header value with \\u007f", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","headers":{"X-A":"\u007f"}}}]}`, Status: 400, Field: "steps[0].action.headers", Detail: "valid header field value"},
		{Name: "missing steps", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a"}`, Status: 400, Field: "steps", Detail: "at least one step"},
		{Name: "zero steps", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[]}`, Status: 400, Field: "steps", Detail: "at least one step"},
		{Name: "null steps", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":null}`, Status: 400, Field: "steps", Detail: "at least one step"},
		{Name: "missing name", Method: "POST", Path: "/api/v1/sagas", Body: `{` + steps + `}`, Status: 400, Field: "name", Detail: "must not be empty"},
		{Name: "name of the wrong type", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":5,` + steps + `}`, Status: 400, Field: "name", Detail: "must be a string"},
		{Name: "timeout of the wrong type", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","timeout_ms":"10",` + steps + `}`, Status: 400, Field: "timeout_ms", Detail: "integer"},
		{Name: "negative saga timeout", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","timeout_ms":-1,` + steps + `}`, Status: 400, Field: "timeout_ms", Detail: "negative"},
		{Name: "negative call timeout", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","timeout_ms":-5}}]}`, Status: 400, Field: "steps[0].action.timeout_ms", Detail: "negative"},
		{Name: "relative URL", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"/reserve"}}]}`, Status: 400, Field: "steps[0].action.url", Detail: "absolute http or https URL"},
		{Name: "non-http URL", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"ftp://x.local/reserve"}}]}`, Status: 400, Field: "steps[0].action.url", Detail: "absolute http or https URL"},
		{Name: "file URL in a compensation", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/"},"compensation":{"method":"POST","url":"file:///etc/passwd"}}]}`, Status: 400, Field: "steps[0].compensation.url", Detail: "absolute http or https URL"},
		{Name: "URL with credentials", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://u:p@x.local/"}}]}`, Status: 400, Field: "steps[0].action.url", Detail: "without credentials"},
		{Name: "unknown method", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"FETCH","url":"http://x.local/"}}]}`, Status: 400, Field: "steps[0].action.method", Detail: "must be one of"},
		{Name: "reserved header", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","headers":{"idempotency-key":"x"}}}]}`, Status: 400, Field: "steps[0].action.headers", Detail: "may not be overridden"},
		{Name: "duplicate step names", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/"}},{"name":"s","action":{"method":"POST","url":"http://x.local/"}}]}`, Status: 400, Field: "steps[1].name", Detail: "already the name"},
		{Name: "bad retry", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/"},"retry":{"max_attempts":1000}}]}`, Status: 400, Field: "steps[0].retry.max_attempts", Detail: "between"},
		{Name: "depends_on an unknown step", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"charge","action":{"method":"POST","url":"http://x.local/"}},{"name":"ship","depends_on":["chrge"],"action":{"method":"POST","url":"http://x.local/"}}]}`, Status: 400, Field: "steps[1].depends_on[0]", Detail: `unknown step "chrge" (did you mean "charge"?)`},
		{Name: "depends_on itself", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"s","depends_on":["s"],"action":{"method":"POST","url":"http://x.local/"}}]}`, Status: 400, Field: "steps[0].depends_on[0]", Detail: "itself"},
		{Name: "depends_on cycle", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","steps":[{"name":"reserve","depends_on":["charge"],"action":{"method":"POST","url":"http://x.local/"}},{"name":"charge","depends_on":["reserve"],"action":{"method":"POST","url":"http://x.local/"}}]}`, Status: 400, Field: "steps", Detail: "cycle reserve → charge → reserve"},
		{Name: "max_parallel too large", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","max_parallel":65,` + steps + `}`, Status: 400, Field: "max_parallel", Detail: "between 1 and 64"},
		{Name: "context not an object", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","context":[1],` + steps + `}`, Status: 400, Field: "context", Detail: "JSON object"},
		{Name: "transaction id not a UUID", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","transaction_id":"tx-1",` + steps + `}`, Status: 400, Field: "transaction_id", Detail: "UUID"},
		{Name: "user id not a UUID", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","user_id":"alice",` + steps + `}`, Status: 400, Field: "user_id", Detail: "UUID"},
		{Name: "nil transaction id", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","transaction_id":"00000000-0000-0000-0000-000000000000",` + steps + `}`, Status: 400, Field: "transaction_id", Detail: "nil UUID"},
		{Name: "idempotency key too long", Method: "POST", Path: "/api/v1/sagas", Body: `{"name":"a","idempotency_key":"` + strings.Repeat("k", 256) + `",` + steps + `}`, Status: 400, Field: "idempotency_key", Detail: "at most 255"},
		{Name: "idempotency key header differs", Method: "POST", Path: "/api/v1/sagas", Header: map[string]string{"Idempotency-Key": "other"}, Body: `{"name":"a","idempotency_key":"k1",` + steps + `}`, Status: 400, Field: "idempotency_key", Detail: "differs"},
		{Name: "10 MiB body", Method: "POST", Path: "/api/v1/sagas", BodyBytes: 10 << 20, Status: 413, Detail: "at most"},
		{Name: "text/plain body", Method: "POST", Path: "/api/v1/sagas", ContentType: "text/plain", Body: `{"name":"a",` + steps + `}`, Status: 415, Detail: "application/json"},
		{Name: "no content type", Method: "POST", Path: "/api/v1/sagas", ContentType: "-", Body: `{"name":"a",` + steps + `}`, Status: 415, Detail: "application/json"},
		{Name: "bad wait", Method: "POST", Path: "/api/v1/sagas?wait=soon", Body: `{"name":"a",` + steps + `}`, Status: 400, Field: "wait", Detail: "duration"},
		{Name: "negative wait", Method: "POST", Path: "/api/v1/sagas?wait=-1s", Body: `{"name":"a",` + steps + `}`, Status: 400, Field: "wait", Detail: "non-negative"},
		{Name: "unknown submit parameter", Method: "POST", Path: "/api/v1/sagas?wiat=1s", Body: `{"name":"a",` + steps + `}`, Status: 400, Field: "wiat", Detail: "unknown query parameter"},

		// Ids in the path.
		{Name: "saga id not a UUID", Method: "GET", Path: "/api/v1/sagas/42", Status: 400, Field: "id", Detail: "UUID"},
		{Name: "saga id almost a UUID", Method: "GET", Path: "/api/v1/sagas/0190f1c2-7a3b-7c4d-8e5f-0123456789az", Status: 400, Field: "id", Detail: "UUID"},
		{Name: "events of a non-UUID", Method: "GET", Path: "/api/v1/sagas/abc/events", Status: 400, Field: "id", Detail: "UUID"},
		{Name: "pause a non-UUID", Method: "POST", Path: "/api/v1/sagas/abc/pause", Status: 400, Field: "id", Detail: "UUID"},
		{Name: "cancel a non-UUID", Method: "POST", Path: "/api/v1/sagas/abc/cancel", Status: 400, Field: "id", Detail: "UUID"},
		{Name: "unknown action", Method: "POST", Path: "/api/v1/sagas/" + KnownID + "/explode", Status: 404, Detail: "no route"},

		// Events parameters.
		{Name: "negative after_seq", Method: "GET", Path: "/api/v1/sagas/" + KnownID + "/events?after_seq=-1", Status: 400, Field: "after_seq", Detail: "integer"},
		{Name: "events limit 0", Method: "GET", Path: "/api/v1/sagas/" + KnownID + "/events?limit=0", Status: 400, Field: "limit", Detail: "between 1 and 1000"},
		{Name: "events limit too big", Method: "GET", Path: "/api/v1/sagas/" + KnownID + "/events?limit=5000", Status: 400, Field: "limit", Detail: "between 1 and 1000"},

		// List filters.
		{Name: "unknown status", Method: "GET", Path: "/api/v1/sagas?status=Running", Status: 400, Field: "status", Detail: "unknown status"},
		{Name: "status in the wrong case", Method: "GET", Path: "/api/v1/sagas?status=completed", Status: 400, Field: "status", Detail: "unknown status"},
		{Name: "transaction filter not a UUID", Method: "GET", Path: "/api/v1/sagas?transaction_id=123", Status: 400, Field: "transaction_id", Detail: "UUID"},
		{Name: "created_after not a time", Method: "GET", Path: "/api/v1/sagas?created_after=yesterday", Status: 400, Field: "created_after", Detail: "RFC 3339"},
		{Name: "created_after without zone", Method: "GET", Path: "/api/v1/sagas?created_after=2026-05-01T12:00:00", Status: 400, Field: "created_after", Detail: "RFC 3339"},
		{Name: "created_after month 13", Method: "GET", Path: "/api/v1/sagas?created_after=2026-13-01T00:00:00Z", Status: 400, Field: "created_after", Detail: "RFC 3339"},
		{Name: "limit 0", Method: "GET", Path: "/api/v1/sagas?limit=0", Status: 400, Field: "limit", Detail: "between 1 and 1000"},
		{Name: "limit 1001", Method: "GET", Path: "/api/v1/sagas?limit=1001", Status: 400, Field: "limit", Detail: "between 1 and 1000"},
		{Name: "limit not a number", Method: "GET", Path: "/api/v1/sagas?limit=ten", Status: 400, Field: "limit", Detail: "integer"},
		{Name: "limit given twice", Method: "GET", Path: "/api/v1/sagas?limit=1&limit=2", Status: 400, Field: "limit", Detail: "at most once"},
		{Name: "cursor not base64", Method: "GET", Path: "/api/v1/sagas?cursor=!!!", Status: 400, Field: "cursor", Detail: "not a cursor"},
		{Name: "cursor of another shape", Method: "GET", Path: "/api/v1/sagas?cursor=aGVsbG8", Status: 400, Field: "cursor", Detail: "not a cursor"},
		{Name: "misspelt filter", Method: "GET", Path: "/api/v1/sagas?stauts=Failed", Status: 400, Field: "stauts", Detail: "unknown query parameter"},
		{Name: "NUL in the name filter", Method: "GET", Path: "/api/v1/sagas?name=%00", Status: 400, Field: "name", Detail: "NUL"},
		{Name: "invalid UTF-8 in the name filter", Method: "GET", Path: "/api/v1/sagas?name=%ff%fe", Status: 400, Field: "name", Detail: "UTF-8"},
		{Name: "control character in the name filter", Method: "GET", Path: "/api/v1/sagas?name=a%01", Status: 400, Field: "name", Detail: "control characters"},
		{Name: "status with a semicolon", Method: "GET", Path: "/api/v1/sagas?status=TimedOut;", Status: 400, Field: "status", Detail: "semicolon"},
		{Name: "semicolon between parameters", Method: "GET", Path: "/api/v1/sagas?limit=1;limit=2", Status: 400, Field: "limit", Detail: "semicolon"},
		{Name: "bad escape in a name", Method: "GET", Path: "/api/v1/sagas?%zz=1", Status: 400, Field: "%zz", Detail: "not validly escaped"},
		{Name: "bad escape in a value", Method: "GET", Path: "/api/v1/sagas?a=%zz", Status: 400, Field: "a", Detail: "not validly escaped"},
		{Name: "unknown parameter with a bad value", Method: "GET", Path: "/api/v1/sagas?status=Failed&x=1", Status: 400, Field: "x", Detail: "unknown query parameter"},
		{Name: "semicolon in an events query", Method: "GET", Path: "/api/v1/sagas/" + KnownID + "/events?limit=5;", Status: 400, Field: "limit", Detail: "semicolon"},

		// Statistics.
		{Name: "window not a duration", Method: "GET", Path: "/api/v1/statistics?window=day", Status: 400, Field: "window", Detail: "duration"},
		{Name: "negative window", Method: "GET", Path: "/api/v1/statistics?window=-1h", Status: 400, Field: "window", Detail: "duration"},
		{Name: "zero window", Method: "GET", Path: "/api/v1/statistics?window=0s", Status: 400, Field: "window", Detail: "duration"},

		// Methods and routes.
		{Name: "DELETE a saga", Method: "DELETE", Path: "/api/v1/sagas/" + KnownID, Status: 405, Detail: "not allowed"},
		{Name: "unknown API route", Method: "GET", Path: "/api/v2/sagas", Status: 404, Detail: "no route"},
	}
}

// HostileBodies returns submit bodies built to break the service: every
// input of the hostile-input report, alone and combined, beside valid
// definitions near them. The fuzz targets seed their corpus with them and
// the end-to-end replay mutates them.
func HostileBodies() []string {
	step := func(extra string) string {
		return `{"name":"s","action":{"method":"POST","url":"http://inventory.local/reserve"` + extra + `}}`
	}
	def := func(top, stepExtra string) string {
		return `{"name":"order"` + top + `,"steps":[` + step(stepExtra) + `]}`
	}
	return []string{
		def("", ""),
		def(`,"context":{"s":"ok","n":[1,2.5,-3e10]},"timeout_ms":60000,"idempotency_key":"k-1"`, `,"headers":{"X-Tenant":"lab-7","Authorization":"Bearer t"},"body":{"qty":3},"timeout_ms":5000`),
		def(`,"secret_headers":["X-Internal-Token"]`, `,"headers":{"X-Internal-Token":"t"}`),
		def(`,"context":{"s":"\u0000"}`, ""),
		`{"name":"a\u0000b","steps":[` + step("") + `]}`,
		"{\"name\":\"a\xffb\",\"steps\":[" + step("") + "]}",
		`{"name":"\ud800","steps":[` + step("") + `]}`,
		def(`,"context":{"n":1e1000000}`, ""),
		def(`,"context":{"n":1e-1000000}`, ""),
		def(`,"context":{"n":1`+strings.Repeat("0", 2000)+`}`, ""),
		def(`,"context":{"n":0e-99999}`, ""),
		def(`,"timeout_ms":9223372036854776`, ""),
		def(`,"timeout_ms":9223372036854775807`, ""),
		def(`,"timeout_ms":1e1000000`, ""),
		def("", `,"timeout_ms":9223372036854776`),
		def("", `,"headers":{"Connection":"Idempotency-Key"}`),
		def("", `,"headers":{"Upgrade":"h2c","Te":"trailers","Keep-Alive":"1","Expect":"100-continue","Trailer":"X","Transfer-Encoding":"chunked","Proxy-Connection":"close","Proxy-Authorization":"Basic x"}`),
		def("", `,"headers":{"Idempotency_Key":"x","X_Saga_Id":"y","x-transaction-id":"z","traceparent":"t","Content_Length":"1","host":"h"}`),
		def("", `,"headers":{"X-A":"a\u0001b","X-B":"\u007f","X-C":"a\r\nX-Injected: 1"}`),
		`{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/"},"compensaton":{"method":"POST","url":"http://x.local/"}}]}`,
		`{"nmae":"a","colour":1,"steps":[{"name":"s","action":{"method":"POST","url":"http://x.local/","timeout":5}}]}`,
		def("", `,"body":{"a":["\u0000"]}`),
		def("", `,"body":"`+strings.Repeat(`\ud83d\ude00`, 10)+`"`),
		def(`,"context":`+strings.Repeat(`{"a":`, 200)+"1"+strings.Repeat("}", 200), ""),
		`{"name":"a","steps":[` + step("") + `,` + strings.Replace(step(""), `"s"`, `"t"`, 1) + `],"max_parallel":3}`,
		`[` + def("", "") + `]`,
		def("", "") + " " + def("", ""),
		`{"name":"a","steps":[{"name":"s","action":{"method":"POST","url":"http://u:p@x.local/?api_key=k"}}]}`,
	}
}

// HostileQueries returns list query strings built to break the service.
func HostileQueries() []string {
	return []string{
		"status=Completed&limit=10",
		"name=%00", "name=%ff%fe", "name=a%01b", "name=%E2%9C%93",
		"status=TimedOut;", "limit=1;limit=2", "%zz=1", "a=%zz", "status=Failed&status=Completed",
		"limit=99999999999999999999", "limit=-1", "created_after=2026-05-01T12:00:00%2B02:00",
		"created_after=2026-05-01T12:00:00+02:00", "cursor=%00", "transaction_id=%ff", "=1", "&&&", "name",
	}
}
