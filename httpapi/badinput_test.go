package httpapi

import (
	"net/http"
	"testing"

	"github.com/tracseq/transaction-service/internal/apitest"
)

// knownID is a well-formed saga id for cases where the id is not the point.
const knownID = apitest.KnownID

// TestBadRequests sends every bad input through real HTTP and checks the
// status, the problem's field and detail, and that the coordinator was
// never called.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	for _, tc := range apitest.BadRequests() {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			h := http.Header{}
			for k, v := range tc.Header {
				h.Set(k, v)
			}
			resp, raw := b.do(t, tc.Method, tc.Path, tc.SendContentType(), tc.Payload(), h)
			if resp.StatusCode != tc.Status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.Status, raw)
			}
			p := decodeProblem(t, resp, raw)
			for _, m := range tc.Mismatches(resp.StatusCode, p.Field, p.Detail) {
				t.Error(m)
			}
			if calls := b.fake.Calls(); len(calls) != 0 {
				t.Errorf("bad input reached the coordinator: %v", calls)
			}
		})
	}
}
