package saga

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// What PostgreSQL can store. A jsonb column refuses a string holding
// \u0000 (SQLSTATE 22P05), a lone UTF-16 surrogate such as \ud800 (22P02),
// and a number whose digits or exponent exceed the numeric type (22003:
// 1e1000000, 0e-99999, a 1 followed by 200,000 zeros); a text column
// refuses NUL and invalid UTF-8 (22021). Go's JSON decoder turns invalid
// UTF-8 and lone surrogates into U+FFFD without a word, so the raw bytes
// are checked before they are decoded.
//
// The rules below are those of the service, a little stricter than the
// database's, so that every value also survives Go's float64 and
// JavaScript's numbers: a number must fit a float64 without overflowing,
// must not underflow to 0 unless it is 0, must be at most
// MaxJSONNumberLength bytes long and its exponent at most
// maxJSONExponent in size.
const (
	// MaxJSONNumberLength is the longest JSON number literal accepted.
	MaxJSONNumberLength = 1000
	// maxJSONExponent bounds the exponent of a JSON number literal.
	maxJSONExponent = 1000
)

// JSONProblem is a part of a JSON document that cannot be stored as it is.
type JSONProblem struct {
	// Path locates the value from the document's root: ".context.s",
	// "[2]", `.headers["a b"]`; empty for the root itself.
	Path string
	// Message says what is wrong, for a client.
	Message string
}

// Field returns the path of the problem below field (a JSON path such as
// "context"), for errors: "context.s". An empty field gives the path
// without its leading dot.
func (p *JSONProblem) Field(field string) string {
	if field == "" {
		return strings.TrimPrefix(p.Path, ".")
	}
	return field + p.Path
}

// CheckStorableJSON returns the first part of raw that cannot be stored, or
// nil. raw must be valid JSON (json.Valid); invalid JSON is reported as a
// problem at the root.
func CheckStorableJSON(raw []byte) *JSONProblem {
	if !json.Valid(raw) {
		return &JSONProblem{Message: "is not valid JSON"}
	}
	w := jsonWalker{data: raw}
	w.value()
	return w.problem
}

// MakeStorableJSON returns raw (valid JSON) with every part that cannot be
// stored replaced: a string holding invalid UTF-8, \u0000 or a lone
// surrogate has each of them replaced by U+FFFD, and a number out of range
// becomes a JSON string of its digits. It returns raw itself when nothing
// needed replacing, and changed reports whether anything did. Invalid JSON
// is returned as a JSON string of its text, made storable.
func MakeStorableJSON(raw []byte) (out json.RawMessage, changed bool) {
	if !json.Valid(raw) {
		b, _ := json.Marshal(StorableText(string(raw))) // a string always marshals
		return b, true
	}
	w := jsonWalker{data: raw, fix: true}
	w.value()
	if w.out == nil {
		return raw, false
	}
	return append(w.out, raw[w.copied:]...), true
}

// StorableTextProblem returns what makes s unfit for a text column of the
// database and for a JSON string (NUL, invalid UTF-8), or "".
func StorableTextProblem(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "contains a NUL character, which cannot be stored"
	}
	return ""
}

