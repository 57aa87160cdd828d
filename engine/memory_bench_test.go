package engine_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/participant"
)

// inFlightSagas is how many sagas BenchmarkInFlightMemory keeps in flight
// (INFLIGHT_SAGAS overrides it).
const inFlightSagas = 10_000

// slowParticipantEnv, when set, makes the test binary a slow participant
// instead (see TestMain and runSlowParticipant).
const slowParticipantEnv = "TRACSEQ_SLOW_PARTICIPANT"

func TestMain(m *testing.M) {
	if os.Getenv(slowParticipantEnv) != "" {
		runSlowParticipant()
		return
	}
	os.Exit(m.Run())
}

// runSlowParticipant serves participant calls that are answered only when
// a line arrives on stdin (or stdin ends): a participant that takes its
// time, in a process of its own so that its connections are not counted in
// the memory measured. It prints its address, then answers GET /active with
// the calls it holds.
func runSlowParticipant() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var (
		mu      sync.Mutex
		release = make(chan struct{})
		active  atomic.Int64
	)
	go func() {
		in := bufio.NewReader(os.Stdin)
		for {
			_, err := in.ReadString('\n')
			mu.Lock()
			close(release)
			release = make(chan struct{})
			mu.Unlock()
			if err != nil {
				os.Exit(0)
			}
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /active", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, active.Load())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		wait := release
		mu.Unlock()
		active.Add(1)
		select {
		case <-wait:
		case <-r.Context().Done():
		}
		active.Add(-1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	fmt.Println(ln.Addr().String())
	_ = http.Serve(ln, mux)
}

// slowParticipant is the process runSlowParticipant runs in.
type slowParticipant struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

func startSlowParticipant(b *testing.B) *slowParticipant {
	b.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), slowParticipantEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		b.Fatalf("slow participant: %v", err)
	}
	p := &slowParticipant{cmd: cmd, stdin: stdin, addr: strings.TrimSpace(addr)}
	b.Cleanup(func() {
		_ = p.stdin.Close()
		_ = p.cmd.Wait()
	})
	return p
}

// release answers the calls the participant holds.
func (p *slowParticipant) release(b *testing.B) {
	if _, err := io.WriteString(p.stdin, "\n"); err != nil {
		b.Fatal(err)
	}
}

// active returns the calls the participant holds.
func (p *slowParticipant) active(b *testing.B) int64 {
	resp, err := http.Get("http://" + p.addr + "/active")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	n, err := strconv.ParseInt(string(body), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// blockingInvoker answers every call only once released, so that sagas
// stay in flight: it stands for participants that take their time, without
// the memory of HTTP calls.
type blockingInvoker struct {
	entered atomic.Int64
	mu      sync.Mutex
	release chan struct{}
}

func (inv *blockingInvoker) Invoke(ctx context.Context, call participant.Call) participant.Result {
	inv.entered.Add(1)
	inv.mu.Lock()
	wait := inv.release
	inv.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
	}
	return participant.Result{Outcome: participant.OutcomeSuccess, StatusCode: http.StatusOK, Output: json.RawMessage(`{"ok":true}`)}
}

// BenchmarkInFlightMemory measures the memory the engine holds per saga in
// flight: n two-step sagas (10,000 unless INFLIGHT_SAGAS says otherwise)
// are started on the PostgreSQL store and all wait in their first
// participant call; the live heap, the goroutine stacks and the goroutines
// (after a full GC) are compared with before.
//
//   - invoker: the calls wait inside an Invoker that answers when released
//     (the engine alone).
//   - http: the calls go through participant.Client to a participant in
//     another process that answers when released; with the default limit
//     of 256 connections per host, of which one endpoint gets half, the
//     other sagas wait for a connection.
//
// INFLIGHT_PROFILE=prefix writes the heap and goroutine profiles taken
// while the sagas are in flight to prefix-<sub-benchmark>.{heap,goroutine}.
func BenchmarkInFlightMemory(b *testing.B) {
	n := inFlightSagas
	if v := os.Getenv("INFLIGHT_SAGAS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("INFLIGHT_SAGAS=%q", v)
		}
	}
	b.Run("invoker", func(b *testing.B) {
		inv := &blockingInvoker{release: make(chan struct{})}
		benchInFlight(b, n, inv, "http://participant.invalid",
			func() bool { return inv.entered.Load() >= int64(n) },
			func() {
				inv.mu.Lock()
				close(inv.release)
				inv.release = make(chan struct{})
				inv.mu.Unlock()
				inv.entered.Store(0)
			})
	})
	b.Run("http", func(b *testing.B) {
		p := startSlowParticipant(b)
		client := participant.New(participant.Config{})
		// One endpoint alone gets half of the host's connections (see
		// participant/limit.go).
		held := int64(min(n, (participant.MaxConnsPerHostDefault+1)/2))
		benchInFlight(b, n, client, "http://"+p.addr,
			func() bool { return p.active(b) >= held },
			func() { p.release(b) })
	})
}

