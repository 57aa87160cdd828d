package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/storetest"
)

// openTest opens a store on a new file of the test's own, with hooks.
func openTest(t *testing.T, h hooks) *Store {
	t.Helper()
	s, err := open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "tracseq.db"), InstanceID: "test"}, h)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// create stores a new saga leased to owner "w".
func create(t *testing.T, s *Store) *saga.Saga {
	t.Helper()
	sg, _, err := s.CreateSaga(t.Context(), saga.NewSaga{Saga: storetest.NewTestSaga("w", 2), LeaseFor: time.Hour,
		Events: []saga.Event{{Type: saga.EventSagaCreated}}})
	if err != nil {
		t.Fatalf("CreateSaga: %v", err)
	}
	return sg
}

func TestSettings(t *testing.T) {
	t.Parallel()
	s := openTest(t, hooks{})
	ctx := t.Context()
	for _, tc := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{s.write, "journal_mode", "wal"},
		{s.write, "synchronous", "2"}, // FULL
		{s.write, "foreign_keys", "1"},
		{s.write, "busy_timeout", "10000"},
		{s.read, "journal_mode", "wal"},
		{s.read, "query_only", "1"},
		{s.read, "busy_timeout", "10000"},
	} {
		var got string
		if err := tc.db.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("PRAGMA %s = %s, want %s", tc.pragma, got, tc.want)
		}
	}
	if _, err := s.read.ExecContext(ctx, "DELETE FROM sagas"); err == nil {
		t.Error("a reader connection could write")
	}
	if h := s.Health(ctx); h.Backend != "sqlite" || h.Path != s.Path() || !h.Durable || h.MigrationVersion < 1 || h.Error != "" {
		t.Errorf("Health = %+v", h)
	}
}

func TestSecondOpenRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tracseq.db")
	first, err := Open(t.Context(), Config{Path: path, InstanceID: "first"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	sg := create(t, first)
	_, err = Open(t.Context(), Config{Path: path, InstanceID: "second"})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "instance=first") || !strings.Contains(err.Error(), path) {
		t.Fatalf("second Open: err = %v, want ErrLocked naming the file and the first holder", err)
	}
	first.Close()
	again, err := Open(t.Context(), Config{Path: path, InstanceID: "again"})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer again.Close()
	if _, err := again.GetSaga(t.Context(), sg.ID); err != nil {
		t.Errorf("the saga written before Close: %v", err)
	}
}

// holderEnv makes the test binary, run by TestOtherProcessRefused, hold the
// store at this path until it is killed.
const holderEnv = "TRACSEQ_SQLITE_TEST_HOLD"

// TestMain lets the test binary serve as the other process of
// TestOtherProcessRefused.
func TestMain(m *testing.M) {
	if path := os.Getenv(holderEnv); path != "" {
		os.Exit(holdStore(path))
	}
	os.Exit(m.Run())
}

// holdStore opens the store at path, writes a saga, says "ready" on
// standard output and waits to be killed.
func holdStore(path string) int {
	ctx := context.Background()
	s, err := Open(ctx, Config{Path: path, InstanceID: "holder"})
	if err != nil {
		fmt.Println("open:", err)
		return 1
	}
	sg, _, err := s.CreateSaga(ctx, saga.NewSaga{Saga: storetest.NewTestSaga("holder", 1), LeaseFor: time.Hour})
	if err != nil {
		fmt.Println("create:", err)
		return 1
	}
	fmt.Println("ready", sg.ID)
	select {}
}

func TestOtherProcessRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tracseq.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the holder: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var line [128]byte
	n, _ := out.Read(line[:])
	ready, idText, _ := strings.Cut(strings.TrimSpace(string(line[:n])), " ")
	if ready != "ready" {
		t.Fatalf("the holder says %q", line[:n])
	}

	_, err = Open(t.Context(), Config{Path: path, InstanceID: "second"})
	want := fmt.Sprintf("pid=%d", cmd.Process.Pid)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("Open while another process holds the file: err = %v, want ErrLocked naming %s and the way out", err, want)
	}
	if _, err := MigrationStatus(t.Context(), path); !errors.Is(err, ErrLocked) {
		t.Errorf("MigrationStatus while another process holds the file: err = %v, want ErrLocked", err)
	}

	// SIGKILL: the operating system releases the lock with the process.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	s, err := Open(t.Context(), Config{Path: path, InstanceID: "after"})
	if err != nil {
		t.Fatalf("Open after the holder was killed: %v", err)
	}
	defer s.Close()
	id, err := saga.ParseID(idText)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSaga(t.Context(), id)
	if err != nil || got.OwnerID != "holder" {
		t.Errorf("the saga the killed process committed: %+v, %v", got, err)
	}
}

