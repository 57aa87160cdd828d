package httpapi

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/apitest"
)

// FuzzDecodeDefinition feeds the definition decoder and validator. Whatever
// the body, the answer is either a refusal of the client's input (400,
// naming fields) or a definition every part of which the database can
// store and that decodes the same once encoded again. The seed corpus is
// every submit body of the bad-input table plus the hostile bodies.
func FuzzDecodeDefinition(f *testing.F) {
	for _, tc := range apitest.BadRequests() {
		if tc.Method == "POST" && tc.BodyBytes == 0 {
			f.Add([]byte(tc.Body))
		}
	}
	for _, body := range apitest.HostileBodies() {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		def, err := DecodeDefinition(body)
		if err == nil {
			err = def.Validate()
		}
		if err != nil {
			checkRefusal(t, err)
			return
		}
		checkStorable(t, &def)
		again, err := json.Marshal(def)
		if err != nil {
			t.Fatalf("encode an accepted definition: %v", err)
		}
		def2, err := DecodeDefinition(again)
		if err == nil {
			err = def2.Validate()
		}
		if err != nil {
			t.Fatalf("an accepted definition, encoded again, is refused: %v\n%s", err, again)
		}
	})
}

// checkRefusal checks that err is a refusal of the input: code invalid,
// answered 400, with messages that can be shown.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	if code := saga.ErrorCodeOf(err); code != saga.ECodeInvalid {
		t.Fatalf("error of code %q (%v); want invalid", code, err)
	}
	p := problemFor(err, "r")
	if p.Status != 400 {
		t.Fatalf("answered %d: %v", p.Status, err)
	}
	if !utf8.ValidString(p.Detail) {
		t.Fatalf("detail is not UTF-8: %q", p.Detail)
	}
	var ve *saga.ValidationError
	if errors.As(err, &ve) {
		for _, pr := range ve.Problems {
			if pr.Code != saga.ECodeInvalid || pr.Message == "" {
				t.Fatalf("problem %+v", pr)
			}
		}
	}
}

// checkStorable checks every part of an accepted definition against what
// the database stores.
func checkStorable(t *testing.T, def *saga.Definition) {
	t.Helper()
	text := func(field, s string) {
		if p := saga.StorableTextProblem(s); p != "" {
			t.Fatalf("accepted %s %q: %s", field, s, p)
		}
	}
	raw := func(field string, v json.RawMessage) {
		if len(v) == 0 {
			return
		}
		if p := saga.CheckStorableJSON(v); p != nil {
			t.Fatalf("accepted %s %s: %+v", field, v, p)
		}
	}
	text("name", def.Name)
	text("idempotency_key", def.IdempotencyKey)
	raw("context", def.Context)
	if def.TimeoutMs < 0 || def.TimeoutMs > saga.MaxSagaTimeout.Milliseconds() {
		t.Fatalf("accepted timeout_ms %d", def.TimeoutMs)
	}
	request := func(field string, r *saga.Request) {
		text(field+".url", r.URL)
		raw(field+".body", r.Body)
		if r.TimeoutMs < 0 || r.TimeoutMs > saga.MaxCallTimeout.Milliseconds() {
			t.Fatalf("accepted %s.timeout_ms %d", field, r.TimeoutMs)
		}
		for name, value := range r.Headers {
			text(field+".headers", name+value)
			if strings.ContainsAny(value, "\r\n\x00\x01\x7f") {
				t.Fatalf("accepted header value %q", value)
			}
			switch n := saga.NormalizeHeaderName(name); {
			case n == "Connection", n == "Idempotency-Key", n == "Transfer-Encoding", n == "Host", strings.HasPrefix(n, "X-Saga-"):
				t.Fatalf("accepted header %q", name)
			}
		}
	}
	for _, st := range def.Steps {
		text("step name", st.Name)
		request("action", &st.Action)
		if st.Compensation != nil {
			request("compensation", st.Compensation)
		}
		for _, d := range st.DependsOn {
			text("depends_on", d)
		}
	}
}

// FuzzListQuery feeds the query parser and the list filters with raw query
// strings: a refusal names its parameters; an accepted filter holds only
// text the database can compare.
func FuzzListQuery(f *testing.F) {
	for _, tc := range apitest.BadRequests() {
		if u, err := url.Parse(tc.Path); err == nil && u.RawQuery != "" {
			f.Add(u.RawQuery)
		}
	}
	for _, q := range apitest.HostileQueries() {
		f.Add(q)
	}
	var allowed []string
	for _, rt := range routes() {
		if rt.method == "GET" && rt.path == "/api/v1/sagas" {
			allowed = rt.query
		}
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseQuery(raw, allowed)
		if err == nil {
			var filter saga.Filter
			filter, err = parseFilter(q)
			if err == nil {
				if p := saga.StorableTextProblem(filter.Name); p != "" {
					t.Fatalf("accepted name filter %q: %s", filter.Name, p)
				}
				if filter.Status != "" && !filter.Status.Valid() {
					t.Fatalf("accepted status %q", filter.Status)
				}
				if filter.Limit < 1 || filter.Limit > saga.ListLimitMax {
					t.Fatalf("accepted limit %d", filter.Limit)
				}
				return
			}
		}
		checkRefusal(t, err)
		var ve *saga.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("refusal %T %v; want a *saga.ValidationError", err, err)
		}
		for _, p := range ve.Problems {
			if p.Field == "" && !strings.Contains(p.Message, "parameter") {
				t.Fatalf("problem names no parameter: %+v", p)
			}
		}
	})
}
