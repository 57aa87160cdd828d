package httpapi

import (
	"fmt"
	"net/http"
	"strings"
)

// Route is an operation served by the API server beside its own, such as
// the DTM-compatible endpoint (package dtmapi). It gets what every /api/
// route gets: the bearer token when tokens are configured, the refusal of
// unknown or repeated query parameters, the request log and the request
// metrics. Its handler writes its own answers; the server's problem
// documents are used only for what the server refuses before it.
type Route struct {
	Method string
	// Path is a ServeMux path under /api/, such as "/api/dtmsvr/submit".
	Path string
	// Query lists the query parameters the route accepts.
	Query   []string
	Handler http.Handler
}

// mountRoutes registers the extra routes. It returns an error naming the
// route at fault: a path outside /api/, no handler, or a pattern the mux
// refuses (one already registered, say).
func (s *Server) mountRoutes(extra []Route) (err error) {
	defer func() {
		// ServeMux.Handle panics on a conflicting pattern.
		if v := recover(); v != nil {
			err = fmt.Errorf("httpapi: Config.Routes: %v", v)
		}
	}()
	for i, rt := range extra {
		if !strings.HasPrefix(rt.Path, "/api/") || rt.Method == "" || rt.Handler == nil {
			return fmt.Errorf("httpapi: Config.Routes[%d] (%s %s): needs a method, a path under /api/ and a handler", i, rt.Method, rt.Path)
		}
		h := rt.Handler
		r := route{method: rt.Method, path: rt.Path, api: true, query: rt.Query,
			handle: func(_ *Server, w http.ResponseWriter, r *http.Request) error {
				h.ServeHTTP(w, r)
				return nil
			}}
		s.mux.Handle(r.pattern(), s.wrap(r.pattern(), r))
	}
	return nil
}
