package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// maxAnswerBytes bounds an answer the client reads.
const maxAnswerBytes = 64 << 20

// Client is a Go client of the API. Its zero value is not usable: BaseURL is
// required (such as "http://localhost:8080"). Token, when set, is sent as a
// bearer token; HTTP defaults to http.DefaultClient.
//
// Methods return a *Problem when the service answers with an error status,
// and a wrapped transport or decoding error otherwise.
type Client struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

// ListQuery selects sagas for Client.List. Zero fields do not filter.
type ListQuery struct {
	Status        string // a saga status such as "Failed"
	Name          string
	TransactionID string
	CreatedAfter  time.Time
	Limit         int
	Cursor        string // the NextCursor of the previous page
}

// Submit submits a saga. With wait > 0 the service answers once the saga
// has ended or wait has passed (capped by the server). replayed is true when
// a saga with the definition's idempotency key already existed and is
// returned instead of a new one.
func (c *Client) Submit(ctx context.Context, def saga.Definition, wait time.Duration) (s *SagaJSON, replayed bool, err error) {
	return c.SubmitWithReason(ctx, def, wait, "")
}

// SubmitWithReason submits a saga as Submit does, recording reason (when
// not empty) with the submit in the saga's audit trail.
func (c *Client) SubmitWithReason(ctx context.Context, def saga.Definition, wait time.Duration, reason string) (s *SagaJSON, replayed bool, err error) {
	q := url.Values{}
	if wait > 0 {
		q.Set("wait", wait.String())
	}
	if reason != "" {
		q.Set("reason", reason)
	}
	var out SagaJSON
	resp, err := c.call(ctx, http.MethodPost, "/api/v1/sagas", q, def, &out)
	if err != nil {
		return nil, false, fmt.Errorf("submit saga: %w", err)
	}
	replayed = resp.StatusCode == http.StatusOK || resp.Header.Get("Idempotent-Replayed") == "true"
	return &out, replayed, nil
}

// Get returns a saga with its steps.
func (c *Client) Get(ctx context.Context, id string) (*SagaJSON, error) {
	var out SagaJSON
	if _, err := c.call(ctx, http.MethodGet, "/api/v1/sagas/"+url.PathEscape(id), nil, nil, &out); err != nil {
		return nil, fmt.Errorf("get saga: %w", err)
	}
	return &out, nil
}

// List returns one page of sagas (without steps).
func (c *Client) List(ctx context.Context, lq ListQuery) (*ListJSON, error) {
	q := url.Values{}
	set := func(name, v string) {
		if v != "" {
			q.Set(name, v)
		}
	}
	set("status", lq.Status)
	set("name", lq.Name)
	set("transaction_id", lq.TransactionID)
	if !lq.CreatedAfter.IsZero() {
		q.Set("created_after", lq.CreatedAfter.UTC().Format(time.RFC3339Nano))
	}
	if lq.Limit != 0 {
		q.Set("limit", strconv.Itoa(lq.Limit))
	}
	set("cursor", lq.Cursor)
	var out ListJSON
	if _, err := c.call(ctx, http.MethodGet, "/api/v1/sagas", q, nil, &out); err != nil {
		return nil, fmt.Errorf("list sagas: %w", err)
	}
	return &out, nil
}

// Events returns a saga's whole audit trail in order, reading it page by
// page.
func (c *Client) Events(ctx context.Context, id string) ([]EventJSON, error) {
	var all []EventJSON
	afterSeq := int64(0)
	for {
		q := url.Values{}
		q.Set("after_seq", strconv.FormatInt(afterSeq, 10))
		q.Set("limit", strconv.Itoa(EventsLimitMax))
		var page EventsJSON
		if _, err := c.call(ctx, http.MethodGet, "/api/v1/sagas/"+url.PathEscape(id)+"/events", q, nil, &page); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		all = append(all, page.Events...)
		if len(page.Events) < EventsLimitMax {
			return all, nil
		}
		last := page.Events[len(page.Events)-1].Seq
		if last <= afterSeq {
			return nil, fmt.Errorf("list events: the service answered seq %d after seq %d", last, afterSeq)
		}
		afterSeq = last
	}
}

// Control asks for an operator action on a saga: "pause", "resume",
// "cancel" or "retry". The answer is the saga with the request recorded
// (control_request); the action is carried out asynchronously.
func (c *Client) Control(ctx context.Context, id string, action string) (*SagaJSON, error) {
	return c.ControlWithReason(ctx, id, action, "")
}

// ControlWithReason asks for an operator action as Control does, with the
// reason (when not empty) recorded with the request in the saga's audit
// trail.
func (c *Client) ControlWithReason(ctx context.Context, id, action, reason string) (*SagaJSON, error) {
	var out SagaJSON
	path := "/api/v1/sagas/" + url.PathEscape(id) + "/" + url.PathEscape(action)
	if _, err := c.call(ctx, http.MethodPost, path, nil, operatorBody(reason), &out); err != nil {
		return nil, fmt.Errorf("%s saga: %w", action, err)
	}
	return &out, nil
}

// operatorBody is the body of an operator request giving reason; none
// without one.
func operatorBody(reason string) any {
	if reason == "" {
		return nil
	}
	return OperatorRequestJSON{Reason: reason}
}

// Audit returns a saga's audit trail with its hashes and the service's
// verdict on its chain.
func (c *Client) Audit(ctx context.Context, id string) (*AuditJSON, error) {
	var out AuditJSON
	if _, err := c.call(ctx, http.MethodGet, "/api/v1/sagas/"+url.PathEscape(id)+"/audit", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("read audit trail: %w", err)
	}
	return &out, nil
}

