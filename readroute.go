package saga

import (
	"context"
	"time"
)

// replicaReadKey marks a context whose reads may be served by a replica.
type replicaReadKey struct{}

// WithReplicaRead returns a context whose store reads (GetSaga, ListSagas,
// ListEvents, Stats) may be served by a read replica, and so may be up to
// the store's allowed replica lag behind the primary. Use it for reads
// that need not see the caller's own writes: the API's list, get, events
// and statistics, the console's pages. Everything else (claims, writes,
// the engine's reads, a ?wait answer, a read right after the same
// client's write, an operator action) reads the primary: that is the
// default.
func WithReplicaRead(ctx context.Context) context.Context {
	return context.WithValue(ctx, replicaReadKey{}, true)
}

// ReplicaReadAllowed reports whether ctx was marked by WithReplicaRead.
func ReplicaReadAllowed(ctx context.Context) bool {
	v, _ := ctx.Value(replicaReadKey{}).(bool)
	return v
}

// ReplicaHealth is one read replica in Health.
type ReplicaHealth struct {
	Name string // host:port/database (no credentials)
	// Usable reports whether reads go to the replica now: it answers, is a
	// replica, and its lag is within the allowed maximum.
	Usable bool
	Lag    time.Duration // behind the primary, at the last check
	// Error says why the replica is not used, when it is not.
	Error     string
	CheckedAt time.Time // of the last check; zero before the first
}
