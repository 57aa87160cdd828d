package dtm

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dtm-labs/dtm/client/dtmcli"
	"github.com/dtm-labs/dtmdriver"
	"github.com/dtm-labs/logger"
	"github.com/go-resty/resty/v2"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for dtmcli's barrier
)

// The service under test, started once for the package by TestMain.
var (
	// dtmServer is the DTM server URL a dtmcli user configures: the
	// service's /api/dtmsvr.
	dtmServer string
	// apiURL is the service's base URL.
	apiURL string
)

// apiToken is the service's API token; dtmcli sends it through a resty
// middleware, as docs/dtm.md shows.
const apiToken = "compat-token"

// TestMain builds tracseq-tx, starts it on a database of its own with
// API_TOKENS set, runs the tests and stops it.
func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compat/dtm:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "tracseq-compat-dtm-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "tracseq-tx")
	// Built in the service's module, with its own dependency versions.
	build := exec.Command("go", "build", "-o", bin, "./cmd/tracseq-tx")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		return 1, fmt.Errorf("build tracseq-tx: %v\n%s", err, out)
	}
	dbURL, drop, err := createDatabase("tracseq_compat_dtm")
	if err != nil {
		return 1, err
	}
	defer drop()

	cmd := exec.Command(bin, "serve")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + dbURL,
		"INSTANCE_ID=compat-dtm",
		"HTTP_ADDR=127.0.0.1:0",
		"API_TOKENS=" + apiToken,
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		"DB_MAX_CONNECTIONS=8",
		"DB_MIN_CONNECTIONS=1",
	}
	logPath := filepath.Join(dir, "service.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return 1, err
	}
	defer logFile.Close()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 1, err
	}
	cmd.Stdout = logFile
	if err := cmd.Start(); err != nil {
		return 1, fmt.Errorf("start tracseq-tx: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			var rec struct {
				Msg, Addr string
			}
			if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Msg, "listening on ") {
				addr <- rec.Addr
			}
		}
	}()
	select {
	case a := <-addr:
		apiURL = "http://" + a
	case <-time.After(60 * time.Second):
		return 1, fmt.Errorf("tracseq-tx did not listen within a minute; its log is %s", logPath)
	}
	dtmServer = apiURL + "/api/dtmsvr"

	// dtmcli as its users configure it: quiet logs, the API token on every
	// call it makes to the server.
	logger.InitLog("error")
	dtmcli.SetCurrentDBType(dtmcli.DBTypePostgres)
	dtmdriver.Middlewares.HTTP = append(dtmdriver.Middlewares.HTTP, func(_ *resty.Client, r *resty.Request) error {
		if strings.HasPrefix(r.URL, dtmServer) {
			r.SetHeader("Authorization", "Bearer "+apiToken)
		}
		return nil
	})

	code := m.Run()
	if code != 0 {
		if b, err := os.ReadFile(logPath); err == nil {
			fmt.Fprintf(os.Stderr, "service log:\n%s\n", b)
		}
	}
	return code, nil
}

// serverURL returns TEST_DATABASE_URL (set by scripts/test.sh) or the
// local server.
func serverURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://127.0.0.1:5432/postgres?sslmode=disable"
}

// createDatabase creates a fresh database named prefix plus a random
// suffix and returns its URL and a function that drops it.
func createDatabase(prefix string) (string, func(), error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, serverURL())
	if err != nil {
		return "", nil, fmt.Errorf("reach PostgreSQL at TEST_DATABASE_URL (run scripts/test.sh): %w", err)
	}
	defer admin.Close(ctx)
	name := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, serverURL()); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
		}
	}
	u, err := url.Parse(serverURL())
	if err != nil || u.Scheme == "" {
		return serverURL() + " dbname=" + name, drop, nil
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// openDB opens a database/sql handle (driver pgx) on a fresh database.
func openDB(t *testing.T) *sql.DB {
	t.Helper()
	dbURL, drop, err := createDatabase("tracseq_compat_busi")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		drop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		drop()
	})
	return db
}

// dtmQuery reads GET query?gid= with the API token.
func dtmQuery(t *testing.T, gid string) queryAnswer {
	t.Helper()
	var out queryAnswer
	getJSON(t, dtmServer+"/query?gid="+url.QueryEscape(gid), &out)
	if out.Transaction == nil {
		t.Fatalf("query %s: no transaction", gid)
	}
	return out
}

// getJSON GETs u with the API token and decodes a 200 answer into out.
func getJSON(t *testing.T, u string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", u, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v in %s", u, err, body)
	}
}

// queryAnswer is the answer of GET query, decoded as a DTM user would.
type queryAnswer struct {
	Transaction *struct {
		SagaID         string `json:"saga_id"`
		Gid            string `json:"gid"`
		TransType      string `json:"trans_type"`
		Status         string `json:"status"`
		RollbackReason string `json:"rollback_reason"`
		Concurrent     bool   `json:"concurrent"`
	} `json:"transaction"`
	Branches []struct {
		BranchID string `json:"branch_id"`
		Op       string `json:"op"`
		Status   string `json:"status"`
		URL      string `json:"url"`
		BinData  []byte `json:"bin_data"`
	} `json:"branches"`
}

// branchStatuses returns "branch_id op status" of each branch, in order.
func (q queryAnswer) branchStatuses() []string {
	var out []string
	for _, b := range q.Branches {
		out = append(out, b.BranchID+" "+b.Op+" "+b.Status)
	}
	return out
}
