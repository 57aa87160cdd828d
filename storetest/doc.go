// Package storetest is the conformance suite of saga.Store. Every store
// (PostgreSQL, SQLite, memory, failover) runs it from its own tests:
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
//
// Where the interface's comments leave a choice, the suite pins these down:
//   - CreateSaga makes a saga that is not in an end state runnable at once
//     (NextRunAt = now()), so an unleased new saga is claimable and a leased
//     one becomes claimable when its lease expires.
//   - StepUpdate and CompensationUpdate write Status, Attempts, Error and
//     Uncertain every time; a nil Output keeps the stored output; Start sets
//     started_at only when unset, End always sets completed_at.
//   - Applied.EventSeq is the saga's last seq even when no event is written.
//   - ListSagas answers Next exactly when more sagas follow: the last page
//     has Next nil and no page is empty unless nothing matches.
//     CreatedAfter is strict (created_at > CreatedAfter).
//   - Stats counts as Failed every end state but Completed (Failed itself
//     included) whose completed_at is in the window; ByStatus holds all
//     nine statuses.
//   - DeleteFinished loops over batches until none is left; the idempotency
//     key of a deleted saga is free again.
//   - RequestControl of an action that is not one of saga.ControlActions
//     answers ErrInvalidTransition.
package storetest
