package httpapi

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Limits of query parameters.
const (
	EventsLimitDefault = 1000
	EventsLimitMax     = 1000
	StatsWindowDefault = time.Hour
	StatsWindowMax     = 30 * 24 * time.Hour
)

// openAPIDocument is the OpenAPI description of this API.
//
//go:embed openapi.json
var openAPIDocument []byte

// sagaPath is the path of one saga, for Location headers.
func sagaPath(id saga.ID) string { return "/api/v1/sagas/" + id.String() }

// submit serves POST /api/v1/sagas.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) error {
	wait, err := s.waitParam(r.URL.Query())
	if err != nil {
		return err
	}
	def, err := s.decodeDefinition(w, r)
	if err != nil {
		return err
	}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		switch def.IdempotencyKey {
		case "":
			def.IdempotencyKey = key
		case key:
		default:
			return saga.Errorf(saga.ECodeInvalid, "idempotency_key",
				"differs from the Idempotency-Key header; give the key once, or the same in both")
		}
	}
	takeTraceParent(r, &def)
	if err := def.Validate(); err != nil {
		return err
	}
	reason := r.URL.Query().Get("reason")
	if err := checkReason("reason", reason); err != nil {
		return err
	}
	r = withReason(r, reason)
	s.noteWrite(r)
	sg, existed, err := s.coord.Submit(r.Context(), def)
	if err != nil {
		return fmt.Errorf("submit saga: %w", err)
	}
	if existed && !def.SameRequest(&sg.Definition) {
		return saga.Errorf(codeIdempotencyConflict, "idempotency_key",
			"idempotency_key reused with a different request: saga %s was submitted with key %s and another definition; send the same request to get that saga, or use a new key",
			sg.ID, strconv.QuoteToASCII(def.IdempotencyKey))
	}
	if wait > 0 && !sg.Status.Terminal() {
		sg, err = s.waitFor(r.Context(), sg, wait)
		if err != nil {
			return err
		}
	}
	status := http.StatusCreated
	if existed {
		status = http.StatusOK
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", sagaPath(sg.ID))
	s.writeJSON(w, status, NewSagaJSON(sg, true))
	return nil
}

// waitParam parses ?wait=, capped by the server's MaxWait.
func (s *Server) waitParam(q url.Values) (time.Duration, error) {
	v := q.Get("wait")
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, saga.Errorf(saga.ECodeInvalid, "wait",
			"must be a non-negative duration such as 30s or 1m (got %q)", v)
	}
	return min(d, s.maxWait), nil
}

// waitFor waits up to d for the saga to end and returns it as it is then.
// The saga exists whatever happens here, so a failure to wait is logged and
// the saga is answered as it was last seen.
func (s *Server) waitFor(ctx context.Context, sg *saga.Saga, d time.Duration) (*saga.Saga, error) {
	waitCtx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	got, err := s.coord.Wait(waitCtx, sg.ID)
	if err == nil && got != nil {
		return got, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("wait for saga: %w", ctx.Err())
	}
	if err != nil && waitCtx.Err() == nil {
		s.log.Warn("wait for saga failed", "saga_id", sg.ID.String(),
			"request_id", requestIDFrom(ctx), "err", err)
	}
	if got != nil {
		return got, nil
	}
	if cur, gerr := s.coord.Get(ctx, sg.ID); gerr == nil {
		return cur, nil
	}
	return sg, nil
}

// pathID parses the {id} of the path.
func pathID(r *http.Request) (saga.ID, error) {
	v := r.PathValue("id")
	id, err := saga.ParseID(v)
	if err != nil {
		return saga.NilID, saga.Errorf(saga.ECodeInvalid, "id", "must be a UUID such as 0190f1c2-7a3b-7c4d-8e5f-0123456789ab (got %q)", v)
	}
	return id, nil
}

// notFound returns the answer to a saga id that is unknown, or err as it is.
func notFound(err error, id saga.ID) error {
	if saga.ErrorCodeOf(err) == saga.ECodeNotFound {
		return saga.Errorf(saga.ECodeNotFound, "id", "no saga has id %s", id)
	}
	return err
}

// get serves GET /api/v1/sagas/{id}.
func (s *Server) get(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	sg, err := s.coord.Get(s.ReadContext(r), id)
	if err != nil {
		return notFound(fmt.Errorf("get saga: %w", err), id)
	}
	s.writeJSON(w, http.StatusOK, NewSagaJSON(sg, true))
	return nil
}

