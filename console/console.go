package console

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	saga "github.com/tracseq/transaction-service"
)

// Source is what the console reads sagas from: the coordinator (the engine
// satisfies it), so that the console sees what the API sees.
type Source interface {
	// List returns one page of sagas, without steps.
	List(ctx context.Context, f saga.Filter) (saga.Page, error)
	// Get returns a saga with its steps, or an error wrapping
	// saga.ErrNotFound.
	Get(ctx context.Context, id saga.ID) (*saga.Saga, error)
	// Events returns a saga's events after afterSeq, at most limit.
	Events(ctx context.Context, id saga.ID, afterSeq int64, limit int) ([]saga.Event, error)
	// Health reports on the store.
	Health(ctx context.Context) saga.Health
	// InstanceID names this instance.
	InstanceID() string
}

// Defaults of Config.
const (
	// RefreshDefault is how often the pages fetch their content again.
	RefreshDefault = 2 * time.Second
	// PageSizeDefault is the number of sagas on one page of the list.
	PageSizeDefault = 50
	// EventsShown bounds the events listed on a saga's page.
	EventsShown = 1000
	// StatsWindow is the window of the statistics page.
	StatsWindow = time.Hour
	// HealthWindow is how far back the health page looks for instances.
	HealthWindow = 15 * time.Minute
)

// Config configures a Console. Zero fields take their defaults.
type Config struct {
	// Source serves the sagas. Required.
	Source Source
	// Gauges serves the counts, statistics and instances. Required.
	Gauges saga.GaugeReader
	// Authorize checks a request for the pages' data; nil when the API is
	// open. When set, pages are sent without data and their script fetches
	// the data with the bearer token the person gives (kept in the
	// browser's sessionStorage).
	Authorize func(r *http.Request) error
	// Logger receives errors. Default: discard.
	Logger *slog.Logger
	// Refresh is how often pages fetch their content again. Default
	// RefreshDefault.
	Refresh time.Duration
	// Version is shown in the footer.
	Version string
	// Now is the clock used for ages. Default time.Now.
	Now func() time.Time
	// CacheTTL is how long the counts, statistics and instances read from
	// Gauges are reused. Default CacheTTLDefault; negative: not cached.
	CacheTTL time.Duration
}

// Console is the web console. It is safe for concurrent use.
type Console struct {
	src       Source
	gauges    saga.GaugeReader
	authorize func(r *http.Request) error
	log       *slog.Logger
	refresh   time.Duration
	version   string
	now       func() time.Time
	tmpl      *template.Template
	static    http.Handler
	mux       *http.ServeMux
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Prefix is the path the console is served under.
const Prefix = "/ui/"

// New checks cfg and returns a Console. It returns an error naming the
// field when cfg is incomplete.
func New(cfg Config) (*Console, error) {
	if cfg.Source == nil {
		return nil, errors.New("console: Config.Source is required")
	}
	if cfg.Gauges == nil {
		return nil, errors.New("console: Config.Gauges is required")
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = CacheTTLDefault
	}
	if cfg.Refresh < 0 {
		return nil, fmt.Errorf("console: Config.Refresh must not be negative (got %s)", cfg.Refresh)
	}
	tmpl, err := template.New("console").Funcs(funcs).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: parse templates: %w", err)
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, fmt.Errorf("console: static files: %w", err)
	}
	c := &Console{
		src:       cfg.Source,
		gauges:    cfg.Gauges,
		authorize: cfg.Authorize,
		log:       cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		refresh:   cmp.Or(cfg.Refresh, RefreshDefault),
		version:   cfg.Version,
		now:       cfg.Now,
		tmpl:      tmpl,
		static:    http.StripPrefix(Prefix+"static/", http.FileServerFS(sub)),
		mux:       http.NewServeMux(),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if cfg.CacheTTL > 0 {
		c.gauges = newGaugeCache(cfg.Gauges, cfg.CacheTTL, time.Now)
	}
	for _, p := range c.pages() {
		c.mux.HandleFunc("GET "+Prefix+p.path, c.page(p))
		c.mux.HandleFunc("GET "+Prefix+"part/"+p.path, c.part(p))
	}
	c.mux.HandleFunc("GET "+Prefix+"static/", c.serveStatic)
	c.mux.HandleFunc(Prefix, func(w http.ResponseWriter, r *http.Request) {
		c.fail(w, r, http.StatusNotFound, "no console page at "+r.URL.Path)
	})
	return c, nil
}

// Handler serves the console under Prefix.
func (c *Console) Handler() http.Handler { return c.mux }

// RedirectHome answers with a redirect to the console (for GET /).
func RedirectHome(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, Prefix, http.StatusFound)
}

// view is one page of the console: its path under Prefix (a ServeMux
// pattern), its title and navigation key, and the function that loads its
// data and names its content template.
type view struct {
	path  string
	nav   string
	title string
	load  func(c *Console, r *http.Request) (data any, status int, err error)
}

func (c *Console) pages() []view {
	return []view{
		{path: "{$}", nav: "sagas", title: "Sagas", load: (*Console).loadSagas},
		{path: "sagas/{id}", nav: "sagas", title: "Saga", load: (*Console).loadSaga},
		{path: "stats", nav: "stats", title: "Statistics", load: (*Console).loadStats},
		{path: "health", nav: "health", title: "Health", load: (*Console).loadHealth},
	}
}

// content is what a content template receives.
type content struct {
	Kind string // the template: sagas, saga, stats, health, error
	Data any
}

// shell is what the layout template receives.
type shell struct {
	Title     string
	Nav       string
	PartURL   string // the URL of the content, fetched by the script
	Refresh   int64  // milliseconds
	Auth      bool   // the data need a token
	Inline    *content
	Filters   filterForm
	ShowForm  bool
	Version   string
	Instance  string
	StatusSet []saga.SagaStatus
}

