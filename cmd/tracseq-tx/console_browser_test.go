package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	saga "github.com/tracseq/transaction-service"
	"github.com/tracseq/transaction-service/httpapi"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// browserTimeout bounds one wait for the page to show something.
const browserTimeout = 30 * time.Second

// newBrowser starts Debian's headless chromium (installed by
// scripts/test.sh) and returns a chromedp context on one tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no chromium on PATH: scripts/test.sh installs Debian's chromium; run the tests through it")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root
		chromedp.WindowSize(1360, 900),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	return ctx
}

// browse runs the steps on the tab, failing the test on error.
func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(cctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitFor evaluates a JavaScript predicate on the page until it is true.
// Errors while a page is replaced by the next (a click that navigates) are
// part of waiting.
func waitFor(t *testing.T, ctx context.Context, what, predicate string) {
	t.Helper()
	deadline := time.Now().Add(browserTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(cctx, chromedp.Evaluate[bool](predicate))
		cancel()
		if err == nil && ok {
			return
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	t.Fatalf("timed out waiting for %s (last error: %v)\npage text:\n%s", what, lastErr, body)
}

// eval evaluates a JavaScript expression on the page into T.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	v, err := chromedp.Run(cctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// screenshot saves the whole page as name.png in CONSOLE_SCREENSHOTS (a
// directory) or the test's temporary directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, browserTimeout)
	defer cancel()
	png, err := chromedp.Run(cctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(png))
}

// TestConsoleInBrowser runs a completed, a compensated and a Failed saga
// on the real service with API tokens, then uses the console in headless
// chromium as a person would: gives the token, reads the list and its
// counts, opens the compensated saga's timeline and events, and retries the
// Failed saga with its button.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	p := newParticipant(t)
	var releaseWorks atomic.Bool
	p.handle("/payments/charge", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Test-Outcome") == "refuse" {
			http.Error(w, `{"error": "card declined"}`, http.StatusPaymentRequired)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"charged": 42, "note": "<script>window.__xss = 'output'</script>"}`)
	})
	p.handle("/inventory/release-flaky", func(w http.ResponseWriter, _ *http.Request) {
		if !releaseWorks.Load() {
			http.Error(w, "inventory is down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"released": true}`)
	})
	const token = "console-test-token"
	b := setup(t, map[string]string{"DATABASE_URL": dbURL, "DB_MIN_CONNECTIONS": "1", "DB_MAX_CONNECTIONS": "8",
		"API_TOKENS": token})
	ctx := context.Background()

	quick := &saga.RetryPolicy{MaxAttempts: 1}
	completed := p.twoStep("order-completed")
	compensated := p.twoStep("order-compensated")
	compensated.Steps[1].Action.Headers = map[string]string{"X-Test-Outcome": "refuse"}
	compensated.Steps[1].Retry = quick
	failedName := `order-failed <script>window.__xss = 'name'</script><img src=x onerror="window.__xss='img'">`
	failed := p.twoStep(failedName)
	failed.Steps[1].Action.Headers = map[string]string{"X-Test-Outcome": "refuse"}
	failed.Steps[1].Retry = quick
	failed.Steps[0].Retry = &saga.RetryPolicy{MaxAttempts: 1, InitialBackoffMs: 10, MaxBackoffMs: 20}
	failed.Steps[0].Compensation.URL = p.srv.URL + "/inventory/release-flaky"
	ids := map[string]string{}
	for _, d := range []saga.Definition{completed, compensated, failed} {
		s, _, err := b.client.Submit(ctx, d, 30*time.Second)
		if err != nil {
			t.Fatalf("Submit %s: %v", d.Name, err)
		}
		ids[d.Name] = s.ID
	}
	for name, want := range map[string]saga.SagaStatus{completed.Name: saga.SagaStatusCompleted,
		compensated.Name: saga.SagaStatusCompensated, failedName: saga.SagaStatusFailed} {
		pollUntil(t, name+" to end "+string(want), func() bool {
			s, err := b.client.Get(ctx, ids[name])
			return err == nil && s.Status == want
		})
	}

	bctx := newBrowser(t)

	// Without a token the page shows no saga, only the token form.
	browse(t, bctx, "open the console", chromedp.Navigate(b.url+"/"))
	waitFor(t, bctx, "the token form", `!document.getElementById("login").hidden`)
	if text := eval[string](t, bctx, `document.body.innerText`); strings.Contains(text, "order-") {
		t.Fatalf("the page shows saga names before a token was given:\n%s", text)
	}
	if loc := eval[string](t, bctx, `location.pathname`); loc != "/ui/" {
		t.Errorf("GET / led to %s, want /ui/", loc)
	}
	screenshot(t, bctx, "1-token")
	browse(t, bctx, "give the token",
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)))
	waitFor(t, bctx, "the three sagas in the list", `document.querySelectorAll("#sagas tbody tr").length === 3`)

	type row struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Steps  string `json:"steps"`
	}
	rows := eval[[]row](t, bctx, `Array.from(document.querySelectorAll("#sagas tbody tr")).map(tr => ({
		name: tr.querySelector("td.name a").textContent,
		status: tr.querySelector(".badge").textContent,
		steps: tr.querySelector(".steps").textContent}))`)
	want := map[string]row{
		completed.Name:   {completed.Name, "Completed", "2/2"},
		compensated.Name: {compensated.Name, "Compensated", "1/2"},
		failedName:       {failedName, "Failed", "1/2"},
	}
	for _, r := range rows {
		if w, ok := want[r.Name]; !ok || w != r {
			t.Errorf("list row %+v, want one of %+v", r, want)
		}
		delete(want, r.Name)
	}
	if len(want) > 0 {
		t.Errorf("list lacks %v", want)
	}
	counts := eval[map[string]string](t, bctx, `Object.fromEntries(Array.from(document.querySelectorAll("#counts .count")).map(
		a => [a.querySelector("span").textContent, a.querySelector("b").textContent]))`)
	for name, n := range map[string]string{"All": "3", "Completed": "1", "Compensated": "1", "Failed": "1", "Executing": "0"} {
		if counts[name] != n {
			t.Errorf("count %s = %q, want %s (counts %v)", name, counts[name], n, counts)
		}
	}
	if xss := eval[string](t, bctx, `String(window.__xss)`); xss != "undefined" {
		t.Errorf("a script from a saga's data ran in the page (window.__xss = %q)", xss)
	}
	screenshot(t, bctx, "2-sagas")

	// A click on a count filters the list, and the filter survives the
	// refresh.
	browse(t, bctx, "click the Failed count", chromedp.Click(chromedp.CSS(`#counts a[data-status="Failed"]`)))
	waitFor(t, bctx, "the list filtered on Failed", `location.search === "?status=Failed" &&
		document.querySelectorAll("#sagas tbody tr").length === 1`)
	waitFor(t, bctx, "a refresh", `document.getElementById("live").textContent.startsWith("updated")`)
	browse(t, bctx, "wait a refresh period", chromedp.Sleep(2500*time.Millisecond))
	if n := eval[int](t, bctx, `document.querySelectorAll("#sagas tbody tr").length`); n != 1 {
		t.Errorf("%d rows after a refresh of the filtered list, want 1", n)
	}

	// The compensated saga: its timeline has a bar per step and one for the
	// compensation, attempts marked, and its events in order.
	browse(t, bctx, "open the compensated saga", chromedp.Navigate(b.url+"/ui/sagas/"+ids[compensated.Name]))
	waitFor(t, bctx, "the timeline", `document.querySelector("#timeline g.row") !== null`)
	type bar struct {
		Kind   string  `json:"kind"`
		Label  string  `json:"label"`
		Status string  `json:"status"`
		Bars   int     `json:"bars"`
		Width  float64 `json:"width"`
		Marks  int     `json:"marks"`
	}
	bars := eval[[]bar](t, bctx, `Array.from(document.querySelectorAll("#timeline g.row")).map(g => ({
		kind: g.dataset.kind, label: g.dataset.label, status: g.dataset.status,
		bars: g.querySelectorAll("rect.bar").length,
		width: g.querySelector("rect.bar") ? g.querySelector("rect.bar").getBoundingClientRect().width : 0,
		marks: g.querySelectorAll("line.attempt").length}))`)
	wantBars := []bar{
		{Kind: "action", Label: "reserve", Status: "Completed", Bars: 1, Marks: 1},
		{Kind: "compensation", Label: "↩ reserve", Status: "Completed", Bars: 1, Marks: 1},
		{Kind: "action", Label: "charge", Status: "Failed", Bars: 1, Marks: 1},
	}
	if len(bars) != len(wantBars) {
		t.Fatalf("timeline rows %+v, want %+v", bars, wantBars)
	}
	for i, w := range wantBars {
		got := bars[i]
		if got.Width <= 0 {
			t.Errorf("timeline row %d (%s) has a bar of width %v", i, got.Label, got.Width)
		}
		got.Width = 0
		if got != w {
			t.Errorf("timeline row %d = %+v, want %+v", i, got, w)
		}
	}
	events := eval[[]string](t, bctx, `Array.from(document.querySelectorAll("#events tbody td.type")).map(td => td.textContent)`)
	wantEvents := []string{"SagaCreated", "SagaStarted", "StepStarted", "StepCompleted", "StepStarted", "StepFailed",
		"SagaCompensating", "CompensationStarted", "CompensationCompleted", "SagaCompensated"}
	if !equal(events, wantEvents) {
		t.Errorf("events on the page = %v, want %v", events, wantEvents)
	}
	if n := eval[int](t, bctx, `document.querySelectorAll("button[data-action]").length`); n != 0 {
		t.Errorf("%d operator buttons on a Compensated saga, want none", n)
	}
	screenshot(t, bctx, "3-compensated")

	// The Failed saga: its name shows as text, only retry is offered, and
	// retry (confirmed) moves it on once the participant is back.
	browse(t, bctx, "open the Failed saga", chromedp.Navigate(b.url+"/ui/sagas/"+ids[failedName]))
	waitFor(t, bctx, "the Failed saga", `document.getElementById("saga-status") !== null &&
		document.getElementById("saga-status").textContent === "Failed"`)
	if got := eval[string](t, bctx, `document.querySelector(".saga-name").textContent`); got != failedName {
		t.Errorf("the saga's name shows as %q, want the text %q", got, failedName)
	}
	actions := eval[[]string](t, bctx, `Array.from(document.querySelectorAll("button[data-action]")).map(b => b.dataset.action)`)
	if !equal(actions, []string{"retry"}) {
		t.Errorf("buttons on a Failed saga = %v, want [retry]", actions)
	}
	screenshot(t, bctx, "4-failed")
	releaseWorks.Store(true)
	browse(t, bctx, "click retry", chromedp.Click(chromedp.CSS(`button[data-action="retry"]`)))
	waitFor(t, bctx, "the confirmation", `document.getElementById("confirm").open`)
	screenshot(t, bctx, "5-confirm-retry")
	browse(t, bctx, "confirm", chromedp.Click(chromedp.ID("confirm-ok")))
	waitFor(t, bctx, "the retried saga to show Compensated", `document.getElementById("saga-status") !== null &&
		document.getElementById("saga-status").textContent === "Compensated"`)
	if n := eval[int](t, bctx, `document.querySelectorAll("#timeline g.row.compensation rect.bar").length`); n != 1 {
		t.Errorf("%d compensation bars after the retry, want 1", n)
	}
	if xss := eval[string](t, bctx, `String(window.__xss)`); xss != "undefined" {
		t.Errorf("a script from a saga's data ran in the page (window.__xss = %q)", xss)
	}
	screenshot(t, bctx, "6-retried")
	s, err := b.client.Get(ctx, ids[failedName])
	if err != nil || s.Status != saga.SagaStatusCompensated {
		t.Errorf("the API says the retried saga is %v (%v), want Compensated", statusOf(s), err)
	}

	// Statistics and health.
	browse(t, bctx, "open the statistics", chromedp.Navigate(b.url+"/ui/stats"))
	waitFor(t, bctx, "the charts", `document.querySelector("#rates polyline") !== null && document.querySelector("#by-status rect") !== null`)
	legend := eval[string](t, bctx, `document.querySelector(".legend").textContent`)
	if !strings.Contains(legend, "started (3)") || !strings.Contains(legend, "completed (1)") {
		t.Errorf("the rates legend says %q, want 3 started and 1 completed", legend)
	}
	screenshot(t, bctx, "7-statistics")
	browse(t, bctx, "open the health page", chromedp.Navigate(b.url+"/ui/health"))
	instance := "test-" + strings.ReplaceAll(t.Name(), "/", "-")
	waitFor(t, bctx, "this instance in the table", fmt.Sprintf(`document.querySelector('#instances tr[data-instance=%s]') !== null`, jsString(instance)))
	if text := eval[string](t, bctx, `document.querySelector("main").innerText`); !strings.Contains(text, "durable") {
		t.Errorf("the health page does not say durable:\n%s", text)
	}
	screenshot(t, bctx, "8-health")

	// A saga whose steps form a graph: a and b run side by side, c after
	// both.
	for _, path := range []string{"/graph/a", "/graph/b", "/graph/c"} {
		p.handle(path, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(150 * time.Millisecond):
			case <-r.Context().Done():
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"done": %q}`, r.URL.Path)
		})
	}
	step := func(name string, deps ...string) saga.StepDefinition {
		return saga.StepDefinition{Name: name, DependsOn: append([]string{}, deps...),
			Action: saga.Request{Method: http.MethodPost, URL: p.srv.URL + "/graph/" + name}}
	}
	graph := saga.Definition{Name: "order-graph", Steps: []saga.StepDefinition{step("a"), step("b"), step("c", "a", "b")}}
	gs, _, err := b.client.Submit(ctx, graph, 30*time.Second)
	if err != nil || gs.Status != saga.SagaStatusCompleted {
		t.Fatalf("Submit the graph: %v (%v)", err, statusOf(gs))
	}
	browse(t, bctx, "open the graph saga", chromedp.Navigate(b.url+"/ui/sagas/"+gs.ID))
	waitFor(t, bctx, "its timeline", `document.querySelectorAll("#timeline g.row rect.bar").length === 3`)
	type span struct {
		Label string  `json:"label"`
		Level string  `json:"level"`
		X0    float64 `json:"x0"`
		X1    float64 `json:"x1"`
	}
	spans := eval[[]span](t, bctx, `Array.from(document.querySelectorAll("#timeline g.row")).map(g => {
		const r = g.querySelector("rect.bar").getBoundingClientRect();
		return {label: g.dataset.label, level: g.querySelector("text.lvl").textContent, x0: r.left, x1: r.right}; })`)
	if len(spans) != 3 || spans[0].Label != "a" || spans[1].Label != "b" || spans[2].Label != "c" ||
		spans[0].Level != "L0" || spans[1].Level != "L0" || spans[2].Level != "L1" {
		t.Fatalf("graph timeline rows %+v, want a and b on L0, c on L1", spans)
	}
	if overlap := min(spans[0].X1, spans[1].X1) - max(spans[0].X0, spans[1].X0); overlap <= 0 {
		t.Errorf("the bars of a %+v and b %+v do not run side by side", spans[0], spans[1])
	}
	if spans[2].X0 < max(spans[0].X1, spans[1].X1)-1 {
		t.Errorf("c %+v starts before a and b ended", spans[2])
	}
	screenshot(t, bctx, "9-graph")
}

func statusOf(s *httpapi.SagaJSON) saga.SagaStatus {
	if s == nil {
		return ""
	}
	return s.Status
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
