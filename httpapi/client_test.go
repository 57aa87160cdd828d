package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	saga "github.com/tracseq/transaction-service"
)

// TestClientErrorAnswers checks that the client turns every error answer
// into a *Problem, including answers that are not problem documents.
func TestClientErrorAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		status      int
		body        string
		wantTitle   string
		wantDetail  string
	}{
		{"problem", contentTypeProblem, 409, `{"type":"urn:tracseq:problem:conflict","title":"Conflict here","status":409,"detail":"it is Completed"}`,
			"Conflict here", "it is Completed"},
		{"proxy text", "text/plain", 502, "upstream connect error", "Bad Gateway", "upstream connect error"},
		{"JSON that is no problem", contentTypeJSON, 500, `{"oops":true}`, "Internal Server Error", `{"oops":true}`},
		{"empty", "", 504, "", "Gateway Timeout", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(hs.Close)
			c := &Client{BaseURL: hs.URL + "/", HTTP: hs.Client()}
			_, err := c.Get(t.Context(), knownID)
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("error %v is not a *Problem", err)
			}
			if p.Status != tc.status || p.Title != tc.wantTitle || p.Detail != tc.wantDetail {
				t.Errorf("problem %+v", p)
			}
		})
	}
}

func TestClientTransportError(t *testing.T) {
	t.Parallel()
	hs := httptest.NewServer(http.NotFoundHandler())
	url := hs.URL
	hs.Close()
	c := &Client{BaseURL: url}
	_, err := c.Cleanup(context.Background())
	var p *Problem
	if err == nil || errors.As(err, &p) {
		t.Errorf("error %v, want a transport error", err)
	}
	if _, err := (&Client{}).Cleanup(context.Background()); err == nil {
		t.Error("a client without BaseURL sent a request")
	}
}

// Submit always sends an idempotency key (a new one when the definition
// has none) and tries again with the same key when the answer is lost or
// is 503; an answer that refuses the input is not retried.
func TestClientSubmitKeyAndRetries(t *testing.T) {
	t.Parallel()
	var keys []string
	answers := []func(w http.ResponseWriter){
		func(w http.ResponseWriter) { // the answer is lost with the connection
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		},
		func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", contentTypeProblem)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"type":"urn:tracseq:problem:unavailable","title":"Service unavailable","status":503}`))
		},
		func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", contentTypeJSON)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"id":"` + knownID + `","status":"Created"}`))
		},
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var def saga.Definition
		if err := json.NewDecoder(r.Body).Decode(&def); err != nil {
			t.Errorf("decode submit: %v", err)
		}
		keys = append(keys, def.IdempotencyKey)
		answers[len(keys)-1](w)
	}))
	t.Cleanup(hs.Close)
	c := &Client{BaseURL: hs.URL}
	s, replayed, err := c.Submit(t.Context(), saga.Definition{Name: "no key"}, 0)
	if err != nil || s.ID != knownID || !replayed {
		t.Fatalf("Submit = %+v, replayed %v, %v", s, replayed, err)
	}
	if len(keys) != 3 || keys[0] == "" || keys[1] != keys[0] || keys[2] != keys[0] {
		t.Errorf("keys sent: %q; want one key, three times", keys)
	}
	if _, err := saga.ParseID(keys[0]); err != nil {
		t.Errorf("generated key %q is not a UUID", keys[0])
	}

	// The definition's own key is kept; a refusal is final.
	var refused []string
	hs2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var def saga.Definition
		_ = json.NewDecoder(r.Body).Decode(&def)
		refused = append(refused, def.IdempotencyKey)
		w.Header().Set("Content-Type", contentTypeProblem)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"type":"urn:tracseq:problem:invalid","title":"Invalid request","status":400}`))
	}))
	t.Cleanup(hs2.Close)
	c2 := &Client{BaseURL: hs2.URL}
	if _, _, err := c2.Submit(t.Context(), saga.Definition{Name: "mine", IdempotencyKey: "order-7"}, 0); err == nil {
		t.Fatal("a 400 answer is not an error")
	}
	if len(refused) != 1 || refused[0] != "order-7" {
		t.Errorf("keys sent: %q; want order-7 once", refused)
	}
}
