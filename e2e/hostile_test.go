package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tracseq/transaction-service/internal/apitest"
	"github.com/tracseq/transaction-service/internal/pgtest"
)

// hostileReplays is how many generated hostile requests the replay sends.
const hostileReplays = 10_000

// hostileFragments are JSON values (some not valid JSON, some not UTF-8)
// spliced into definitions in place of a value.
var hostileFragments = []string{
	`"\u0000"`, `"a\u0000b"`, "\"\xff\"", "\"\xfe\xff\"", `"\ud800"`, `"\udc00x"`, `"\ud800\u0041"`,
	`1e1000000`, `1e-1000000`, `-1e1000000`, `0e-99999`, `2e-324`, `1e309`, "1" + strings.Repeat("0", 200_000),
	`9223372036854776`, `9223372036854775807`, `-9223372036854775808`, `18446744073709551616`, `-1`, `0`, `1.5`,
	`{"Connection":"Idempotency-Key"}`, `{"Idempotency_Key":"x"}`, `{"X-A":"a\u0001b"}`, `{"X-A":"\u007f"}`, `{"Te":"trailers"}`,
	`{"Authorization":"tracseq-sealed:v1:abc:def"}`, `{"compensaton":{}}`, `{"a":` + strings.Repeat(`[`, 300) + strings.Repeat(`]`, 300) + `}`,
	`[]`, `{}`, `null`, `true`, `""`, `"` + strings.Repeat("x", 300) + `"`, `"http://u:p@127.0.0.1/"`, `"ftp://x/"`,
	`"GET"`, `"TRACE"`, `["a","a"]`, `["nonexistent"]`, `{"x":1e1000000}`, `"\u0000\ud800\u007f"`,
}

// hostileQueryParts are query strings for the list route.
var hostileQueryParts = []string{
	"name=%00", "name=%ff%fe", "name=a%01", "status=TimedOut;", "limit=1;limit=2", "%zz=1", "a=%zz",
	"status=Completed", "limit=5", "limit=0", "limit=99999999999999999999", "cursor=%00", "created_after=%ff",
	"transaction_id=%00", "name=" + url.QueryEscape("\u2713"), "status=Failed&status=Completed", "=", "&&",
}

// mutate returns a hostile variant of body made with r.
func mutate(r *rand.Rand, body string) string {
	b := []byte(body)
	for range 1 + r.IntN(3) {
		switch op := r.IntN(10); {
		case op < 5: // a value replaced by a hostile one
			b = spliceValue(r, b, hostileFragments[r.IntN(len(hostileFragments))])
		case op == 5: // an unknown member added
			if i := bytes.IndexByte(b, '{'); i >= 0 {
				b = append(b[:i+1:i+1], append([]byte(fmt.Sprintf(`"%s":%s,`, []string{"nmae", "stpes", "colour", "retyr", "\u0000"}[r.IntN(5)],
					hostileFragments[r.IntN(len(hostileFragments))])), b[i+1:]...)...)
			}
		case op == 6: // a byte changed
			if len(b) > 0 {
				b[r.IntN(len(b))] = byte(r.IntN(256))
			}
		case op == 7: // cut short
			b = b[:r.IntN(len(b)+1)]
		case op == 8: // bytes inserted
			i := r.IntN(len(b) + 1)
			b = append(b[:i:i], append([]byte{byte(r.IntN(256)), '"', '\\'}[:1+r.IntN(3)], b[i:]...)...)
		default: // left as it is, or doubled
			if r.IntN(2) == 0 {
				b = append(b, b...)
			}
		}
	}
	return string(b)
}

// spliceValue replaces the value after a random ':' of b by frag.
func spliceValue(r *rand.Rand, b []byte, frag string) []byte {
	var colons []int
	inString := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '\\' && inString:
			i++
		case c == '"':
			inString = !inString
		case c == ':' && !inString:
			colons = append(colons, i)
		}
	}
	if len(colons) == 0 {
		return b
	}
	start := colons[r.IntN(len(colons))] + 1
	dec := json.NewDecoder(bytes.NewReader(b[start:]))
	var v json.RawMessage
	if dec.Decode(&v) != nil {
		return b
	}
	end := start + int(dec.InputOffset())
	return append(append(b[:start:start], frag...), b[end:]...)
}