// events serves GET /api/v1/sagas/{id}/events.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	var ve saga.ValidationError
	id, err := pathID(r)
	if err != nil {
		ve.Problems = append(ve.Problems, asError(err))
	}
	q := r.URL.Query()
	afterSeq, err := intParam(q, "after_seq", 0, 0, 1<<62)
	if err != nil {
		ve.Problems = append(ve.Problems, asError(err))
	}
	limit, err := intParam(q, "limit", EventsLimitDefault, 1, EventsLimitMax)
	if err != nil {
		ve.Problems = append(ve.Problems, asError(err))
	}
	if len(ve.Problems) > 0 {
		return &ve
	}
	evs, err := s.coord.Events(s.ReadContext(r), id, afterSeq, int(limit))
	if err != nil {
		return notFound(fmt.Errorf("list events: %w", err), id)
	}
	out := EventsJSON{Events: make([]EventJSON, len(evs))}
	for i, e := range evs {
		out.Events[i] = NewEventJSON(e)
	}
	s.writeJSON(w, http.StatusOK, out)
	return nil
}

// list serves GET /api/v1/sagas.
func (s *Server) list(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		return err
	}
	page, err := s.coord.List(s.ReadContext(r), f)
	if err != nil {
		return fmt.Errorf("list sagas: %w", err)
	}
	out := ListJSON{Sagas: make([]SagaJSON, len(page.Sagas))}
	for i, sg := range page.Sagas {
		out.Sagas[i] = NewSagaJSON(sg, false)
	}
	if page.Next != nil {
		c := page.Next.String()
		out.NextCursor = &c
	}
	s.writeJSON(w, http.StatusOK, out)
	return nil
}

// parseFilter reads the list filters, reporting every bad parameter.
func parseFilter(q url.Values) (saga.Filter, error) {
	var f saga.Filter
	var ve saga.ValidationError
	bad := func(field, format string, args ...any) {
		ve.Problems = append(ve.Problems, saga.Errorf(saga.ECodeInvalid, field, format, args...))
	}
	if v := q.Get("status"); v != "" {
		st, err := saga.ParseSagaStatus(v)
		if err != nil {
			bad("status", "unknown status %q; want one of %s", v, joinStatuses(saga.SagaStatuses))
		}
		f.Status = st
	}
	if v := q.Get("name"); v != "" {
		if len(v) > saga.MaxNameLength {
			bad("name", "must be at most %d bytes", saga.MaxNameLength)
		}
		f.Name = v
	}
	if v := q.Get("transaction_id"); v != "" {
		id, err := saga.ParseID(v)
		if err != nil {
			bad("transaction_id", "must be a UUID such as 0190f1c2-7a3b-7c4d-8e5f-0123456789ab (got %q)", v)
		} else {
			f.TransactionID = &id
		}
	}
	if v := q.Get("created_after"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil && strings.Contains(v, " ") {
			// An unescaped "+02:00" arrives as " 02:00".
			t, err = time.Parse(time.RFC3339, strings.ReplaceAll(v, " ", "+"))
		}
		if err != nil {
			bad("created_after", "must be an RFC 3339 time such as 2024-05-01T12:00:00Z (got %q)", v)
		} else {
			t = t.UTC()
			f.CreatedAfter = &t
		}
	}
	limit, err := intParam(q, "limit", saga.ListLimitDefault, 1, saga.ListLimitMax)
	if err != nil {
		ve.Problems = append(ve.Problems, asError(err))
	}
	f.Limit = int(limit)
	if v := q.Get("cursor"); v != "" {
		c, err := saga.ParseCursor(v)
		if err != nil {
			bad("cursor", "is not a cursor this service issued; pass the next_cursor of a previous page")
		} else {
			f.Cursor = &c
		}
	}
	if len(ve.Problems) > 0 {
		return saga.Filter{}, &ve
	}
	return f, nil
}

// intParam parses an integer query parameter in [lo, hi], def when absent.
func intParam(q url.Values, name string, def, lo, hi int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, saga.Errorf(saga.ECodeInvalid, name, "must be an integer between %d and %d (got %q)", lo, hi, v)
	}
	return n, nil
}

// asError returns the *saga.Error err is, for collecting into a
// ValidationError.
func asError(err error) *saga.Error {
	var e *saga.Error
	if errors.As(err, &e) {
		return e
	}
	return saga.Errorf(saga.ECodeInvalid, "", "%s", err.Error())
}

func joinStatuses(sts []saga.SagaStatus) string {
	parts := make([]string, len(sts))
	for i, st := range sts {
		parts[i] = string(st)
	}
	return strings.Join(parts, ", ")
}

// controlHandler serves POST /api/v1/sagas/{id}/<action>.
func controlHandler(a saga.ControlAction) handlerFunc {
	return func(s *Server, w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r)
		if err != nil {
			return err
		}
		reason, err := s.decodeOperatorRequest(w, r)
		if err != nil {
			return err
		}
		r = withReason(r, reason)
		s.noteWrite(r)
		sg, err := s.coord.Control(r.Context(), id, a)
		switch {
		case err == nil:
			s.writeJSON(w, http.StatusAccepted, NewSagaJSON(sg, false))
			return nil
		case saga.ErrorCodeOf(err) == saga.ECodeConflict:
			return s.conflict(r.Context(), id, a)
		}
		return notFound(fmt.Errorf("%s saga: %w", a, err), id)
	}
}

