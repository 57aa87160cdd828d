package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/console"
	"github.com/tracseq/transaction-service/memory"
	"github.com/tracseq/transaction-service/storetest"
)

type bundle struct {
	store *memory.Store
	srv   *httptest.Server
}

// setup serves a console on a fresh memory store; authorize may be nil.
func setup(t *testing.T, authorize func(*http.Request) error) *bundle {
	t.Helper()
	st := memory.New(memory.Config{})
	c, err := console.New(console.Config{Source: console.StoreSource(st, "test-instance"), Gauges: st, Authorize: authorize})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return &bundle{store: st, srv: srv}
}

// create stores a saga of two steps named name in status.
func (b *bundle) create(t *testing.T, name string, status saga.SagaStatus) *saga.Saga {
	t.Helper()
	s := storetest.NewTestSaga("", 2)
	s.Name, s.Definition.Name, s.Status = name, name, status
	got, _, err := b.store.CreateSaga(context.Background(), saga.NewSaga{Saga: s,
		Events: []saga.Event{{Type: saga.EventSagaCreated, InstanceID: "test-instance"}}})
	if err != nil {
		t.Fatalf("CreateSaga: %v", err)
	}
	return got
}

// get fetches path with the headers h and returns the status and body.
func (b *bundle) get(t *testing.T, path string, h http.Header) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

var scriptTag = regexp.MustCompile(`(?i)<script`)

func TestDataIsEscaped(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	name := `<script>alert("name")</script><img src=x onerror=alert(1)>`
	s := storetest.NewTestSaga("w", 2)
	s.Name, s.Definition.Name = name, name
	s, _, err := b.store.CreateSaga(context.Background(), saga.NewSaga{Saga: s, LeaseFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// A step output and an error holding markup.
	_, err = b.store.Apply(context.Background(), saga.Transition{SagaID: s.ID, Lease: s.Lease(), Release: true,
		Error: `<b onmouseover="alert(2)">boom</b>`,
		Steps: []saga.StepUpdate{{Index: 0, Status: saga.StepStatusCompleted, Attempts: 1,
			Output: json.RawMessage(`{"note": "<script>alert(3)</script>"}`), Start: true, End: true}}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, path := range []string{"/ui/", "/ui/part/", "/ui/sagas/" + s.ID.String(), "/ui/part/sagas/" + s.ID.String()} {
		status, body, h := b.get(t, path, nil)
		if status != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", path, status, body)
		}
		wantScripts := 0
		if !strings.Contains(path, "/part/") {
			wantScripts = 1 // the console's own script
		}
		if n := len(scriptTag.FindAllString(body, -1)); n != wantScripts {
			t.Errorf("GET %s: %d <script tags, want %d (data must be escaped):\n%s", path, n, wantScripts, body)
		}
		for _, bad := range []string{"<img src=x", "<b onmouseover"} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s: the page holds the markup %q unescaped", path, bad)
			}
		}
		if !strings.Contains(body, "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;") {
			t.Errorf("GET %s: the saga's name is not shown as text", path)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy = %q, want script-src 'self'", path, csp)
		}
		if strings.Contains(path, "sagas/") && !strings.Contains(body, "&lt;script&gt;alert(3)&lt;/script&gt;") {
			t.Errorf("GET %s: the step output is not shown as text", path)
		}
	}
}

func TestTokenRequired(t *testing.T) {
	t.Parallel()
	errNoToken := errors.New("no token")
	b := setup(t, func(r *http.Request) error {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			return errNoToken
		}
		return nil
	})
	s := b.create(t, "secret-order", saga.SagaStatusFailed)
	for _, path := range []string{"/ui/", "/ui/sagas/" + s.ID.String(), "/ui/stats", "/ui/health"} {
		status, body, _ := b.get(t, path, nil)
		if status != http.StatusOK || !strings.Contains(body, `data-auth="required"`) {
			t.Errorf("GET %s without a token: %d, want the page asking for a token", path, status)
		}
		if strings.Contains(body, "secret-order") || strings.Contains(body, "test-instance") {
			t.Errorf("GET %s without a token shows data:\n%s", path, body)
		}
		part := strings.Replace(path, "/ui/", "/ui/part/", 1)
		status, body, _ = b.get(t, part, nil)
		if status != http.StatusUnauthorized || strings.Contains(body, "secret-order") {
			t.Errorf("GET %s without a token: %d, want 401 without data", part, status)
		}
		status, body, _ = b.get(t, part, http.Header{"Authorization": {"Bearer wrong"}})
		if status != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token: %d, want 401", part, status)
		}
		status, body, _ = b.get(t, part, http.Header{"Authorization": {"Bearer s3cret"}})
		if status != http.StatusOK {
			t.Errorf("GET %s with the token: %d\n%s", part, status, body)
		}
		if path != "/ui/stats" && path != "/ui/health" && !strings.Contains(body, "secret-order") {
			t.Errorf("GET %s with the token does not show the saga", part)
		}
	}
}

