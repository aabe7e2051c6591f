// Package statebus is the Go client of the statebus message bus, and of
// any XStateNet InterProcess message bus: processes connect under a machine
// id and send each other named events with JSON payloads.
//
//	c, err := statebus.Dial(ctx, "machine-a")
//	defer c.Close()
//	c.OnEvent("PONG", func(e statebus.Event) { ... })
//	err = c.SendEvent(ctx, "machine-b", "PING", map[string]any{"Message": "Hello"})
//
// A Client is safe for concurrent use. Handlers run on one goroutine per
// client, in the order events arrived, never on the read loop, so a
// handler may send (and wait for acknowledgements) without deadlocking.
package statebus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statebus/statebus/internal/outq"
	"github.com/statebus/statebus/protocol"
)

// Event is an event delivered to this client.
type Event struct {
	// Source is the machine id that sent the event.
	Source string `json:"SourceMachineId"`
	// Target is the id it was sent to ("*" for a broadcast).
	Target string `json:"TargetMachineId"`
	// Name is the event name.
	Name string `json:"EventName"`
	// Payload is the event's JSON payload exactly as the sender wrote it;
	// nil when null.
	Payload json.RawMessage `json:"Payload"`
	// Timestamp is when the sender sent it (zero if it gave none).
	Timestamp time.Time `json:"Timestamp"`
}

// Decode unmarshals the payload into v.
func (e Event) Decode(v any) error {
	if e.Payload == nil {
		return json.Unmarshal([]byte("null"), v)
	}
	return json.Unmarshal(e.Payload, v)
}

// Handler handles an event.
type Handler func(Event)

// Client is a connection to the bus under one machine id. When the
// connection is lost it reconnects by itself (unless WithReconnect(false)):
// it registers and subscribes again and keeps its handlers.
type Client struct {
	id   string
	path string
	opt  options
	seq  atomic.Uint64
	disp *dispatcher
	wg   sync.WaitGroup // reconnect loops

	mu      sync.Mutex
	sess    atomic.Pointer[session] // nil while disconnected; set under mu
	ready   chan struct{}           // closed and replaced when a session is established
	pending map[uint64]pendingCall
	closing bool
	groups  []string     // joined, to join again after a reconnect
	watches []*watchSpec // installed, to install again after a reconnect
	err     error        // why the client stopped for good, once it has

	closed   chan struct{} // closed by Close
	done     chan struct{} // closed when the client stops for good
	stopOnce sync.Once
}

// pendingCall is a request waiting for its response. Data is copied only
// for calls that asked for it.
type pendingCall struct {
	ch   chan response
	data bool
}

type response struct {
	data []byte
	err  error
}

var chanPool = sync.Pool{New: func() any { return make(chan response, 1) }}

// Dial connects to the service, registers id and subscribes it, and
// returns once both were confirmed. It fails if the service cannot be
// reached within the dial timeout (5 s by default) or refuses the id.
func Dial(ctx context.Context, id string, opts ...Option) (*Client, error) {
	if err := protocol.ValidateID([]byte(id)); err != nil {
		return nil, fmt.Errorf("statebus: %w", err)
	}
	return dial(ctx, id, opts)
}

// dial connects, and registers and subscribes id unless it is empty (a
// tool's connection, which never reconnects).
func dial(ctx context.Context, id string, opts []Option) (*Client, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	c := &Client{
		id:      id,
		path:    protocol.PipePath(o.pipeName),
		opt:     o,
		ready:   make(chan struct{}),
		pending: make(map[uint64]pendingCall),
		closed:  make(chan struct{}),
		done:    make(chan struct{}),
	}
	c.disp = newDispatcher(&c.opt)
	c.disp.reply = c.sendReply
	if err := c.establish(ctx); err != nil {
		c.Close()
		var de *DialError
		if errors.As(err, &de) || errors.Is(err, ErrNotConnected) {
			return nil, err // already names the path and the cause
		}
		return nil, fmt.Errorf("statebus: cannot register %q at %s: %w", id, c.path, err)
	}
	return c, nil
}

// ID returns the machine id the client is registered as.
func (c *Client) ID() string { return c.id }

// Done is closed when the client stops for good: Close, or the loss of
// its connection when it does not reconnect.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped for good, or nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Connected reports whether the client has a live, registered connection.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess.Load() != nil
}

// OnEvent adds h for events named name ("*" for every event). Several
// handlers for one name run in the order they were added. Handlers are
// kept across reconnects. The returned function removes h.
func (c *Client) OnEvent(name string, h Handler) (remove func()) {
	return c.disp.add(name, h)
}

// WaitForEvent returns the next event named name ("*" for any) that
// arrives after the call, or ctx's error. To wait for a reply to something
// you send, call it on another goroutine first, or use OnEvent.
func (c *Client) WaitForEvent(ctx context.Context, name string) (Event, error) {
	if ev, ok := c.disp.wait(ctx, name, c.done); ok {
		return ev, nil
	}
	if ctx.Err() != nil {
		return Event{}, ctx.Err()
	}
	return Event{}, c.notConnected()
}

