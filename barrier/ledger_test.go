package barrier_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/barrier"
	"github.com/tracseq/transaction-service/engine"
	"github.com/tracseq/transaction-service/internal/pgtest"
	"github.com/tracseq/transaction-service/participant"
	"github.com/tracseq/transaction-service/postgres"
)

// network sits between the coordinator and the participant and misbehaves
// the way networks and slow participants do: an action times out and is
// held back (delivered later, after its step's compensation when there is
// one), is delivered with its answer lost to a timeout, or is delivered
// twice. A timeout is answered as a gateway answers it (504), so that the
// test does not depend on how fast a shared machine runs.
type network struct {
	t      testing.TB
	target string
	client *http.Client

	mu       sync.Mutex
	rnd      *rand.Rand
	held     map[string][]*heldCall // by step key (saga:step)
	late     sync.WaitGroup
	counts   map[string]int
	blocked  int // late actions the barrier refused because their compensation came first
	replayed int // late actions answered with their first answer
}

type heldCall struct {
	method, uri string
	header      http.Header
	body        []byte
}

func newNetwork(t testing.TB, target string, seed uint64) *network {
	return &network{t: t, target: target, client: &http.Client{Timeout: 30 * time.Second},
		rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), held: map[string][]*heldCall{}, counts: map[string]int{}}
}

func (n *network) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key, err := barrier.KeyFromRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c := &heldCall{method: r.Method, uri: r.URL.RequestURI(), header: r.Header.Clone(), body: body}
	step := key.Saga + ":" + key.Step
	fate := "deliver"
	if key.Op == barrier.OpAction {
		n.mu.Lock()
		switch x := n.rnd.Float64(); {
		case x < 0.15:
			fate = "hold"
		case x < 0.25:
			fate = "lose answer"
		case x < 0.30:
			fate = "duplicate"
		}
		n.mu.Unlock()
	}
	n.count(fate)
	switch fate {
	case "hold":
		n.mu.Lock()
		n.held[step] = append(n.held[step], c)
		n.mu.Unlock()
		gatewayTimeout(w)
		return
	case "lose answer":
		n.deliver(c)
		gatewayTimeout(w)
		return
	case "duplicate":
		n.deliver(c)
	}
	status, answer := n.deliver(c)
	if key.Op == barrier.OpCompensation && status == http.StatusOK {
		n.release(step)
	}
	w.WriteHeader(status)
	_, _ = w.Write(answer)
}

// gatewayTimeout answers as a gateway whose call to the participant timed
// out: 504, transient and uncertain for the coordinator, as its own timeout
// would be, without making the test wait for one.
func gatewayTimeout(w http.ResponseWriter) {
	http.Error(w, "participant timed out", http.StatusGatewayTimeout)
}

func (n *network) count(what string) {
	n.mu.Lock()
	n.counts[what]++
	n.mu.Unlock()
}

