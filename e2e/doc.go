// Package e2e holds the end-to-end tests of the service: the real
// tracseq-tx binary, built once per test run, is started as child processes
// on a fresh PostgreSQL database and driven through its HTTP API against
// stub participants that run in the test process.
//
// The tests kill instances with SIGKILL while sagas are in flight, run
// several instances on one database, stop one gracefully with SIGTERM, and
// send the API's table of bad input to the real program. The outage tests
// make PostgreSQL clusters of their own (initdb on a free port, run as the
// postgres OS user when the tests run as root) and restart, crash, stop and
// kill the backends of them mid-load, in both DB_OUTAGE_MODE values; the
// pool tests run c=64 against a pool of two connections, also while every
// connection is held by a transaction waiting on a lock. The stub
// participants record every call, honour idempotency keys (each key's
// effect is applied once), and report calls of one saga that overlap in
// time, which would mean two instances ran the saga at once.
//
// The package has no code of its own beside this comment: everything is in
// its _test.go files. Run it with scripts/test.sh ./e2e, which provides
// PostgreSQL through TEST_DATABASE_URL.
package e2e
