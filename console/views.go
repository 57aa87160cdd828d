package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// sagasView is the list page.
type sagasView struct {
	Counts   []countView
	Total    int64
	AllURL   string
	AllOn    bool
	Rows     []rowView
	NextURL  string
	FirstURL string
	Filtered bool
}

type countView struct {
	Status saga.SagaStatus
	N      int64
	URL    string
	On     bool
}

type rowView struct {
	ID        string
	URL       string
	Name      string
	Status    saga.SagaStatus
	Completed int
	Total     int
	Percent   int
	Age       string
	Duration  string
	Running   bool
	Error     string
	Created   string
	TxID      string
}

// withQuery returns the list URL of q with name set to value ("" removes
// it), starting at the first page.
func withQuery(q url.Values, name, value string) string {
	out := url.Values{}
	for k, v := range q {
		if k != "cursor" && len(v) > 0 && v[0] != "" {
			out.Set(k, v[0])
		}
	}
	if value == "" {
		out.Del(name)
	} else {
		out.Set(name, value)
	}
	if len(out) == 0 {
		return Prefix
	}
	return Prefix + "?" + out.Encode()
}

func (c *Console) loadSagas(r *http.Request) (any, int, error) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		return nil, statusOf(err), err
	}
	ctx := r.Context()
	g, err := c.gauges.Gauges(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read counts: %w", err)
	}
	page, err := c.src.List(ctx, f)
	if err != nil {
		return nil, statusOf(err), fmt.Errorf("list sagas: %w", err)
	}
	now := c.now()
	v := sagasView{AllURL: withQuery(q, "status", ""), AllOn: f.Status == "",
		Filtered: f.Status != "" || f.Name != "" || f.TransactionID != nil || f.CreatedAfter != nil}
	for _, st := range saga.SagaStatuses {
		n := g.ByStatus[st]
		v.Total += n
		v.Counts = append(v.Counts, countView{Status: st, N: n, URL: withQuery(q, "status", string(st)), On: f.Status == st})
	}
	for _, s := range page.Sagas {
		v.Rows = append(v.Rows, newRow(s, now))
	}
	if page.Next != nil {
		next := url.Values{}
		for k, vals := range q {
			next[k] = vals
		}
		next.Set("cursor", page.Next.String())
		v.NextURL = Prefix + "?" + next.Encode()
	}
	if f.Cursor != nil {
		v.FirstURL = withQuery(q, "cursor", "")
	}
	return v, http.StatusOK, nil
}

func newRow(s *saga.Saga, now time.Time) rowView {
	row := rowView{
		ID: s.ID.String(), URL: Prefix + "sagas/" + s.ID.String(), Name: s.Name, Status: s.Status,
		Completed: s.CompletedSteps, Total: s.TotalSteps, Error: s.Error,
		Age: ago(now, s.CreatedAt), Created: stamp(&s.CreatedAt), TxID: s.TransactionID.String(),
	}
	if s.TotalSteps > 0 {
		row.Percent = s.CompletedSteps * 100 / s.TotalSteps
	}
	end := now
	if s.CompletedAt != nil {
		end = *s.CompletedAt
	} else {
		row.Running = !s.Status.Terminal()
	}
	row.Duration = human(end.Sub(s.CreatedAt))
	return row
}

// sagaView is the page of one saga.
type sagaView struct {
	ID, Name, TxID, UserID, Owner, Error, Idempotency string
	Status                                            saga.SagaStatus
	Control                                           saga.ControlAction
	Completed, Total                                  int
	Created, Started, Ended, Deadline                 string
	Duration                                          string
	Durable                                           bool
	Context                                           string
	Actions                                           []actionView
	Steps                                             []stepView
	Timeline                                          timeline
	Events                                            []eventView
	MoreEvents                                        bool
}

type actionView struct {
	Action saga.ControlAction
	Label  string
	Hint   string
}

type stepView struct {
	Index     int
	Name      string
	Status    saga.StepStatus
	Attempts  int
	Level     int
	DependsOn []string
	Method    string
	URL       string
	Input     string
	Output    string
	Error     string
	Started   string
	Ended     string
	Duration  string
	Comp      *compView
}

type compView struct {
	Status   saga.CompensationStatus
	Attempts int
	Output   string
	Error    string
	Started  string
	Ended    string
	Duration string
}

type eventView struct {
	Seq      int64
	Time     string
	Offset   string
	Type     saga.EventType
	Step     string
	Instance string
	Data     string
}

