package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

func TestSubmit(t *testing.T) {
	t.Parallel()
	var got saga.Definition
	b := setup(t, &fakeCoordinator{submit: func(_ context.Context, def saga.Definition) (*saga.Saga, bool, error) {
		got = def
		s := sampleSaga(saga.SagaStatusCreated)
		s.Name = def.Name
		return s, false, nil
	}})

	resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas", "application/json; charset=utf-8",
		[]byte(`{"name":"order","context":null,"timeout_ms":60000,"idempotency_key":"k-1",`+
			`"user_id":"`+sampleUser.String()+`","steps":[{"name":"reserve",`+
			`"action":{"method":"POST","url":"http://inventory.local/reserve","body":{"sku":"A"},"timeout_ms":500},`+
			`"retry":{"max_attempts":5}}]}`), nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d, want 201; body %s", resp.StatusCode, raw)
	}
	if loc := resp.Header.Get("Location"); loc != "/api/v1/sagas/"+sampleID.String() {
		t.Errorf("Location %q", loc)
	}
	if resp.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("a new saga says Idempotent-Replayed")
	}
	var sj SagaJSON
	if err := json.Unmarshal(raw, &sj); err != nil {
		t.Fatal(err)
	}
	if sj.ID != sampleID.String() || sj.Status != saga.SagaStatusCreated || len(sj.Steps) != 2 {
		t.Errorf("answer %+v", sj)
	}
	if got.Name != "order" || got.Context != nil || got.TimeoutMs != 60000 || got.IdempotencyKey != "k-1" ||
		got.UserID == nil || *got.UserID != sampleUser || len(got.Steps) != 1 ||
		got.Steps[0].Action.TimeoutMs != 500 || string(got.Steps[0].Action.Body) != `{"sku":"A"}` ||
		got.Steps[0].Retry == nil || got.Steps[0].Retry.MaxAttempts != 5 {
		t.Errorf("the coordinator got %+v", got)
	}
	if calls := b.fake.Calls(); !slices.Equal(calls, []string{"Submit"}) {
		t.Errorf("calls %v, want only Submit", calls)
	}
}

func TestSubmitReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t, &fakeCoordinator{submit: func(_ context.Context, def saga.Definition) (*saga.Saga, bool, error) {
		s := sampleSaga(saga.SagaStatusExecuting)
		s.IdempotencyKey = def.IdempotencyKey
		s.Definition = def // the first submit was this very request
		return s, true, nil
	}})
	var def saga.Definition
	if err := json.Unmarshal([]byte(validDefinition), &def); err != nil {
		t.Fatal(err)
	}
	def.IdempotencyKey = "order-42"
	sj, replayed, err := b.client.Submit(t.Context(), def, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !replayed || sj.ID != sampleID.String() || sj.IdempotencyKey != "order-42" {
		t.Errorf("replayed %v, saga %+v", replayed, sj)
	}

	resp, _ := b.do(t, http.MethodPost, "/api/v1/sagas", contentTypeJSON, []byte(validDefinition), nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("status %d, Idempotent-Replayed %q; want 200 and true", resp.StatusCode, resp.Header.Get("Idempotent-Replayed"))
	}
}

// A known idempotency key with another request is a conflict; the same
// request, its JSON reformatted as a store gives it back, is a replay.
func TestSubmitIdempotencyKeyReused(t *testing.T) {
	t.Parallel()
	var first saga.Definition
	if err := json.Unmarshal([]byte(validDefinition), &first); err != nil {
		t.Fatal(err)
	}
	first.IdempotencyKey = "order-42"
	first.Context = json.RawMessage(`{ "b": 2.0, "a": [1, "x"] }`)
	b := setup(t, &fakeCoordinator{submit: func(_ context.Context, def saga.Definition) (*saga.Saga, bool, error) {
		s := sampleSaga(saga.SagaStatusExecuting)
		s.IdempotencyKey = first.IdempotencyKey
		s.Definition = first
		return s, true, nil
	}})
	same := first
	same.Context = json.RawMessage(`{"a":[1,"x"],"b":2}`)
	if _, replayed, err := b.client.Submit(t.Context(), same, 0); err != nil || !replayed {
		t.Fatalf("the same request: replayed %v, %v", replayed, err)
	}
	for name, change := range map[string]func(*saga.Definition){
		"another name":    func(d *saga.Definition) { d.Name = "other" },
		"another context": func(d *saga.Definition) { d.Context = json.RawMessage(`{"a":[1,"y"],"b":2}`) },
		"another timeout": func(d *saga.Definition) { d.TimeoutMs = 5 },
		"another step":    func(d *saga.Definition) { d.Steps = append(d.Steps, d.Steps[0]); d.Steps[1].Name = "again" },
	} {
		def := first.Clone()
		change(&def)
		_, _, err := b.client.Submit(t.Context(), def, 0)
		var p *Problem
		if !errors.As(err, &p) || p.Status != http.StatusConflict || p.Field != "idempotency_key" ||
			!strings.Contains(p.Detail, "idempotency_key reused with a different request") {
			t.Errorf("%s: %v; want 409 naming idempotency_key", name, err)
		}
	}
}

