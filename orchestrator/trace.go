package orchestrator

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/statechart"
)

// WithTracerProvider traces the machines with OpenTelemetry, with the
// span names XStateNet's distributed tracing uses: each event a machine
// processes is a "StateMachine.<event>" span (machine.id, event.name), a
// child of the sender's span when there is one (a Send's ctx, or the
// trace context an event from the bus carries), and each macrostep that
// took a transition a "StateMachine.Transition" child span
// (transition.from, transition.to: the configurations before and after).
// With WithBus, the bus clients are traced too (statebus.WithTracerProvider).
// Without this option the machines do no tracing work.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) {
		if tp != nil {
			c.tracerProvider = tp
			c.tracer = tp.Tracer("github.com/statebus/statebus/orchestrator")
		}
	}
}

// busTracing adds the client's tracing to the bus options.
func (c *config) busTracing() {
	if c.tracerProvider != nil {
		c.busOpts = append(c.busOpts[:len(c.busOpts):len(c.busOpts)], statebus.WithTracerProvider(c.tracerProvider))
	}
}

// parentFromBus is the span context an event from the bus continues.
func (o *Orchestrator) parentFromBus(e *statebus.Event) trace.SpanContext {
	if o.cfg.tracer == nil || e.TraceParent == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(e.TraceContext(context.Background()))
}

// parentFrom is the span context of a Send's ctx.
func (o *Orchestrator) parentFrom(ctx context.Context) trace.SpanContext {
	if o.cfg.tracer == nil {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(ctx)
}

// process hands it to h's machine, in spans when tracing.
func (o *Orchestrator) process(h *hosted, it *item) (statechart.Result, error) {
	tr := o.cfg.tracer
	if tr == nil {
		return h.m.Send(it.ev)
	}
	ctx := context.Background()
	if it.parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, it.parent)
	}
	from := h.m.State()
	ctx, span := tr.Start(ctx, "StateMachine."+it.ev.Name, trace.WithAttributes(
		attribute.String("machine.id", h.id),
		attribute.String("event.name", it.ev.Name),
		attribute.String("event.origin", it.ev.Origin)))
	defer span.End()
	res, err := h.m.Send(it.ev)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	if res.Changed {
		_, t := tr.Start(ctx, "StateMachine.Transition", trace.WithAttributes(
			attribute.String("machine.id", h.id),
			attribute.String("event.name", it.ev.Name),
			attribute.String("transition.from", from),
			attribute.String("transition.to", h.m.State())))
		t.End()
	}
	return res, err
}
