package saga_test

import (
	"testing"

	saga "github.com/tracseq/transaction-service"
)

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"http://inventory.local/reserve":                   "http://inventory.local/reserve",
		"https://pay.local:8443/charge?api_key=s3cret&x=1": "https://pay.local:8443/charge?api_key=[redacted]&x=[redacted]",
		"http://user:pw@host.local/p":                      "http://[redacted]@host.local/p",
		"http://host.local/p?token":                        "http://host.local/p?[redacted]",
		"http://host.local/p?a=1&&b=":                      "http://host.local/p?a=[redacted]&&b=[redacted]",
		"http://host.local/p#access_token=abc":             "http://host.local/p#[redacted]",
		"postgres://tracseq:pw@db:5432/tx?password=pw2":    "postgres://[redacted]@db:5432/tx?password=[redacted]",
		"mailto:someone@example.com":                       "mailto:[redacted]",
		"http://host.local/a%20b":                          "http://host.local/a%20b",
		"http://[::1]:80/x?k=v":                            "http://[::1]:80/x?k=[redacted]",
		"http://host.local/\x7f":                           "(URL not shown: it does not parse)",
	} {
		if got := saga.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestRedactURLs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"no url here": "no url here",
		`Post "http://h.local/x?api_key=s3cret": dial tcp: connection refused`: `Post "http://h.local/x?api_key=[redacted]": dial tcp: connection refused`,
		"see HTTPS://u:p@h.local/y?k=v, then http://h2.local/z.":               "see https://[redacted]@h.local/y?k=[redacted], then http://h2.local/z.",
	} {
		if got := saga.RedactURLs(in); got != want {
			t.Errorf("RedactURLs(%q) = %q; want %q", in, got, want)
		}
	}
}