// TestGroupCommitOneBadWrite gathers writes in one group, one of them
// naming a step the saga does not have: that one fails alone, with nothing
// of it written, and the others are committed.
func TestGroupCommitOneBadWrite(t *testing.T) {
	t.Parallel()
	const writes = 6
	var (
		gate    = make(chan struct{})
		batches = make(chan int, 100)
		hold    = false
		mu      sync.Mutex
	)
	s := openTest(t, hooks{beforeBatch: func(n int) {
		batches <- n
		mu.Lock()
		h := hold
		mu.Unlock()
		if h {
			<-gate
		}
	}})
	var sagas []*saga.Saga
	for range writes {
		sagas = append(sagas, create(t, s))
	}
	// Hold the writer on a first write while the others queue behind it.
	mu.Lock()
	hold = true
	mu.Unlock()
	for len(batches) > 0 {
		<-batches
	}
	errs := make([]error, writes)
	var wg sync.WaitGroup
	for i, sg := range sagas {
		wg.Go(func() {
			tr := saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Hour, Status: saga.SagaStatusExecuting,
				Steps:  []saga.StepUpdate{{Index: 0, Status: saga.StepStatusExecuting, Attempts: 1, Start: true}},
				Events: []saga.Event{{Type: saga.EventStepStarted, StepIndex: new(0)}}}
			if i == 3 {
				tr.Steps = append(tr.Steps, saga.StepUpdate{Index: 7, Status: saga.StepStatusExecuting})
			}
			_, errs[i] = s.Apply(t.Context(), tr)
		})
		if i == 0 {
			<-batches // the first write holds the writer
		}
	}
	waitQueued(t, s, writes-1)
	mu.Lock()
	hold = false
	mu.Unlock()
	close(gate)
	wg.Wait()
	if n := <-batches; n != writes-1 {
		t.Errorf("the writes that queued formed a group of %d, want %d", n, writes-1)
	}
	for i, sg := range sagas {
		got, err := s.GetSaga(t.Context(), sg.ID)
		if err != nil {
			t.Fatal(err)
		}
		evs, _ := s.ListEvents(t.Context(), sg.ID, 0, 0)
		if i == 3 {
			if errs[i] == nil || !strings.Contains(errs[i].Error(), "step index 7") {
				t.Errorf("the bad write: err = %v, want one naming step index 7", errs[i])
			}
			if got.Status != saga.SagaStatusCreated || got.Steps[0].Status != saga.StepStatusPending || len(evs) != 1 || got.EventSeq != 1 {
				t.Errorf("the bad write left %s, step 0 %s, %d events (seq %d): want nothing of it", got.Status, got.Steps[0].Status, len(evs), got.EventSeq)
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("write %d: %v", i, errs[i])
		}
		if got.Status != saga.SagaStatusExecuting || got.Steps[0].Status != saga.StepStatusExecuting || len(evs) != 2 {
			t.Errorf("write %d left %s, step 0 %s, %d events", i, got.Status, got.Steps[0].Status, len(evs))
		}
	}
}

