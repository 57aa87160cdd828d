package participant

import (
	"context"
	"runtime"
	"testing"
)

// try acquires a slot for endpoint if one may be had at once.
func try(l *hostLimiter, endpoint string) (func(), bool) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	release, err := l.acquire(ctx, "http://h", "http://h"+endpoint)
	return release, err == nil
}

func TestHostLimiterShares(t *testing.T) {
	t.Parallel()
	l := newHostLimiter(8)
	take := func(endpoint string, n int) []func() {
		t.Helper()
		var out []func()
		for range n {
			r, ok := try(l, endpoint)
			if !ok {
				t.Fatalf("%s: slot %d refused; in flight %v", endpoint, len(out)+1, fmtInFlight(l))
			}
			out = append(out, r)
		}
		if _, ok := try(l, endpoint); ok {
			t.Fatalf("%s: got more than %d slots; in flight %v", endpoint, n, fmtInFlight(l))
		}
		return out
	}
	// Alone, an endpoint holds half of the host; each next one half of
	// what the others leave.
	a := take("/a", 4)
	b := take("/b", 2)
	c := take("/c", 1)
	d := take("/d", 1)
	if _, ok := try(l, "/e"); ok {
		t.Fatal("a ninth call was let through on a host of 8")
	}
	if total, _ := l.inFlight("http://h"); total != 8 {
		t.Fatalf("%d in flight; want 8", total)
	}
	// When /a lets go of a slot, another endpoint may take it.
	a[0]()
	if _, ok := try(l, "/a"); ok {
		t.Error("/a took back its slot while /b... hold theirs")
	}
	e, ok := try(l, "/e")
	if !ok {
		t.Fatalf("/e got no slot after /a released one; in flight %v", fmtInFlight(l))
	}
	for _, r := range append(append(append(append(a[1:], b...), c...), d...), e) {
		r()
	}
	if total, _ := l.inFlight("http://h"); total != 0 || len(l.hosts) != 0 {
		t.Errorf("state left after every release: %d in flight, %d hosts", total, len(l.hosts))
	}
}

// Waiting calls are served as slots free, the waiting endpoints in turn.
func TestHostLimiterQueues(t *testing.T) {
	t.Parallel()
	l := newHostLimiter(2)
	first, ok := try(l, "/a")
	if !ok {
		t.Fatal("first call refused")
	}
	other, ok := try(l, "/b")
	if !ok {
		t.Fatal("/b refused with a free slot")
	}
	type got struct {
		endpoint string
		release  func()
	}
	granted := make(chan got, 4)
	wait := func(endpoint string) {
		go func() {
			r, err := l.acquire(context.Background(), "http://h", "http://h"+endpoint)
			if err != nil {
				t.Error(err)
				return
			}
			granted <- got{endpoint, r}
		}()
	}
	waitQueued := func(n int) {
		t.Helper()
		for {
			l.mu.Lock()
			queued := 0
			if h := l.hosts["http://h"]; h != nil {
				for _, e := range h.endpoints {
					queued += len(e.queue)
				}
			}
			l.mu.Unlock()
			if queued == n {
				return
			}
			runtime.Gosched()
		}
	}
	wait("/a")
	waitQueued(1)
	wait("/b")
	waitQueued(2)
	first() // /a's slot frees: /a may have 1 of what /b leaves (1)
	g := <-granted
	if g.endpoint != "/a" {
		t.Errorf("granted %s first; want /a", g.endpoint)
	}
	other()
	g2 := <-granted
	if g2.endpoint != "/b" {
		t.Errorf("granted %s second; want /b", g2.endpoint)
	}
	g.release()
	g2.release()

	// A waiter that gives up leaves no trace.
	r1, _ := try(l, "/a")
	r2, _ := try(l, "/b")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := l.acquire(ctx, "http://h", "http://h/c")
		done <- err
	}()
	waitQueued(1)
	cancel()
	if err := <-done; err == nil {
		t.Error("a cancelled wait was granted a slot on a full host")
	}
	r1()
	r2()
	if len(l.hosts) != 0 {
		t.Errorf("state left: %v", fmtInFlight(l))
	}
}

func fmtInFlight(l *hostLimiter) map[string]int {
	_, m := l.inFlight("http://h")
	return m
}
