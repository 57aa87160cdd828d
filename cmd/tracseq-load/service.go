package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tracseq/transaction-service/httpapi"
)

// Starting and stopping the service.
const (
	// servicePackage is what --start builds when --bin is not given.
	servicePackage = "github.com/tracseq/transaction-service/cmd/tracseq-tx"
	// readyTimeout bounds the wait for the started service to be ready.
	readyTimeout = 60 * time.Second
	// readyPoll is how often readiness is asked meanwhile.
	readyPoll = 100 * time.Millisecond
	// stopTimeout is how long the service may take to stop after SIGTERM
	// before it is killed; its own shutdown budget is 25s.
	stopTimeout = 30 * time.Second
	// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; 100 on
	// every Linux architecture Go supports.
	clockTicks = 100
)

// service is a tracseq-tx child process.
type service struct {
	cmd    *exec.Cmd
	url    string
	tmpDir string // the build directory, removed on stop
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// buildService builds the service into a temporary directory with the go
// command and returns the binary's path and the directory.
func buildService(ctx context.Context, stderr io.Writer) (bin, dir string, err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", "", fmt.Errorf("build tracseq-tx: the go command is not on PATH (or pass --bin): %w", err)
	}
	dir, err = os.MkdirTemp("", "tracseq-load-")
	if err != nil {
		return "", "", fmt.Errorf("build tracseq-tx: %w", err)
	}
	bin = filepath.Join(dir, "tracseq-tx")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, servicePackage)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		_ = os.RemoveAll(dir)
		return "", "", fmt.Errorf("build tracseq-tx (run from the module's directory, or pass --bin): %w\n%s", err, strings.TrimSpace(out.String()))
	}
	fmt.Fprintf(stderr, "built %s\n", bin)
	return bin, dir, nil
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return addr, nil
}

// startService runs bin (building it when empty) with the environment of
// this process plus DATABASE_URL, HTTP_ADDR on a free loopback port and
// LOG_LEVEL=warn, and waits until it answers /health/ready. Its output goes
// to stderr.
func startService(ctx context.Context, bin, databaseURL string, stderr io.Writer) (*service, error) {
	s := &service{exited: make(chan struct{})}
	if bin == "" {
		b, dir, err := buildService(ctx, stderr)
		if err != nil {
			return nil, err
		}
		bin, s.tmpDir = b, dir
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		s.removeTmp()
		return nil, err
	}
	s.url = "http://" + addr
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = append(os.Environ(),
		"DATABASE_URL="+databaseURL,
		"HTTP_ADDR="+addr,
		"LOG_LEVEL=warn",
	)
	s.cmd.Stdout = stderr
	s.cmd.Stderr = stderr
	s.cmd.SysProcAttr = childProcAttr()
	if err := s.cmd.Start(); err != nil {
		s.removeTmp()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		_ = s.stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls /health/ready until the service is ready, exits, or
// readyTimeout passes.
func (s *service) waitReady(ctx context.Context) error {
	c := &httpapi.Client{BaseURL: s.url}
	deadline := time.Now().Add(readyTimeout)
	var last string
	for {
		callCtx, cancel := context.WithTimeout(ctx, time.Second)
		r, status, err := c.Ready(callCtx)
		cancel()
		switch {
		case err == nil && status == 200:
			return nil
		case err != nil:
			last = err.Error()
		case r != nil:
			last = fmt.Sprintf("HTTP %d: %s %s", status, r.Status, r.Error)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tracseq-tx at %s not ready after %s: %s", s.url, readyTimeout, last)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("tracseq-tx exited before it was ready: %v", s.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(readyPoll):
		}
	}
}

// pid is the service's process id.
func (s *service) pid() int { return s.cmd.Process.Pid }

// stop asks the service to stop (SIGTERM), kills it after stopTimeout, and
// removes the binary it built. A service that stopped on its own is
// reported.
func (s *service) stop() error {
	defer s.removeTmp()
	select {
	case <-s.exited:
		return fmt.Errorf("tracseq-tx had exited: %v", s.err)
	default:
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop tracseq-tx: %w", err)
	}
	select {
	case <-s.exited:
		var ee *exec.ExitError
		if s.err != nil && !errors.As(s.err, &ee) {
			return fmt.Errorf("stop tracseq-tx: %w", s.err)
		}
		if s.err != nil {
			return fmt.Errorf("tracseq-tx stopped with %v", s.err)
		}
		return nil
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("tracseq-tx did not stop within %s of SIGTERM: killed", stopTimeout)
	}
}

func (s *service) removeTmp() {
	if s.tmpDir != "" {
		_ = os.RemoveAll(s.tmpDir)
		s.tmpDir = ""
	}
}

// procUsage is a process's CPU time and peak resident memory.
type procUsage struct {
	CPU     time.Duration // user + system
	PeakRSS int64         // VmHWM in bytes
}

// readProcUsage reads /proc/<pid>/stat and /proc/<pid>/status.
func readProcUsage(pid int) (procUsage, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procUsage{}, fmt.Errorf("read process stat: %w", err)
	}
	cpu, err := parseProcStatCPU(stat)
	if err != nil {
		return procUsage{}, err
	}
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return procUsage{}, fmt.Errorf("read process status: %w", err)
	}
	rss, err := parseVmHWM(status)
	if err != nil {
		return procUsage{}, err
	}
	return procUsage{CPU: cpu, PeakRSS: rss}, nil
}

// parseProcStatCPU returns utime + stime of a /proc/<pid>/stat line. The
// command name (field 2) may hold spaces and parentheses, so fields are
// counted after its last ')'.
func parseProcStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("parse process stat: no command name")
	}
	// After ")": state(3) ppid(4) … utime(14) stime(15).
	f := strings.Fields(string(stat[i+1:]))
	const utimeAt, stimeAt = 14 - 3, 15 - 3
	if len(f) <= stimeAt {
		return 0, fmt.Errorf("parse process stat: %d fields after the command name", len(f))
	}
	ut, err1 := strconv.ParseInt(f[utimeAt], 10, 64)
	st, err2 := strconv.ParseInt(f[stimeAt], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse process stat: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// parseVmHWM returns the VmHWM line of /proc/<pid>/status in bytes.
func parseVmHWM(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse process status: VmHWM %q", rest)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse process status: VmHWM: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("parse process status: no VmHWM line")
}
