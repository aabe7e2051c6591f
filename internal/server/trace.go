package server

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/statebus/statebus/protocol"
)

var traceContext propagation.TraceContext

// routeTraced routes an event whose sender attached a trace context, in a
// "statebus.route" span (kind server) that is a child of the sender's
// span, when the sender sampled it: the event's name, source and target,
// and the outcome: "queued" (written to the target's queue, or a
// request's) or the refusal's reason (the reasons of statebus_refusals_total).
// The event's bytes are forwarded unchanged, so the receiver's span is a
// child of the sender's too, a sibling of this one.
func (c *conn) routeTraced(r *protocol.Request) error {
	ev := &r.Event
	carrier := propagation.MapCarrier{"traceparent": string(ev.TraceParent)}
	if ev.TraceState != nil {
		carrier["tracestate"] = string(ev.TraceState)
	}
	ctx := traceContext.Extract(context.Background(), carrier)
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return c.routeAndCopy(r) // not sampled, or not a valid traceparent
	}
	_, span := c.srv.cfg.Tracer.Start(ctx, "statebus.route", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("messaging.system", "statebus"),
			attribute.String("event.name", string(ev.Name)),
			attribute.String("messaging.source.name", string(ev.Source)),
			attribute.String("messaging.destination.name", string(ev.Target)),
			attribute.Bool("statebus.request", r.IsRequest)))
	err := c.routeAndCopy(r)
	outcome := "queued"
	if err != nil {
		outcome = refusalReason(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.String("statebus.outcome", outcome))
	span.End()
	return err
}

// refusalReason names err as Stats.Refused does.
func refusalReason(err error) string {
	var k *protocol.Kind
	if errors.As(err, &k) {
		for _, r := range refusalReasons {
			if r.kind == k {
				return r.reason
			}
		}
	}
	return otherReason
}
