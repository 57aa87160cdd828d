package saga_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	saga "github.com/tracseq/transaction-service"
)

// storableCases are JSON documents PostgreSQL refuses (or that Go would
// silently change), with where the problem is and what they become when
// made storable.
var storableCases = []struct {
	name    string
	in      string
	path    string // "" with ok: storable as it is
	ok      bool
	message string
	fixed   string
}{
	{name: "plain", in: `{"a":[1,2.5,-3e10,"x"],"b":null,"c":true}`, ok: true},
	{name: "escapes that are fine", in: `{"tab":"a\tb","u1":"\u0001","pair":"\ud83d\ude00","é":"é"}`, ok: true},
	{name: "largest float", in: `[1.7976931348623157e308,-1.7976931348623157e308,5e-324,0,-0,0.0,0e10]`, ok: true},
	{name: "NUL escape", in: `{"s":"\u0000"}`, path: ".s", message: "NUL", fixed: `{"s":"` + "\uFFFD" + `"}`},
	{name: "NUL in a key", in: `{"a\u0000b":1}`, path: `["a\x00b"]`, message: "NUL", fixed: `{"a` + "\uFFFD" + `b":1}`},
	{name: "invalid UTF-8", in: "{\"a\":\"\xff\"}", path: ".a", message: "UTF-8", fixed: `{"a":"` + "\uFFFD" + `"}`},
	{name: "invalid UTF-8 deep", in: "{\"a\":[1,{\"b\":\"ok\xfe\"}]}", path: ".a[1].b", message: "UTF-8", fixed: `{"a":[1,{"b":"ok` + "\uFFFD" + `"}]}`},
	{name: "lone high surrogate", in: `["\ud800"]`, path: "[0]", message: "surrogate", fixed: `["` + "\uFFFD" + `"]`},
	{name: "lone low surrogate", in: `{"x":"a\udc00b"}`, path: ".x", message: "surrogate", fixed: `{"x":"a` + "\uFFFD" + `b"}`},
	{name: "high surrogate then not low", in: `"\ud800\u0041"`, path: "", message: "surrogate", fixed: `"` + "\uFFFDA" + `"`},
	{name: "huge exponent", in: `{"n":1e1000000}`, path: ".n", message: "out of range", fixed: `{"n":"1e1000000"}`},
	{name: "tiny exponent", in: `{"n":1e-1000000}`, path: ".n", message: "out of range", fixed: `{"n":"1e-1000000"}`},
	{name: "underflow", in: `[2e-324]`, path: "[0]", message: "out of range", fixed: `["2e-324"]`},
	{name: "zero with a huge exponent", in: `[0e-99999]`, path: "[0]", message: "out of range", fixed: `["0e-99999"]`},
	{name: "overflow", in: `[1e309]`, path: "[0]", message: "out of range", fixed: `["1e309"]`},
	{name: "1 and 200,000 zeros", in: `{"n":1` + strings.Repeat("0", 200_000) + `}`, path: ".n", message: "out of range", fixed: `{"n":"1` + strings.Repeat("0", 200_000) + `"}`},
	{name: "long fraction", in: `[0.` + strings.Repeat("0", 2000) + `1]`, path: "[0]", message: "out of range", fixed: `["0.` + strings.Repeat("0", 2000) + `1"]`},
	{name: "two problems", in: `{"a":"\u0000","b":1e999}`, path: ".a", message: "NUL", fixed: `{"a":"` + "\uFFFD" + `","b":"1e999"}`},
}

func TestCheckStorableJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range storableCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := saga.CheckStorableJSON([]byte(tc.in))
			switch {
			case tc.ok && p != nil:
				t.Fatalf("problem %+v; want none", p)
			case tc.ok:
				return
			case p == nil:
				t.Fatal("no problem found")
			}
			if p.Path != tc.path || !strings.Contains(p.Message, tc.message) {
				t.Errorf("problem %+v; want path %q and a message about %q", p, tc.path, tc.message)
			}
			if !utf8.ValidString(p.Message) || len(p.Message) > 400 {
				t.Errorf("message not fit to show: %q", p.Message)
			}
		})
	}
}

func TestMakeStorableJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range storableCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, changed := saga.MakeStorableJSON([]byte(tc.in))
			if tc.ok {
				if changed || string(out) != tc.in {
					t.Errorf("changed a storable document to %s", out)
				}
				return
			}
			if !changed || string(out) != tc.fixed {
				t.Errorf("made storable: %.200s (changed %v); want %.200s", out, changed, tc.fixed)
			}
			if p := saga.CheckStorableJSON(out); p != nil {
				t.Errorf("still not storable: %+v", p)
			}
		})
	}
	// Not JSON at all: a JSON string of its text.
	out, changed := saga.MakeStorableJSON([]byte("\x89PNG\x00"))
	var s string
	if !changed || json.Unmarshal(out, &s) != nil || saga.CheckStorableJSON(out) != nil {
		t.Errorf("not JSON made storable: %q", out)
	}
}

func TestJSONProblemField(t *testing.T) {
	t.Parallel()
	p := &saga.JSONProblem{Path: ".s"}
	if got := p.Field("context"); got != "context.s" {
		t.Errorf("Field(context) = %q", got)
	}
	if got := p.Field(""); got != "s" {
		t.Errorf(`Field("") = %q`, got)
	}
}

func TestStorableText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"plain text":            "plain text",
		"bad\x00request":        `bad\x00request`,
		"bad\xffbyte":           "bad\uFFFDbyte",
		"line\r\nbreak\ttab":    "line  break tab",
		"del\x7f bell\x07 é ✓":  `del\x7f bell\x07 é ✓`,
		"\x89PNG\r\n\x1a\n\x00": "\uFFFDPNG  \\x1a \\x00",
	} {
		got := saga.StorableText(in)
		if got != want {
			t.Errorf("StorableText(%q) = %q; want %q", in, got, want)
		}
		if p := saga.StorableTextProblem(got); p != "" {
			t.Errorf("StorableText(%q) = %q: %s", in, got, p)
		}
	}
	if saga.StorableTextProblem("a\x00b") == "" || saga.StorableTextProblem("a\xffb") == "" || saga.StorableTextProblem("fine ✓") != "" {
		t.Error("StorableTextProblem misjudges")
	}
}
