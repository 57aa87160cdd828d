package dtmapi

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/participant"
)

// SagaName is the name of every saga submitted through the DTM endpoint.
const SagaName = "dtm"

// KeyPrefix starts the idempotency key of a DTM saga; the gid follows.
const KeyPrefix = "dtm:"

// Limits of a DTM submit.
const (
	MaxGIDLength      = 128 // as DTM's gid column
	MaxRequestTimeout = int64(saga.MaxCallTimeout / 1e9)
	MaxRetryInterval  = int64(saga.MaxBackoffLimit / 1e9)
	MaxRetryLimit     = saga.MaxAttemptsLimit - 1
	// retryMaxBackoff caps the backoff of a DTM saga's retries: DTM doubles
	// its retry interval without end.
	retryMaxBackoffMs = 60_000
)

// transRequest is the body of POST submit and forceStop: DTM's TransBase
// (client/dtmcli/dtmimp.TransBase) as dtmcli encodes it. Fields this
// endpoint does not use (query_prepared, retry_count, rollback_reason) are
// accepted and ignored, as DTM does.
type transRequest struct {
	Gid                string              `json:"gid"`
	TransType          string              `json:"trans_type"`
	Steps              []map[string]string `json:"steps"`
	Payloads           []string            `json:"payloads"`
	CustomData         string              `json:"custom_data"`
	Protocol           string              `json:"protocol"`
	WaitResult         bool                `json:"wait_result"`
	TimeoutToFail      int64               `json:"timeout_to_fail"`
	RequestTimeout     int64               `json:"request_timeout"`
	RetryInterval      int64               `json:"retry_interval"`
	RetryLimit         int64               `json:"retry_limit"`
	BranchHeaders      map[string]string   `json:"branch_headers"`
	PassthroughHeaders []string            `json:"passthrough_headers"`
	Concurrent         bool                `json:"concurrent"`
}

// customData is a concurrent saga's custom_data: for each branch (by step
// index), the branches it must wait for.
type customData struct {
	Orders     map[string][]int `json:"orders"`
	Concurrent bool             `json:"concurrent"`
}

// dtmContext is the saga context of a DTM saga: what query answers beside
// the steps.
type dtmContext struct {
	DTM struct {
		Gid        string `json:"gid"`
		TransType  string `json:"trans_type"`
		Options    string `json:"options,omitempty"`
		CustomData string `json:"custom_data,omitempty"`
	} `json:"dtm"`
}

// transOptions is DTM's TransOptions as it stores them (the options column).
type transOptions struct {
	WaitResult     bool              `json:"wait_result,omitempty"`
	TimeoutToFail  int64             `json:"timeout_to_fail,omitempty"`
	RequestTimeout int64             `json:"request_timeout,omitempty"`
	RetryInterval  int64             `json:"retry_interval,omitempty"`
	BranchHeaders  map[string]string `json:"branch_headers,omitempty"`
	Concurrent     bool              `json:"concurrent"`
	RetryLimit     int64             `json:"retry_limit,omitempty"`
}

// inputError collects the problems of a DTM request, by DTM's field names.
type inputError struct{ ve saga.ValidationError }

func (e *inputError) add(field, format string, args ...any) {
	e.ve.Problems = append(e.ve.Problems, saga.Errorf(saga.ECodeInvalid, field, format, args...))
}

func (e *inputError) orNil() error {
	if len(e.ve.Problems) == 0 {
		return nil
	}
	return &e.ve
}

