package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tracseq/transaction-service/httpapi"
)

// answer is one submit request of a load client and what came of it.
type answer struct {
	at         time.Time
	status     int // 0: no answer (connection refused or cut, timeout)
	durable    bool
	retryAfter bool // a 503 carried Retry-After
}

// loadSub is one saga a load client submits: sent again, with its
// idempotency key, to the same instance until it is accepted.
type loadSub struct {
	key     string
	plan    plan
	target  *instance
	answers []answer
	id      string // once accepted
	durable bool   // as the accepting answer said
}

// load submits sagas from a few clients, each waiting pace after every
// accepted saga, until stop is closed; a submission under way when stop
// closes is carried on until accepted or ctx ends.
type load struct {
	p       *stub
	targets []*instance
	prefix  string
	clients int
	pace    time.Duration
	retry   time.Duration // wait before sending a refused or unanswered submit again

	next atomic.Int64
	mu   sync.Mutex
	subs []*loadSub
	wg   sync.WaitGroup
}

// start starts the clients.
func (l *load) start(ctx context.Context, stop <-chan struct{}) {
	for range l.clients {
		l.wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := int(l.next.Add(1) - 1)
				pl := plan{failLast: i%5 == 4, flakyStep: -1}
				if i%10 == 3 {
					pl.flakyStep = 1
				}
				sub := &loadSub{key: fmt.Sprintf("%s-%05d", l.prefix, i), plan: pl, target: l.targets[i%len(l.targets)]}
				l.mu.Lock()
				l.subs = append(l.subs, sub)
				l.mu.Unlock()
				l.submit(ctx, sub)
				select {
				case <-stop:
					return
				case <-time.After(l.pace):
				}
			}
		})
	}
}

// wait waits for the clients to return, and returns every submission.
func (l *load) wait() []*loadSub {
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.subs)
}

// submit sends sub until it is accepted or ctx ends.
func (l *load) submit(ctx context.Context, sub *loadSub) {
	body, err := json.Marshal(l.p.definition("outage-"+sub.key, sub.key, sub.plan))
	if err != nil {
		return // never accepted: the test reports it
	}
	for ctx.Err() == nil {
		a, s := postSaga(ctx, sub.target, body)
		sub.answers = append(sub.answers, a)
		if s != nil {
			sub.id, sub.durable = s.ID, s.Durable
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(l.retry):
		}
	}
}

// postSaga sends one submit and returns its answer, and the saga when it
// was accepted (201, or 200 for a saga the key already had).
func postSaga(ctx context.Context, in *instance, body []byte) (answer, *httpapi.SagaJSON) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a := answer{at: time.Now()}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.url+"/api/v1/sagas", bytes.NewReader(body))
	if err != nil {
		return a, nil
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := in.http.Do(req)
	if err != nil {
		return a, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a.status = resp.StatusCode
	a.retryAfter = resp.Header.Get("Retry-After") != ""
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return a, nil
	}
	var s httpapi.SagaJSON
	if json.Unmarshal(raw, &s) != nil || s.ID == "" {
		a.status = -resp.StatusCode // accepted, but not a saga: counted apart
		return a, nil
	}
	a.durable = s.Durable
	return a, &s
}

// answerCounts formats the answers between from and to (zero: open) as
// "201×40 201(durable:false)×3 503×2 none×1".
func answerCounts(subs []*loadSub, from, to time.Time) string {
	counts := make(map[string]int)
	for _, s := range subs {
		for _, a := range s.answers {
			if a.at.Before(from) || (!to.IsZero() && !a.at.Before(to)) {
				continue
			}
			var k string
			switch {
			case a.status == 0:
				k = "none"
			case a.status == http.StatusServiceUnavailable && !a.retryAfter:
				k = "503(no Retry-After)"
			case (a.status == http.StatusCreated || a.status == http.StatusOK) && !a.durable:
				k = fmt.Sprintf("%d(durable:false)", a.status)
			default:
				k = fmt.Sprint(a.status)
			}
			counts[k]++
		}
	}
	if len(counts) == 0 {
		return "none sent"
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, counts[k])
	}
	return strings.Join(parts, " ")
}

// readySample is one answer of /health/ready.
type readySample struct {
	at          time.Time
	status      int // 0: no answer
	persistence string
	pool        *httpapi.PoolJSON // nil without a database
}

// readyLog polls an instance's /health/ready until stopped.
type readyLog struct {
	in      *instance
	mu      sync.Mutex
	samples []readySample
	done    chan struct{}
}

// pollReady polls in's readiness every period until stop is closed.
func pollReady(in *instance, period time.Duration, stop <-chan struct{}) *readyLog {
	r := &readyLog{in: in, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			ready, status, err := in.client.Ready(ctx)
			cancel()
			s := readySample{at: time.Now(), status: status}
			if err == nil || status != 0 {
				s.persistence = ready.Persistence
				if ready.Database != nil {
					s.pool = &ready.Database.Pool
				}
			}
			r.mu.Lock()
			r.samples = append(r.samples, s)
			r.mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(period):
			}
		}
	}()
	return r
}

// timeline formats the samples as runs of one answer, with their start
// relative to t0: "+0.0s 200 durable ×12, +2.4s 200 memory ×9, …".
func (r *readyLog) timeline(t0 time.Time) string {
	<-r.done
	var parts []string
	var cur string
	n := 0
	var start time.Time
	flush := func() {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%+.1fs %s ×%d", start.Sub(t0).Seconds(), cur, n))
		}
	}
	for _, s := range r.samples {
		k := fmt.Sprintf("%d %s", s.status, s.persistence)
		if s.status == 0 {
			k = "no answer"
		}
		if k != cur {
			flush()
			cur, n, start = k, 0, s.at
		}
		n++
	}
	flush()
	return strings.Join(parts, ", ")
}

// waitFor waits up to d for a sample with status and persistence.
func (r *readyLog) waitFor(status int, persistence string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		n := len(r.samples)
		last := readySample{}
		if n > 0 {
			last = r.samples[n-1]
		}
		r.mu.Unlock()
		if last.status == status && last.persistence == persistence {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// first returns the time of the first sample at or after from with status
// and persistence (zero if none).
func (r *readyLog) first(from time.Time, status int, persistence string) time.Time {
	<-r.done
	for _, s := range r.samples {
		if !s.at.Before(from) && s.status == status && s.persistence == persistence {
			return s.at
		}
	}
	return time.Time{}
}

// during reports whether a sample between from and to had status and
// persistence.
func (r *readyLog) during(from, to time.Time, status int, persistence string) bool {
	<-r.done
	for _, s := range r.samples {
		if !s.at.Before(from) && s.at.Before(to) && s.status == status && s.persistence == persistence {
			return true
		}
	}
	return false
}

// poolSummary says how many samples there were, the most connections the
// pool had open and in use, and in how many samples all were in use.
func (r *readyLog) poolSummary() (summary string, maxTotal int) {
	<-r.done
	n, maxIn, exhausted := 0, 0, 0
	for _, s := range r.samples {
		if s.pool == nil {
			continue
		}
		n++
		maxTotal = max(maxTotal, int(s.pool.Total))
		maxIn = max(maxIn, int(s.pool.InUse))
		if s.pool.Max > 0 && s.pool.InUse >= s.pool.Max {
			exhausted++
		}
	}
	return fmt.Sprintf("%d samples: at most %d connections open, %d in use; all in use in %d samples",
		n, maxTotal, maxIn, exhausted), maxTotal
}
