package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/client"
	"github.com/tracseq/transaction-service/httpapi"
)

// pollInterval is the period of the helpers that poll the API.
const pollInterval = 200 * time.Millisecond

// waitEnded polls the API through c until every saga in ids is in an end
// state, and returns them as listed. It fails the test at the deadline,
// saying how many sagas are in which status.
func waitEnded(t *testing.T, c *client.Client, ids []string, timeout time.Duration) map[string]httpapi.SagaJSON {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		all, err := listAll(ctx, c)
		cancel()
		if err == nil {
			byStatus := make(map[saga.SagaStatus]int)
			var stuck []string
			for _, id := range ids {
				s, ok := all[id]
				switch {
				case !ok:
					byStatus["(absent)"]++
					stuck = append(stuck, id)
				case !s.Status.Terminal():
					byStatus[s.Status]++
					stuck = append(stuck, id)
				default:
					byStatus[s.Status]++
				}
			}
			if len(stuck) == 0 {
				return all
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %v, %d of %d sagas have not ended: %v; first: %v", timeout, len(stuck), len(ids), byStatus, stuck[:min(5, len(stuck))])
			}
		} else if time.Now().After(deadline) {
			t.Fatalf("list sagas: %v", err)
		}
		time.Sleep(pollInterval)
	}
}

// listAll reads every saga through the API, page by page.
func listAll(ctx context.Context, c *client.Client) (map[string]httpapi.SagaJSON, error) {
	out := make(map[string]httpapi.SagaJSON)
	for page, err := range c.List(ctx, client.ListQuery{Limit: saga.ListLimitMax}) {
		if err != nil {
			return nil, err
		}
		for _, s := range page.Sagas {
			out[s.ID] = s
		}
	}
	return out, nil
}

// detail is a saga with its steps and audit trail, as the API returns them.
type detail struct {
	saga   *httpapi.SagaJSON
	events []httpapi.EventJSON
}

// fetchDetails reads every saga in ids with its events, a few at a time.
func fetchDetails(t *testing.T, c *client.Client, ids []string) map[string]detail {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		out  = make(map[string]detail, len(ids))
		errs []error
		wg   sync.WaitGroup
	)
	work := make(chan string)
	for range 8 {
		wg.Go(func() {
			for id := range work {
				s, err := c.Get(ctx, id)
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("saga %s: %w", id, err))
					mu.Unlock()
					continue
				}
				evs, err := c.Events(ctx, id)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("events of %s: %w", id, err))
				} else {
					out[id] = detail{saga: s, events: evs}
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("read sagas: %v", err)
	}
	return out
}

// endEvent is the event that closes the trail of a saga in each end state.
var endEvent = map[saga.SagaStatus]saga.EventType{
	saga.SagaStatusCompleted:   saga.EventSagaCompleted,
	saga.SagaStatusCompensated: saga.EventSagaCompensated,
	saga.SagaStatusCancelled:   saga.EventSagaCancelled,
	saga.SagaStatusTimedOut:    saga.EventSagaTimedOut,
	saga.SagaStatusFailed:      saga.EventSagaFailed,
}

