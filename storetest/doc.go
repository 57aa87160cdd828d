// Package storetest is the conformance suite of saga.Store. Every store
// (PostgreSQL, memory, failover) runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) saga.Store { return newEmptyStore(t) })
//	}
//
// The suite uses only the saga.Store interface and checks the semantics
// written in its doc comments with real outcomes: round trips, fencing on
// leases, claims under concurrency, control requests, listing and
// pagination, statistics and cleanup. Where time must pass (lease expiry,
// deadlines) it uses durations of tens of milliseconds and polls with a
// deadline; it never asserts how long anything took.
package storetest
