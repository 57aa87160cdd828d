// Command tracseq-load measures the TracSeq Transaction Service under load.
//
// It starts participant stubs on loopback (with a configurable latency and a
// step that refuses a fraction of sagas), drives sagas through the real HTTP
// API at a fixed concurrency for a duration or a number of sagas, and prints
// what it saw: sagas per second, submit-to-end latency percentiles, the end
// states, PostgreSQL commits per saga (the xact_commit delta of
// pg_stat_database for the service's database), the service's CPU time and
// peak resident memory when the tool started the service itself, and the
// database ceiling: how many single-row INSERT commits per second the same
// database takes at the same concurrency, with the ratio of saga throughput
// to it. Afterwards it reads back a sample of the sagas it counted and checks
// their steps and audit trails.
//
// It either targets a service already running on this host (--url) or
// starts one (--start): it builds cmd/tracseq-tx (or runs --bin) as a child
// process with DATABASE_URL, HTTP_ADDR on a free loopback port and
// LOG_LEVEL=warn, and stops it at the end.
//
// Each client goroutine submits one saga with ?wait= and measures the time
// until the answer shows it ended (polling when the wait ran out), so the
// load is closed-loop: concurrency c means c sagas in flight.
//
// PostgreSQL publishes a backend's transaction counts lazily: a busy backend
// flushes them at most once a second, and one that went idle may hold them
// for up to 10 seconds (PGSTAT_IDLE_INTERVAL). The tool therefore reads the
// start count before the warmup (warmup sagas count in commits per saga) and
// the end count only after --stats-wait (11s by default) of quiet.
//
// Usage:
//
//	tracseq-load --start -c 16 -d 10s
//	tracseq-load --start -c 16 -d 10s --fail-step 2 --fail-rate 1 --json
//	tracseq-load --url http://localhost:8080 -n 1000
package main
