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
// Client is the Go client of the same API, used by the command-line tool
// and the end-to-end tests; it decodes into the wire types of wire.go.
package httpapi
