package failover

import "sync"

// keySet remembers the last idempotency keys added to it, at most n of
// them: the keys of sagas that the database holds, or may hold, recently
// submitted to this instance. While the database is away a submit repeating
// one of them cannot be answered with its saga, and must not create a
// second one in memory either.
type keySet struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring []string // the keys in the order added; ring[next] goes first
	next int
}

func newKeySet(n int) *keySet {
	return &keySet{set: make(map[string]struct{}, n), ring: make([]string, 0, n)}
}

// add remembers key (nothing for ""), forgetting the oldest key when full.
func (k *keySet) add(key string) {
	if key == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.set[key]; ok || cap(k.ring) == 0 {
		return
	}
	if len(k.ring) < cap(k.ring) {
		k.ring = append(k.ring, key)
	} else {
		delete(k.set, k.ring[k.next])
		k.ring[k.next] = key
		k.next = (k.next + 1) % len(k.ring)
	}
	k.set[key] = struct{}{}
}

// has reports whether key is remembered.
func (k *keySet) has(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.set[key]
	return ok
}
