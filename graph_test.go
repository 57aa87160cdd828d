package saga

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func graphDef(deps ...[]string) Definition {
	d := Definition{Name: "g"}
	for i, ds := range deps {
		d.Steps = append(d.Steps, StepDefinition{
			Name:      string(rune('a' + i)),
			Action:    Request{Method: "POST", URL: "http://p/x"},
			DependsOn: ds,
		})
	}
	return d
}

func TestGraphChainWithoutDependsOn(t *testing.T) {
	t.Parallel()
	d := graphDef(nil, nil, nil)
	g := d.Graph()
	if !g.Chain {
		t.Fatal("a definition without depends_on must be a chain")
	}
	want := [][]int{nil, {0}, {1}}
	for i := range want {
		if !slices.Equal(g.Deps[i], want[i]) {
			t.Errorf("Deps[%d] = %v, want %v", i, g.Deps[i], want[i])
		}
	}
	if got := g.Order(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("Order = %v", got)
	}
}

func TestGraphDAG(t *testing.T) {
	t.Parallel()
	// a, b independent; c after both.
	d := graphDef([]string{}, nil, []string{"a", "b"})
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	g := d.Graph()
	if g.Chain || len(g.Deps[0]) != 0 || len(g.Deps[1]) != 0 || !slices.Equal(g.Deps[2], []int{0, 1}) {
		t.Fatalf("graph = %+v", g)
	}
	if !slices.Equal(g.Dependents[0], []int{2}) || !slices.Equal(g.Ancestors(2), []int{0, 1}) {
		t.Fatalf("dependents/ancestors wrong: %+v", g)
	}
}

func TestGraphEmptyDependsOnSurvivesJSON(t *testing.T) {
	t.Parallel()
	d := graphDef([]string{}, []string{})
	raw, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Definition
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if !back.IsDAG() || back.Graph().Chain {
		t.Fatalf("two independent steps became a chain after a JSON round trip: %s", raw)
	}
	if c := back.Clone(); !c.IsDAG() {
		t.Fatal("Clone lost the empty depends_on")
	}
}

func TestGraphValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		def  Definition
		want string
	}{
		{"unknown", graphDef(nil, []string{"a"}, []string{"bb"}), `steps[2].depends_on[0]: unknown step "bb" (did you mean "b"?)`},
		{"self", graphDef([]string{"a"}), `steps[0].depends_on[0]: step "a" may not depend on itself`},
		{"duplicate", graphDef(nil, []string{"a", "a"}), `steps[1].depends_on[1]: "a" is already named at depends_on[0]`},
		{"cycle", graphDef([]string{"b"}, []string{"a"}), `steps: cycle `},
		{"long cycle", graphDef([]string{"c"}, []string{"a"}, []string{"b"}), `steps: cycle `},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.def.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	d := graphDef([]string{"c"}, []string{"a"}, []string{"b"})
	err := d.Validate().(*ValidationError)
	msg := err.Problems[0].Message
	// The cycle is named step by step and closes on its first step.
	parts := strings.Split(strings.TrimPrefix(msg, "cycle "), " → ")
	if len(parts) != 4 || parts[0] != parts[3] {
		t.Fatalf("cycle message %q does not name a closed cycle of 3 steps", msg)
	}
}

func TestMaxParallelBounds(t *testing.T) {
	t.Parallel()
	for _, v := range []int{-1, MaxParallelLimit + 1} {
		d := graphDef(nil)
		d.MaxParallel = v
		if err := d.Validate(); err == nil || !strings.Contains(err.Error(), "max_parallel") {
			t.Errorf("max_parallel %d: Validate() = %v", v, err)
		}
	}
	d := graphDef(nil)
	if d.EffectiveMaxParallel() != MaxParallelDefault {
		t.Fatal("default max_parallel")
	}
}
