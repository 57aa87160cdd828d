package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
)

// Timing of one saga's submission.
const (
	// submitWait is the ?wait= of a submission: the service answers once the
	// saga has ended or this has passed.
	submitWait = 30 * time.Second
	// requestSlack is added to submitWait for the HTTP call's own limit.
	requestSlack = 30 * time.Second
	// pollInterval is how often a saga still running after submitWait is
	// read again.
	pollInterval = 20 * time.Millisecond
	// sagaEndTimeout gives up on a saga that has not ended by then.
	sagaEndTimeout = 2 * time.Minute
	// errorBackoff paces a client goroutine after a failed call, so that a
	// service that is down is not hammered.
	errorBackoff = 50 * time.Millisecond
	// maxErrorSamples bounds the error messages kept for the report.
	maxErrorSamples = 5
	// progressInterval is how often the progress line is written.
	progressInterval = time.Second
	// stepRetryMaxAttempts and friends are the steps' retry policy: the
	// stubs never fail transiently, so it only matters if the host is
	// overloaded.
	stepRetryMaxAttempts = 3
	stepRetryInitialMs   = 10
	stepRetryMaxMs       = 200
)

// outcome is one saga as a client goroutine saw it end.
type outcome struct {
	ID      string
	Status  saga.SagaStatus
	Latency time.Duration // submit to the answer showing an end state
	Refused bool          // a step was told to refuse: expected Compensated
}

// phaseResult is what one load phase (warmup or measurement) produced.
type phaseResult struct {
	Outcomes     []outcome // sagas seen to end
	Accepted     int64     // sagas the service accepted, ended or not
	Errors       int64     // failed calls and sagas that did not end
	ErrorSamples []string  // the first few error messages
	Elapsed      time.Duration
}

// liveCounts are updated by the client goroutines and read by the
// progress line.
type liveCounts struct {
	inFlight    atomic.Int64
	ended       atomic.Int64
	completed   atomic.Int64
	compensated atomic.Int64
	other       atomic.Int64
	errors      atomic.Int64
}

// driver submits sagas through the API.
type driver struct {
	cfg      Config
	client   *httpapi.Client
	stubs    *stubs
	runID    string
	seq      atomic.Int64 // sagas built so far, across phases
	progress *progressWriter
}

// newAPIClient returns a client whose connection pool holds one
// connection per client goroutine, so that connections are reused rather
// than opened per saga.
func newAPIClient(baseURL, token string, concurrency int) *httpapi.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = concurrency * 2
	tr.MaxIdleConnsPerHost = concurrency * 2
	return &httpapi.Client{BaseURL: baseURL, Token: token, HTTP: &http.Client{Transport: tr}}
}

// refuses reports whether saga number n (0-based) is one whose failing
// step refuses, spreading a fraction rate of refusals evenly over the
// sagas: exactly floor(n*rate) of the first n refuse.
func refuses(n int64, rate float64) bool {
	if rate <= 0 {
		return false
	}
	if rate >= 1 {
		return true
	}
	return int64(float64(n+1)*rate) > int64(float64(n)*rate)
}

// definition returns saga number n: cfg.Steps steps against the stubs,
// each with a compensation; refuse makes cfg.FailStep answer 400.
func (d *driver) definition(n int64, refuse bool) saga.Definition {
	ctxJSON, _ := json.Marshal(map[string]any{"load_run": d.runID, "n": n})
	body := json.RawMessage(`{"n":` + strconv.FormatInt(n, 10) + `}`)
	steps := make([]saga.StepDefinition, d.cfg.Steps)
	for i := range steps {
		k := i + 1
		steps[i] = saga.StepDefinition{
			Name:   "step-" + strconv.Itoa(k),
			Action: saga.Request{Method: http.MethodPost, URL: d.stubs.actionURL(k, refuse && k == d.cfg.FailStep), Body: body},
			Compensation: &saga.Request{
				Method: http.MethodPost, URL: d.stubs.compensateURL(k), Body: body,
			},
			Retry: &saga.RetryPolicy{
				MaxAttempts: stepRetryMaxAttempts, InitialBackoffMs: stepRetryInitialMs, MaxBackoffMs: stepRetryMaxMs,
			},
		}
	}
	return saga.Definition{Name: "load", Context: ctxJSON, Steps: steps}
}

