package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/client"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// The misbehaving-participant experiment.
const (
	// misbehaveSlots is MAX_CONCURRENT_SAGAS: the hanging sagas and the two
	// answering 1 MiB a call may hold six slots as long as their calls
	// last, and the other sagas get through the two left while the hanging
	// calls are in flight; a slot held forever would stall them.
	misbehaveSlots = 8
	// misbehaveConns is PARTICIPANT_MAX_CONNS_PER_HOST: alone, the hanging
	// path may hold half of them, all its calls at once.
	misbehaveConns = 8
	// misbehaveHanging sagas call the path that never answers.
	misbehaveHanging = 4
	// misbehaveNormal sagas call paths of the same host that answer at once.
	misbehaveNormal = 8
	// hangTimeout is the step timeout of the calls to the hanging path,
	// callTimeout that of every other call.
	hangTimeout = 15 * time.Second
	callTimeout = 10 * time.Second
	// misbehaveSlack is what a saga may take beyond the timeouts of the
	// calls it makes (waiting for a slot among them) before it counts as
	// stuck: generous, since those calls answer at once.
	misbehaveSlack = 30 * time.Second
	// bigSteps is the step count of the saga whose every step answers
	// bigAnswer bytes, just under the participant client's 1 MiB.
	bigSteps  = 100
	bigAnswer = 1<<20 - 1024
	// bigFit is how many such answers the output budget keeps.
	bigFit = saga.MaxSagaOutputBytes / bigAnswer
	// bigUndoSteps is the step count of the saga whose compensations
	// answer bigAnswer bytes: its last step is refused, so all the others
	// are undone, answering more than twice the output budget.
	bigUndoSteps = 20
)

// misbehaveKinds are the answers that could not be stored as they are, by
// path: a 200 with a binary body, JSON with \u0000, invalid UTF-8, a number
// out of range, and a 422 whose body holds a NUL.
var misbehaveKinds = []struct {
	path, contentType, body string
	status                  int
	// want is the stored output (decoded) of a 2xx answer; for a refusal
	// wantError is in the step's error.
	want      any
	wantError string
}{
	{path: "/binary", contentType: "image/png", body: pngHeader, status: 200,
		want: map[string]any{"content_type": "image/png", "base64": base64.StdEncoding.EncodeToString([]byte(pngHeader))}},
	{path: "/nul", contentType: "application/json", body: `{"s":"a\u0000b"}`, status: 200,
		want: map[string]any{"s": "a\uFFFDb"}},
	{path: "/badutf8", contentType: "application/json", body: "{\"a\":\"\xff\"}", status: 200,
		want: map[string]any{"a": "\uFFFD"}},
	{path: "/hugenum", contentType: "application/json", body: `1e1000000`, status: 200,
		want: "1e1000000"},
	{path: "/refuse", contentType: "text/plain", body: "bad\x00request", status: 422,
		wantError: `bad\x00request`},
}

const pngHeader = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"

// misbehaver is a participant host whose paths misbehave (misbehaveKinds,
// /hang never answering), beside /ok and /undo answering at once and /big
// and /bigundo answering bigAnswer bytes of JSON.
type misbehaver struct {
	srv  *httptest.Server
	big  []byte
	stop chan struct{} // closed when the test ends: /hang returns

	mu    sync.Mutex
	calls map[string]int // by path

	hangStarted  atomic.Int64
	hangReturned atomic.Int64
}

func newMisbehaver(t *testing.T) *misbehaver {
	p := &misbehaver{calls: make(map[string]int), stop: make(chan struct{})}
	// Incompressible text, so that the database stores what it is given.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	p.big = make([]byte, bigAnswer)
	for i := range p.big {
		p.big[i] = alphabet[rand.IntN(len(alphabet))]
	}
	p.big[0], p.big[len(p.big)-1] = '"', '"'
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	t.Cleanup(func() { close(p.stop) }) // runs first: no handler outlives the test
	return p
}

