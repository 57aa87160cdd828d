package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	saga "github.com/tracseq/transaction-service"
)

// token is one accepted bearer token: its name (the actor of the requests
// it authenticates) and the hash of its secret.
type token struct {
	name string
	hash [sha256.Size]byte
}

// maxTokenNameLength bounds the name of a token.
const maxTokenNameLength = 64

// ParseToken reads one entry of API_TOKENS: "name:secret", or a bare
// secret, named "token-N" after its position n (1-based). A name is 1 to
// 64 letters, digits, '.', '_' or '-', starting with a letter or a digit;
// an entry whose part before its first ':' is not a name is a bare secret
// (so a secret with a ':' in it must be given a name). The error names the
// entry by its position, never its secret.
func ParseToken(entry string, n int) (name, secret string, err error) {
	if before, after, ok := strings.Cut(entry, ":"); ok && validTokenName(before) {
		name, secret = before, after
	} else {
		name, secret = "token-"+strconv.Itoa(n), entry
	}
	if strings.TrimSpace(secret) == "" {
		return "", "", fmt.Errorf("token %d (%s) has an empty secret", n, name)
	}
	return name, secret, nil
}

func validTokenName(s string) bool {
	if s == "" || len(s) > maxTokenNameLength {
		return false
	}
	for i, c := range []byte(s) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

// requester returns the requester of an API request authenticated as
// actor: its name, the client's address (the connection's peer; proxies'
// headers are not trusted) and this instance.
func (s *Server) requester(r *http.Request, actor string) saga.Requester {
	return saga.Requester{Actor: actor, Address: r.RemoteAddr, Instance: s.coord.InstanceID()}
}

// withReason returns r with the requester of its context given reason.
func withReason(r *http.Request, reason string) *http.Request {
	req, _ := saga.RequesterFrom(r.Context())
	req.Reason = reason
	return r.WithContext(saga.WithRequester(r.Context(), req))
}

// checkReason validates the reason of an operator request; field names
// where it came from.
func checkReason(field, reason string) error {
	switch {
	case len(reason) > saga.MaxReasonLength:
		return saga.Errorf(saga.ECodeInvalid, field, "must be at most %d bytes (got %d)", saga.MaxReasonLength, len(reason))
	case !utf8.ValidString(reason):
		return saga.Errorf(saga.ECodeInvalid, field, "must be valid UTF-8")
	case strings.ContainsRune(reason, 0):
		return saga.Errorf(saga.ECodeInvalid, field, "must not contain NUL")
	}
	return nil
}

// OperatorRequestJSON is the optional body of an operator request (pause,
// resume, cancel, retry, cleanup): why it is made. The reason is recorded
// with the request in the saga's audit trail.
type OperatorRequestJSON struct {
	Reason string `json:"reason,omitempty"`
}

// decodeOperatorRequest reads the optional body of an operator request:
// nothing, or {"reason": "…"} as JSON (no other field).
func (s *Server) decodeOperatorRequest(w http.ResponseWriter, r *http.Request) (string, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return "", saga.Errorf(codeTooLarge, "", "the request body must be at most %d bytes", tooLarge.Limit)
		}
		return "", saga.Errorf(saga.ECodeInvalid, "", "the request body could not be read")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "", nil
	}
	if err := checkContentType(r); err != nil {
		return "", err
	}
	var in OperatorRequestJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			name, _ = strconv.Unquote(name)
			return "", saga.Errorf(saga.ECodeInvalid, name, "unknown field %q (the body may hold only \"reason\")", name)
		}
		return "", saga.Errorf(saga.ECodeInvalid, "", "the request body must be a JSON object such as {\"reason\": \"…\"}")
	}
	if dec.More() {
		return "", saga.Errorf(saga.ECodeInvalid, "", "the request body must hold a single JSON value")
	}
	return in.Reason, checkReason("reason", in.Reason)
}

// AuditEventJSON is one event of a saga's audit trail with its place in
// the hash chain: the hash of the event before it (empty for the first)
// and its own, in hex. Times are UTC with milliseconds (the precision the
// hash covers).
type AuditEventJSON struct {
	ID         string          `json:"id"`
	SagaID     string          `json:"saga_id"`
	Seq        int64           `json:"seq"`
	Type       saga.EventType  `json:"type"`
	StepIndex  *int            `json:"step_index"`
	Data       json.RawMessage `json:"data"`
	InstanceID string          `json:"instance_id"`
	Actor      string          `json:"actor"`
	CreatedAt  string          `json:"created_at"`
	PrevHash   string          `json:"prev_hash"`
	Hash       string          `json:"hash"`
}

// ChainBreakJSON names the first event where a chain does not hold.
type ChainBreakJSON struct {
	Seq     int64   `json:"seq"`
	EventID *string `json:"event_id"` // null when the event is missing
	Problem string  `json:"problem"`
}

