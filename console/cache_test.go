package console

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// countingReader answers Gauges with the number of reads so far.
type countingReader struct {
	mu    sync.Mutex
	reads int64
	err   error
}

func (r *countingReader) Gauges(context.Context) (saga.Gauges, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	return saga.Gauges{Stuck: r.reads}, r.err
}

func (r *countingReader) Activity(context.Context, time.Duration) (saga.Activity, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	return saga.Activity{Ended: r.reads}, r.err
}

func TestGaugeCache(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		now = time.Unix(1_000_000, 0)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r := &countingReader{}
	c := newGaugeCache(r, time.Second, clock)
	ctx := context.Background()

	read := func() int64 {
		t.Helper()
		g, err := c.Gauges(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return g.Stuck
	}
	if got := read(); got != 1 {
		t.Fatalf("first read = %d, want 1 (read from the store)", got)
	}
	advance(500 * time.Millisecond)
	if got := read(); got != 1 {
		t.Errorf("within the ttl = %d, want the cached 1", got)
	}
	// Stale: answered at once from the cache, a fresh read in the background.
	advance(time.Second)
	if got := read(); got != 1 {
		t.Errorf("stale = %d, want the cached 1 while a fresh read runs", got)
	}
	c.gauges.mu.Lock()
	done := c.gauges.refreshed
	c.gauges.mu.Unlock()
	<-done
	if got := read(); got != 2 {
		t.Errorf("after the background read = %d, want 2", got)
	}
	// Too old: the caller waits for a fresh read, and sees its error.
	advance(cacheStaleMax)
	r.mu.Lock()
	r.err = errors.New("database away")
	r.mu.Unlock()
	if _, err := c.Gauges(ctx); err == nil {
		t.Error("a read past the stale limit did not report the store's error")
	}

	// Activity is cached per window.
	r.mu.Lock()
	r.err = nil
	r.mu.Unlock()
	a1, _ := c.Activity(ctx, time.Hour)
	a2, _ := c.Activity(ctx, time.Minute)
	a3, _ := c.Activity(ctx, time.Hour)
	if a1.Ended == a2.Ended || a1.Ended != a3.Ended {
		t.Errorf("activity reads %d %d %d: want one read per window", a1.Ended, a2.Ended, a3.Ended)
	}
}