// StorableText returns s made fit for a text column, for messages built
// from what others sent (a participant's error answer): invalid UTF-8
// becomes U+FFFD, tabs and line breaks become spaces and other control
// characters (NUL included) are written as \xNN.
func StorableText(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case r == '\t' || r == '\n' || r == '\r':
			b.WriteByte(' ')
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\x`)
			b.WriteString(strconv.FormatUint(uint64(r)>>4, 16))
			b.WriteString(strconv.FormatUint(uint64(r)&0xf, 16))
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// pathElem is one step of a jsonWalker's path: an object key (its raw
// literal, quotes included) or an array index.
type pathElem struct {
	key   []byte
	index int
}

// jsonWalker goes once through valid JSON, checking every string and
// number. In check mode it stops at the first problem; in fix mode it
// builds a copy with the problems replaced (out, filled lazily: nil while
// nothing needed replacing).
type jsonWalker struct {
	data    []byte
	pos     int
	path    []pathElem
	problem *JSONProblem

	fix    bool
	out    []byte
	copied int // data[:copied] is in out already
}

func (w *jsonWalker) done() bool { return w.problem != nil && !w.fix }

func (w *jsonWalker) skipSpace() {
	for w.pos < len(w.data) {
		switch w.data[w.pos] {
		case ' ', '\t', '\r', '\n':
			w.pos++
		default:
			return
		}
	}
}

// value walks the value at pos.
func (w *jsonWalker) value() {
	w.skipSpace()
	if w.pos >= len(w.data) {
		return
	}
	switch c := w.data[w.pos]; {
	case c == '{':
		w.object()
	case c == '[':
		w.array()
	case c == '"':
		w.str()
	case c == 't':
		w.pos += len("true")
	case c == 'f':
		w.pos += len("false")
	case c == 'n':
		w.pos += len("null")
	default:
		w.number()
	}
}

func (w *jsonWalker) object() {
	w.pos++ // {
	w.skipSpace()
	if w.pos < len(w.data) && w.data[w.pos] == '}' {
		w.pos++
		return
	}
	for w.pos < len(w.data) && !w.done() {
		w.skipSpace()
		w.path = append(w.path, pathElem{key: w.data[w.pos:literalEnd(w.data, w.pos)]})
		w.str()
		w.skipSpace()
		w.pos++ // :
		w.value()
		w.path = w.path[:len(w.path)-1]
		w.skipSpace()
		if w.pos >= len(w.data) {
			return
		}
		c := w.data[w.pos]
		w.pos++
		if c == '}' {
			return
		}
	}
}

func (w *jsonWalker) array() {
	w.pos++ // [
	w.skipSpace()
	if w.pos < len(w.data) && w.data[w.pos] == ']' {
		w.pos++
		return
	}
	w.path = append(w.path, pathElem{})
	defer func() { w.path = w.path[:len(w.path)-1] }()
	for i := 0; w.pos < len(w.data) && !w.done(); i++ {
		w.path[len(w.path)-1].index = i
		w.value()
		w.skipSpace()
		if w.pos >= len(w.data) {
			return
		}
		c := w.data[w.pos]
		w.pos++
		if c == ']' {
			return
		}
	}
}

// str walks the string literal at pos.
func (w *jsonWalker) str() {
	start := w.pos
	w.pos++ // "
	var problem string
	for w.pos < len(w.data) {
		c := w.data[w.pos]
		switch {
		case c == '"':
			w.pos++
			if problem != "" {
				w.report(problem, start, w.pos, func(lit []byte) []byte {
					var s string
					_ = json.Unmarshal(lit, &s) // lit is a valid literal: Go makes its bad parts U+FFFD
					b, _ := json.Marshal(strings.ReplaceAll(s, "\x00", "\uFFFD"))
					return b
				})
			}
			return
		case c == '\\':
			if w.pos+1 < len(w.data) && w.data[w.pos+1] == 'u' {
				if p := w.escape(); p != "" && problem == "" {
					problem = p
				}
				continue
			}
			w.pos += 2
		case c < utf8.RuneSelf:
			w.pos++
		default:
			r, size := utf8.DecodeRune(w.data[w.pos:])
			if r == utf8.RuneError && size == 1 && problem == "" {
				problem = "is not valid UTF-8"
			}
			w.pos += size
		}
	}
}

// escape reads the \uXXXX escape at pos (and the low surrogate after a high
// one) and returns its problem, or "".
func (w *jsonWalker) escape() string {
	r := hex4(w.data, w.pos+2)
	w.pos += 6
	switch {
	case r == 0:
		return `contains \u0000 (NUL), which cannot be stored`
	case r >= 0xDC00 && r <= 0xDFFF:
		return "contains a lone UTF-16 surrogate, which is not a character"
	case r >= 0xD800 && r <= 0xDBFF:
		if w.pos+1 < len(w.data) && w.data[w.pos] == '\\' && w.data[w.pos+1] == 'u' {
			if lo := hex4(w.data, w.pos+2); lo >= 0xDC00 && lo <= 0xDFFF {
				w.pos += 6
				return ""
			}
		}
		return "contains a lone UTF-16 surrogate, which is not a character"
	}
	return ""
}

// hex4 decodes the four hex digits at data[i:], -1 when they are not.
func hex4(data []byte, i int) rune {
	if i+4 > len(data) {
		return -1
	}
	n, err := strconv.ParseUint(string(data[i:i+4]), 16, 16)
	if err != nil {
		return -1
	}
	return rune(n)
}

// number walks the number literal at pos.
func (w *jsonWalker) number() {
	start := w.pos
	for w.pos < len(w.data) && strings.IndexByte("+-0123456789.eE", w.data[w.pos]) >= 0 {
		w.pos++
	}
	lit := w.data[start:w.pos]
	if numberInRange(lit) {
		return
	}
	shown := lit
	if len(shown) > 24 {
		shown = append(bytes.Clone(shown[:20]), "…"...)
	}
	w.report("number "+string(shown)+" is out of range: numbers must fit a 64-bit float (at most about 1.8e308 in size, not so small that they round to 0, at most "+
		strconv.Itoa(MaxJSONNumberLength)+" characters)", start, w.pos, func(lit []byte) []byte {
		b, _ := json.Marshal(string(lit))
		return b
	})
}

// numberInRange reports whether a JSON number literal can be stored.
func numberInRange(lit []byte) bool {
	if len(lit) > MaxJSONNumberLength {
		return false
	}
	mantissa := lit
	if i := bytes.IndexAny(lit, "eE"); i >= 0 {
		mantissa = lit[:i]
		exp := bytes.TrimLeft(lit[i+1:], "+-")
		exp = bytes.TrimLeft(exp, "0")
		if len(exp) > 4 {
			return false
		}
		if n, _ := strconv.Atoi(string(exp)); n > maxJSONExponent {
			return false
		}
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return false
	}
	// An underflow parses as 0 without an error.
	return f != 0 || len(bytes.Trim(mantissa, "-0.")) == 0
}

// literalEnd returns the end of the string literal starting at data[i].
func literalEnd(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(data)
}

// report records a problem with the value at data[start:end]: the first
// one in check mode; in fix mode the value is replaced by fix(value).
func (w *jsonWalker) report(msg string, start, end int, fix func([]byte) []byte) {
	if w.problem == nil {
		w.problem = &JSONProblem{Path: w.pathString(), Message: msg}
	}
	if !w.fix {
		return
	}
	if w.out == nil {
		w.out = make([]byte, 0, len(w.data)+16)
	}
	w.out = append(w.out, w.data[w.copied:start]...)
	w.out = append(w.out, fix(w.data[start:end])...)
	w.copied = end
}

// pathString formats the current path: .key, ["odd key"], [index].
func (w *jsonWalker) pathString() string {
	var b strings.Builder
	for _, e := range w.path {
		if e.key == nil {
			b.WriteString("[" + strconv.Itoa(e.index) + "]")
			continue
		}
		var k string
		_ = json.Unmarshal(e.key, &k)
		if plainKey(k) {
			b.WriteString("." + k)
		} else {
			b.WriteString("[" + strconv.QuoteToASCII(k) + "]")
		}
	}
	return b.String()
}

// plainKey reports whether k can follow a dot in a path.
func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
