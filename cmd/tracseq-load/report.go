package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Report is what a load run measured. It is printed as a table, or as JSON
// with --json (field names as below, durations in milliseconds or seconds
// as named). Sections the run could not measure are null, with a line in
// Notes saying why.
type Report struct {
	Run         runReport  `json:"run"`
	ServiceURL  string     `json:"service_url"`
	Started     bool       `json:"started_service"`
	Persistence string     `json:"persistence"`
	Host        hostReport `json:"host"`

	// The measured phase (not the warmup).
	Seconds            float64                   `json:"seconds"`
	Sagas              int64                     `json:"sagas"` // ended, any end state
	SagasPerSecond     float64                   `json:"sagas_per_second"`
	CompletedPerSecond float64                   `json:"completed_per_second"`
	EndStates          map[saga.SagaStatus]int64 `json:"end_states"`
	// Unexpected counts sagas whose end state was not the planned one
	// (Completed, or Compensated for those told to refuse).
	Unexpected   int64          `json:"unexpected"`
	Errors       int64          `json:"errors"`
	ErrorSamples []string       `json:"error_samples,omitempty"`
	LatencyMs    latencySummary `json:"latency_ms"`

	Database     *databaseReport `json:"database"`
	Service      *serviceReport  `json:"service"`
	Ceiling      *ceilingResult  `json:"ceiling"`
	Ratio        *ratioReport    `json:"ratio"`
	Participant  stubCounts      `json:"participant_calls"`
	Verification []verifyResult  `json:"verification"`
	Notes        []string        `json:"notes,omitempty"`
}

// runReport is the configuration of the run.
type runReport struct {
	Steps           int     `json:"steps"`
	Concurrency     int     `json:"concurrency"`
	DurationSeconds float64 `json:"duration_seconds"` // 0: ran -n sagas
	SagasLimit      int     `json:"sagas_limit"`      // 0: ran for the duration
	WarmupSeconds   float64 `json:"warmup_seconds"`
	LatencyMs       float64 `json:"stub_latency_ms"`
	FailStep        int     `json:"fail_step"`
	FailRate        float64 `json:"fail_rate"`
}

// latencySummary is submit-to-end latency in milliseconds.
type latencySummary struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// databaseReport is commits per saga from pg_stat_database.
type databaseReport struct {
	databaseFacts
	// Commits is the xact_commit delta from before the warmup to after the
	// load and StatsWait; it includes the service's background work (its
	// claim poll) and the tool's own read.
	Commits int64 `json:"commits"`
	// Sagas are those the service accepted in that span (warmup included).
	Sagas          int64   `json:"sagas"`
	CommitsPerSaga float64 `json:"commits_per_saga"`
	// CommitsPerSecond is CommitsPerSaga × the measured sagas per second.
	CommitsPerSecond float64 `json:"commits_per_second"`
}

// serviceReport is the started service's resource use in the measured
// phase.
type serviceReport struct {
	PID          int     `json:"pid"`
	CPUSeconds   float64 `json:"cpu_seconds"`
	CPUCores     float64 `json:"cpu_cores"` // CPU seconds per second
	CPUMsPerSaga float64 `json:"cpu_ms_per_saga"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"` // VmHWM over the process's life
}

