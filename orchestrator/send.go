package orchestrator

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/protocol"
	"github.com/statebus/statebus/statechart"
)

// EventResult is what a Send did: XStateNet's EventResult, and the reply
// an orchestrator writes on the bus for a request to one of its machines
// (these JSON names, which XStateNet's EventResult has).
type EventResult struct {
	// Success reports whether the target processed the event without
	// error.
	Success bool
	// NewState is the target's state once it processed the event, in
	// XStateNet's "#id.a.b;#id.c" form; empty if it did not get it.
	NewState string `json:",omitempty"`
	// Error is why it failed: the text of the error Send returned.
	Error string `json:"ErrorMessage,omitempty"`
	// ProcessedBy is the id of the machine that processed it.
	ProcessedBy string `json:",omitempty"`
	// EventID identifies the event: made by the orchestrator that put it
	// in the target's mailbox, or by the sender when it never got there.
	EventID string `json:"EventId"`
	// Timestamp is when the result was made.
	Timestamp time.Time
}

// Send delivers an event from the machine from to the machine to and waits
// until to has processed it; see the package documentation for local and
// remote targets, deadlines and errors. data is marshalled with
// encoding/json (a json.RawMessage is sent as is). A remote target needs a
// sender on the bus: from must be a machine hosted here.
func (o *Orchestrator) Send(ctx context.Context, from, to, event string, data any) (EventResult, error) {
	if _, ok := ctx.Deadline(); !ok && o.cfg.sendTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.cfg.sendTimeout)
		defer cancel()
	}
	h, err := o.target(to)
	if err != nil {
		return failed(newEventID(), err), err
	}
	if h != nil {
		p, err := payload(data)
		if err != nil {
			return failed(newEventID(), err), err
		}
		return o.sendLocal(ctx, h, statechart.Event{Name: event, Data: p, Origin: from})
	}
	c, err := o.sender(from, to, notConnected(to))
	if err != nil {
		return failed(newEventID(), err), err
	}
	reply, err := c.Request(ctx, to, event, data)
	if err != nil {
		return failed(newEventID(), err), err
	}
	var res EventResult
	if err := json.Unmarshal(reply.Payload, &res); err != nil {
		err = fmt.Errorf("orchestrator: %s answered %s with %.100q, not an EventResult: is it hosted by an orchestrator?", to, event, reply.Payload)
		return failed(newEventID(), err), err
	}
	if !res.Success {
		return res, remoteError(res.Error)
	}
	return res, nil
}

// sendLocal puts ev in h's mailbox, waiting for room, and waits for its
// result, both up to ctx's end. If ctx ends once the event is in the
// mailbox, the machine still processes it.
func (o *Orchestrator) sendLocal(ctx context.Context, h *hosted, ev statechart.Event) (EventResult, error) {
	it := item{ev: ev, reply: make(chan EventResult, 1), id: newEventID(), parent: o.parentFrom(ctx)}
	if err := h.mb.put(ctx, it, true); err != nil {
		err = h.refusal(ev.Name, err)
		return failed(it.id, err), err
	}
	select {
	case res := <-it.reply:
		if !res.Success {
			return res, resultError(res)
		}
		return res, nil
	case <-ctx.Done():
		err := fmt.Errorf("orchestrator: %s did not process %s in time: %w", h.id, ev.Name, ctx.Err())
		return failed(it.id, err), err
	}
}

// Post delivers an event from the machine from to the machine to without
// waiting for it to be processed. To a machine hosted here it fails at
// once if its mailbox is full (ErrMailboxFull); to another process it
// returns once the event is queued on the bus, and the service's refusals
// ("Target machine not connected: ID") go to WithErrorHandler.
func (o *Orchestrator) Post(ctx context.Context, from, to, event string, data any) error {
	h, err := o.target(to)
	if err != nil {
		return err
	}
	if h != nil {
		p, err := payload(data)
		if err != nil {
			return err
		}
		if err := h.mb.put(ctx, item{ev: statechart.Event{Name: event, Data: p, Origin: from}, parent: o.parentFrom(ctx)}, false); err != nil {
			return h.refusal(event, err)
		}
		return nil
	}
	c, err := o.sender(from, to, protocol.ErrTargetNotConnected.New(to))
	if err != nil {
		return err
	}
	return c.PostEvent(ctx, to, event, data)
}

// sender returns the bus identity to send from from to a machine of
// another process; without the bus, there is none: notHere.
func (o *Orchestrator) sender(from, to string, notHere error) (*statebus.Identity, error) {
	if !o.cfg.bus {
		return nil, notHere
	}
	h := o.lookup(from)
	if h == nil {
		return nil, fmt.Errorf("orchestrator: %s is not hosted here and not by this orchestrator, so it cannot send to %s on the bus: send from a machine registered here", from, to)
	}
	return h.ident, nil
}

// target returns the machine to hosted here, nil if it is not, or
// ErrClosed.
func (o *Orchestrator) target(to string) (*hosted, error) {
	o.mu.RLock()
	h, closed := o.machines[to], o.closed
	o.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	return h, nil
}

// notConnected is the error of a Send to a machine that no process hosts,
// as the bus words it.
func notConnected(to string) error {
	return protocol.ErrNoResponder.New(to + " is not connected")
}