func (p *misbehaver) serve(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	p.mu.Lock()
	p.calls[r.URL.Path]++
	p.mu.Unlock()
	for _, k := range misbehaveKinds {
		if r.URL.Path == k.path {
			w.Header().Set("Content-Type", k.contentType)
			w.WriteHeader(k.status)
			_, _ = io.WriteString(w, k.body)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/hang":
		p.hangStarted.Add(1)
		defer p.hangReturned.Add(1)
		select {
		case <-r.Context().Done():
		case <-p.stop:
		}
	case "/big", "/bigundo":
		_, _ = w.Write(p.big)
	case "/ok":
		_, _ = io.WriteString(w, `{"ok":true}`)
	case "/undo":
		_, _ = io.WriteString(w, `{"undone":true}`)
	default:
		http.Error(w, "no such path", http.StatusNotFound)
	}
}

func (p *misbehaver) callCounts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.calls)
}

// step is a step calling path, undone by /undo.
func (p *misbehaver) step(name, path string, timeout time.Duration) saga.StepDefinition {
	return saga.StepDefinition{
		Name:         name,
		Action:       saga.Request{Method: http.MethodPost, URL: p.srv.URL + path, TimeoutMs: timeout.Milliseconds()},
		Compensation: &saga.Request{Method: http.MethodPost, URL: p.srv.URL + "/undo", TimeoutMs: callTimeout.Milliseconds()},
		Retry:        &saga.RetryPolicy{MaxAttempts: 1},
	}
}

// count5xx counts the API's 5xx answers.
type count5xx struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (c *count5xx) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil && resp.StatusCode >= 500 {
		c.mu.Lock()
		c.seen = append(c.seen, fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, resp.Status))
		c.mu.Unlock()
	}
	return resp, err
}

// misbehaveSaga is one saga of the experiment.
type misbehaveSaga struct {
	group string
	kind  int // index in misbehaveKinds, for the group "misbehaving"
	def   saga.Definition
	id    string
	// bound is the time the saga's calls may take, by their timeouts: it
	// has ended by then and misbehaveSlack, or it is stuck.
	bound time.Duration

	submitted time.Time
	ended     time.Time
	// hangReturned is how many hanging calls had returned when the saga
	// was first seen ended.
	hangReturned int64
}

