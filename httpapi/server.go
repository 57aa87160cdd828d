package httpapi

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Coordinator is what the API needs of the saga coordinator (the engine).
// Errors are the root package's: *saga.ValidationError, *saga.Error with a
// code, or errors wrapping saga.ErrNotFound, saga.ErrInvalidTransition or
// saga.ErrUnavailable; anything else is answered as an internal error.
type Coordinator interface {
	// Submit starts a saga, or returns the existing one with existed = true
	// when a saga with the definition's idempotency key exists.
	Submit(ctx context.Context, def saga.Definition) (s *saga.Saga, existed bool, err error)
	// Get returns a saga with its steps.
	Get(ctx context.Context, id saga.ID) (*saga.Saga, error)
	// List returns one page of sagas, without steps.
	List(ctx context.Context, f saga.Filter) (saga.Page, error)
	// Events returns a saga's events with a sequence number above afterSeq,
	// at most limit of them.
	Events(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error)
	// Wait returns the saga once it is in an end state, or when ctx is done;
	// it returns the saga as it is then.
	Wait(ctx context.Context, id saga.ID) (*saga.Saga, error)
	// Control records an operator's action on the saga and returns the saga.
	Control(ctx context.Context, id saga.ID, a saga.ControlAction) (*saga.Saga, error)
	// Statistics summarises the sagas, with figures over window.
	Statistics(ctx context.Context, window time.Duration) (saga.Stats, error)
	// Cleanup deletes old finished sagas now and returns how many.
	Cleanup(ctx context.Context) (int, error)
	// SetLegalHold sets or clears a saga's legal hold (cleanup never
	// deletes a held saga) and returns the saga.
	SetLegalHold(ctx context.Context, id saga.ID, hold bool) (*saga.Saga, error)
	// Health reports on the store.
	Health(ctx context.Context) saga.Health
	// InstanceID names this instance.
	InstanceID() string
}

// Defaults of Config.
const (
	MaxBodyBytesDefault = 1 << 20
	MaxWaitDefault      = 60 * time.Second
	// ReadyTimeoutDefault bounds the readiness check.
	ReadyTimeoutDefault = 5 * time.Second
)

// Config configures a Server. Zero fields take their defaults.
type Config struct {
	// Coordinator serves the API. Required.
	Coordinator Coordinator
	// Tokens are the accepted bearer tokens (API_TOKENS): "name:secret",
	// or a bare secret named token-1, token-2, … by position (ParseToken).
	// The name is the actor recorded with the requests the token makes.
	// Empty: the API is open (requests are recorded as made by
	// "anonymous"); the caller logs that warning.
	Tokens []string
	// Audit reads audit chains for GET /api/v1/sagas/{id}/audit (the
	// store, when it is a saga.AuditStore); nil: that route answers 503.
	Audit saga.AuditStore
	// Chain verifies the chains (AUDIT_HMAC_KEY); nil: plain SHA-256.
	Chain *saga.Chain
	// Logger receives the request log and errors. Default: discard.
	Logger *slog.Logger
	// Metrics is served at /metrics when set.
	Metrics http.Handler
	// Ready is an extra readiness check (the engine is running, say); nil
	// counts as ready.
	Ready func(ctx context.Context) (ok bool)
	// MaxBodyBytes limits request bodies. Default MaxBodyBytesDefault.
	MaxBodyBytes int64
	// MaxWait caps the ?wait= of a submit. Default MaxWaitDefault. The
	// http.Server's WriteTimeout must exceed it.
	MaxWait time.Duration
	// Version is reported by /health and /health/ready.
	Version string
	// ObserveRequest, when set, is called after every request with the
	// route pattern (such as "GET /api/v1/sagas/{id}", or "unmatched"), the
	// status answered and the time taken.
	ObserveRequest func(route string, status int, d time.Duration)
	// ReadAfterWrite is how long after a client's write its reads are
	// served by the primary rather than a read replica (see ReadContext).
	// Default ReadAfterWriteDefault; set it above the store's allowed
	// replica lag.
	ReadAfterWrite time.Duration
	// Routes are served beside the API's own, under /api/ (the DTM
	// endpoint, say); see Route.
	Routes []Route
}

// Server is the REST API. It is safe for concurrent use.
type Server struct {
	coord        Coordinator
	tokens       []token
	auditStore   saga.AuditStore
	chain        *saga.Chain
	log          *slog.Logger
	metricsH     http.Handler
	readyCheck   func(ctx context.Context) bool
	maxBodyBytes int64
	maxWait      time.Duration
	version      string
	observe      func(route string, status int, d time.Duration)
	writers      *recentWriters

	mux     *http.ServeMux
	handler http.Handler
}

