package participant_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracseq/transaction-service/participant"
)

// hangingHost is a participant host one of whose paths hangs until
// released while its other paths answer at once.
type hangingHost struct {
	srv        *httptest.Server
	release    chan struct{}
	hanging    atomic.Int32 // calls in /hang now
	maxHanging atomic.Int32
}

func newHangingHost(t *testing.T) *hangingHost {
	t.Helper()
	h := &hangingHost{release: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/hang") {
			n := h.hanging.Add(1)
			for m := h.maxHanging.Load(); n > m && !h.maxHanging.CompareAndSwap(m, n); m = h.maxHanging.Load() {
			}
			select {
			case <-h.release:
			case <-r.Context().Done():
			}
			h.hanging.Add(-1)
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// A hanging endpoint does not take every connection to its host: with 8
// connections per host and 20 calls hanging on one path, calls to the
// host's other paths go through at once.
func TestHangingEndpointLeavesConnectionsToOthers(t *testing.T) {
	t.Parallel()
	const perHost = 8
	h := newHangingHost(t)
	client := participant.New(participant.Config{MaxConnsPerHost: perHost})

	var hung sync.WaitGroup
	for range 20 {
		hung.Go(func() {
			call := newCall(h.srv.URL + "/hang")
			call.Request.TimeoutMs = 60_000
			if res := client.Invoke(context.Background(), call); res.Outcome != participant.OutcomeSuccess {
				t.Errorf("hanging call once released: %+v", res)
			}
		})
	}
	deadline := time.Now().Add(20 * time.Second)
	for h.hanging.Load() < perHost/2 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls reached the hanging path", h.hanging.Load())
		}
		time.Sleep(time.Millisecond)
	}

	// While they hang, the host's other paths answer.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var others sync.WaitGroup
	for i := range 10 {
		others.Go(func() {
			res := client.Invoke(ctx, newCall(fmt.Sprintf("%s/other/%d", h.srv.URL, i%3)))
			if res.Outcome != participant.OutcomeSuccess {
				t.Errorf("call to another path while one hangs: %+v", res)
			}
		})
	}
	others.Wait()
	if got := h.maxHanging.Load(); got > perHost/2 {
		t.Errorf("%d calls hung at once on one path; want at most %d of the host's %d connections", got, perHost/2, perHost)
	}
	close(h.release)
	hung.Wait()
}
