package pgtest

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The other servers scripts/test.sh gives a run.
const (
	envReplicaURL    = "TEST_REPLICA_URL"    // a streaming replica of the test server
	envReplicaPGDATA = "TEST_REPLICA_PGDATA" // its data directory
	envPgBouncerURL  = "TEST_PGBOUNCER_URL"  // PgBouncer in transaction pooling mode
	envBinDir        = "TEST_PG_BINDIR"      // initdb, pg_ctl, pg_basebackup
)

// required returns the variable's value, failing the test when it is unset.
func required(tb testing.TB, name string) string {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		tb.Fatalf("pgtest: %s is not set: run the tests with scripts/test.sh, which starts it", name)
	}
	return v
}

// onServer returns dbURL's database on the server of serverURL.
func onServer(tb testing.TB, serverURL, dbURL string) string {
	tb.Helper()
	d, err := url.Parse(dbURL)
	if err != nil || d.Scheme == "" {
		tb.Fatalf("pgtest: %q is not a URL", dbURL)
	}
	s, err := url.Parse(serverURL)
	if err != nil || s.Scheme == "" {
		tb.Fatalf("pgtest: server %q is not a URL", serverURL)
	}
	s.Path = d.Path
	return s.String()
}

// ReplicaURL returns the URL of dbURL's database on the streaming replica
// of the test server (TEST_REPLICA_URL).
func ReplicaURL(tb testing.TB, dbURL string) string {
	tb.Helper()
	return onServer(tb, required(tb, envReplicaURL), dbURL)
}

// PgBouncerURL returns the URL of dbURL's database through the test
// PgBouncer (TEST_PGBOUNCER_URL), which pools transactions.
func PgBouncerURL(tb testing.TB, dbURL string) string {
	tb.Helper()
	return onServer(tb, required(tb, envPgBouncerURL), dbURL)
}

// BinDir returns the directory of the server's programs.
func BinDir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv(envBinDir); d != "" {
		return d
	}
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		tb.Fatalf("pgtest: %s is not set and pg_config fails (%v): run the tests with scripts/test.sh", envBinDir, err)
	}
	return strings.TrimSpace(string(out))
}

// AsPostgres returns a command running the server program name (in
// BinDir) as the postgres OS user when the test runs as root: PostgreSQL
// refuses to run as root.
func AsPostgres(tb testing.TB, name string, args ...string) *exec.Cmd {
	tb.Helper()
	prog := filepath.Join(BinDir(tb), name)
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", prog}, args...)...)
	}
	return exec.Command(prog, args...)
}

// Run runs cmd and fails the test with its output when it fails.
func Run(tb testing.TB, cmd *exec.Cmd) {
	tb.Helper()
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("pgtest: %s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

// StopReplica stops the test replica (pg_ctl stop -m fast).
func StopReplica(tb testing.TB) {
	tb.Helper()
	Run(tb, AsPostgres(tb, "pg_ctl", "-D", required(tb, envReplicaPGDATA), "-m", "fast", "-w", "stop"))
}

// StartReplica starts the test replica again and waits until it accepts
// connections.
func StartReplica(tb testing.TB) {
	tb.Helper()
	dir := required(tb, envReplicaPGDATA)
	Run(tb, AsPostgres(tb, "pg_ctl", "-D", dir, "-l", filepath.Join(filepath.Dir(dir), "replica.log"), "-w", "-t", "60", "start"))
}

// ReplicaLog returns the end of the test replica's server log, for failure
// messages.
func ReplicaLog(tb testing.TB) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(filepath.Dir(required(tb, envReplicaPGDATA)), "replica.log"))
	if err != nil {
		return "(no replica log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// MkdirForPostgres creates a temporary directory the postgres OS user
// owns (removed when the test ends), for data directories and archives.
func MkdirForPostgres(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "tracseq-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("pgtest: no postgres OS user to run PostgreSQL as: %v", err)
		}
		Run(tb, exec.Command("chown", u.Username+":", dir))
	}
	return dir
}

// WaitConnect connects to url, trying until it answers or timeout passes.
func WaitConnect(tb testing.TB, url string, timeout time.Duration) *pgx.Conn {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, url)
		cancel()
		if err == nil {
			tb.Cleanup(func() { _ = conn.Close(context.Background()) })
			return conn
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: %s does not answer: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
