package saga

import (
	"net/url"
	"strings"
)

// Redacted is what stands in for a secret wherever one would be shown.
const Redacted = "[redacted]"

// RedactURL returns rawURL fit to be shown in errors, events and logs: its
// user information, the values of its query parameters, query parts without
// a value and its fragment are replaced by [redacted], so that an API key
// passed in a participant's URL (?api_key=…) is not echoed. Scheme, host,
// path and the names of query parameters stay. A URL that does not parse
// is not shown at all.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(URL not shown: it does not parse)"
	}
	var b strings.Builder
	b.Grow(len(rawURL))
	if u.Scheme != "" {
		b.WriteString(u.Scheme)
		b.WriteByte(':')
	}
	if u.Opaque != "" {
		b.WriteString(Redacted)
		return b.String()
	}
	if u.Host != "" || u.User != nil {
		b.WriteString("//")
		if u.User != nil {
			b.WriteString(Redacted + "@")
		}
		b.WriteString(u.Host)
	}
	b.WriteString(u.EscapedPath())
	if u.RawQuery != "" || u.ForceQuery {
		b.WriteByte('?')
		for i, part := range strings.Split(u.RawQuery, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			name, _, hasValue := strings.Cut(part, "=")
			switch {
			case part == "":
			case hasValue:
				b.WriteString(name + "=" + Redacted)
			default:
				b.WriteString(Redacted)
			}
		}
	}
	if u.Fragment != "" {
		b.WriteString("#" + Redacted)
	}
	return b.String()
}

// RedactURLs returns text with every http or https URL in it redacted by
// RedactURL: for messages built by others (a transport error) that may
// quote the URL they were called with.
func RedactURLs(text string) string {
	if !strings.Contains(text, "://") {
		return text
	}
	var b strings.Builder
	for {
		i := indexURL(text)
		if i < 0 {
			b.WriteString(text)
			return b.String()
		}
		b.WriteString(text[:i])
		text = text[i:]
		end := strings.IndexAny(text, " \t\r\n\"'<>`")
		if end < 0 {
			end = len(text)
		}
		// A URL quoted at the end of a sentence keeps its punctuation.
		for end > 0 && strings.IndexByte(".,;:)]}", text[end-1]) >= 0 {
			end--
		}
		b.WriteString(RedactURL(text[:end]))
		text = text[end:]
	}
}

// indexURL returns the index of the first "http://" or "https://" in text
// (either case), or -1.
func indexURL(text string) int {
	lower := strings.ToLower(text)
	i, j := strings.Index(lower, "http://"), strings.Index(lower, "https://")
	switch {
	case i < 0:
		return j
	case j < 0:
		return i
	}
	return min(i, j)
}
