package engine

// Running returns how many sagas this instance is running now (each holds
// a worker slot). The service uses it to report what a shutdown would cut
// short.
func (c *Coordinator) Running() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.runners)
}