func TestListFiltersAndPages(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for range 55 {
		b.create(t, "bulk", saga.SagaStatusCompleted)
	}
	failed := b.create(t, "broken", saga.SagaStatusFailed)

	_, body, _ := b.get(t, "/ui/part/", nil)
	if n := strings.Count(body, `<tr data-id=`); n != console.PageSizeDefault {
		t.Errorf("first page: %d rows, want %d", n, console.PageSizeDefault)
	}
	for _, want := range []string{`data-status="Completed"><span>Completed</span> <b>55</b>`, `<span>All</span> <b>56</b>`,
		`data-status="Failed"><span>Failed</span> <b>1</b>`} {
		if !strings.Contains(body, want) {
			t.Errorf("first page lacks the count %s", want)
		}
	}
	next := regexp.MustCompile(`href="(/ui/\?cursor=[^"]+)" id="next-page"`).FindStringSubmatch(body)
	if next == nil {
		t.Fatalf("first page has no next-page link:\n%s", body)
	}
	nextURL := strings.ReplaceAll(next[1], "&amp;", "&")
	_, body, _ = b.get(t, strings.Replace(nextURL, "/ui/", "/ui/part/", 1), nil)
	if n := strings.Count(body, `<tr data-id=`); n != 6 {
		t.Errorf("second page: %d rows, want 6", n)
	}
	if strings.Contains(body, `id="next-page"`) || !strings.Contains(body, "First page") {
		t.Errorf("the last page should link to the first and to no next page")
	}

	q := url.Values{"status": {"Failed"}}
	_, body, _ = b.get(t, "/ui/part/?"+q.Encode(), nil)
	if n := strings.Count(body, `<tr data-id=`); n != 1 || !strings.Contains(body, failed.ID.String()) {
		t.Errorf("status=Failed: %d rows, want the Failed saga alone", n)
	}
	if !strings.Contains(body, `class="count st-Failed on"`) {
		t.Error("status=Failed: the Failed count is not marked as the filter")
	}
	_, body, _ = b.get(t, "/ui/part/?name=broken&created_after="+url.QueryEscape(time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04")), nil)
	if n := strings.Count(body, `<tr data-id=`); n != 1 {
		t.Errorf("name and created_after (datetime-local): %d rows, want 1", n)
	}
	_, body, _ = b.get(t, "/ui/part/?transaction_id="+failed.TransactionID.String(), nil)
	if n := strings.Count(body, `<tr data-id=`); n != 1 {
		t.Errorf("transaction_id: %d rows, want 1", n)
	}
	_, body, _ = b.get(t, "/ui/part/?created_after="+url.QueryEscape(time.Now().UTC().Add(time.Hour).Format(time.RFC3339)), nil)
	if !strings.Contains(body, "No saga matches these filters.") {
		t.Error("a filter matching nothing does not say so")
	}
	// The page keeps the filters in its form and in the URL it refreshes.
	_, body, _ = b.get(t, "/ui/?name=broken", nil)
	if !strings.Contains(body, `name="name" value="broken"`) || !strings.Contains(body, `data-part="/ui/part/?name=broken"`) {
		t.Error("the page does not keep the name filter in its form and refresh URL")
	}

	for query, want := range map[string]string{
		"status=Done":                      "unknown saga status",
		"transaction_id=nope":              "is not a UUID",
		"created_after=yesterday":          "is not a time",
		"cursor=bogus":                     "cursor",
		"limit=0":                          "limit must be between",
		"name=" + strings.Repeat("n", 300): "name must be at most",
	} {
		status, body, _ := b.get(t, "/ui/part/?"+query, nil)
		if status != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("?%s: %d %q, want 400 saying %q", query, status, body, want)
		}
	}
}

func TestSagaPage(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, st := range saga.SagaStatuses {
		s := b.create(t, "order", st)
		status, body, _ := b.get(t, "/ui/part/sagas/"+s.ID.String(), nil)
		if status != http.StatusOK {
			t.Fatalf("saga page: %d\n%s", status, body)
		}
		var got []string
		for _, m := range regexp.MustCompile(`data-action="(\w+)"`).FindAllStringSubmatch(body, -1) {
			got = append(got, m[1])
		}
		var want []string
		for _, a := range saga.ControlActions {
			if a.AllowedIn(st) {
				want = append(want, string(a))
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("buttons on a %s saga = %v, want %v", st, got, want)
		}
	}
	status, body, _ := b.get(t, "/ui/part/sagas/"+saga.NewID().String(), nil)
	if status != http.StatusNotFound || !strings.Contains(body, "no saga has id") {
		t.Errorf("unknown saga: %d %q, want 404 saying so", status, body)
	}
	status, body, _ = b.get(t, "/ui/part/sagas/not-an-id", nil)
	if status != http.StatusBadRequest || !strings.Contains(body, "is not a saga id") {
		t.Errorf("bad saga id: %d %q, want 400 saying so", status, body)
	}
	if status, _, _ := b.get(t, "/ui/nowhere", nil); status != http.StatusNotFound {
		t.Errorf("unknown console path: %d, want 404", status)
	}
	if status, body, _ := b.get(t, "/ui/static/console.js", nil); status != http.StatusOK || !strings.Contains(body, "sessionStorage") {
		t.Errorf("console.js: %d", status)
	}
}

func TestTimelineOfAGraph(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	s := storetest.NewTestSaga("w", 3)
	// c waits for a and b, which run side by side.
	s.Definition.Steps[0].Name, s.Definition.Steps[1].Name, s.Definition.Steps[2].Name = "a", "b", "c"
	s.Steps[0].Name, s.Steps[1].Name, s.Steps[2].Name = "a", "b", "c"
	s.Definition.Steps[0].DependsOn = []string{}
	s.Definition.Steps[1].DependsOn = []string{}
	s.Definition.Steps[2].DependsOn = []string{"a", "b"}
	created, _, err := b.store.CreateSaga(context.Background(), saga.NewSaga{Saga: s, LeaseFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	step := func(i int, status saga.StepStatus, end bool) saga.StepUpdate {
		return saga.StepUpdate{Index: i, Status: status, Attempts: 1, Start: true, End: end}
	}
	for _, tr := range []saga.Transition{
		{Status: saga.SagaStatusExecuting, Started: true, Steps: []saga.StepUpdate{step(0, saga.StepStatusExecuting, false), step(1, saga.StepStatusExecuting, false)},
			Events: []saga.Event{{Type: saga.EventStepStarted, StepIndex: new(0), Data: json.RawMessage(`{"attempt":1,"kind":"action"}`)},
				{Type: saga.EventStepStarted, StepIndex: new(1), Data: json.RawMessage(`{"attempt":1,"kind":"action"}`)}}},
		{Steps: []saga.StepUpdate{step(0, saga.StepStatusCompleted, true), step(1, saga.StepStatusCompleted, true)}},
	} {
		tr.SagaID, tr.Lease, tr.LeaseFor = created.ID, created.Lease(), time.Hour
		if _, err := b.store.Apply(context.Background(), tr); err != nil {
			t.Fatal(err)
		}
	}
	_, body, _ := b.get(t, "/ui/part/sagas/"+created.ID.String(), nil)
	rows := regexp.MustCompile(`data-kind="action" data-label="(\w)" data-status="(\w+)">\s*<text class="label" x="4" y="[\d.]+">\w</text>\s*<text class="lvl" x="218" y="[\d.]+" text-anchor="end">L(\d)</text>\s*(<rect class="bar[^"]*" x="([\d.]+)")?`).FindAllStringSubmatch(body, -1)
	if len(rows) != 3 {
		t.Fatalf("timeline rows %v, want a, b and c:\n%s", rows, body)
	}
	if rows[0][1] != "a" || rows[1][1] != "b" || rows[2][1] != "c" || rows[0][3] != "0" || rows[1][3] != "0" || rows[2][3] != "1" {
		t.Errorf("rows (label, level) = %v, want a and b on level 0, c on level 1", rows)
	}
	if rows[0][5] != rows[1][5] || rows[0][5] == "" {
		t.Errorf("a and b start at x %q and %q: parallel steps should start side by side", rows[0][5], rows[1][5])
	}
	if rows[2][4] != "" || !strings.Contains(body, "not run (Pending)") {
		t.Errorf("c has a bar before it ran")
	}
	if !strings.Contains(body, "after a, b") {
		t.Error("the steps do not say c runs after a and b")
	}
}
