package sim_test

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/sim"
)

// Defaults of TestSimulate: the sagas of a CI run, and the share of
// them whose trail is replayed under the race detector.
const (
	sagasDefault    = 100_000
	replayRaceEvery = 8
)

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// splitmix derives the seed of run i from the seed of the whole test.
func splitmix(seed uint64, i int) uint64 {
	z := seed + uint64(i+1)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// TestSimulate runs simulated sagas under faults and checks every
// invariant after every run (see docs/simulation.md).
//
//	SIM_SAGAS=n        sagas in all (default 100000)
//	SIM_DURATION=d     instead: run until d has passed (e.g. 1h)
//	SIM_RUN_SAGAS=n    sagas per run (default 500)
//	SIM_MASTER_SEED=s  the seed the runs' seeds derive from (default: the clock)
//	SIM_SEED=s         one run with that seed: replays a failing run
//	SIM_TRACE=id       with SIM_SEED: trace what happens to saga id (or all)
//	SIM_REPLAY=all     under the race detector, replay every trail (default: one in 8)
func TestSimulate(t *testing.T) {
	perRun := envInt(t, "SIM_RUN_SAGAS", sim.SagasPerRunDefault)
	if v := os.Getenv("SIM_SEED"); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SIM_SEED=%q: want an unsigned integer", v)
		}
		cfg := sim.Config{Seed: seed, Sagas: perRun}
		if v := os.Getenv("SIM_TRACE"); v != "" {
			// SIM_TRACE=all, or a saga id: what happened to it.
			cfg.Trace = func(s string) { t.Log(s) }
			if v != "all" {
				id, err := saga.ParseID(v)
				if err != nil {
					t.Fatalf("SIM_TRACE=%q: want all or a saga id", v)
				}
				cfg.TraceSaga = id
			}
		}
		st := sim.Run(cfg)
		report(t, st, perRun)
		t.Logf("seed %d: %d sagas %v, %s, %d writes, %d calls, %d events, %v virtual, params %s",
			seed, st.Sagas, ended(st), st.FaultSummary(), st.Writes, st.Calls, st.Events, st.Virtual, st.Params)
		return
	}
	// A run allocates a lot that lives briefly: less collecting.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	total := envInt(t, "SIM_SAGAS", sagasDefault)
	var until time.Time
	if v := os.Getenv("SIM_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("SIM_DURATION=%q: want a positive duration", v)
		}
		until = time.Now().Add(d)
	}
	master := uint64(time.Now().UnixNano())
	if v := os.Getenv("SIM_MASTER_SEED"); v != "" {
		var err error
		if master, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("SIM_MASTER_SEED=%q: want an unsigned integer", v)
		}
	}
	runs := (total + perRun - 1) / perRun
	// Under the race detector a replay of the trail costs as much as the
	// rest of a saga: one saga in replayRaceEvery is replayed (SIM_REPLAY=all
	// replays them all); every other check holds for every saga. The
	// simulation is single-threaded per run: the race detector has nothing
	// of its own to find in it.
	replayEvery := 1
	if raceDetector && os.Getenv("SIM_REPLAY") != "all" {
		replayEvery = replayRaceEvery
	}
	t.Logf("master seed %d (SIM_MASTER_SEED=%d repeats this test), %d sagas per run", master, master, perRun)

	start := time.Now()
	var (
		mu   sync.Mutex
		sum  sim.Stats
		next int
		bad  []*sim.Stats
	)
	take := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if until.IsZero() && next >= runs || !until.IsZero() && time.Now().After(until) {
			return 0, false
		}
		next++
		return next - 1, true
	}
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i, ok := take()
				if !ok {
					return
				}
				st := sim.Run(sim.Config{Seed: splitmix(master, i), Sagas: perRun, ReplayEvery: replayEvery})
				mu.Lock()
				sum.Add(st)
				if st.Violations > 0 {
					bad = append(bad, st)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.SortFunc(bad, func(a, b *sim.Stats) int { return int(a.Seed>>1) - int(b.Seed>>1) })
	for _, st := range bad {
		report(t, st, perRun)
	}
	t.Logf("simulated %d sagas in %d runs in %v (%.0f sagas/s): %v", sum.Sagas, next, elapsed.Round(time.Millisecond),
		float64(sum.Sagas)/elapsed.Seconds(), ended(&sum))
	t.Logf("%s", sum.FaultSummary())
	t.Logf("%d writes, %d participant calls, %d events, %v of virtual time; %d trails replayed", sum.Writes, sum.Calls, sum.Events, sum.Virtual.Round(time.Second), sum.Replayed)
	t.Logf("invariant violations: %d (in %d runs)", sum.Violations, len(bad))
}

// report fails the test with a run's violations and how to replay it.
func report(t *testing.T, st *sim.Stats, perRun int) {
	t.Helper()
	if st.Violations == 0 {
		return
	}
	t.Errorf("seed %d: %d invariant violations (params %s); replay: SIM_SEED=%d SIM_RUN_SAGAS=%d go test -run 'TestSimulate$' -v ./sim/\n  %s",
		st.Seed, st.Violations, st.Params, st.Seed, perRun, strings.Join(st.Messages, "\n  "))
}

func ended(st *sim.Stats) string {
	var parts []string
	for _, s := range saga.SagaStatuses {
		if n := st.Ended[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", s, n))
		}
	}
	return strings.Join(parts, " ")
}

// A run is a function of its seed: two runs of one seed do the same.
func TestSimulationIsDeterministic(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3} {
		a := sim.Run(sim.Config{Seed: seed, Sagas: 200})
		b := sim.Run(sim.Config{Seed: seed, Sagas: 200})
		if a.Trace != b.Trace || a.Events != b.Events || a.Writes != b.Writes || a.Calls != b.Calls || a.FaultSummary() != b.FaultSummary() {
			t.Errorf("seed %d: two runs differ: trace %x/%x, %d/%d events, %d/%d writes, %d/%d calls, %s / %s",
				seed, a.Trace, b.Trace, a.Events, b.Events, a.Writes, b.Writes, a.Calls, b.Calls, a.FaultSummary(), b.FaultSummary())
		}
	}
}

// BenchmarkRun measures one run of 500 sagas.
func BenchmarkRun(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	for i := 0; b.Loop(); i++ {
		sim.Run(sim.Config{Seed: uint64(i%8 + 1), Sagas: 500})
	}
}
