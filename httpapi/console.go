package httpapi

import "net/http"

// TokensRequired reports whether the API requires a bearer token (tokens
// are configured).
func (s *Server) TokensRequired() bool { return len(s.tokens) > 0 }

// Authorize checks r's bearer token as the API does, for handlers mounted
// beside the API (the web console's data): nil when no tokens are
// configured or the token is valid, else a *saga.Error with the
// unauthorized code.
func (s *Server) Authorize(r *http.Request) error {
	if len(s.tokens) == 0 {
		return nil
	}
	_, err := s.authenticate(r)
	return err
}
