package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgCluster is a PostgreSQL cluster a test made for itself (initdb into a
// temporary directory, on a free port), so that it can stop, restart and
// crash it. It is stopped and removed when the test ends.
//
// PostgreSQL refuses to run as root: a test running as root runs initdb,
// pg_ctl and the server as the postgres OS user (runuser or setpriv).
type pgCluster struct {
	dir     string // owns everything: data/, the socket, the server log
	data    string
	port    int
	bin     string   // the directory of initdb and pg_ctl
	runAs   []string // the command prefix that runs a program as the postgres user; nil: as ourselves
	logPath string
}

// pgClusterUser is the superuser initdb creates, and the OS user that runs
// the server when the test runs as root.
const pgClusterUser = "postgres"

// newPGCluster creates and starts a cluster.
func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	bin, err := pgBinDir()
	if err != nil {
		t.Fatalf("PostgreSQL server programs: %v (scripts/test.sh installs them)", err)
	}
	dir, err := os.MkdirTemp("", "tracseq-pgcluster-")
	if err != nil {
		t.Fatal(err)
	}
	c := &pgCluster{dir: dir, data: filepath.Join(dir, "data"), bin: bin, logPath: filepath.Join(dir, "server.log")}
	t.Cleanup(func() {
		// Whatever state it is in: an immediate stop, then the files.
		_ = c.ctl("stop", "-m", "immediate")
		if t.Failed() {
			if b, err := os.ReadFile(c.logPath); err == nil {
				t.Logf("server log of the test's PostgreSQL cluster (last lines):\n%s", lastLines(string(b), 30))
			}
		}
		os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 {
		if c.runAs, err = runAsPostgres(dir); err != nil {
			t.Fatalf("run PostgreSQL as root: %v", err)
		}
	}
	if c.port, err = freePort(); err != nil {
		t.Fatal(err)
	}
	tmpl, err := pgTemplate(bin, c.runAs)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.run("cp", "-a", tmpl, c.data); err != nil {
		t.Fatalf("copy the template cluster: %v\n%s", err, out)
	}
	// Settings for a throwaway cluster: its own port and socket directory,
	// no fsync (an immediate stop is a crash of the server, not of the
	// machine: what was written is still there).
	conf := fmt.Sprintf("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"+
		"fsync = off\nfull_page_writes = off\nshared_buffers = 16MB\nmax_connections = 60\n", c.port, dir)
	f, err := os.OpenFile(filepath.Join(c.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("configure the cluster: %v", err)
	}
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	return c
}

// The template cluster: initdb runs once per test binary (it takes
// seconds), each cluster is a copy of it. removePGTemplate removes it.
var (
	templateOnce sync.Once
	templateDir  string // holds data/, the cluster initdb made
	templateErr  error
)

// pgTemplate returns the data directory of the template cluster, made
// with initdb on first use.
func pgTemplate(bin string, runAs []string) (string, error) {
	templateOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tracseq-pgtemplate-")
		if err != nil {
			templateErr = err
			return
		}
		templateDir = dir
		if runAs != nil {
			if _, templateErr = runAsPostgres(dir); templateErr != nil {
				return
			}
		}
		tc := &pgCluster{dir: dir, runAs: runAs}
		out, err := tc.run(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", pgClusterUser,
			"--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
		if err != nil {
			templateErr = fmt.Errorf("initdb: %w\n%s", err, out)
		}
	})
	return filepath.Join(templateDir, "data"), templateErr
}

// removePGTemplate removes the template cluster, if one was made.
func removePGTemplate() {
	if templateDir != "" {
		os.RemoveAll(templateDir)
	}
}

// pgBinDir finds the directory of initdb and pg_ctl: pg_config's, the
// newest Debian cluster's, or the one on PATH.
func pgBinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("initdb not found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH)")
}

// pgVersion reads the major version in /usr/lib/postgresql/<v>/bin.
func pgVersion(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

// runAsPostgres gives dir to the postgres OS user and returns the command
// prefix that runs a program as that user.
func runAsPostgres(dir string) ([]string, error) {
	u, err := user.Lookup(pgClusterUser)
	if err != nil {
		return nil, fmt.Errorf("no %s OS user: %w", pgClusterUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	if p, err := exec.LookPath("runuser"); err == nil {
		return []string{p, "-u", pgClusterUser, "--"}, nil
	}
	if p, err := exec.LookPath("setpriv"); err == nil {
		return []string{p, "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--"}, nil
	}
	return nil, fmt.Errorf("neither runuser nor setpriv is installed")
}

// freePort returns a TCP port of 127.0.0.1 free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// run runs a server program (as the postgres user when root) and returns
// its output.
func (c *pgCluster) run(prog string, args ...string) ([]byte, error) {
	argv := append(slices.Clone(c.runAs), prog)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

// ctl runs pg_ctl on the cluster, waiting for the action to complete.
func (c *pgCluster) ctl(args ...string) error {
	full := append([]string{"-D", c.data, "-l", c.logPath, "-w", "-t", "60"}, args...)
	if out, err := c.run(filepath.Join(c.bin, "pg_ctl"), full...); err != nil {
		return fmt.Errorf("pg_ctl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *pgCluster) start() error { return c.ctl("start") }

// stop stops the server: mode "fast" (sessions are ended, a clean
// shutdown) or "immediate" (the server processes are killed: a crash).
func (c *pgCluster) stop(mode string) error { return c.ctl("stop", "-m", mode) }

// restart stops the server in mode and starts it again.
func (c *pgCluster) restart(mode string) error { return c.ctl("restart", "-m", mode) }

// url returns the connection URL of database db.
func (c *pgCluster) url(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", pgClusterUser, c.port, db)
}

// createDatabase creates a database and returns its URL.
func (c *pgCluster) createDatabase(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.url("postgres"))
	if err != nil {
		t.Fatalf("connect to the test's cluster: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	return c.url(name)
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
