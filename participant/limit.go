package participant

import (
	"context"
	"net/url"
	"strings"
	"sync"
)

// The connections to one participant host are shared fairly among its
// endpoints (scheme, host and path), so that one slow or hanging endpoint
// cannot hold every connection and stall the sagas calling the host's
// other endpoints (net/http's MaxConnsPerHost alone lets the first comer
// take them all, and queues the others behind it).
//
// The rule: a call to endpoint E may start when the host has a free
// connection and E holds fewer than half of the connections the host's
// other endpoints leave it, rounded up. Alone, an endpoint may use half of
// the host's connections; a second one half of what is left, and so on, so
// that a newcomer always finds a connection unless a great many endpoints
// hang at once. Calls that may not start wait in a queue per endpoint;
// a freed connection goes to the waiting endpoints in turn.

// hostLimiter admits calls to participant hosts.
type hostLimiter struct {
	perHost int

	mu    sync.Mutex
	hosts map[string]*hostState
}

type hostState struct {
	inFlight  int
	endpoints map[string]*endpointState
	// waiting lists the endpoints with queued calls, in the order they are
	// served (round robin).
	waiting []*endpointState
}

type endpointState struct {
	key      string
	inFlight int
	queue    []*slotWaiter
}

type slotWaiter struct {
	ready   chan struct{} // closed when the call is admitted
	granted bool
}

func newHostLimiter(perHost int) *hostLimiter {
	return &hostLimiter{perHost: max(perHost, 1), hosts: make(map[string]*hostState)}
}

// limitKeys returns the host and endpoint a call to u is counted under.
func limitKeys(u *url.URL) (host, endpoint string) {
	host = strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
	return host, host + u.EscapedPath()
}

// admissible reports whether e may start one more call on h.
func (l *hostLimiter) admissible(h *hostState, e *endpointState) bool {
	if h.inFlight >= l.perHost {
		return false
	}
	room := l.perHost - (h.inFlight - e.inFlight)
	return e.inFlight < (room+1)/2
}

// acquire waits until a call to endpoint of host may start, or ctx is
// done (then it returns ctx's error, and the call must not be made). The
// release function it returns must be called once the call is over.
func (l *hostLimiter) acquire(ctx context.Context, host, endpoint string) (release func(), err error) {
	l.mu.Lock()
	h := l.hosts[host]
	if h == nil {
		h = &hostState{endpoints: make(map[string]*endpointState)}
		l.hosts[host] = h
	}
	e := h.endpoints[endpoint]
	if e == nil {
		e = &endpointState{key: endpoint}
		h.endpoints[endpoint] = e
	}
	release = func() { l.release(host, endpoint) }
	if len(e.queue) == 0 && l.admissible(h, e) {
		h.inFlight++
		e.inFlight++
		l.mu.Unlock()
		return release, nil
	}
	w := &slotWaiter{ready: make(chan struct{})}
	if len(e.queue) == 0 {
		h.waiting = append(h.waiting, e)
	}
	e.queue = append(e.queue, w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return release, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	granted := w.granted
	if !granted {
		for i, q := range e.queue {
			if q == w {
				e.queue = append(e.queue[:i], e.queue[i+1:]...)
				break
			}
		}
		if len(e.queue) == 0 {
			h.unwait(e)
		}
		l.forget(host, h, e)
	}
	l.mu.Unlock()
	if granted {
		release()
	}
	return nil, ctx.Err()
}

// release ends a call and hands its connection on.
func (l *hostLimiter) release(host, endpoint string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hosts[host]
	e := h.endpoints[endpoint]
	h.inFlight--
	e.inFlight--
	l.grant(h)
	l.forget(host, h, e)
}

// grant admits waiting calls while some may start, serving the waiting
// endpoints in turn.
func (l *hostLimiter) grant(h *hostState) {
	for progress := true; progress && h.inFlight < l.perHost; {
		progress = false
		for i := 0; i < len(h.waiting); i++ {
			e := h.waiting[i]
			if !l.admissible(h, e) {
				continue
			}
			w := e.queue[0]
			e.queue = e.queue[1:]
			w.granted = true
			close(w.ready)
			h.inFlight++
			e.inFlight++
			// The endpoint served goes to the back of the turn.
			h.waiting = append(h.waiting[:i], h.waiting[i+1:]...)
			if len(e.queue) > 0 {
				h.waiting = append(h.waiting, e)
			}
			progress = true
			break
		}
	}
}

// unwait removes e from the endpoints waiting on h.
func (h *hostState) unwait(e *endpointState) {
	for i, x := range h.waiting {
		if x == e {
			h.waiting = append(h.waiting[:i], h.waiting[i+1:]...)
			return
		}
	}
}

// forget drops the state of an endpoint (and host) with nothing in flight
// or waiting.
func (l *hostLimiter) forget(host string, h *hostState, e *endpointState) {
	if e.inFlight == 0 && len(e.queue) == 0 {
		delete(h.endpoints, e.key)
	}
	if len(h.endpoints) == 0 {
		delete(l.hosts, host)
	}
}

// inFlight returns the calls in flight to host and to each of its
// endpoints (tests).
func (l *hostLimiter) inFlight(host string) (total int, byEndpoint map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	byEndpoint = make(map[string]int)
	h := l.hosts[host]
	if h == nil {
		return 0, byEndpoint
	}
	for k, e := range h.endpoints {
		byEndpoint[k] = e.inFlight
	}
	return h.inFlight, byEndpoint
}
