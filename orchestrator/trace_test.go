package orchestrator_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/internal/bustest"
	"github.com/statebus/statebus/orchestrator"
)

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// TestTracingTransitions: a Send from one orchestrator to a machine that
// another one hosts, across a real service, is one trace: the sender's
// statebus.Request span, the host's statebus.HandleRequest, then
// StateMachine.T (machine.id, event.name) as its child and
// StateMachine.Transition (transition.from, transition.to) as that one's.
// A local Send continues the caller's span.
func TestTracingTransitions(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer tp.Shutdown(context.Background())
	srv := bustest.Start(t, nil)
	bus := orchestrator.WithBus(statebus.WithPipeName(srv.Addr()))
	host := newOrch(t, bus, orchestrator.WithTracerProvider(tp))
	ctx := context.Background()
	if err := host.Register(ctx, "t", loadToggle(t)); err != nil {
		t.Fatal(err)
	}
	caller := newOrch(t, bus, orchestrator.WithTracerProvider(tp))
	if err := caller.Register(ctx, "main", loadToggle(t)); err != nil {
		t.Fatal(err)
	}
	exp.Reset()
	if res, err := caller.Send(ctx, "main", "t", "T", nil); err != nil || res.NewState != "#t.b" {
		t.Fatalf("Send: %+v %v", res, err)
	}
	spans := exp.GetSpans()
	find := func(name string) tracetest.SpanStub {
		t.Helper()
		for _, s := range spans {
			if s.Name == name {
				return s
			}
		}
		t.Fatalf("no %s span in %d spans", name, len(spans))
		return tracetest.SpanStub{}
	}
	req, handle := find("statebus.Request"), find("statebus.HandleRequest")
	ev, tr := find("StateMachine.T"), find("StateMachine.Transition")
	for _, s := range spans {
		if s.SpanContext.TraceID() != req.SpanContext.TraceID() {
			t.Errorf("%s is not in the Send's trace", s.Name)
		}
	}
	if handle.Parent.SpanID() != req.SpanContext.SpanID() || ev.Parent.SpanID() != handle.SpanContext.SpanID() ||
		tr.Parent.SpanID() != ev.SpanContext.SpanID() {
		t.Errorf("parents: HandleRequest <- %v, StateMachine.T <- %v, Transition <- %v", handle.Parent.SpanID(), ev.Parent.SpanID(), tr.Parent.SpanID())
	}
	if attr(ev, "machine.id") != "t" || attr(ev, "event.name") != "T" ||
		attr(tr, "transition.from") != "#t.a" || attr(tr, "transition.to") != "#t.b" {
		t.Errorf("attributes: %v / %v", ev.Attributes, tr.Attributes)
	}

	// Local: the caller's span is the parent.
	exp.Reset()
	pctx, root := tp.Tracer("test").Start(ctx, "root")
	if _, err := host.Send(pctx, "x", "t", "T", nil); err != nil {
		t.Fatal(err)
	}
	root.End()
	spans = exp.GetSpans()
	if ev := find("StateMachine.T"); ev.Parent.SpanID() != root.SpanContext().SpanID() || attr(find("StateMachine.Transition"), "transition.to") != "#t.a" {
		t.Errorf("local Send: StateMachine.T's parent %v, want the root %v", ev.Parent.SpanID(), root.SpanContext().SpanID())
	}
}
