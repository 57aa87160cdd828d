package failover

import (
	"slices"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

func TestMergePages(t *testing.T) {
	t.Parallel()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func(n int) *saga.Saga {
		return &saga.Saga{ID: saga.ID{15: byte(n)}, CreatedAt: base.Add(time.Duration(n) * time.Second)}
	}
	ids := func(p saga.Page) []int {
		var out []int
		for _, s := range p.Sagas {
			out = append(out, int(s.ID[15]))
		}
		return out
	}
	next := &saga.Cursor{}
	tests := []struct {
		name     string
		limit    int
		a, b     saga.Page
		want     []int
		wantNext bool
	}{
		{"both empty", 10, saga.Page{}, saga.Page{}, nil, false},
		{"interleaved", 10, saga.Page{Sagas: []*saga.Saga{mk(5), mk(3), mk(1)}}, saga.Page{Sagas: []*saga.Saga{mk(4), mk(2)}}, []int{5, 4, 3, 2, 1}, false},
		{"cut to limit", 3, saga.Page{Sagas: []*saga.Saga{mk(5), mk(3), mk(1)}}, saga.Page{Sagas: []*saga.Saga{mk(4), mk(2)}}, []int{5, 4, 3}, true},
		{"one has more", 10, saga.Page{Sagas: []*saga.Saga{mk(5)}, Next: next}, saga.Page{Sagas: []*saga.Saga{mk(4)}}, []int{5, 4}, true},
		{"duplicate kept once, first page wins", 10, saga.Page{Sagas: []*saga.Saga{mk(5), mk(2)}}, saga.Page{Sagas: []*saga.Saga{mk(5)}}, []int{5, 2}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mergePages(tt.limit, tt.a, tt.b)
			if !slices.Equal(ids(got), tt.want) {
				t.Errorf("sagas = %v, want %v", ids(got), tt.want)
			}
			if (got.Next != nil) != tt.wantNext {
				t.Fatalf("Next = %v, want set %v", got.Next, tt.wantNext)
			}
			if got.Next != nil {
				last := got.Sagas[len(got.Sagas)-1]
				if got.Next.ID != last.ID || !got.Next.CreatedAt.Equal(last.CreatedAt) {
					t.Errorf("Next = %+v, want the last saga's position", got.Next)
				}
			}
		})
	}
}

func TestAddStats(t *testing.T) {
	t.Parallel()
	a := saga.Stats{
		ByStatus: map[saga.SagaStatus]int64{saga.SagaStatusCompleted: 2, saga.SagaStatusExecuting: 1},
		Total:    3, Window: time.Hour, Started: 3, Completed: 2, EndedInWindow: 2,
		MeanDuration: time.Second, P95Duration: 2 * time.Second,
	}
	b := saga.Stats{
		ByStatus: map[saga.SagaStatus]int64{saga.SagaStatusCompleted: 1, saga.SagaStatusFailed: 1},
		Total:    2, Window: time.Hour, Started: 1, Completed: 1, Failed: 1, EndedInWindow: 2,
		MeanDuration: 3 * time.Second, P95Duration: 5 * time.Second,
	}
	got := addStats(a, b)
	want := saga.Stats{
		ByStatus: map[saga.SagaStatus]int64{saga.SagaStatusCompleted: 3, saga.SagaStatusExecuting: 1, saga.SagaStatusFailed: 1},
		Total:    5, Window: time.Hour, Started: 4, Completed: 3, Failed: 1, EndedInWindow: 4,
		MeanDuration: 2 * time.Second, P95Duration: 5 * time.Second,
	}
	if got.Total != want.Total || got.Started != want.Started || got.Completed != want.Completed ||
		got.Failed != want.Failed || got.EndedInWindow != want.EndedInWindow || got.Window != want.Window ||
		got.MeanDuration != want.MeanDuration || got.P95Duration != want.P95Duration {
		t.Errorf("addStats = %+v, want %+v", got, want)
	}
	for st, n := range want.ByStatus {
		if got.ByStatus[st] != n {
			t.Errorf("ByStatus[%s] = %d, want %d", st, got.ByStatus[st], n)
		}
	}
	if empty := addStats(saga.Stats{}, saga.Stats{}); empty.MeanDuration != 0 || empty.Total != 0 {
		t.Errorf("addStats of nothing = %+v", empty)
	}
}