// waitQueued waits until n writes wait in the writer's queue.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.writer.queue) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after 10s, want %d", len(s.writer.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFailedCommit fails the COMMIT of a group: every write of it gets the
// error, wrapping saga.ErrUnavailable, and none is visible.
func TestFailedCommit(t *testing.T) {
	t.Parallel()
	var fail sync.Mutex
	failing := false
	s := openTest(t, hooks{beforeCommit: func() error {
		fail.Lock()
		defer fail.Unlock()
		if failing {
			return fmt.Errorf("disk I/O error: %w", saga.ErrUnavailable)
		}
		return nil
	}})
	sg := create(t, s)
	fail.Lock()
	failing = true
	fail.Unlock()
	before, _ := s.GetSaga(t.Context(), sg.ID)
	_, err := s.Apply(t.Context(), saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Hour,
		Status: saga.SagaStatusExecuting, Events: []saga.Event{{Type: saga.EventSagaStarted}},
		Checkpoint: &saga.Checkpoint{StepIndex: 0, Context: json.RawMessage(`{}`)}})
	if !errors.Is(err, saga.ErrUnavailable) {
		t.Errorf("Apply with a failing commit: err = %v, want ErrUnavailable", err)
	}
	_, _, err = s.CreateSaga(t.Context(), saga.NewSaga{Saga: storetest.NewTestSaga("", 1)})
	if !errors.Is(err, saga.ErrUnavailable) {
		t.Errorf("CreateSaga with a failing commit: err = %v, want ErrUnavailable", err)
	}
	fail.Lock()
	failing = false
	fail.Unlock()
	after, _ := s.GetSaga(t.Context(), sg.ID)
	if after.Status != before.Status || after.EventSeq != before.EventSeq || !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("a failed commit changed the saga: %s seq %d -> %s seq %d", before.Status, before.EventSeq, after.Status, after.EventSeq)
	}
	if cp, _ := s.LatestCheckpoint(t.Context(), sg.ID); cp != nil {
		t.Errorf("a failed commit left a checkpoint")
	}
	if c, _ := s.CountRows(t.Context()); c.Sagas != 1 {
		t.Errorf("%d sagas after a failed create, want 1", c.Sagas)
	}
}

func TestExport(t *testing.T) {
	t.Parallel()
	s := openTest(t, hooks{})
	ctx := t.Context()
	var want []*saga.Saga
	for i := range 7 {
		sg := create(t, s)
		tr := saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Hour, Status: saga.SagaStatusExecuting,
			Steps:      []saga.StepUpdate{{Index: 0, Status: saga.StepStatusCompleted, Attempts: 1, Output: json.RawMessage(`{"ok": 1}`), Start: true, End: true}},
			Events:     []saga.Event{{Type: saga.EventStepCompleted, StepIndex: new(0), Data: json.RawMessage(`{"n": 1}`)}},
			Checkpoint: &saga.Checkpoint{StepIndex: 0, Context: json.RawMessage(`{"step-0": 1}`)}}
		if i%2 == 0 {
			tr.Compensations = []saga.CompensationUpdate{{StepIndex: 0, Status: saga.CompensationStatusCompleted, Attempts: 1, Start: true, End: true}}
		}
		if _, err := s.Apply(ctx, tr); err != nil {
			t.Fatal(err)
		}
		want = append(want, sg)
	}
	var (
		got    []saga.SagaRecord
		counts saga.TableCounts
	)
	err := s.Export(ctx, 3, func(page []saga.SagaRecord) error {
		if len(page) > 3 {
			t.Errorf("a page of %d records, want at most 3", len(page))
		}
		got = append(got, page...)
		return nil
	})
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("exported %d sagas, want %d", len(got), len(want))
	}
	for i, r := range got {
		counts.Add(r)
		stored, _ := s.GetSaga(ctx, want[i].ID)
		evs, _ := s.ListEvents(ctx, want[i].ID, 0, 0)
		cp, _ := s.LatestCheckpoint(ctx, want[i].ID)
		if !reflect.DeepEqual(r.Saga, stored) || !reflect.DeepEqual(r.Events, evs) ||
			len(r.Checkpoints) != 1 || !reflect.DeepEqual(r.Checkpoints[0], *cp) {
			t.Errorf("record %d differs from what the store answers:\n%+v\n%+v", i, r, stored)
		}
	}
	stored, err := s.CountRows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stored != counts || counts.Compensations != 4 || counts.Events != 14 {
		t.Errorf("rows counted from the records %+v, in the tables %+v", counts, stored)
	}
}

func TestMovedFileRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tracseq.db")
	s, err := Open(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	create(t, s)
	if err := s.RecordMove(t.Context(), "postgres://db.example/tracseq", 1); err != nil {
		t.Fatalf("RecordMove: %v", err)
	}
	s.Close()
	_, err = Open(t.Context(), Config{Path: path})
	if !errors.Is(err, ErrMoved) || !strings.Contains(err.Error(), "postgres://db.example/tracseq") || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("Open of a moved file: err = %v, want ErrMoved naming the target and the fix", err)
	}
}