func TestSubmitIdempotencyKeyHeader(t *testing.T) {
	t.Parallel()
	keys := make(chan string, 2)
	b := setup(t, &fakeCoordinator{submit: func(_ context.Context, def saga.Definition) (*saga.Saga, bool, error) {
		keys <- def.IdempotencyKey
		return sampleSaga(saga.SagaStatusCreated), false, nil
	}})
	h := http.Header{"Idempotency-Key": {"from-header"}}
	resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas", contentTypeJSON, []byte(validDefinition), h)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status %d; body %s", resp.StatusCode, raw)
	}
	if k := <-keys; k != "from-header" {
		t.Errorf("key %q, want the header's", k)
	}
	same := strings.Replace(validDefinition, `{"name":"order",`, `{"name":"order","idempotency_key":"from-header",`, 1)
	resp, raw = b.do(t, http.MethodPost, "/api/v1/sagas", contentTypeJSON, []byte(same), h)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("same key in header and body: status %d; body %s", resp.StatusCode, raw)
	}
	if k := <-keys; k != "from-header" {
		t.Errorf("key %q", k)
	}
}

func TestSubmitWait(t *testing.T) {
	t.Parallel()
	type waited struct {
		deadline time.Time
		ok       bool
	}
	tests := []struct {
		name       string
		query      string
		maxWait    time.Duration
		wait       func(ctx context.Context) (*saga.Saga, error)
		initial    saga.SagaStatus
		wantStatus saga.SagaStatus
		wantWait   bool
		wantMax    time.Duration // how far away the wait's deadline is
	}{
		{
			name: "ended in time", query: "?wait=30s", initial: saga.SagaStatusExecuting,
			wait:       func(context.Context) (*saga.Saga, error) { return sampleSaga(saga.SagaStatusCompleted), nil },
			wantStatus: saga.SagaStatusCompleted, wantWait: true, wantMax: 30 * time.Second,
		},
		{
			name: "capped by MaxWait", query: "?wait=1h", maxWait: 2 * time.Second, initial: saga.SagaStatusCreated,
			wait:       func(context.Context) (*saga.Saga, error) { return sampleSaga(saga.SagaStatusCompensated), nil },
			wantStatus: saga.SagaStatusCompensated, wantWait: true, wantMax: 2 * time.Second,
		},
		{
			name: "time passed", query: "?wait=20ms", initial: saga.SagaStatusCreated,
			wait: func(ctx context.Context) (*saga.Saga, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			},
			// The fake's Get answers the saga as it is now.
			wantStatus: saga.SagaStatusExecuting, wantWait: true, wantMax: 20 * time.Millisecond,
		},
		{
			name: "time passed, wait answers the saga", query: "?wait=20ms", initial: saga.SagaStatusCreated,
			wait: func(ctx context.Context) (*saga.Saga, error) {
				<-ctx.Done()
				return sampleSaga(saga.SagaStatusPaused), ctx.Err()
			},
			wantStatus: saga.SagaStatusPaused, wantWait: true, wantMax: 20 * time.Millisecond,
		},
		{
			name: "already ended", query: "?wait=30s", initial: saga.SagaStatusCompleted,
			wantStatus: saga.SagaStatusCompleted,
		},
		{
			name: "no wait", query: "", initial: saga.SagaStatusCreated,
			wantStatus: saga.SagaStatusCreated,
		},
		{
			name: "zero wait", query: "?wait=0s", initial: saga.SagaStatusCreated,
			wantStatus: saga.SagaStatusCreated,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			waits := make(chan waited, 1)
			fake := &fakeCoordinator{
				submit: func(context.Context, saga.Definition) (*saga.Saga, bool, error) {
					return sampleSaga(tc.initial), false, nil
				},
				get: func(context.Context, saga.ID) (*saga.Saga, error) {
					return sampleSaga(saga.SagaStatusExecuting), nil
				},
			}
			if tc.wait != nil {
				fake.wait = func(ctx context.Context, id saga.ID) (*saga.Saga, error) {
					d, ok := ctx.Deadline()
					waits <- waited{d, ok}
					return tc.wait(ctx)
				}
			}
			b := setup(t, fake, func(c *Config) { c.MaxWait = tc.maxWait })
			before := time.Now()
			resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas"+tc.query, contentTypeJSON, []byte(validDefinition), nil)
			after := time.Now()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d; body %s", resp.StatusCode, raw)
			}
			var sj SagaJSON
			if err := json.Unmarshal(raw, &sj); err != nil {
				t.Fatal(err)
			}
			if sj.Status != tc.wantStatus {
				t.Errorf("status %s, want %s", sj.Status, tc.wantStatus)
			}
			waitedFor := slices.Contains(b.fake.Calls(), "Wait")
			if waitedFor != tc.wantWait {
				t.Fatalf("Wait called: %v, want %v (calls %v)", waitedFor, tc.wantWait, b.fake.Calls())
			}
			if tc.wantWait {
				w := <-waits
				if !w.ok {
					t.Fatal("Wait's context has no deadline")
				}
				// The deadline was set between the request and the answer.
				if lo, hi := before.Add(tc.wantMax), after.Add(tc.wantMax); w.deadline.Before(lo) || w.deadline.After(hi) {
					t.Errorf("Wait's deadline %v is not within [%v, %v]", w.deadline, lo, hi)
				}
			}
		})
	}
}

