package dtmapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/dtmapi"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
)

// bundle is a service (engine on PostgreSQL, API with the DTM routes) and
// a participant whose answers the test sets per path.
type bundle struct {
	coord *engine.Coordinator
	api   *httptest.Server
	busi  *httptest.Server

	mu       sync.Mutex
	handlers map[string]http.HandlerFunc
	counts   map[string]int
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	st, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := postgres.Migrate(ctx, st.Pool(), nil); err != nil {
		t.Fatal(err)
	}
	coord, err := engine.New(st, engine.Config{InstanceID: "dtm-test", ClaimInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := coord.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = coord.Stop(ctx)
	})
	d, err := dtmapi.New(dtmapi.Config{Coordinator: coord, MaxWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := httpapi.NewServer(httpapi.Config{Coordinator: coord, Routes: d.Routes()})
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{coord: coord, handlers: map[string]http.HandlerFunc{}, counts: map[string]int{}}
	b.api = httptest.NewServer(srv.Handler())
	t.Cleanup(b.api.Close)
	b.busi = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.counts[r.URL.Path]++
		h := b.handlers[r.URL.Path]
		b.mu.Unlock()
		if h == nil {
			_, _ = io.WriteString(w, `{"dtm_result":"SUCCESS"}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(b.busi.Close)
	return b
}

func (b *bundle) on(path string, h http.HandlerFunc) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.handlers[path] = h
}

func (b *bundle) count(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.counts[path]
}

// submitBody is a two-step saga on the participant.
func (b *bundle) submitBody(gid string, wait bool) map[string]any {
	return map[string]any{
		"gid": gid, "trans_type": "saga", "wait_result": wait,
		"steps": []map[string]string{
			{"action": b.busi.URL + "/TransOut", "compensate": b.busi.URL + "/TransOutCompensate"},
			{"action": b.busi.URL + "/TransIn", "compensate": b.busi.URL + "/TransInCompensate"},
		},
		"payloads": []string{`{"amount":30}`, `{"amount":30}`},
	}
}

// do sends a request to the DTM endpoint and returns the status and body.
func (b *bundle) do(t *testing.T, method, path string, body any) (int, string) {
	t.Helper()
	var in io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		in = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, b.api.URL+"/api/dtmsvr/"+path, in)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func (b *bundle) query(t *testing.T, gid string) dtmapi.QueryJSON {
	t.Helper()
	status, body := b.do(t, http.MethodGet, "query?gid="+gid, nil)
	var q dtmapi.QueryJSON
	if status != http.StatusOK || json.Unmarshal([]byte(body), &q) != nil {
		t.Fatalf("query: HTTP %d %s", status, body)
	}
	return q
}

// waitStatus polls query until the transaction has status.
func (b *bundle) waitStatus(t *testing.T, gid, status string) dtmapi.QueryJSON {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		q := b.query(t, gid)
		if q.Transaction != nil && q.Transaction.Status == status {
			return q
		}
		if time.Now().After(deadline) {
			t.Fatalf("transaction %s: %+v, want status %s", gid, q.Transaction, status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWaitResultOutlastsTransientErrors: a branch fails twice with 500
// before it succeeds. DTM answers a wait_result submit FAILURE at the first
// such error; here the answer is the saga's outcome, SUCCESS.
func TestWaitResultOutlastsTransientErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var calls atomic.Int32
	b.on("/TransIn", func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) <= 2 {
			http.Error(w, "busy", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, `{"dtm_result":"SUCCESS"}`)
	})
	status, body := b.do(t, http.MethodPost, "submit", b.submitBody("transient-1", true))
	if status != http.StatusOK || !strings.Contains(body, "SUCCESS") {
		t.Fatalf("submit: HTTP %d %s, want 200 SUCCESS", status, body)
	}
	if n := b.count("/TransIn"); n != 3 {
		t.Errorf("TransIn called %d times, want 3", n)
	}
}

// TestRepeatedSubmitWhileRunning: a gid submitted again while its saga runs
// is not run a second time (DTM runs it again).
func TestRepeatedSubmitWhileRunning(t *testing.T) {
	t.Parallel()
	b := setup(t)
	release := make(chan struct{})
	b.on("/TransOut", func(w http.ResponseWriter, _ *http.Request) {
		<-release
		_, _ = io.WriteString(w, `{"dtm_result":"SUCCESS"}`)
	})
	for range 3 {
		if status, body := b.do(t, http.MethodPost, "submit", b.submitBody("repeat-1", false)); status != http.StatusOK {
			t.Fatalf("submit: HTTP %d %s", status, body)
		}
	}
	close(release)
	b.waitStatus(t, "repeat-1", "succeed")
	if n, m := b.count("/TransOut"), b.count("/TransIn"); n != 1 || m != 1 {
		t.Errorf("TransOut called %d times, TransIn %d; want once each", n, m)
	}

	// The gid names that saga: other steps under it are refused.
	other := b.submitBody("repeat-1", false)
	other["payloads"] = []string{`{"amount":31}`, `{"amount":30}`}
	if status, body := b.do(t, http.MethodPost, "submit", other); status != http.StatusConflict || !strings.Contains(body, "FAILURE") {
		t.Errorf("submit of other steps under the gid: HTTP %d %s, want 409 FAILURE", status, body)
	}
}

// TestForceStop cancels a running saga: the action in flight finishes, its
// compensation runs, and the transaction ends failed.
func TestForceStop(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started, release := make(chan struct{}), make(chan struct{})
	b.on("/TransOut", func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, `{"dtm_result":"SUCCESS"}`)
	})
	if status, body := b.do(t, http.MethodPost, "submit", b.submitBody("stop-1", false)); status != http.StatusOK {
		t.Fatalf("submit: HTTP %d %s", status, body)
	}
	<-started
	if status, body := b.do(t, http.MethodPost, "forceStop", map[string]string{"gid": "stop-1"}); status != http.StatusOK {
		t.Fatalf("forceStop: HTTP %d %s", status, body)
	}
	close(release)
	q := b.waitStatus(t, "stop-1", "failed")
	if b.count("/TransIn") != 0 || b.count("/TransOutCompensate") != 1 {
		t.Errorf("after forceStop: TransIn %d calls, TransOutCompensate %d; want 0 and 1",
			b.count("/TransIn"), b.count("/TransOutCompensate"))
	}
	if !strings.Contains(q.Transaction.RollbackReason, "cancelled") {
		t.Errorf("rollback reason %q", q.Transaction.RollbackReason)
	}
	if status, body := b.do(t, http.MethodPost, "forceStop", map[string]string{"gid": "stop-1"}); status != http.StatusConflict {
		t.Errorf("forceStop of a finished transaction: HTTP %d %s, want 409", status, body)
	}
	if status, _ := b.do(t, http.MethodPost, "forceStop", map[string]string{"gid": "nobody"}); status != http.StatusNotFound {
		t.Errorf("forceStop of an unknown gid: HTTP %d, want 404", status)
	}
}

// TestAllPages lists the DTM sagas newest first, page by page.
func TestAllPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, gid := range []string{"all-1", "all-2", "all-3"} {
		if status, body := b.do(t, http.MethodPost, "submit", b.submitBody(gid, true)); status != http.StatusOK {
			t.Fatalf("submit: HTTP %d %s", status, body)
		}
	}
	// A native saga is not a DTM transaction.
	_, _, err := b.coord.Submit(context.Background(), saga.Definition{Name: "native", Steps: []saga.StepDefinition{
		{Name: "a", Action: saga.Request{Method: http.MethodPost, URL: b.busi.URL + "/native"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var gids []string
	position := ""
	for range 3 {
		status, body := b.do(t, http.MethodGet, "all?limit=2&position="+position, nil)
		var page dtmapi.AllJSON
		if status != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil {
			t.Fatalf("all: HTTP %d %s", status, body)
		}
		for _, tr := range page.Transactions {
			gids = append(gids, tr.Gid)
		}
		if position = page.NextPosition; position == "" {
			break
		}
	}
	if strings.Join(gids, ",") != "all-3,all-2,all-1" {
		t.Errorf("all listed %v, want all-3, all-2, all-1", gids)
	}
	if q := b.query(t, "never-submitted"); q.Transaction != nil || q.Branches == nil || len(q.Branches) != 0 {
		t.Errorf("query of an unknown gid: %+v, want a null transaction and no branches", q)
	}
}

// TestBadSubmit: bad input is a 400 naming DTM's field, and creates no saga.
func TestBadSubmit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	body := b.submitBody("bad-1", false)
	body["payloads"] = []string{`{"amount":30}`, `amount=30`}
	status, answer := b.do(t, http.MethodPost, "submit", body)
	if status != http.StatusBadRequest || !strings.Contains(answer, `"field":"payloads[1]"`) {
		t.Errorf("submit: HTTP %d %s, want 400 naming payloads[1]", status, answer)
	}
	if q := b.query(t, "bad-1"); q.Transaction != nil {
		t.Errorf("a refused submit created %+v", q.Transaction)
	}
}
