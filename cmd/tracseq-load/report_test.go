package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
)

func msList(vals ...int) []time.Duration {
	out := make([]time.Duration, len(vals))
	for i, v := range vals {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value p50", msList(7), 50, 7 * time.Millisecond},
		{"one value p99", msList(7), 99, 7 * time.Millisecond},
		{"two values p50 is the lower", msList(1, 2), 50, 1 * time.Millisecond},
		{"two values p51 is the upper", msList(1, 2), 51, 2 * time.Millisecond},
		{"p100 is the max", msList(1, 2, 3), 100, 3 * time.Millisecond},
		{"tiny p is the min", msList(1, 2, 3), 0.001, 1 * time.Millisecond},
		{"1..100 p50", hundred, 50, 50 * time.Millisecond},
		{"1..100 p90", hundred, 90, 90 * time.Millisecond},
		{"1..100 p99", hundred, 99, 99 * time.Millisecond},
		{"1..10 p99 rounds up to the max", msList(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"1..10 p90", msList(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %g) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeSortsAndAverages(t *testing.T) {
	t.Parallel()
	got := summarize(msList(40, 10, 30, 20))
	want := latencySummary{P50: 20, P90: 40, P99: 40, Max: 40, Mean: 25}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (latencySummary{}) {
		t.Errorf("summarize(nil) = %+v, want zero", got)
	}
}

func TestRefusesSpreadsTheRateExactly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rate float64
		n    int
		want int
	}{
		{0, 100, 0},
		{1, 100, 100},
		{0.5, 100, 50},
		{0.25, 100, 25},
		{0.1, 1000, 100},
		{0.333, 1000, 333},
	}
	for _, tt := range tests {
		got := 0
		for i := range tt.n {
			if refuses(int64(i), tt.rate) {
				got++
			}
		}
		if got != tt.want {
			t.Errorf("rate %g: %d of %d sagas refused, want %d", tt.rate, got, tt.n, tt.want)
		}
	}
	// Half means every other saga, not a run of refusals.
	if refuses(0, 0.5) == refuses(1, 0.5) {
		t.Errorf("rate 0.5: sagas 0 and 1 both %v", refuses(0, 0.5))
	}
}

func TestParseProcStatCPU(t *testing.T) {
	t.Parallel()
	// utime 250 and stime 50 ticks: 3 seconds. The command name holds a
	// space and a parenthesis.
	stat := []byte("4242 (tracseq (tx) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 12 0 100 1000000 500 18446744073709551615\n")
	got, err := parseProcStatCPU(stat)
	if err != nil {
		t.Fatalf("parseProcStatCPU: %v", err)
	}
	if got != 3*time.Second {
		t.Errorf("parseProcStatCPU = %v, want 3s", got)
	}
	if _, err := parseProcStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("parseProcStatCPU of a short line: no error")
	}
}

func TestParseHostFiles(t *testing.T) {
	t.Parallel()
	if got := parseLoadAvg([]byte("1.52 0.90 0.40 3/200 1234\n")); got != 1.52 {
		t.Errorf("parseLoadAvg = %g, want 1.52", got)
	}
	if got := parseLoadAvg(nil); got != 0 {
		t.Errorf("parseLoadAvg(nil) = %g, want 0", got)
	}
	if got := parseMemTotal([]byte("MemTotal:       24000000 kB\nMemFree: 1 kB\n")); got != 24000000*1024 {
		t.Errorf("parseMemTotal = %d, want %d", got, 24000000*1024)
	}
}

func TestParseVmHWM(t *testing.T) {
	t.Parallel()
	status := []byte("Name:\ttracseq-tx\nVmPeak:\t 1000 kB\nVmHWM:\t   22868 kB\nVmRSS:\t 20000 kB\n")
	got, err := parseVmHWM(status)
	if err != nil {
		t.Fatalf("parseVmHWM: %v", err)
	}
	if want := int64(22868 * 1024); got != want {
		t.Errorf("parseVmHWM = %d, want %d", got, want)
	}
	if _, err := parseVmHWM([]byte("Name:\tx\n")); err == nil {
		t.Error("parseVmHWM without VmHWM: no error")
	}
}

// sampleReport is a report as a run with every section fills it.
func sampleReport() *Report {
	r := &Report{
		Run:         runReport{Steps: 2, Concurrency: 16, DurationSeconds: 10, WarmupSeconds: 2, FailStep: 2, FailRate: 0.5},
		ServiceURL:  "http://127.0.0.1:4000",
		Started:     true,
		Persistence: "durable",
		Host:        hostReport{CPUs: 2, MemoryBytes: 4 << 30, LoadAvgBefore: 0.5, LoadAvgAfter: 1.25, ToolCPUCores: 0.3},
		Database: &databaseReport{
			databaseFacts: databaseFacts{Name: "scratch", ServerVersion: "15.20", SynchronousCommit: "on"},
			Commits:       9000, Sagas: 1200,
		},
		Ceiling:     &ceilingResult{Concurrency: 16, Seconds: 5, Commits: 25000, CommitsPerSecond: 5000},
		Participant: stubCounts{Actions: 1500, Refusals: 500, Compensations: 500},
		Verification: []verifyResult{
			{Status: saga.SagaStatusCompleted, Checked: 50, Passed: 50},
			{Status: saga.SagaStatusCompensated, Checked: 50, Passed: 50},
		},
	}
	p := &phaseResult{Elapsed: 10 * time.Second}
	for i := range 1000 {
		o := outcome{ID: "x", Status: saga.SagaStatusCompleted, Latency: time.Duration(i+1) * time.Millisecond}
		if i%2 == 1 {
			o.Status, o.Refused = saga.SagaStatusCompensated, true
		}
		p.Outcomes = append(p.Outcomes, o)
	}
	r.fillOutcomes(p)
	r.fillService(99, procUsage{CPU: time.Second}, procUsage{CPU: 6 * time.Second, PeakRSS: 30 << 20})
	r.Database.CommitsPerSaga = float64(r.Database.Commits) / float64(r.Database.Sagas)
	r.Database.CommitsPerSecond = r.Database.CommitsPerSaga * r.SagasPerSecond
	r.fillRatio()
	return r
}

func TestReportFigures(t *testing.T) {
	t.Parallel()
	r := sampleReport()
	if r.Sagas != 1000 || r.SagasPerSecond != 100 || r.CompletedPerSecond != 50 {
		t.Errorf("sagas %d at %g/s, Completed %g/s; want 1000 at 100/s, 50/s", r.Sagas, r.SagasPerSecond, r.CompletedPerSecond)
	}
	if r.EndStates[saga.SagaStatusCompleted] != 500 || r.EndStates[saga.SagaStatusCompensated] != 500 {
		t.Errorf("end states %v, want 500 Completed and 500 Compensated", r.EndStates)
	}
	if r.Unexpected != 0 {
		t.Errorf("unexpected = %d, want 0", r.Unexpected)
	}
	if r.LatencyMs.P50 != 500 || r.LatencyMs.P99 != 990 || r.LatencyMs.Max != 1000 {
		t.Errorf("latency %+v, want p50 500, p99 990, max 1000", r.LatencyMs)
	}
	if r.Ratio == nil || r.Ratio.SagasPerCeilingCommit != 0.02 {
		t.Fatalf("ratio %+v, want 100/5000 = 0.02", r.Ratio)
	}
	if got := *r.Ratio.CommitShare; got != 0.15 {
		t.Errorf("commit share %g, want 7.5 × 100 / 5000 = 0.15", got)
	}
	if !r.OK() {
		t.Error("OK() = false for a clean run")
	}

	r.Verification[1].Passed = 49
	if r.OK() {
		t.Error("OK() = true with a failed verification")
	}
}

func TestReportUnexpectedEndState(t *testing.T) {
	t.Parallel()
	var r Report
	r.fillOutcomes(&phaseResult{Elapsed: time.Second, Outcomes: []outcome{
		{Status: saga.SagaStatusCompleted},
		{Status: saga.SagaStatusCompleted, Refused: true},
		{Status: saga.SagaStatusFailed},
	}})
	if r.Unexpected != 2 {
		t.Errorf("unexpected = %d, want 2", r.Unexpected)
	}
	if r.OK() {
		t.Error("OK() = true with unexpected end states")
	}
}

func TestWriteTable(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := sampleReport().writeTable(&b); err != nil {
		t.Fatalf("writeTable: %v", err)
	}
	out := b.String()
	for _, want := range []string{
		"2 steps, c=16, 10s (warmup 2s), stub latency 0s, step 2 refuses 50% of sagas",
		"http://127.0.0.1:4000 (started, pid 99), persistence durable",
		"2 CPUs, 4.0 GiB, load average 0.50 before, 1.25 after; this tool used 0.30 cores",
		"scratch, PostgreSQL 15.20, synchronous_commit=on",
		"1000 in 10.00s: 100.0/s",
		"  Completed         500 (50.0/s)",
		"  Compensated       500 (50.0/s)",
		"p50 500ms  p90 900ms  p99 990ms  max 1000ms",
		"7.50 per saga (9000 commits for 1200 sagas incl. warmup), ~750/s",
		"5.00s: 0.50 cores, 5.000 ms per saga",
		"30.0 MiB",
		"5000 single-row INSERT commits/s (c=16, 5.0s)",
		"0.020 (sagas/s ÷ ceiling commits/s); the service's commits/s are 15% of the ceiling",
		"actions 1500 (refused 500), compensations 500",
		"verified 50/50 sagas: Completed with full event trail",
		"verified 50/50 sagas: Compensated with completed steps compensated and full event trail",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteTableNotApplicable(t *testing.T) {
	t.Parallel()
	r := &Report{ServiceURL: "http://localhost:8080", Notes: []string{"service CPU and peak RSS are n/a: x"}}
	r.fillOutcomes(&phaseResult{Elapsed: time.Second})
	var b bytes.Buffer
	if err := r.writeTable(&b); err != nil {
		t.Fatalf("writeTable: %v", err)
	}
	out := b.String()
	for _, want := range []string{"service CPU         n/a", "service peak RSS    n/a", "db ceiling          n/a", "db commits          n/a", "note: service CPU"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteJSONNames(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := sampleReport().writeJSON(&b); err != nil {
		t.Fatalf("writeJSON: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("report is not JSON: %v", err)
	}
	for _, key := range []string{"sagas_per_second", "end_states", "latency_ms", "database", "service", "ceiling", "ratio", "verification"} {
		if _, ok := m[key]; !ok {
			t.Errorf("JSON lacks %q", key)
		}
	}
	if got := m["database"].(map[string]any)["commits_per_saga"]; got != 7.5 {
		t.Errorf("database.commits_per_saga = %v, want 7.5", got)
	}
}

func TestParseConfig(t *testing.T) {
	t.Parallel()
	env := func(vals map[string]string) func(string) string {
		return func(k string) string { return vals[k] }
	}
	noEnv := env(nil)
	tests := []struct {
		name    string
		args    []string
		env     func(string) string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{name: "defaults", args: nil, env: noEnv, check: func(t *testing.T, c Config) {
			if c.URL != URLDefault || c.DatabaseURL != DatabaseURLDefault || c.Concurrency != ConcurrencyDefault ||
				c.Duration != DurationDefault || c.Steps != StepsDefault || c.FailRate != 0 || c.StatsWait != StatsWaitDefault {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "environment", args: nil, env: env(map[string]string{"TRACSEQ_URL": "http://h:1/", "DATABASE_URL": "postgres://x/y"}), check: func(t *testing.T, c Config) {
			if c.URL != "http://h:1" || c.DatabaseURL != "postgres://x/y" {
				t.Errorf("URL %q, database %q", c.URL, c.DatabaseURL)
			}
		}},
		{name: "n alone has no duration", args: []string{"-n", "500"}, env: noEnv, check: func(t *testing.T, c Config) {
			if c.Sagas != 500 || c.Duration != 0 {
				t.Errorf("-n 500: sagas %d, duration %s", c.Sagas, c.Duration)
			}
		}},
		{name: "n and d both limit", args: []string{"-n", "500", "-d", "3s"}, env: noEnv, check: func(t *testing.T, c Config) {
			if c.Sagas != 500 || c.Duration != 3*time.Second {
				t.Errorf("sagas %d, duration %s", c.Sagas, c.Duration)
			}
		}},
		{name: "fail step alone refuses all", args: []string{"--fail-step", "2"}, env: noEnv, check: func(t *testing.T, c Config) {
			if c.FailStep != 2 || c.FailRate != 1 {
				t.Errorf("fail step %d rate %g", c.FailStep, c.FailRate)
			}
		}},
		{name: "double-dash flags", args: []string{"--start", "-c", "64", "--steps", "3", "--fail-step", "3", "--fail-rate", "0.5", "--json"}, env: noEnv, check: func(t *testing.T, c Config) {
			if !c.Start || c.Concurrency != 64 || c.Steps != 3 || c.FailStep != 3 || c.FailRate != 0.5 || !c.JSON {
				t.Errorf("config %+v", c)
			}
		}},
		{name: "url and start", args: []string{"--start", "--url", "http://x"}, env: noEnv, wantErr: "exclude each other"},
		{name: "bin without start", args: []string{"--bin", "/x"}, env: noEnv, wantErr: "--bin needs --start"},
		{name: "rate without step", args: []string{"--fail-rate", "0.5"}, env: noEnv, wantErr: "--fail-rate needs --fail-step"},
		{name: "fail step beyond steps", args: []string{"--fail-step", "3"}, env: noEnv, wantErr: "--fail-step must be between 1 and --steps (2)"},
		{name: "rate above one", args: []string{"--fail-step", "1", "--fail-rate", "1.5"}, env: noEnv, wantErr: "--fail-rate must be between 0 and 1"},
		{name: "zero concurrency", args: []string{"-c", "0"}, env: noEnv, wantErr: "-c must be between 1"},
		{name: "nothing to run", args: []string{"-d", "0"}, env: noEnv, wantErr: "-d or -n must be positive"},
		{name: "too many steps", args: []string{"--steps", "101"}, env: noEnv, wantErr: "--steps must be between 1 and 100"},
		{name: "argument", args: []string{"extra"}, env: noEnv, wantErr: "takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tt.args, tt.env, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				if exitCode(err) != 2 {
					t.Errorf("exit code %d, want 2", exitCode(err))
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			tt.check(t, c)
		})
	}
	if _, err := parseConfig([]string{"-h"}, noEnv, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// trail builds events of saga id with seq 1, 2, … of the given types.
func trail(id string, types ...saga.EventType) []httpapi.EventJSON {
	out := make([]httpapi.EventJSON, len(types))
	for i, ty := range types {
		out[i] = httpapi.EventJSON{SagaID: id, Seq: int64(i + 1), Type: ty}
	}
	return out
}

func TestCheckCompleted(t *testing.T) {
	t.Parallel()
	now := time.Now()
	good := func() (*httpapi.SagaJSON, []httpapi.EventJSON) {
		s := &httpapi.SagaJSON{ID: "s1", Status: saga.SagaStatusCompleted, CompletedSteps: 2, TotalSteps: 2, CompletedAt: &now,
			Steps: []httpapi.StepJSON{{Status: saga.StepStatusCompleted}, {Status: saga.StepStatusCompleted}}}
		ev := trail("s1", saga.EventSagaCreated, saga.EventSagaStarted,
			saga.EventStepStarted, saga.EventStepCompleted, saga.EventStepStarted, saga.EventStepCompleted, saga.EventSagaCompleted)
		return s, ev
	}
	tests := []struct {
		name    string
		spoil   func(s *httpapi.SagaJSON, ev []httpapi.EventJSON) []httpapi.EventJSON
		wantErr string
	}{
		{"good", func(_ *httpapi.SagaJSON, ev []httpapi.EventJSON) []httpapi.EventJSON { return ev }, ""},
		{"status", func(s *httpapi.SagaJSON, ev []httpapi.EventJSON) []httpapi.EventJSON {
			s.Status = saga.SagaStatusCompensated
			return ev
		}, "status Compensated, want Completed"},
		{"step", func(s *httpapi.SagaJSON, ev []httpapi.EventJSON) []httpapi.EventJSON {
			s.Steps[1].Status = saga.StepStatusPending
			return ev
		}, "step 2 status Pending"},
		{"seq gap", func(_ *httpapi.SagaJSON, ev []httpapi.EventJSON) []httpapi.EventJSON {
			ev[3].Seq = 9
			return ev
		}, "seq 9, want 4"},
		{"missing end event", func(_ *httpapi.SagaJSON, ev []httpapi.EventJSON) []httpapi.EventJSON {
			return ev[:len(ev)-1]
		}, "last event StepCompleted, want SagaCompleted"},
		{"missing first event", func(_ *httpapi.SagaJSON, ev []httpapi.EventJSON) []httpapi.EventJSON {
			ev[0].Type = saga.EventSagaStarted
			return ev
		}, "first event SagaStarted"},
		{"no events", func(_ *httpapi.SagaJSON, _ []httpapi.EventJSON) []httpapi.EventJSON { return nil }, "no events"},
		{"other saga", func(_ *httpapi.SagaJSON, ev []httpapi.EventJSON) []httpapi.EventJSON {
			ev[2].SagaID = "s2"
			return ev
		}, "belongs to saga s2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, ev := good()
			err := checkCompleted(s, tt.spoil(s, ev), 2)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkCompleted: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkCompleted: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckCompensated(t *testing.T) {
	t.Parallel()
	now := time.Now()
	s := &httpapi.SagaJSON{ID: "s1", Status: saga.SagaStatusCompensated, CompletedSteps: 1, TotalSteps: 3, CompletedAt: &now,
		Steps: []httpapi.StepJSON{
			{Status: saga.StepStatusCompleted, Compensation: &httpapi.CompensationJSON{Status: saga.CompensationStatusCompleted}},
			{Status: saga.StepStatusFailed},
			{Status: saga.StepStatusSkipped},
		}}
	ev := trail("s1", saga.EventSagaCreated, saga.EventSagaStarted, saga.EventStepStarted, saga.EventStepCompleted,
		saga.EventStepStarted, saga.EventStepFailed, saga.EventStepSkipped, saga.EventSagaCompensating,
		saga.EventCompensationStarted, saga.EventCompensationCompleted, saga.EventSagaCompensated)
	if err := checkCompensated(s, ev, 3, 2); err != nil {
		t.Fatalf("checkCompensated: %v", err)
	}
	s.Steps[0].Compensation = nil
	if err := checkCompensated(s, ev, 3, 2); err == nil || !strings.Contains(err.Error(), "step 1 not compensated") {
		t.Fatalf("checkCompensated without the compensation: %v", err)
	}
}