// NewServer checks cfg and returns a server. It returns an error naming the
// field when cfg is invalid: no coordinator, an empty token, a negative
// limit.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Coordinator == nil {
		return nil, errors.New("httpapi: Config.Coordinator is required")
	}
	if cfg.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("httpapi: Config.MaxBodyBytes must not be negative (got %d)", cfg.MaxBodyBytes)
	}
	if cfg.ReadAfterWrite < 0 {
		return nil, fmt.Errorf("httpapi: Config.ReadAfterWrite must not be negative (got %s)", cfg.ReadAfterWrite)
	}
	if cfg.MaxWait < 0 {
		return nil, fmt.Errorf("httpapi: Config.MaxWait must not be negative (got %s)", cfg.MaxWait)
	}
	s := &Server{
		coord:        cfg.Coordinator,
		log:          cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		metricsH:     cfg.Metrics,
		readyCheck:   cfg.Ready,
		maxBodyBytes: cmp.Or(cfg.MaxBodyBytes, MaxBodyBytesDefault),
		maxWait:      cmp.Or(cfg.MaxWait, MaxWaitDefault),
		version:      cfg.Version,
		observe:      cfg.ObserveRequest,
		auditStore:   cfg.Audit,
		chain:        cfg.Chain,
		writers:      newRecentWriters(cmp.Or(cfg.ReadAfterWrite, ReadAfterWriteDefault)),
		mux:          http.NewServeMux(),
	}
	names := make(map[string]bool, len(cfg.Tokens))
	for i, entry := range cfg.Tokens {
		name, secret, err := ParseToken(entry, i+1)
		if err != nil {
			return nil, fmt.Errorf("httpapi: Config.Tokens[%d]: %w", i, err)
		}
		if names[name] {
			return nil, fmt.Errorf("httpapi: Config.Tokens[%d]: the name %q is given twice", i, name)
		}
		names[name] = true
		s.tokens = append(s.tokens, token{name: name, hash: sha256.Sum256([]byte(secret))})
	}
	for _, rt := range routes() {
		s.mux.Handle(rt.pattern(), s.wrap(rt.pattern(), rt))
	}
	if err := s.mountRoutes(cfg.Routes); err != nil {
		return nil, err
	}
	// Requests that match no route: a problem document rather than the
	// mux's plain text, behind the token for /api/ so that the API's shape
	// is not probed anonymously.
	s.mux.Handle("/api/", s.wrap(routeUnmatched, route{api: true, handle: (*Server).unmatched}))
	s.mux.Handle("/", s.wrap(routeUnmatched, route{handle: (*Server).unmatched}))
	s.handler = s.mux
	return s, nil
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return s.handler }

// requestIDKey is the context key of the request id.
type requestIDKey struct{}

// requestIDFrom returns the request id of ctx, or "".
func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// maxRequestIDLength bounds a client's X-Request-Id that is taken as is.
const maxRequestIDLength = 128

// saneRequestID reports whether a client's X-Request-Id can be used in logs
// and headers as it is.
func saneRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLength {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:", c) >= 0) {
			return false
		}
	}
	return true
}

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap gives a route its request id, panic recovery, authentication, query
// check, request log and observation.
func (s *Server) wrap(label string, rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := r.Header.Get("X-Request-Id")
		if !saneRequestID(reqID) {
			reqID = saga.NewID().String()
		}
		w.Header().Set("X-Request-Id", reqID)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, reqID))
		rec := &statusRecorder{ResponseWriter: w}

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in http handler", "route", label, "request_id", reqID,
					"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				if rec.status == 0 {
					s.writeProblem(rec, r, problemFor(errors.New("panic"), reqID))
				}
			}
			status := cmp.Or(rec.status, http.StatusOK)
			d := time.Since(start)
			level := slog.LevelDebug
			if rt.api || status >= 500 {
				level = slog.LevelInfo
			}
			s.log.LogAttrs(r.Context(), level, "http request",
				slog.String("method", r.Method), slog.String("route", label),
				slog.Int("status", status), slog.Float64("duration_ms", durationMs(d)),
				slog.String("request_id", reqID))
			if s.observe != nil {
				s.observe(label, status, d)
			}
		}()

		if rt.api {
			actor := saga.AnonymousActor
			if len(s.tokens) > 0 {
				var err error
				if actor, err = s.authenticate(r); err != nil {
					s.fail(rec, r, err)
					return
				}
			}
			r = r.WithContext(saga.WithRequester(r.Context(), s.requester(r, actor)))
		}
		if rt.api && label != routeUnmatched {
			if err := checkQuery(r, rt.query); err != nil {
				s.fail(rec, r, err)
				return
			}
		}
		if err := rt.handle(s, rec, r); err != nil {
			s.fail(rec, r, err)
		}
	})
}

