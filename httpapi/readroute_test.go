package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

func TestLegalHoldRoutes(t *testing.T) {
	t.Parallel()
	var got []bool
	var mu sync.Mutex
	b := setup(t, &fakeCoordinator{hold: func(_ context.Context, id saga.ID, hold bool) (*saga.Saga, error) {
		if id != sampleID {
			return nil, saga.ErrNotFound
		}
		mu.Lock()
		got = append(got, hold)
		mu.Unlock()
		s := sampleSaga(saga.SagaStatusCompleted)
		s.LegalHold = hold
		return s, nil
	}})
	for _, tc := range []struct {
		method string
		want   bool
	}{{http.MethodPost, true}, {http.MethodDelete, false}} {
		resp, raw := b.do(t, tc.method, "/api/v1/sagas/"+sampleID.String()+"/hold", "", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s hold: status %d; body %s", tc.method, resp.StatusCode, raw)
		}
		var sj SagaJSON
		if err := json.Unmarshal(raw, &sj); err != nil {
			t.Fatal(err)
		}
		if sj.LegalHold != tc.want || sj.ID != sampleID.String() {
			t.Errorf("%s hold answered %+v", tc.method, sj)
		}
	}
	if len(got) != 2 || !got[0] || got[1] {
		t.Errorf("coordinator saw holds %v, want [true false]", got)
	}
	resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas/"+saga.NewID().String()+"/hold", "", nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("hold of an unknown saga: status %d; body %s", resp.StatusCode, raw)
	}
	resp, _ = b.do(t, http.MethodPost, "/api/v1/sagas/not-a-uuid/hold", "", nil, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("hold with a bad id: status %d", resp.StatusCode)
	}
}

// TestReadContext checks the read routing: reads may go to a replica,
// except those of a client that wrote within ReadAfterWrite.
func TestReadContext(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var replicaOK []bool
	note := func(ctx context.Context) {
		mu.Lock()
		replicaOK = append(replicaOK, saga.ReplicaReadAllowed(ctx))
		mu.Unlock()
	}
	last := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return replicaOK[len(replicaOK)-1]
	}
	b := setup(t, &fakeCoordinator{
		get: func(ctx context.Context, id saga.ID) (*saga.Saga, error) {
			note(ctx)
			return sampleSaga(saga.SagaStatusExecuting), nil
		},
		list: func(ctx context.Context, _ saga.Filter) (saga.Page, error) {
			note(ctx)
			return saga.Page{Sagas: []*saga.Saga{}}, nil
		},
		statistics: func(ctx context.Context, _ time.Duration) (saga.Stats, error) {
			note(ctx)
			return saga.Stats{ByStatus: map[saga.SagaStatus]int64{}}, nil
		},
		control: func(ctx context.Context, id saga.ID, _ saga.ControlAction) (*saga.Saga, error) {
			if saga.ReplicaReadAllowed(ctx) {
				t.Error("an operator action's context allows replica reads")
			}
			return sampleSaga(saga.SagaStatusExecuting), nil
		},
	}, func(c *Config) { c.Tokens = []string{"token-a", "token-b"}; c.ReadAfterWrite = time.Minute })
	now := time.Now()
	b.server.writers.now = func() time.Time { return now }
	as := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	read := func(token, path string) bool {
		t.Helper()
		if resp, raw := b.do(t, http.MethodGet, path, "", nil, as(token)); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d; body %s", path, resp.StatusCode, raw)
		}
		return last()
	}
	sagaPath := "/api/v1/sagas/" + sampleID.String()
	for _, path := range []string{sagaPath, "/api/v1/sagas", "/api/v1/statistics"} {
		if !read("token-a", path) {
			t.Errorf("GET %s of a client that did not write: replica reads not allowed", path)
		}
	}
	if resp, raw := b.do(t, http.MethodPost, sagaPath+"/pause", "", nil, as("token-a")); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("pause: %d %s", resp.StatusCode, raw)
	}
	if read("token-a", sagaPath) || read("token-a", "/api/v1/sagas") {
		t.Error("a client's read right after its write may go to a replica")
	}
	if !read("token-b", sagaPath) {
		t.Error("another client's read is kept on the primary")
	}
	now = now.Add(time.Minute + time.Second)
	if !read("token-a", sagaPath) {
		t.Error("the client's reads stay on the primary after the window")
	}
}

func TestReplicaReadsMiddleware(t *testing.T) {
	t.Parallel()
	b := setup(t, &fakeCoordinator{})
	var got []bool
	h := b.server.ReplicaReads(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, saga.ReplicaReadAllowed(r.Context()))
	}))
	req := func(method string) {
		r := httptest.NewRequest(method, "/ui/", nil)
		r.RemoteAddr = "192.0.2.7:4000"
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	req(http.MethodGet)
	req(http.MethodPost) // an operator button: a write
	req(http.MethodGet)
	if len(got) != 3 || !got[0] || got[1] || got[2] {
		t.Errorf("replica reads allowed: %v, want [true false false]", got)
	}
}

func TestReadyShowsReplicasWithoutAddresses(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	out := newReadyJSON(saga.Health{Durable: true, Mode: "durable", Replicas: []saga.ReplicaHealth{
		{Name: "db-replica.internal:5432/tracseq", Usable: true, Lag: 250 * time.Millisecond, CheckedAt: at},
		{Name: "10.1.2.3:5432/tracseq", Error: "not answering", CheckedAt: at},
	}}, true, "i-1", "v")
	if out.Status != StatusReady || out.Database == nil || len(out.Database.Replicas) != 2 {
		t.Fatalf("ready = %+v", out)
	}
	r1, r2 := out.Database.Replicas[0], out.Database.Replicas[1]
	if r1.Name != "replica 1" || !r1.Usable || r1.LagMs != 250 || r1.CheckedAt == nil || !r1.CheckedAt.Equal(at) {
		t.Errorf("replica 1 = %+v", r1)
	}
	if r2.Name != "replica 2" || r2.Usable || r2.Error != "not answering" {
		t.Errorf("replica 2 = %+v", r2)
	}
	raw, _ := json.Marshal(out)
	for _, secret := range []string{"db-replica.internal", "10.1.2.3", "5432"} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("readiness shows %q: %s", secret, raw)
		}
	}
}