// SendEvent sends an event to target ("*" for every other subscribed
// machine, "@group" for one member of a group) and waits for the service's
// acknowledgement that it was written to the target's connection. payload
// is marshalled with encoding/json; a json.RawMessage is sent as is.
// Errors the service reports wrap the protocol kinds (errors.Is(err,
// ErrTargetNotConnected)). While the client is disconnected it fails at
// once with ErrNotConnected, or waits for the reconnection up to ctx's
// deadline with WithWaitForReconnect.
func (c *Client) SendEvent(ctx context.Context, target, name string, payload any, opts ...SendOption) error {
	_, err := c.send(ctx, target, name, payload, protocol.SendOptions{}, opts)
	return err
}

// PostEvent sends an event without waiting for its acknowledgement: it
// returns once the event is queued for writing, and the service sends no
// acknowledgement. Refusals by the service go to the handler given with
// WithErrorHandler.
func (c *Client) PostEvent(ctx context.Context, target, name string, payload any, opts ...SendOption) error {
	_, err := c.send(ctx, target, name, payload, protocol.SendOptions{NoAck: true}, opts)
	return err
}

// Request sends a request event to target (a machine, or "@group" for one
// of its members) and returns its reply: an Event from target whose
// Payload is what target's handler returned. The caller's deadline travels
// with the request, so the target can skip work nobody waits for. A target
// that is not connected, or that disconnects before replying, fails at
// once with ErrNoResponder; an error the handler returned comes back as a
// *protocol.Error with its text.
func (c *Client) Request(ctx context.Context, target, name string, payload any, opts ...SendOption) (Event, error) {
	o := protocol.SendOptions{Request: true}
	if d, ok := ctx.Deadline(); ok {
		o.TimeoutMs = max(time.Until(d).Milliseconds(), 1)
	}
	data, err := c.send(ctx, target, name, payload, o, opts)
	if err != nil {
		return Event{}, err
	}
	return Event{Source: target, Target: c.id, Name: name, Payload: data, Timestamp: time.Now()}, nil
}

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
type SendOption func(*protocol.SendOptions)

// WithPriority sends the event with priority p (default Normal).
func WithPriority(p Priority) SendOption {
	return func(o *protocol.SendOptions) { o.Priority = string(p) }
}

// send writes one SendEvent line and, unless it is a post, waits for its
// response (the reply's Data for a request).
func (c *Client) send(ctx context.Context, target, name string, payload any, o protocol.SendOptions, opts []SendOption) ([]byte, error) {
	if len(opts) > 0 {
		// Options get a copy: taking o's address would move it to the heap
		// on every call, options or not.
		po := new(protocol.SendOptions)
		*po = o
		for _, f := range opts {
			f(po)
		}
		o = *po
	}
	p, err := encodePayload(payload)
	if err != nil {
		return nil, err
	}
	s, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	var ch chan response
	if !o.NoAck {
		o.ID = c.seq.Add(1)
		ch = c.expect(o.ID, o.Request)
	}
	b, err := s.q.Begin(len(p)+len(target)+len(name)+len(c.id)+200, 0, ctx.Done())
	if err != nil {
		if ch != nil {
			c.forget(o.ID, ch)
		}
		if err == outq.ErrCanceled {
			return nil, ctx.Err()
		}
		return nil, c.notConnected()
	}
	s.q.Commit(protocol.AppendSendEvent(b, c.id, target, name, p, time.Now(), o))
	if ch == nil {
		return nil, nil
	}
	return c.wait(ctx, o.ID, ch)
}

// JoinGroup makes the client a member of group: events sent to "@group"
// go to one member each, round-robin, and "@group:*" reaches all members.
// Membership is kept across reconnects.
func (c *Client) JoinGroup(ctx context.Context, group string) error {
	if err := c.groupCall(ctx, protocol.JoinGroup, group); err != nil {
		return err
	}
	c.mu.Lock()
	if !slices.Contains(c.groups, group) {
		c.groups = append(c.groups, group)
	}
	c.mu.Unlock()
	return nil
}

// LeaveGroup ends the client's membership of group.
func (c *Client) LeaveGroup(ctx context.Context, group string) error {
	c.mu.Lock()
	c.groups = slices.DeleteFunc(c.groups, func(g string) bool { return g == group })
	c.mu.Unlock()
	return c.groupCall(ctx, protocol.LeaveGroup, group)
}

func (c *Client) groupCall(ctx context.Context, t protocol.MessageType, group string) error {
	s, err := c.session(ctx)
	if err != nil {
		return err
	}
	return s.groupCall(ctx, t, group)
}

