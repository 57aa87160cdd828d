package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	saga "github.com/tracseq/transaction-service"
)

var _ saga.GaugeReader = (*Store)(nil)

// Gauges returns the figures of saga.GaugeReader over the sagas held here.
func (s *Store) Gauges(ctx context.Context) (saga.Gauges, error) {
	if err := ctx.Err(); err != nil {
		return saga.Gauges{}, fmt.Errorf("gauges: %w", err)
	}
	g := saga.Gauges{ByStatus: make(map[saga.SagaStatus]int64, len(saga.SagaStatuses))}
	for _, st := range saga.SagaStatuses {
		g.ByStatus[st] = 0
	}
	type held struct {
		lease   saga.InstanceLeases
		created []time.Time
	}
	owners := map[string]*held{}
	var oldest time.Time
	s.mu.Lock()
	now := s.clock()
	g.Now = now
	for _, e := range s.sagas {
		sg := e.saga
		g.ByStatus[sg.Status]++
		if sg.Status == saga.SagaStatusFailed && sg.Control != saga.ControlRetry {
			g.FailedWaiting++
		}
		live := sg.OwnerID != "" && sg.LeaseExpiresAt != nil && sg.LeaseExpiresAt.After(now)
		if sg.Status.Running() {
			if oldest.IsZero() || sg.CreatedAt.Before(oldest) {
				oldest = sg.CreatedAt
			}
			if !live && sg.NextRunAt == nil {
				g.Stuck++
			}
		}
		if !live || sg.Status.Terminal() {
			continue
		}
		h := owners[sg.OwnerID]
		if h == nil {
			h = &held{lease: saga.InstanceLeases{ID: sg.OwnerID, ByStatus: map[saga.SagaStatus]int64{}}}
			owners[sg.OwnerID] = h
		}
		h.lease.Held++
		h.lease.ByStatus[sg.Status]++
		h.lease.Sagas = append(h.lease.Sagas, sg.ID)
		h.created = append(h.created, sg.CreatedAt)
		if sg.LeaseExpiresAt.After(h.lease.LeaseExpiresAt) {
			h.lease.LeaseExpiresAt = *sg.LeaseExpiresAt
		}
	}
	s.mu.Unlock()
	if !oldest.IsZero() {
		g.OldestRunningAge = max(now.Sub(oldest), 0)
	}
	for _, h := range owners {
		// Oldest first, then by id, as the database orders them.
		idx := make([]int, len(h.lease.Sagas))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int {
			if c := h.created[a].Compare(h.created[b]); c != 0 {
				return c
			}
			return cmp.Compare(h.lease.Sagas[a].String(), h.lease.Sagas[b].String())
		})
		ids := make([]saga.ID, 0, min(len(idx), saga.HeldSagasListed))
		for _, i := range idx[:min(len(idx), saga.HeldSagasListed)] {
			ids = append(ids, h.lease.Sagas[i])
		}
		h.lease.Sagas = ids
		g.Instances = append(g.Instances, h.lease)
	}
	slices.SortFunc(g.Instances, func(a, b saga.InstanceLeases) int { return cmp.Compare(a.ID, b.ID) })
	return g, nil
}

// Activity returns the figures of saga.GaugeReader over the sagas held here.
func (s *Store) Activity(ctx context.Context, window time.Duration) (saga.Activity, error) {
	if err := ctx.Err(); err != nil {
		return saga.Activity{}, fmt.Errorf("activity: %w", err)
	}
	window = saga.ClampActivityWindow(window)
	type recent struct {
		createdAt time.Time
		id        saga.ID
		events    []saga.Event
	}
	var (
		durations []time.Duration
		sampled   []recent
	)
	s.mu.Lock()
	now := s.clock()
	since := now.Add(-window)
	a := saga.Activity{Now: now, Window: window, Buckets: saga.NewActivityBuckets(now, window)}
	for _, e := range s.sagas {
		sg := e.saga
		if sg.CreatedAt.After(since) {
			if i := saga.BucketIndex(a.Buckets, sg.CreatedAt); i >= 0 {
				a.Buckets[i].Started++
			}
			sampled = append(sampled, recent{createdAt: sg.CreatedAt, id: sg.ID, events: e.events})
		}
		if !sg.Status.Terminal() || sg.CompletedAt == nil || !sg.CompletedAt.After(since) {
			continue
		}
		durations = append(durations, max(sg.CompletedAt.Sub(sg.CreatedAt), 0))
		if i := saga.BucketIndex(a.Buckets, *sg.CompletedAt); i >= 0 {
			if sg.Status == saga.SagaStatusCompleted {
				a.Buckets[i].Completed++
			} else {
				a.Buckets[i].Failed++
			}
		}
	}
	// The newest sagas of the window, newest first, as the database reads
	// them.
	slices.SortFunc(sampled, func(x, y recent) int {
		if c := y.createdAt.Compare(x.createdAt); c != 0 {
			return c
		}
		return cmp.Compare(y.id.String(), x.id.String())
	})
	seen := map[string]*saga.InstanceSeen{}
	for _, r := range sampled[:min(len(sampled), saga.RecentSagasSampled)] {
		for _, ev := range r.events {
			if ev.InstanceID == "" {
				continue
			}
			in := seen[ev.InstanceID]
			if in == nil {
				in = &saga.InstanceSeen{ID: ev.InstanceID}
				seen[ev.InstanceID] = in
			}
			in.Events++
			if ev.CreatedAt.After(in.LastSeen) {
				in.LastSeen = ev.CreatedAt
			}
		}
	}
	s.mu.Unlock()

	a.Ended = int64(len(durations))
	a.P50, a.P95 = saga.NearestRank(durations, 0.50), saga.NearestRank(durations, 0.95)
	for _, in := range seen {
		a.Instances = append(a.Instances, *in)
	}
	saga.SortInstancesSeen(a.Instances)
	return a, nil
}