// checkTrail checks that a saga ended as wanted with a complete audit trail
// in order, and returns the problems found:
//   - seq runs 1..n without a gap and times never go back;
//   - it starts with SagaCreated and ends with the one event of the end
//     status;
//   - steps start in order, each only once its predecessor completed; each
//     outcome of a step (StepCompleted, StepFailed, StepRetrying) follows
//     its StepStarted; each start counts the attempts on by one;
//   - a step is started again without an outcome only with the next
//     attempt after SagaRecovered (the call was in flight when its owner
//     died), or with the same attempt after CallWithdrawn (the owner held
//     the call back: it was stopping, or a pause or deadline came first);
//   - compensation starts after SagaCompensating, runs in reverse step
//     order, each CompensationCompleted after its CompensationStarted,
//     under the same rules of attempts;
//   - the saga's steps agree: all Completed, or the last Failed and the
//     others compensated.
func checkTrail(d detail, want saga.SagaStatus) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	s, evs := d.saga, d.events
	if s.Status != want {
		bad("status %s, want %s (error %q)", s.Status, want, s.Error)
	}
	if len(evs) == 0 {
		bad("no events")
		return problems
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			bad("event %d (%s) has seq %d", i, e.Type, e.Seq)
			break
		}
		if e.SagaID != s.ID {
			bad("event %d belongs to saga %s", i, e.SagaID)
		}
		if i > 0 && e.CreatedAt.Before(evs[i-1].CreatedAt) {
			bad("event %d (%s) at %v is older than event %d (%v)", i, e.Type, e.CreatedAt, i-1, evs[i-1].CreatedAt)
		}
	}
	if evs[0].Type != saga.EventSagaCreated {
		bad("first event %s, want SagaCreated", evs[0].Type)
	}
	if endType := endEvent[want]; evs[len(evs)-1].Type != endType {
		bad("last event %s, want %s", evs[len(evs)-1].Type, endType)
	}

	n := len(stepNames)
	var (
		open         = make([]bool, n) // a call of the step is in progress
		recovered    = make([]bool, n) // SagaRecovered since its last start
		withdrawn    = make([]bool, n) // CallWithdrawn since its last start
		attempt      = make([]int, n)  // of the last StepStarted
		completed    = make([]int, n)  // StepCompleted count
		failed       = make([]int, n)
		compOpen     = make([]bool, n)
		compAttempt  = make([]int, n)
		compDone     = make([]int, n)
		compensating = false
		ends         = 0
		lastComp     = n // the step of the latest compensation started
	)
	// restart checks the attempt of a start: the next one, or the same one
	// when the previous start was withdrawn.
	restart := func(i, step, a, last int, inProgress bool) {
		switch {
		case withdrawn[step]:
			if a != last {
				bad("event %d: step %d started again with attempt %d; the withdrawn start had attempt %d", i, step, a, last)
			}
		case !inProgress || recovered[step]:
			if a != last+1 {
				bad("event %d: step %d started with attempt %d after attempt %d", i, step, a, last)
			}
		default:
			bad("event %d: step %d started again without an outcome, a recovery or a withdrawal", i, step)
		}
	}
	for i, e := range evs {
		step := -1
		if e.StepIndex != nil {
			step = *e.StepIndex
			if step < 0 || step >= n {
				bad("event %d (%s): step index %d out of range", i, e.Type, step)
				continue
			}
		}
		needStep := func() bool {
			if step < 0 {
				bad("event %d (%s) has no step index", i, e.Type)
				return false
			}
			return true
		}
		switch e.Type {
		case saga.EventSagaCreated:
			if i != 0 {
				bad("SagaCreated at event %d", i)
			}
		case saga.EventStepStarted:
			if !needStep() {
				continue
			}
			if compensating {
				bad("event %d: step %d started after compensation began", i, step)
			}
			a := eventAttempt(e)
			restart(i, step, a, attempt[step], open[step])
			for k := range step {
				if completed[k] == 0 {
					bad("event %d: step %d started before step %d completed", i, step, k)
				}
			}
			open[step], recovered[step], withdrawn[step], attempt[step] = true, false, false, a
		case saga.EventCallWithdrawn:
			if !needStep() {
				continue
			}
			if !open[step] && !compOpen[step] {
				bad("event %d: withdrawal of step %d with no call started", i, step)
			}
			open[step], compOpen[step], withdrawn[step] = false, false, true
		case saga.EventSagaRecovered:
			if !needStep() {
				continue
			}
			if !open[step] && !compOpen[step] {
				bad("event %d: recovery of step %d with no call in progress", i, step)
			}
			recovered[step] = true
		case saga.EventStepCompleted, saga.EventStepFailed, saga.EventStepRetrying:
			if !needStep() {
				continue
			}
			if !open[step] {
				bad("event %d: %s of step %d without StepStarted", i, e.Type, step)
			}
			open[step] = false
			switch e.Type {
			case saga.EventStepCompleted:
				completed[step]++
			case saga.EventStepFailed:
				failed[step]++
			}
		case saga.EventSagaCompensating:
			if compensating {
				bad("event %d: SagaCompensating twice", i)
			}
			compensating = true
		case saga.EventCompensationStarted:
			if !needStep() {
				continue
			}
			if !compensating {
				bad("event %d: compensation of step %d before SagaCompensating", i, step)
			}
			if step > lastComp {
				bad("event %d: compensation of step %d after that of step %d (not in reverse order)", i, step, lastComp)
			}
			a := eventAttempt(e)
			restart(i, step, a, compAttempt[step], compOpen[step])
			if completed[step] == 0 && failed[step] == 0 {
				bad("event %d: compensation of step %d, which never ran", i, step)
			}
			for k := step + 1; k < n; k++ {
				if compOpen[k] {
					bad("event %d: compensation of step %d while that of step %d is unfinished", i, step, k)
				}
			}
			lastComp = step
			compOpen[step], recovered[step], withdrawn[step], compAttempt[step] = true, false, false, a
		case saga.EventCompensationCompleted, saga.EventCompensationFailed, saga.EventCompensationRetrying:
			if !needStep() {
				continue
			}
			if !compOpen[step] {
				bad("event %d: %s of step %d without CompensationStarted", i, e.Type, step)
			}
			compOpen[step] = false
			if e.Type == saga.EventCompensationCompleted {
				compDone[step]++
			}
		case saga.EventSagaCompleted, saga.EventSagaCompensated, saga.EventSagaCancelled,
			saga.EventSagaTimedOut, saga.EventSagaFailed:
			ends++
			if i != len(evs)-1 {
				bad("event %d: %s before the end of the trail", i, e.Type)
			}
		}
	}
	if ends != 1 {
		bad("%d end events, want 1", ends)
	}
	for k := range n {
		if open[k] || compOpen[k] {
			bad("step %d: a call is still in progress at the end", k)
		}
	}

	last := n - 1
	switch want {
	case saga.SagaStatusCompleted:
		for k := range n {
			if completed[k] != 1 || failed[k] != 0 {
				bad("step %d: %d StepCompleted and %d StepFailed, want 1 and 0", k, completed[k], failed[k])
			}
		}
		if compensating || slices.ContainsFunc(compDone, func(c int) bool { return c > 0 }) {
			bad("a Completed saga compensated")
		}
		if s.CompletedSteps != n {
			bad("completed_steps %d, want %d", s.CompletedSteps, n)
		}
	case saga.SagaStatusCompensated:
		for k := range last {
			if completed[k] != 1 || compDone[k] != 1 {
				bad("step %d: %d StepCompleted and %d CompensationCompleted, want 1 and 1", k, completed[k], compDone[k])
			}
		}
		if failed[last] != 1 || completed[last] != 0 || compDone[last] != 0 {
			bad("last step: %d StepFailed, %d StepCompleted, %d CompensationCompleted; want 1, 0, 0", failed[last], completed[last], compDone[last])
		}
		if !compensating {
			bad("no SagaCompensating")
		}
	}
	for k := range min(n, len(s.Steps)) {
		if s.Steps[k].Attempts != attempt[k] {
			bad("step %d: %d attempts, but its last StepStarted says %d", k, s.Steps[k].Attempts, attempt[k])
		}
	}
	if len(s.Steps) != n {
		bad("%d steps, want %d", len(s.Steps), n)
		return problems
	}
	for k, st := range s.Steps {
		wantStatus := saga.StepStatusCompleted
		if want == saga.SagaStatusCompensated && k == last {
			wantStatus = saga.StepStatusFailed
		}
		if st.Status != wantStatus {
			bad("step %d is %s, want %s", k, st.Status, wantStatus)
		}
		if want == saga.SagaStatusCompensated && k < last {
			if st.Compensation == nil || st.Compensation.Status != saga.CompensationStatusCompleted {
				bad("step %d: compensation %+v, want Completed", k, st.Compensation)
			}
		}
	}
	return problems
}