// SetLegalHold sets (hold = true) or clears the saga's legal hold and
// returns the saga.
func (c *Client) SetLegalHold(ctx context.Context, id string, hold bool) (*SagaJSON, error) {
	return c.SetLegalHoldWithReason(ctx, id, hold, "")
}

// SetLegalHoldWithReason is SetLegalHold with the reason the
// LegalHoldChanged event records (none when empty).
func (c *Client) SetLegalHoldWithReason(ctx context.Context, id string, hold bool, reason string) (*SagaJSON, error) {
	method := http.MethodPost
	if !hold {
		method = http.MethodDelete
	}
	var out SagaJSON
	if _, err := c.call(ctx, method, "/api/v1/sagas/"+url.PathEscape(id)+"/hold", nil, operatorBody(reason), &out); err != nil {
		return nil, fmt.Errorf("set legal hold: %w", err)
	}
	return &out, nil
}

// AuditCSV returns a saga's audit trail as CSV (AuditCSVHeader) and the
// service's verdict on its chain.
func (c *Client) AuditCSV(ctx context.Context, id string) (csv []byte, verified bool, err error) {
	q := url.Values{"format": {"csv"}}
	resp, body, err := c.send(ctx, http.MethodGet, "/api/v1/sagas/"+url.PathEscape(id)+"/audit", q, nil)
	if err != nil {
		return nil, false, fmt.Errorf("read audit trail: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("read audit trail: %w", answerProblem(resp, body))
	}
	return body, resp.Header.Get("Audit-Verified") == "true", nil
}

// Statistics returns the service's figures; window 0 means the server's
// default (one hour).
func (c *Client) Statistics(ctx context.Context, window time.Duration) (*StatsJSON, error) {
	q := url.Values{}
	if window > 0 {
		q.Set("window", window.String())
	}
	var out StatsJSON
	if _, err := c.call(ctx, http.MethodGet, "/api/v1/statistics", q, nil, &out); err != nil {
		return nil, fmt.Errorf("get statistics: %w", err)
	}
	return &out, nil
}

// Cleanup deletes old finished sagas now and returns how many it deleted.
func (c *Client) Cleanup(ctx context.Context) (int, error) {
	return c.CleanupWithReason(ctx, "")
}

// CleanupWithReason deletes old finished sagas now as Cleanup does, with
// the reason (when not empty) recorded on the tombstone of each.
func (c *Client) CleanupWithReason(ctx context.Context, reason string) (int, error) {
	var out CleanupJSON
	if _, err := c.call(ctx, http.MethodPost, "/api/v1/maintenance/cleanup", nil, operatorBody(reason), &out); err != nil {
		return 0, fmt.Errorf("clean up sagas: %w", err)
	}
	return out.Deleted, nil
}

// Health returns the liveness answer.
func (c *Client) Health(ctx context.Context) (*HealthJSON, error) {
	var out HealthJSON
	if _, err := c.call(ctx, http.MethodGet, "/health", nil, nil, &out); err != nil {
		return nil, fmt.Errorf("check health: %w", err)
	}
	return &out, nil
}

// Ready returns the readiness answer and its HTTP status (200 ready, 503
// not ready). A not-ready answer is not an error.
func (c *Client) Ready(ctx context.Context) (*ReadyJSON, int, error) {
	resp, body, err := c.send(ctx, http.MethodGet, "/health/ready", nil, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("check readiness: %w", err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return nil, resp.StatusCode, fmt.Errorf("check readiness: %w", answerProblem(resp, body))
	}
	var out ReadyJSON
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, resp.StatusCode, fmt.Errorf("check readiness: decode answer: %w", err)
	}
	return &out, resp.StatusCode, nil
}

// call sends a request and decodes a 2xx answer into out; any other answer
// becomes a *Problem.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) (*http.Response, error) {
	resp, body, err := c.send(ctx, method, path, q, in)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, answerProblem(resp, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return resp, fmt.Errorf("decode answer (HTTP %d): %w", resp.StatusCode, err)
		}
	}
	return resp, nil
}

// send makes one request and reads the whole answer.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, []byte, error) {
	if c.BaseURL == "" {
		return nil, nil, fmt.Errorf("httpapi: Client.BaseURL is empty")
	}
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return nil, nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, nil, fmt.Errorf("make request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", contentTypeJSON)
	}
	req.Header.Set("Accept", contentTypeJSON+", "+contentTypeProblem)
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return nil, nil, fmt.Errorf("read answer (HTTP %d): %w", resp.StatusCode, err)
	}
	return resp, raw, nil
}

// answerProblem turns an error answer into a *Problem, also when the body
// is not a problem document (from a proxy, say).
func answerProblem(resp *http.Response, body []byte) *Problem {
	var p Problem
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if (mt == contentTypeProblem || mt == contentTypeJSON) && json.Unmarshal(body, &p) == nil && p.Title != "" {
		p.Status = resp.StatusCode
		return &p
	}
	detail := strings.TrimSpace(string(body))
	if len(detail) > 512 {
		detail = detail[:512] + "…"
	}
	return &Problem{
		Type:      "about:blank",
		Title:     http.StatusText(resp.StatusCode),
		Status:    resp.StatusCode,
		Detail:    detail,
		RequestID: resp.Header.Get("X-Request-Id"),
	}
}
