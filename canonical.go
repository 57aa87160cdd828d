package saga

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// CanonicalJSON returns the canonical form of the JSON value raw: the form
// the audit chain hashes (see Chain). Two texts of the same value have the
// same canonical form, whatever their spacing, key order, escapes or number
// spelling, so that an event's hash can be recomputed from the event as any
// store gives it back (PostgreSQL's jsonb, say, reorders keys, respaces and
// respells numbers). The rules:
//
//   - no white space outside strings;
//   - strings escaped minimally: \" \\ \b \f \n \r \t, other control
//     characters as \u00XX, everything else as UTF-8 (invalid UTF-8 and lone
//     surrogates become U+FFFD);
//   - object members sorted by the bytes of their keys written so; of
//     duplicate keys the last one is kept, as jsonb does;
//   - numbers by their exact decimal value: no sign on zero, no leading or
//     trailing zeros, plain notation while the decimal point is within 21
//     digits of the first digit and 6 zeros of it, otherwise d.ddde±N
//     (1.5, 100, 0.000001, 1e+21, 1.5e-7).
//
// Empty input (and JSON null at the top) has the canonical form nil. An
// error names the offset where raw is not valid JSON.
func CanonicalJSON(raw []byte) ([]byte, error) {
	return canonicalize(raw, nil)
}

// member is a member added to an object by canonicalize: its key and its
// value as JSON text (not necessarily canonical).
type member struct {
	key   string
	value []byte
	// unless names a member whose value, when it is value (canonical),
	// makes this one redundant: it is not added then.
	unless string
}

// canonicalize returns the canonical form of raw with the members of extra
// that raw's top-level object lacks added to it (raw empty or null counts
// as an empty object then).
func canonicalize(raw []byte, extra []member) ([]byte, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || string(trimmed) == "null" {
		if len(extra) == 0 {
			return nil, nil
		}
		raw = []byte("{}")
	}
	c := canonicalizer{in: raw, extra: extra}
	c.out = make([]byte, 0, len(raw)+extraSize(extra)+8)
	c.skipSpace()
	if len(extra) > 0 && (c.pos >= len(c.in) || c.in[c.pos] != '{') {
		return nil, fmt.Errorf("data is not a JSON object, so members cannot be added to it")
	}
	if err := c.value(0); err != nil {
		return nil, err
	}
	c.skipSpace()
	if c.pos != len(c.in) {
		return nil, c.errorf("data after the JSON value")
	}
	return c.out, nil
}

func extraSize(extra []member) int {
	n := 0
	for _, m := range extra {
		n += len(m.key) + len(m.value) + 4
	}
	return n
}

// maxCanonicalDepth bounds the nesting of a value (a stack guard).
const maxCanonicalDepth = 1000

// maxExponent bounds a number's decimal exponent; PostgreSQL's numeric
// cannot hold more either.
const maxExponent = 1 << 20

type canonicalizer struct {
	in      []byte
	pos     int
	out     []byte
	extra   []member // added to the top-level object
	scratch []byte   // reorder's copy of the members
}

func (c *canonicalizer) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at byte %d: %s", c.pos, fmt.Sprintf(format, args...))
}

func (c *canonicalizer) skipSpace() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

func (c *canonicalizer) value(depth int) error {
	if depth > maxCanonicalDepth {
		return c.errorf("nested deeper than %d", maxCanonicalDepth)
	}
	if c.pos >= len(c.in) {
		return c.errorf("unexpected end")
	}
	switch b := c.in[c.pos]; {
	case b == '{':
		return c.object(depth)
	case b == '[':
		return c.array(depth)
	case b == '"':
		return c.str()
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	case b == '-' || b >= '0' && b <= '9':
		return c.number()
	}
	return c.errorf("unexpected %q", c.in[c.pos])
}

func (c *canonicalizer) literal(word string) error {
	if !bytes.HasPrefix(c.in[c.pos:], []byte(word)) {
		return c.errorf("unexpected %q", c.in[c.pos])
	}
	c.pos += len(word)
	c.out = append(c.out, word...)
	return nil
}

