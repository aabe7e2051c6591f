package statebus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/statebus/statebus/protocol"
)

// Priority is an event's place in its target's queue (a statebus
// extension): queued High events are written before Normal ones, Normal
// before Low; events of one priority keep their order.
type Priority string

// The priorities.
const (
	High   Priority = "High"
	Normal Priority = "Normal"
	Low    Priority = "Low"
)

// SendOption adjusts one SendEvent, PostEvent or Request.
type SendOption func(*sendOptions)

// sendOptions is what a SendOption may set; the rest of the line is the
// client's.
type sendOptions struct {
	priority Priority
}

// WithPriority sends the event with priority p (default Normal).
func WithPriority(p Priority) SendOption {
	return func(o *sendOptions) { o.priority = p }
}

// sendKind is what a send waits for.
type sendKind uint8

const (
	sendAck     sendKind = iota // the service's acknowledgement
	sendPost                    // nothing
	sendReq                     // the responder's reply
	sendAckData                 // the acknowledgement, and its Data (SendEventAck)
)

// SendEvent sends an event to target ("*" for every other subscribed
// machine, "@group" for one member of a group) and waits for the service's
// acknowledgement that it was written to the target's connection. payload
// is marshalled with encoding/json; a json.RawMessage is sent as is (but
// compacted onto one line). Errors the service reports wrap the protocol
// kinds (errors.Is(err, ErrTargetNotConnected)). An event longer than the
// service accepts fails at once with ErrTooLarge. While the client
// reconnects it fails at once with ErrNotConnected, or waits for the
// reconnection up to ctx's deadline with WithWaitForReconnect.
func (c *Client) SendEvent(ctx context.Context, target, name string, payload any, opts ...SendOption) error {
	_, err := c.send(ctx, c.id, target, name, payload, sendAck, opts)
	return err
}

// PostEvent sends an event without waiting for its acknowledgement: it
// returns once the event is queued for writing, and the service sends no
// acknowledgement. Refusals by the service go to the handler given with
// WithErrorHandler.
func (c *Client) PostEvent(ctx context.Context, target, name string, payload any, opts ...SendOption) error {
	_, err := c.send(ctx, c.id, target, name, payload, sendPost, opts)
	return err
}

// Request sends a request event to target (a machine, or "@group" for one
// of its members) and returns its reply, whose Payload is what target's
// handler returned, Name the request's name and Target this client's id.
// Its Source and Timestamp are zero: the reply on the wire carries neither
// (for "@group", which member answered is not known). The caller's
// deadline travels with the request, so the target can skip work nobody
// waits for. A target that is not connected, or that disconnects before
// replying, fails at once with ErrNoResponder; an error the handler
// returned comes back as a *ResponderError (ErrResponder) with its text.
func (c *Client) Request(ctx context.Context, target, name string, payload any, opts ...SendOption) (Event, error) {
	data, err := c.send(ctx, c.id, target, name, payload, sendReq, opts)
	if err != nil {
		return Event{}, err
	}
	return Event{Target: c.id, Name: name, Payload: data}, nil
}

// send writes one SendEvent line from src (the client's id or one of its
// identities') and, unless it is a post, waits for its response (the
// reply's Data for a request).
func (c *Client) send(ctx context.Context, src, target, name string, payload any, k sendKind, opts []SendOption) ([]byte, error) {
	if c.opt.tracer != nil && ctx.Value(sendSpanKey{}) == nil {
		return c.sendTraced(ctx, src, target, name, payload, k, opts)
	}
	var o protocol.SendOptions
	if len(opts) > 0 {
		// Options get a copy: taking a local's address would move it to
		// the heap on every call, options or not.
		so := new(sendOptions)
		for _, f := range opts {
			f(so)
		}
		o.Priority = string(so.priority)
	}
	if src == "" {
		return nil, errNoID
	}
	p, raw, err := marshalPayload(payload)
	if err != nil {
		return nil, err
	}
	switch k {
	case sendPost:
		o.NoAck = true
	case sendReq:
		o.Request = true
		if d, ok := ctx.Deadline(); ok {
			o.TimeoutMs = max(time.Until(d).Milliseconds(), 1)
		}
	}
	if c.opt.tracer != nil {
		o.TraceParent, o.TraceState = traceHeaders(ctx)
	}
	for {
		s, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		data, err := s.send(ctx, src, target, name, p, raw, k, o)
		if u, ok := err.(unsent); ok {
			if c.opt.waitReconnect && ctx.Err() == nil {
				continue // s ended before the line was taken: wait for the next one
			}
			err = u.error
		}
		return data, err
	}
}

// unsent is the error of a send whose session ended before it took the
// line: it is safe to send again.
type unsent struct{ error }

// lineOverhead is what a SendEvent line adds to its payload, target, name
// and source, roughly: enough for the first, cheap check.
const lineOverhead = 200

