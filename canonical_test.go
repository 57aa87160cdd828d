package saga

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{``, ``},
		{` null `, ``},
		{`{}`, `{}`},
		{` { "b" : 1 , "a" : [ 1 , 2 ] } `, `{"a":[1,2],"b":1}`},
		{`{"a":1,"a":2}`, `{"a":2}`},
		{`{"b":{"d":1,"c":2},"a":null}`, `{"a":null,"b":{"c":2,"d":1}}`},
		{`{"ab":1,"a":2,"b":3}`, `{"a":2,"ab":1,"b":3}`},
		{`["\u0041\/\"\\\b\f\n\r\t\u0001"]`, `["A/\"\\\b\f\n\r\t\u0001"]`},
		{`"\ud83d\ude00 é"`, `"😀 é"`},
		{`"\ud800x"`, `"` + "\uFFFD" + `x"`},
		{`"\ud800\u0041"`, `"` + "\uFFFD" + `A"`},
		{"\"\xff\"", "\"\uFFFD\""},
		{`[0, -0, 0.0, -0.0e5, 1, -1, 10, 100]`, `[0,0,0,0,1,-1,10,100]`},
		{`[1.0, 1.50, 1e2, 1E+2, 150e-2, 0.5, 0.000001, 0.0000001, 1.5e-7]`, `[1,1.5,100,100,1.5,0.5,0.000001,1e-7,1.5e-7]`},
		{`[1e20, 1e21, 123456789012345678901, 1234567890123456789012, 12.34e30]`, `[100000000000000000000,1e+21,123456789012345678901,1.234567890123456789012e+21,1.234e+31]`},
		{`[true,false,null]`, `[true,false,null]`},
	}
	for _, tc := range tests {
		got, err := CanonicalJSON([]byte(tc.in))
		if err != nil || string(got) != tc.want {
			t.Errorf("CanonicalJSON(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`{`, `[1,]`, `{"a"}`, `{"a":1,}`, `01`, `1.`, `1e`, `-`, `"a`, "\"a\nb\"", `tru`, `{} {}`, `[1e99999999]`, `"\x"`, `"\u12"`} {
		if got, err := CanonicalJSON([]byte(bad)); err == nil {
			t.Errorf("CanonicalJSON(%q) = %q, want an error", bad, got)
		}
	}
}

func TestCanonicalJSONExtraMembers(t *testing.T) {
	t.Parallel()
	extra := []member{{key: "output", value: []byte(` {"z": 1, "y": [ 2 ]} `)}, {key: "error", value: []byte(`"boom"`)}, {key: "kind", value: []byte(`"x"`)}}
	got, err := canonicalize([]byte(`{"kind": "action", "attempt": 2}`), extra)
	if want := `{"attempt":2,"error":"boom","kind":"action","output":{"y":[2],"z":1}}`; err != nil || string(got) != want {
		t.Errorf("canonicalize with extra members = %s, %v; want %s (the event's own kind kept)", got, err, want)
	}
	if got, err := canonicalize(nil, extra[1:2]); err != nil || string(got) != `{"error":"boom"}` {
		t.Errorf("canonicalize(nil) with a member = %s, %v", got, err)
	}
	if _, err := canonicalize([]byte(`[1]`), extra); err == nil {
		t.Error("canonicalize of an array with members: no error")
	}
}

// TestCanonicalJSONProperty checks on random values that every spelling of
// a value has the same canonical form, that the canonical form is a fixed
// point and that it decodes to the same value.
func TestCanonicalJSONProperty(t *testing.T) {
	t.Parallel()
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		v := randomJSON(rnd, 0)
		a, _ := json.Marshal(v)
		b, _ := json.MarshalIndent(v, " ", "\t")
		ca, errA := CanonicalJSON(a)
		cb, errB := CanonicalJSON(b)
		if errA != nil || errB != nil || string(ca) != string(cb) {
			t.Fatalf("spellings of one value differ:\n%s\n%s\n(%v, %v)", ca, cb, errA, errB)
		}
		again, err := CanonicalJSON(ca)
		if err != nil || string(again) != string(ca) {
			t.Fatalf("canonical form is not a fixed point: %s → %s (%v)", ca, again, err)
		}
		if v == nil {
			if ca != nil {
				t.Fatalf("null has the canonical form %q, want none", ca)
			}
			continue
		}
		var back any
		if err := json.Unmarshal(ca, &back); err != nil || !sameValue(back, v) {
			t.Fatalf("canonical form %s decodes to %v (%v), want %v", ca, back, err, v)
		}
	}
}

func randomJSON(rnd *rand.Rand, depth int) any {
	k := rnd.IntN(7)
	if depth > 3 {
		k = rnd.IntN(4)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return rnd.IntN(2) == 0
	case 2:
		return float64(rnd.IntN(2000000)-1000000) / []float64{1, 10, 1000}[rnd.IntN(3)]
	case 3:
		runes := []rune("aZ 9\"\\\n\t\u0001é😀/<>&\u2028")
		var b strings.Builder
		for range rnd.IntN(8) {
			b.WriteRune(runes[rnd.IntN(len(runes))])
		}
		return b.String()
	case 4, 5:
		m := map[string]any{}
		for i := range rnd.IntN(5) {
			m[fmt.Sprintf("%c%d", 'a'+rune(rnd.IntN(26)), i)] = randomJSON(rnd, depth+1)
		}
		return m
	}
	a := make([]any, rnd.IntN(4))
	for i := range a {
		a[i] = randomJSON(rnd, depth+1)
	}
	return a
}

func sameValue(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// BenchmarkCanonicalJSON measures the canonical form of a participant's
// answer of about 4 KB and of a small event's data.
func BenchmarkCanonicalJSON(b *testing.B) {
	big, _ := json.Marshal(map[string]any{"items": strings.Split(strings.Repeat("abcdefghij,", 340), ","), "id": 12345, "ok": true})
	small := []byte(`{"attempt":1,"duration_ms":3,"kind":"action","status_code":200}`)
	for _, c := range []struct {
		name string
		in   []byte
	}{{"4KB", big}, {"small", small}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := CanonicalJSON(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
