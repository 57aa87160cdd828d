package httpapi

import (
	"net/http"

	saga "github.com/tracseq/transaction-service"
)

// route is one documented operation of the API. The table below is the
// single list of routes: NewServer registers it on the mux, and the OpenAPI
// test checks the document against it.
type route struct {
	method string
	path   string // ServeMux path pattern, the same text as the OpenAPI path
	// api routes are under /api/: they need the bearer token (when tokens are
	// configured), reject unknown query parameters and log at info level.
	api bool
	// query lists the query parameters the route accepts.
	query  []string
	handle handlerFunc
}

// handlerFunc serves one route. An error it returns is answered as a
// problem document by the route's wrapper.
type handlerFunc func(s *Server, w http.ResponseWriter, r *http.Request) error

// pattern is the ServeMux pattern, also the route label of logs and metrics.
func (rt route) pattern() string { return rt.method + " " + rt.path }

// routeUnmatched is the route label of requests that match no route.
const routeUnmatched = "unmatched"

// routes returns the route table.
func routes() []route {
	return []route{
		{method: http.MethodPost, path: "/api/v1/sagas", api: true, query: []string{"wait", "reason"}, handle: (*Server).submit},
		{method: http.MethodGet, path: "/api/v1/sagas", api: true,
			query:  []string{"status", "name", "transaction_id", "created_after", "limit", "cursor"},
			handle: (*Server).list},
		{method: http.MethodGet, path: "/api/v1/sagas/{id}", api: true, handle: (*Server).get},
		{method: http.MethodGet, path: "/api/v1/sagas/{id}/events", api: true, query: []string{"after_seq", "limit"}, handle: (*Server).events},
		{method: http.MethodGet, path: "/api/v1/sagas/{id}/audit", api: true, query: []string{"format"}, handle: (*Server).audit},
		{method: http.MethodPost, path: "/api/v1/sagas/{id}/pause", api: true, handle: controlHandler(saga.ControlPause)},
		{method: http.MethodPost, path: "/api/v1/sagas/{id}/resume", api: true, handle: controlHandler(saga.ControlResume)},
		{method: http.MethodPost, path: "/api/v1/sagas/{id}/cancel", api: true, handle: controlHandler(saga.ControlCancel)},
		{method: http.MethodPost, path: "/api/v1/sagas/{id}/retry", api: true, handle: controlHandler(saga.ControlRetry)},
		{method: http.MethodPost, path: "/api/v1/sagas/{id}/hold", api: true, handle: holdHandler(true)},
		{method: http.MethodDelete, path: "/api/v1/sagas/{id}/hold", api: true, handle: holdHandler(false)},
		{method: http.MethodGet, path: "/api/v1/statistics", api: true, query: []string{"window"}, handle: (*Server).statistics},
		{method: http.MethodPost, path: "/api/v1/maintenance/cleanup", api: true, handle: (*Server).cleanup},
		{method: http.MethodGet, path: "/health", handle: (*Server).health},
		{method: http.MethodGet, path: "/health/ready", handle: (*Server).ready},
		{method: http.MethodGet, path: "/metrics", handle: (*Server).metrics},
		{method: http.MethodGet, path: "/openapi.json", handle: (*Server).openAPI},
	}
}
