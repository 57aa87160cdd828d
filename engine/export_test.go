package engine

// Stopping reports whether Stop was called (tests).
func (c *Coordinator) Stopping() bool { return c.isStopping() }