// deliver sends a call to the participant and returns its answer.
func (n *network) deliver(c *heldCall) (int, []byte) {
	req, _ := http.NewRequest(c.method, n.target+c.uri, bytes.NewReader(c.body))
	req.Header = c.header.Clone()
	resp, err := n.client.Do(req)
	if err != nil {
		return http.StatusBadGateway, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// release delivers, late, the actions held back for step.
func (n *network) release(step string) {
	n.mu.Lock()
	calls := n.held[step]
	delete(n.held, step)
	n.mu.Unlock()
	for _, c := range calls {
		n.late.Go(func() { n.deliverLate(c) })
	}
}

func (n *network) deliverLate(c *heldCall) {
	status, body := n.deliver(c)
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case status == http.StatusConflict && bytes.Contains(body, []byte("after its compensation")):
		n.blocked++
	default:
		n.replayed++
	}
}

// releaseAll delivers every action still held (those of sagas that were
// not compensated) and waits for every late delivery.
func (n *network) releaseAll() {
	n.mu.Lock()
	steps := make([]string, 0, len(n.held))
	for s := range n.held {
		steps = append(steps, s)
	}
	n.mu.Unlock()
	for _, s := range steps {
		n.release(s)
	}
	n.late.Wait()
}

// TestLedgerStaysConsistent runs 1,000 sagas of three steps, half in the
// native protocol and half in DTM's, against a ledger participant behind
// the barrier, through a network that holds actions past their timeout and
// delivers them after their compensation, loses answers and duplicates
// calls; a fifth of the sagas have a step the participant refuses. At the
// end every completed saga booked each step exactly once and every
// compensated one booked nothing, net.
func TestLedgerStaysConsistent(t *testing.T) {
	t.Parallel()
	const sagas, steps = 1000, 3
	ctx := context.Background()
	p := newParticipant(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("network seed %d", seed)
	net := newNetwork(t, p.srv.URL, seed)
	front := httptest.NewServer(net)
	t.Cleanup(front.Close)

	st, err := postgres.Open(ctx, postgres.Config{URL: pgtest.NewDatabase(t), MaxConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	if _, err := postgres.Migrate(ctx, st.Pool(), nil); err != nil {
		t.Fatal(err)
	}
	coord, err := engine.New(st, engine.Config{InstanceID: "ledger", ClaimInterval: 50 * time.Millisecond,
		MaxConcurrentSagas: 100, Invoker: participant.New(participant.Config{})})
	if err != nil {
		t.Fatal(err)
	}
	if err := coord.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = coord.Stop(ctx)
	})

	type submitted struct {
		id   saga.ID
		key  string   // the ledger's saga key: the saga id, or the gid
		step []string // the ledger's step keys
	}
	all := make([]submitted, sagas)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range sagas {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dtm := i%2 == 1
			gid := "ledger-" + strconv.Itoa(i)
			def := saga.Definition{Name: "ledger", IdempotencyKey: gid}
			for j := range steps {
				u := front.URL + "/book"
				if dtm {
					u += "?gid=" + gid
				}
				if i%5 == 0 && j == steps-1 {
					u += map[bool]string{true: "&", false: "?"}[dtm] + "answer=409"
				}
				req := saga.Request{Method: http.MethodPost, URL: u, Body: []byte(`{}`), TimeoutMs: 10_000}
				if dtm {
					req.Protocol = saga.ProtocolDTM
				}
				comp := req
				comp.URL = strings.Replace(comp.URL, "answer=409", "answer=200", 1)
				def.Steps = append(def.Steps, saga.StepDefinition{
					Name: "s" + strconv.Itoa(j), Action: req, Compensation: &comp,
					Retry: &saga.RetryPolicy{MaxAttempts: 2, InitialBackoffMs: 5, MaxBackoffMs: 20},
				})
			}
			s, _, err := coord.Submit(ctx, def)
			if err != nil {
				t.Errorf("submit %d: %v", i, err)
				return
			}
			sub := submitted{id: s.ID, key: s.ID.String()}
			if dtm {
				sub.key = gid
			}
			for j := range steps {
				if dtm {
					sub.step = append(sub.step, participant.DTMBranchID(j))
				} else {
					sub.step = append(sub.step, strconv.Itoa(j))
				}
			}
			all[i] = sub
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	statuses := map[saga.SagaStatus]int{}
	retried := 0
	for _, sub := range all {
		var s *saga.Saga
		for try := 0; ; try++ {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			s, err = coord.Wait(wctx, sub.id)
			cancel()
			if err != nil || !s.Status.Terminal() {
				t.Fatalf("saga %s did not end: %v %v", sub.id, s, err)
			}
			if s.Status != saga.SagaStatusFailed || try == 3 {
				break
			}
			// A compensation that could not finish (the participant was
			// overloaded past every attempt): what an operator does.
			retried++
			if _, err := coord.Control(ctx, sub.id, saga.ControlRetry); err != nil {
				t.Fatalf("retry saga %s: %v", sub.id, err)
			}
		}
		statuses[s.Status]++
		sub := sub
		defer func(status saga.SagaStatus) {
			for _, step := range sub.step {
				sum, rows := p.net(t, sub.key, step)
				switch {
				case status == saga.SagaStatusCompleted && (sum != 10 || rows != 1):
					t.Errorf("completed saga %s step %s: ledger %d in %d rows, want exactly one booking", sub.key, step, sum, rows)
				case status == saga.SagaStatusCompensated && sum != 0:
					t.Errorf("compensated saga %s step %s: ledger %d in %d rows, want no net effect", sub.key, step, sum, rows)
				case status != saga.SagaStatusCompleted && status != saga.SagaStatusCompensated:
					t.Errorf("saga %s ended %s", sub.key, status)
				}
			}
		}(s.Status)
	}
	// Deliver the actions still held back (of sagas that completed after a
	// retry), then check the ledger (the deferred checks above).
	net.releaseAll()
	net.mu.Lock()
	defer net.mu.Unlock()
	t.Logf("sagas: %v (%d retried by the operator after a compensation could not finish); calls: %v; late actions: %d refused because their compensation came first, %d answered with their first answer",
		statuses, retried, net.counts, net.blocked, net.replayed)
	if statuses[saga.SagaStatusCompleted] == 0 || statuses[saga.SagaStatusCompensated] == 0 || net.blocked == 0 {
		t.Errorf("the run did not cover completed sagas, compensated ones and actions arriving after their compensation")
	}
}
