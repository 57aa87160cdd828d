// Package httpapi is the REST API of the transaction service and a Go client
// of it.
//
// The server (NewServer) answers on net/http's ServeMux with the routes of
// one table (routes.go), which both the mux registration and the test that
// holds the OpenAPI document (openapi.json, served at /openapi.json) to the
// code read. It talks to the coordinator through the narrow Coordinator
// interface declared here; the engine satisfies it.
//
// Every error is an application/problem+json document (RFC 9457, type
// Problem) naming the bad field; codes of the root package map to HTTP
// statuses in one function (httpStatus). Bad input is rejected before the
// coordinator is called, so it never reaches the database and never changes
// a saga.
//
// When tokens are configured, everything under /api/ requires
// "Authorization: Bearer <token>"; /health, /health/ready, /metrics and
// /openapi.json stay open. Every request gets an X-Request-Id and, for API
// calls, one log line.
//
// Decisions the design left open:
//   - Unknown or repeated query parameters on /api/ routes are refused (400
//     naming the parameter): a misspelt filter must not silently list
//     everything.
//   - ?wait= takes a Go duration ("30s"), is capped by Config.MaxWait, and
//     still answers 201 (200 when replayed) with the saga as it is when the
//     wait ends. The saga exists whatever happens while waiting, so a failed
//     wait answers the saga as last seen rather than an error. The
//     http.Server's WriteTimeout must exceed MaxWait.
//   - The idempotency key may also come as the Idempotency-Key header; when
//     both are given they must be equal.
//   - A participant host that is not allowed (code forbidden) is 403.
//   - Events are served in pages of at most 1000 (after_seq, limit); the
//     client reads every page.
//   - Absent times and ids are null, absent text is "".
//
// Client is the Go client of the same API, used by the command-line tool
// and the end-to-end tests; it decodes into the wire types of wire.go.
package httpapi