var actionHints = map[saga.ControlAction]string{
	saga.ControlPause:  "Stop the saga between steps until it is resumed.",
	saga.ControlResume: "Continue the paused saga.",
	saga.ControlCancel: "Stop the saga and compensate the steps it completed.",
	saga.ControlRetry:  "Run the compensations that could not finish once more.",
}

func (c *Console) loadSaga(r *http.Request) (any, int, error) {
	idText := r.PathValue("id")
	id, err := saga.ParseID(idText)
	if err != nil {
		return nil, http.StatusBadRequest, badf("%q is not a saga id (a UUID)", idText)
	}
	ctx := r.Context()
	s, err := c.src.Get(ctx, id)
	if err != nil {
		if statusOf(err) == http.StatusNotFound {
			return nil, http.StatusNotFound, badf("no saga has id %s", id)
		}
		return nil, 0, fmt.Errorf("get saga: %w", err)
	}
	events, err := c.src.Events(ctx, id, 0, EventsShown+1)
	if err != nil {
		return nil, 0, fmt.Errorf("list events: %w", err)
	}
	v := sagaView{MoreEvents: len(events) > EventsShown}
	events = events[:min(len(events), EventsShown)]
	now := c.now()
	v.ID, v.Name, v.TxID, v.Status = s.ID.String(), s.Name, s.TransactionID.String(), s.Status
	if s.UserID != nil {
		v.UserID = s.UserID.String()
	}
	v.Owner, v.Error, v.Idempotency, v.Control, v.Durable = s.OwnerID, s.Error, s.IdempotencyKey, s.Control, s.Durable
	v.Completed, v.Total = s.CompletedSteps, s.TotalSteps
	v.Created, v.Started, v.Ended, v.Deadline = stamp(&s.CreatedAt), stamp(s.StartedAt), stamp(s.CompletedAt), stamp(s.Deadline)
	end := now
	if s.CompletedAt != nil {
		end = *s.CompletedAt
	}
	v.Duration = human(end.Sub(s.CreatedAt))
	v.Context = pretty(s.Context)
	for _, a := range saga.ControlActions {
		if a.AllowedIn(s.Status) {
			v.Actions = append(v.Actions, actionView{Action: a, Label: strings.ToUpper(string(a[:1])) + string(a[1:]), Hint: actionHints[a]})
		}
	}
	levels := stepLevels(&s.Definition)
	for i := range s.Steps {
		st := &s.Steps[i]
		sv := stepView{Index: st.Index, Name: st.Name, Status: st.Status, Attempts: st.Attempts,
			Input: pretty(st.Input), Output: pretty(st.Output), Error: st.Error,
			Started: stamp(st.StartedAt), Ended: stamp(st.CompletedAt), Duration: span(st.StartedAt, st.CompletedAt)}
		if i < len(levels) {
			sv.Level = levels[i]
		}
		if i < len(s.Definition.Steps) {
			d := s.Definition.Steps[i]
			sv.DependsOn, sv.Method, sv.URL = d.DependsOn, d.Action.Method, d.Action.URL
		}
		if cp := st.Compensation; cp != nil {
			sv.Comp = &compView{Status: cp.Status, Attempts: cp.Attempts, Output: pretty(cp.Output), Error: cp.Error,
				Started: stamp(cp.StartedAt), Ended: stamp(cp.CompletedAt), Duration: span(cp.StartedAt, cp.CompletedAt)}
		}
		v.Steps = append(v.Steps, sv)
	}
	v.Timeline = newTimeline(s, events, levels, now)
	for _, e := range events {
		ev := eventView{Seq: e.Seq, Time: stamp(&e.CreatedAt), Offset: "+" + human(e.CreatedAt.Sub(s.CreatedAt)),
			Type: e.Type, Instance: e.InstanceID, Data: compact(e.Data)}
		if e.StepIndex != nil {
			ev.Step = fmt.Sprint(*e.StepIndex)
			if *e.StepIndex >= 0 && *e.StepIndex < len(s.Steps) {
				ev.Step += " " + s.Steps[*e.StepIndex].Name
			}
		}
		v.Events = append(v.Events, ev)
	}
	return v, http.StatusOK, nil
}

// stepLevels returns each step's depth in the definition's graph: 0 for a
// step that depends on none, else one more than its deepest dependency.
func stepLevels(d *saga.Definition) []int {
	g := d.Graph()
	levels := make([]int, len(d.Steps))
	for _, i := range g.Order() {
		for _, j := range g.Deps[i] {
			levels[i] = max(levels[i], levels[j]+1)
		}
	}
	return levels
}