// eventAttempt returns the attempt number in an event's data, or 0.
func eventAttempt(e httpapi.EventJSON) int {
	var data struct {
		Attempt int `json:"attempt"`
	}
	_ = json.Unmarshal(e.Data, &data)
	return data.Attempt
}

// withdrawnStarts counts the calls written as started and then withdrawn
// (CallWithdrawn): the instance held them back, at a graceful stop say.
func withdrawnStarts(details map[string]detail) int {
	n := 0
	for _, d := range details {
		for _, e := range d.events {
			if e.Type == saga.EventCallWithdrawn {
				n++
			}
		}
	}
	return n
}

// takeover is what checkTakeovers found in the trails.
type takeover struct {
	// bySurvivor counts the sagas a survivor took over from dead.
	bySurvivor map[string]int
	total      int
	// endedBy counts the sagas each instance ended.
	endedBy map[string]int
}

// checkTakeovers looks in every trail for sagas that instance dead, killed
// with SIGKILL, held when it died, and checks that another instance took
// each of them over only after its lease had expired: the LeaseTaken that
// follows an event dead wrote under its lease is at least lease later (both
// times are the database's clock; a lone SagaCreated is written without a
// lease). It also counts which instance ended each saga.
func checkTakeovers(t *testing.T, details map[string]detail, dead string, lease time.Duration) takeover {
	t.Helper()
	tk := takeover{bySurvivor: make(map[string]int), endedBy: make(map[string]int)}
	reported := 0
	for id, d := range details {
		evs := d.events
		if len(evs) > 0 {
			tk.endedBy[evs[len(evs)-1].InstanceID]++
		}
		took := false
		for i := 1; i < len(evs); i++ {
			e, prev := evs[i], evs[i-1]
			if e.Type != saga.EventLeaseTaken || prev.InstanceID != dead || e.InstanceID == dead {
				continue
			}
			queued := prev.Type == saga.EventSagaCreated && i == 1
			if !queued && e.CreatedAt.Before(prev.CreatedAt.Add(lease)) {
				if reported < 10 {
					t.Errorf("saga %s: %s took it over at %v, %v after %s's last write (%s), before the lease of %v expired",
						id, e.InstanceID, e.CreatedAt, e.CreatedAt.Sub(prev.CreatedAt), dead, prev.Type, lease)
				}
				reported++
			}
			if !queued && !took {
				took = true
				tk.bySurvivor[e.InstanceID]++
				tk.total++
			}
		}
	}
	return tk
}

