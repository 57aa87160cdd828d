package participant_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/participant"
	"github.com/tracseq/transaction-service/postgres"
	"github.com/tracseq/transaction-service/storetest"
)

// hostileAnswers are participant answers PostgreSQL would refuse if they
// were stored as they came, with the output or error they must become.
var hostileAnswers = []struct {
	name        string
	status      int
	contentType string
	body        string
	output      string // the output expected (2xx), "" to skip the comparison
	errPart     string // a part of the error expected (other statuses)
}{
	{name: "PNG", status: 200, contentType: "image/png", body: "\x89PNG\r\n\x1a\n\x00\x00",
		output: `{"content_type":"image/png","base64":"` + base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n\x00\x00")) + `"}`},
	{name: "NUL escape", status: 200, contentType: "application/json", body: `{"a":"\u0000"}`, output: `{"a":"` + "\uFFFD" + `"}`},
	{name: "invalid UTF-8 in JSON", status: 200, contentType: "application/json", body: "{\"a\":\"\xff\"}", output: `{"a":"` + "\uFFFD" + `"}`},
	{name: "huge number", status: 200, contentType: "application/json", body: `{"n":1e1000000}`, output: `{"n":"1e1000000"}`},
	{name: "tiny number", status: 200, contentType: "application/json", body: `[1e-1000000]`, output: `["1e-1000000"]`},
	{name: "1 and 200,000 zeros", status: 200, contentType: "application/json", body: "1" + strings.Repeat("0", 200_000),
		output: `"1` + strings.Repeat("0", 200_000) + `"`},
	{name: "lone surrogate", status: 200, contentType: "application/json", body: `{"s":"\ud800"}`, output: `{"s":"` + "\uFFFD" + `"}`},
	{name: "text", status: 200, contentType: "text/plain; charset=utf-8", body: "done", output: `{"content_type":"text/plain","text":"done"}`},
	{name: "text with NUL", status: 200, contentType: "text/plain", body: "a\x00b", output: `{"content_type":"text/plain","base64":"YQBi"}`},
	{name: "invalid UTF-8 text", status: 200, body: "caf\xe9", output: `{"content_type":"text/plain","base64":"Y2Fm6Q=="}`},
	{name: "hostile content type", status: 200, contentType: "application/x-\xffbin", body: "\xff",
		output: `{"content_type":"application/x-` + "\uFFFD" + `bin","base64":"/w=="}`},
	{name: "error with NUL", status: 422, body: "bad\x00request", errPart: `HTTP 422 Unprocessable Entity: bad\x00request`},
	{name: "error with invalid UTF-8", status: 500, body: "\xff\xfeboom", errPart: "HTTP 500 Internal Server Error: \uFFFD\uFFFDboom"},
	{name: "long binary error", status: 400, body: strings.Repeat("\x00\xff", 5000), errPart: `HTTP 400 Bad Request: \x00` + "\uFFFD"},
}

// Every hostile answer becomes an output or error that PostgreSQL stores:
// written through the real store in one transition, with the event that
// carries the error, and read back unchanged.
func TestHostileAnswersAreStorable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewDatabase(t), MaxConns: 4, MinConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if _, err := postgres.Migrate(ctx, store.Pool(), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range hostileAnswers {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, participant.Config{}, func(w http.ResponseWriter, _ *http.Request) {
				if tc.contentType != "" {
					w.Header()["Content-Type"] = []string{tc.contentType}
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			res := b.client.Invoke(ctx, newCall(b.server.URL))
			if tc.output != "" && string(res.Output) != tc.output {
				t.Errorf("output = %.300s; want %.300s", res.Output, tc.output)
			}
			if tc.errPart != "" && !strings.Contains(res.Error, tc.errPart) {
				t.Errorf("error = %q; want it to contain %q", res.Error, tc.errPart)
			}
			if !utf8.ValidString(res.Error) || strings.IndexByte(res.Error, 0) >= 0 {
				t.Errorf("error not storable: %q", res.Error)
			}

			sg, _, err := store.CreateSaga(ctx, saga.NewSaga{Saga: storetest.NewTestSaga("w", 1), LeaseFor: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			data, _ := json.Marshal(map[string]string{"error": res.Error})
			_, err = store.Apply(ctx, saga.Transition{
				SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Hour, Status: saga.SagaStatusExecuting,
				Error: res.Error,
				Steps: []saga.StepUpdate{{Index: 0, Status: saga.StepStatusCompleted, Attempts: 1,
					Output: res.Output, Error: res.Error, Start: true, End: true}},
				Events: []saga.Event{{Type: saga.EventStepCompleted, StepIndex: new(0), Data: data}},
			})
			if err != nil {
				t.Fatalf("store the answer: %v", err)
			}
			got, err := store.GetSaga(ctx, sg.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Steps[0].Error != res.Error || got.Error != res.Error {
				t.Errorf("error read back %q; stored %q", got.Steps[0].Error, res.Error)
			}
			if tc.output != "" && !sameJSON(t, got.Steps[0].Output, res.Output) {
				t.Errorf("output read back %.200s; stored %.200s", got.Steps[0].Output, res.Output)
			}
		})
	}
}

// sameJSON compares two JSON documents by value (PostgreSQL reformats jsonb).
func sameJSON(t *testing.T, a, b json.RawMessage) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("decode %s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}

// A URL's secrets (query values, user information) do not reach the error
// of a call that failed in transport, which net/http builds quoting the URL.
func TestTransportErrorRedactsURL(t *testing.T) {
	t.Parallel()
	client := participant.New(participant.Config{})
	res := client.Invoke(context.Background(), newCall("http://127.0.0.1:1/charge?api_key=s3cret-value&mode=live#frag-secret"))
	if res.Outcome != participant.OutcomeTransient || res.Error == "" {
		t.Fatalf("result %+v; want a transient transport failure", res)
	}
	if strings.Contains(res.Error, "s3cret") || strings.Contains(res.Error, "live") || strings.Contains(res.Error, "frag-secret") {
		t.Errorf("error %q shows the URL's secrets", res.Error)
	}
	if !strings.Contains(res.Error, "http://127.0.0.1:1/charge?api_key=[redacted]&mode=[redacted]") {
		t.Errorf("error %q does not show the redacted URL", res.Error)
	}
}
