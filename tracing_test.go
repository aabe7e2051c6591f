package statebus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/internal/server"
)

// TestTracingRequestReply: one request/reply across two clients through
// a real service, all three traced by one SDK with an in-memory exporter,
// yields one trace: the caller's statebus.Request (client) span is the
// root, the service's statebus.route (server) span and the responder's
// statebus.HandleRequest (server) span are its children, and a request
// the handler makes with its ctx is a child of the handler's span.
func TestTracingRequestReply(t *testing.T) {
	tp, exp := bustest.Traced(t)
	srv := bustest.Start(t, func(c *server.Config) { c.Tracer = tp.Tracer("statebusd") })
	tracing := statebus.WithTracerProvider(tp)

	var got statebus.Event
	dial(t, srv, "clock", tracing).HandleRequest("NOW", func(ctx context.Context, e statebus.Event) (any, error) {
		return "12:00", nil
	})
	responder := dial(t, srv, "responder", tracing)
	responder.HandleRequest("PING", func(ctx context.Context, e statebus.Event) (any, error) {
		got = e
		r, err := responder.Request(ctx, "clock", "NOW", nil)
		return r.Payload, err
	})
	caller := dial(t, srv, "caller", tracing)
	if _, err := caller.Request(ctx(t), "responder", "PING", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.TraceParent, "00-") {
		t.Fatalf("the responder's event has no traceparent: %+v", got)
	}

	// The responder's handler span ends after its reply is on its way:
	// the caller can have the reply first.
	var spans tracetest.SpanStubs
	bustest.Eventually(t, 10*time.Second, func() bool {
		spans = exp.GetSpans()
		n := 0
		for _, s := range spans {
			if s.Name == "statebus.HandleRequest" || s.Name == "statebus.Request" {
				n++
			}
		}
		return n == 4
	}, "want 2 requests and 2 handlers ended; spans: %v", lazySpans(func() tracetest.SpanStubs { return exp.GetSpans() }))
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	one := func(name string, kind trace.SpanKind) tracetest.SpanStub {
		t.Helper()
		if len(byName[name]) == 0 {
			t.Fatalf("no %s span; spans: %v", name, names(spans))
		}
		s := byName[name][0]
		if s.SpanKind != kind {
			t.Errorf("%s is a %v span, want %v", name, s.SpanKind, kind)
		}
		return s
	}
	req := one("statebus.Request", trace.SpanKindClient)
	traceID := req.SpanContext.TraceID()
	var outer, inner tracetest.SpanStub
	for _, s := range byName["statebus.Request"] {
		if s.Parent.IsValid() {
			inner = s
		} else {
			outer = s
		}
	}
	handle := byName["statebus.HandleRequest"]
	var ping, now tracetest.SpanStub
	for _, s := range handle {
		for _, a := range s.Attributes {
			if a.Key == "event.name" && a.Value.AsString() == "PING" {
				ping = s
			} else if a.Key == "event.name" && a.Value.AsString() == "NOW" {
				now = s
			}
		}
	}
	if outer.Parent.IsValid() || !inner.Parent.IsValid() {
		t.Errorf("want one root Request span and one inner: %v", names(spans))
	}
	routes := byName["statebus.route"]
	if len(routes) != 2 || len(handle) != 2 || len(byName["statebus.Request"]) != 2 {
		t.Fatalf("want 2 requests, 2 routes, 2 handlers; spans: %v", names(spans))
	}
	for _, s := range spans {
		if s.SpanContext.TraceID() != traceID {
			t.Errorf("%s is in trace %v, not the request's %v", s.Name, s.SpanContext.TraceID(), traceID)
		}
	}
	parentOf := func(child, parent tracetest.SpanStub, what string) {
		t.Helper()
		if child.Parent.SpanID() != parent.SpanContext.SpanID() {
			t.Errorf("%s: %s's parent is %v, want %s %v", what, child.Name, child.Parent.SpanID(), parent.Name, parent.SpanContext.SpanID())
		}
	}
	parentOf(ping, outer, "the responder's handler")
	parentOf(inner, ping, "the handler's own request")
	parentOf(now, inner, "the clock's handler")
	for _, r := range routes {
		if r.Parent.SpanID() != outer.SpanContext.SpanID() && r.Parent.SpanID() != inner.SpanContext.SpanID() {
			t.Errorf("a route span's parent is no request: %v", r.Parent.SpanID())
		}
		if r.SpanKind != trace.SpanKindServer || r.InstrumentationScope.Name != "statebusd" {
			t.Errorf("route span: %v %v", r.SpanKind, r.InstrumentationScope)
		}
		found := false
		for _, a := range r.Attributes {
			if a.Key == "statebus.outcome" && a.Value.AsString() == "queued" {
				found = true
			}
		}
		if !found {
			t.Errorf("route span without outcome queued: %v", r.Attributes)
		}
	}
	// Each request line has a statebus.deliver span, a child of its route
	// span, that ended once the line was written to the responder: it
	// ends on the service's writer, which may be after the reply arrived.
	var delivers []tracetest.SpanStub
	bustest.Eventually(t, 5*time.Second, func() bool {
		delivers = delivers[:0]
		for _, s := range exp.GetSpans() {
			if s.Name == "statebus.deliver" {
				delivers = append(delivers, s)
			}
		}
		return len(delivers) == 2
	}, "no two deliver spans")
	for _, d := range delivers {
		var route tracetest.SpanStub
		for _, r := range routes {
			if d.Parent.SpanID() == r.SpanContext.SpanID() {
				route = r
			}
		}
		if d.SpanContext.TraceID() != traceID || !route.SpanContext.IsValid() {
			t.Errorf("a deliver span's parent is no route span: %v", d.Parent.SpanID())
		}
		want := map[string]string{"statebus.outcome": "ok", "statebus.delivery": "request"}
		for _, a := range route.Attributes {
			if a.Key == "messaging.destination.name" {
				want["messaging.destination.name"] = a.Value.AsString()
			}
		}
		for _, a := range d.Attributes {
			if w, ok := want[string(a.Key)]; ok && a.Value.AsString() == w {
				delete(want, string(a.Key))
			}
		}
		if len(want) != 0 || d.SpanKind != trace.SpanKindProducer {
			t.Errorf("deliver span %v %v: want %v", d.SpanKind, d.Attributes, want)
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// BenchmarkUnicastTraced is BenchmarkUnicast with every event traced and
// sampled: the sender's span and traceparent, the service's route and
// deliver spans (exported by a batch processor to an exporter that
// discards them). The receiver does not trace.
func BenchmarkUnicastTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	defer tp.Shutdown(context.Background())
	srv := bustest.Start(b, func(c *server.Config) { c.Tracer = tp.Tracer("statebusd") })
	benchUnicast(b, dial(b, srv, "sender", statebus.WithTracerProvider(tp)), dial(b, srv, "receiver"))
}

// lazySpans prints the span names when the message is made.
type lazySpans func() tracetest.SpanStubs

func (l lazySpans) String() string { return fmt.Sprint(names(l())) }
