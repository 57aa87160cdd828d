package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
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
