// Package barrier makes a Go participant of sagas exactly-once on
// PostgreSQL: net/http middleware that records every call of a saga step in
// a table of the participant's own database, in the same transaction as the
// participant's business write.
//
// The coordinator calls at least once: an action may be repeated after its
// effect was applied (a lost answer), and an action may arrive after its
// compensation (it timed out, the saga rolled back, then the request
// landed). The barrier answers each case:
//
//   - a repeated action or compensation gets the first answer again, and
//     the handler does not run;
//   - a compensation whose action never ran is a no-op, and remembered: the
//     late action is refused with 409 and changes nothing;
//   - a compensation after a refused action is a no-op;
//   - a call whose X-Saga-Attempt-Epoch is lower than one already seen for
//     its step (an instance that lost the saga) is refused with 409.
//
// A call is identified by its Idempotency-Key ("<saga id>:<step>:<kind>",
// as this service sends it) or, for DTM's protocol, by the query parameters
// gid, branch_id and op. The handler gets the pgx.Tx to write in; the
// answer it writes is kept with the record when the call succeeded or was
// refused, and the transaction is rolled back when it failed transiently
// (408, 429, 425, 5xx, or DTM's ONGOING), so that the retry runs afresh.
//
// The tables' DDL is DDL (schema.sql); CreateTables applies it.
package barrier
