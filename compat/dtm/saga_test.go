package dtm

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtm-labs/dtm/client/dtmcli"
)

// call is one call a participant received.
type call struct {
	path, gid, transType, branchID, op, body string
	start, end                               time.Time
}

// busi is a DTM-style participant: each path answers with its handler (200
// SUCCESS when it has none) and every call is recorded.
type busi struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	calls    []call
	handlers map[string]http.HandlerFunc
}

func newBusi(t *testing.T) *busi {
	b := &busi{t: t, handlers: map[string]http.HandlerFunc{}}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *busi) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	q := r.URL.Query()
	c := call{path: r.URL.Path, gid: q.Get("gid"), transType: q.Get("trans_type"),
		branchID: q.Get("branch_id"), op: q.Get("op"), body: string(body), start: time.Now()}
	b.mu.Lock()
	h := b.handlers[r.URL.Path]
	b.mu.Unlock()
	if h != nil {
		h(w, r)
	} else {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(dtmcli.MapSuccess)
	}
	c.end = time.Now()
	b.mu.Lock()
	b.calls = append(b.calls, c)
	b.mu.Unlock()
}

func (b *busi) url(path string) string { return b.srv.URL + path }

// paths returns the paths called, in the order the calls ended.
func (b *busi) paths() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, c := range b.calls {
		out = append(out, c.path)
	}
	return out
}

func (b *busi) received() []call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

func assertStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

type transReq struct {
	Amount int    `json:"amount"`
	User   string `json:"user"`
}

// TestWaitResultSucceeds runs a two-step saga with WaitResult: Submit
// returns once both actions succeeded, the participants got DTM's query
// parameters and the payload, query shows DTM's statuses, the saga is an
// ordinary one in the API, and a second Submit of the gid runs nothing.
func TestWaitResultSucceeds(t *testing.T) {
	b := newBusi(t)
	gid := dtmcli.MustGenGid(dtmServer)
	req := transReq{Amount: 30, User: "lab-7"}
	s := dtmcli.NewSaga(dtmServer, gid).
		Add(b.url("/TransOut"), b.url("/TransOutCompensate"), &req).
		Add(b.url("/TransIn"), b.url("/TransInCompensate"), &req)
	s.WaitResult = true
	if err := s.Submit(); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	assertStrings(t, "calls", b.paths(), []string{"/TransOut", "/TransIn"})
	for i, c := range b.received() {
		want := []string{gid, "saga", []string{"01", "02"}[i], "action"}
		if got := []string{c.gid, c.transType, c.branchID, c.op}; !slices.Equal(got, want) {
			t.Errorf("call %s query %q, want %q", c.path, got, want)
		}
		var got transReq
		if err := json.Unmarshal([]byte(c.body), &got); err != nil || got != req {
			t.Errorf("call %s body %q, want the payload %+v", c.path, c.body, req)
		}
	}

	q := dtmQuery(t, gid)
	if q.Transaction.Status != "succeed" || q.Transaction.Gid != gid || q.Transaction.TransType != "saga" {
		t.Errorf("transaction %+v", *q.Transaction)
	}
	assertStrings(t, "branches", q.branchStatuses(), []string{
		"01 compensate prepared", "01 action succeed", "02 compensate prepared", "02 action succeed"})
	if q.Branches[1].URL != b.url("/TransOut") {
		t.Errorf("branch url %q, want %q", q.Branches[1].URL, b.url("/TransOut"))
	}

	// The same saga in the native API, with the gid as its idempotency key.
	var sg struct {
		Name, Status, IdempotencyKey string `json:"-"`
	}
	var raw map[string]any
	getJSON(t, apiURL+"/api/v1/sagas/"+q.Transaction.SagaID, &raw)
	sg.Name, _ = raw["name"].(string)
	sg.Status, _ = raw["status"].(string)
	sg.IdempotencyKey, _ = raw["idempotency_key"].(string)
	if sg.Name != "dtm" || sg.Status != "Completed" || sg.IdempotencyKey != "dtm:"+gid {
		t.Errorf("native view of the saga: %v", raw)
	}
	var events struct {
		Events []struct{ Type string } `json:"events"`
	}
	getJSON(t, apiURL+"/api/v1/sagas/"+q.Transaction.SagaID+"/events", &events)
	if n := len(events.Events); n == 0 || events.Events[n-1].Type != "SagaCompleted" {
		t.Errorf("audit trail %v", events.Events)
	}

	// Submitting the gid again is idempotent: the outcome, no new calls.
	if err := s.Submit(); err != nil {
		t.Fatalf("second Submit: %v", err)
	}
	if n := len(b.paths()); n != 2 {
		t.Errorf("after a repeated submit the participants got %d calls, want 2", n)
	}
}

