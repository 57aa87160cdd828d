// Package saga is the domain of the TracSeq Transaction Service: sagas, their
// steps and compensations, checkpoints and audit events, the statuses they
// move through, the definitions clients submit, and the Store interface that
// every persistence backend implements.
//
// The package imports only the standard library. Backends live in postgres/
// and memory/, the coordinator in engine/, the REST API in httpapi/.
package saga
