// Package memory is a saga.Store that keeps everything in the process's
// memory. The service runs on it with ENABLE_PERSISTENCE=false, falls back
// to it while PostgreSQL is unreachable (the failover store moves what it
// holds to the database afterwards through Export, Import and Delete), and
// tests use it in place of a mock.
//
// It follows the PostgreSQL store's semantics exactly (leases, fencing on
// owner and epoch, claims, event sequence numbers, idempotency keys, control
// requests, deadlines), with its own clock in place of the database's, and
// keeps times at microsecond precision like PostgreSQL. Sagas go in and come
// out as deep copies, so callers never share memory with the store. Every
// saga it returns has Durable = false.
package memory
