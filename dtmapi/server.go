package dtmapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/participant"
)

// Coordinator is what the DTM endpoint needs of the engine
// (*engine.Coordinator implements it). Its errors are the root package's.
type Coordinator interface {
	Submit(ctx context.Context, def saga.Definition) (*saga.Saga, bool, error)
	Get(ctx context.Context, id saga.ID) (*saga.Saga, error)
	List(ctx context.Context, f saga.Filter) (saga.Page, error)
	Wait(ctx context.Context, id saga.ID) (*saga.Saga, error)
	Control(ctx context.Context, id saga.ID, a saga.ControlAction) (*saga.Saga, error)
}

// Defaults of Config.
const (
	MaxWaitDefault      = httpapi.MaxWaitDefault
	MaxBodyBytesDefault = httpapi.MaxBodyBytesDefault
	// AllLimitDefault is the page size of GET all without limit, as DTM's.
	AllLimitDefault = 100
)

// Prefix is the path under which the endpoint is served, as DTM serves it.
const Prefix = "/api/dtmsvr/"

// Config configures a Server. Zero fields take their defaults.
type Config struct {
	// Coordinator runs the sagas. Required.
	Coordinator Coordinator
	// MaxWait bounds how long a wait_result submit waits for the saga's
	// outcome (default 60 s, the API's ?wait= cap). The HTTP server's
	// WriteTimeout must exceed it.
	MaxWait time.Duration
	// MaxBodyBytes bounds a request body (default 1 MiB).
	MaxBodyBytes int64
	// Version is answered by GET version.
	Version string
	// Logger receives what the client is not told (default: discarded).
	Logger *slog.Logger
}

// Server serves the DTM endpoint. It is safe for concurrent use.
type Server struct {
	coord   Coordinator
	maxWait time.Duration
	maxBody int64
	version string
	log     *slog.Logger
}

// New returns a Server, or an error naming the bad Config field.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Coordinator == nil:
		return nil, errors.New("dtmapi: Config.Coordinator is required")
	case cfg.MaxWait < 0:
		return nil, fmt.Errorf("dtmapi: Config.MaxWait must not be negative (got %s)", cfg.MaxWait)
	case cfg.MaxBodyBytes < 0:
		return nil, fmt.Errorf("dtmapi: Config.MaxBodyBytes must not be negative (got %d)", cfg.MaxBodyBytes)
	}
	return &Server{
		coord:   cfg.Coordinator,
		maxWait: cmp.Or(cfg.MaxWait, MaxWaitDefault),
		maxBody: cmp.Or(cfg.MaxBodyBytes, MaxBodyBytesDefault),
		version: cfg.Version,
		log:     cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
	}, nil
}

// Routes returns the endpoint's routes, to be served by the API server
// (httpapi.Config.Routes), which authenticates them as the rest of the API.
func (s *Server) Routes() []httpapi.Route {
	rt := func(method, name string, h func(http.ResponseWriter, *http.Request), query ...string) httpapi.Route {
		return httpapi.Route{Method: method, Path: Prefix + name, Query: query, Handler: http.HandlerFunc(h)}
	}
	return []httpapi.Route{
		rt(http.MethodGet, "newGid", s.newGid),
		rt(http.MethodGet, "version", s.versionInfo),
		rt(http.MethodPost, "submit", s.submit),
		rt(http.MethodGet, "query", s.query, "gid"),
		rt(http.MethodGet, "all", s.all, "gid", "position", "limit", "status", "transType", "createTimeStart", "createTimeEnd"),
		rt(http.MethodPost, "forceStop", s.forceStop),
	}
}

// Answers in DTM's shape.
var (
	resultSuccess = map[string]string{"dtm_result": participant.DTMResultSuccess}
)

