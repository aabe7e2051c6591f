package durable_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/durable"
	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/fedtest"
	"github.com/statebus/statebus/internal/server"
)

// startShared runs a federation of n daemons with durable mailboxes on
// (ids matching patterns durable by configuration), their JetStream
// flushing every write.
func startShared(t testing.TB, n int, patterns ...string) []*fedtest.Daemon {
	t.Helper()
	return fedtest.Start(t, n, func(fc *federation.Config) { fc.SyncAlways = true }, func(c *server.Config) {
		c.Durable.Store = durable.DefaultConfig(bustest.TempDir(t))
		c.Durable.Patterns = patterns
	})
}

// TestSharedAcrossDaemons: a durable id's mailbox is reachable from every
// daemon of a federation. Two senders on two daemons store events for
// ctl while it is away (every event acknowledged "Stored", sequences
// without gap or duplicate across both); ctl connects on a third daemon
// and gets them all, each sender's in its order and all in sequence
// order, then live ones; replay works from any daemon.
func TestSharedAcrossDaemons(t *testing.T) {
	ds := startShared(t, 3, "ctl")
	const n = 300
	var mu sync.Mutex
	seqOf := map[uint64]string{} // sequence -> "sender/i"
	var wg sync.WaitGroup
	for k, d := range ds[:2] {
		src := fedtest.Dial(t, d, "src"+strconv.Itoa(k+1))
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for i := range n {
				ack, err := src.SendEventAck(ctx, "ctl", "E", strconv.Itoa(k+1)+"/"+strconv.Itoa(i))
				if err != nil || !ack.Stored || ack.Sequence == 0 {
					t.Errorf("src%d event %d: %+v %v", k+1, i, ack, err)
					return
				}
				mu.Lock()
				if o, dup := seqOf[ack.Sequence]; dup {
					t.Errorf("sequence %d given to %s and %d/%d", ack.Sequence, o, k+1, i)
				}
				seqOf[ack.Sequence] = strconv.Itoa(k+1) + "/" + strconv.Itoa(i)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for s := uint64(1); s <= 2*n; s++ {
		if seqOf[s] == "" {
			t.Fatalf("no event was stored as sequence %d", s)
		}
	}
	t.Logf("writes written again after another daemon's came first: n1 %d, n2 %d",
		ds[0].Srv.Durable().Counters().Conflicts.Load(), ds[1].Srv.Durable().Counters().Conflicts.Load())

	var got []string
	var seqs []uint64
	var gmu sync.Mutex
	ctl := fedtest.Dial(t, ds[2], "ctl", statebus.WithDurable())
	ctl.OnEvent("E", func(e statebus.Event) {
		var p string
		if err := e.Decode(&p); err != nil {
			t.Error(err)
		}
		gmu.Lock()
		got = append(got, p)
		seqs = append(seqs, e.Sequence)
		gmu.Unlock()
	})
	count := func() int { gmu.Lock(); defer gmu.Unlock(); return len(got) }
	bustest.Eventually(t, 20*time.Second, func() bool { return count() >= 2*n }, "ctl got %d of %d stored events", count(), 2*n)

	// Live, from the first daemon, while ctl is connected on the third.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src := fedtest.Dial(t, ds[0], "live")
	for i := range 50 {
		ack, err := src.SendEventAck(ctx, "ctl", "E", "live/"+strconv.Itoa(i))
		if err != nil || !ack.Stored || ack.Sequence != uint64(2*n+i+1) {
			t.Fatalf("live event %d: %+v %v", i, ack, err)
		}
	}
	bustest.Eventually(t, 20*time.Second, func() bool { return count() >= 2*n+50 }, "ctl got %d of %d events", count(), 2*n+50)
	gmu.Lock()
	next := map[string]int{}
	for i, p := range got {
		if seqs[i] != uint64(i+1) {
			t.Fatalf("event %d (%s) has sequence %d", i, p, seqs[i])
		}
		if i < 2*n && seqOf[seqs[i]] != p {
			t.Fatalf("sequence %d is %s, its sender was told %s", seqs[i], p, seqOf[seqs[i]])
		}
		who, num, _ := cut(p)
		if num != next[who] {
			t.Fatalf("from %s: event %d after %d", who, num, next[who]-1)
		}
		next[who]++
	}
	if len(got) != 2*n+50 {
		t.Fatalf("ctl handled %d events, want %d", len(got), 2*n+50)
	}
	gmu.Unlock()

	// Every daemon sees the acknowledged position; any may replay.
	for _, d := range ds {
		mb := d.Srv.Durable().Lookup([]byte("ctl"))
		bustest.Eventually(t, 10*time.Second, func() bool { return mb != nil && d.Srv.Durable().Info(mb).Acknowledged == 2*n+50 },
			"%s never saw all acknowledged", d.Node.Name())
	}
	evs, _, err := src.Replay(ctx, "ctl", statebus.ReplayOptions{FromSequence: 2*n + 1, Limit: 10})
	if err != nil || len(evs) != 10 || evs[0].Sequence != 2*n+1 {
		t.Fatalf("replay on n1: %d events %v", len(evs), err)
	}
}

func cut(p string) (string, int, bool) {
	for i := range len(p) {
		if p[i] == '/' {
			n, err := strconv.Atoi(p[i+1:])
			return p[:i], n, err == nil
		}
	}
	return p, 0, false
}
