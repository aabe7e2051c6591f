package federation_test

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// TestFederationGroupBalance: "@group" takes turns over the members of
// every daemon in one order, so each member gets the same share whichever
// daemon holds it; a member on another daemon whose queue is full is
// passed over there, as a full local member is.
func TestFederationGroupBalance(t *testing.T) {
	ds := startFederation(t, 3, func(c *server.Config) { c.MaxQueueEvents = 8 })
	sender := dial(t, ds[0], "sender")
	where := map[string]int{}
	var got [6]atomic.Int64
	for i, m := range []struct {
		id     string
		daemon int
	}{{"g-a", 0}, {"g-b", 1}, {"g-c", 2}, {"g-d", 0}, {"g-e", 2}, {"g-f", 2}} {
		c := dial(t, ds[m.daemon], m.id)
		c.OnEvent("job", func(statebus.Event) { got[i].Add(1) })
		ctx, cancel := ctx10()
		if err := c.JoinGroup(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		cancel()
		where[m.id] = m.daemon
	}
	bustest.Eventually(t, 10*time.Second, func() bool { m, _ := ds[0].node.GroupMembers("g", nil); return len(m) == 4 },
		"n1 never saw the 4 remote members of @g")

	const rounds = 10
	acked := map[string]int{}
	perDaemon := [3]int{}
	for range 6 * rounds {
		ctx, cancel := ctx10()
		ack, err := sender.SendEventAck(ctx, "@g", "job", nil)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		acked[ack.Target]++
		perDaemon[where[ack.Target]]++
	}
	t.Logf("@g from n1: per member %v, per daemon %v", acked, perDaemon)
	for id := range where {
		if acked[id] != rounds {
			t.Errorf("%s got %d of %d events, want %d each: %v", id, acked[id], 6*rounds, rounds, acked)
		}
	}
	if perDaemon != [3]int{2 * rounds, rounds, 3 * rounds} {
		t.Errorf("per daemon %v, want their members' shares %v", perDaemon, [3]int{2 * rounds, rounds, 3 * rounds})
	}
	for i := range got {
		bustest.Eventually(t, 5*time.Second, func() bool { return got[i].Load() == rounds }, "member %d received %d", i, got[i].Load())
	}

	// A member on n2 that never reads: once its queue is full, n2 gives
	// its turns to the other member there; no sender waits or fails.
	stuck := stuckMember(t, ds[1].sock, "s-stuck", "s")
	fine := dial(t, ds[1], "s-fine")
	ctx, cancel := ctx10()
	defer cancel()
	if err := fine.JoinGroup(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	local := dial(t, ds[0], "s-local")
	if err := local.JoinGroup(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	var full atomic.Bool
	filler := dial(t, ds[1], "filler", statebus.WithErrorHandler(func(err error) {
		if errors.Is(err, statebus.ErrSlowConsumer) {
			full.Store(true)
		}
	}))
	big := strings.Repeat("x", 32<<10)
	for i := 0; !full.Load(); i++ {
		if i > 10000 {
			t.Fatal("s-stuck never filled up")
		}
		if err := filler.PostEvent(ctx, "s-stuck", "fill", big); err != nil {
			t.Fatal(err)
		}
		if i > 64 {
			bustest.Eventually(t, 10*time.Second, func() bool { return full.Load() }, "s-stuck never refused")
		}
	}
	bustest.Eventually(t, 10*time.Second, func() bool { m, _ := ds[0].node.GroupMembers("s", nil); return len(m) == 2 },
		"n1 never saw the 2 remote members of @s")
	spread := map[string]int{}
	for range 30 {
		start := time.Now()
		ack, err := sender.SendEventAck(ctx, "@s", "job", nil)
		if err != nil {
			t.Fatalf("to @s with a full member on n2: %v", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("an event to @s took %v: it waited for the full member", d)
		}
		spread[ack.Target]++
	}
	t.Logf("@s with s-stuck full: %v", spread)
	if spread["s-stuck"] != 0 || spread["s-fine"] != 20 || spread["s-local"] != 10 {
		t.Errorf("@s spread %v, want s-local 10, s-fine 20 (its own turns and s-stuck's), s-stuck 0", spread)
	}
	stuck.Close()
}

// stuckMember connects a raw client to sock that registers id, joins
// group and then never reads.
func stuckMember(t *testing.T, sock, id, group string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for _, line := range []string{
		`{"Type":0,"Payload":{"MachineId":"` + id + `"}}`,
		`{"Type":3,"Payload":"` + id + `"}`,
		`{"Type":"JoinGroup","Payload":{"Group":"` + group + `","MachineId":"` + id + `"}}`,
	} {
		if _, err := c.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		reply, err := r.ReadString('\n')
		if err != nil || !strings.Contains(reply, `"Success":true`) {
			t.Fatalf("%s: %q, %v", line, reply, err)
		}
	}
	c.SetDeadline(time.Time{})
	return c
}
