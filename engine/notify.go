package engine

// Wake makes the claim loop look for runnable sagas now, as its slow poll
// would at its next tick. A database listener calls it when another
// instance announces work (a saga released on shutdown, a retry come due,
// a saga created without a lease); calls that come while the loop is busy
// fold into one. It never blocks and is safe to call before Start and
// after Stop.
func (c *Coordinator) Wake() { c.signal() }