// runPhase runs the load: cfg.Concurrency client goroutines start sagas
// until duration has passed (0: no limit) or limit sagas have been started
// (0: no limit); sagas in flight then run to their end. label names the
// phase on the progress line.
func (d *driver) runPhase(ctx context.Context, label string, duration time.Duration, limit int64) (*phaseResult, error) {
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	if duration > 0 {
		startCtx, cancelStart = context.WithTimeout(ctx, duration)
		defer cancelStart()
	}
	var (
		live    liveCounts
		tickets atomic.Int64
		mu      sync.Mutex
		res     = &phaseResult{}
		wg      sync.WaitGroup
	)
	begin := time.Now()
	stopProgress := d.progress.start(label, begin, &live)
	for range d.cfg.Concurrency {
		wg.Go(func() {
			var mine []outcome
			var accepted int64
			var errs []string
			for startCtx.Err() == nil {
				if limit > 0 && tickets.Add(1) > limit {
					break
				}
				live.inFlight.Add(1)
				o, ok, err := d.runOne(ctx)
				live.inFlight.Add(-1)
				if ok {
					accepted++
				}
				if err != nil {
					if ctx.Err() != nil {
						break // interrupted
					}
					live.errors.Add(1)
					if len(errs) < maxErrorSamples {
						errs = append(errs, err.Error())
					}
					pause(startCtx, errorBackoff)
					continue
				}
				live.ended.Add(1)
				switch o.Status {
				case saga.SagaStatusCompleted:
					live.completed.Add(1)
				case saga.SagaStatusCompensated:
					live.compensated.Add(1)
				default:
					live.other.Add(1)
				}
				mine = append(mine, o)
			}
			mu.Lock()
			defer mu.Unlock()
			res.Outcomes = append(res.Outcomes, mine...)
			res.Accepted += accepted
			for _, e := range errs {
				if len(res.ErrorSamples) < maxErrorSamples {
					res.ErrorSamples = append(res.ErrorSamples, e)
				}
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(begin)
	res.Errors = live.errors.Load()
	stopProgress()
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("%s interrupted: %w", label, err)
	}
	return res, nil
}

// runOne submits one saga and waits for its end. accepted reports whether
// the service took the saga (it may still fail to end in time).
func (d *driver) runOne(ctx context.Context) (o outcome, accepted bool, err error) {
	n := d.seq.Add(1) - 1
	refuse := refuses(n, d.cfg.FailRate)
	def := d.definition(n, refuse)

	begin := time.Now()
	callCtx, cancel := context.WithTimeout(ctx, submitWait+requestSlack)
	s, _, err := d.client.Submit(callCtx, def, submitWait)
	cancel()
	if err != nil {
		return outcome{}, false, err
	}
	for !s.Status.Terminal() {
		if time.Since(begin) > sagaEndTimeout {
			return outcome{}, true, fmt.Errorf("saga %s still %s after %s", s.ID, s.Status, sagaEndTimeout)
		}
		if !pause(ctx, pollInterval) {
			return outcome{}, true, ctx.Err()
		}
		callCtx, cancel := context.WithTimeout(ctx, requestSlack)
		next, err := d.client.Get(callCtx, s.ID)
		cancel()
		if err != nil {
			return outcome{}, true, err
		}
		s = next
	}
	return outcome{ID: s.ID, Status: s.Status, Latency: time.Since(begin), Refused: refuse}, true, nil
}

// pause waits d or until ctx is done; false when ctx ended it.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// progressWriter writes the live progress line. On a terminal it rewrites
// one line; elsewhere (a file, a test) it writes one line per interval.
type progressWriter struct {
	mu  sync.Mutex
	w   io.Writer
	tty bool
}

// Write writes p, safe beside the progress line: the started service's
// output goes through it.
func (p *progressWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.w.Write(b)
}

// printf writes a message line, safe beside the progress line.
func (p *progressWriter) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// start writes a progress line every progressInterval until the returned
// function is called, which writes a last one.
func (p *progressWriter) start(label string, begin time.Time, live *liveCounts) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ended := live.ended.Load()
				p.line(label, begin, live, ended-last, false)
				last = ended
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		p.line(label, begin, live, -1, true)
	}
}

// line writes one progress line; lastSecond < 0 shows the overall rate.
func (p *progressWriter) line(label string, begin time.Time, live *liveCounts, lastSecond int64, final bool) {
	elapsed := time.Since(begin)
	ended := live.ended.Load()
	rate := float64(lastSecond)
	if lastSecond < 0 {
		rate = float64(ended) / max(elapsed.Seconds(), 1e-9)
	}
	text := fmt.Sprintf("%-7s %5.1fs  ended %7d (%7.1f/s)  in flight %4d  Completed %7d  Compensated %7d  other %d  errors %d",
		label, elapsed.Seconds(), ended, rate, live.inFlight.Load(),
		live.completed.Load(), live.compensated.Load(), live.other.Load(), live.errors.Load())
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.tty && final:
		fmt.Fprintf(p.w, "\r%s\x1b[K\n", text)
	case p.tty:
		fmt.Fprintf(p.w, "\r%s\x1b[K", text)
	default:
		fmt.Fprintln(p.w, text)
	}
}