// HandleRequest sets the handler that answers request events named name
// ("*" for any name without a handler of its own); nil removes it. The
// handler runs on the dispatch goroutine, in order with event handlers.
// Requests with no handler are answered with an error at once.
func (c *Client) HandleRequest(name string, h RequestHandler) {
	c.disp.handle(name, h)
}

// sendReply writes a Reply; a lost connection loses it, and the caller
// learns from the service that no reply will come.
func (c *Client) sendReply(token uint64, payload []byte, errText string) {
	c.mu.Lock()
	s := c.sess.Load()
	c.mu.Unlock()
	if s == nil {
		return
	}
	b, err := s.q.BeginNoWait()
	if err != nil {
		return
	}
	s.q.Commit(protocol.AppendReply(b, token, payload, errText))
}

func encodePayload(payload any) ([]byte, error) {
	switch p := payload.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		if !protocol.Valid(p) {
			return nil, fmt.Errorf("statebus: payload is not valid JSON")
		}
		return p, nil
	}
	p, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("statebus: cannot encode payload: %w", err)
	}
	return p, nil
}

// session returns the live session, waiting for a reconnection up to ctx's
// deadline when the client was asked to.
func (c *Client) session(ctx context.Context) (*session, error) {
	if s := c.sess.Load(); s != nil {
		return s, nil // the common case, without a lock
	}
	for {
		c.mu.Lock()
		s, ready, err := c.sess.Load(), c.ready, c.err
		c.mu.Unlock()
		switch {
		case s != nil:
			return s, nil
		case err != nil:
			return nil, err
		case !c.opt.waitReconnect:
			return nil, fmt.Errorf("%w: reconnecting to %s", ErrNotConnected, c.path)
		}
		select {
		case <-ready:
		case <-c.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: still reconnecting to %s: %v", ErrNotConnected, c.path, ctx.Err())
		}
	}
}

// call writes a request line that carries seq on s and waits for its
// response, returning a copy of its Data when data is true.
func (c *Client) call(ctx context.Context, s *session, seq uint64, line []byte, data bool) ([]byte, error) {
	ch := c.expect(seq, data)
	b, err := s.q.Begin(len(line), 0, ctx.Done())
	if err != nil {
		c.forget(seq, ch)
		if err == outq.ErrCanceled {
			return nil, ctx.Err()
		}
		return nil, c.notConnected()
	}
	s.q.Commit(append(b, line...))
	return c.wait(ctx, seq, ch)
}

func (c *Client) expect(seq uint64, data bool) chan response {
	ch := chanPool.Get().(chan response)
	c.mu.Lock()
	c.pending[seq] = pendingCall{ch, data}
	c.mu.Unlock()
	return ch
}

// forget drops a pending call; ch goes back to the pool only when no
// response can still be sent to it.
func (c *Client) forget(seq uint64, ch chan response) {
	c.mu.Lock()
	_, ok := c.pending[seq]
	delete(c.pending, seq)
	c.mu.Unlock()
	if ok {
		chanPool.Put(ch)
	}
}

func (c *Client) wait(ctx context.Context, seq uint64, ch chan response) ([]byte, error) {
	select {
	case r := <-ch:
		chanPool.Put(ch)
		return r.data, r.err
	case <-ctx.Done():
		c.forget(seq, ch)
		return nil, ctx.Err()
	}
}

func (c *Client) notConnected() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrNotConnected
}

// stop ends the client for good after a connection loss it will not
// recover from: undelivered events are still dispatched, then cause goes
// to the error handler.
func (c *Client) stop(cause error) {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.err = cause
		c.mu.Unlock()
		close(c.done)
		c.disp.enqueue(item{err: cause})
		c.disp.close(false)
	})
}

// Close flushes what is queued, unregisters the client's machine id (so
// the id is free for another connection when Close returns), closes the
// connection, stops reconnecting and waits for the client's goroutines,
// including a handler that is running. It is safe to call more than once
// and from a handler (which it then does not wait for).
func (c *Client) Close() error {
	c.mu.Lock()
	first := !c.closing
	c.closing = true
	s := c.sess.Load()
	c.mu.Unlock()
	if first {
		close(c.closed)
	}
	if s != nil {
		if first && c.id != "" {
			// Unregister first, so the id is free when Close returns.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			seq := c.seq.Add(1)
			c.call(ctx, s, seq, protocol.AppendMachineRequest(nil, protocol.Unregister, seq, c.id), false)
			cancel()
		}
		s.end(fmt.Errorf("%w: client closed", ErrNotConnected), true)
		s.wait()
	}
	c.wg.Wait()
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.err = fmt.Errorf("%w: client closed", ErrNotConnected)
		c.mu.Unlock()
		close(c.done)
		c.disp.close(true)
	})
	if goid() != c.disp.gid.Load() {
		<-c.disp.done // a running handler finishes first
	}
	return nil
}