// statsView is the statistics page.
type statsView struct {
	Window    string
	Started   int64
	Completed int64
	Failed    int64
	Ended     int64
	P50, P95  string
	Rates     chart
	Durations durationBars
	ByStatus  statusBars
}

func (c *Console) loadStats(r *http.Request) (any, int, error) {
	ctx := r.Context()
	a, err := c.gauges.Activity(ctx, StatsWindow)
	if err != nil {
		return nil, 0, fmt.Errorf("read activity: %w", err)
	}
	g, err := c.gauges.Gauges(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read counts: %w", err)
	}
	v := statsView{Window: human(a.Window), Ended: a.Ended, P50: human(a.P50), P95: human(a.P95)}
	for _, b := range a.Buckets {
		v.Started += b.Started
		v.Completed += b.Completed
		v.Failed += b.Failed
	}
	v.Rates = newRateChart(a)
	v.Durations = newDurationBars(a.P50, a.P95)
	v.ByStatus = newStatusBars(g.ByStatus)
	return v, http.StatusOK, nil
}

// healthView is the health page.
type healthView struct {
	Mode          string
	Durable       bool
	RoundTrip     string
	Pool          saga.Health
	Migration     int64
	Error         string
	This          string
	Instances     []instanceView
	Window        string
	Stuck         int64
	FailedWaiting int64
	OldestRunning string
	DBNow         string
}

type instanceView struct {
	ID       string
	This     bool
	LastSeen string
	Events   int64
	Held     int64
	ByStatus []statusCount
	Sagas    []string
	Expires  string
}

type statusCount struct {
	Status saga.SagaStatus
	N      int64
}

func (c *Console) loadHealth(r *http.Request) (any, int, error) {
	ctx := r.Context()
	h := c.src.Health(ctx)
	v := healthView{Mode: h.Mode, Durable: h.Durable, RoundTrip: human(h.RoundTrip), Pool: h,
		Migration: h.MigrationVersion, Error: h.Error, This: c.src.InstanceID(), Window: human(HealthWindow)}
	g, err := c.gauges.Gauges(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("read gauges: %w", err)
	}
	a, err := c.gauges.Activity(ctx, HealthWindow)
	if err != nil {
		return nil, 0, fmt.Errorf("read activity: %w", err)
	}
	v.Stuck, v.FailedWaiting, v.OldestRunning, v.DBNow = g.Stuck, g.FailedWaiting, human(g.OldestRunningAge), stamp(&g.Now)
	byID := map[string]*instanceView{}
	get := func(id string) *instanceView {
		if in := byID[id]; in != nil {
			return in
		}
		in := &instanceView{ID: id, This: id == v.This}
		byID[id] = in
		return in
	}
	get(v.This)
	for _, seen := range a.Instances {
		in := get(seen.ID)
		in.LastSeen, in.Events = ago(g.Now, seen.LastSeen)+" ago", seen.Events
	}
	for _, held := range g.Instances {
		in := get(held.ID)
		in.Held, in.Expires = held.Held, stamp(&held.LeaseExpiresAt)
		for _, st := range saga.SagaStatuses {
			if n := held.ByStatus[st]; n > 0 {
				in.ByStatus = append(in.ByStatus, statusCount{Status: st, N: n})
			}
		}
		for _, id := range held.Sagas {
			in.Sagas = append(in.Sagas, id.String())
		}
	}
	for _, in := range byID {
		v.Instances = append(v.Instances, *in)
	}
	slices.SortFunc(v.Instances, func(a, b instanceView) int {
		if a.This != b.This {
			if a.This {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	return v, http.StatusOK, nil
}

// pretty formats JSON with indentation; text that is not JSON is returned
// as it is. Empty and null give "".
func pretty(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

// compact formats JSON on one line.
func compact(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

// stamp formats a time in UTC with milliseconds, "" for none.
func stamp(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}

// span is the duration from start to end, "" when either is missing.
func span(start, end *time.Time) string {
	if start == nil || end == nil {
		return ""
	}
	return human(end.Sub(*start))
}

// ago is how long before now t was.
func ago(now, t time.Time) string { return human(now.Sub(t)) }

// human formats a duration for people: 850ms, 4.2s, 3m10s, 2h05m, 3d4h.
func human(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d == 0:
		return "0s"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}