// ratioReport relates the run to the database ceiling.
type ratioReport struct {
	// SagasPerCeilingCommit is sagas/s ÷ ceiling INSERT commits/s.
	SagasPerCeilingCommit float64 `json:"sagas_per_ceiling_commit"`
	// CommitShare is the service's commits/s ÷ ceiling commits/s (nil when
	// commits per saga is unknown).
	CommitShare *float64 `json:"commit_share,omitempty"`
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method: the smallest value with at least p% of the values at
// or below it. Zero for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// summarize returns the latency percentiles of ds (which it sorts).
func summarize(ds []time.Duration) latencySummary {
	if len(ds) == 0 {
		return latencySummary{}
	}
	slices.Sort(ds)
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return latencySummary{
		P50:  ms(percentile(ds, 50)),
		P90:  ms(percentile(ds, 90)),
		P99:  ms(percentile(ds, 99)),
		Max:  ms(ds[len(ds)-1]),
		Mean: ms(sum / time.Duration(len(ds))),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fillOutcomes sets the throughput, end states and latency of r from the
// measured phase.
func (r *Report) fillOutcomes(p *phaseResult) {
	r.Seconds = p.Elapsed.Seconds()
	r.Sagas = int64(len(p.Outcomes))
	r.Errors = p.Errors
	r.ErrorSamples = p.ErrorSamples
	r.EndStates = make(map[saga.SagaStatus]int64)
	lat := make([]time.Duration, 0, len(p.Outcomes))
	for _, o := range p.Outcomes {
		r.EndStates[o.Status]++
		lat = append(lat, o.Latency)
		want := saga.SagaStatusCompleted
		if o.Refused {
			want = saga.SagaStatusCompensated
		}
		if o.Status != want {
			r.Unexpected++
		}
	}
	r.LatencyMs = summarize(lat)
	if r.Seconds > 0 {
		r.SagasPerSecond = float64(r.Sagas) / r.Seconds
		r.CompletedPerSecond = float64(r.EndStates[saga.SagaStatusCompleted]) / r.Seconds
	}
}

// fillService sets the started service's figures from its usage before
// and after the measured phase; fillOutcomes must have run.
func (r *Report) fillService(pid int, before, after procUsage) {
	cpu := (after.CPU - before.CPU).Seconds()
	r.Service = &serviceReport{
		PID:          pid,
		CPUSeconds:   cpu,
		CPUCores:     cpu / max(r.Seconds, 1e-9),
		PeakRSSBytes: after.PeakRSS,
	}
	if r.Sagas > 0 {
		r.Service.CPUMsPerSaga = cpu * 1000 / float64(r.Sagas)
	}
}

// fillRatio relates the throughput to the ceiling, once both are known.
func (r *Report) fillRatio() {
	if r.Ceiling == nil || r.Ceiling.CommitsPerSecond <= 0 {
		return
	}
	r.Ratio = &ratioReport{SagasPerCeilingCommit: r.SagasPerSecond / r.Ceiling.CommitsPerSecond}
	if r.Database != nil {
		share := r.Database.CommitsPerSecond / r.Ceiling.CommitsPerSecond
		r.Ratio.CommitShare = &share
	}
}

// OK reports whether the run went as planned: no errors, every saga in its
// planned end state, and every verification passed.
func (r *Report) OK() bool {
	if r.Errors > 0 || r.Unexpected > 0 {
		return false
	}
	for _, v := range r.Verification {
		if v.Passed != v.Checked {
			return false
		}
	}
	return true
}

// writeJSON writes r as indented JSON.
func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// writeTable writes r for people.
func (r *Report) writeTable(w io.Writer) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...))
	}
	row("run", "%s", r.Run.describe())
	started := "running"
	if r.Started {
		started = "started"
		if r.Service != nil {
			started += fmt.Sprintf(", pid %d", r.Service.PID)
		}
	}
	row("service", "%s (%s), persistence %s", r.ServiceURL, started, dashIfEmpty(r.Persistence))
	if h := r.Host; h.CPUs > 0 {
		row("host", "%d CPUs, %.1f GiB, load average %.2f before, %.2f after; this tool used %.2f cores", h.CPUs,
			float64(h.MemoryBytes)/(1<<30), h.LoadAvgBefore, h.LoadAvgAfter, h.ToolCPUCores)
	}
	if db := r.Database; db != nil {
		row("database", "%s, PostgreSQL %s, synchronous_commit=%s", db.Name, db.ServerVersion, db.SynchronousCommit)
	}
	fmt.Fprintln(tw, "\t") // a blank line inside the aligned block
	row("sagas ended", "%d in %.2fs: %.1f/s", r.Sagas, r.Seconds, r.SagasPerSecond)
	for _, st := range saga.SagaStatuses {
		if n := r.EndStates[st]; n > 0 {
			row("  "+string(st), "%d (%.1f/s)", n, float64(n)/max(r.Seconds, 1e-9))
		}
	}
	if r.Unexpected > 0 {
		row("  unexpected", "%d ended otherwise than planned", r.Unexpected)
	}
	if r.Errors > 0 {
		row("  errors", "%d", r.Errors)
		for _, e := range r.ErrorSamples {
			row("", "%s", oneLine(e, 160))
		}
	}
	l := r.LatencyMs
	row("latency submit→end", "p50 %s  p90 %s  p99 %s  max %s  (mean %s)",
		fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.Max), fmtMs(l.Mean))
	if db := r.Database; db != nil {
		row("db commits", "%.2f per saga (%d commits for %d sagas incl. warmup), ~%.0f/s",
			db.CommitsPerSaga, db.Commits, db.Sagas, db.CommitsPerSecond)
	} else {
		row("db commits", "n/a")
	}
	if s := r.Service; s != nil {
		row("service CPU", "%.2fs: %.2f cores, %.3f ms per saga", s.CPUSeconds, s.CPUCores, s.CPUMsPerSaga)
		row("service peak RSS", "%.1f MiB", float64(s.PeakRSSBytes)/(1<<20))
	} else {
		row("service CPU", "n/a")
		row("service peak RSS", "n/a")
	}
	if c := r.Ceiling; c != nil {
		row("db ceiling", "%.0f single-row INSERT commits/s (c=%d, %.1fs)", c.CommitsPerSecond, c.Concurrency, c.Seconds)
	} else {
		row("db ceiling", "n/a")
	}
	if q := r.Ratio; q != nil {
		text := fmt.Sprintf("%.3f (sagas/s ÷ ceiling commits/s)", q.SagasPerCeilingCommit)
		if q.CommitShare != nil {
			text += fmt.Sprintf("; the service's commits/s are %.0f%% of the ceiling", *q.CommitShare*100)
		}
		row("saga/ceiling ratio", "%s", text)
	}
	p := r.Participant
	row("participant calls", "actions %d (refused %d), compensations %d", p.Actions, p.Refusals, p.Compensations)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	for line := range strings.Lines(buf.String()) {
		fmt.Fprintln(w, strings.TrimRight(line, " \n"))
	}
	for _, v := range r.Verification {
		fmt.Fprintln(w, v.summary())
		for _, f := range v.Failures {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// describe is the run's configuration in one line.
func (rr runReport) describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d steps, c=%d", rr.Steps, rr.Concurrency)
	if rr.DurationSeconds > 0 {
		fmt.Fprintf(&b, ", %s", secs(rr.DurationSeconds))
	}
	if rr.SagasLimit > 0 {
		fmt.Fprintf(&b, ", n=%d", rr.SagasLimit)
	}
	fmt.Fprintf(&b, " (warmup %s), stub latency %s, ", secs(rr.WarmupSeconds),
		time.Duration(rr.LatencyMs*float64(time.Millisecond)))
	if rr.FailStep == 0 {
		b.WriteString("no refusals")
	} else {
		fmt.Fprintf(&b, "step %d refuses %g%% of sagas", rr.FailStep, rr.FailRate*100)
	}
	return b.String()
}

func secs(s float64) string { return time.Duration(s * float64(time.Second)).String() }

// fmtMs formats milliseconds with sensible precision.
func fmtMs(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.2fms", v)
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine shortens s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
