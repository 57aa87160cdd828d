// Package sim is a deterministic simulator of the coordinator: several
// instances of it on one store, with participants, a network, operators
// and clients, all under one virtual clock and one seeded random source,
// with faults injected at every point. A run is a function of its seed:
// a failing run prints the seed, and the same seed replays it exactly.
//
// What is real and what is modelled:
//
//   - Real: the engine's state machine and the runner's bookkeeping
//     between decisions (engine.Loop: decide, the plan of a definition,
//     the calls and outcomes, the saga as stored after a write, the
//     checkpoint restore, the backoff of a retry), the first decision of a
//     submit (engine.NewSubmission), the memory store (memory.Store, with
//     the virtual clock as its now()), saga.ApplyTransition, the retry
//     policies and backoff (participant.Backoff), the classification of
//     answers (participant.Classify) and the idempotency key of a call.
//   - Modelled, step for step after engine/runner.go and
//     engine/coordinator.go: the runner's loop (write fenced, retried with
//     backoff while the lease lasts; a lone call of a chain made inline,
//     others in parallel; await of outcomes, a poke, the stop or a timer;
//     a probe write on a poke; the check that the lease is fresh before a
//     call goes out), the claim loop, the lease renewer, worker slots,
//     Submit, Control and Stop. A store reached over a network (latency,
//     commits that happen before the answer) and participants behind one.
//
// docs/simulation.md has the faults, the invariants and how to run it.
package sim
