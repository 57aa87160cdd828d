package sim

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// client submits the run's sagas over the arrival window to any instance
// that is up, and submits again (same idempotency key) when an answer
// fails or does not come.
type client struct {
	w       *world
	defs    []saga.Definition
	acked   []saga.ID // by saga number: the saga the client was told of
	pending int
}

// submitTimeout is how long the client waits for an answer.
const submitTimeout = 10 * time.Second

func newClient(w *world) *client {
	c := &client{w: w, acked: make([]saga.ID, w.p.sagas), pending: w.p.sagas}
	for k := range w.p.sagas {
		c.defs = append(c.defs, c.definition(k))
	}
	return c
}

func (c *client) start() {
	for k := range c.defs {
		c.w.after(c.w.between(0, c.w.p.arrival), func() { c.submit(k) })
	}
}

// submit sends saga k to an instance that is up.
func (c *client) submit(k int) {
	w := c.w
	if !c.acked[k].IsZero() {
		return
	}
	in := w.anyUp()
	if in == nil {
		w.after(w.between(10*time.Millisecond, time.Second), func() { c.submit(k) })
		return
	}
	answered := false
	in.submit(c.defs[k], w.newID(), func(s *saga.Saga, _ bool, err error) {
		if answered || !c.acked[k].IsZero() {
			return
		}
		answered = true
		if err != nil {
			w.fault("client submits again after an error")
			w.after(w.between(10*time.Millisecond, time.Second), func() { c.submit(k) })
			return
		}
		c.acked[k] = s.ID
		c.pending--
		w.stats.Sagas++
	})
	w.after(submitTimeout, func() {
		if !answered && c.acked[k].IsZero() {
			answered = true
			w.fault("client submits again after no answer")
			c.submit(k)
		}
	})
}

// anyUp returns an instance that is up and not stopping, at random, or
// nil.
func (w *world) anyUp() *instance {
	var up []*instance
	for _, in := range w.instances {
		if in.up && !in.stopping {
			up = append(up, in)
		}
	}
	if len(up) == 0 {
		return nil
	}
	return up[w.rng.IntN(len(up))]
}

// definition draws saga k: a chain or a graph of 1 to 6 steps.
func (c *client) definition(k int) saga.Definition {
	w := c.w
	rng := w.rng
	tx := w.newID()
	def := saga.Definition{
		Name:           "sim",
		TransactionID:  &tx,
		Context:        json.RawMessage(`{"k":` + strconv.Itoa(k) + `}`),
		IdempotencyKey: "key-" + strconv.Itoa(k),
		MaxParallel:    1 + rng.IntN(4),
	}
	graph := rng.Float64() < w.p.graphs
	n := 1 + rng.IntN(6)
	ms := func(vs ...int64) int64 { return vs[rng.IntN(len(vs))] }
	for i := range n {
		st := saga.StepDefinition{
			Name: "s" + strconv.Itoa(i),
			Action: saga.Request{Method: "POST", URL: "http://participant.sim/act/" + strconv.Itoa(i),
				Body: json.RawMessage(`{"i":` + strconv.Itoa(i) + `}`), TimeoutMs: ms(0, 50, 500, 5000)},
			Retry: &saga.RetryPolicy{
				MaxAttempts:      1 + rng.IntN(4),
				InitialBackoffMs: ms(1, 10, 100, 1000),
			},
		}
		st.Retry.MaxBackoffMs = st.Retry.InitialBackoffMs * ms(1, 10, 50)
		if rng.IntN(100) < 85 {
			st.Compensation = &saga.Request{Method: "POST", URL: "http://participant.sim/undo/" + strconv.Itoa(i), TimeoutMs: ms(0, 500)}
		}
		if graph {
			st.DependsOn = []string{}
			for j := range i {
				if rng.IntN(3) == 0 {
					st.DependsOn = append(st.DependsOn, "s"+strconv.Itoa(j))
				}
			}
		}
		def.Steps = append(def.Steps, st)
	}
	if rng.IntN(100) < 15 {
		def.TimeoutMs = ms(100, 2000, 30000)
	}
	if err := def.Validate(); err != nil {
		panic(fmt.Sprintf("sim: the workload drew an invalid definition: %v", err))
	}
	return def
}

// operator sends pause, resume, cancel and retry requests at random
// moments of the storm; once it is over, it resumes what is paused and
// retries what failed, a few times, so that every saga can end.
type operator struct {
	w       *world
	retries map[saga.ID]int
}

// operatorRetries is how often the operator retries a Failed saga once
// the storm is over.
const operatorRetries = 3

func newOperator(w *world) *operator { return &operator{w: w, retries: map[saga.ID]int{}} }

func (o *operator) start() {
	w := o.w
	if w.p.operatorEvery <= 0 {
		return
	}
	var next func()
	next = func() {
		if !w.faulty {
			return
		}
		o.request()
		w.after(w.between(0, 2*w.p.operatorEvery), next)
	}
	w.after(w.between(0, 2*w.p.operatorEvery), next)
	// Instances stop gracefully now and then.
	for _, in := range w.instances {
		var stop func()
		stop = func() {
			if !w.faulty {
				return
			}
			if w.chance(w.p.intensity / 2) {
				in.gracefulStop()
			}
			w.after(w.between(5*time.Second, 60*time.Second), stop)
		}
		w.after(w.between(5*time.Second, 60*time.Second), stop)
	}
}

// request sends one request about a random saga the store holds.
func (o *operator) request() {
	w := o.w
	if len(w.db.order) == 0 {
		return
	}
	id := w.db.order[w.rng.IntN(len(w.db.order))]
	actions := []saga.ControlAction{saga.ControlPause, saga.ControlPause, saga.ControlResume, saga.ControlResume, saga.ControlCancel, saga.ControlRetry}
	a := actions[w.rng.IntN(len(actions))]
	if in := w.anyUp(); in != nil {
		w.fault("operator " + string(a))
		in.control(id, a, func(error) {})
	}
}

// sweep, after the storm, resumes paused sagas and retries failed ones,
// every half second until the run ends.
func (o *operator) sweep() {
	w := o.w
	var paused, failed []saga.ID
	for id, st := range w.db.status {
		switch {
		case st == saga.SagaStatusPaused:
			paused = append(paused, id)
		case st == saga.SagaStatusFailed && o.retries[id] < operatorRetries:
			failed = append(failed, id)
		}
	}
	slices.SortFunc(paused, compareIDs)
	slices.SortFunc(failed, compareIDs)
	for _, id := range paused {
		if in := w.anyUp(); in != nil {
			in.control(id, saga.ControlResume, func(error) {})
		}
	}
	for _, id := range failed {
		if in := w.anyUp(); in != nil {
			o.retries[id]++
			in.control(id, saga.ControlRetry, func(error) {})
		}
	}
	w.after(500*time.Millisecond, o.sweep)
}

// waiting counts the Failed sagas the operator will still retry.
func (o *operator) waiting() int {
	n := 0
	for id := range o.w.db.failed {
		if o.retries[id] < operatorRetries {
			n++
		}
	}
	return n
}
