package dtm

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dtm-labs/dtm/client/dtmcli"
)

// barrierDDL is the PostgreSQL barrier table of dtmcli (DTM's
// sqls/dtmcli.barrier.postgres.sql), and the participant's own table.
const barrierDDL = `
CREATE SCHEMA IF NOT EXISTS dtm_barrier;
CREATE TABLE dtm_barrier.barrier (
  id bigserial PRIMARY KEY,
  trans_type varchar(45) DEFAULT '',
  gid varchar(128) DEFAULT '',
  branch_id varchar(128) DEFAULT '',
  op varchar(45) DEFAULT '',
  barrier_id varchar(45) DEFAULT '',
  reason varchar(45) DEFAULT '',
  create_time timestamp(0) with time zone DEFAULT NULL,
  update_time timestamp(0) with time zone DEFAULT NULL,
  CONSTRAINT uniq_barrier UNIQUE (gid, branch_id, op, barrier_id)
);
CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL);
INSERT INTO account VALUES (1, 1000), (2, 1000);`

// barrierBusi is a participant that moves money between two accounts in its
// own database, each branch through dtmcli's barrier.
type barrierBusi struct {
	*busi
	db *sql.DB
}

func newBarrierBusi(t *testing.T) *barrierBusi {
	db := openDB(t)
	if _, err := db.Exec(barrierDDL); err != nil {
		t.Fatalf("create tables: %v", err)
	}
	return &barrierBusi{busi: newBusi(t), db: db}
}

// branch returns a handler that adds delta × amount to the account, in the
// barrier's transaction.
func (b *barrierBusi) branch(account, delta int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b.barrierCall(w, r, account, delta)
	}
}

func (b *barrierBusi) barrierCall(w http.ResponseWriter, r *http.Request, account, delta int) {
	var req transReq
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	bb, err := dtmcli.BarrierFromQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	err = bb.CallWithDB(b.db, func(tx *sql.Tx) error {
		_, err := tx.Exec("UPDATE account SET balance = balance + $1 WHERE id = $2", delta*req.Amount, account)
		return err
	})
	status, res := dtmcli.Result2HttpJSON(err)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(res)
}

func (b *barrierBusi) balances(t *testing.T) [2]int {
	t.Helper()
	var out [2]int
	for i := range out {
		if err := b.db.QueryRow("SELECT balance FROM account WHERE id = $1", i+1).Scan(&out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestBarrierSucceeds: a transfer through dtmcli's barrier moves the money
// once.
func TestBarrierSucceeds(t *testing.T) {
	b := newBarrierBusi(t)
	b.handlers["/TransOut"] = b.branch(1, -1)
	b.handlers["/TransOutCompensate"] = b.branch(1, +1)
	b.handlers["/TransIn"] = b.branch(2, +1)
	b.handlers["/TransInCompensate"] = b.branch(2, -1)
	gid := dtmcli.MustGenGid(dtmServer)
	req := transReq{Amount: 30}
	s := dtmcli.NewSaga(dtmServer, gid).
		Add(b.url("/TransOut"), b.url("/TransOutCompensate"), &req).
		Add(b.url("/TransIn"), b.url("/TransInCompensate"), &req)
	s.WaitResult = true
	if err := s.Submit(); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if got := b.balances(t); got != [2]int{970, 1030} {
		t.Errorf("balances %v, want [970 1030]", got)
	}
}

// TestBarrierCompensationBeforeAction: the second action hangs past the
// saga's timeout, so the saga rolls back; its compensation reaches the
// participant before the action does. The barrier makes that compensation
// a no-op and the late action do nothing: the money ends where it started.
func TestBarrierCompensationBeforeAction(t *testing.T) {
	b := newBarrierBusi(t)
	compensated := make(chan struct{})
	var once sync.Once
	var late sync.WaitGroup
	lateResults := make(chan int, 8)
	b.handlers["/TransOut"] = b.branch(1, -1)
	b.handlers["/TransOutCompensate"] = b.branch(1, +1)
	b.handlers["/TransIn"] = func(w http.ResponseWriter, r *http.Request) {
		late.Add(1)
		defer late.Done()
		// Held "in the network" until its compensation has been applied.
		select {
		case <-compensated:
		case <-time.After(30 * time.Second):
		}
		rec := &statusRecorder{ResponseWriter: w}
		b.barrierCall(rec, r.WithContext(context.Background()), 2, +1)
		lateResults <- rec.status
	}
	b.handlers["/TransInCompensate"] = func(w http.ResponseWriter, r *http.Request) {
		b.barrierCall(w, r, 2, -1)
		once.Do(func() { close(compensated) })
	}
	gid := dtmcli.MustGenGid(dtmServer)
	req := transReq{Amount: 30}
	s := dtmcli.NewSaga(dtmServer, gid).
		Add(b.url("/TransOut"), b.url("/TransOutCompensate"), &req).
		Add(b.url("/TransIn"), b.url("/TransInCompensate"), &req)
	// The saga times out after 2 s (a request_timeout would bound dtmcli's
	// own call to the server too, and with it the wait for the result).
	s.WaitResult = true
	s.TimeoutToFail = 2
	err := s.Submit()
	if err == nil || !strings.Contains(err.Error(), dtmcli.ResultFailure) {
		t.Fatalf("Submit: %v, want FAILURE", err)
	}
	once.Do(func() { close(compensated) }) // should have happened: never hang the late actions
	late.Wait()
	close(lateResults)
	n := 0
	for status := range lateResults {
		n++
		if status != http.StatusOK {
			t.Errorf("late action answered %d; the barrier answers a dangling action with success and does nothing", status)
		}
	}
	if n == 0 {
		t.Fatal("the action never reached the participant")
	}
	if got := b.balances(t); got != [2]int{1000, 1000} {
		t.Errorf("balances %v, want [1000 1000]: the late action or a compensation changed money", got)
	}
	var reason string
	err = b.db.QueryRow(`SELECT reason FROM dtm_barrier.barrier WHERE gid = $1 AND branch_id = '02' AND op = 'action'`, gid).Scan(&reason)
	if err != nil || reason != "compensate" {
		t.Errorf("barrier row of the action: reason %q, %v; want the compensation's marker", reason, err)
	}
	q := dtmQuery(t, gid)
	if q.Transaction.Status != "failed" {
		t.Errorf("transaction status %q, want failed", q.Transaction.Status)
	}
}

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}
