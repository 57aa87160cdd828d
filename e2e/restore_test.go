package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// sagaState is what must survive a restore unchanged for a saga that had
// ended at the restore point.
type sagaState struct {
	Status    string
	EventSeq  int64
	UpdatedAt time.Time
}

// readStates reads every saga's state in one snapshot.
func readStates(ctx context.Context, tx pgx.Tx) (map[string]sagaState, error) {
	rows, err := tx.Query(ctx, `SELECT id::text, status::text, event_seq, updated_at FROM sagas`)
	if err != nil {
		return nil, err
	}
	out := make(map[string]sagaState)
	for rows.Next() {
		var id string
		var st sagaState
		if err := rows.Scan(&id, &st.Status, &st.EventSeq, &st.UpdatedAt); err != nil {
			return nil, err
		}
		out[id] = st
	}
	return out, rows.Err()
}

// TestPointInTimeRestore performs the backup and restore procedure of
// docs/operations.md on a server of its own with WAL archiving: sagas run,
// a base backup is taken, more sagas run, a named restore point is made
// while sagas are in flight, more run after it; then the base backup is
// restored to that point into a new data directory and the service is
// started on it. The restored database is exactly as it was at the point;
// every saga that had ended then is unchanged, every other one ends, and
// none is stuck.
func TestPointInTimeRestore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	root := pgtest.MkdirForPostgres(t)
	archive := filepath.Join(root, "archive")
	if err := os.Mkdir(archive, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		pgtest.Run(t, exec.Command("chown", "postgres:", archive))
	}
	primary := pgtest.NewCluster(t, root, "primary",
		"wal_level = replica\narchive_mode = on\narchive_command = 'test ! -f "+archive+"/%f && cp %p "+archive+"/%f'\n")
	admin := pgtest.WaitConnect(t, primary.URL("postgres"), 30*time.Second)
	if _, err := admin.Exec(ctx, `CREATE DATABASE tracseq`); err != nil {
		t.Fatal(err)
	}
	dbURL := primary.URL("tracseq")
	p := newStub(t, 20*time.Millisecond, 60*time.Millisecond)
	a := startInstance(t, instanceConfig{DatabaseURL: dbURL, InstanceID: "pitr-a", MaxConcurrent: 6})
	only := func(in *instance) func(int) []*instance { return func(int) []*instance { return []*instance{in} } }

	// Before the base backup: sagas that end.
	before := newSubmissions("pitr-before", 20, false)
	submitAll(p, before, only(a))
	idsBefore, plans := accepted(t, before)
	waitEnded(t, a.client, idsBefore, 60*time.Second)

	// The base backup, into what becomes the restored data directory.
	restoredDir := filepath.Join(root, "restored")
	pgtest.Run(t, pgtest.AsPostgres(t, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port),
		"-U", pgtest.ClusterUser, "-D", restoredDir, "-c", "fast"))

	// More sagas; the restore point is made while some are in flight. The
	// instance is frozen meanwhile so that nothing commits between the
	// snapshot read here and the restore point's WAL record.
	during := newSubmissions("pitr-during", 40, true)
	submitted := make(chan struct{})
	go func() {
		defer close(submitted)
		submitAll(p, during, only(a))
	}()
	<-p.afterCalls(expectedCalls(before) + expectedCalls(during)/3)
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, admin, "tracseq-transaction-service pitr-a")
	at := snapshotAndRestorePoint(t, dbURL, "pitr")
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	unfinished := 0
	for _, st := range at {
		if !saga.SagaStatus(st.Status).Terminal() {
			unfinished++
		}
	}
	t.Logf("restore point: %d sagas, %d of them not ended", len(at), unfinished)
	if unfinished == 0 {
		t.Fatal("no saga was in flight at the restore point: the test tested nothing")
	}

	// After the point: the rest ends, and more sagas run.
	<-submitted
	idsDuring, plansDuring := accepted(t, during)
	waitEnded(t, a.client, idsDuring, 60*time.Second)
	after := newSubmissions("pitr-after", 10, false)
	submitAll(p, after, only(a))
	idsAfter, _ := accepted(t, after)
	waitEnded(t, a.client, idsAfter, 60*time.Second)
	a.terminate(t)
	var wal string
	if err := admin.QueryRow(ctx, `SELECT pg_walfile_name(pg_switch_wal())`).Scan(&wal); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "WAL archived", func() bool {
		_, err := os.Stat(filepath.Join(archive, wal))
		return err == nil
	})
	primary.Stop()

	// The restore: the base backup, the archived WAL, up to the point.
	if err := os.WriteFile(filepath.Join(restoredDir, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		pgtest.Run(t, exec.Command("chown", "postgres:", filepath.Join(restoredDir, "recovery.signal")))
	}
	restored := pgtest.ClusterAt(t, restoredDir, "archive_mode = off\nrestore_command = 'cp "+archive+"/%f %p'\n"+
		"recovery_target_name = 'pitr'\nrecovery_target_action = 'promote'\n")
	rconn := pgtest.WaitConnect(t, restored.URL("tracseq"), 60*time.Second)
	waitFor(t, "recovery to end", func() bool {
		var inRecovery bool
		err := rconn.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery)
		return err == nil && !inRecovery
	})
	rtx, err := rconn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readStates(ctx, rtx)
	_ = rtx.Rollback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(at) {
		t.Fatalf("the restored database holds %d sagas, the restore point %d\n%s", len(got), len(at), restored.Log())
	}
	for id, want := range at {
		if g, ok := got[id]; !ok || g.Status != want.Status || g.EventSeq != want.EventSeq || !g.UpdatedAt.Equal(want.UpdatedAt) {
			t.Errorf("saga %s restored as %+v, was %+v at the restore point", id, g, want)
		}
	}

	// The service on the restored database: the sagas in flight at the
	// point, leased to pitr-a in the past, end; the others stay as they were.
	b := startInstance(t, instanceConfig{DatabaseURL: restored.URL("tracseq"), InstanceID: "pitr-b"})
	var inFlight []string
	for id, st := range at {
		if !saga.SagaStatus(st.Status).Terminal() {
			inFlight = append(inFlight, id)
		}
	}
	ids := make([]string, 0, len(at))
	for id := range at {
		ids = append(ids, id)
	}
	waitEnded(t, b.client, ids, 90*time.Second)
	for id, pl := range plansDuring {
		if _, ok := at[id]; ok {
			plans[id] = pl
		}
	}
	details := fetchDetails(t, b.client, ids)
	for id, want := range at {
		d := details[id]
		switch {
		case saga.SagaStatus(want.Status).Terminal():
			if string(d.saga.Status) != want.Status || int64(len(d.events)) != want.EventSeq {
				t.Errorf("saga %s ended before the restore point changed: %s with %d events, was %s with %d",
					id, d.saga.Status, len(d.events), want.Status, want.EventSeq)
			}
		case plans[id].want() != d.saga.Status:
			t.Errorf("saga %s in flight at the restore point ended %s, want %s", id, d.saga.Status, plans[id].want())
		}
	}
	for _, id := range idsAfter {
		if _, ok := details[id]; ok {
			t.Errorf("saga %s submitted after the restore point is in the restored database", id)
		}
	}
	n := 0
	for _, id := range inFlight {
		if hasInstance(details[id].events, "pitr-b") {
			n++
		}
	}
	t.Logf("after the restore: %d sagas in flight at the point continued by pitr-b, %d unchanged", n, len(at)-len(inFlight))
	if n != len(inFlight) {
		t.Errorf("%d of %d sagas in flight at the restore point were continued by the restored service", n, len(inFlight))
	}
}

// hasInstance reports whether an event of the trail was written by instance.
func hasInstance(evs []httpapi.EventJSON, instance string) bool {
	for _, e := range evs {
		if e.InstanceID == instance {
			return true
		}
	}
	return false
}

// snapshotAndRestorePoint reads the sagas of dbURL and creates the named
// restore point in one transaction, and returns what it read.
func snapshotAndRestorePoint(t *testing.T, dbURL, name string) map[string]sagaState {
	t.Helper()
	ctx := t.Context()
	conn := pgtest.WaitConnect(t, dbURL, 10*time.Second)
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	states, err := readStates(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_create_restore_point($1)`, name); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return states
}

// waitIdle waits until no backend of application name app is running a
// statement (a frozen instance's last commits have landed).
func waitIdle(t *testing.T, conn *pgx.Conn, app string) {
	t.Helper()
	waitFor(t, "the frozen instance's statements to finish", func() bool {
		var n int
		err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = 'active'`, app).Scan(&n)
		return err == nil && n == 0
	})
}

// waitFor polls cond until it holds, failing the test after 60 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