// send writes a SendEvent line on s and waits for its response.
func (s *session) send(ctx context.Context, src, target, name string, p []byte, raw bool, k sendKind, o protocol.SendOptions) ([]byte, error) {
	c := s.c
	// A frame's raw payload is the service's to check, once; a line's
	// must be valid JSON before it is written.
	p, err := lineReady(p, raw, !s.compact.Load())
	if err != nil {
		return nil, err
	}
	max := s.maxMessage.Load()
	if n := len(p) + len(target) + len(name) + len(src); int64(n) > max {
		return nil, tooLarge(name, target, true, n, max)
	}
	b, err := s.q.begin(len(p)+len(target)+len(name)+len(src)+lineOverhead, ctx.Done())
	if err != nil {
		if err == errQueueClosed {
			return nil, unsent{s.writeFailed(ctx, err)}
		}
		return nil, s.writeFailed(ctx, err)
	}
	start := len(b)
	if k != sendPost {
		o.ID = c.seq.Add(1)
	}
	var line []byte
	if s.compact.Load() {
		line = protocol.AppendSendFrame(b, src, target, name, p, o)
	} else {
		line = protocol.AppendSendEvent(b, src, target, name, p, time.Now(), o)
	}
	size := len(line) - start
	if int64(size-1) > max {
		s.q.abandon()
		return nil, tooLarge(name, target, false, size-1, max)
	}
	if k == sendPost {
		s.q.commit(line)
		return nil, nil
	}
	ch, err := s.expect(o.ID, pendingCall{data: k == sendReq || k == sendAckData, size: size})
	if err != nil {
		s.q.abandon()
		return nil, unsent{err}
	}
	s.q.commit(line)
	return s.await(ctx, o.ID, ch)
}

// tooLarge is the error of an event whose line would be n bytes long
// (more than n, with more).
func tooLarge(name, target string, more bool, n int, max int64) error {
	size := fmt.Sprint(n)
	if more {
		size = "more than " + size
	}
	return fmt.Errorf("%w: event %q to %q would take %s bytes on the wire, and the service takes at most %d (its MaxMessageBytes; WithMaxMessageBytes if it takes more); nothing was sent",
		ErrTooLarge, name, target, size, max)
}

// maxPayloadDepth is how deeply a payload may nest: the service takes 64
// levels in a line, and a payload sits in the line's object and the
// event's.
const maxPayloadDepth = protocol.MaxDepth - 2

// encodePayload returns payload as the JSON to send on one line: a
// json.RawMessage as is once it is checked and compacted (a newline would
// end the line), anything else marshalled with encoding/json. Payloads
// nested deeper than the service takes are refused.
func encodePayload(payload any) ([]byte, error) {
	p, raw, err := marshalPayload(payload)
	if err != nil {
		return nil, err
	}
	return lineReady(p, raw, true)
}

// marshalPayload returns payload as JSON: a json.RawMessage as it is
// (raw: nothing checked it), anything else marshalled with encoding/json.
func marshalPayload(payload any) (p []byte, raw bool, err error) {
	switch v := payload.(type) {
	case nil:
		return nil, false, nil
	case json.RawMessage:
		return v, true, nil
	}
	if p, err = json.Marshal(payload); err != nil {
		return nil, false, fmt.Errorf("statebus: cannot encode payload: %w", err)
	}
	return p, false, nil
}

// lineReady makes a payload ready to send: a raw one is compacted onto
// one line. With check (for a line: its service would otherwise read a
// broken line) a raw one is checked first, and none may nest deeper than
// the service takes; a frame's payload is the service's to check, once.
func lineReady(p []byte, raw, check bool) ([]byte, error) {
	if raw {
		if check && !protocol.Valid(p) {
			if json.Valid(p) && nestedOver(p, maxPayloadDepth) {
				return nil, errTooDeep()
			}
			return nil, fmt.Errorf("statebus: payload is not valid JSON (a json.RawMessage must hold one JSON value)")
		}
		if bytes.IndexByte(p, '\n') >= 0 {
			var buf bytes.Buffer
			if err := json.Compact(&buf, p); err != nil {
				return nil, fmt.Errorf("statebus: cannot compact payload: %w", err)
			}
			p = buf.Bytes()
		}
	}
	if check && nestedOver(p, maxPayloadDepth) {
		return nil, errTooDeep()
	}
	return p, nil
}

// errTooDeep is the error of a payload nested deeper than the service
// takes.
func errTooDeep() error {
	return fmt.Errorf("%w: the payload nests more than %d levels deep, the most the service takes in an event (%d levels in a line)",
		protocol.ErrTooDeep, maxPayloadDepth, protocol.MaxDepth)
}

// nestedOver reports whether the JSON p nests more than max levels deep.
// Counting the brackets first keeps it to two fast scans for almost every
// payload.
func nestedOver(p []byte, max int) bool {
	if bytes.Count(p, []byte{'{'})+bytes.Count(p, []byte{'['}) <= max {
		return false
	}
	depth := 0
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '"':
			for i++; i < len(p) && p[i] != '"'; i++ {
				if p[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			if depth++; depth > max {
				return true
			}
		case '}', ']':
			depth--
		}
	}
	return false
}
