package engine

import (
	"testing"
	"time"
)

// Found by the simulator: a renewal for a long call's lease rounds the
// time left to whole seconds, and one sent later could lease the saga for
// less than an earlier renewal had. The store sets the lease, so it
// shrank, while the runner kept believing the longer one. A renewal now
// leases for no less than the lease the runner knows.
func TestRenewalNeverShortensTheKnownLease(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	r := &runner{c: &Coordinator{cfg: Config{LeaseDuration: lease}}}
	for _, tc := range []struct {
		name                 string
		hold, known, now     time.Duration
		wantAtLeast, wantMax time.Duration
	}{
		{"no long call: the lease duration", 0, 1200 * time.Millisecond, time.Second, lease, lease},
		{"a long call in flight: up to its end", 10 * time.Second, 10 * time.Second, 5 * time.Second, 5 * time.Second, 6 * time.Second},
		{"an earlier renewal leased longer than the call", 10 * time.Second, 10900 * time.Millisecond, 8500 * time.Millisecond, 2400 * time.Millisecond, 3 * time.Second},
	} {
		r.holdUntil.Store(int64(tc.hold))
		r.leaseEnd.Store(int64(tc.known))
		d := r.renewFor(tc.now)
		if d < tc.wantAtLeast || d > tc.wantMax {
			t.Errorf("%s: renew for %v, want between %v and %v", tc.name, d, tc.wantAtLeast, tc.wantMax)
		}
	}
}