// TestRefusedBranchIsCompensated: the second branch answers 409 FAILURE.
// Submit with WaitResult fails with FAILURE once the saga is rolled back;
// as in DTM, the refused branch's compensation is called too, then the
// first's.
func TestRefusedBranchIsCompensated(t *testing.T) {
	b := newBusi(t)
	b.handlers["/TransIn"] = func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(dtmcli.MapFailure)
	}
	gid := dtmcli.MustGenGid(dtmServer)
	req := transReq{Amount: 30}
	s := dtmcli.NewSaga(dtmServer, gid).
		Add(b.url("/TransOut"), b.url("/TransOutCompensate"), &req).
		Add(b.url("/TransIn"), b.url("/TransInCompensate"), &req)
	s.WaitResult = true
	err := s.Submit()
	if err == nil || !strings.Contains(err.Error(), dtmcli.ResultFailure) {
		t.Fatalf("Submit: %v, want an error with FAILURE", err)
	}
	assertStrings(t, "calls", b.paths(), []string{"/TransOut", "/TransIn", "/TransInCompensate", "/TransOutCompensate"})
	for _, c := range b.received()[2:] {
		if c.op != "compensate" {
			t.Errorf("call %s op %q, want compensate", c.path, c.op)
		}
	}
	q := dtmQuery(t, gid)
	if q.Transaction.Status != "failed" || !strings.Contains(q.Transaction.RollbackReason, "FAILURE") {
		t.Errorf("transaction %+v", *q.Transaction)
	}
	assertStrings(t, "branches", q.branchStatuses(), []string{
		"01 compensate succeed", "01 action succeed", "02 compensate succeed", "02 action failed"})
}

// TestConcurrentSaga: three branches, SetConcurrent, the third ordered
// after the first two (AddBranchOrder). The first two run at the same time
// (each waits for the other to arrive), the third starts only once both
// have succeeded.
func TestConcurrentSaga(t *testing.T) {
	b := newBusi(t)
	arrived := map[string]chan struct{}{"/A": make(chan struct{}), "/B": make(chan struct{})}
	var overlapped sync.Map
	meet := func(self, other string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			close(arrived[self])
			select {
			case <-arrived[other]:
				overlapped.Store(self, true)
			case <-time.After(10 * time.Second):
			}
			_ = json.NewEncoder(w).Encode(dtmcli.MapSuccess)
		}
	}
	b.handlers["/A"] = meet("/A", "/B")
	b.handlers["/B"] = meet("/B", "/A")
	gid := dtmcli.MustGenGid(dtmServer)
	req := transReq{Amount: 1}
	s := dtmcli.NewSaga(dtmServer, gid).
		Add(b.url("/A"), b.url("/ACompensate"), &req).
		Add(b.url("/B"), b.url("/BCompensate"), &req).
		Add(b.url("/C"), b.url("/CCompensate"), &req).
		AddBranchOrder(2, []int{0, 1}).
		SetConcurrent()
	s.WaitResult = true
	if err := s.Submit(); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	calls := b.received()
	if len(calls) != 3 {
		t.Fatalf("calls %v, want A, B and C once each", b.paths())
	}
	byPath := map[string]call{}
	for _, c := range calls {
		byPath[c.path] = c
	}
	for _, p := range []string{"/A", "/B"} {
		if _, ok := overlapped.Load(p); !ok {
			t.Errorf("%s was not in flight while the other independent branch was", p)
		}
	}
	last := byPath["/C"]
	for _, p := range []string{"/A", "/B"} {
		if c, ok := byPath[p]; !ok || c.end.After(last.start) {
			t.Errorf("C started at %v before %s ended (%v)", last.start, p, c.end)
		}
	}
	q := dtmQuery(t, gid)
	if q.Transaction.Status != "succeed" || !q.Transaction.Concurrent {
		t.Errorf("transaction %+v", *q.Transaction)
	}
}

// TestUnauthenticatedSubmitRefused: with API_TOKENS set, the DTM endpoint
// wants the token like the rest of the API.
func TestUnauthenticatedSubmitRefused(t *testing.T) {
	resp, err := http.Post(dtmServer+"/submit", "application/json", strings.NewReader(`{"gid":"x","trans_type":"saga"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("submit without a token: HTTP %d, want 401", resp.StatusCode)
	}
	if resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("a 401 without WWW-Authenticate")
	}
}
