// Package failover provides a saga.Store that keeps the service running
// while PostgreSQL cannot be reached at start-up.
//
// A Store starts in memory mode: every call goes to an in-memory store
// (package memory), the sagas it returns have Durable false, and Health
// reports Mode "memory" with the reason. Start runs a loop that calls
// Config.Connect (open and migrate the database store) until it succeeds,
// waiting RetryEvery, doubled after each failure up to RetryMax.
//
// Once connected, the loop moves what memory holds to the database, one
// saga at a time: Export, Import (idempotent by saga id), Delete from
// memory. Calls hold the read side of a RWMutex while they use memory and
// the move holds the write side, so no call sees or changes a saga while it
// moves; the write side is released between short slices of work so calls
// are held up only briefly. A moved saga is served by the database from
// then on, even before the whole move is done. When memory is empty the
// Store switches to durable mode for good, calls Config.OnModeChange(true)
// and forwards every call to the database store.
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
// While moving, calls that concern many sagas keep to what they can answer
// exactly: ClaimSagas and DeleteFinished use memory only (moved sagas are
// claimed from, and cleaned up in, the database after the switch);
// ListSagas and Stats combine memory and database.
package failover