// sortedCounts formats a count map in key order for logs.
func sortedCounts[K ~string](m map[K]int) string {
	keys := slices.Collect(maps.Keys(m))
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// countEvents counts the events of type typ in every trail.
func countEvents(details map[string]detail, typ saga.EventType) int {
	n := 0
	for _, d := range details {
		for _, e := range d.events {
			if e.Type == typ {
				n++
			}
		}
	}
	return n
}

// checkAll runs checkTrail and stub.checkEffects on every saga of the plans
// and reports at most a few problems per saga.
func checkAll(t *testing.T, p *stub, details map[string]detail, plans map[string]plan) {
	t.Helper()
	failedSagas := 0
	for id, pl := range plans {
		d, ok := details[id]
		if !ok {
			t.Errorf("saga %s: not read", id)
			continue
		}
		problems := checkTrail(d, pl.want())
		problems = append(problems, p.checkEffects(id, d.saga.Status)...)
		if len(problems) == 0 {
			continue
		}
		failedSagas++
		if failedSagas <= 10 {
			t.Errorf("saga %s (%s, want %s): %s\n  events: %s", id, d.saga.Status, pl.want(),
				strings.Join(problems, "; "), eventList(d.events))
		}
	}
	if failedSagas > 10 {
		t.Errorf("… %d sagas with problems in all", failedSagas)
	}
}

// eventList formats a trail compactly: type[step]@instance.
func eventList(evs []httpapi.EventJSON) string {
	parts := make([]string, len(evs))
	for i, e := range evs {
		step := ""
		if e.StepIndex != nil {
			step = fmt.Sprintf("[%d]", *e.StepIndex)
		}
		parts[i] = fmt.Sprintf("%d:%s%s@%s", e.Seq, e.Type, step, e.InstanceID)
	}
	return strings.Join(parts, " ")
}
