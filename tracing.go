package statebus

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the client's spans.
const tracerName = "github.com/statebus/statebus"

// WithTracerProvider traces the client with OpenTelemetry: a span for
// each SendEvent and PostEvent (kind producer) and Request (kind client),
// whose W3C trace context travels in the event as "traceparent" and
// "tracestate" (protocol.md, "Trace context"); and for an event that
// carries one, a span around its handlers (kind consumer) or its request
// handler (kind server), a child of the sender's span. A request handler's
// ctx holds its span, so what it sends or requests continues the trace.
// An event handler can continue it with Event.TraceContext.
//
// Without this option the client does no tracing work at all, and its
// events carry no trace context: the lines are byte for byte what they
// were.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) {
		if tp != nil {
			o.tracer = tp.Tracer(tracerName)
		}
	}
}

var traceContext propagation.TraceContext

// sendSpanKey marks a context whose send already has its span.
type sendSpanKey struct{}

var sendSpanNames = [...]string{sendAck: "statebus.SendEvent", sendPost: "statebus.PostEvent",
	sendReq: "statebus.Request", sendAckData: "statebus.SendEvent"}

// sendTraced is send inside a span.
func (c *Client) sendTraced(ctx context.Context, src, target, name string, payload any, k sendKind, opts []SendOption) ([]byte, error) {
	kind := trace.SpanKindProducer
	if k == sendReq {
		kind = trace.SpanKindClient
	}
	ctx, span := c.opt.tracer.Start(ctx, sendSpanNames[k], trace.WithSpanKind(kind), trace.WithAttributes(
		attribute.String("messaging.system", "statebus"),
		attribute.String("messaging.destination.name", target),
		attribute.String("machine.id", src),
		attribute.String("event.name", name)))
	defer span.End()
	data, err := c.send(context.WithValue(ctx, sendSpanKey{}, true), src, target, name, payload, k, opts)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return data, err
}

// traceHeaders returns the W3C trace context of ctx's span, for the event.
func traceHeaders(ctx context.Context) (parent, state string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	h := propagation.MapCarrier{}
	traceContext.Inject(ctx, h)
	return h["traceparent"], h["tracestate"]
}

// TraceContext returns ctx carrying the trace context the event's sender
// attached (a remote span context), so that what a handler sends
// continues the sender's trace. Without one it returns ctx.
func (e Event) TraceContext(ctx context.Context) context.Context {
	if e.TraceParent == "" {
		return ctx
	}
	return traceContext.Extract(ctx, propagation.MapCarrier{"traceparent": e.TraceParent, "tracestate": e.TraceState})
}

// handlerSpan starts the span of an event's handlers, or of a request
// handler, as a child of the sender's span.
func (d *dispatcher) handlerSpan(ctx context.Context, ev *Event, request bool) (context.Context, trace.Span) {
	name, kind := "statebus.handle", trace.SpanKindConsumer
	if request {
		name, kind = "statebus.HandleRequest", trace.SpanKindServer
	}
	return d.c.opt.tracer.Start(ev.TraceContext(ctx), name, trace.WithSpanKind(kind), trace.WithAttributes(
		attribute.String("messaging.system", "statebus"),
		attribute.String("machine.id", d.id),
		attribute.String("messaging.source.name", ev.Source),
		attribute.String("event.name", ev.Name)))
}
