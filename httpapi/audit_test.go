package httpapi

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/memory"
)

func TestParseToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		entry, name, secret string
	}{
		{"lab-ops:s3cret", "lab-ops", "s3cret"},
		{"ci.bot_2:a:b:c", "ci.bot_2", "a:b:c"},
		{"plain-secret", "token-4", "plain-secret"},
		{"-x:y", "token-4", "-x:y"}, // not a name: a bare secret
		{"has space:y", "token-4", "has space:y"},
	}
	for _, tc := range tests {
		name, secret, err := ParseToken(tc.entry, 4)
		if err != nil || name != tc.name || secret != tc.secret {
			t.Errorf("ParseToken(%q) = %q, %q, %v; want %q, %q", tc.entry, name, secret, err, tc.name, tc.secret)
		}
	}
	if _, _, err := ParseToken("lab-ops:", 2); err == nil || strings.Contains(err.Error(), "lab-ops:") && !strings.Contains(err.Error(), "token 2") {
		t.Errorf("ParseToken of an empty secret: %v", err)
	}
	if _, err := NewServer(Config{Coordinator: &fakeCoordinator{}, Tokens: []string{"a:x", "a:y"}}); err == nil {
		t.Error("NewServer accepted two tokens named a")
	}
}

// TestOperatorRequestsAreAttributed sends operator requests with named and
// unnamed tokens and checks the requester the coordinator (and through it
// the store) is given: the token's name, the reason, the client address.
func TestOperatorRequestsAreAttributed(t *testing.T) {
	t.Parallel()
	got := make(chan saga.Requester, 10)
	capture := func(ctx context.Context) {
		r, ok := saga.RequesterFrom(ctx)
		if !ok {
			r = saga.Requester{Actor: "<none>"}
		}
		got <- r
	}
	fake := &fakeCoordinator{
		control: func(ctx context.Context, id saga.ID, a saga.ControlAction) (*saga.Saga, error) {
			capture(ctx)
			return sampleSaga(saga.SagaStatusExecuting), nil
		},
		cleanup: func(ctx context.Context) (int, error) { capture(ctx); return 3, nil },
		submit: func(ctx context.Context, def saga.Definition) (*saga.Saga, bool, error) {
			capture(ctx)
			return sampleSaga(saga.SagaStatusCreated), false, nil
		},
	}
	b := setup(t, fake, func(c *Config) { c.Tokens = []string{"lab-ops:s3cret", "plain-secret"} })
	bearer := func(secret string) http.Header { return http.Header{"Authorization": {"Bearer " + secret}} }
	path := "/api/v1/sagas/" + sampleID.String() + "/pause"

	resp, raw := b.do(t, http.MethodPost, path, "application/json", []byte(`{"reason": "stock count in progress"}`), bearer("s3cret"))
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("pause: status %d, %s", resp.StatusCode, raw)
	}
	r := <-got
	if r.Actor != "lab-ops" || r.Reason != "stock count in progress" || !strings.HasPrefix(r.Address, "127.0.0.1:") || r.Instance != "test-instance" {
		t.Errorf("pause requester = %+v", r)
	}
	if resp, raw := b.do(t, http.MethodPost, path, "", nil, bearer("plain-secret")); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("pause without body: status %d, %s", resp.StatusCode, raw)
	}
	if r := <-got; r.Actor != "token-2" || r.Reason != "" {
		t.Errorf("unnamed token's requester = %+v, want token-2 without reason", r)
	}
	if resp, raw := b.do(t, http.MethodPost, "/api/v1/maintenance/cleanup", "application/json", []byte(`{"reason":"quarterly"}`), bearer("s3cret")); resp.StatusCode != http.StatusOK {
		t.Fatalf("cleanup: status %d, %s", resp.StatusCode, raw)
	}
	if r := <-got; r.Actor != "lab-ops" || r.Reason != "quarterly" {
		t.Errorf("cleanup requester = %+v", r)
	}
	if resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas?reason=restock+of+lab+7", "application/json", []byte(validDefinition), bearer("s3cret")); resp.StatusCode != http.StatusCreated {
		t.Fatalf("submit: status %d, %s", resp.StatusCode, raw)
	}
	if r := <-got; r.Actor != "lab-ops" || r.Reason != "restock of lab 7" {
		t.Errorf("submit requester = %+v", r)
	}

	// The Go client sends the reason as the body.
	if _, err := b.client.ControlWithReason(t.Context(), sampleID.String(), "cancel", "wrong order"); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.Actor != "lab-ops" || r.Reason != "wrong order" {
		t.Errorf("client's cancel requester = %+v", r)
	}

	// Bad bodies are refused naming what is wrong, before the coordinator.
	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		field                   string
	}{
		{"unknown field", "application/json", `{"reason":"x","why":"y"}`, http.StatusBadRequest, "why"},
		{"not an object", "application/json", `["x"]`, http.StatusBadRequest, ""},
		{"too long", "application/json", `{"reason":"` + strings.Repeat("x", saga.MaxReasonLength+1) + `"}`, http.StatusBadRequest, "reason"},
		{"not JSON", "text/plain", `because`, http.StatusUnsupportedMediaType, ""},
	} {
		resp, raw := b.do(t, http.MethodPost, path, tc.contentType, []byte(tc.body), bearer("s3cret"))
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, resp.StatusCode, tc.status, raw)
			continue
		}
		var p Problem
		if err := json.Unmarshal(raw, &p); err != nil || p.Field != tc.field {
			t.Errorf("%s: problem %s, want field %q", tc.name, raw, tc.field)
		}
	}
	if resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas?reason="+strings.Repeat("y", saga.MaxReasonLength+1), "application/json",
		[]byte(validDefinition), bearer("s3cret")); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), `"field":"reason"`) {
		t.Errorf("submit with a long reason: status %d, %s", resp.StatusCode, raw)
	}
	select {
	case r := <-got:
		t.Errorf("a refused request reached the coordinator as %+v", r)
	default:
	}
}