// authenticate checks the bearer token against every configured token in
// constant time (the tokens' hashes are compared, so lengths leak nothing)
// and returns the name of the one it is.
func (s *Server) authenticate(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if h == "" {
		return "", saga.Errorf(codeUnauthorized, "", "missing Authorization: Bearer <token> header")
	}
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", saga.Errorf(codeUnauthorized, "", "the Authorization header must be \"Bearer <token>\"")
	}
	got := sha256.Sum256([]byte(secret))
	found := -1
	for i := range s.tokens {
		if subtle.ConstantTimeCompare(got[:], s.tokens[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", saga.Errorf(codeUnauthorized, "", "the bearer token is not valid")
	}
	return s.tokens[found].name, nil
}

// checkQuery rejects a query string that does not parse whole (a bad
// escape, a semicolon: net/url would drop such a pair without a word),
// parameters the route does not know, parameters given more than once and
// values that are not valid UTF-8 or hold control characters.
func checkQuery(r *http.Request, allowed []string) error {
	_, err := parseQuery(r.URL.RawQuery, allowed)
	return err
}

// parseQuery parses a raw query string strictly and returns its values,
// which are then the same as r.URL.Query() gives. Every problem is
// reported, each naming its parameter.
func parseQuery(raw string, allowed []string) (url.Values, error) {
	q := url.Values{}
	var ve saga.ValidationError
	bad := func(field, format string, args ...any) {
		ve.Problems = append(ve.Problems, saga.Errorf(saga.ECodeInvalid, field, format, args...))
	}
	for part := range strings.SplitSeq(raw, "&") {
		if part == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			bad(printableParam(rawName), "query parameter name %s is not validly escaped (a %% must start %%XX)", strconv.QuoteToASCII(rawName))
			continue
		}
		if p := queryTextProblem(name); p != "" {
			bad(printableParam(name), "query parameter name %s", p)
			continue
		}
		if strings.Contains(part, ";") {
			bad(printableParam(name), "query parameter %s holds a semicolon; separate parameters with & and escape a ; in a value as %%3B", strconv.QuoteToASCII(name))
			continue
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			bad(printableParam(name), "the value of query parameter %s is not validly escaped (a %% must start %%XX)", strconv.QuoteToASCII(name))
			continue
		}
		if p := queryTextProblem(value); p != "" {
			bad(printableParam(name), "the value of query parameter %s %s", strconv.QuoteToASCII(name), p)
			continue
		}
		q[name] = append(q[name], value)
	}
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		switch {
		case !slices.Contains(allowed, name):
			want := "none"
			if len(allowed) > 0 {
				want = strings.Join(allowed, ", ")
			}
			bad(printableParam(name), "unknown query parameter %s (this route accepts: %s)", strconv.QuoteToASCII(name), want)
		case len(q[name]) > 1:
			bad(name, "query parameter %q must be given at most once", name)
		}
	}
	if len(ve.Problems) > 0 {
		return nil, &ve
	}
	return q, nil
}

// queryTextProblem says why a query name or value cannot be used (it is
// compared with stored text and echoed in problems), or "".
func queryTextProblem(s string) string {
	if p := saga.StorableTextProblem(s); p != "" {
		return p
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return "must not hold control characters"
		}
	}
	return ""
}

// printableParam returns a parameter name fit to be the field of a problem.
func printableParam(name string) string {
	if queryTextProblem(name) == "" && len(name) <= 64 {
		return name
	}
	q := strconv.QuoteToASCII(name)
	if len(q) > 66 {
		q = q[:64] + "…"
	}
	return q
}

// fail answers err as a problem document and logs what the client is not
// told.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	reqID := requestIDFrom(r.Context())
	p := problemFor(err, reqID)
	switch {
	case r.Context().Err() != nil && errors.Is(err, r.Context().Err()):
		// The client went away; nobody reads the answer.
		s.log.Debug("http request abandoned by the client", "request_id", reqID, "err", err)
	case p.Status >= 500 && p.Status != http.StatusServiceUnavailable:
		s.log.Error("http request failed", "method", r.Method, "path", r.URL.Path,
			"request_id", reqID, "err", err)
	case p.Status == http.StatusServiceUnavailable:
		s.log.Warn("http request could not be served", "method", r.Method, "path", r.URL.Path,
			"request_id", reqID, "err", err)
	}
	s.writeProblem(w, r, p)
}

// writeProblem writes p with the headers its status calls for.
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, p *Problem) {
	if p.Instance == "" {
		p.Instance = r.URL.Path
	}
	switch p.Status {
	case http.StatusUnauthorized:
		challenge := `Bearer realm="tracseq"`
		if r.Header.Get("Authorization") != "" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterUnavailable))
	}
	s.writeBody(w, contentTypeProblem, p.Status, p)
}

// writeJSON answers v as JSON with status.
func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	s.writeBody(w, contentTypeJSON, status, v)
}

func (s *Server) writeBody(w http.ResponseWriter, contentType string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a bug can get here (a RawMessage that is not JSON, say).
		s.log.Error("encode http answer", "err", err)
		status, contentType = http.StatusInternalServerError, contentTypeProblem
		body = []byte(`{"type":"` + ProblemTypePrefix + `internal","title":"Internal error","status":500,"detail":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
