package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracseq/transaction-service/client"
	"github.com/tracseq/transaction-service/httpapi"
)

// binPath is the tracseq-tx binary that TestMain builds for the package.
// It is set once, before any test runs, and only read afterwards.
var binPath string

// TestMain builds the service binary once for every test of the package.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tracseq-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: make temporary directory:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "tracseq-tx")
	args := []string{"build", "-o", binPath}
	if raceBuild {
		args = append(args, "-race")
		if gcflags := os.Getenv("TRACSEQ_RACE_GCFLAGS"); gcflags != "" {
			args = append(args, "-gcflags="+gcflags) // as scripts/test.sh builds the tests
		}
	}
	build := exec.Command("go", append(args, "./cmd/tracseq-tx")...)
	build.Dir = ".." // the module root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build tracseq-tx: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	removePGTemplate()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Budgets of the helpers that wait for a child process.
const (
	// startTimeout bounds the wait for a started instance to listen.
	startTimeout = 30 * time.Second
	// exitTimeout bounds the wait for a signalled instance to exit. The
	// service's own shutdown budget is 25 s (API 10 s, engine 15 s).
	exitTimeout = 40 * time.Second
	// leaseSecondsDefault is the LEASE_SECONDS of the test instances: short,
	// so that a dead instance's sagas are taken over quickly.
	leaseSecondsDefault = 2
	// A failed test shows at most logLinesMax lines of each part of an
	// instance's log (logTail), each clipped to logLineMax bytes.
	logLinesMax = 40
	logLineMax  = 400
)

// instanceConfig is the environment of one service instance. Zero fields
// take the test defaults of startInstance.
type instanceConfig struct {
	DatabaseURL   string
	InstanceID    string
	LeaseSeconds  int // LEASE_SECONDS, default leaseSecondsDefault
	MaxConcurrent int // MAX_CONCURRENT_SAGAS, default the service's
	APITokens     string
	LogLevel      string   // default info
	Env           []string // more variables, NAME=value, after the defaults
}

// instance is one running tracseq-tx process.
type instance struct {
	id      string
	cmd     *exec.Cmd
	url     string
	client  *client.Client
	http    *http.Client // the client's: for requests the tests make by hand
	logPath string

	done     chan struct{} // closed once the process has exited and been reaped
	waitErr  error         // cmd.Wait's answer, read after done
	exitedAt time.Time
}

// startInstance starts the binary with cfg, waits until its API answers
// and its persistence is durable, and stops it (SIGKILL) when the test ends
// if the test has not.
func startInstance(t *testing.T, cfg instanceConfig) *instance {
	t.Helper()
	if cfg.DatabaseURL == "" || cfg.InstanceID == "" {
		t.Fatal("startInstance: DatabaseURL and InstanceID are required")
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + cfg.DatabaseURL,
		"INSTANCE_ID=" + cfg.InstanceID,
		"HTTP_ADDR=127.0.0.1:0", // the address is read back from the log
		"LEASE_SECONDS=" + strconv.Itoa(cmp.Or(cfg.LeaseSeconds, leaseSecondsDefault)),
		"LOG_FORMAT=json",
		"LOG_LEVEL=" + cmp.Or(cfg.LogLevel, "info"),
		// Several instances and other test packages share one server.
		"DB_MAX_CONNECTIONS=8",
		"DB_MIN_CONNECTIONS=1",
		"DB_CONNECTION_TIMEOUT_SECONDS=10",
		"METRICS_GAUGE_TTL_MS=" + gaugeTTLMs,
	}
	if cfg.MaxConcurrent > 0 {
		env = append(env, "MAX_CONCURRENT_SAGAS="+strconv.Itoa(cfg.MaxConcurrent))
	}
	if cfg.APITokens != "" {
		env = append(env, "API_TOKENS="+cfg.APITokens)
	}
	env = append(env, cfg.Env...)

	logPath := filepath.Join(t.TempDir(), cfg.InstanceID+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create log file: %v", err)
	}
	cmd := exec.Command(binPath, "serve")
	cmd.Env = env
	cmd.Stdout = logFile
	cmd.SysProcAttr = childProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("stderr pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binPath, err)
	}
	in := &instance{id: cfg.InstanceID, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	listening := make(chan string, 1)

	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logFile.Write(line)
			logFile.Write([]byte{'\n'})
			if addr, ok := listeningAddr(line); ok {
				select {
				case listening <- addr:
				default:
				}
			}
		}
		_, _ = io.Copy(logFile, stderr) // a line too long for the scanner
	}()
	go func() {
		<-readDone // Wait must not run before the pipe is drained
		err := cmd.Wait()
		logFile.Close()
		in.waitErr = err
		in.exitedAt = time.Now()
		close(in.done)
	}()
	t.Cleanup(func() {
		in.kill(t)
		if strings.Contains(in.logText(), "WARNING: DATA RACE") {
			t.Errorf("instance %s (built with -race) reported a data race", in.id)
		}
		if t.Failed() {
			t.Logf("log of instance %s:\n%s", in.id, in.logTail())
		}
	})

	select {
	case addr := <-listening:
		in.url = "http://" + addr
	case <-in.done:
		t.Fatalf("instance %s exited before listening: %v\n%s", in.id, in.waitErr, in.logTail())
	case <-time.After(startTimeout):
		t.Fatalf("instance %s did not listen within %v\n%s", in.id, startTimeout, in.logTail())
	}
	entry, _, _ := strings.Cut(cfg.APITokens, ",")
	var token string
	if entry != "" {
		if _, token, err = httpapi.ParseToken(entry, 1); err != nil {
			t.Fatal(err)
		}
	}
	// A transport of its own, so that terminate can close its idle
	// connections.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: http.DefaultTransport.(*http.Transport).Clone()}
	t.Cleanup(hc.CloseIdleConnections)
	in.http = hc
	in.client, err = client.New(in.url, client.WithToken(token), client.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}

	// A service that cannot reach its database starts in memory mode; these
	// tests are about durability, so that is a failure.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ready, status, err := in.client.Ready(ctx)
	if err != nil || status != http.StatusOK || !ready.Durable {
		t.Fatalf("instance %s not ready and durable: %+v (HTTP %d, %v)\n%s", in.id, ready, status, err, in.logTail())
	}
	return in
}

