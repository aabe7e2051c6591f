package server_test

import (
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// tracedBus starts a service whose spans go to an in-memory exporter.
func tracedBus(t *testing.T, edit func(*server.Config)) (*server.Server, *tracetest.InMemoryExporter) {
	t.Helper()
	tp, exp := bustest.Traced(t)
	srv := bustest.Start(t, func(c *server.Config) {
		c.Tracer = tp.Tracer("statebusd")
		if edit != nil {
			edit(c)
		}
	})
	return srv, exp
}

// The sender's span, as its traceparent says.
const (
	senderTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	senderSpan  = "00f067aa0ba902b7"
	traceparent = `"traceparent":"00-` + senderTrace + `-` + senderSpan + `-01"`
)

// spansNamed waits until the exporter holds n spans called name and
// returns them.
func spansNamed(t *testing.T, exp *tracetest.InMemoryExporter, name string, n int) []tracetest.SpanStub {
	t.Helper()
	var got []tracetest.SpanStub
	waitFor(t, strings.Repeat(name+" ", n)+"spans", func() bool {
		got = got[:0]
		for _, s := range exp.GetSpans() {
			if s.Name == name {
				got = append(got, s)
			}
		}
		return len(got) >= n
	})
	if len(got) != n {
		t.Fatalf("%d %s spans, want %d", len(got), name, n)
	}
	return got
}

// checkDeliver checks a deliver span: the route span's child, its target,
// how it was delivered and its outcome.
func checkDeliver(t *testing.T, d, route tracetest.SpanStub, target, mode, outcome string) {
	t.Helper()
	if d.Parent.SpanID() != route.SpanContext.SpanID() || d.SpanContext.TraceID() != route.SpanContext.TraceID() {
		t.Errorf("deliver to %s: parent %v, want the route span %v", target, d.Parent.SpanID(), route.SpanContext.SpanID())
	}
	if d.SpanKind != trace.SpanKindProducer || d.InstrumentationScope.Name != "statebusd" {
		t.Errorf("deliver to %s: kind %v, scope %v", target, d.SpanKind, d.InstrumentationScope)
	}
	for k, want := range map[string]string{"messaging.destination.name": target, "statebus.delivery": mode, "statebus.outcome": outcome} {
		if got := bustest.SpanAttr(d, k); got != want {
			t.Errorf("deliver to %s: %s is %q, want %q", target, k, got, want)
		}
	}
	if want := codes.Unset; outcome != "ok" {
		if d.Status.Code != codes.Error || !strings.Contains(d.Status.Description, target) {
			t.Errorf("deliver to %s, %s: status %+v", target, outcome, d.Status)
		}
	} else if d.Status.Code != want {
		t.Errorf("deliver to %s: status %+v, want unset", target, d.Status)
	}
}

// A sampled event gets a route span, a child of the sender's, and one
// deliver span per line queued, a child of the route span, that ends with
// outcome ok once the line was written: unicast, a group's member, every
// member of "*" and a request. Unsampled and untraced events get none.
func TestTraceDeliverSpans(t *testing.T) {
	srv, exp := tracedBus(t, nil)
	a := dialRaw(t, srv).Connect("a")
	b := dialRaw(t, srv).Connect("b")
	c := dialRaw(t, srv).Connect("c")
	c.Send(`{"Type":103,"Payload":{"Group":"g"}}`)
	c.Expect(`{"Success":true,"Data":null,"Error":null}`)

	send := func(target, extra string) string {
		ev := `{"SourceMachineId":"a","TargetMachineId":"` + target + `","EventName":"E",` + traceparent + `}`
		a.Send(`{"Type":2` + extra + `,"Payload":` + ev + `}`)
		return ev
	}
	oneRoute := func() tracetest.SpanStub {
		t.Helper()
		r := spansNamed(t, exp, "statebus.route", 1)[0]
		if r.Parent.TraceID().String() != senderTrace || r.Parent.SpanID().String() != senderSpan {
			t.Fatalf("route span's parent %v, want the sender's span", r.Parent)
		}
		return r
	}

	// Unicast.
	ev := send("b", "")
	b.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"b"},"Error":null}`)
	route := oneRoute()
	checkDeliver(t, spansNamed(t, exp, "statebus.deliver", 1)[0], route, "b", "unicast", "ok")
	exp.Reset()

	// A group: one member.
	ev = send("@g", "")
	c.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"c"},"Error":null}`)
	checkDeliver(t, spansNamed(t, exp, "statebus.deliver", 1)[0], oneRoute(), "c", "unicast", "ok")
	exp.Reset()

	// Broadcast: one deliver span per recipient.
	ev = send("*", "")
	a.Expect(`{"Success":true,"Data":{"Delivered":true,"TargetMachineId":"*","Recipients":2},"Error":null}`)
	b.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
	c.Expect(`{"Success":true,"Data":` + ev + `,"Error":null}`)
	route = oneRoute()
	ds := spansNamed(t, exp, "statebus.deliver", 2)
	if bustest.SpanAttr(ds[0], "messaging.destination.name") == "c" {
		ds[0], ds[1] = ds[1], ds[0]
	}
	checkDeliver(t, ds[0], route, "b", "fanout", "ok")
	checkDeliver(t, ds[1], route, "c", "fanout", "ok")
	exp.Reset()

	// A request.
	send("b", `,"Request":true,"Id":7`)
	got := b.ExpectMatch(`\{"Success":true,"Data":.*,"ReplyTo":(\d+)\}`)
	token := got[strings.LastIndex(got, ":")+1 : len(got)-1]
	b.Send(`{"Type":102,"Payload":{"ReplyTo":` + token + `,"Payload":1}}`)
	a.Expect(`{"Success":true,"Data":1,"Error":null,"Id":7}`)
	checkDeliver(t, spansNamed(t, exp, "statebus.deliver", 1)[0], oneRoute(), "b", "request", "ok")
	exp.Reset()

	// Not sampled (flags 00), and untraced: no spans.
	a.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E","traceparent":"00-` + senderTrace + `-` + senderSpan + `-00"}}`)
	b.Read()
	a.Read()
	a.Send(`{"Type":2,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E"}}`)
	b.Read()
	a.Read()
	if spans := exp.GetSpans(); len(spans) != 0 {
		t.Fatalf("spans of events that were not sampled: %v", spans)
	}
}