func benchInFlight(b *testing.B, n int, inv engine.Invoker, base string, entered func() bool, release func()) {
	ctx := context.Background()
	store := openPostgres(b)
	coord, err := engine.New(store, engine.Config{
		InstanceID:         "mem-bench",
		MaxConcurrentSagas: n,
		Invoker:            inv,
		Logger:             slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := coord.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = coord.Stop(stopCtx)
	}()
	def := saga.Definition{Name: "in-flight", Context: json.RawMessage(`{"order":"o-17"}`)}
	for _, name := range []string{"reserve", "charge"} {
		def.Steps = append(def.Steps, saga.StepDefinition{
			Name:         name,
			Action:       saga.Request{Method: http.MethodPost, URL: base + "/" + name, Body: json.RawMessage(`{"sku":"X","qty":2}`), TimeoutMs: 120_000},
			Compensation: &saga.Request{Method: http.MethodPost, URL: base + "/undo/" + name},
		})
	}

	for b.Loop() {
		before := readMemory()
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				if _, _, err := coord.Submit(ctx, def); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		for !entered() {
			time.Sleep(10 * time.Millisecond)
		}
		// The sagas waiting for a connection get there a little later.
		settle()
		after := readMemory()
		if prefix := os.Getenv("INFLIGHT_PROFILE"); prefix != "" {
			writeProfiles(b, prefix+"-"+strings.ReplaceAll(b.Name(), "/", "-"))
		}
		per := func(v uint64, w uint64) float64 { return (float64(v) - float64(w)) / float64(n) }
		b.ReportMetric(per(after.heap+after.stack, before.heap+before.stack), "bytes/in-flight-saga")
		b.ReportMetric(per(after.heap, before.heap), "heap-bytes/saga")
		b.ReportMetric(per(after.stack, before.stack), "stack-bytes/saga")
		b.ReportMetric(per(after.goroutines, before.goroutines), "goroutines/saga")
		b.ReportMetric(float64(after.startStack), "stack-start-bytes")
		b.ReportMetric(per(after.sys, before.sys), "sys-bytes/saga")
		release()
		for {
			page, err := coord.List(ctx, saga.Filter{Status: saga.SagaStatusExecuting, Limit: 1})
			if err != nil {
				b.Fatal(err)
			}
			if len(page.Sagas) == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
			release()
		}
	}
}

// settle waits until the goroutine count stops changing.
func settle() {
	last := runtime.NumGoroutine()
	for stable := 0; stable < 5; {
		time.Sleep(100 * time.Millisecond)
		if g := runtime.NumGoroutine(); g == last {
			stable++
		} else {
			last, stable = g, 0
		}
	}
}

// memSnapshot is what readMemory reads after a full GC.
type memSnapshot struct {
	heap       uint64 // live heap objects (MemStats.HeapAlloc)
	stack      uint64 // goroutine stacks (/memory/classes/heap/stacks:bytes)
	sys        uint64 // all memory mapped by the runtime (/memory/classes/total:bytes)
	goroutines uint64
	startStack uint64 // the size new goroutine stacks start at (/gc/stack/starting-size:bytes)
}

func readMemory() memSnapshot {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/gc/stack/starting-size:bytes"},
	}
	metrics.Read(samples)
	return memSnapshot{
		heap:       ms.HeapAlloc,
		stack:      samples[0].Value.Uint64(),
		sys:        samples[1].Value.Uint64(),
		goroutines: samples[2].Value.Uint64(),
		startStack: samples[3].Value.Uint64(),
	}
}

func writeProfiles(b *testing.B, prefix string) {
	for _, p := range []struct {
		name, ext string
		debug     int
	}{{"heap", "heap", 0}, {"goroutine", "goroutine", 1}} {
		f, err := os.Create(prefix + "." + p.ext)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup(p.name).WriteTo(f, p.debug); err != nil {
			b.Fatal(err)
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