// tamperedAudit is an audit store that alters what another reads.
type tamperedAudit struct {
	saga.AuditStore
	alter func(*saga.Event)
}

func (a tamperedAudit) Chains(ctx context.Context, q saga.ChainQuery, head func(saga.ChainHead) error, event func(saga.Event) error) (int, saga.ID, error) {
	return a.AuditStore.Chains(ctx, q, head, func(e saga.Event) error {
		a.alter(&e)
		return event(e)
	})
}

// auditedSaga writes a saga with a few events to a memory store.
func auditedSaga(t *testing.T, store *memory.Store) *saga.Saga {
	t.Helper()
	ctx := saga.WithRequester(t.Context(), saga.Requester{Actor: "lab-ops", Reason: "first run"})
	var def saga.Definition
	if err := json.Unmarshal([]byte(validDefinition), &def); err != nil {
		t.Fatal(err)
	}
	s := &saga.Saga{ID: saga.NewID(), Name: def.Name, TransactionID: saga.NewID(), Definition: def, OwnerID: "i-1",
		Steps: make([]saga.Step, len(def.Steps))}
	for i, st := range def.Steps {
		s.Steps[i] = saga.Step{Index: i, Name: st.Name}
	}
	sg, _, err := store.CreateSaga(ctx, saga.NewSaga{Saga: s, LeaseFor: time.Hour,
		Events: []saga.Event{{Type: saga.EventSagaCreated, InstanceID: "i-1"}, {Type: saga.EventSagaStarted, InstanceID: "i-1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.RequestControl(ctx, sg.ID, saga.ControlPause); err != nil {
		t.Fatal(err)
	}
	return sg
}

func TestAuditEndpoint(t *testing.T) {
	t.Parallel()
	store := memory.New(memory.Config{})
	sg := auditedSaga(t, store)
	b := setup(t, nil, func(c *Config) { c.Audit = store })
	path := "/api/v1/sagas/" + sg.ID.String() + "/audit"

	resp, raw := b.do(t, http.MethodGet, path, "", nil, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Audit-Verified") != "true" {
		t.Fatalf("status %d, verified %q: %s", resp.StatusCode, resp.Header.Get("Audit-Verified"), raw)
	}
	var a AuditJSON
	if err := json.Unmarshal(raw, &a); err != nil {
		t.Fatal(err)
	}
	if !a.Verified || a.Broken != nil || a.Keyed || a.EventSeq != 3 || len(a.Events) != 3 || a.LastHash != a.Events[2].Hash {
		t.Fatalf("audit = %+v", a)
	}
	for i, e := range a.Events {
		want := ""
		if i > 0 {
			want = a.Events[i-1].Hash
		}
		if e.PrevHash != want || len(e.Hash) != 64 || len(e.CreatedAt) != len("2006-01-02T15:04:05.000Z") || !strings.HasSuffix(e.CreatedAt, "Z") {
			t.Errorf("event %d = %+v", i, e)
		}
	}
	if e := a.Events[2]; e.Type != saga.EventOperatorRequested || e.Actor != "lab-ops" || !strings.Contains(string(e.Data), `"reason":"first run"`) {
		t.Errorf("request event = %+v", e)
	}

	resp, raw = b.do(t, http.MethodGet, path+"?format=csv", "", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	rows, err := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	if err != nil || len(rows) != 4 || strings.Join(rows[0], ",") != strings.Join(AuditCSVHeader, ",") {
		t.Fatalf("csv rows %v (%v)", rows, err)
	}
	if rows[3][7] != "lab-ops" || rows[3][10] != a.Events[2].Hash || rows[3][9] != a.Events[1].Hash || rows[1][6] != "i-1" {
		t.Errorf("csv row %v", rows[3])
	}

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/api/v1/sagas/" + saga.NewID().String() + "/audit", http.StatusNotFound},
		{path + "?format=xml", http.StatusBadRequest},
		{"/api/v1/sagas/nope/audit", http.StatusBadRequest},
	} {
		if resp, raw := b.do(t, http.MethodGet, tc.path, "", nil, nil); resp.StatusCode != tc.status {
			t.Errorf("GET %s: status %d, want %d (%s)", tc.path, resp.StatusCode, tc.status, raw)
		}
	}

	// Altered data is found, and named.
	bad := setup(t, nil, func(c *Config) {
		c.Audit = tamperedAudit{AuditStore: store, alter: func(e *saga.Event) {
			if e.Seq == 2 {
				e.Data = json.RawMessage(`{"edited":true}`)
			}
		}}
	})
	resp, raw = bad.do(t, http.MethodGet, path, "", nil, nil)
	if err := json.Unmarshal(raw, &a); err != nil || resp.Header.Get("Audit-Verified") != "false" || a.Verified || a.Broken == nil ||
		a.Broken.Seq != 2 || a.Broken.EventID == nil || *a.Broken.EventID != a.Events[1].ID {
		t.Errorf("tampered audit: verified header %q, %s", resp.Header.Get("Audit-Verified"), raw)
	}
	// With another key the chain does not verify either.
	keyed := setup(t, nil, func(c *Config) { c.Audit = store; c.Chain = saga.NewChain([]byte("a key the store did not use")) })
	resp, _ = keyed.do(t, http.MethodGet, path, "", nil, nil)
	if resp.Header.Get("Audit-Verified") != "false" {
		t.Error("a chain checked with another key verified")
	}
	// Without an audit store the route says so.
	if resp, _ := setup(t, nil).do(t, http.MethodGet, path, "", nil, nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("no audit store: status %d, want 503", resp.StatusCode)
	}
}