// listeningAddr finds the service's "listening on" log line (JSON) and
// returns its address.
func listeningAddr(line []byte) (string, bool) {
	if !bytes.Contains(line, []byte(`"listening on `)) {
		return "", false
	}
	var rec struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal(line, &rec) != nil || !strings.HasPrefix(rec.Msg, "listening on ") || rec.Addr == "" {
		return "", false
	}
	return rec.Addr, true
}

// running reports whether the process has not exited.
func (in *instance) running() bool {
	select {
	case <-in.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (in *instance) kill(t *testing.T) {
	t.Helper()
	if !in.running() {
		return
	}
	if err := in.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGKILL instance %s: %v", in.id, err)
	}
	select {
	case <-in.done:
	case <-time.After(exitTimeout):
		t.Errorf("instance %s still running %v after SIGKILL", in.id, exitTimeout)
	}
}

// terminate sends SIGTERM and returns at once. It first closes the test
// client's idle connections to the instance: a connection the client
// opened but never used would hold the service's HTTP shutdown for 5 s
// (net/http counts a new connection as active until then), while its
// engine keeps running sagas.
func (in *instance) terminate(t *testing.T) {
	t.Helper()
	in.client.CloseIdleConnections()
	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM instance %s: %v", in.id, err)
	}
}

// waitExit waits up to d for the process to exit and returns its exit
// code; ok is false when it was still running.
func (in *instance) waitExit(d time.Duration) (code int, ok bool) {
	select {
	case <-in.done:
		return in.cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// logText returns the instance's whole log so far.
func (in *instance) logText() string {
	b, err := os.ReadFile(in.logPath)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	return string(b)
}

// logTail returns what a failed test shows of the instance's log: its
// warnings, errors and other output that is not a JSON log record (a
// panic, a race report), then its last lines.
func (in *instance) logTail() string {
	lines := strings.Split(strings.TrimRight(in.logText(), "\n"), "\n")
	clip := func(l string) string {
		if len(l) > logLineMax {
			return l[:logLineMax] + "…"
		}
		return l
	}
	var b strings.Builder
	b.WriteString("  warnings, errors and other output:\n")
	shown := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "{") && !strings.Contains(l, `"level":"WARN"`) && !strings.Contains(l, `"level":"ERROR"`) {
			continue
		}
		if shown++; shown > logLinesMax {
			b.WriteString("  …\n")
			break
		}
		b.WriteString("  " + clip(l) + "\n")
	}
	b.WriteString("  last lines:\n")
	for _, l := range lines[max(0, len(lines)-logLinesMax):] {
		b.WriteString("  " + clip(l) + "\n")
	}
	return b.String()
}