func (c *canonicalizer) array(depth int) error {
	c.pos++ // [
	c.out = append(c.out, '[')
	c.skipSpace()
	if c.pos < len(c.in) && c.in[c.pos] == ']' {
		c.pos++
		c.out = append(c.out, ']')
		return nil
	}
	for {
		c.skipSpace()
		if err := c.value(depth + 1); err != nil {
			return err
		}
		c.skipSpace()
		if c.pos >= len(c.in) {
			return c.errorf("unexpected end in an array")
		}
		switch c.in[c.pos] {
		case ',':
			c.pos++
			c.out = append(c.out, ',')
		case ']':
			c.pos++
			c.out = append(c.out, ']')
			return nil
		default:
			return c.errorf("want , or ] in an array")
		}
	}
}

// span is one member of an object written to out: its key (with quotes)
// is out[start:colon], the whole member out[start:end].
type span struct {
	start, colon, end int
}

func (c *canonicalizer) key(s span) []byte { return c.out[s.start:s.colon] }

func (c *canonicalizer) object(depth int) error {
	c.pos++ // {
	c.out = append(c.out, '{')
	begin := len(c.out)
	var stack [16]span
	members := stack[:0]
	c.skipSpace()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.pos++
	} else {
		for {
			c.skipSpace()
			if c.pos >= len(c.in) || c.in[c.pos] != '"' {
				return c.errorf("want a string key in an object")
			}
			if len(members) > 0 {
				c.out = append(c.out, ',')
			}
			start := len(c.out)
			if err := c.str(); err != nil {
				return err
			}
			colon := len(c.out)
			c.skipSpace()
			if c.pos >= len(c.in) || c.in[c.pos] != ':' {
				return c.errorf("want : after an object key")
			}
			c.pos++
			c.skipSpace()
			c.out = append(c.out, ':')
			if err := c.value(depth + 1); err != nil {
				return err
			}
			members = append(members, span{start, colon, len(c.out)})
			c.skipSpace()
			if c.pos >= len(c.in) {
				return c.errorf("unexpected end in an object")
			}
			if c.in[c.pos] == '}' {
				c.pos++
				break
			}
			if c.in[c.pos] != ',' {
				return c.errorf("want , or } in an object")
			}
			c.pos++
		}
	}
	if depth == 0 && len(c.extra) > 0 {
		var err error
		if members, err = c.addExtra(members); err != nil {
			return err
		}
	}
	ordered := true
	for i := 1; i < len(members); i++ {
		if bytes.Compare(c.key(members[i-1]), c.key(members[i])) >= 0 {
			ordered = false
			break
		}
	}
	if !ordered {
		c.reorder(begin, members)
	}
	c.out = append(c.out, '}')
	return nil
}

// addExtra writes the extra members whose keys the object lacks after its
// members.
func (c *canonicalizer) addExtra(members []span) ([]span, error) {
	written := len(members)
	for _, x := range c.extra {
		start := len(c.out)
		if len(members) > 0 {
			c.out = append(c.out, ',')
			start++
		}
		c.out = appendCanonicalString(c.out, x.key)
		colon := len(c.out)
		have := false
		for _, m := range members[:written] {
			if bytes.Equal(c.key(m), c.out[start:colon]) {
				have = true
				break
			}
		}
		if have || x.unless != "" && c.memberIs(members, x.unless, x.value) {
			c.out = c.out[:start-min(1, len(members))]
			continue
		}
		c.out = append(c.out, ':')
		sub := canonicalizer{in: x.value, out: c.out}
		sub.skipSpace()
		if sub.pos == len(sub.in) {
			sub.out = append(sub.out, "null"...)
		} else if err := sub.value(1); err != nil {
			return nil, fmt.Errorf("member %s: %w", x.key, err)
		}
		sub.skipSpace()
		if sub.pos != len(sub.in) {
			return nil, fmt.Errorf("member %s: %w", x.key, sub.errorf("data after the JSON value"))
		}
		c.out = sub.out
		c.scratch = sub.scratch
		members = append(members, span{start, colon, len(c.out)})
	}
	return members, nil
}

