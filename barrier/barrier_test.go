package barrier_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tracseq/transaction-service/barrier"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// ledgerDDL is the participant's business table: one row per effect.
const ledgerDDL = `CREATE TABLE ledger (
	saga_id TEXT NOT NULL, step TEXT NOT NULL, amount INTEGER NOT NULL,
	at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp())`

// ledger is a participant behind the barrier: an action books +amount,
// a compensation -amount; ?answer=NNN makes the handler answer that status.
type ledger struct {
	pool  *pgxpool.Pool
	srv   *httptest.Server
	calls atomic.Int64 // handler runs
}

func newParticipant(t testing.TB) *ledger {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := barrier.CreateTables(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if err := barrier.CreateTables(ctx, pool); err != nil {
		t.Fatalf("CreateTables is not idempotent: %v", err)
	}
	if _, err := pool.Exec(ctx, ledgerDDL); err != nil {
		t.Fatal(err)
	}
	b, err := barrier.New(barrier.Config{DB: pool})
	if err != nil {
		t.Fatal(err)
	}
	p := &ledger{pool: pool}
	p.srv = httptest.NewServer(b.Handler(p.handle))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *ledger) handle(w http.ResponseWriter, r *http.Request, tx pgx.Tx) {
	p.calls.Add(1)
	key, _ := barrier.KeyFromRequest(r)
	amount := 10
	if key.Op == barrier.OpCompensation {
		amount = -10
	}
	if _, err := tx.Exec(r.Context(), `INSERT INTO ledger (saga_id, step, amount) VALUES ($1, $2, $3)`, key.Saga, key.Step, amount); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	status := http.StatusOK
	if v := r.URL.Query().Get("answer"); v != "" {
		fmt.Sscan(v, &status)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"booked":%d,"status":%d}`, amount, status)
}

// call sends one call with an Idempotency-Key and returns status and body.
func (p *ledger) call(t testing.TB, key, query string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, p.srv.URL+"/book?"+query, strings.NewReader(`{}`))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// net returns the sum of the ledger of one saga step and its row count.
func (p *ledger) net(t testing.TB, sagaID, step string) (sum, rows int) {
	t.Helper()
	err := p.pool.QueryRow(context.Background(),
		`SELECT coalesce(sum(amount), 0), count(*) FROM ledger WHERE saga_id = $1 AND step = $2`, sagaID, step).Scan(&sum, &rows)
	if err != nil {
		t.Fatal(err)
	}
	return sum, rows
}

func TestRepeatedActionGetsTheFirstAnswer(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	s1, b1, _ := p.call(t, "s1:0:action", "")
	s2, b2, h2 := p.call(t, "s1:0:action", "")
	if s1 != 200 || s2 != 200 || b1 != b2 || h2.Get("Idempotent-Replayed") != "true" {
		t.Errorf("answers %d %q, then %d %q %v", s1, b1, s2, b2, h2)
	}
	if sum, rows := p.net(t, "s1", "0"); sum != 10 || rows != 1 || p.calls.Load() != 1 {
		t.Errorf("ledger %d in %d rows after %d handler runs; want 10, 1, 1", sum, rows, p.calls.Load())
	}
	// Its compensation undoes it once.
	p.call(t, "s1:0:compensation", "")
	p.call(t, "s1:0:compensation", "")
	if sum, rows := p.net(t, "s1", "0"); sum != 0 || rows != 2 {
		t.Errorf("after compensating: ledger %d in %d rows, want 0 in 2", sum, rows)
	}
}

func TestCompensationBeforeAction(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	status, body, _ := p.call(t, "s2:1:compensation", "")
	if status != 200 || !strings.Contains(body, "nothing to compensate") {
		t.Errorf("compensation first: %d %s", status, body)
	}
	status, body, _ = p.call(t, "s2:1:action", "")
	if status != http.StatusConflict || !strings.Contains(body, "FAILURE") {
		t.Errorf("late action: %d %s, want 409 FAILURE", status, body)
	}
	if status, _, _ = p.call(t, "s2:1:action", ""); status != http.StatusConflict {
		t.Errorf("late action again: %d, want 409", status)
	}
	if sum, rows := p.net(t, "s2", "1"); rows != 0 || p.calls.Load() != 0 {
		t.Errorf("ledger %d in %d rows, %d handler runs; want nothing", sum, rows, p.calls.Load())
	}
}

func TestRefusedActionIsKeptAndNotCompensated(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	s1, b1, _ := p.call(t, "s3:0:action", "answer=422")
	s2, b2, _ := p.call(t, "s3:0:action", "") // would succeed now, but the refusal stands
	if s1 != 422 || s2 != 422 || b1 != b2 {
		t.Errorf("refused %d %q, then %d %q", s1, b1, s2, b2)
	}
	if status, body, _ := p.call(t, "s3:0:compensation", ""); status != 200 || !strings.Contains(body, "nothing to compensate") {
		t.Errorf("compensation of a refused action: %d %s", status, body)
	}
	if _, rows := p.net(t, "s3", "0"); rows != 0 || p.calls.Load() != 1 {
		t.Errorf("%d ledger rows after %d handler runs; want 0 rows, 1 run", rows, p.calls.Load())
	}
}

func TestTransientFailureKeepsNothing(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	if status, _, _ := p.call(t, "s4:0:action", "answer=503"); status != 503 {
		t.Fatalf("status %d", status)
	}
	if status, _, _ := p.call(t, "s4:0:action", ""); status != 200 {
		t.Fatalf("retry: status %d", status)
	}
	if sum, rows := p.net(t, "s4", "0"); sum != 10 || rows != 1 || p.calls.Load() != 2 {
		t.Errorf("ledger %d in %d rows after %d runs; want 10 in 1 after 2", sum, rows, p.calls.Load())
	}
	// A compensation that fails transiently is retried afresh too.
	p.call(t, "s4:0:compensation", "answer=500")
	p.call(t, "s4:0:compensation", "")
	if sum, rows := p.net(t, "s4", "0"); sum != 0 || rows != 2 {
		t.Errorf("after compensating: %d in %d rows, want 0 in 2", sum, rows)
	}
}

func TestStaleEpochRefused(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	if status, _, _ := p.call(t, "s5:0:action", "answer=503", "X-Saga-Attempt-Epoch", "2"); status != 503 {
		t.Fatalf("status %d", status)
	}
	status, body, _ := p.call(t, "s5:0:action", "", "X-Saga-Attempt-Epoch", "1")
	if status != http.StatusConflict || !strings.Contains(body, "stale") {
		t.Errorf("epoch 1 after 2: %d %s, want 409 stale", status, body)
	}
	if status, _, _ := p.call(t, "s5:0:action", "", "X-Saga-Attempt-Epoch", "3"); status != 200 {
		t.Errorf("epoch 3: %d", status)
	}
	if status, _, _ := p.call(t, "s5:0:action", "", "X-Saga-Attempt-Epoch", "bad"); status != 400 {
		t.Errorf("a bad epoch: %d, want 400", status)
	}
}

func TestDTMKeys(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	q := "gid=g-1&trans_type=saga&branch_id=01&op="
	if status, _, _ := p.call(t, "", q+"compensate"); status != 200 {
		t.Fatalf("compensate: %d", status)
	}
	// DTM's failure reading: 409 with FAILURE.
	if status, body, _ := p.call(t, "", q+"action"); status != 409 || !strings.Contains(body, "FAILURE") {
		t.Errorf("late action: %d %s", status, body)
	}
	if status, _, _ := p.call(t, "", "gid=g-1&op=action"); status != 400 {
		t.Errorf("no branch_id: %d, want 400", status)
	}
	if status, _, _ := p.call(t, "", ""); status != 400 {
		t.Errorf("no key at all: %d, want 400", status)
	}
	if status, _, _ := p.call(t, "nocolons", ""); status != 400 {
		t.Errorf("a malformed Idempotency-Key: %d, want 400", status)
	}
}

// TestActionRacesItsCompensation sends each step's action and compensation
// at once, many times: every step ends with both applied or neither.
func TestActionRacesItsCompensation(t *testing.T) {
	t.Parallel()
	p := newParticipant(t)
	const steps = 100
	var wg sync.WaitGroup
	for i := range steps {
		for _, op := range []string{"action", "compensation", "action"} {
			wg.Go(func() { p.call(t, fmt.Sprintf("race:%d:%s", i, op), "") })
		}
	}
	wg.Wait()
	rows, err := p.pool.Query(context.Background(), `SELECT step, sum(amount), count(*) FROM ledger GROUP BY step`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var step string
		var sum, n int
		if err := rows.Scan(&step, &sum, &n); err != nil {
			t.Fatal(err)
		}
		if sum != 0 || n != 2 {
			t.Errorf("step %s: ledger %d in %d rows, want 0 in 2 (applied and undone) or no rows", step, sum, n)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}
