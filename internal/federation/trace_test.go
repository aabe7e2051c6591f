package federation_test

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// TestFederationTraced: a traced event from a client on n1 to a machine
// on n2 gets, on n1, a statebus.route span and a statebus.deliver span
// (delivery remote, daemon n2) that ends with n2's answer: ok once n2
// wrote it to the target's socket, disconnected when the target left
// with the event still queued there.
func TestFederationTraced(t *testing.T) {
	tp, exp := bustest.Traced(t)
	ds := startFederation(t, 2, func(c *server.Config) {
		c.Tracer = tp.Tracer("statebusd")
		c.WriteTimeout = time.Hour
	})
	sender := dial(t, ds[0], "sender", statebus.WithTracerProvider(tp))
	dial(t, ds[1], "recv")
	seen(t, ds[0], "recv")

	// spans returns the route and deliver spans of the event named name,
	// once both have ended.
	spans := func(name string) (route, deliver tracetest.SpanStub) {
		t.Helper()
		bustest.Eventually(t, 10*time.Second, func() bool {
			route, deliver = tracetest.SpanStub{}, tracetest.SpanStub{}
			for _, s := range exp.GetSpans() {
				if s.Name == "statebus.route" && bustest.SpanAttr(s, "event.name") == name {
					route = s
				}
			}
			for _, s := range exp.GetSpans() {
				if s.Name == "statebus.deliver" && s.Parent.SpanID() == route.SpanContext.SpanID() {
					deliver = s
				}
			}
			return route.SpanContext.IsValid() && deliver.SpanContext.IsValid()
		}, "no route and deliver spans for %s: %v", name, exp.GetSpans())
		return route, deliver
	}
	check := func(d tracetest.SpanStub, target, outcome string) {
		t.Helper()
		for k, want := range map[string]string{"messaging.destination.name": target, "statebus.delivery": "remote",
			"statebus.daemon": "n2", "statebus.outcome": outcome} {
			if got := bustest.SpanAttr(d, k); got != want {
				t.Errorf("deliver span: %s is %q, want %q", k, got, want)
			}
		}
	}

	ctx, cancel := ctx10()
	defer cancel()
	if err := sender.SendEvent(ctx, "recv", "E", nil); err != nil {
		t.Fatal(err)
	}
	_, d := spans("E")
	check(d, "recv", "ok")

	// stuck on n2 reads nothing; 2.4 MB queued ahead of the traced event
	// keep that event queued there until stuck leaves.
	stuck := bustest.DialRaw(t, ds[1].sock).Connect("stuck")
	fill := bustest.DialRaw(t, ds[1].sock).Connect("fill")
	big := strings.Repeat("x", 60000)
	var batch strings.Builder
	for range 40 {
		batch.WriteString(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"fill","TargetMachineId":"stuck","EventName":"FILL","Payload":"` + big + `"}}` + "\n")
	}
	fill.Send(strings.TrimSuffix(batch.String(), "\n"))
	seen(t, ds[0], "stuck")
	before := ds[1].node.Metrics.Received.Load()
	sent := make(chan error, 1)
	go func() { sent <- sender.SendEvent(ctx, "stuck", "E2", nil) }()
	bustest.Eventually(t, 10*time.Second, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == "statebus.route" && bustest.SpanAttr(s, "event.name") == "E2" {
				return true
			}
		}
		return false
	}, "the event to stuck was not routed")
	// The route span ends when n1 has handed the event to n2: wait until
	// n2 has received it, and it is queued behind the filler a moment
	// later.
	bustest.Eventually(t, 10*time.Second, func() bool { return ds[1].node.Metrics.Received.Load() > before }, "n2 did not receive the event")
	stuck.C.Close()
	err := <-sent
	_, d = spans("E2")
	t.Logf("the event to stuck: %v (outcome %s)", err, bustest.SpanAttr(d, "statebus.outcome"))
	switch {
	case err != nil && strings.Contains(err.Error(), "stuck disconnected before the event was written"):
		check(d, "stuck", "disconnected")
	case err != nil && strings.Contains(err.Error(), "Target machine not connected: stuck"):
		// n2 had not queued it yet when stuck left.
		check(d, "stuck", "target_not_connected")
	default:
		t.Fatalf("the event to stuck: %v", err)
	}
}