// memberIs reports whether one of members is key with the canonical value.
func (c *canonicalizer) memberIs(members []span, key string, value []byte) bool {
	for _, m := range members {
		k := c.key(m)
		if len(k) == len(key)+2 && string(k[1:len(k)-1]) == key {
			return bytes.Equal(c.out[m.colon+1:m.end], value)
		}
	}
	return false
}

// reorder rewrites the members written from begin sorted by key, keeping
// the last of duplicate keys.
func (c *canonicalizer) reorder(begin int, members []span) {
	c.scratch = append(c.scratch[:0], c.out[begin:]...)
	written := c.scratch
	var stack [16]int
	order := stack[:0]
	for i := range members {
		order = append(order, i)
	}
	slices.SortStableFunc(order, func(a, b int) int { return bytes.Compare(c.key(members[a]), c.key(members[b])) })
	c.out = c.out[:begin]
	first := true
	for k, i := range order {
		m := members[i]
		if k+1 < len(order) {
			next := members[order[k+1]]
			if bytes.Equal(written[m.start-begin:m.colon-begin], written[next.start-begin:next.colon-begin]) {
				continue // a later duplicate follows
			}
		}
		if !first {
			c.out = append(c.out, ',')
		}
		first = false
		c.out = append(c.out, written[m.start-begin:m.end-begin]...)
	}
}

// str reads a JSON string at pos and writes it in canonical form.
func (c *canonicalizer) str() error {
	c.pos++ // opening quote
	start := c.pos
	// Fast path: printable ASCII without escapes is written as it is.
	for c.pos < len(c.in) {
		b := c.in[c.pos]
		if b == '"' {
			c.out = append(c.out, '"')
			c.out = append(c.out, c.in[start:c.pos]...)
			c.out = append(c.out, '"')
			c.pos++
			return nil
		}
		if b == '\\' || b < 0x20 || b >= 0x80 {
			break
		}
		c.pos++
	}
	buf := append([]byte(nil), c.in[start:c.pos]...)
	for {
		if c.pos >= len(c.in) {
			return c.errorf("unterminated string")
		}
		b := c.in[c.pos]
		switch {
		case b == '"':
			c.pos++
			c.out = appendCanonicalString(c.out, string(bytes.ToValidUTF8(buf, []byte("\uFFFD"))))
			return nil
		case b < 0x20:
			return c.errorf("control character in a string")
		case b != '\\':
			buf = append(buf, b)
			c.pos++
			continue
		}
		// An escape.
		if c.pos+1 >= len(c.in) {
			return c.errorf("unterminated escape")
		}
		e := c.in[c.pos+1]
		c.pos += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := c.hex4()
			if !ok {
				return c.errorf("bad \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if c.pos+1 < len(c.in) && c.in[c.pos] == '\\' && c.in[c.pos+1] == 'u' {
					save := c.pos
					c.pos += 2
					low, ok := c.hex4()
					if ok {
						r2 = utf16.DecodeRune(r, low)
					}
					if r2 == utf8.RuneError {
						c.pos = save // not a pair: the second escape stands alone
					}
				}
				r = r2
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return c.errorf("bad escape \\%c", e)
		}
	}
}

