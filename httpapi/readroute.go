package httpapi

import (
	"context"
	"crypto/sha256"
	"net"
	"net/http"
	"sync"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// ReadAfterWriteDefault is how long after a client's write (a submit, an
// operator action) that client's reads stay on the primary, when the store
// has read replicas: twice the default allowed replica lag.
const ReadAfterWriteDefault = 2 * time.Second

// recentWriters remembers which clients wrote lately, so that their reads
// see their own writes. A client is its bearer token, else its IP address.
type recentWriters struct {
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	last map[[sha256.Size]byte]time.Time
}

// maxRecentWriters bounds the clients remembered; past it, those whose
// window has passed are forgotten.
const maxRecentWriters = 10_000

func newRecentWriters(window time.Duration) *recentWriters {
	return &recentWriters{window: window, now: time.Now, last: make(map[[sha256.Size]byte]time.Time)}
}

// clientKey identifies the client of r.
func clientKey(r *http.Request) [sha256.Size]byte {
	if auth := r.Header.Get("Authorization"); auth != "" {
		return sha256.Sum256([]byte("token " + auth))
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return sha256.Sum256([]byte("addr " + host))
}

// wrote records that the client of r wrote now.
func (w *recentWriters) wrote(r *http.Request) {
	key := clientKey(r)
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.last) >= maxRecentWriters {
		for k, at := range w.last {
			if now.Sub(at) > w.window {
				delete(w.last, k)
			}
		}
	}
	w.last[key] = now
}

// wroteLately reports whether the client of r wrote within the window.
func (w *recentWriters) wroteLately(r *http.Request) bool {
	key := clientKey(r)
	w.mu.Lock()
	at, ok := w.last[key]
	w.mu.Unlock()
	return ok && w.now().Sub(at) <= w.window
}

// ReadContext returns the context for a read that r asks for (a list, a
// saga, its events, statistics; the console's pages): one that lets the
// store serve it from a read replica (saga.WithReplicaRead), unless the
// same client wrote within Config.ReadAfterWrite (then the primary serves
// it, so that the client sees its own write). Reads that must be fresh
// (a ?wait answer, an operator action's answer) do not use it.
func (s *Server) ReadContext(r *http.Request) context.Context {
	if s.writers.wroteLately(r) {
		return r.Context()
	}
	return saga.WithReplicaRead(r.Context())
}

// noteWrite records that the client of r wrote: its reads stay on the
// primary for a while.
func (s *Server) noteWrite(r *http.Request) { s.writers.wrote(r) }

// ReplicaReads wraps a handler that reads sagas (the web console) with the
// API's read routing: its GET and HEAD requests get ReadContext's context
// (a read replica may serve them, unless the client wrote lately), and any
// other request counts as the client's write.
func (s *Server) ReplicaReads(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			h.ServeHTTP(w, r.WithContext(s.ReadContext(r)))
			return
		}
		s.noteWrite(r)
		h.ServeHTTP(w, r)
	})
}
