package console

import (
	"context"
	"sync"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Defaults of the console's cache of the store's figures.
const (
	// CacheTTLDefault is how long the console reuses the store's counts,
	// statistics and instances: the pages of every person looking refresh
	// every RefreshDefault, and counting 100,000 sagas by status reads
	// 100,000 index entries, so the figures are read once per period, not
	// once per page. The list rows and a saga's page are always fresh.
	CacheTTLDefault = 2 * time.Second
	// cacheStaleMax is how old figures may be and still be answered at
	// once while fresh ones are read in the background; older ones (the
	// console was not looked at for that long) are read while the page
	// waits.
	cacheStaleMax = 30 * time.Second
	// cacheReadTimeout bounds a background read.
	cacheReadTimeout = 10 * time.Second
)

// gaugeCache is a saga.GaugeReader that answers from its last read while
// that is younger than ttl. An older read still answers, at once, while it
// is younger than cacheStaleMax, and a fresh one is made in the
// background (one at a time); past that the caller waits for a fresh one.
// Concurrent waiting callers share one read.
type gaugeCache struct {
	gr  saga.GaugeReader
	ttl time.Duration
	now func() time.Time

	gauges   cachedValue[saga.Gauges]
	mu       sync.Mutex
	activity map[time.Duration]*cachedValue[saga.Activity]
}

func newGaugeCache(gr saga.GaugeReader, ttl time.Duration, now func() time.Time) *gaugeCache {
	return &gaugeCache{gr: gr, ttl: ttl, now: now, activity: map[time.Duration]*cachedValue[saga.Activity]{}}
}

// Gauges implements saga.GaugeReader.
func (c *gaugeCache) Gauges(ctx context.Context) (saga.Gauges, error) {
	return c.gauges.get(ctx, c, c.gr.Gauges)
}

// Activity implements saga.GaugeReader.
func (c *gaugeCache) Activity(ctx context.Context, window time.Duration) (saga.Activity, error) {
	c.mu.Lock()
	v := c.activity[window]
	if v == nil {
		v = &cachedValue[saga.Activity]{}
		c.activity[window] = v
	}
	c.mu.Unlock()
	return v.get(ctx, c, func(ctx context.Context) (saga.Activity, error) { return c.gr.Activity(ctx, window) })
}

// cachedValue is one cached read.
type cachedValue[T any] struct {
	mu         sync.Mutex // held while a caller waits for a read
	value      T
	at         time.Time // of value; zero: none yet
	refreshing bool
	refreshed  chan struct{} // closed when a background read ends (tests)
}

func (v *cachedValue[T]) get(ctx context.Context, c *gaugeCache, read func(context.Context) (T, error)) (T, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	age := c.now().Sub(v.at)
	switch {
	case !v.at.IsZero() && age < c.ttl:
		return v.value, nil
	case !v.at.IsZero() && age < cacheStaleMax:
		if !v.refreshing {
			v.refreshing = true
			done := make(chan struct{})
			v.refreshed = done
			go v.refresh(c, read, done)
		}
		return v.value, nil
	}
	fresh, err := read(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	v.value, v.at = fresh, c.now()
	return fresh, nil
}

// refresh reads a fresh value in the background; a failure keeps the old
// one (the next page after cacheStaleMax reads again and shows the error).
func (v *cachedValue[T]) refresh(c *gaugeCache, read func(context.Context) (T, error), done chan struct{}) {
	defer close(done)
	ctx, cancel := context.WithTimeout(context.Background(), cacheReadTimeout)
	defer cancel()
	fresh, err := read(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.refreshing = false
	if err == nil {
		v.value, v.at = fresh, c.now()
	}
}
