// Command tracseq-tx is the TracSeq Transaction Service: a saga coordinator
// whose every state change is kept in PostgreSQL.
//
// Without arguments (or with `serve`) it runs the service, configured from
// the environment (see Config and README.md). Other subcommands apply or
// list database migrations (`migrate`), print the version (`version`), and
// talk to a running service over its REST API for operators (`list`, `show`,
// `pause`, `resume`, `cancel`, `retry`, `stats`, `cleanup`, `submit`).
// `tracseq-tx help` lists them.
//
// The garbage collector's target is GOGC when set, else 400 (see
// gcPercentDefault); GOMEMLIMIT is honoured as usual.
//
// The program lives in Main, which end-to-end tests start in-process.
package main