// TestHostileReplayOnPostgres replays 10,000 generated hostile requests
// (definitions of the hostile-input report mutated at random, and list
// queries) against the real program on PostgreSQL: no answer is a 5xx,
// and the only rows in the database are those of the sagas it accepted.
func TestHostileReplayOnPostgres(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	participant := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(participant.Close)
	in := startInstance(t, instanceConfig{DatabaseURL: dbURL, InstanceID: "hostile-1",
		Env: []string{"PARTICIPANT_ALLOWED_HOSTS=127.0.0.1"}})

	var seeds []string
	for _, body := range apitest.HostileBodies() {
		body = strings.ReplaceAll(body, "http://inventory.local", participant.URL)
		seeds = append(seeds, strings.ReplaceAll(body, "http://x.local", participant.URL))
	}
	for _, tc := range apitest.BadRequests() {
		if tc.Method == http.MethodPost && tc.BodyBytes == 0 && strings.HasPrefix(tc.Path, "/api/v1/sagas") {
			seeds = append(seeds, tc.Body)
		}
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 12))
	type request struct{ method, path, body string }
	reqs := make([]request, hostileReplays)
	for i := range reqs {
		if r.IntN(10) == 0 {
			q := hostileQueryParts[r.IntN(len(hostileQueryParts))] + "&" + hostileQueryParts[r.IntN(len(hostileQueryParts))]
			reqs[i] = request{http.MethodGet, "/api/v1/sagas?" + q, ""}
			continue
		}
		body := seeds[r.IntN(len(seeds))]
		if r.IntN(8) != 0 {
			body = mutate(r, body)
		}
		reqs[i] = request{http.MethodPost, "/api/v1/sagas", body}
	}

	var (
		mu       sync.Mutex
		byStatus = map[int]int{}
		accepted = map[string]bool{}
		server   []string
	)
	hc := &http.Client{Timeout: 60 * time.Second}
	work := make(chan request)
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for rq := range work {
				req, err := http.NewRequestWithContext(context.Background(), rq.method, in.url+rq.path, strings.NewReader(rq.body))
				if err != nil {
					t.Errorf("new request: %v", err)
					continue
				}
				if rq.method == http.MethodPost {
					req.Header.Set("Content-Type", "application/json")
				}
				resp, err := hc.Do(req)
				if err != nil {
					t.Errorf("%s %s: %v", rq.method, rq.path, err)
					continue
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				mu.Lock()
				byStatus[resp.StatusCode]++
				switch {
				case resp.StatusCode >= 500:
					if len(server) < 10 {
						server = append(server, fmt.Sprintf("%d for %s %.300q: %s", resp.StatusCode, rq.method, rq.path+" "+rq.body, raw))
					}
				case rq.method == http.MethodPost && (resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK):
					var s struct{ ID string }
					if json.Unmarshal(raw, &s) != nil || s.ID == "" {
						t.Errorf("accepted without a saga: %s", raw)
					}
					accepted[s.ID] = true
				}
				mu.Unlock()
			}
		})
	}
	for _, rq := range reqs {
		work <- rq
	}
	close(work)
	wg.Wait()
	t.Logf("%d hostile requests in %v: answers by status %v; %d sagas accepted", len(reqs), time.Since(start).Round(time.Millisecond), byStatus, len(accepted))
	for _, s := range server {
		t.Error(s)
	}

	// The rows in the database are the accepted sagas' and no others.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ids := make([]string, 0, len(accepted))
	for id := range accepted {
		ids = append(ids, id)
	}
	var sagas, strays int
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM sagas),
		(SELECT count(*) FROM sagas WHERE id::text <> ALL($1)) +
		(SELECT count(*) FROM saga_steps WHERE saga_id::text <> ALL($1)) +
		(SELECT count(*) FROM saga_events WHERE saga_id::text <> ALL($1))`, ids).Scan(&sagas, &strays)
	if err != nil {
		t.Fatal(err)
	}
	if sagas != len(accepted) || strays != 0 {
		t.Errorf("the database holds %d sagas for %d accepted, and %d rows of sagas never accepted", sagas, len(accepted), strays)
	}
}