// holdHandler serves POST (hold = true) and DELETE of
// /api/v1/sagas/{id}/hold: the saga's legal hold, which keeps cleanup from
// deleting it; the body may give a reason ({"reason": "…"}) that the
// LegalHoldChanged event keeps. The answer is the saga, 200.
func holdHandler(hold bool) handlerFunc {
	return func(s *Server, w http.ResponseWriter, r *http.Request) error {
		id, err := pathID(r)
		if err != nil {
			return err
		}
		reason, err := s.decodeOperatorRequest(w, r)
		if err != nil {
			return err
		}
		r = withReason(r, reason)
		s.noteWrite(r)
		sg, err := s.coord.SetLegalHold(r.Context(), id, hold)
		if err != nil {
			return notFound(fmt.Errorf("set legal hold: %w", err), id)
		}
		s.writeJSON(w, http.StatusOK, NewSagaJSON(sg, false))
		return nil
	}
}

// conflict explains why action a is refused: the saga's status and the
// statuses that allow it.
func (s *Server) conflict(ctx context.Context, id saga.ID, a saga.ControlAction) error {
	allowed := joinStatuses(a.AllowedStatuses())
	cur, err := s.coord.Get(ctx, id)
	switch {
	case err != nil:
		s.log.Debug("read saga status for a conflict", "saga_id", id.String(), "err", err)
		return saga.Errorf(saga.ECodeConflict, "status", "cannot %s saga %s in its current status; %s is allowed only in status %s",
			a, id, a, allowed)
	case a.AllowedIn(cur.Status):
		// The status changed between the refusal and the read.
		return saga.Errorf(saga.ECodeConflict, "status", "cannot %s saga %s: its status changed meanwhile (it is now %s); %s is allowed only in status %s",
			a, id, cur.Status, a, allowed)
	}
	return saga.Errorf(saga.ECodeConflict, "status", "cannot %s saga %s: it is %s, and %s is allowed only in status %s",
		a, id, cur.Status, a, allowed)
}

// statistics serves GET /api/v1/statistics.
func (s *Server) statistics(w http.ResponseWriter, r *http.Request) error {
	window := StatsWindowDefault
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > StatsWindowMax {
			return saga.Errorf(saga.ECodeInvalid, "window",
				"must be a duration between 1s and %s such as 15m or 24h (got %q)", StatsWindowMax, v)
		}
		window = d
	}
	st, err := s.coord.Statistics(s.ReadContext(r), window)
	if err != nil {
		return fmt.Errorf("compute statistics: %w", err)
	}
	s.writeJSON(w, http.StatusOK, NewStatsJSON(st, window))
	return nil
}

// cleanup serves POST /api/v1/maintenance/cleanup.
func (s *Server) cleanup(w http.ResponseWriter, r *http.Request) error {
	reason, err := s.decodeOperatorRequest(w, r)
	if err != nil {
		return err
	}
	r = withReason(r, reason)
	n, err := s.coord.Cleanup(r.Context())
	if err != nil {
		return fmt.Errorf("clean up sagas: %w", err)
	}
	s.writeJSON(w, http.StatusOK, CleanupJSON{Deleted: n})
	return nil
}

// health serves GET /health: liveness, without touching the database.
func (s *Server) health(w http.ResponseWriter, _ *http.Request) error {
	s.writeJSON(w, http.StatusOK, HealthJSON{Status: StatusOK, InstanceID: s.coord.InstanceID(), Version: s.version})
	return nil
}

// ready serves GET /health/ready.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeoutDefault)
	defer cancel()
	h := s.coord.Health(ctx)
	if h.Error != "" {
		s.log.Warn("readiness: the store reports a problem", "error", h.Error, "request_id", requestIDFrom(ctx))
	}
	extraOK := s.readyCheck == nil || s.readyCheck(ctx)
	out := newReadyJSON(h, extraOK, s.coord.InstanceID(), s.version)
	status := http.StatusOK
	if out.Status != StatusReady {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterUnavailable))
	}
	s.writeJSON(w, status, out)
	return nil
}

// metrics serves GET /metrics from Config.Metrics.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	if s.metricsH == nil {
		return saga.Errorf(codeRouteNotFound, "", "metrics are not enabled on this server")
	}
	s.metricsH.ServeHTTP(w, r)
	return nil
}

// openAPI serves GET /openapi.json.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDocument)
	return nil
}

// unmatched answers requests that match no route: 405 with Allow when the
// path exists for other methods, else 404.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "" && pattern != "/" && pattern != "/api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 && !slices.Contains(allow, r.Method) {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return saga.Errorf(codeMethodNotAllowed, "", "%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
	}
	return saga.Errorf(codeRouteNotFound, "", "no route matches %s %s", r.Method, r.URL.Path)
}
