package saga

import (
	"fmt"
	"slices"
	"strings"
)

// Limits of a saga's parallelism.
const (
	MaxParallelDefault = 8
	MaxParallelLimit   = 64
)

// Graph is the order of a definition's steps: for each step, the steps it
// depends on and the steps that depend on it, by index. Without depends_on
// anywhere in the definition, the steps form a chain (step i depends on
// step i-1), so every definition written before depends_on existed keeps
// its meaning.
type Graph struct {
	Deps       [][]int // Deps[i]: the steps step i waits for, ascending
	Dependents [][]int // Dependents[i]: the steps that wait for step i, ascending
	// Chain is true when the definition names no depends_on.
	Chain bool
}

// IsDAG reports whether any step of d names depends_on.
func (d *Definition) IsDAG() bool {
	for _, s := range d.Steps {
		if s.DependsOn != nil {
			return true
		}
	}
	return false
}

// EffectiveMaxParallel returns the number of calls of one saga that may be
// in flight at once: MaxParallel, or MaxParallelDefault. A chain makes one
// call at a time whatever it says.
func (d *Definition) EffectiveMaxParallel() int {
	if d.MaxParallel <= 0 {
		return MaxParallelDefault
	}
	return min(d.MaxParallel, MaxParallelLimit)
}

// Graph returns the step order of d. d must be valid (Validate returned
// nil): unknown names are ignored here.
func (d *Definition) Graph() Graph {
	n := len(d.Steps)
	g := Graph{Deps: make([][]int, n), Dependents: make([][]int, n), Chain: !d.IsDAG()}
	if g.Chain {
		for i := 1; i < n; i++ {
			g.Deps[i] = []int{i - 1}
			g.Dependents[i-1] = []int{i}
		}
		return g
	}
	index := make(map[string]int, n)
	for i, s := range d.Steps {
		index[s.Name] = i
	}
	for i, s := range d.Steps {
		for _, name := range s.DependsOn {
			j, ok := index[name]
			if !ok || j == i || slices.Contains(g.Deps[i], j) {
				continue
			}
			g.Deps[i] = append(g.Deps[i], j)
			g.Dependents[j] = append(g.Dependents[j], i)
		}
		slices.Sort(g.Deps[i])
	}
	for j := range g.Dependents {
		slices.Sort(g.Dependents[j])
	}
	return g
}

// Ancestors returns every step that step i depends on, directly or
// transitively, ascending.
func (g Graph) Ancestors(i int) []int {
	seen := make([]bool, len(g.Deps))
	stack := slices.Clone(g.Deps[i])
	for len(stack) > 0 {
		j := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[j] {
			continue
		}
		seen[j] = true
		stack = append(stack, g.Deps[j]...)
	}
	var out []int
	for j, ok := range seen {
		if ok {
			out = append(out, j)
		}
	}
	return out
}

// Order returns the step indexes in an order where every step comes after
// the steps it depends on (Kahn's algorithm, lowest index first among the
// ready ones), so a chain comes out as 0, 1, 2, …
func (g Graph) Order() []int {
	n := len(g.Deps)
	waiting := make([]int, n)
	for i := range g.Deps {
		waiting[i] = len(g.Deps[i])
	}
	out := make([]int, 0, n)
	for len(out) < n {
		next := -1
		for i := range n {
			if waiting[i] == 0 {
				next = i
				break
			}
		}
		if next < 0 {
			return out // a cycle; Validate refuses such definitions
		}
		waiting[next] = -1
		out = append(out, next)
		for _, k := range g.Dependents[next] {
			waiting[k]--
		}
	}
	return out
}

// validateGraph checks depends_on and max_parallel.
func (d *Definition) validateGraph(ve *ValidationError) {
	if d.MaxParallel < 0 || d.MaxParallel > MaxParallelLimit {
		ve.add("max_parallel", "must be between 1 and %d", MaxParallelLimit)
	}
	if !d.IsDAG() {
		return
	}
	index := make(map[string]int, len(d.Steps))
	for i, s := range d.Steps {
		if _, dup := index[s.Name]; !dup {
			index[s.Name] = i
		}
	}
	ok := true
	for i, s := range d.Steps {
		seen := make(map[string]int, len(s.DependsOn))
		for k, name := range s.DependsOn {
			field := fmt.Sprintf("steps[%d].depends_on[%d]", i, k)
			j, known := index[name]
			switch {
			case !known:
				ve.add(field, "unknown step %q%s", name, didYouMean(name, d.Steps))
				ok = false
			case j == i:
				ve.add(field, "step %q may not depend on itself", name)
				ok = false
			default:
				if first, dup := seen[name]; dup {
					ve.add(field, "%q is already named at depends_on[%d]", name, first)
					ok = false
				}
				seen[name] = k
			}
		}
	}
	if !ok {
		return
	}
	if cycle := d.Graph().cycle(); cycle != nil {
		names := make([]string, len(cycle))
		for k, i := range cycle {
			names[k] = d.Steps[i].Name
		}
		ve.add("steps", "cycle %s", strings.Join(names, " → "))
	}
}

// cycle returns one cycle of g as step indexes with the first repeated at
// the end (a → b → a), or nil when g has none.
func (g Graph) cycle() []int {
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]int, len(g.Deps))
	var path []int
	var visit func(i int) []int
	visit = func(i int) []int {
		state[i] = onPath
		path = append(path, i)
		for _, j := range g.Deps[i] {
			switch state[j] {
			case onPath:
				start := slices.Index(path, j)
				// Deps point backwards along the order; report the cycle in
				// the order the steps would run.
				c := slices.Clone(path[start:])
				slices.Reverse(c)
				// Start at the first step of the definition among them.
				k := slices.Index(c, slices.Min(c))
				c = append(c[k:], c[:k]...)
				return append(c, c[0])
			case unseen:
				if c := visit(j); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[i] = done
		return nil
	}
	for i := range g.Deps {
		if state[i] == unseen {
			if c := visit(i); c != nil {
				return c
			}
		}
	}
	return nil
}

// didYouMean suggests the step name closest to name, or "".
func didYouMean(name string, steps []StepDefinition) string {
	names := make([]string, len(steps))
	for i, s := range steps {
		names[i] = s.Name
	}
	return DidYouMean(name, names)
}

// DidYouMean returns ` (did you mean "x"?)` for the candidate closest to
// name by edit distance (case aside), when one is close enough to be a
// likely typo (at most half of name's length away), else "".
func DidYouMean(name string, candidates []string) string {
	best, bestDist := "", len(name)/2+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