func TestGetSaga(t *testing.T) {
	t.Parallel()
	b := setup(t, &fakeCoordinator{get: func(_ context.Context, id saga.ID) (*saga.Saga, error) {
		if id != sampleID {
			return nil, saga.ErrNotFound
		}
		return sampleSaga(saga.SagaStatusCompensating), nil
	}})
	resp, raw := b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleID.String(), "", nil, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != contentTypeJSON {
		t.Fatalf("status %d, type %q; body %s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}

	// The wire shape, key by key.
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"id", "name", "status", "transaction_id", "user_id", "context", "completed_steps",
		"total_steps", "created_at", "updated_at", "started_at", "completed_at", "deadline", "error", "durable",
		"legal_hold", "idempotency_key", "control_request", "owner_id", "max_parallel", "steps"}
	if keys := slices.Sorted(maps.Keys(m)); !slices.Equal(keys, slices.Sorted(slices.Values(wantKeys))) {
		t.Errorf("saga keys %v, want %v", keys, wantKeys)
	}
	steps := m["steps"].([]any)
	step0, step1 := steps[0].(map[string]any), steps[1].(map[string]any)
	wantStepKeys := []string{"name", "index", "depends_on", "compensable", "status", "attempts", "input", "output", "error", "started_at", "completed_at"}
	if keys := slices.Sorted(maps.Keys(step1)); !slices.Equal(keys, slices.Sorted(slices.Values(wantStepKeys))) {
		t.Errorf("step keys %v, want %v (no compensation before one began)", keys, wantStepKeys)
	}
	comp := step0["compensation"].(map[string]any)
	wantCompKeys := []string{"status", "attempts", "started_at", "completed_at", "error", "output"}
	if keys := slices.Sorted(maps.Keys(comp)); !slices.Equal(keys, slices.Sorted(slices.Values(wantCompKeys))) {
		t.Errorf("compensation keys %v, want %v", keys, wantCompKeys)
	}
	for _, v := range []any{m["created_at"], m["updated_at"], m["started_at"], m["deadline"], step0["completed_at"], comp["started_at"]} {
		s, _ := v.(string)
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil || !strings.HasSuffix(s, "Z") {
			t.Errorf("time %q is not RFC 3339 in UTC", s)
		}
	}
	if m["completed_at"] != nil || step1["started_at"] != nil || step1["output"] != nil {
		t.Errorf("absent values are not null: completed_at %v, started_at %v, output %v", m["completed_at"], step1["started_at"], step1["output"])
	}

	// The same through the client.
	sj, err := b.client.Get(t.Context(), sampleID.String())
	if err != nil {
		t.Fatal(err)
	}
	want := sampleSaga(saga.SagaStatusCompensating)
	if sj.Name != want.Name || sj.TransactionID != sampleTxID.String() || *sj.UserID != sampleUser.String() ||
		string(sj.Context) != `{"order":42}` || sj.CompletedSteps != 1 || sj.TotalSteps != 2 || !sj.Durable ||
		sj.OwnerID != "instance-a" || sj.IdempotencyKey != "order-42" || !sj.CreatedAt.Equal(want.CreatedAt) ||
		sj.CreatedAt.Location() != time.UTC {
		t.Errorf("saga %+v", sj)
	}
	s0 := sj.Steps[0]
	if s0.Name != "reserve" || s0.Index != 0 || s0.Status != saga.StepStatusCompleted || s0.Attempts != 1 ||
		string(s0.Input) != `{"sku":"A"}` || string(s0.Output) != `{"reservation":"r1"}` ||
		s0.Compensation == nil || s0.Compensation.Status != saga.CompensationStatusCompleted ||
		s0.Compensation.Attempts != 2 || string(s0.Compensation.Output) != `{"released":true}` {
		t.Errorf("step 0 %+v", s0)
	}

	// An unknown id.
	_, err = b.client.Get(t.Context(), "0190f1c2-7a3b-7c4d-8e5f-ffffffffffff")
	var p *Problem
	if !errors.As(err, &p) || p.Status != http.StatusNotFound || p.Field != "id" || p.Code() != saga.ECodeNotFound ||
		!strings.Contains(p.Detail, "0190f1c2-7a3b-7c4d-8e5f-ffffffffffff") {
		t.Errorf("unknown id: %v (%+v)", err, p)
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	type call struct {
		afterSeq int64
		limit    int
	}
	calls := make(chan call, 10)
	b := setup(t, &fakeCoordinator{events: func(_ context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error) {
		calls <- call{afterSeq, limit}
		if id != sampleID {
			return nil, fmt.Errorf("list events: %w", saga.ErrNotFound)
		}
		return []saga.Event{
			{ID: sampleTxID, SagaID: sampleID, Seq: afterSeq + 1, Type: saga.EventSagaCreated, InstanceID: "a", CreatedAt: sampleStart},
			{ID: sampleUser, SagaID: sampleID, Seq: afterSeq + 2, Type: saga.EventStepStarted, StepIndex: ptr(0),
				Data: json.RawMessage(`{"attempt":1}`), InstanceID: "a", CreatedAt: sampleStart},
		}, nil
	}})

	resp, raw := b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleID.String()+"/events?after_seq=5&limit=2", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d; body %s", resp.StatusCode, raw)
	}
	if c := <-calls; c != (call{5, 2}) {
		t.Errorf("coordinator got %+v, want after_seq 5, limit 2", c)
	}
	var m struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"actor", "created_at", "data", "id", "instance_id", "saga_id", "seq", "step_index", "type"}
	if len(m.Events) != 2 || !slices.Equal(slices.Sorted(maps.Keys(m.Events[0])), wantKeys) {
		t.Fatalf("events %v", m.Events)
	}
	if m.Events[0]["step_index"] != nil || m.Events[1]["step_index"] != 0.0 || m.Events[1]["seq"] != 7.0 ||
		m.Events[1]["type"] != "StepStarted" || m.Events[0]["created_at"] != "2026-05-01T12:00:00.123456Z" {
		t.Errorf("events %v", m.Events)
	}

	// Defaults.
	resp, raw = b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleID.String()+"/events", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d; body %s", resp.StatusCode, raw)
	}
	if c := <-calls; c != (call{0, EventsLimitDefault}) {
		t.Errorf("coordinator got %+v, want the defaults", c)
	}

	// Unknown saga.
	resp, raw = b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleTxID.String()+"/events", "", nil, nil)
	if p := decodeProblem(t, resp, raw); p.Status != http.StatusNotFound || p.Field != "id" {
		t.Errorf("unknown saga: %+v", p)
	}
}

