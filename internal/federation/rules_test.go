package federation_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/internal/server"
)

// TestFederationRoutingRules: the sending daemon's routing rules copy and
// redirect to machines and groups held on other daemons.
func TestFederationRoutingRules(t *testing.T) {
	ds := startFederation(t, 2, func(c *server.Config) {
		c.Routes = []router.RouteRule{
			{Match: router.RuleMatch{EventName: "ORDER_*"}, Action: "copy", To: "audit"},
			{Match: router.RuleMatch{EventName: "ORDER_*"}, Action: "copy", To: "@auditors"},
			{Match: router.RuleMatch{EventName: "LOST_*"}, Action: "copy", To: "nobody"},
			{Match: router.RuleMatch{TargetMachineId: "billing"}, Action: "redirect", To: "billing-v2"},
		}
	})
	shop := dial(t, ds[0], "shop")
	var v2, audit, auditors atomic.Int64
	count := func(id string, n *atomic.Int64) {
		c := dial(t, ds[1], id)
		c.OnEvent("*", func(e statebus.Event) {
			if e.Target == "billing" { // the event's bytes as sent
				n.Add(1)
			}
		})
		if id == "aud-1" {
			ctx, cancel := ctx10()
			defer cancel()
			if err := c.JoinGroup(ctx, "auditors"); err != nil {
				t.Fatal(err)
			}
		}
	}
	count("billing-v2", &v2)
	count("audit", &audit)
	count("aud-1", &auditors)
	seen(t, ds[0], "billing-v2")
	seen(t, ds[0], "audit")
	bustest.Eventually(t, 10*time.Second, func() bool { m, _ := ds[0].node.GroupMembers("auditors", nil); return len(m) == 1 },
		"n1 never saw @auditors")

	ctx, cancel := ctx10()
	defer cancel()
	const n = 20
	for range n {
		ack, err := shop.SendEventAck(ctx, "billing", "ORDER_PLACED", map[string]int{"Id": 7})
		if err != nil {
			t.Fatal(err)
		}
		if ack.Target != "billing-v2" {
			t.Fatalf("ack names %q, want the redirect's billing-v2", ack.Target)
		}
	}
	for name, c := range map[string]*atomic.Int64{"billing-v2": &v2, "audit": &audit, "@auditors": &auditors} {
		bustest.Eventually(t, 10*time.Second, func() bool { return c.Load() == n }, "%s got %d of %d", name, c.Load(), n)
	}
	failed := ds[0].srv.Stats().RuleCopiesFailed
	if err := shop.SendEvent(ctx, "billing", "LOST_ONE", nil); err != nil {
		t.Fatal(err)
	}
	if got := ds[0].srv.Stats().RuleCopiesFailed; got != failed+1 {
		t.Fatalf("a copy to an id no daemon holds: RuleCopiesFailed %d, want %d", got, failed+1)
	}
}