// securityHeaders are sent with every answer: the pages load only their
// own script and style, are never framed, and send no referrer (saga ids
// are in the URLs).
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// page serves a whole page. With Authorize set it carries no data: its
// script fetches the part with the person's token. Without, the content is
// rendered in the page too, so that it reads without the script.
func (c *Console) page(v view) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sh := shell{
			Title:     v.title,
			Nav:       v.nav,
			PartURL:   Prefix + "part/" + strings.TrimPrefix(r.URL.Path, Prefix),
			Refresh:   c.refresh.Milliseconds(),
			Auth:      c.authorize != nil,
			Version:   c.version,
			Instance:  c.src.InstanceID(),
			StatusSet: saga.SagaStatuses,
		}
		if r.URL.RawQuery != "" {
			sh.PartURL += "?" + r.URL.RawQuery
		}
		if v.nav == "sagas" && v.path == "{$}" {
			sh.ShowForm = true
			sh.Filters = formOf(r.URL.Query())
		}
		status := http.StatusOK
		if !sh.Auth {
			ct, st := c.content(v, r)
			sh.Inline, status = &ct, st
		}
		c.render(w, "layout", status, sh)
	}
}

// part serves the content of a page alone, for the script to put in place.
func (c *Console) part(v view) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.authorize != nil {
			if err := c.authorize(r); err != nil {
				w.Header().Set("WWW-Authenticate", `Bearer realm="tracseq"`)
				c.fail(w, r, http.StatusUnauthorized, "a valid bearer token is required to read the console's data")
				return
			}
		}
		ct, status := c.content(v, r)
		c.render(w, "content", status, ct)
	}
}

// content loads the data of page v.
func (c *Console) content(v view, r *http.Request) (content, int) {
	data, status, err := v.load(c, r)
	if err != nil {
		if status == 0 || status >= 500 {
			c.log.Error("console page failed", "path", r.URL.Path, "err", err)
			return content{Kind: "error", Data: "the page could not be read; the service's log says why"}, http.StatusInternalServerError
		}
		return content{Kind: "error", Data: err.Error()}, status
	}
	kind := v.nav
	if v.path == "sagas/{id}" {
		kind = "saga"
	}
	return content{Kind: kind, Data: data}, cmp.Or(status, http.StatusOK)
}

// render executes template name into a buffer and writes it.
func (c *Console) render(w http.ResponseWriter, name string, status int, data any) {
	var buf bytes.Buffer
	if err := c.tmpl.ExecuteTemplate(&buf, name, data); err != nil {
		c.log.Error("render console template", "template", name, "err", err)
		status = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString("<p class=\"error\">internal error: the page could not be rendered</p>")
	}
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail answers an error as a small HTML document.
func (c *Console) fail(w http.ResponseWriter, _ *http.Request, status int, msg string) {
	c.render(w, "content", status, content{Kind: "error", Data: msg})
}

func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	w.Header().Set("Cache-Control", "public, max-age=300")
	c.static.ServeHTTP(w, r)
}

// badRequest is a load error shown to the person with status 400.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badRequest{msg: fmt.Sprintf(format, args...)} }

// statusOf maps a load error to its HTTP status.
func statusOf(err error) int {
	var br *badRequest
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.Is(err, saga.ErrNotFound):
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

// filterForm holds the list filters as typed.
type filterForm struct {
	Status        string
	Name          string
	TransactionID string
	CreatedAfter  string
}

func formOf(q url.Values) filterForm {
	return filterForm{Status: q.Get("status"), Name: q.Get("name"),
		TransactionID: q.Get("transaction_id"), CreatedAfter: q.Get("created_after")}
}

// datetimeLocal is the format of an <input type="datetime-local">, read
// as UTC.
const datetimeLocal = "2006-01-02T15:04"

// parseFilter reads the list filters of the query.
func parseFilter(q url.Values) (saga.Filter, error) {
	f := saga.Filter{Limit: PageSizeDefault}
	var problems []string
	if v := q.Get("status"); v != "" {
		st, err := saga.ParseSagaStatus(v)
		if err != nil {
			problems = append(problems, err.Error())
		}
		f.Status = st
	}
	if v := strings.TrimSpace(q.Get("name")); v != "" {
		if len(v) > saga.MaxNameLength {
			problems = append(problems, fmt.Sprintf("name must be at most %d bytes", saga.MaxNameLength))
		}
		f.Name = v
	}
	if v := strings.TrimSpace(q.Get("transaction_id")); v != "" {
		id, err := saga.ParseID(v)
		if err != nil {
			problems = append(problems, fmt.Sprintf("transaction id %q is not a UUID", v))
		} else {
			f.TransactionID = &id
		}
	}
	if v := strings.TrimSpace(q.Get("created_after")); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t, err = time.Parse(datetimeLocal, v)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("created after %q is not a time such as 2024-05-01T12:00 (UTC)", v))
		} else {
			t = t.UTC()
			f.CreatedAfter = &t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > saga.ListLimitMax {
			problems = append(problems, fmt.Sprintf("limit must be between 1 and %d (got %q)", saga.ListLimitMax, v))
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		cur, err := saga.ParseCursor(v)
		if err != nil {
			problems = append(problems, "the page cursor is not one this service issued; start again from the first page")
		} else {
			f.Cursor = &cur
		}
	}
	if len(problems) > 0 {
		return saga.Filter{}, badf("%s", strings.Join(problems, "; "))
	}
	return f, nil
}

// funcs are the template functions.
var funcs = template.FuncMap{
	"add": func(a, b float64) float64 { return a + b },
}