func TestClientEventsReadsEveryPage(t *testing.T) {
	t.Parallel()
	const total = 2*EventsLimitMax + 17
	b := setup(t, &fakeCoordinator{events: func(_ context.Context, _ saga.ID, afterSeq int64, limit int) ([]saga.Event, error) {
		var out []saga.Event
		for seq := afterSeq + 1; seq <= total && len(out) < limit; seq++ {
			out = append(out, saga.Event{ID: saga.NewID(), SagaID: sampleID, Seq: seq, Type: saga.EventStepStarted, CreatedAt: sampleStart})
		}
		return out, nil
	}})
	evs, err := b.client.Events(t.Context(), sampleID.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != total {
		t.Fatalf("%d events, want %d", len(evs), total)
	}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	filters := make(chan saga.Filter, 1)
	next := saga.Cursor{CreatedAt: sampleStart.UTC(), ID: sampleID}
	b := setup(t, &fakeCoordinator{list: func(_ context.Context, f saga.Filter) (saga.Page, error) {
		filters <- f
		return saga.Page{Sagas: []*saga.Saga{sampleSaga(saga.SagaStatusFailed)}, Next: &next}, nil
	}})
	q := "?status=Failed&name=order&transaction_id=" + sampleTxID.String() +
		"&created_after=2026-05-01T12%3A00%3A00%2B02%3A00&limit=10&cursor=" + next.String()
	resp, raw := b.do(t, http.MethodGet, "/api/v1/sagas"+q, "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d; body %s", resp.StatusCode, raw)
	}
	f := <-filters
	wantAfter := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	if f.Status != saga.SagaStatusFailed || f.Name != "order" || f.TransactionID == nil || *f.TransactionID != sampleTxID ||
		f.CreatedAfter == nil || !f.CreatedAfter.Equal(wantAfter) || f.Limit != 10 || f.Cursor == nil ||
		!f.Cursor.CreatedAt.Equal(next.CreatedAt) || f.Cursor.ID != next.ID {
		t.Errorf("filter %+v", f)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m["next_cursor"] != next.String() {
		t.Errorf("next_cursor %v, want %s", m["next_cursor"], next.String())
	}
	item := m["sagas"].([]any)[0].(map[string]any)
	if _, ok := item["steps"]; ok {
		t.Errorf("a listed saga has steps")
	}

	// Without parameters: the default limit; an unescaped "+" in a time is a space.
	resp, raw = b.do(t, http.MethodGet, "/api/v1/sagas?created_after=2026-05-01T12:00:00+02:00", "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d; body %s", resp.StatusCode, raw)
	}
	if f := <-filters; f.Limit != saga.ListLimitDefault || f.CreatedAfter == nil || !f.CreatedAfter.Equal(wantAfter) {
		t.Errorf("filter %+v", f)
	}
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	// Five sagas, newest first, served two per page by cursor.
	all := make([]*saga.Saga, 5)
	for i := range all {
		s := sampleSaga(saga.SagaStatusCompleted)
		s.ID = saga.NewID()
		s.CreatedAt = sampleStart.Add(-time.Duration(i) * time.Minute)
		all[i] = s
	}
	b := setup(t, &fakeCoordinator{list: func(_ context.Context, f saga.Filter) (saga.Page, error) {
		start := 0
		if f.Cursor != nil {
			start = slices.IndexFunc(all, func(s *saga.Saga) bool { return s.ID == f.Cursor.ID }) + 1
			if start == 0 || !all[start-1].CreatedAt.Equal(f.Cursor.CreatedAt) {
				return saga.Page{}, fmt.Errorf("cursor %+v does not match a saga", *f.Cursor)
			}
		}
		end := min(start+f.EffectiveLimit(), len(all))
		p := saga.Page{Sagas: all[start:end]}
		if end < len(all) {
			p.Next = &saga.Cursor{CreatedAt: all[end-1].CreatedAt, ID: all[end-1].ID}
		}
		return p, nil
	}})
	var ids []string
	q := ListQuery{Status: "Completed", Limit: 2}
	pages := 0
	for {
		page, err := b.client.List(t.Context(), q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, s := range page.Sagas {
			ids = append(ids, s.ID)
		}
		if page.NextCursor == nil {
			break
		}
		q.Cursor = *page.NextCursor
	}
	if pages != 3 || len(ids) != 5 {
		t.Fatalf("%d pages, %d sagas; want 3 and 5", pages, len(ids))
	}
	for i, s := range all {
		if ids[i] != s.ID.String() {
			t.Errorf("saga %d is %s, want %s", i, ids[i], s.ID)
		}
	}
}

func TestControl(t *testing.T) {
	t.Parallel()
	for _, a := range saga.ControlActions {
		t.Run(string(a), func(t *testing.T) {
			t.Parallel()
			b := setup(t, &fakeCoordinator{control: func(_ context.Context, id saga.ID, got saga.ControlAction) (*saga.Saga, error) {
				if got != a {
					return nil, fmt.Errorf("action %q, want %q", got, a)
				}
				s := sampleSaga(saga.SagaStatusExecuting)
				s.ID = id
				s.Control = got
				return s, nil
			}})
			resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas/"+sampleID.String()+"/"+string(a), "", nil, nil)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("status %d; body %s", resp.StatusCode, raw)
			}
			sj, err := b.client.Control(t.Context(), sampleID.String(), string(a))
			if err != nil {
				t.Fatal(err)
			}
			if sj.ControlRequest != a || sj.Status != saga.SagaStatusExecuting || sj.ID != sampleID.String() {
				t.Errorf("answer %+v", sj)
			}
		})
	}
}

func TestControlRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		action    saga.ControlAction
		status    saga.SagaStatus
		allowedIn string
	}{
		{saga.ControlPause, saga.SagaStatusCompleted, "Created, Executing"},
		{saga.ControlResume, saga.SagaStatusExecuting, "Paused"},
		{saga.ControlCancel, saga.SagaStatusCompensated, "Created, Executing, Paused"},
		{saga.ControlRetry, saga.SagaStatusCompleted, "Failed"},
	}
	for _, tc := range tests {
		t.Run(string(tc.action), func(t *testing.T) {
			t.Parallel()
			b := setup(t, &fakeCoordinator{
				control: func(context.Context, saga.ID, saga.ControlAction) (*saga.Saga, error) {
					return nil, fmt.Errorf("request control: %w", saga.ErrInvalidTransition)
				},
				get: func(context.Context, saga.ID) (*saga.Saga, error) { return sampleSaga(tc.status), nil },
			})
			_, err := b.client.Control(t.Context(), sampleID.String(), string(tc.action))
			var p *Problem
			if !errors.As(err, &p) || p.Status != http.StatusConflict || p.Code() != saga.ECodeConflict {
				t.Fatalf("error %v, want a 409 problem", err)
			}
			if !strings.Contains(p.Detail, "it is "+string(tc.status)) || !strings.Contains(p.Detail, "allowed only in status "+tc.allowedIn) {
				t.Errorf("detail %q does not name the status %s and the allowed %s", p.Detail, tc.status, tc.allowedIn)
			}
		})
	}

	t.Run("unknown saga", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &fakeCoordinator{control: func(context.Context, saga.ID, saga.ControlAction) (*saga.Saga, error) {
			return nil, fmt.Errorf("request control: %w", saga.ErrNotFound)
		}})
		_, err := b.client.Control(t.Context(), sampleID.String(), "cancel")
		var p *Problem
		if !errors.As(err, &p) || p.Status != http.StatusNotFound || p.Field != "id" {
			t.Errorf("error %v, want a 404 problem naming id", err)
		}
	})
}

