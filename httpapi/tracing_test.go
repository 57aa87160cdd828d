package httpapi

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	saga "github.com/tracseq/transaction-service"
)

func TestSubmitKeepsTraceParent(t *testing.T) {
	t.Parallel()
	const (
		header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		body   = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	)
	var mu sync.Mutex
	var got []string
	b := setup(t, &fakeCoordinator{submit: func(_ context.Context, def saga.Definition) (*saga.Saga, bool, error) {
		mu.Lock()
		got = append(got, def.TraceParent)
		mu.Unlock()
		return sampleSaga(saga.SagaStatusExecuting), false, nil
	}})
	withBody := strings.Replace(validDefinition, `{"name":"order",`, `{"name":"order","trace_parent":"`+body+`",`, 1)
	for _, c := range []struct {
		def, header, want string
	}{
		{validDefinition, header, header},       // from the header
		{withBody, header, body},                // the body's wins
		{validDefinition, "00-not-a-trace", ""}, // an invalid header is ignored
		{validDefinition, "", ""},
	} {
		h := http.Header{}
		if c.header != "" {
			h.Set("traceparent", c.header)
		}
		resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas", contentTypeJSON, []byte(c.def), h)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("submit with traceparent %q: %d %s", c.header, resp.StatusCode, raw)
		}
		mu.Lock()
		last := got[len(got)-1]
		mu.Unlock()
		if last != c.want {
			t.Errorf("traceparent header %q: the definition holds %q, want %q", c.header, last, c.want)
		}
	}

	bad := strings.Replace(validDefinition, `{"name":"order",`, `{"name":"order","trace_parent":"nope",`, 1)
	resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas", contentTypeJSON, []byte(bad), nil)
	if p := decodeProblem(t, resp, raw); resp.StatusCode != http.StatusBadRequest || len(p.Errors) == 0 || p.Errors[0].Field != "trace_parent" {
		t.Errorf("a bad trace_parent in the body: %d %s, want 400 naming trace_parent", resp.StatusCode, raw)
	}
}