// dispatch delivers what src's actions sent, once its transition
// completed (statechart.Dispatcher). It never waits for a mailbox.
func (o *Orchestrator) dispatch(src *hosted, out statechart.Outgoing) {
	if h := o.lookup(out.To); h != nil {
		if err := h.mb.put(o.ctx, item{ev: out.Event}, false); err != nil && err != ErrClosed {
			o.fail(fmt.Errorf("orchestrator: %s's %s to %s was not delivered: %w", src.id, out.Event.Name, out.To, h.refusal(out.Event.Name, err)))
		}
		return
	}
	if src.ident == nil {
		o.fail(fmt.Errorf("orchestrator: %s's %s was not delivered: %w", src.id, out.Event.Name, protocol.ErrTargetNotConnected.New(out.To)))
		return
	}
	var data any
	if out.Event.Data != nil {
		data = out.Event.Data
	}
	if err := src.ident.PostEvent(src.ctx, out.To, out.Event.Name, data); err != nil && src.ctx.Err() == nil {
		o.fail(fmt.Errorf("orchestrator: %s's %s to %s was not sent: %w", src.id, out.Event.Name, out.To, err))
	}
}

// postOwn queues an event the machine gives itself (statechart's event
// queue: self-sends, after timers, services' results).
func (o *Orchestrator) postOwn(h *hosted, ev statechart.Event) {
	if err := h.mb.put(h.ctx, item{ev: ev, own: true}, false); err != nil && err != ErrClosed {
		o.fail(fmt.Errorf("orchestrator: %s's own event %s was dropped: %w", h.id, ev.Name, h.refusal(ev.Name, err)))
	}
}

// fromBus puts an event from the bus in h's mailbox, waiting for room:
// that holds up h's client, so the bus's flow control takes over.
func (o *Orchestrator) fromBus(h *hosted, e statebus.Event) {
	ev := statechart.Event{Name: e.Name, Data: e.Payload, Origin: e.Source}
	if err := h.mb.put(h.ctx, item{ev: ev, parent: o.parentFromBus(&e), seq: e.Sequence}, true); err != nil && h.ctx.Err() == nil {
		o.fail(fmt.Errorf("orchestrator: %s from %s on the bus was dropped: %w", e.Name, e.Source, err))
	}
}

// requestFromBus answers a request to h from the bus (another
// orchestrator's Send) with h's EventResult.
func (o *Orchestrator) requestFromBus(ctx context.Context, h *hosted, e statebus.Event) EventResult {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(h.ctx, cancel)
	defer stop()
	res, _ := o.sendLocal(ctx, h, statechart.Event{Name: e.Name, Data: e.Payload, Origin: e.Source})
	return res
}

// result is the EventResult of an event h's machine processed with err.
func (h *hosted) result(id string, err error) EventResult {
	res := EventResult{Success: err == nil, NewState: h.m.State(), ProcessedBy: h.id, EventID: id, Timestamp: time.Now().UTC()}
	switch {
	case err == nil:
	case errors.Is(err, statechart.ErrStopped), errors.Is(err, statechart.ErrDone), errors.Is(err, statechart.ErrNotStarted):
		res.Error = fmt.Sprintf("%v: %s takes no more events (%v)", ErrMachineStopped, h.id, err)
	default:
		res.Error = fmt.Sprintf("%v: %s: %v", ErrEventFailed, h.id, err)
	}
	return res
}

// refusal words a mailbox's refusal of an event to h.
func (h *hosted) refusal(event string, err error) error {
	if err == errFull {
		return fmt.Errorf("%w: %s already holds %d events; %s was not queued (raise WithMailboxSize, or send less)", ErrMailboxFull, h.id, h.mb.limit, event)
	}
	return err
}

// failed is the EventResult of an event that did not reach its machine.
func failed(id string, err error) EventResult {
	return EventResult{Error: err.Error(), EventID: id, Timestamp: time.Now().UTC()}
}

// kinds are the orchestrator's errors, which a text from another
// process's orchestrator is matched against.
var kinds = []error{ErrClosed, ErrMailboxFull, ErrMachineStopped, ErrEventFailed}

// textError is an error whose text came from a result: Error returns it as
// it was, Unwrap the orchestrator's kind it starts with, if any.
type textError struct {
	text string
	kind error
}

func (e *textError) Error() string { return e.text }
func (e *textError) Unwrap() error { return e.kind }

// remoteError is the error for the Error text of another orchestrator's
// result.
func remoteError(text string) error {
	for _, k := range kinds {
		if strings.HasPrefix(text, k.Error()) {
			return &textError{text, k}
		}
	}
	return &textError{text: text}
}

// resultError is the error of a failed local result: its text, of the
// orchestrator's kind it names.
func resultError(res EventResult) error { return remoteError(res.Error) }

// payload returns data as the JSON an event carries, as the client would
// send it.
func payload(data any) (json.RawMessage, error) {
	switch v := data.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !json.Valid(v) {
			return nil, fmt.Errorf("orchestrator: payload is not valid JSON")
		}
		return v, nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: cannot encode payload: %w", err)
	}
	return b, nil
}

// newEventID returns a random UUID (version 4), as XStateNet's Guid.
func newEventID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