// hex4 reads four hex digits at pos.
func (c *canonicalizer) hex4() (rune, bool) {
	if c.pos+4 > len(c.in) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(c.in[c.pos:c.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	c.pos += 4
	return rune(n), true
}

// AppendJSONString appends s as encoding/json writes it: plain ASCII as
// is, anything else (escapes, HTML characters, invalid UTF-8) through
// json.Marshal. Hot paths that build JSON by hand use it for their
// strings.
func AppendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(dst, q...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// appendCanonicalString appends s (valid UTF-8) as a canonical JSON
// string.
func appendCanonicalString(out []byte, s string) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b >= 0x20 && b != '"' && b != '\\' {
			continue
		}
		out = append(out, s[start:i]...)
		switch b {
		case '"', '\\':
			out = append(out, '\\', b)
		case '\b':
			out = append(out, '\\', 'b')
		case '\f':
			out = append(out, '\\', 'f')
		case '\n':
			out = append(out, '\\', 'n')
		case '\r':
			out = append(out, '\\', 'r')
		case '\t':
			out = append(out, '\\', 't')
		default:
			out = append(out, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
		}
		start = i + 1
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}

// number reads a JSON number at pos and writes its canonical form.
func (c *canonicalizer) number() error {
	in := c.in
	i := c.pos
	neg := false
	if in[i] == '-' {
		neg = true
		i++
	}
	intStart := i
	for i < len(in) && in[i] >= '0' && in[i] <= '9' {
		i++
	}
	intDigits := in[intStart:i]
	if len(intDigits) == 0 || len(intDigits) > 1 && intDigits[0] == '0' {
		return c.errorf("bad number")
	}
	var fracDigits []byte
	if i < len(in) && in[i] == '.' {
		i++
		fracStart := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		fracDigits = in[fracStart:i]
		if len(fracDigits) == 0 {
			return c.errorf("bad number")
		}
	}
	exp := 0
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		i++
		expNeg := false
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			expNeg = in[i] == '-'
			i++
		}
		expStart := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			if exp < maxExponent*10 {
				exp = exp*10 + int(in[i]-'0')
			}
			i++
		}
		if i == expStart {
			return c.errorf("bad number")
		}
		if exp > maxExponent {
			return c.errorf("exponent too large")
		}
		if expNeg {
			exp = -exp
		}
	}
	// Fast path: an integer without leading zeros, exponent or fraction is
	// canonical as it is (but for minus zero).
	if fracDigits == nil && exp == 0 && len(intDigits) <= 21 && !(neg && intDigits[0] == '0') {
		c.out = append(c.out, in[c.pos:i]...)
		c.pos = i
		return nil
	}
	c.pos = i
	c.out = appendCanonicalNumber(c.out, neg, intDigits, fracDigits, exp)
	return nil
}

// appendCanonicalNumber appends the canonical form of the decimal
// (-)int.frac × 10^exp.
func appendCanonicalNumber(out []byte, neg bool, intDigits, fracDigits []byte, exp int) []byte {
	// The significant digits d1 d2 … dn and the position p of the decimal
	// point after the first p of them: value = 0.d1…dn × 10^p.
	digits := make([]byte, 0, len(intDigits)+len(fracDigits))
	digits = append(digits, intDigits...)
	digits = append(digits, fracDigits...)
	p := len(intDigits) + exp
	lead := 0
	for lead < len(digits) && digits[lead] == '0' {
		lead++
	}
	digits = digits[lead:]
	p -= lead
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
	}
	if len(digits) == 0 {
		return append(out, '0')
	}
	if neg {
		out = append(out, '-')
	}
	n := len(digits)
	switch {
	case n <= p && p <= 21:
		out = append(out, digits...)
		for range p - n {
			out = append(out, '0')
		}
	case 0 < p && p <= 21:
		out = append(out, digits[:p]...)
		out = append(out, '.')
		out = append(out, digits[p:]...)
	case -6 < p && p <= 0:
		out = append(out, '0', '.')
		for range -p {
			out = append(out, '0')
		}
		out = append(out, digits...)
	default:
		out = append(out, digits[0])
		if n > 1 {
			out = append(out, '.')
			out = append(out, digits[1:]...)
		}
		out = append(out, 'e')
		if p-1 >= 0 {
			out = append(out, '+')
		}
		out = strconv.AppendInt(out, int64(p-1), 10)
	}
	return out
}
