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
