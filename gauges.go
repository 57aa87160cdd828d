package saga

import (
	"context"
	"math"
	"slices"
	"strings"
	"time"
)

// GaugeReader is an optional Store interface: cluster-wide figures that
// every instance reads from the shared store, cheaply (on indexes), for the
// metrics gauges and the web console. The PostgreSQL and memory stores
// implement it; callers type-assert a Store to it.
type GaugeReader interface {
	// Gauges returns the counts by status and the figures alerts are
	// written on, as of the store's clock.
	Gauges(ctx context.Context) (Gauges, error)
	// Activity returns what happened in the window before now: sagas
	// started and ended per ActivityBucket, the duration percentiles of
	// those that ended, and the instances that wrote events. window is
	// bounded to [ActivityBucket, ActivityWindowMax].
	Activity(ctx context.Context, window time.Duration) (Activity, error)
}

// Bounds of GaugeReader.Activity.
const (
	ActivityBucket    = time.Minute
	ActivityWindowMax = 24 * time.Hour
	// RecentSagasSampled bounds the sagas whose events Activity reads to
	// find the instances seen recently: the newest ones created in the
	// window.
	RecentSagasSampled = 200
	// HeldSagasListed bounds the saga ids listed per instance in
	// Gauges.Instances.
	HeldSagasListed = 10
)

// ClampActivityWindow returns window bounded to [ActivityBucket,
// ActivityWindowMax].
func ClampActivityWindow(window time.Duration) time.Duration {
	return min(max(window, ActivityBucket), ActivityWindowMax)
}

// Gauges are the cluster-wide figures of GaugeReader.Gauges.
type Gauges struct {
	// Now is the store's clock when the figures were read.
	Now time.Time
	// ByStatus holds every status, zero or not.
	ByStatus map[SagaStatus]int64
	// OldestRunningAge is the age of the oldest saga that is Created,
	// Executing or Compensating (0 when there is none).
	OldestRunningAge time.Duration
	// FailedWaiting counts Failed sagas with no retry requested: they wait
	// for an operator.
	FailedWaiting int64
	// Stuck counts sagas that are Created, Executing or Compensating, hold
	// no live lease and have no next-run time: no instance will ever pick
	// them up. It must be 0; anything else is a bug.
	Stuck int64
	// Instances are the instances holding live leases now, by id.
	Instances []InstanceLeases
}

// InstanceLeases is what one instance holds: the sagas it has live leases
// on.
type InstanceLeases struct {
	ID       string
	Held     int64
	ByStatus map[SagaStatus]int64
	// Sagas lists up to HeldSagasListed of the held sagas, oldest first.
	Sagas []ID
	// LeaseExpiresAt is the latest expiry of its leases.
	LeaseExpiresAt time.Time
}

// Activity is the answer of GaugeReader.Activity.
type Activity struct {
	// Now is the store's clock; the window is (Now - Window, Now].
	Now    time.Time
	Window time.Duration
	// Buckets holds one entry per ActivityBucket of the window, oldest
	// first, each starting at a multiple of ActivityBucket (the first may
	// begin before the window).
	Buckets []ActivityPoint
	// Ended counts the sagas that ended in the window (Failed included);
	// P50 and P95 are the medians and 95th percentiles of their durations
	// (creation to end), 0 when none ended.
	Ended int64
	P50   time.Duration
	P95   time.Duration
	// Instances wrote events for the newest sagas created in the window (at
	// most RecentSagasSampled of them), most recently seen first.
	Instances []InstanceSeen
}

// ActivityPoint is one bucket of Activity: sagas created in it, ended
// Completed in it, and ended in any other end state (Failed included).
type ActivityPoint struct {
	Start     time.Time
	Started   int64
	Completed int64
	Failed    int64
}

// InstanceSeen is an instance that wrote events recently.
type InstanceSeen struct {
	ID       string
	LastSeen time.Time
	Events   int64
}

// BucketStart returns the start of the ActivityBucket holding t.
func BucketStart(t time.Time) time.Time { return t.UTC().Truncate(ActivityBucket) }

// NewActivityBuckets returns the empty buckets of a window ending at now,
// oldest first.
func NewActivityBuckets(now time.Time, window time.Duration) []ActivityPoint {
	first := BucketStart(now.Add(-window))
	last := BucketStart(now)
	n := int(last.Sub(first)/ActivityBucket) + 1
	out := make([]ActivityPoint, n)
	for i := range out {
		out[i].Start = first.Add(time.Duration(i) * ActivityBucket)
	}
	return out
}

// BucketIndex returns the index in buckets (made by NewActivityBuckets) of
// the bucket holding t, or -1.
func BucketIndex(buckets []ActivityPoint, t time.Time) int {
	if len(buckets) == 0 {
		return -1
	}
	i := int(BucketStart(t).Sub(buckets[0].Start) / ActivityBucket)
	if i < 0 || i >= len(buckets) {
		return -1
	}
	return i
}

// NearestRank returns the q-quantile of ds by the nearest-rank method (as
// PostgreSQL's percentile_disc), 0 for none. It sorts ds.
func NearestRank(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(rank, 0)]
}

// SortInstancesSeen orders instances most recently seen first, then by id,
// as GaugeReader.Activity returns them.
func SortInstancesSeen(in []InstanceSeen) {
	slices.SortFunc(in, func(a, b InstanceSeen) int {
		if c := b.LastSeen.Compare(a.LastSeen); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// Running reports whether a saga in status s counts as running for
// Gauges: Created, Executing or Compensating.
func (s SagaStatus) Running() bool {
	return s == SagaStatusCreated || s == SagaStatusExecuting || s == SagaStatusCompensating
}
