package server

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/outq"
	"github.com/statebus/statebus/protocol"
)

var traceContext propagation.TraceContext

// routeTraced routes an event whose sender attached a trace context, in a
// "statebus.route" span (kind server) that is a child of the sender's
// span, when the sender sampled it: the event's name, source and target,
// and the outcome: "queued" (written to the target's queue, or a
// request's) or the refusal's reason (the reasons of statebus_refusals_total).
// Each line queued for a target gets a "statebus.deliver" span, a child of
// the route span, that ends when the line was written or failed.
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
	ctx, span := c.srv.cfg.Tracer.Start(ctx, "statebus.route", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("messaging.system", "statebus"),
			attribute.String("event.name", string(ev.Name)),
			attribute.String("messaging.source.name", string(ev.Source)),
			attribute.String("messaging.destination.name", string(ev.Target)),
			attribute.Bool("statebus.request", r.IsRequest)))
	c.traced = &tracedRoute{srv: c.srv, ctx: ctx, event: attribute.String("event.name", string(ev.Name))}
	err := c.routeAndCopy(r)
	t := c.traced
	c.traced = nil
	outcome := "queued"
	if err != nil {
		outcome = refusalReason(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.String("statebus.outcome", outcome))
	if t.unsampled > 0 {
		span.SetAttributes(attribute.Int("statebus.deliver_spans_dropped", t.unsampled))
	}
	span.End()
	return err
}

// tracedRoute is the sampled event a connection's reader is routing: what
// its deliver spans start from.
type tracedRoute struct {
	srv       *Server
	ctx       context.Context // carries the route span
	event     attribute.KeyValue
	unsampled int // deliveries without a span: maxLiveDeliverSpans was reached
}

// maxLiveDeliverSpans bounds the statebus.deliver spans the service holds
// at once (each some hundreds of bytes until its line is written), since
// senders decide what is sampled: a client sending sampled events to a
// target that does not read could otherwise make the service hold one span
// per queued line. Past it, lines are delivered without a deliver span and
// the route span counts them (statebus.deliver_spans_dropped).
const maxLiveDeliverSpans = 4096

// deliverSpan is a statebus.deliver span: one line queued for one target,
// from the moment the sender asks for room in the target's queue to the
// line's outcome. The delivery record carries it.
type deliverSpan struct {
	span trace.Span
	live *atomic.Int64
}

// Delivery modes as the deliver span's statebus.delivery attribute.
var deliveryModes = [...]attribute.KeyValue{
	modeUnicast:   attribute.String("statebus.delivery", "unicast"),
	modeBroadcast: attribute.String("statebus.delivery", "fanout"),
	modeCopy:      attribute.String("statebus.delivery", "copy"),
}

var requestMode = attribute.String("statebus.delivery", "request")

// startDeliver starts the deliver span of one line for target tid; nil
// when maxLiveDeliverSpans are live.
func (t *tracedRoute) startDeliver(tid string, mode deliveryMode, request bool) *deliverSpan {
	live := &t.srv.liveSpans
	if live.Add(1) > maxLiveDeliverSpans {
		live.Add(-1)
		t.unsampled++
		return nil
	}
	m := deliveryModes[mode]
	if request {
		m = requestMode
	}
	_, span := t.srv.cfg.Tracer.Start(t.ctx, "statebus.deliver", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "statebus"),
			t.event,
			attribute.String("messaging.destination.name", tid),
			m))
	return &deliverSpan{span: span, live: live}
}

// startRemote starts the deliver span of an event handed to daemon node
// for target (federation): it ends when that daemon answers.
func (t *tracedRoute) startRemote(target, node string) *deliverSpan {
	ds := t.startDeliver(target, modeUnicast, false)
	if ds != nil {
		ds.span.SetAttributes(remoteMode, attribute.String("statebus.daemon", node))
	}
	return ds
}

var remoteMode = attribute.String("statebus.delivery", "remote")

// answered ends the span of an event handed to another daemon with that
// daemon's answer: its acknowledgement (written to the target's socket
// there: ok), its error (the outcome the error's text names), or lost
// (no answer within the acknowledgement timeout, or the daemon left).
func (ds *deliverSpan) answered(a *federation.Msg, lost string) {
	switch {
	case ds == nil:
	case lost != "":
		ds.end(outcomeLost, lost)
	case a.Kind == federation.KindError:
		outcome := refusalReason(protocol.ParseError(a.Text))
		if outcome == "delivery_failed" {
			outcome = outcomeDisconnected
			if strings.Contains(a.Text, " was closed as a slow consumer ") { // failed's text there
				outcome = outcomeClosedSlow
			}
		}
		ds.end(outcome, a.Text)
	default:
		if a.Target != "" {
			ds.span.SetAttributes(attribute.String("messaging.destination.name", a.Target)) // a group's member there
		}
		ds.end(outcomeWritten, "")
	}
}

// Outcomes of a deliver span, besides the refusal reasons of a line that
// was not queued (slow_consumer, target_not_connected, shutting_down).
const (
	outcomeWritten      = "ok"                   // written to the target's socket
	outcomeDisconnected = "disconnected"         // the target's connection ended first
	outcomeClosedSlow   = "closed_slow_consumer" // the target was closed as a slow consumer first
	outcomeLost         = "lost"                 // another daemon did not answer in time, or left
)

// end ends the span with its outcome; status Error with text when not
// written.
func (ds *deliverSpan) end(outcome, text string) {
	ds.span.SetAttributes(attribute.String("statebus.outcome", outcome))
	if text != "" {
		ds.span.SetStatus(codes.Error, text)
	}
	ds.span.End()
	ds.live.Add(-1)
}

// refused ends the span of a line that could not be queued: err says why.
func (ds *deliverSpan) refused(err error) {
	if ds != nil {
		ds.end(refusalReason(err), err.Error())
	}
}

// endDelivered ends the deliver spans of lines written to their target.
func endDelivered(recs []delivery) {
	for i := range recs {
		if ds := recs[i].trace; ds != nil {
			ds.end(outcomeWritten, "")
		}
	}
}

// endUndelivered ends the deliver spans of lines that will never be
// written to their target: why says what happened to it.
func endUndelivered(recs []delivery, cause error, why string) {
	outcome := outcomeDisconnected
	if cause == outq.ErrOverflow {
		outcome = outcomeClosedSlow
	}
	for i := range recs {
		if ds := recs[i].trace; ds != nil {
			ds.end(outcome, recs[i].target+why)
		}
	}
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
