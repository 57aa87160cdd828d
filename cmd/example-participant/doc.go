// Command example-participant is a small participant service to try the
// coordinator with: an inventory, a payment and a shipping service in one
// process, each with an action and its compensation.
//
//	go run ./cmd/example-participant -addr :9090
//
// It serves
//
//	POST /inventory/reserve   {"reservation_id": "..."}
//	POST /inventory/release   {"release_id": "...", "released": true}
//	POST /payments/charge     {"charge_id": "..."}
//	POST /payments/refund     {"refund_id": "...", "refunded": true}
//	POST /shipping/schedule   {"shipment_id": "..."}
//	POST /shipping/cancel     {"cancellation_id": "...", "cancelled": true}
//	GET  /health
//
// Every call is logged. A request with an Idempotency-Key header takes
// effect once: a repeated key on the same route gets the first successful
// answer again (the keys are kept in memory, for the life of the process).
//
// Flags make it misbehave so that retries and compensation can be watched:
//
//	-fail-step payments/charge   answer 402 Payment Required there (repeatable,
//	                             or comma-separated): a business refusal
//	-fail-rate 0.2               answer 503 to a fifth of the calls at random:
//	                             a transient failure the coordinator retries
//	-latency 20ms                wait this long before answering
package main