// stuckBehind connects a target "stuck" that never reads, and has a send
// it enough NoAck events to fill the socket buffers, so its writer blocks:
// whatever is queued for it next stays queued until it reads, disconnects
// or is closed.
func stuckBehind(t *testing.T, srv *server.Server, a *raw) *raw {
	t.Helper()
	stuck := dialRaw(t, srv).Connect("stuck")
	big := strings.Repeat("x", 60000)
	var batch strings.Builder
	for range 40 {
		batch.WriteString(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"stuck","EventName":"FILL","Payload":"` + big + `"}}` + "\n")
	}
	a.Send(strings.TrimSuffix(batch.String(), "\n"))
	return stuck
}

// A traced event queued for a target that disconnects before it was
// written: its deliver span ends with outcome disconnected and an error
// status that says so; the route span said queued.
func TestTraceDeliverDisconnected(t *testing.T) {
	srv, exp := tracedBus(t, func(c *server.Config) { c.WriteTimeout = time.Hour })
	a := dialRaw(t, srv).Connect("a")
	stuck := stuckBehind(t, srv, a)
	a.Send(`{"Type":2,"Id":1,"Payload":{"SourceMachineId":"a","TargetMachineId":"stuck","EventName":"E",` + traceparent + `}}`)
	route := spansNamed(t, exp, "statebus.route", 1)[0]
	if o := bustest.SpanAttr(route, "statebus.outcome"); o != "queued" {
		t.Fatalf("route outcome %q", o)
	}
	spansNamed(t, exp, "statebus.deliver", 0) // none ended: the filler blocks the writer
	stuck.C.Close()
	// The filler fails too (errors are sent without acknowledgements).
	for line := ""; !strings.Contains(line, `"Id":1`); {
		line = a.Read()
		if want := `{"Success":false,"Data":null,"Error":"Failed to deliver event: stuck disconnected before the event was written"`; !strings.HasPrefix(line, want) {
			t.Fatalf("got  %s\nwant %s...", line, want)
		}
	}
	d := spansNamed(t, exp, "statebus.deliver", 1)[0]
	checkDeliver(t, d, route, "stuck", "unicast", "disconnected")
	if d.Status.Description != "stuck disconnected before the event was written" {
		t.Errorf("status %q", d.Status.Description)
	}
}

// A traced event queued for a target that is then closed as a slow
// consumer (its write blocked for WriteTimeout): outcome
// closed_slow_consumer.
func TestTraceDeliverClosedSlow(t *testing.T) {
	srv, exp := tracedBus(t, func(c *server.Config) { c.WriteTimeout = time.Second })
	a := dialRaw(t, srv).Connect("a")
	stuckBehind(t, srv, a)
	a.Send(`{"Type":2,"Id":1,"Payload":{"SourceMachineId":"a","TargetMachineId":"stuck","EventName":"E",` + traceparent + `}}`)
	route := spansNamed(t, exp, "statebus.route", 1)[0]
	if o := bustest.SpanAttr(route, "statebus.outcome"); o != "queued" {
		// On a busy machine the janitor may close stuck before the
		// event is routed: then it was refused, and nothing was queued.
		t.Skipf("stuck was closed before the event was routed (outcome %s): nothing to see", o)
	}
	checkDeliver(t, spansNamed(t, exp, "statebus.deliver", 1)[0], route, "stuck", "unicast", "closed_slow_consumer")
}

// Senders decide what is sampled, so a client could send sampled events
// to a target that never reads and make the service hold a deliver span
// per queued line. It holds at most 4096 (maxLiveDeliverSpans): past that
// lines are queued without one and their route spans count them.
func TestTraceDeliverSpansBounded(t *testing.T) {
	const limit, extra = 4096, 5
	srv, exp := tracedBus(t, func(c *server.Config) { c.WriteTimeout = time.Hour })
	a := dialRaw(t, srv).Connect("a")
	stuck := stuckBehind(t, srv, a)
	line := `{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"stuck","EventName":"E",` + traceparent + `}}` + "\n"
	a.Send(strings.TrimSuffix(strings.Repeat(line, limit+extra), "\n"))
	routes := spansNamed(t, exp, "statebus.route", limit+extra)
	dropped := 0
	for _, r := range routes {
		if bustest.SpanAttr(r, "statebus.deliver_spans_dropped") == "1" {
			dropped++
		}
	}
	if dropped != extra {
		t.Fatalf("%d route spans say their deliver span was dropped, want %d", dropped, extra)
	}
	stuck.C.Close()
	for _, d := range spansNamed(t, exp, "statebus.deliver", limit) {
		if o := bustest.SpanAttr(d, "statebus.outcome"); o != "disconnected" {
			t.Fatalf("outcome %q", o)
		}
	}
	// The spans are given back: the next event has its deliver span.
	exp.Reset()
	b := dialRaw(t, srv).Connect("b")
	a.Send(`{"Type":2,"NoAck":true,"Payload":{"SourceMachineId":"a","TargetMachineId":"b","EventName":"E",` + traceparent + `}}`)
	b.Read()
	checkDeliver(t, spansNamed(t, exp, "statebus.deliver", 1)[0], spansNamed(t, exp, "statebus.route", 1)[0], "b", "unicast", "ok")
}