func TestStatistics(t *testing.T) {
	t.Parallel()
	windows := make(chan time.Duration, 2)
	b := setup(t, &fakeCoordinator{statistics: func(_ context.Context, window time.Duration) (saga.Stats, error) {
		windows <- window
		return saga.Stats{
			ByStatus: map[saga.SagaStatus]int64{saga.SagaStatusCompleted: 5, saga.SagaStatusFailed: 1},
			Total:    6, Started: 900, Completed: 450, Failed: 90, EndedInWindow: 540,
			MeanDuration: 1500 * time.Microsecond, P95Duration: 20 * time.Millisecond,
		}, nil
	}})
	st, err := b.client.Statistics(t.Context(), 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if w := <-windows; w != 15*time.Minute {
		t.Errorf("window %v, want 15m", w)
	}
	if len(st.ByStatus) != len(saga.SagaStatuses) || st.ByStatus[saga.SagaStatusCompleted] != 5 || st.ByStatus[saga.SagaStatusPaused] != 0 {
		t.Errorf("by_status %v", st.ByStatus)
	}
	if st.Total != 6 || st.WindowSeconds != 900 || st.Started != 900 || st.Completed != 450 || st.Failed != 90 || st.Ended != 540 ||
		st.StartedPerSecond != 1 || st.CompletedPerSecond != 0.5 || st.FailedPerSecond != 0.1 ||
		st.MeanDurationMs != 1.5 || st.P95DurationMs != 20 {
		t.Errorf("statistics %+v", st)
	}
	if _, err := b.client.Statistics(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
	if w := <-windows; w != StatsWindowDefault {
		t.Errorf("default window %v, want %v", w, StatsWindowDefault)
	}
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	b := setup(t, &fakeCoordinator{cleanup: func(context.Context) (int, error) { return 7, nil }})
	n, err := b.client.Cleanup(t.Context())
	if err != nil || n != 7 {
		t.Errorf("Cleanup = %d, %v; want 7", n, err)
	}
	resp, raw := b.do(t, http.MethodPost, "/api/v1/maintenance/cleanup", "", nil, nil)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(raw)) != `{"deleted":7}` {
		t.Errorf("status %d, body %s", resp.StatusCode, raw)
	}
}

func TestHealthNeverTouchesTheStore(t *testing.T) {
	t.Parallel()
	b := setup(t, &fakeCoordinator{instanceID: "host-1:42"})
	h, err := b.client.Health(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != StatusOK || h.InstanceID != "host-1:42" || h.Version != "test" {
		t.Errorf("health %+v", h)
	}
	if calls := b.fake.Calls(); len(calls) != 0 {
		t.Errorf("liveness called the coordinator: %v", calls)
	}
}

func TestReady(t *testing.T) {
	t.Parallel()
	durable := saga.Health{Durable: true, Mode: "durable", Backend: "postgres", RoundTrip: 1250 * time.Microsecond,
		PoolTotal: 5, PoolIdle: 3, PoolInUse: 2, PoolMax: 20, MigrationVersion: 4}
	onFile := durable
	onFile.Backend, onFile.Path = "sqlite", "/var/lib/tracseq/tracseq.db"
	tests := []struct {
		name        string
		health      saga.Health
		extra       func(context.Context) bool
		wantHTTP    int
		wantStatus  string
		wantPersist string
		wantDB      bool
		wantError   string
		wantWarning bool
	}{
		{name: "durable", health: durable, wantHTTP: 200, wantStatus: StatusReady, wantPersist: PersistencePostgres, wantDB: true},
		{name: "sqlite", health: onFile, wantHTTP: 200, wantStatus: StatusReady, wantPersist: PersistenceSQLite, wantDB: true},
		{name: "durable, database failing", health: func() saga.Health { h := durable; h.Error = "connection refused"; return h }(),
			wantHTTP: 503, wantStatus: StatusNotReady, wantPersist: PersistencePostgres, wantDB: true, wantError: "database unreachable"},
		// The store's error names the database; the open answer does not.
		{name: "connection details", health: func() saga.Health {
			h := durable
			h.Error = "connect to PostgreSQL at db.internal:6432/tracseq_prod: failed to connect to `user=svc_admin database=tracseq_prod`"
			return h
		}(), wantHTTP: 503, wantStatus: StatusNotReady, wantPersist: PersistencePostgres, wantDB: true, wantError: "database unreachable"},
		{name: "memory, connection details", health: saga.Health{Mode: "memory", Error: "connect to the database: failed to connect to `host=db.internal user=svc_admin database=tracseq_prod`"},
			wantHTTP: 200, wantStatus: StatusReady, wantPersist: PersistenceMemory, wantError: "database unreachable", wantWarning: true},
		{name: "memory", health: saga.Health{Mode: "memory"}, wantHTTP: 200, wantStatus: StatusReady, wantPersist: PersistenceMemory, wantWarning: true},
		{name: "memory while the database is away", health: saga.Health{Mode: "memory", Error: "database unreachable"},
			wantHTTP: 200, wantStatus: StatusReady, wantPersist: PersistenceMemory, wantError: "database unreachable", wantWarning: true},
		{name: "extra check fails", health: durable, extra: func(context.Context) bool { return false },
			wantHTTP: 503, wantStatus: StatusNotReady, wantPersist: PersistencePostgres, wantDB: true, wantError: "readiness check"},
		{name: "extra check passes", health: durable, extra: func(context.Context) bool { return true },
			wantHTTP: 200, wantStatus: StatusReady, wantPersist: PersistencePostgres, wantDB: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, &fakeCoordinator{health: func(context.Context) saga.Health { return tc.health }},
				func(c *Config) { c.Ready = tc.extra; c.Tokens = []string{"secret"} })
			anonymous := &Client{BaseURL: b.http.URL, HTTP: b.http.Client()} // readiness is open
			r, code, err := anonymous.Ready(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if r.Durable != tc.health.Durable || r.Path != tc.health.Path {
				t.Errorf("durable %v path %q, want %v %q", r.Durable, r.Path, tc.health.Durable, tc.health.Path)
			}
			if code != tc.wantHTTP || r.Status != tc.wantStatus || r.Persistence != tc.wantPersist ||
				(r.Database != nil) != tc.wantDB || !strings.Contains(r.Error, tc.wantError) ||
				(r.Warning != "") != tc.wantWarning || r.InstanceID != "test-instance" {
				t.Errorf("HTTP %d, %+v", code, r)
			}
			for _, secret := range []string{"svc_admin", "db.internal", "6432", "tracseq_prod", "refused"} {
				if strings.Contains(r.Error, secret) {
					t.Errorf("readiness shows %q: %q", secret, r.Error)
				}
			}
			if tc.wantDB && !reflect.DeepEqual(*r.Database, DatabaseJSON{RoundTripMs: 1.25, MigrationVersion: 4,
				Pool: PoolJSON{Total: 5, Idle: 3, InUse: 2, Max: 20}}) {
				t.Errorf("database %+v", *r.Database)
			}
		})
	}
}

func TestMetricsAndOpenAPIAreOpen(t *testing.T) {
	t.Parallel()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte("tracseq_up 1\n"))
	})
	b := setup(t, nil, func(c *Config) { c.Metrics = metrics; c.Tokens = []string{"secret"} })
	resp, raw := b.do(t, http.MethodGet, "/metrics", "", nil, nil)
	if resp.StatusCode != http.StatusOK || string(raw) != "tracseq_up 1\n" {
		t.Errorf("metrics: %d %s", resp.StatusCode, raw)
	}
	resp, raw = b.do(t, http.MethodGet, "/openapi.json", "", nil, nil)
	var doc struct {
		OpenAPI string `json:"openapi"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &doc) != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi: %d %.100s", resp.StatusCode, raw)
	}

	// Without Config.Metrics, /metrics is a 404 problem.
	b = setup(t, nil)
	resp, raw = b.do(t, http.MethodGet, "/metrics", "", nil, nil)
	if p := decodeProblem(t, resp, raw); p.Status != http.StatusNotFound {
		t.Errorf("metrics disabled: %+v", p)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	fake := &fakeCoordinator{
		get:    func(context.Context, saga.ID) (*saga.Saga, error) { return sampleSaga(saga.SagaStatusExecuting), nil },
		health: func(context.Context) saga.Health { return saga.Health{Durable: true} },
	}
	b := setup(t, fake, func(c *Config) {
		c.Tokens = []string{"token-a", "token-b"}
		c.Metrics = http.NotFoundHandler()
	})
	sagaPath := "/api/v1/sagas/" + sampleID.String()
	tests := []struct {
		name      string
		method    string
		path      string
		auth      string
		want      int
		challenge string // the WWW-Authenticate expected on a 401
	}{
		{"no header", "GET", sagaPath, "", 401, `Bearer realm="tracseq"`},
		{"wrong token", "GET", sagaPath, "Bearer token-c", 401, `Bearer realm="tracseq", error="invalid_token"`},
		{"token prefix", "GET", sagaPath, "Bearer token-", 401, `Bearer realm="tracseq", error="invalid_token"`},
		{"token with suffix", "GET", sagaPath, "Bearer token-a2", 401, `Bearer realm="tracseq", error="invalid_token"`},
		{"basic scheme", "GET", sagaPath, "Basic dG9rZW4tYQ==", 401, `Bearer realm="tracseq", error="invalid_token"`},
		{"scheme only", "GET", sagaPath, "Bearer", 401, `Bearer realm="tracseq", error="invalid_token"`},
		{"first token", "GET", sagaPath, "Bearer token-a", 200, ""},
		{"second token, lowercase scheme", "GET", sagaPath, "bearer token-b", 200, ""},
		{"bad input without a token", "POST", "/api/v1/sagas", "", 401, `Bearer realm="tracseq"`},
		{"unknown API route without a token", "GET", "/api/v1/nothing", "", 401, `Bearer realm="tracseq"`},
		{"unknown API route with a token", "GET", "/api/v1/nothing", "Bearer token-a", 404, ""},
		{"liveness is open", "GET", "/health", "", 200, ""},
		{"readiness is open", "GET", "/health/ready", "", 200, ""},
		{"openapi is open", "GET", "/openapi.json", "", 200, ""},
		{"metrics are open", "GET", "/metrics", "", 404, ""}, // NotFoundHandler: served, not refused
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			var body []byte
			if tc.method == http.MethodPost {
				body = []byte(`{"bad":`)
			}
			resp, raw := b.do(t, tc.method, tc.path, contentTypeJSON, body, h)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.want, raw)
			}
			if tc.want == http.StatusUnauthorized {
				p := decodeProblem(t, resp, raw)
				if p.Code() != codeUnauthorized {
					t.Errorf("problem %+v", p)
				}
				if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
					t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
				}
			}
		})
	}
	if slices.Contains(fake.Calls(), "Submit") {
		t.Error("an unauthenticated submit reached the coordinator")
	}

	// The client sends its token.
	if _, err := b.client.Get(t.Context(), sampleID.String()); err != nil {
		t.Errorf("client with a token: %v", err)
	}
	anonymous := &Client{BaseURL: b.http.URL, HTTP: b.http.Client()}
	_, err := anonymous.Get(t.Context(), sampleID.String())
	var p *Problem
	if !errors.As(err, &p) || p.Status != http.StatusUnauthorized {
		t.Errorf("client without a token: %v", err)
	}
}

func TestAuthOff(t *testing.T) {
	t.Parallel()
	b := setup(t, &fakeCoordinator{get: func(context.Context, saga.ID) (*saga.Saga, error) {
		return sampleSaga(saga.SagaStatusExecuting), nil
	}})
	resp, raw := b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleID.String(), "", nil, http.Header{"Authorization": {"Bearer anything"}})
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d; body %s", resp.StatusCode, raw)
	}
	resp, raw = b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleID.String(), "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d; body %s", resp.StatusCode, raw)
	}
}

// TestCoordinatorErrors checks the answer to each kind of coordinator error,
// and that internal details are logged, not returned.
func TestCoordinatorErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantField  string
		wantErrors int
		wantDetail string
	}{
		{"validation", &saga.ValidationError{Problems: []*saga.Error{
			saga.Errorf(saga.ECodeInvalid, "steps[0].action.url", "host is private"),
			saga.Errorf(saga.ECodeInvalid, "steps[1].action.url", "host is private"),
		}}, 400, "steps[0].action.url", 2, "and 1 more"},
		{"invalid error", saga.Errorf(saga.ECodeInvalid, "context", "too deep"), 400, "context", 1, "context: too deep"},
		{"forbidden host", fmt.Errorf("submit: %w", saga.Errorf(saga.ECodeForbidden, "steps[0].action.url", "host db.internal is not allowed")),
			403, "steps[0].action.url", 1, "not allowed"},
		{"not found", fmt.Errorf("get: %w", saga.ErrNotFound), 404, "", 0, "not found"},
		{"conflict", fmt.Errorf("x: %w", saga.ErrInvalidTransition), 409, "", 0, "not allowed"},
		{"unavailable", fmt.Errorf("store: %w", saga.ErrUnavailable), 503, "", 0, "retry later"},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), 503, "", 0, "retry later"},
		{"internal", errors.New("pq: SECRET relation sagas_x does not exist"), 500, "", 0, "internal error"},
		{"internal code", saga.Errorf(saga.ECodeInternal, "", "SECRET invariant broken"), 500, "", 0, "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, &fakeCoordinator{submit: func(context.Context, saga.Definition) (*saga.Saga, bool, error) {
				return nil, false, tc.err
			}})
			resp, raw := b.do(t, http.MethodPost, "/api/v1/sagas", contentTypeJSON, []byte(validDefinition),
				http.Header{"X-Request-Id": {"req-" + strings.ReplaceAll(tc.name, " ", "-")}})
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.wantStatus, raw)
			}
			p := decodeProblem(t, resp, raw)
			if p.Field != tc.wantField || len(p.Errors) != tc.wantErrors || !strings.Contains(p.Detail, tc.wantDetail) {
				t.Errorf("problem %+v", p)
			}
			if strings.Contains(string(raw), "SECRET") {
				t.Errorf("internal detail leaked: %s", raw)
			}
			switch tc.wantStatus {
			case http.StatusInternalServerError:
				if !strings.Contains(p.Detail, p.RequestID) {
					t.Errorf("500 detail %q lacks the request id %q", p.Detail, p.RequestID)
				}
				b.logs.waitForLog(t, func(e map[string]any) bool {
					return e["level"] == "ERROR" && e["request_id"] == p.RequestID && strings.Contains(fmt.Sprint(e["err"]), "SECRET")
				})
			case http.StatusServiceUnavailable:
				if resp.Header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
			}
		})
	}
}

func TestErrorCodeStatusTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code saga.ErrorCode
		want int
	}{
		{saga.ECodeInvalid, 400},
		{codeUnauthorized, 401},
		{saga.ECodeForbidden, 403},
		{saga.ECodeNotFound, 404},
		{codeRouteNotFound, 404},
		{codeMethodNotAllowed, 405},
		{saga.ECodeConflict, 409},
		{codeTooLarge, 413},
		{codeUnsupportedMedia, 415},
		{saga.ECodeInternal, 500},
		{saga.ECodeUnavailable, 503},
		{"some_future_code", 500},
	}
	for _, tc := range tests {
		if got, title := httpStatus(tc.code); got != tc.want || title == "" {
			t.Errorf("httpStatus(%q) = %d, %q; want %d and a title", tc.code, got, title, tc.want)
		}
	}
}

func TestPanicBecomesProblem(t *testing.T) {
	t.Parallel()
	var once sync.Once
	b := setup(t, &fakeCoordinator{get: func(context.Context, saga.ID) (*saga.Saga, error) {
		panicked := false
		once.Do(func() { panicked = true })
		if panicked {
			panic("nil map somewhere")
		}
		return sampleSaga(saga.SagaStatusExecuting), nil
	}})
	resp, raw := b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleID.String(), "", nil, nil)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d; body %s", resp.StatusCode, raw)
	}
	p := decodeProblem(t, resp, raw)
	if !strings.Contains(p.Detail, "internal error") || strings.Contains(string(raw), "nil map") {
		t.Errorf("problem %+v", p)
	}
	e := b.logs.waitForLog(t, func(e map[string]any) bool { return e["msg"] == "panic in http handler" })
	if e["request_id"] != p.RequestID || !strings.Contains(fmt.Sprint(e["stack"]), "TestPanicBecomesProblem") {
		t.Errorf("panic log %v", e)
	}
	// The server goes on serving.
	resp, _ = b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleID.String(), "", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after the panic: status %d", resp.StatusCode)
	}
}

func TestRequestLogAndID(t *testing.T) {
	t.Parallel()
	type observation struct {
		route  string
		status int
	}
	observed := make(chan observation, 10)
	b := setup(t, &fakeCoordinator{get: func(context.Context, saga.ID) (*saga.Saga, error) {
		return sampleSaga(saga.SagaStatusExecuting), nil
	}}, func(c *Config) {
		c.ObserveRequest = func(route string, status int, d time.Duration) {
			if d < 0 {
				route = "negative duration"
			}
			observed <- observation{route, status}
		}
	})

	resp, _ := b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleID.String(), "", nil, http.Header{"X-Request-Id": {"client-id.42"}})
	if got := resp.Header.Get("X-Request-Id"); got != "client-id.42" {
		t.Errorf("X-Request-Id %q, want the client's", got)
	}
	e := b.logs.waitForLog(t, func(e map[string]any) bool {
		return e["msg"] == "http request" && e["request_id"] == "client-id.42"
	})
	if e["level"] != "INFO" || e["method"] != "GET" || e["route"] != "GET /api/v1/sagas/{id}" || e["status"] != 200.0 {
		t.Errorf("request log %v", e)
	}
	if _, ok := e["duration_ms"].(float64); !ok {
		t.Errorf("request log without duration_ms: %v", e)
	}
	if o := <-observed; o != (observation{"GET /api/v1/sagas/{id}", 200}) {
		t.Errorf("observed %+v", o)
	}

	for _, insane := range []string{"has space", strings.Repeat("x", 200), "new\tline", "ünï"} {
		resp, _ = b.do(t, http.MethodGet, "/api/v1/sagas/"+sampleID.String(), "", nil, http.Header{"X-Request-Id": {insane}})
		got := resp.Header.Get("X-Request-Id")
		if _, err := saga.ParseID(got); err != nil {
			t.Errorf("X-Request-Id %q for the client's %q, want a fresh UUID", got, insane)
		}
		<-observed
	}

	resp, _ = b.do(t, http.MethodGet, "/nowhere", "", nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d", resp.StatusCode)
	}
	if o := <-observed; o != (observation{routeUnmatched, 404}) {
		t.Errorf("observed %+v", o)
	}
}

func TestUnmatchedRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{"GET", "/nowhere", 404, ""},
		{"GET", "/api/v1/sagas/", 404, ""},
		{"DELETE", "/api/v1/sagas", 405, "GET, HEAD, POST"},
		{"PUT", "/health", 405, "GET, HEAD"},
		{"GET", "/api/v1/maintenance/cleanup", 405, "POST"},
	}
	for _, tc := range tests {
		resp, raw := b.do(t, tc.method, tc.path, "", nil, nil)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
			continue
		}
		decodeProblem(t, resp, raw)
		if got := resp.Header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	if calls := b.fake.Calls(); len(calls) != 0 {
		t.Errorf("unmatched routes called the coordinator: %v", calls)
	}
}

func TestNewServerConfig(t *testing.T) {
	t.Parallel()
	fake := &fakeCoordinator{}
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"no coordinator", Config{}, "Coordinator"},
		{"negative body limit", Config{Coordinator: fake, MaxBodyBytes: -1}, "MaxBodyBytes"},
		{"negative wait", Config{Coordinator: fake, MaxWait: -time.Second}, "MaxWait"},
		{"empty token", Config{Coordinator: fake, Tokens: []string{"a", " "}}, "Tokens[1]"},
		{"defaults", Config{Coordinator: fake}, ""},
	}
	for _, tc := range tests {
		s, err := NewServer(tc.cfg)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.wantErr)
		case tc.wantErr == "" && (s.maxBodyBytes != MaxBodyBytesDefault || s.maxWait != MaxWaitDefault):
			t.Errorf("%s: defaults not applied: %d, %v", tc.name, s.maxBodyBytes, s.maxWait)
		}
	}
}
