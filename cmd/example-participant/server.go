package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	mathrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 1 << 20

// route is one operation of the participant: the path it is served on and
// how its answer is made.
type route struct {
	path   string // without the leading slash, e.g. "payments/charge"
	answer func(id string) map[string]any
}

// routes are the operations the participant serves, each answering with a
// fresh id under its own name.
var routes = []route{
	{"inventory/reserve", func(id string) map[string]any { return map[string]any{"reservation_id": id} }},
	{"inventory/release", func(id string) map[string]any { return map[string]any{"release_id": id, "released": true} }},
	{"payments/charge", func(id string) map[string]any { return map[string]any{"charge_id": id} }},
	{"payments/refund", func(id string) map[string]any { return map[string]any{"refund_id": id, "refunded": true} }},
	{"shipping/schedule", func(id string) map[string]any { return map[string]any{"shipment_id": id} }},
	{"shipping/cancel", func(id string) map[string]any { return map[string]any{"cancellation_id": id, "cancelled": true} }},
}

// Config says how the participant behaves. The zero value answers every
// call at once and successfully.
type Config struct {
	// FailSteps are routes ("payments/charge") that answer 402 Payment
	// Required, a business refusal the coordinator does not retry.
	FailSteps []string
	// FailRate is the probability (0 to 1) that a call answers 503, a
	// transient failure the coordinator retries.
	FailRate float64
	// Latency is waited before answering.
	Latency time.Duration
	// Random returns a number in [0, 1); default math/rand/v2.Float64.
	Random func() float64
	// Logger logs every call; default slog.Default().
	Logger *slog.Logger
}

// answer is a response kept for an idempotency key.
type answer struct {
	status int
	body   []byte
}

// Server is the participant's HTTP handler.
type Server struct {
	cfg    Config
	fail   map[string]bool
	logger *slog.Logger
	mux    *http.ServeMux

	mu   sync.Mutex
	done map[string]answer // by route + "\x00" + Idempotency-Key
	// effects counts the operations that took effect, by route.
	effects map[string]int
}

// NewServer returns a participant configured by cfg.
func NewServer(cfg Config) *Server {
	s := &Server{
		cfg:     cfg,
		fail:    make(map[string]bool),
		logger:  cfg.Logger,
		mux:     http.NewServeMux(),
		done:    make(map[string]answer),
		effects: make(map[string]int),
	}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	if s.cfg.Random == nil {
		s.cfg.Random = mathrand.Float64
	}
	for _, f := range cfg.FailSteps {
		s.fail[strings.Trim(f, "/ ")] = true
	}
	for _, r := range routes {
		s.mux.HandleFunc("POST /"+r.path, s.handle(r))
	}
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, mustJSON(map[string]any{"status": "ok"}))
	})
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Effects returns how many calls to the route took effect.
func (s *Server) Effects(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.effects[path]
}

func (s *Server) handle(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		log := s.logger.With("route", rt.path, "idempotency_key", key,
			"saga_id", r.Header.Get("X-Saga-Id"), "saga_step", r.Header.Get("X-Saga-Step"))

		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if status, msg := s.refusal(r.Context(), rt, body, err); status != 0 {
			log.Info("call refused", "status", status, "reason", msg)
			if status > 0 {
				writeJSON(w, status, mustJSON(map[string]any{"error": msg}))
			}
			return
		}

		a, replayed := s.effect(rt, key)
		log.Info("call answered", "status", a.status, "replayed", replayed)
		writeJSON(w, a.status, a.body)
	}
}

// refusal decides whether a call is refused before it takes effect: a body
// that is not JSON (400), a -fail-step route (402), a -fail-rate draw
// (503). It waits the configured latency first. It returns 0 to go on, and
// -1 when the caller went away meanwhile.
func (s *Server) refusal(ctx context.Context, rt route, body []byte, readErr error) (int, string) {
	if readErr != nil || (len(body) > 0 && !json.Valid(body)) {
		return http.StatusBadRequest, "body must be valid JSON"
	}
	if err := sleep(ctx, s.cfg.Latency); err != nil {
		return -1, "the caller went away"
	}
	if s.fail[rt.path] {
		return http.StatusPaymentRequired, rt.path + " refused (-fail-step)"
	}
	if s.cfg.FailRate > 0 && s.cfg.Random() < s.cfg.FailRate {
		return http.StatusServiceUnavailable, "temporarily unavailable (-fail-rate)"
	}
	return 0, ""
}

// effect carries out the route's operation once per idempotency key and
// returns its answer, and whether it is the answer of an earlier call.
func (s *Server) effect(rt route, key string) (answer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mapKey := rt.path + "\x00" + key
	if key != "" {
		if a, ok := s.done[mapKey]; ok {
			return a, true
		}
	}
	a := answer{status: http.StatusOK, body: mustJSON(rt.answer(newID()))}
	s.effects[rt.path]++
	if key != "" {
		s.done[mapKey] = a
	}
	return a, false
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// mustJSON encodes maps of strings and booleans, which cannot fail.
func mustJSON(v map[string]any) []byte {
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

// newID returns a random hexadecimal identifier.
func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
