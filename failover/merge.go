package failover

import (
	"bytes"
	"slices"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// mergePages merges pages in (created_at, id) descending order, keeping the
// first copy of a saga seen twice, and cuts the result to limit.
func mergePages(limit int, pages ...saga.Page) saga.Page {
	var all []*saga.Saga
	seen := make(map[saga.ID]bool)
	more := false
	for _, p := range pages {
		more = more || p.Next != nil
		for _, sg := range p.Sagas {
			if !seen[sg.ID] {
				seen[sg.ID] = true
				all = append(all, sg)
			}
		}
	}
	slices.SortFunc(all, func(a, b *saga.Saga) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return bytes.Compare(b.ID[:], a.ID[:])
	})
	if len(all) > limit {
		all, more = all[:limit], true
	}
	out := saga.Page{Sagas: all}
	if more && len(all) > 0 {
		last := all[len(all)-1]
		out.Next = &saga.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	return out
}

// addStats adds two sets of figures over the same window.
func addStats(a, b saga.Stats) saga.Stats {
	out := saga.Stats{
		ByStatus:      make(map[saga.SagaStatus]int64, len(a.ByStatus)+len(b.ByStatus)),
		Total:         a.Total + b.Total,
		Window:        a.Window,
		Started:       a.Started + b.Started,
		Completed:     a.Completed + b.Completed,
		Failed:        a.Failed + b.Failed,
		EndedInWindow: a.EndedInWindow + b.EndedInWindow,
		P95Duration:   max(a.P95Duration, b.P95Duration),
	}
	for _, m := range []map[saga.SagaStatus]int64{a.ByStatus, b.ByStatus} {
		for st, n := range m {
			out.ByStatus[st] += n
		}
	}
	if out.EndedInWindow > 0 {
		sum := float64(a.MeanDuration)*float64(a.EndedInWindow) + float64(b.MeanDuration)*float64(b.EndedInWindow)
		out.MeanDuration = time.Duration(sum / float64(out.EndedInWindow))
	}
	return out
}
