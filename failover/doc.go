// Package failover provides a saga.Store that keeps the service accepting
// sagas while PostgreSQL cannot be reached: at start-up, and (with
// Config.Fallback) whenever the database stops answering while the service
// runs.
//
// A Store is in one of two modes. In durable mode every call goes to the
// database store. In memory mode new sagas are accepted by an in-memory
// store (package memory) and run from it, with Durable false, and Health
// reports Mode "memory" with the reason; sagas already in the database stay
// there, and calls about them go to the database (failing, with
// saga.ErrUnavailable, while it is away: their runners stop at their next
// write and wait, so no call goes out without a durable transition before
// it). A saga in memory belongs to the instance that accepted it until it
// is moved: no other instance can see it.
//
// New returns a Store in memory mode, or durable on Config.Database. Start
// runs a loop that brings it to durable mode: it calls Config.Connect (open
// and migrate the database store) until it succeeds, waiting RetryEvery,
// doubled after each failure up to RetryMax; once connected, it moves what
// memory holds to the database, one saga at a time: Export, Import
// (idempotent by saga id), Delete from memory. Calls hold the read side of
// a RWMutex while they use memory and the move holds the write side, so no
// call sees or changes a saga while it moves; the write side is released
// between short slices of work so calls are held up only briefly. A moved
// saga is served by the database from then on, and new sagas go to the
// database as soon as it answers. When memory is empty the Store switches
// to durable mode and calls Config.OnModeChange(true).
//
// With Fallback, a durable Store goes back to memory mode when a call finds
// the database unreachable (an error wrapping saga.ErrUnavailable, a failed
// health check): it calls OnModeChange(false), logs it loudly, and the loop
// checks the database every ProbeEvery until it answers, then moves and
// switches as above. Without Fallback, once durable the Store stays durable
// and passes the database's errors on.
//
// No submit makes two sagas. A create that failed after it may have reached
// the database (its answer was lost) is refused with its error instead of
// being taken in memory: only a create the database store reports as never
// sent (saga.ErrNotWritten) falls back to memory. While the database is
// away, a submit whose idempotency key the Store has seen written to the
// database recently (RecentKeys of them) is refused too, since its saga
// cannot be looked up. An idempotency key held by another instance's saga
// cannot be known: when the move finds the key taken in the database, the
// saga is moved without it and a warning is logged.
//
// Each saga is in exactly one place at any time. When an Import fails (the
// database went away again), its saga is set aside read-only until the next
// attempt tells whether the Import committed: it is readable by id but
// refuses writes with saga.ErrUnavailable, so no change can be made to a
// copy that might already be in the database. The other sagas stay in
// memory, fully usable, and the loop retries later.
//
// Leases survive the move: Import keeps owner, epoch and lease expiry as
// they are, so a runner that holds a lease in memory keeps writing with it
// after the switch. Those expiry times come from this instance's clock
// rather than the database's; that is accepted for this one move (the
// lease was granted by this instance, and leases are short and renewed).
//
// In memory mode, calls that concern many sagas combine memory and the
// database: ClaimSagas and DeleteFinished use memory, then the database
// unless it is known to be away; ListSagas and Stats add the database's
// answer once connected, and fail when it fails rather than answer
// incompletely.
package failover
