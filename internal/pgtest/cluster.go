package pgtest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Cluster is a PostgreSQL server of a test's own: a data directory made by
// initdb (or restored from a backup) and started with pg_ctl as the
// postgres OS user, on a free port of 127.0.0.1, with trust
// authentication for the superuser ClusterUser. It is stopped when the test
// ends.
type Cluster struct {
	Dir  string // the data directory
	Port int
	tb   testing.TB
}

// ClusterUser is the superuser of the clusters this package makes.
const ClusterUser = "tracseq"

// NewCluster runs initdb into a new directory of parent (made by
// MkdirForPostgres), appends conf to its postgresql.conf and starts it.
func NewCluster(tb testing.TB, parent, name, conf string) *Cluster {
	tb.Helper()
	dir := filepath.Join(parent, name)
	Run(tb, AsPostgres(tb, "initdb", "-D", dir, "-A", "trust", "-U", ClusterUser, "-N", "-E", "UTF8", "--locale=C"))
	c := &Cluster{Dir: dir, tb: tb}
	c.Configure(conf)
	c.Start()
	return c
}

// ClusterAt is a cluster on an existing data directory (a restored base
// backup), configured with conf and started.
func ClusterAt(tb testing.TB, dir, conf string) *Cluster {
	tb.Helper()
	c := &Cluster{Dir: dir, tb: tb}
	c.Configure(conf)
	c.Start()
	return c
}

// Configure picks a free port and appends it and conf to postgresql.conf.
func (c *Cluster) Configure(conf string) {
	c.tb.Helper()
	c.Port = freePort(c.tb)
	settings := fmt.Sprintf("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\nmax_connections = 40\nshared_buffers = 32MB\n%s\n",
		c.Port, filepath.Dir(c.Dir), conf)
	f, err := os.OpenFile(filepath.Join(c.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.tb.Fatalf("pgtest: configure %s: %v", c.Dir, err)
	}
	defer f.Close()
	if _, err := f.WriteString(settings); err != nil {
		c.tb.Fatalf("pgtest: configure %s: %v", c.Dir, err)
	}
}

// Start starts the server and waits until it accepts connections (for a
// restored backup: until recovery lets it); Stop is registered for the
// end of the test.
func (c *Cluster) Start() {
	c.tb.Helper()
	Run(c.tb, AsPostgres(c.tb, "pg_ctl", "-D", c.Dir, "-l", c.Dir+".log", "-w", "-t", "120", "start"))
	c.tb.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(c.Dir, "postmaster.pid")); err == nil {
			_ = AsPostgres(c.tb, "pg_ctl", "-D", c.Dir, "-m", "immediate", "-w", "stop").Run()
		}
	})
}

// Stop stops the server (fast shutdown).
func (c *Cluster) Stop() {
	c.tb.Helper()
	Run(c.tb, AsPostgres(c.tb, "pg_ctl", "-D", c.Dir, "-m", "fast", "-w", "stop"))
}

// URL returns the URL of database db on the cluster.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", ClusterUser, c.Port, db)
}

// Log returns the end of the server's log, for failure messages.
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(c.Dir + ".log")
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// freePort returns a TCP port of 127.0.0.1 that nothing listens on now.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("pgtest: find a free port: %v", err)
	}
	defer ln.Close()
	// Give the port a moment to be free for the server's bind.
	time.Sleep(10 * time.Millisecond)
	return ln.Addr().(*net.TCPAddr).Port
}