// AuditJSON is the answer of GET /api/v1/sagas/{id}/audit: the saga's
// trail with its hashes and whether the chain verifies (with the service's
// key, when AUDIT_HMAC_KEY is set: keyed is then true). legacy_events
// counts the events at its start written before the chain existed.
type AuditJSON struct {
	SagaID       string           `json:"saga_id"`
	Verified     bool             `json:"verified"`
	Keyed        bool             `json:"keyed"`
	Broken       *ChainBreakJSON  `json:"broken"`
	EventSeq     int64            `json:"event_seq"`
	LastHash     string           `json:"last_hash"`
	LegacyEvents int64            `json:"legacy_events"`
	Events       []AuditEventJSON `json:"events"`
}

// AuditTime formats an event time as the audit trail and its exports show
// it: UTC with milliseconds.
func AuditTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// NewAuditEventJSON converts e, chained after prev, to its wire form.
func NewAuditEventJSON(e saga.Event, prev []byte) AuditEventJSON {
	return AuditEventJSON{
		ID: e.ID.String(), SagaID: e.SagaID.String(), Seq: e.Seq, Type: e.Type, StepIndex: e.StepIndex,
		Data: e.Data, InstanceID: e.InstanceID, Actor: e.Actor, CreatedAt: AuditTime(e.CreatedAt),
		PrevHash: hex.EncodeToString(prev), Hash: hex.EncodeToString(e.Hash),
	}
}

// AuditCSVHeader is the header row of the CSV form of audit trails (the
// audit endpoint and `tracseq-tx audit export`).
var AuditCSVHeader = []string{"saga_id", "seq", "event_id", "created_at", "type", "step_index",
	"instance_id", "actor", "data", "prev_hash", "hash"}

// AuditCSVRecord returns e as a row of AuditCSVHeader.
func AuditCSVRecord(e AuditEventJSON) []string {
	step := ""
	if e.StepIndex != nil {
		step = strconv.Itoa(*e.StepIndex)
	}
	return []string{e.SagaID, strconv.FormatInt(e.Seq, 10), e.ID, e.CreatedAt, string(e.Type), step,
		e.InstanceID, e.Actor, string(e.Data), e.PrevHash, e.Hash}
}

// audit serves GET /api/v1/sagas/{id}/audit[?format=json|csv].
func (s *Server) audit(w http.ResponseWriter, r *http.Request) error {
	var ve saga.ValidationError
	id, err := pathID(r)
	if err != nil {
		ve.Problems = append(ve.Problems, asError(err))
	}
	format := r.URL.Query().Get("format")
	switch format {
	case "", "json", "csv":
	default:
		ve.Problems = append(ve.Problems, saga.Errorf(saga.ECodeInvalid, "format", "must be json or csv (got %q)", format))
	}
	if len(ve.Problems) > 0 {
		return &ve
	}
	if s.auditStore == nil {
		return saga.Errorf(saga.ECodeUnavailable, "", "this server has no audit trail store")
	}
	out, err := s.readAudit(r.Context(), id)
	if err != nil {
		return err
	}
	w.Header().Set("Audit-Verified", strconv.FormatBool(out.Verified))
	if format != "csv" {
		s.writeJSON(w, http.StatusOK, out)
		return nil
	}
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="saga-`+id.String()+`-audit.csv"`)
	h.Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	_ = cw.Write(AuditCSVHeader)
	for _, e := range out.Events {
		_ = cw.Write(AuditCSVRecord(e))
	}
	cw.Flush()
	return nil
}

// readAudit reads a saga's chain, from one snapshot, and verifies it.
func (s *Server) readAudit(ctx context.Context, id saga.ID) (*AuditJSON, error) {
	out := &AuditJSON{SagaID: id.String(), Keyed: s.chain.Keyed(), Events: []AuditEventJSON{}}
	var (
		v    *saga.ChainVerifier
		prev []byte
	)
	n, _, err := s.auditStore.Chains(ctx, saga.ChainQuery{IDs: []saga.ID{id}, Limit: 1},
		func(h saga.ChainHead) error {
			out.EventSeq, out.LastHash = h.Seq, hex.EncodeToString(h.Hash)
			v = s.chain.Verifier(h)
			return nil
		},
		func(e saga.Event) error {
			v.Add(e)
			out.Events = append(out.Events, NewAuditEventJSON(e, prev))
			prev = e.Hash
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read the audit trail: %w", err)
	}
	if n == 0 {
		return nil, saga.Errorf(saga.ECodeNotFound, "id", "no saga has id %s", id)
	}
	if b := v.Finish(); b != nil {
		out.Broken = &ChainBreakJSON{Seq: b.Seq, Problem: b.Problem}
		if !b.EventID.IsZero() {
			id := b.EventID.String()
			out.Broken.EventID = &id
		}
	}
	out.Verified = out.Broken == nil
	out.LegacyEvents = v.Legacy()
	return out, nil
}
