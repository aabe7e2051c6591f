package federation_test

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/federation"
)

// TestFederationUnknownIDsBounded: a client sending to ids nobody holds
// does not turn each send into a read of the ownership bucket: the same
// unknown id is read at most once a MissTTL, distinct ones at most
// LookupRate a second (after a burst of as many). Every send still gets
// the exact local error, and an id claimed on another daemon afterwards
// is reachable at once. The counters are on /status and /metrics
// (Stats).
func TestFederationUnknownIDsBounded(t *testing.T) {
	ds := startFederation(t, 2, nil)
	hostile := dial(t, ds[0], "hostile")
	m := &ds[0].node.Metrics
	// sendMiss sends to target, which nobody holds, and says whether it
	// got the exact local error (the test's error if not).
	sendMiss := func(target string) bool {
		t.Helper()
		ctx, cancel := ctx10()
		defer cancel()
		if err := hostile.SendEvent(ctx, target, "x", nil); !errors.Is(err, statebus.ErrTargetNotConnected) {
			t.Errorf("to %s: %v, want target not connected", target, err)
			return false
		}
		return true
	}
	notConnected := func(target string) {
		t.Helper()
		if !sendMiss(target) {
			t.FailNow()
		}
	}

	// One id, many times: one read.
	before := m.Lookups.Load()
	start := time.Now()
	for range 500 {
		notConnected("ghost")
	}
	if reads := m.Lookups.Load() - before; time.Since(start) < federation.MissTTL && reads != 1 {
		t.Fatalf("500 sends to one unknown id within %v read the bucket %d times, want 1", time.Since(start), reads)
	} else if max := uint64(time.Since(start)/federation.MissTTL) + 1; reads > max {
		t.Fatalf("500 sends to one unknown id in %v read the bucket %d times, want at most %d", time.Since(start), reads, max)
	}

	// Distinct ids: at most the burst plus the rate. The sends are
	// pipelined (several in flight on the one connection), so that they
	// outrun the rate even where a round trip is slow (Wine's pipes).
	before = m.Lookups.Load()
	skipped := m.LookupsSkipped.Load()
	start = time.Now()
	const n, senders = 3000, 8
	var wg sync.WaitGroup
	for w := range senders {
		wg.Go(func() {
			for i := w; i < n; i += senders {
				if !sendMiss("ghost-" + strconv.Itoa(i)) {
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	elapsed := time.Since(start)
	reads := m.Lookups.Load() - before
	max := uint64(federation.LookupRate + elapsed.Seconds()*federation.LookupRate + 1)
	if reads > max {
		t.Fatalf("%d sends to distinct unknown ids in %v read the bucket %d times, want at most %d", n, elapsed, reads, max)
	}
	if n <= max {
		t.Fatalf("%d sends to distinct unknown ids took %v: too slow to outrun %d reads a second, so the bound was not tested", n, elapsed, federation.LookupRate)
	}
	if m.LookupsSkipped.Load()-skipped == 0 {
		t.Fatal("no read was skipped")
	}
	st := ds[0].srv.Stats()
	if st.FederationLookups != m.Lookups.Load() || st.FederationLookupsSkipped != m.LookupsSkipped.Load() {
		t.Fatalf("Stats: lookups %d skipped %d, node: %d %d", st.FederationLookups, st.FederationLookupsSkipped, m.Lookups.Load(), m.LookupsSkipped.Load())
	}
	t.Logf("%d sends to distinct unknown ids in %v: %d bucket reads, %d skipped", n, elapsed, reads, m.LookupsSkipped.Load()-skipped)

	// An id missed a moment ago and then claimed elsewhere is reachable
	// as soon as the directory sees it.
	notConnected("late")
	dial(t, ds[1], "late")
	seen(t, ds[0], "late")
	ctx, cancel := ctx10()
	defer cancel()
	if err := hostile.SendEvent(ctx, "late", "x", nil); err != nil {
		t.Fatalf("to late: %v", err)
	}
	st = ds[0].srv.Stats()
	if st.FederationSent == 0 || st.FederationReceived == 0 || st.FederationAcked == 0 || st.FederationSentBytes == 0 {
		t.Fatalf("cross-daemon counters: %+v", st)
	}
}
