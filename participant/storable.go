package participant

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime"
	"strings"
	"unicode/utf8"

	saga "github.com/tracseq/transaction-service"
)

// Whatever a participant answers is made storable here, before it becomes
// a step's output or error and reaches the store: PostgreSQL refuses NUL,
// invalid UTF-8, lone surrogates and out-of-range numbers (see
// saga.CheckStorableJSON), and a write it refuses would leave the saga
// stuck. This file is the one place where that happens.

// maxContentTypeLength bounds the content type kept with a body that is not
// JSON.
const maxContentTypeLength = 200

// maxErrorSnippet bounds the part of a failure answer quoted in the error.
const maxErrorSnippet = 512

// storableOutput turns the body of a 2xx answer into the step output:
//
//   - an empty body (or only white space): null;
//   - JSON: as sent, with what cannot be stored replaced (invalid UTF-8,
//     \u0000 and lone surrogates by U+FFFD; numbers out of range by
//     strings of their digits);
//   - text that is not JSON (valid UTF-8 without NUL):
//     {"content_type": "text/plain", "text": "…"};
//   - anything else (binary, invalid UTF-8):
//     {"content_type": "image/png", "base64": "…"}.
func storableOutput(body []byte, contentType string) json.RawMessage {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return jsonNull
	}
	if json.Valid(trimmed) {
		out, _ := saga.MakeStorableJSON(trimmed)
		return out
	}
	var wrapped struct {
		ContentType string `json:"content_type"`
		Text        string `json:"text,omitempty"`
		Base64      string `json:"base64,omitempty"`
	}
	wrapped.ContentType = storableContentType(contentType)
	if utf8.Valid(body) && bytes.IndexByte(body, 0) < 0 {
		wrapped.Text = string(body)
	} else {
		wrapped.Base64 = base64.StdEncoding.EncodeToString(body)
	}
	out, _ := json.Marshal(wrapped) // strings always marshal
	return out
}

// storableContentType returns the media type of a Content-Type header fit
// to be stored: its parameters dropped when it parses, printable and
// bounded; "" when absent.
func storableContentType(ct string) string {
	if mt, _, err := mime.ParseMediaType(ct); err == nil {
		ct = mt
	}
	ct = saga.StorableText(strings.TrimSpace(ct))
	return truncateUTF8(ct, maxContentTypeLength)
}

// errorSnippet returns the start of a failure answer for the error
// message, made storable: control characters escaped, invalid UTF-8
// replaced, at most maxErrorSnippet bytes (then "…").
func errorSnippet(body []byte) string {
	b := bytes.TrimSpace(body)
	cut := len(b) > maxErrorSnippet
	if cut {
		b = b[:maxErrorSnippet]
	}
	s := saga.StorableText(string(b))
	if cut {
		return truncateUTF8(s, maxErrorSnippet) + "…"
	}
	return s
}

// storableError makes a message built from others' text (a transport
// error quoting the URL called) fit to be stored and shown: URLs redacted,
// control characters escaped, invalid UTF-8 replaced.
func storableError(msg string) string {
	return saga.StorableText(saga.RedactURLs(msg))
}

// truncateUTF8 returns s cut to at most n bytes, on a rune boundary.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
