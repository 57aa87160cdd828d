package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tracseq/transaction-service/internal/pgtest"
)

// TestDurableExactlyOnce: on PostgreSQL, a repeated action books one
// effect, and an action arriving after its compensation books none.
func TestDurableExactlyOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	h, err := NewDurableServer(ctx, pool, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)

	s1, a1 := post(t, ts.URL+"/payments/charge", "saga-1:0:action", `{}`)
	s2, a2 := post(t, ts.URL+"/payments/charge", "saga-1:0:action", `{}`)
	if s1 != http.StatusOK || s2 != http.StatusOK || a1["charge_id"] != a2["charge_id"] {
		t.Errorf("repeated action: %d %v, then %d %v; want the first answer twice", s1, a1, s2, a2)
	}
	if s, _ := post(t, ts.URL+"/payments/refund", "saga-2:0:compensation", `{}`); s != http.StatusOK {
		t.Errorf("compensation of nothing: %d", s)
	}
	if s, _ := post(t, ts.URL+"/payments/charge", "saga-2:0:action", `{}`); s != http.StatusConflict {
		t.Errorf("action after its compensation: %d, want 409", s)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM participant_effects`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("%d effects booked, want 1 (saga-1's charge)", n)
	}
}
