// Package metrics holds the service's Prometheus collectors in one struct,
// registered on a registry the caller passes in (tests use a fresh one).
//
// Metrics implements the engine's Observer (sagas, steps, leases), observes
// database operations for the PostgreSQL store, reports the persistence mode
// and the connection pool, and records HTTP requests. Handler serves the
// registry in the Prometheus exposition format for GET /metrics.
//
// Every name starts with tracseq_. Labels take bounded values only: saga
// statuses, step kinds and outcomes, database operation names chosen by the
// store, and the API's route patterns (never raw paths or saga names, which
// clients choose).
package metrics