// TestMisbehavingParticipants runs, on one instance with few saga slots,
// sagas whose participants answer what PostgreSQL cannot store (a binary
// body, \u0000, invalid UTF-8, 1e1000000, a 422 with a NUL), sagas whose
// step hangs until its timeout, a saga of 100 steps answering 1 MiB each,
// and ordinary sagas on the same host as the hanging path. Every saga
// ends within its timeouts; the ordinary ones end while the hanging calls
// are still in flight; what is stored is the answers made storable; the
// large saga fails by the documented output budget and its storage stays
// within what the budget allows; the API never answers 5xx.
func TestMisbehavingParticipants(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	p := newMisbehaver(t)
	in := startInstance(t, instanceConfig{
		DatabaseURL:   dbURL,
		InstanceID:    "misbehave-1",
		MaxConcurrent: misbehaveSlots,
		Env: []string{
			fmt.Sprintf("PARTICIPANT_MAX_CONNS_PER_HOST=%d", misbehaveConns),
			"DB_MAX_CONNECTIONS=4",
		},
	})
	counter := &count5xx{next: http.DefaultTransport.(*http.Transport).Clone()}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: counter}
	t.Cleanup(hc.CloseIdleConnections)
	api, err := client.New(in.url, client.WithHTTPClient(hc))
	if err != nil {
		t.Fatal(err)
	}

	var hanging, rest []*misbehaveSaga
	for i := range misbehaveHanging {
		hanging = append(hanging, &misbehaveSaga{group: "hanging", def: saga.Definition{
			Name:  fmt.Sprintf("hang-%d", i),
			Steps: []saga.StepDefinition{p.step("wait", "/hang", hangTimeout), p.step("after", "/ok", callTimeout)},
		}, bound: hangTimeout + callTimeout}) // the hanging call and its compensation
	}
	for k, kind := range misbehaveKinds {
		// The misbehaving call comes second, so that a refusal has a step
		// to compensate.
		rest = append(rest, &misbehaveSaga{group: "misbehaving", kind: k, def: saga.Definition{
			Name: "misbehave" + strings.ReplaceAll(kind.path, "/", "-"),
			Steps: []saga.StepDefinition{p.step("before", "/ok", callTimeout),
				p.step("answer", kind.path, callTimeout)},
		}, bound: 3 * callTimeout})
	}
	for i := range misbehaveNormal {
		rest = append(rest, &misbehaveSaga{group: "normal", def: saga.Definition{
			Name: fmt.Sprintf("normal-%d", i),
			Steps: []saga.StepDefinition{p.step("a", "/ok", callTimeout), p.step("b", "/ok", callTimeout),
				p.step("c", "/ok", callTimeout)},
		}, bound: 3 * callTimeout})
	}
	// The steps whose answers fit the budget, the one that passes it, and
	// their compensations.
	big := &misbehaveSaga{group: "big", def: saga.Definition{Name: "big"}, bound: time.Duration(2*(bigFit+1)) * callTimeout}
	for i := range bigSteps {
		big.def.Steps = append(big.def.Steps, p.step(fmt.Sprintf("s%03d", i), "/big", callTimeout))
	}
	// The same answers from compensations: the budget holds for all of a
	// saga's outputs, not only its steps'.
	bigUndo := &misbehaveSaga{group: "big-undo", def: saga.Definition{Name: "big-undo"}, bound: time.Duration(2*bigUndoSteps-1) * callTimeout}
	for i := range bigUndoSteps - 1 {
		st := p.step(fmt.Sprintf("s%03d", i), "/ok", callTimeout)
		st.Compensation.URL = p.srv.URL + "/bigundo"
		bigUndo.def.Steps = append(bigUndo.def.Steps, st)
	}
	bigUndo.def.Steps = append(bigUndo.def.Steps, p.step("refused", "/refuse", callTimeout))
	rest = append(rest, big, bigUndo)
	all := append(slices.Clone(hanging), rest...)

	longest := slices.MaxFunc(all, func(a, b *misbehaveSaga) int { return int(a.bound - b.bound) }).bound
	ctx, cancel := context.WithTimeout(context.Background(), longest+misbehaveSlack+time.Minute)
	defer cancel()
	submit := func(group []*misbehaveSaga) {
		var wg sync.WaitGroup
		for _, s := range group {
			wg.Go(func() {
				s.submitted = time.Now()
				got, _, err := api.Submit(ctx, s.def)
				if err != nil {
					t.Errorf("submit %s: %v", s.def.Name, err)
					return
				}
				s.id = got.ID
			})
		}
		wg.Wait()
	}

	// The hanging calls first, all in flight; then everything else at once.
	began := time.Now()
	submit(hanging)
	for p.hangStarted.Load() < misbehaveHanging {
		if time.Since(began) > misbehaveSlack {
			t.Fatalf("%d of %d hanging calls started within %v", p.hangStarted.Load(), misbehaveHanging, misbehaveSlack)
		}
		time.Sleep(20 * time.Millisecond)
	}
	submit(rest)
	if t.Failed() {
		t.FailNow()
	}

	// Every saga ends within the timeouts of its calls and some slack; one
	// that has not is stuck.
	for {
		sagas, err := listAll(ctx, api)
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		returned := p.hangReturned.Load() // read after the list: ordering
		open := 0
		for _, s := range all {
			got, ok := sagas[s.id]
			switch {
			case !ok:
				t.Fatalf("saga %s (%s) is not listed", s.id, s.def.Name)
			case s.ended.IsZero() && got.Status.Terminal():
				s.ended, s.hangReturned = time.Now(), returned
			case s.ended.IsZero():
				open++
			}
		}
		if open == 0 {
			break
		}
		var stuck []string
		for _, s := range all {
			if s.ended.IsZero() && time.Since(s.submitted) > s.bound+misbehaveSlack {
				stuck = append(stuck, fmt.Sprintf("%s (%s): %s after %v", s.def.Name, s.id, sagas[s.id].Status, s.bound+misbehaveSlack))
			}
		}
		if len(stuck) > 0 {
			t.Fatalf("%d sagas stuck: %s", len(stuck), strings.Join(stuck, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The others ended while the hanging calls were in flight.
	for _, s := range rest {
		if !strings.HasPrefix(s.group, "big") && s.hangReturned > 0 {
			t.Errorf("%s saga %s ended after %d hanging calls had returned: it waited for them", s.group, s.def.Name, s.hangReturned)
		}
	}

	details := make(map[*misbehaveSaga]*httpapi.SagaJSON, len(all))
	for _, s := range all {
		got, err := api.Get(ctx, s.id)
		if err != nil {
			t.Fatalf("get %s: %v", s.def.Name, err)
		}
		details[s] = got
	}
	for _, s := range all {
		checkMisbehaveSaga(t, p, s, details[s])
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	checkStoredOutputs(ctx, t, conn)

	// Storage per saga, from the database.
	sizes := sagaSizes(ctx, t, conn)
	byGroup := map[string][]int64{}
	logged := map[string]bool{}
	for _, s := range all {
		sz := sizes[s.id]
		byGroup[s.group] = append(byGroup[s.group], sz.total())
		name := s.group
		if s.group == "misbehaving" {
			name = misbehaveKinds[s.kind].path
		}
		if !logged[name] {
			logged[name] = true // one of each group or kind
			t.Logf("stored for %-9s %s", name, sz)
		}
		if s != big && s != bigUndo && sz.total() > 64<<10 {
			t.Errorf("saga %s stored %d bytes; its answers are a few bytes each", s.def.Name, sz.total())
		}
	}
	// The sagas answered 1 MiB a call: the rows of their steps and
	// compensations hold at most the budget B of outputs, the events that
	// record them (StepCompleted, CompensationCompleted) B again, the
	// checkpoints (at 1, 2, 4, … completed steps and the last) at most 3B,
	// and the rest (definition, other events, saga row) under 2 MiB.
	const budget = saga.MaxSagaOutputBytes
	bound := int64(5*budget + 2<<20)
	for _, b := range []struct {
		s    *misbehaveSaga
		path string
	}{{big, "/big"}, {bigUndo, "/bigundo"}} {
		s, sz := b.s, sizes[b.s.id]
		t.Logf("the %s saga (%d steps, %d answers of %d bytes) stored %.1f MiB, bound 5 × %d MiB (outputs in rows, again in events, checkpoints ≤ 3 × outputs) + 2 MiB = %.0f MiB",
			s.group, len(s.def.Steps), p.callCounts()[b.path], bigAnswer, mib(sz.total()), budget>>20, mib(bound))
		if sz.total() > bound {
			t.Errorf("the %s saga stored %d bytes, more than the bound of %d", s.group, sz.total(), bound)
		}
		if out := sz.stepBytes + sz.compensationBytes; out > budget+1<<20 {
			t.Errorf("the %s saga's step and compensation rows hold %d bytes, more than the budget of %d and 1 MiB", s.group, out, budget)
		}
	}
	t.Logf("without the budget and doubling checkpoints, the outputs alone of %d steps would be %.0f MiB and their checkpoints about %.1f GiB",
		bigSteps, mib(int64(bigSteps*bigAnswer)), float64(bigSteps*(bigSteps+1)/2)*bigAnswer/(1<<30))
	bs := sizes[big.id]
	if bs.checkpointBytes > 3*bs.stepBytes {
		t.Errorf("the large saga's checkpoints hold %d bytes, more than 3 × its step rows' %d", bs.checkpointBytes, bs.stepBytes)
	}
	if maxCP := int64(bits.Len(uint(bigFit)) + 1); bs.checkpoints > maxCP {
		t.Errorf("the large saga wrote %d checkpoints, want at most %d (powers of two and the last)", bs.checkpoints, maxCP)
	}

	// Times, by group, from the group's submit to its last end.
	for _, g := range []string{"normal", "misbehaving", "big", "big-undo", "hanging"} {
		var first, last time.Time
		for _, s := range all {
			if s.group != g {
				continue
			}
			if first.IsZero() || s.submitted.Before(first) {
				first = s.submitted
			}
			if s.ended.After(last) {
				last = s.ended
			}
		}
		t.Logf("%-11s %d sagas ended %v after their submit; stored bytes per saga %v", g, len(byGroup[g]), last.Sub(first).Round(10*time.Millisecond), byGroup[g])
	}
	t.Logf("calls to the participant by path: %v", p.callCounts())
	t.Logf("hanging calls: %d started, all in flight while the %d normal and %d misbehaving sagas ended", p.hangStarted.Load(), misbehaveNormal, len(misbehaveKinds))

	counter.mu.Lock()
	defer counter.mu.Unlock()
	for _, s := range counter.seen {
		t.Errorf("the API answered %s", s)
	}
}

// checkMisbehaveSaga checks the end of one saga against its group.
func checkMisbehaveSaga(t *testing.T, p *misbehaver, s *misbehaveSaga, got *httpapi.SagaJSON) {
	t.Helper()
	stepsOf := func() string {
		var b []string
		for _, st := range got.Steps {
			b = append(b, string(st.Status))
		}
		return strings.Join(b, ",")
	}
	switch s.group {
	case "normal":
		if got.Status != saga.SagaStatusCompleted {
			t.Errorf("normal saga %s ended %s (%s), want Completed", s.def.Name, got.Status, got.Error)
		}
	case "hanging":
		// The call times out: its effect is unknown, so it is compensated.
		st := got.Steps[0]
		if got.Status != saga.SagaStatusCompensated || st.Status != saga.StepStatusFailed || st.Error == "" ||
			st.Compensation == nil || st.Compensation.Status != saga.CompensationStatusCompleted {
			t.Errorf("hanging saga %s ended %s (%s), steps %s; want Compensated, its hanging step failed and compensated",
				s.def.Name, got.Status, got.Error, stepsOf())
		}
	case "misbehaving":
		kind := misbehaveKinds[s.kind]
		st := got.Steps[1]
		if kind.status >= 300 {
			if got.Status != saga.SagaStatusCompensated || st.Status != saga.StepStatusFailed || !strings.Contains(st.Error, kind.wantError) {
				t.Errorf("saga %s ended %s, step %s with error %q; want Compensated, the step Failed quoting %q",
					s.def.Name, got.Status, st.Status, st.Error, kind.wantError)
			}
			return
		}
		if got.Status != saga.SagaStatusCompleted || st.Status != saga.StepStatusCompleted {
			t.Errorf("saga %s ended %s (%s), steps %s; want Completed", s.def.Name, got.Status, got.Error, stepsOf())
			return
		}
		var out any
		if err := json.Unmarshal(st.Output, &out); err != nil || !reflect.DeepEqual(out, kind.want) {
			t.Errorf("saga %s: output %s (%v), want %#v", s.def.Name, st.Output, err, kind.want)
		}
	case "big":
		// The documented budget: 8 answers fit, the ninth would pass it,
		// so that step fails (uncertain) and the saga compensates.
		fit := bigFit // the documented budget
		if got.Status != saga.SagaStatusCompensated {
			t.Errorf("the large saga ended %s (%s), want Compensated by the output budget", got.Status, got.Error)
		}
		for i, st := range got.Steps {
			switch {
			case i < fit:
				var out string
				if st.Status != saga.StepStatusCompleted || json.Unmarshal(st.Output, &out) != nil || out != string(p.big[1:len(p.big)-1]) {
					t.Errorf("large saga step %d: %s with an output of %d bytes, want Completed with the answer", i, st.Status, len(st.Output))
				}
			case i == fit:
				if st.Status != saga.StepStatusFailed || !strings.Contains(st.Error, "budget") {
					t.Errorf("large saga step %d: %s (%q), want Failed naming the budget", i, st.Status, st.Error)
				}
			default:
				if st.Status == saga.StepStatusCompleted || st.Status == saga.StepStatusExecuting || st.Status == saga.StepStatusFailed {
					t.Errorf("large saga step %d: %s, want never run", i, st.Status)
				}
				continue
			}
			if st.Compensation == nil || st.Compensation.Status != saga.CompensationStatusCompleted {
				t.Errorf("large saga step %d: compensation %+v, want Completed", i, st.Compensation)
			}
		}
		if n := p.callCounts()["/big"]; n != fit+1 {
			t.Errorf("the large saga's participant was called %d times, want %d", n, fit+1)
		}
	case "big-undo":
		// Every compensation is done; the answers are kept while they fit
		// the budget, later ones are not (null).
		fit := (saga.MaxSagaOutputBytes - (bigUndoSteps-1)*len(`{"ok":true}`)) / bigAnswer
		kept := 0
		if got.Status != saga.SagaStatusCompensated {
			t.Errorf("the big-undo saga ended %s (%s), want Compensated", got.Status, got.Error)
		}
		for i, st := range got.Steps[:bigUndoSteps-1] {
			c := st.Compensation
			if c == nil || c.Status != saga.CompensationStatusCompleted {
				t.Errorf("big-undo saga step %d: compensation %+v, want Completed", i, c)
				continue
			}
			var out string
			switch {
			case json.Unmarshal(c.Output, &out) == nil && out == string(p.big[1:len(p.big)-1]):
				kept++
			case string(c.Output) != "null":
				t.Errorf("big-undo saga step %d: compensation output of %d bytes %.80s…, want the answer or null", i, len(c.Output), c.Output)
			}
		}
		if kept != fit {
			t.Errorf("the big-undo saga kept %d compensation answers, want the %d that fit the budget", kept, fit)
		}
	}
}

// checkStoredOutputs reads every output as PostgreSQL holds it and checks
// that it is JSON the service could store again.
func checkStoredOutputs(ctx context.Context, t *testing.T, conn *pgx.Conn) {
	t.Helper()
	rows, err := conn.Query(ctx, `SELECT saga_id::text, step_index, output_data::text FROM saga_steps WHERE output_data IS NOT NULL
		UNION ALL SELECT saga_id::text, step_index, output_data::text FROM saga_compensations WHERE output_data IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var id string
		var step int
		var out string
		if err := rows.Scan(&id, &step, &out); err != nil {
			t.Fatal(err)
		}
		n++
		if p := saga.CheckStorableJSON([]byte(out)); p != nil {
			t.Errorf("saga %s step %d: stored output %.200q: %s %s", id, step, out, p.Path, p.Message)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("no outputs stored")
	}
}

// sagaSize is what one saga takes in the database: pg_column_size of its
// rows (TOASTed values as stored, compressed or not).
type sagaSize struct {
	sagaBytes, stepBytes, compensationBytes int64
	checkpoints, checkpointBytes            int64
	events, eventBytes                      int64
}

func (s sagaSize) total() int64 {
	return s.sagaBytes + s.stepBytes + s.compensationBytes + s.checkpointBytes + s.eventBytes
}

func (s sagaSize) String() string {
	return fmt.Sprintf("%d bytes: saga row %d, steps %d, compensations %d, %d checkpoints %d, %d events %d",
		s.total(), s.sagaBytes, s.stepBytes, s.compensationBytes, s.checkpoints, s.checkpointBytes, s.events, s.eventBytes)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// sagaSizes measures every saga of the database.
func sagaSizes(ctx context.Context, t *testing.T, conn *pgx.Conn) map[string]sagaSize {
	t.Helper()
	rows, err := conn.Query(ctx, `
		SELECT s.id::text, pg_column_size(s.*),
			(SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM saga_steps r WHERE r.saga_id = s.id),
			(SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM saga_compensations r WHERE r.saga_id = s.id),
			(SELECT count(*) FROM saga_checkpoints r WHERE r.saga_id = s.id),
			(SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM saga_checkpoints r WHERE r.saga_id = s.id),
			(SELECT count(*) FROM saga_events r WHERE r.saga_id = s.id),
			(SELECT coalesce(sum(pg_column_size(r.*)), 0) FROM saga_events r WHERE r.saga_id = s.id)
		FROM sagas s`)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]sagaSize)
	for rows.Next() {
		var id string
		var s sagaSize
		if err := rows.Scan(&id, &s.sagaBytes, &s.stepBytes, &s.compensationBytes, &s.checkpoints, &s.checkpointBytes, &s.events, &s.eventBytes); err != nil {
			t.Fatal(err)
		}
		out[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
