package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// The stubs' routes. A saga's step k (1-based) calls POST /step/{k}/action
// and, to undo it, POST /step/{k}/compensate. The action answers 400 when
// its URL carries ?refuse=1: the tool decides per saga which ones refuse,
// so it knows each saga's expected end state.
const (
	stubActionPattern     = "POST /step/{k}/action"
	stubCompensatePattern = "POST /step/{k}/compensate"
	stubRefuseParam       = "refuse"
	stubShutdownTimeout   = 5 * time.Second
	stubReadHeaderTimeout = 10 * time.Second
)

// stubCounts are the calls the stubs answered.
type stubCounts struct {
	Actions       int64 `json:"actions"`
	Refusals      int64 `json:"refusals"`
	Compensations int64 `json:"compensations"`
}

// stubs are the participant stubs: one HTTP server on loopback answering
// every step of every saga after Latency.
type stubs struct {
	latency time.Duration
	srv     *http.Server
	ln      net.Listener
	done    chan struct{}

	actions       atomic.Int64
	refusals      atomic.Int64
	compensations atomic.Int64
}

// startStubs starts the stubs on a free loopback port.
func startStubs(latency time.Duration) (*stubs, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for participant stubs: %w", err)
	}
	s := &stubs{latency: latency, ln: ln, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc(stubActionPattern, s.action)
	mux.HandleFunc(stubCompensatePattern, s.compensate)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: stubReadHeaderTimeout}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // returns http.ErrServerClosed on Close
	}()
	return s, nil
}

// baseURL is where the stubs listen, such as "http://127.0.0.1:41234".
func (s *stubs) baseURL() string { return "http://" + s.ln.Addr().String() }

// actionURL is the URL of step k's action; refuse makes it answer 400.
func (s *stubs) actionURL(k int, refuse bool) string {
	u := s.baseURL() + "/step/" + strconv.Itoa(k) + "/action"
	if refuse {
		u += "?" + stubRefuseParam + "=1"
	}
	return u
}

// compensateURL is the URL of step k's compensation.
func (s *stubs) compensateURL(k int) string {
	return s.baseURL() + "/step/" + strconv.Itoa(k) + "/compensate"
}

// counts returns the calls answered so far.
func (s *stubs) counts() stubCounts {
	return stubCounts{
		Actions:       s.actions.Load(),
		Refusals:      s.refusals.Load(),
		Compensations: s.compensations.Load(),
	}
}

// close stops the stubs, letting answers in progress finish. A connection
// the service dialled but never sent a request on (its transport dials a
// spare while it waits for an idle one) counts as active for net/http
// until it is 5 s old, which is as long as Shutdown is given: when the
// grace ends, what is left is closed, and that is not an error.
func (s *stubs) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), stubShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	<-s.done
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stop participant stubs: %w", err)
	}
	return nil
}

func (s *stubs) action(w http.ResponseWriter, r *http.Request) {
	if !s.delay(r.Context()) {
		return
	}
	s.actions.Add(1)
	if r.URL.RawQuery != "" && r.URL.Query().Get(stubRefuseParam) == "1" {
		s.refusals.Add(1)
		writeStubJSON(w, http.StatusBadRequest, map[string]any{
			"error": "refused by the load stub", "step": r.PathValue("k"),
		})
		return
	}
	writeStubBody(w, http.StatusOK, appendStepAnswer(make([]byte, 0, 32), `{"done":true,"step":`, r.PathValue("k")))
}

func (s *stubs) compensate(w http.ResponseWriter, r *http.Request) {
	if !s.delay(r.Context()) {
		return
	}
	s.compensations.Add(1)
	writeStubBody(w, http.StatusOK, appendStepAnswer(make([]byte, 0, 32), `{"step":`, r.PathValue("k"), `,"undone":true`))
}

// delay waits the configured latency; false when the caller went away.
func (s *stubs) delay(ctx context.Context) bool {
	if s.latency <= 0 {
		return true
	}
	t := time.NewTimer(s.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func writeStubJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // the stubs' maps always marshal
	writeStubBody(w, status, append(b, '\n'))
}

// stubJSONType is the Content-Type of every stub answer.
var stubJSONType = []string{"application/json"}

// writeStubBody writes a JSON answer with its length, so that net/http
// sends it in one write without chunking.
func writeStubBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = stubJSONType
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// appendStepAnswer appends prefix, step as a JSON string, the rest and the
// closing brace and newline: what json.Encoder writes for the answer's map
// (keys in sorted order).
func appendStepAnswer(dst []byte, prefix, step string, rest ...string) []byte {
	dst = append(dst, prefix...)
	q, _ := json.Marshal(step) // a string always marshals
	dst = append(dst, q...)
	for _, s := range rest {
		dst = append(dst, s...)
	}
	return append(dst, "}\n"...)
}
