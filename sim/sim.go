package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Config configures one run. Everything else a run does is drawn from
// its seed.
type Config struct {
	Seed uint64
	// Sagas is how many sagas the clients submit (default
	// SagasPerRunDefault).
	Sagas int
	// Trace, when set, receives a line for everything that happens to
	// the saga TraceSaga (all sagas when it is zero): writes, calls,
	// deliveries, claims. For finding out why a run failed.
	Trace     func(string)
	TraceSaga saga.ID
	// ReplayEvery > 1 replays the trail of one saga in ReplayEvery at the
	// end of the run (the replay is most of a run's cost under the race
	// detector); 0 or 1: every saga's.
	ReplayEvery int
}

// SagasPerRunDefault is the number of sagas of a run when Config.Sagas is
// zero.
const SagasPerRunDefault = 500

// Stats is what a run did and found.
type Stats struct {
	Seed   uint64
	Sagas  int                     // submitted and acknowledged
	Ended  map[saga.SagaStatus]int // by end status
	Faults map[string]int          // injected, by kind
	// Violations counts broken invariants; Messages describes the first
	// ones.
	Violations int
	Messages   []string
	Replayed   int // sagas whose trail was replayed at the end
	Events     int // simulated events
	Writes     int // transitions committed
	Calls      int // participant calls made
	Virtual    time.Duration
	Trace      uint64 // a digest of what happened, equal for equal seeds
	Params     string
}

// Add adds o's counts to s.
func (s *Stats) Add(o *Stats) {
	if s.Ended == nil {
		s.Ended = map[saga.SagaStatus]int{}
	}
	if s.Faults == nil {
		s.Faults = map[string]int{}
	}
	s.Sagas += o.Sagas
	for k, v := range o.Ended {
		s.Ended[k] += v
	}
	for k, v := range o.Faults {
		s.Faults[k] += v
	}
	s.Violations += o.Violations
	s.Replayed += o.Replayed
	s.Events += o.Events
	s.Writes += o.Writes
	s.Calls += o.Calls
	s.Virtual += o.Virtual
}

// FaultSummary lists the faults by kind, sorted, as "kind=n".
func (s *Stats) FaultSummary() string {
	keys := make([]string, 0, len(s.Faults))
	total := 0
	for k, v := range s.Faults {
		keys = append(keys, k)
		total += v
	}
	slices.Sort(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d faults:", total)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, s.Faults[k])
	}
	return b.String()
}

// params are the knobs of a run, drawn from its seed.
type params struct {
	sagas         int
	instances     int
	leaseFor      time.Duration
	claimInterval time.Duration
	claimBatch    int
	maxConcurrent int
	arrival       time.Duration // the sagas arrive over this window
	storm         time.Duration // faults are injected for this long
	intensity     float64       // scale of every fault probability
	graphs        float64       // share of sagas that are graphs
	skew          time.Duration // instance wall clocks differ by up to this
	drift         float64       // instance clocks run up to this much fast or slow
	operatorEvery time.Duration // mean time between operator requests
}

func drawParams(rng *rand.Rand, sagas int) params {
	pick := func(vs ...time.Duration) time.Duration { return vs[rng.IntN(len(vs))] }
	p := params{
		sagas:         sagas,
		instances:     2 + rng.IntN(3),
		leaseFor:      pick(time.Second, 3*time.Second, 15*time.Second),
		claimInterval: pick(100*time.Millisecond, time.Second),
		claimBatch:    []int{4, 64}[rng.IntN(2)],
		maxConcurrent: []int{8, 64, 1000}[rng.IntN(3)],
		arrival:       pick(2*time.Second, 20*time.Second, 60*time.Second),
		intensity:     []float64{0, 0.5, 1, 2}[rng.IntN(4)],
		graphs:        []float64{0, 0.5, 1}[rng.IntN(3)],
		skew:          pick(0, time.Second, time.Hour),
		drift:         []float64{0, 0.001, 0.02}[rng.IntN(3)],
	}
	p.storm = p.arrival + pick(0, 10*time.Second, 60*time.Second)
	p.operatorEvery = p.arrival / time.Duration(max(1, sagas/8))
	return p
}

func (p params) String() string {
	return fmt.Sprintf("instances=%d lease=%v claim_interval=%v claim_batch=%d max_concurrent=%d arrival=%v storm=%v intensity=%g graphs=%g skew=%v drift=%g",
		p.instances, p.leaseFor, p.claimInterval, p.claimBatch, p.maxConcurrent, p.arrival, p.storm, p.intensity, p.graphs, p.skew, p.drift)
}

// Run runs one simulation and checks its invariants.
func Run(cfg Config) *Stats {
	if cfg.Sagas <= 0 {
		cfg.Sagas = SagasPerRunDefault
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5a6a))
	w := &world{
		seed:  cfg.Seed,
		rng:   rng,
		p:     drawParams(rng, cfg.Sagas),
		trace: newTrace(),
		stats: &Stats{Seed: cfg.Seed, Ended: map[saga.SagaStatus]int{}, Faults: map[string]int{}},
	}
	w.faulty = w.p.intensity > 0
	w.tracef, w.traceSaga, w.replayEvery = cfg.Trace, cfg.TraceSaga, cfg.ReplayEvery
	w.stats.Params = w.p.String()
	w.db = newStore(w)
	w.parts = newParticipants(w)
	for i := range w.p.instances {
		w.instances = append(w.instances, newInstance(w, i))
	}
	w.client = newClient(w)
	w.ops = newOperator(w)
	w.limit = w.p.storm + 2*time.Hour
	w.after(w.p.storm, w.calm)
	for _, in := range w.instances {
		in.boot()
	}
	w.client.start()
	w.ops.start()
	maxSteps := 2000 * cfg.Sagas
	for w.step() {
		w.stats.Events++
		if w.finished() || w.aborted {
			break
		}
		if w.stats.Events > maxSteps {
			w.violate(saga.NilID, "the run did not end within %d steps", maxSteps)
			break
		}
		if w.now > w.limit {
			w.violate(saga.NilID, "sagas still running %v after the storm ended", w.limit-w.p.storm)
			break
		}
	}
	w.check()
	w.stats.Virtual = w.now
	w.stats.Trace = w.trace.Sum64()
	return w.stats
}

// calm ends the storm: no more faults, participants answer well, and
// every instance is up.
func (w *world) calm() {
	w.faulty = false
	for _, in := range w.instances {
		if !in.up {
			in.boot()
		}
		if in.stalledUntil > w.now {
			in.stalledUntil = w.now
		}
	}
	w.ops.sweep()
}

// finished reports whether the run is over: every saga submitted, the
// storm over, and every saga ended (Failed ones retried by the operator
// until they end otherwise, or given up on).
func (w *world) finished() bool {
	return !w.faulty && w.client.pending == 0 && w.db.running == 0 && w.ops.waiting() == 0
}
