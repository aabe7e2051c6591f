package federation_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
)

// TestFederationAcrossDaemons: broadcast, groups, request/reply and
// watches work across three daemons as they do on one.
func TestFederationAcrossDaemons(t *testing.T) {
	ds := startFederation(t, 3, nil)
	sender := dial(t, ds[0], "sender")
	var clients []*statebus.Client
	var got [3]atomic.Int64
	for i, d := range ds {
		c := dial(t, d, "w"+string(rune('1'+i)))
		c.OnEvent("*", func(statebus.Event) { got[i].Add(1) })
		clients = append(clients, c)
	}
	for i, d := range ds[1:] {
		seen(t, ds[0], clients[i+1].ID())
		seen(t, d, "sender")
	}

	t.Run("machines", func(t *testing.T) {
		where := map[string]string{}
		for _, m := range ds[0].srv.MachineInfos() {
			where[m.MachineID] = m.Daemon + "@" + m.Host
		}
		for id, want := range map[string]string{"sender": "n1@host1", "w1": "n1@host1", "w2": "n2@host2", "w3": "n3@host3"} {
			if where[id] != want {
				t.Errorf("n1's registry puts %s on %q, want %q (all: %v)", id, where[id], want, where)
			}
		}
	})

	// PostEvent asks for no acknowledgement; the receiving daemon still
	// tells the sending one each was written, so nothing waits for the
	// ack timeout (which would end in a false "Failed to deliver").
	t.Run("post", func(t *testing.T) {
		const n = 500
		var posted atomic.Int64
		postee := dial(t, ds[1], "postee")
		postee.OnEvent("posted", func(statebus.Event) { posted.Add(1) })
		acked := ds[0].node.Metrics.Acked.Load()
		ctx, cancel := ctx10()
		defer cancel()
		for i := range n {
			if err := sender.PostEvent(ctx, "postee", "posted", i); err != nil {
				t.Fatal(err)
			}
		}
		bustest.Eventually(t, 4*time.Second, func() bool { return posted.Load() == n }, "postee got %d of %d posts", posted.Load(), n)
		bustest.Eventually(t, 4*time.Second, func() bool { return ds[0].node.InFlight() == 0 },
			"%d posts still wait for an answer", ds[0].node.InFlight())
		if got := ds[0].node.Metrics.Acked.Load() - acked; got < n {
			t.Fatalf("%d of %d posts answered", got, n)
		}
		if to := ds[0].node.Metrics.TimedOut.Load(); to != 0 {
			t.Fatalf("%d answers timed out", to)
		}
	})

	t.Run("broadcast", func(t *testing.T) {
		ctx, cancel := ctx10()
		defer cancel()
		ack, err := sender.SendEventAck(ctx, "*", "all", 1)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Recipients == nil || *ack.Recipients != 3 {
			t.Fatalf("broadcast reached %v machines, want 3 (one per daemon)", ack.Recipients)
		}
		for i := range got {
			bustest.Eventually(t, 5*time.Second, func() bool { return got[i].Load() == 1 }, "w%d got %d broadcasts", i+1, got[i].Load())
		}
	})

	t.Run("group", func(t *testing.T) {
		ctx, cancel := ctx10()
		defer cancel()
		for _, c := range clients {
			if err := c.JoinGroup(ctx, "workers"); err != nil {
				t.Fatal(err)
			}
		}
		bustest.Eventually(t, 10*time.Second, func() bool {
			m, _ := ds[0].node.GroupMembers("workers", nil)
			return len(m) == 2
		}, "n1 never saw the remote members of @workers")
		before := [3]int64{got[0].Load(), got[1].Load(), got[2].Load()}
		members := map[string]int{}
		for range 30 {
			ack, err := sender.SendEventAck(ctx, "@workers", "job", nil)
			if err != nil {
				t.Fatal(err)
			}
			members[ack.Target]++
		}
		if len(members) != 3 {
			t.Fatalf("@workers balanced over %v, want all three daemons' members", members)
		}
		for i := range got {
			bustest.Eventually(t, 5*time.Second, func() bool { return got[i].Load()-before[i] == int64(members[clients[i].ID()]) },
				"w%d got %d jobs, acknowledged %d", i+1, got[i].Load()-before[i], members[clients[i].ID()])
		}
		ack, err := sender.SendEventAck(ctx, "@workers:*", "all", nil)
		if err != nil || ack.Recipients == nil || *ack.Recipients != 3 {
			t.Fatalf("@workers:* = %+v, %v; want 3 recipients", ack, err)
		}
	})

	t.Run("request", func(t *testing.T) {
		clients[2].HandleRequest("double", func(_ context.Context, e statebus.Event) (any, error) {
			var v int
			e.Decode(&v)
			if v < 0 {
				return nil, errors.New("negative")
			}
			return 2 * v, nil
		})
		ctx, cancel := ctx10()
		defer cancel()
		r, err := sender.Request(ctx, "w3", "double", 21)
		if err != nil {
			t.Fatal(err)
		}
		var v int
		if r.Decode(&v); v != 42 {
			t.Fatalf("reply %s", r.Payload)
		}
		if _, err := sender.Request(ctx, "w3", "double", -1); !errors.Is(err, statebus.ErrResponder) {
			t.Fatalf("responder error: %v", err)
		}
		if _, err := sender.Request(ctx, "nobody", "double", 1); !errors.Is(err, statebus.ErrNoResponder) {
			t.Fatalf("to nobody: %v", err)
		}
	})

	t.Run("watch", func(t *testing.T) {
		var mu sync.Mutex
		var copies []string
		stop, err := clients[0].Watch(context.Background(), statebus.Filter{EventName: "watched"}, func(e statebus.Event) {
			mu.Lock()
			copies = append(copies, e.Source+">"+e.Target)
			mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
		other := dial(t, ds[1], "other")
		seen(t, ds[1], "w3")
		ctx, cancel := ctx10()
		defer cancel()
		bustest.Eventually(t, 10*time.Second, func() bool {
			if err := other.SendEvent(ctx, "w3", "watched", nil); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			return len(copies) > 0
		}, "a watch on n1 never saw an event routed on n2")
		mu.Lock()
		defer mu.Unlock()
		if copies[0] != "other>w3" {
			t.Fatalf("copy %q", copies[0])
		}
	})
}
