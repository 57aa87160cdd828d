package saga

// SagaRecord is everything a store holds about one saga: the row with its
// steps and compensations, its whole audit trail and its checkpoints. It
// moves a saga between stores (from memory to PostgreSQL after an outage).
type SagaRecord struct {
	Saga        *Saga // with Steps
	Events      []Event
	Checkpoints []Checkpoint
	// Pending attributes Saga.Control: the seq of its OperatorRequested
	// event and who asked.
	Pending PendingControl
}

// TableCounts are the rows of the five tables of a durable store (or of
// some of its sagas).
type TableCounts struct {
	Sagas         int64 `json:"sagas"`
	Steps         int64 `json:"saga_steps"`
	Compensations int64 `json:"saga_compensations"`
	Checkpoints   int64 `json:"saga_checkpoints"`
	Events        int64 `json:"saga_events"`
}

// Add counts the rows r occupies in a durable store.
func (c *TableCounts) Add(r SagaRecord) {
	c.Sagas++
	c.Steps += int64(len(r.Saga.Steps))
	for _, st := range r.Saga.Steps {
		if st.Compensation != nil {
			c.Compensations++
		}
	}
	c.Checkpoints += int64(len(r.Checkpoints))
	c.Events += int64(len(r.Events))
}
