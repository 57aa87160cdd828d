package client_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/client"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/postgres"
)

// TestSubmitAfterLostAnswer: the service takes the first submit but its
// answer is lost (a gateway answers 502); the client sends it again under
// the same idempotency key, and exactly one saga exists.
func TestSubmitAfterLostAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewDatabase(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := postgres.Migrate(ctx, st.Pool(), nil); err != nil {
		t.Fatal(err)
	}
	coord, err := engine.New(st, engine.Config{InstanceID: "client-test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := coord.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = coord.Stop(context.Background()) })
	api, err := httpapi.NewServer(httpapi.Config{Coordinator: coord})
	if err != nil {
		t.Fatal(err)
	}
	svc := httptest.NewServer(api.Handler())
	t.Cleanup(svc.Close)
	busi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{}`) }))
	t.Cleanup(busi.Close)

	target, _ := url.Parse(svc.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var submits atomic.Int32
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && submits.Add(1) == 1 {
			rec := httptest.NewRecorder()
			proxy.ServeHTTP(rec, r) // the service takes it…
			w.WriteHeader(http.StatusBadGateway)
			return // …and its answer is lost
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(gateway.Close)

	c, err := client.New(gateway.URL, client.WithSubmitRetries(3, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	def := twoSteps(busi.URL, "lost-answer", "/charge")
	s, replayed, err := c.Submit(ctx, def, client.WithWait(10*time.Second))
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	if s.IdempotencyKey == "" || replayed || submits.Load() != 2 {
		t.Errorf("saga %+v replayed %v after %d submits; want a generated key, not replayed, 2 submits", s, replayed, submits.Load())
	}
	n := 0
	for page, err := range c.List(ctx, client.ListQuery{Name: "lost-answer"}) {
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Sagas)
	}
	if n != 1 {
		t.Errorf("%d sagas exist, want 1", n)
	}
	if s.Status != saga.SagaStatusCompleted {
		t.Errorf("status %s", s.Status)
	}
	// A refusal is not retried, and names its field.
	bad := def
	bad.Steps = append([]client.Step(nil), def.Steps...)
	bad.Steps[1].Action.Method = "FETCH"
	if _, _, err := c.Submit(ctx, bad); client.FieldOf(err) != "steps[1].action.method" {
		t.Errorf("bad method: %v (field %q)", err, client.FieldOf(err))
	}
	if _, err := client.New("localhost:8080"); err == nil {
		t.Error("a base URL without scheme was accepted")
	}
}