// checkGID validates a gid.
func checkGID(gid string) error {
	var ie inputError
	switch {
	case gid == "":
		ie.add("gid", "must not be empty (GET newGid gives one)")
	case len(gid) > MaxGIDLength:
		ie.add("gid", "must be at most %d bytes", MaxGIDLength)
	case !utf8.ValidString(gid) || strings.ContainsFunc(gid, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		ie.add("gid", "must be UTF-8 text without control characters")
	}
	return ie.orNil()
}

// definition turns a DTM submit into a saga definition. header is the
// submit request's header (for passthrough_headers). Its errors name DTM's
// fields (steps[1].action, payloads[0], custom_data.orders, …).
func (t *transRequest) definition(header http.Header) (saga.Definition, error) {
	var ie inputError
	if err := checkGID(t.Gid); err != nil {
		return saga.Definition{}, err
	}
	if t.TransType != "saga" {
		ie.add("trans_type", "only saga is supported by this endpoint (got %q)", t.TransType)
	}
	if t.Protocol != "" && t.Protocol != "http" {
		ie.add("protocol", "only http branches are supported (got %q)", t.Protocol)
	}
	switch {
	case len(t.Steps) == 0:
		ie.add("steps", "must hold at least one step")
	case len(t.Steps) > saga.MaxSteps:
		ie.add("steps", "must hold at most %d steps", saga.MaxSteps)
	}
	if len(t.Payloads) > len(t.Steps) {
		ie.add("payloads", "holds %d payloads for %d steps", len(t.Payloads), len(t.Steps))
	}
	checkRange(&ie, "timeout_to_fail", t.TimeoutToFail, int64(saga.MaxSagaTimeout/1e9))
	checkRange(&ie, "request_timeout", t.RequestTimeout, MaxRequestTimeout)
	checkRange(&ie, "retry_interval", t.RetryInterval, MaxRetryInterval)
	checkRange(&ie, "retry_limit", t.RetryLimit, int64(MaxRetryLimit))
	orders := t.orders(&ie)

	headers := make(map[string]string, len(t.BranchHeaders)+len(t.PassthroughHeaders))
	for _, name := range t.PassthroughHeaders {
		if v := header.Get(name); v != "" {
			headers[name] = v
		}
	}
	for k, v := range t.BranchHeaders {
		headers[k] = v
	}

	policy := &saga.RetryPolicy{MaxAttempts: saga.MaxAttemptsLimit, MaxBackoffMs: retryMaxBackoffMs}
	if t.RetryLimit > 0 {
		policy.MaxAttempts = int(t.RetryLimit) + 1
	}
	if t.RetryInterval > 0 {
		policy.InitialBackoffMs = t.RetryInterval * 1000
		policy.MaxBackoffMs = max(policy.MaxBackoffMs, policy.InitialBackoffMs)
	}

	def := saga.Definition{
		Name:           SagaName,
		TransactionID:  new(TransactionID(t.Gid)),
		TimeoutMs:      t.TimeoutToFail * 1000,
		IdempotencyKey: KeyPrefix + t.Gid,
		Steps:          make([]saga.StepDefinition, 0, len(t.Steps)),
	}
	if t.Concurrent {
		def.MaxParallel = min(max(len(t.Steps), 1), saga.MaxParallelLimit)
	}
	for i, st := range t.Steps {
		var payload []byte
		if i < len(t.Payloads) {
			payload = []byte(t.Payloads[i])
		}
		if len(payload) > 0 && !json.Valid(payload) {
			ie.add(fmt.Sprintf("payloads[%d]", i), "must be JSON (dtmcli always encodes payloads as JSON)")
		}
		step := saga.StepDefinition{Name: participant.DTMBranchID(i), Retry: policy}
		step.Action = t.request(&ie, fmt.Sprintf("steps[%d].action", i), st[participant.DTMOpAction], payload, headers)
		if u := st[participant.DTMOpCompensate]; u != "" {
			c := t.request(&ie, fmt.Sprintf("steps[%d].compensate", i), u, payload, headers)
			step.Compensation = &c
		}
		if t.Concurrent {
			step.DependsOn = []string{}
			for _, j := range orders[i] {
				step.DependsOn = append(step.DependsOn, participant.DTMBranchID(j))
			}
		}
		def.Steps = append(def.Steps, step)
	}
	ctx := dtmContext{}
	ctx.DTM.Gid, ctx.DTM.TransType, ctx.DTM.CustomData = t.Gid, t.TransType, t.CustomData
	opts, _ := json.Marshal(transOptions{
		WaitResult: t.WaitResult, TimeoutToFail: t.TimeoutToFail, RequestTimeout: t.RequestTimeout,
		RetryInterval: t.RetryInterval, BranchHeaders: t.BranchHeaders, Concurrent: t.Concurrent, RetryLimit: t.RetryLimit,
	})
	ctx.DTM.Options = string(opts)
	def.Context, _ = json.Marshal(ctx)
	if err := ie.orNil(); err != nil {
		return saga.Definition{}, err
	}
	return def, nil
}

// request builds the call of one branch. DTM calls with POST when the
// payload is not empty and with GET otherwise; the gid rides in the URL,
// where the participant client finds it.
func (t *transRequest) request(ie *inputError, field, rawURL string, payload []byte, headers map[string]string) saga.Request {
	u, err := url.Parse(rawURL)
	if rawURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ie.add(field, "must be an absolute http or https URL (got %q)", rawURL)
	}
	r := saga.Request{
		Method:   http.MethodGet,
		URL:      withGID(rawURL, t.Gid),
		Headers:  headers,
		Protocol: saga.ProtocolDTM,
	}
	if len(payload) > 0 {
		r.Method = http.MethodPost
		r.Body = payload
	}
	if t.RequestTimeout > 0 {
		r.TimeoutMs = t.RequestTimeout * 1000
	}
	return r
}

