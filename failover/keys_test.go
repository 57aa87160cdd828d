package failover

import "testing"

func TestKeySetForgetsTheOldest(t *testing.T) {
	t.Parallel()
	k := newKeySet(3)
	for _, key := range []string{"a", "b", "c", "b", "", "d"} {
		k.add(key)
	}
	for key, want := range map[string]bool{"a": false, "b": true, "c": true, "d": true, "": false} {
		if got := k.has(key); got != want {
			t.Errorf("has(%q) = %v, want %v", key, got, want)
		}
	}
	k.add("e") // b goes: it was added before c and d
	if k.has("b") || !k.has("c") || !k.has("e") {
		t.Errorf("after a fifth key: b %v, c %v, e %v; want false, true, true", k.has("b"), k.has("c"), k.has("e"))
	}
	empty := newKeySet(0)
	empty.add("x")
	if empty.has("x") {
		t.Error("a set of capacity 0 remembered a key")
	}
}
