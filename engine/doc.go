// Package engine is the saga coordinator: it accepts sagas, runs their steps
// through participants in order, retries transient failures, compensates in
// reverse order when a step fails for good, honours deadlines and operator
// requests, and shares the work with the other instances on the same store
// through leases.
//
// # How a saga runs
//
// The saga state machine is one pure function, decide (machine.go): from a
// saga as stored, the store's clock, the calls in flight and the outcomes
// that came back, it returns the next transition and the calls it allows.
// A saga is run by one goroutine of the instance that holds its lease (a
// runner, runner.go), a loop of decide → write → call → record → decide.
// What the runner keeps between decisions, and the rules by which it
// changes, are its loop (loop.go), which does no I/O; Loop and Submission
// (drive.go) lend the state machine and that loop to the deterministic
// simulator (package sim), which runs them under a virtual clock.
// Every transition is one fenced Store.Apply written before the calls it
// allows go out; "step k completed" and "step k+1 started" are one write, so
// a two-step saga that succeeds costs three writes. After every write the
// runner looks at what the store answered (a pending operator request, its
// clock) and decides again. Steps run as a chain, or as a graph when the
// definition names depends_on (up to max_parallel calls at once).
//
// A Coordinator runs three background loops once started: the claim loop
// (takes runnable sagas: new ones, due retries, paused sagas with a request,
// sagas whose owner died), the lease renewer (one RenewLeases for every held
// lease each LeaseDuration/3) and the cleanup loop (deletes old finished
// sagas).
//
// # Decisions
//
//   - A call found in flight when a saga is claimed (its step still
//     Executing) is made again with the next attempt number and the same
//     idempotency key, even when that exceeds max_attempts: the lost attempt
//     had no observed outcome.
//   - A Retry-After header wins over the computed backoff when it is longer,
//     even past max_backoff_ms: the participant asked for it.
//   - A compensation call carries the outputs of every completed step up to
//     and including the step it undoes.
//   - Steps that will never run are marked Skipped when compensation begins.
//   - A compensation refused with a permanent failure (4xx) is not retried:
//     the saga turns Failed at once and waits for an operator's retry, which
//     runs every unfinished compensation again with a fresh attempt budget
//     counted from the attempts made before it (Attempts counts them all).
//   - An operator request that is no longer allowed when the runner gets to
//     it is cleared with an EventControlIgnored event.
package engine