func TestMigrationStatus(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "tracseq.db")
	states, err := MigrationStatus(t.Context(), path)
	if err != nil || len(states) == 0 || states[0].Applied {
		t.Fatalf("MigrationStatus of a new file = %+v, %v; want the migrations, none applied", states, err)
	}
	s, err := Open(t.Context(), Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	version := s.MigrationVersion()
	s.Close()
	states, err = MigrationStatus(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	last := states[len(states)-1]
	if !last.Applied || last.Version != version || last.Name != fmt.Sprintf("%05d_init.sql", 1) && len(states) == 1 {
		t.Errorf("MigrationStatus after Open = %+v, want every migration applied up to version %d", states, version)
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, want, err string
	}{
		{"sqlite://tracseq.db", "tracseq.db", ""},
		{"sqlite://data/tracseq.db", filepath.FromSlash("data/tracseq.db"), ""},
		{"sqlite:///var/lib/tracseq/tracseq.db", filepath.FromSlash("/var/lib/tracseq/tracseq.db"), ""},
		{"SQLITE:///tmp/a%20b.db", filepath.FromSlash("/tmp/a b.db"), ""},
		{"sqlite://", "", "must name a file"},
		{"sqlite:///var/lib/", "", "must name a file"},
		{"sqlite://tracseq.db?_pragma=synchronous(OFF)", "", "no parameters"},
		{"sqlite://user:pw@tracseq.db", "", "no user"},
		{"sqlite://host:5432/x.db", "", "no port"},
		{"sqlite://x.db#frag", "", "no fragment"},
		{"postgres://x/y", "", "not a sqlite:// URL"},
	} {
		got, err := ParseURL(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q) = %q, %v; want an error saying %q", tc.url, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseURL(%q) = %q, %v; want %q", tc.url, got, err, tc.want)
		}
		if back, err := ParseURL(URL(got)); err != nil || back != got {
			t.Errorf("ParseURL(URL(%q)) = %q, %v", got, back, err)
		}
	}
}

// TestRefusedData writes what the schema refuses for good: the error wraps
// saga.ErrRefused (the engine fails the step rather than retry), and
// nothing is written.
func TestRefusedData(t *testing.T) {
	t.Parallel()
	s := openTest(t, hooks{})
	sg := storetest.NewTestSaga("", 1)
	sg.Name = strings.Repeat("n", 256)
	_, _, err := s.CreateSaga(t.Context(), saga.NewSaga{Saga: sg})
	if !errors.Is(err, saga.ErrRefused) {
		t.Errorf("CreateSaga with a 256-character name: err = %v, want ErrRefused", err)
	}
	if c, _ := s.CountRows(t.Context()); c != (saga.TableCounts{}) {
		t.Errorf("rows after a refused create: %+v", c)
	}
}

// TestApplyRetried writes a transition twice with the same event ids, as
// the engine does after an error whose write had in fact been committed:
// the second answers as the first, and nothing is written twice.
func TestApplyRetried(t *testing.T) {
	t.Parallel()
	s := openTest(t, hooks{})
	sg := create(t, s)
	tr := saga.Transition{SagaID: sg.ID, Lease: sg.Lease(), LeaseFor: time.Hour, Status: saga.SagaStatusExecuting,
		Events: []saga.Event{{ID: saga.NewID(), Type: saga.EventSagaStarted}, {ID: saga.NewID(), Type: saga.EventStepStarted, StepIndex: new(0)}}}
	first, err := s.Apply(t.Context(), tr)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Apply(t.Context(), tr)
	if err != nil {
		t.Fatalf("the retried Apply: %v", err)
	}
	if again.EventSeq != first.EventSeq || first.EventSeq != 3 || !again.LeaseExpiresAt.Equal(first.LeaseExpiresAt) {
		t.Errorf("retried Apply answered %+v, the first %+v", again, first)
	}
	if evs, _ := s.ListEvents(t.Context(), sg.ID, 0, 0); len(evs) != 3 {
		t.Errorf("%d events after a retried Apply, want 3", len(evs))
	}
}