func (s *Server) write(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode DTM answer", "err", err)
		status, body = http.StatusInternalServerError, []byte(`{"message":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// failure answers 409 with DTM's FAILURE: the transaction failed, or the
// request is refused in its status.
func (s *Server) failure(w http.ResponseWriter, format string, args ...any) {
	s.write(w, http.StatusConflict, map[string]string{
		"dtm_result": participant.DTMResultFailure, "message": fmt.Sprintf(format, args...)})
}

// errorJSON is the body of an error answer other than FAILURE and ONGOING.
type errorJSON struct {
	Message string               `json:"message"`
	Field   string               `json:"field,omitempty"`
	Errors  []httpapi.FieldError `json:"errors,omitempty"`
}

// fail answers err: 400 naming DTM's field for bad input, 403 for a
// participant host not allowed, 503 when the store is away, 500 otherwise
// (logged, not told).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *saga.ValidationError
	var e *saga.Error
	switch code := saga.ErrorCodeOf(err); {
	case errors.As(err, &ve) && len(ve.Problems) > 0:
		out := errorJSON{}
		for _, p := range ve.Problems {
			out.Errors = append(out.Errors, httpapi.FieldError{Field: dtmField(p.Field), Message: p.Message})
		}
		out.Field = out.Errors[0].Field
		out.Message = out.Field + ": " + out.Errors[0].Message
		if n := len(out.Errors); n > 1 {
			out.Message += fmt.Sprintf(" (and %d more problems)", n-1)
		}
		s.write(w, http.StatusBadRequest, out)
	case errors.As(err, &e) && (code == saga.ECodeInvalid || code == saga.ECodeForbidden || code == saga.ECodeNotFound):
		status := map[saga.ErrorCode]int{saga.ECodeInvalid: 400, saga.ECodeForbidden: 403, saga.ECodeNotFound: 404}[code]
		field := dtmField(e.Field)
		s.write(w, status, errorJSON{Message: prefixed(field, e.Message), Field: field})
	case code == saga.ECodeUnavailable || errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "5")
		s.write(w, http.StatusServiceUnavailable, errorJSON{Message: "the service cannot serve the request now; retry later"})
	case r.Context().Err() != nil:
		s.log.Debug("DTM request abandoned by the client", "path", r.URL.Path, "err", err)
	default:
		s.log.Error("DTM request failed", "path", r.URL.Path, "err", err)
		s.write(w, http.StatusInternalServerError, errorJSON{Message: "internal error"})
	}
}

func prefixed(field, msg string) string {
	if field == "" {
		return msg
	}
	return field + ": " + msg
}

// definitionField matches the definition's field names that dtmField
// translates.
var definitionField = regexp.MustCompile(`^steps\[(\d+)\]\.(action|compensation)(?:\.(\w+))?|^steps\[(\d+)\]\.depends_on|^timeout_ms$|^steps$`)

// dtmField names the DTM request field a saga definition's field comes
// from: steps[1].compensation.url is steps[1].compensate, .body is
// payloads[1], .headers is branch_headers, depends_on is custom_data.
func dtmField(f string) string {
	m := definitionField.FindStringSubmatch(f)
	switch {
	case m == nil:
		return f
	case f == "timeout_ms":
		return "timeout_to_fail"
	case f == "steps", m[4] != "":
		if f == "steps" {
			return "custom_data.orders"
		}
		return "custom_data.orders." + m[4]
	}
	switch m[3] {
	case "body":
		return "payloads[" + m[1] + "]"
	case "headers":
		return "branch_headers"
	case "timeout_ms":
		return "request_timeout"
	}
	op := participant.DTMOpAction
	if m[2] == "compensation" {
		op = participant.DTMOpCompensate
	}
	return "steps[" + m[1] + "]." + op
}

// newGid serves GET newGid.
func (s *Server) newGid(w http.ResponseWriter, _ *http.Request) {
	s.write(w, http.StatusOK, map[string]string{"gid": saga.NewID().String(), "dtm_result": participant.DTMResultSuccess})
}

// versionInfo serves GET version.
func (s *Server) versionInfo(w http.ResponseWriter, _ *http.Request) {
	s.write(w, http.StatusOK, map[string]string{"version": s.version})
}

// readTrans decodes the DTM transaction of a request body.
func (s *Server) readTrans(w http.ResponseWriter, r *http.Request) (*transRequest, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, saga.Errorf(saga.ECodeInvalid, "", "the request body must be at most %d bytes", tooLarge.Limit)
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	var t transRequest
	if err := json.Unmarshal(body, &t); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) && typ.Field != "" {
			return nil, saga.Errorf(saga.ECodeInvalid, typ.Field, "must not be %s", typ.Value)
		}
		return nil, saga.Errorf(saga.ECodeInvalid, "", "the request body is not a DTM transaction (a JSON object): %s",
			strings.TrimPrefix(err.Error(), "json: "))
	}
	return &t, nil
}

// submit serves POST submit: the saga is created (or, for a gid already
// submitted, found) and runs; with wait_result the answer is its outcome.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	t, err := s.readTrans(w, r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	def, err := t.definition(r.Header)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sg, existed, err := s.coord.Submit(r.Context(), def)
	if err != nil {
		s.fail(w, r, fmt.Errorf("submit DTM saga: %w", err))
		return
	}
	if existed && !sameSteps(&sg.Definition, &def) {
		s.failure(w, "gid %q was submitted before with other steps; a gid names one transaction", t.Gid)
		return
	}
	if !t.WaitResult {
		s.write(w, http.StatusOK, resultSuccess)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.maxWait)
	defer cancel()
	got, err := s.coord.Wait(ctx, sg.ID)
	if err != nil {
		s.fail(w, r, fmt.Errorf("wait for DTM saga: %w", err))
		return
	}
	s.outcome(w, got)
}

// outcome answers a saga's outcome as DTM's wait_result does: SUCCESS,
// FAILURE with the rollback reason, or ONGOING while it has not ended.
func (s *Server) outcome(w http.ResponseWriter, sg *saga.Saga) {
	switch {
	case sg.Status == saga.SagaStatusCompleted:
		s.write(w, http.StatusOK, resultSuccess)
	case sg.Status.Terminal():
		s.failure(w, "%s", cmp.Or(sg.Error, "the saga ended "+string(sg.Status)))
	default:
		s.write(w, http.StatusTooEarly, map[string]string{
			"dtm_result": participant.DTMResultOngoing,
			"message": fmt.Sprintf("the saga is still %s after %s; GET query?gid= tells its outcome",
				TransStatus(sg.Status), s.maxWait)})
	}
}

// find returns the DTM saga of gid with its steps, or nil when there is
// none.
func (s *Server) find(ctx context.Context, gid string) (*saga.Saga, error) {
	txID := TransactionID(gid)
	page, err := s.coord.List(ctx, saga.Filter{Name: SagaName, TransactionID: &txID, Limit: 10})
	if err != nil {
		return nil, fmt.Errorf("find saga of gid: %w", err)
	}
	for _, sg := range page.Sagas {
		if gidOf(sg) == gid {
			full, err := s.coord.Get(ctx, sg.ID)
			if errors.Is(err, saga.ErrNotFound) {
				return nil, nil // deleted meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("read saga of gid: %w", err)
			}
			return full, nil
		}
	}
	return nil, nil
}

// query serves GET query?gid=: the transaction and its branches; a gid
// nobody submitted gives a null transaction and no branches, as in DTM.
func (s *Server) query(w http.ResponseWriter, r *http.Request) {
	gid := r.URL.Query().Get("gid")
	if err := checkGID(gid); err != nil {
		s.fail(w, r, err)
		return
	}
	sg, err := s.find(r.Context(), gid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := QueryJSON{Branches: []BranchJSON{}}
	if sg != nil {
		t := newTransJSON(sg)
		out.Transaction = &t
		out.Branches = newBranches(sg)
	}
	s.write(w, http.StatusOK, out)
}

// all serves GET all: the DTM sagas, newest first, a page of limit from
// position (the next_position of the page before).
func (s *Server) all(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var ie inputError
	f := saga.Filter{Name: SagaName, Limit: AllLimitDefault}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > saga.ListLimitMax {
			ie.add("limit", "must be an integer between 1 and %d (got %q)", saga.ListLimitMax, v)
		}
		f.Limit = n
	}
	if v := q.Get("position"); v != "" {
		c, err := saga.ParseCursor(v)
		if err != nil {
			ie.add("position", "is not a position this endpoint gave; pass the next_position of the page before")
		}
		f.Cursor = &c
	}
	var end time.Time
	for _, p := range []struct {
		name string
		set  func(time.Time)
	}{
		{"createTimeStart", func(t time.Time) { f.CreatedAfter = &t }},
		{"createTimeEnd", func(t time.Time) { end = t }},
	} {
		if v := q.Get(p.name); v != "" {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms < 0 {
				ie.add(p.name, "must be a time in milliseconds since 1970 (got %q)", v)
			}
			p.set(time.UnixMilli(ms).UTC())
		}
	}
	status := q.Get("status")
	switch status {
	case "", StatusSubmitted, StatusAborting, StatusSucceed, StatusFailed:
	default:
		ie.add("status", "must be one of submitted, aborting, succeed, failed (got %q)", status)
	}
	if err := ie.orNil(); err != nil {
		s.fail(w, r, err)
		return
	}
	out := AllJSON{Transactions: []TransJSON{}}
	if tt := q.Get("transType"); tt != "" && tt != "saga" {
		s.write(w, http.StatusOK, out) // only sagas live here
		return
	}
	var sagas []*saga.Saga
	if gid := q.Get("gid"); gid != "" {
		sg, err := s.find(r.Context(), gid)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if sg != nil {
			sagas = []*saga.Saga{sg}
		}
	} else {
		page, err := s.coord.List(r.Context(), f)
		if err != nil {
			s.fail(w, r, fmt.Errorf("list DTM sagas: %w", err))
			return
		}
		sagas = page.Sagas
		if page.Next != nil {
			out.NextPosition = page.Next.String()
		}
	}
	for _, sg := range sagas {
		t := newTransJSON(sg)
		if (status != "" && t.Status != status) || (!end.IsZero() && sg.CreatedAt.After(end)) || t.Gid == "" {
			continue
		}
		out.Transactions = append(out.Transactions, t)
	}
	s.write(w, http.StatusOK, out)
}

// forceStop serves POST forceStop: the saga stops running actions. Unlike
// DTM, which marks the transaction failed and leaves what its branches did
// in place, the saga is cancelled: what was done is compensated.
func (s *Server) forceStop(w http.ResponseWriter, r *http.Request) {
	t, err := s.readTrans(w, r)
	if err == nil {
		err = checkGID(t.Gid)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sg, err := s.find(r.Context(), t.Gid)
	switch {
	case err != nil:
		s.fail(w, r, err)
		return
	case sg == nil:
		s.fail(w, r, saga.Errorf(saga.ECodeNotFound, "gid", "no transaction has gid %q", t.Gid))
		return
	}
	for range 3 {
		switch {
		case sg.Status.Terminal():
			s.failure(w, "global transaction force stop error. status: %s", TransStatus(sg.Status))
			return
		case sg.Status == saga.SagaStatusCompensating:
			s.write(w, http.StatusOK, map[string]string{"dtm_result": participant.DTMResultSuccess,
				"message": "the transaction is aborting already: its compensations finish it"})
			return
		}
		_, err = s.coord.Control(r.Context(), sg.ID, saga.ControlCancel)
		if err == nil {
			s.write(w, http.StatusOK, resultSuccess)
			return
		}
		if !errors.Is(err, saga.ErrInvalidTransition) {
			s.fail(w, r, fmt.Errorf("force stop: %w", err))
			return
		}
		// The status moved on between the read and the request.
		if sg, err = s.coord.Get(r.Context(), sg.ID); err != nil {
			s.fail(w, r, fmt.Errorf("force stop: %w", err))
			return
		}
	}
	s.failure(w, "the transaction's status keeps changing (now %s); try again", TransStatus(sg.Status))
}