// gidParam is what withGID appends to a branch URL.
const gidParam = "gid="

// withGID appends the gid query parameter to a branch URL.
func withGID(rawURL, gid string) string {
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	if i := strings.IndexByte(rawURL, '#'); i >= 0 {
		rawURL = rawURL[:i]
	}
	return rawURL + sep + gidParam + url.QueryEscape(gid)
}

// withoutGID undoes withGID: the branch URL as the client gave it.
func withoutGID(stored, gid string) string {
	suffix := gidParam + url.QueryEscape(gid)
	if s, ok := strings.CutSuffix(stored, "?"+suffix); ok {
		return s
	}
	if s, ok := strings.CutSuffix(stored, "&"+suffix); ok {
		return s
	}
	return stored
}

// orders reads the branch orders of a concurrent saga: for each step
// index, the indexes of the steps it waits for.
func (t *transRequest) orders(ie *inputError) map[int][]int {
	if t.CustomData == "" {
		return nil
	}
	var cd customData
	if err := json.Unmarshal([]byte(t.CustomData), &cd); err != nil {
		ie.add("custom_data", "must be a JSON object such as {\"orders\":{\"2\":[0,1]},\"concurrent\":true}")
		return nil
	}
	if !t.Concurrent {
		return nil // DTM keeps steps in order unless concurrent is set
	}
	out := make(map[int][]int, len(cd.Orders))
	keys := make([]string, 0, len(cd.Orders))
	for k := range cd.Orders {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		i, err := strconv.Atoi(k)
		field := "custom_data.orders." + k
		if err != nil || i < 0 || i >= len(t.Steps) {
			ie.add(field, "names no step: branch orders are step indexes from 0 to %d", len(t.Steps)-1)
			continue
		}
		for _, j := range cd.Orders[k] {
			switch {
			case j < 0 || j >= len(t.Steps):
				ie.add(field, "step %d waits for %d, which is no step index", i, j)
			case j == i:
				ie.add(field, "step %d may not wait for itself", i)
			case !slices.Contains(out[i], j):
				out[i] = append(out[i], j)
			}
		}
	}
	return out
}

func checkRange(ie *inputError, field string, v, maxV int64) {
	if v < 0 || v > maxV {
		ie.add(field, "must be between 0 and %d seconds (got %d)", maxV, v)
	}
}

// dtmNamespace is the UUID namespace of transaction ids derived from gids.
var dtmNamespace = saga.ID{0x6f, 0x0e, 0x2a, 0x53, 0x8d, 0x1b, 0x4c, 0x7e, 0x9a, 0x41, 0x3c, 0x52, 0xd0, 0x8e, 0x17, 0x6b}

// TransactionID returns the transaction id of the DTM saga with gid: a
// name-based (version 5) UUID, so that the saga of a gid is found by its
// transaction id.
func TransactionID(gid string) saga.ID {
	h := sha1.New()
	h.Write(dtmNamespace[:])
	h.Write([]byte(gid))
	var id saga.ID
	copy(id[:], h.Sum(nil))
	id[6] = id[6]&0x0f | 0x50 // version 5
	id[8] = id[8]&0x3f | 0x80 // RFC 9562 variant
	return id
}

// sameSteps reports whether a stored definition has the steps of def, so
// that a repeated submit of a gid is the same saga and not another one
// reusing it. Bodies are compared as JSON values: a store may keep them
// normalised.
func sameSteps(stored, def *saga.Definition) bool {
	if len(stored.Steps) != len(def.Steps) {
		return false
	}
	for i := range def.Steps {
		a, b := stored.Steps[i], def.Steps[i]
		if !sameRequest(&a.Action, &b.Action) || (a.Compensation == nil) != (b.Compensation == nil) ||
			(a.Compensation != nil && !sameRequest(a.Compensation, b.Compensation)) ||
			!slices.Equal(a.DependsOn, b.DependsOn) {
			return false
		}
	}
	return true
}

func sameRequest(a, b *saga.Request) bool {
	return a.Method == b.Method && a.URL == b.URL && sameJSON(a.Body, b.Body)
}

func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ca, _ := json.Marshal(va)
	cb, _ := json.Marshal(vb)
	return bytes.Equal(ca, cb)
}
