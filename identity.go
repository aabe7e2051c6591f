package statebus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/statebus/statebus/protocol"
)

// Identity is a further machine id that a Client holds on its own
// connection (Client.Register): it has its own event and request
// handlers, group memberships and state, and sends as its id, while the
// connection, its limits, its reconnection and its lifecycle are the
// client's. Events for it never reach the client's handlers, nor
// another identity's. Its handlers run on a goroutine of its own, in the
// order its events arrived, with pending limits of their own
// (WithPendingLimits), so an identity whose handlers are slow holds up
// no other.
//
// A reconnection registers and subscribes every identity the client
// holds again, in the order they were registered, after the client's own
// id, and sets their groups and states again. An identity the service
// refuses then (another connection took its id meanwhile) is no longer
// held: its Done is closed, Err says why, and the client's error handler
// is told.
type Identity struct {
	c    *Client
	id   string
	disp *dispatcher
	gone atomic.Pointer[error] // why it is no longer held; nil while it is

	// Guarded by c.mu.
	groups []string      // the groups to be a member of
	state  string        // the state to have in the registry
	done   chan struct{} // closed when it is no longer held, or the client closed
	ended  bool          // done is closed
}

// IdentityOption sets up an Identity in Client.Register, before its id
// is registered.
type IdentityOption func(*Identity)

// IdentityHandler adds h for the identity's events named name ("*" for
// every one) before its id is registered, as WithHandler does for the
// client's: an event sent the moment the id appears finds it.
func IdentityHandler(name string, h Handler) IdentityOption {
	return func(x *Identity) { x.OnEvent(name, h) }
}

// IdentityErrorHandler receives the errors that belong to the identity:
// the service's refusal of an event it posted (PostEvent; on a connection
// that holds several ids the service names the id a refused event was
// sent as), a *SlowConsumerError when its handlers fall behind, a group or
// state the service refused to set up again after a reconnection. It runs
// on the identity's dispatch goroutine, in order with its handlers.
// Without it they go to the client's error handler (WithErrorHandler),
// prefixed with the id. What nobody can tell the sender of (a post that
// failed after it was queued for its target) goes to the client's.
func IdentityErrorHandler(h func(error)) IdentityOption {
	return func(x *Identity) { x.disp.onErr = h }
}

// IdentityRequestHandler sets the handler for the identity's requests
// named name before its id is registered, as WithRequestHandler does for
// the client's.
func IdentityRequestHandler(name string, h RequestHandler) IdentityOption {
	return func(x *Identity) { x.HandleRequest(name, h) }
}

// errUnregistered is Err of an identity after its Unregister.
var errUnregistered = errors.New("statebus: the id was unregistered (Identity.Unregister)")

// Register registers and subscribes id on the client's connection, next
// to the client's own id, and returns it as an Identity. It waits for the
// service's answer. It fails if id is already held by this client or by
// another connection, and once the connection holds as many ids as the
// service allows (its MaxIdsPerConnection, 64 by default, the client's
// own id included): then Dial another Client for more. While the client
// reconnects it fails with ErrNotConnected (or waits, with
// WithWaitForReconnect). If the connection is lost before the answer, the
// identity is kept and the next connection registers it.
//
// Register and Identity.Unregister are serialized with JoinGroup and
// Watch and with a reconnection's handshake.
func (c *Client) Register(ctx context.Context, id string, opts ...IdentityOption) (*Identity, error) {
	if err := protocol.ValidateID([]byte(id)); err != nil {
		return nil, fmt.Errorf("statebus: %w", err)
	}
	if c.id == "" && !c.opt.holder {
		return nil, errors.New("statebus: this connection is a tool's (Health, Machines): Dial or Connect a client to register ids")
	}
	x := &Identity{c: c, id: id, done: make(chan struct{})}
	x.disp = newDispatcher(c, id)
	if h := c.opt.errorHandler; h != nil {
		x.disp.onErr = func(err error) { h(fmt.Errorf("statebus: as %q: %w", id, err)) }
	}
	for _, f := range opts {
		f(x)
	}
	x2, err := c.register(ctx, x)
	if err != nil {
		x.disp.close(true)
	}
	return x2, err
}

func (c *Client) register(ctx context.Context, x *Identity) (*Identity, error) {
	s, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.acquire(ctx, true); err != nil {
		return nil, err
	}
	defer c.release()
	c.mu.Lock()
	switch {
	case x.id == c.id || c.identity(x.id) != nil:
		err = fmt.Errorf("statebus: %q is already registered on this client", x.id)
	case c.cur != s:
		err = fmt.Errorf("%w: the connection to %s was lost", ErrNotConnected, c.path)
	default:
		// Routed to x before the service is asked: nothing sent the
		// moment the id appears is missed.
		c.idents = append(c.idents, x)
		c.publishIdents()
	}
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	registered, err := s.registerID(ctx, x.id, x.disp.dur != nil)
	switch {
	case err == nil:
		return x, nil
	case errors.Is(err, ErrNotConnected):
		return x, nil // the next connection registers it
	}
	c.forget(x, err)
	if registered || !refused(err) {
		s.post(protocol.AppendMachineRequest(nil, protocol.Unregister, 0, x.id)) // the service may hold it
	}
	switch {
	case errors.Is(err, ErrLimit):
		return nil, fmt.Errorf("statebus: cannot register %q on this client's connection: %w; Dial (or Connect) another Client for more ids, or raise the service's MaxIdsPerConnection", x.id, err)
	case errors.Is(err, ErrIDInUse):
		return nil, fmt.Errorf("statebus: cannot register %q: %w (another connection holds it; it is free once that one unregisters it or disconnects)", x.id, err)
	}
	return nil, fmt.Errorf("statebus: cannot register %q at %s: %w", x.id, c.path, err)
}

// registerID registers and subscribes id on s, declared durable with
// durable (WithDurable, IdentityDurable); registered reports whether the
// Register was accepted.
func (s *session) registerID(ctx context.Context, id string, durable bool) (registered bool, err error) {
	c := s.c
	seq := c.seq.Add(1)
	reg := protocol.AppendRegister
	if durable {
		reg = protocol.AppendRegisterDurable
	}
	line := reg(nil, seq, id, c.opt.processName, os.Getpid(), time.Now())
	ask := c.opt.framing == FramingCompact && !s.compact.Load()
	if ask {
		line = protocol.AskFraming(line)
	}
	data, err := s.call(ctx, seq, line, ask)
	if err != nil {
		return false, err
	}
	if ask && string(protocol.Field(data, "Framing")) == `"`+protocol.Framing+`"` {
		s.compact.Store(true)
	}
	seq = c.seq.Add(1)
	_, err = s.call(ctx, seq, protocol.AppendMachineRequest(nil, protocol.Subscribe, seq, id), false)
	return true, err
}

// post writes a line without waiting for anything: its answer, which
// carries no Id, is ignored.
func (s *session) post(line []byte) {
	b, err := s.q.beginNoWait()
	if err != nil {
		return
	}
	s.q.commit(append(b, line...))
}

// identity returns the identity id, or nil; c.mu is held.
func (c *Client) identity(id string) *Identity {
	for _, x := range c.idents {
		if x.id == id {
			return x
		}
	}
	return nil
}

// publishIdents makes c.idents the reader's routing table; c.mu is held.
func (c *Client) publishIdents() {
	if len(c.idents) == 0 {
		c.routes.Store(nil)
		return
	}
	m := make(map[string]*Identity, len(c.idents))
	for _, x := range c.idents {
		m[x.id] = x
	}
	c.routes.Store(&m)
}

// forget stops holding x: no connection registers it again, events for
// it are dropped, and its handlers are not called again.
func (c *Client) forget(x *Identity, cause error) {
	c.mu.Lock()
	if x.gone.Load() == nil {
		x.gone.Store(&cause)
		c.idents = slices.DeleteFunc(c.idents, func(y *Identity) bool { return y == x })
		c.publishIdents()
		x.end()
	}
	c.mu.Unlock()
	x.disp.close(true)
}

// end closes x.done once; c.mu is held.
func (x *Identity) end() {
	if !x.ended {
		x.ended = true
		close(x.done)
	}
}

// dispatcherFor returns the dispatcher of the id a delivery is for: the
// one named by "For" (the service names it on a connection that holds
// several ids), else the identity the event is addressed to, else the
// client's own. nil: it is for an id the client no longer holds.
func (s *session) dispatcherFor(r *protocol.Response) *dispatcher {
	c := s.c
	m := c.routes.Load()
	if r.For == nil {
		if m != nil {
			if x := (*m)[string(r.Event.Target)]; x != nil {
				return x.disp
			}
		}
		return c.disp
	}
	name := r.For[1 : len(r.For)-1]
	if bytes.IndexByte(name, '\\') >= 0 {
		var v string
		if json.Unmarshal(r.For, &v) != nil {
			return nil
		}
		name = []byte(v)
	}
	if m != nil {
		if x := (*m)[string(name)]; x != nil {
			return x.disp
		}
	}
	if string(name) == c.id {
		return c.disp
	}
	return nil
}

// errorDispatcher returns the dispatcher an error from the service goes
// to: that of the id the service names (forID, the raw "For"; it names
// the id a refused event was sent as on a connection that holds several),
// or, when it names none, the client's, or the only identity of a client
// without an id of its own (Connect), whose connection has no other.
func (c *Client) errorDispatcher(forID []byte) *dispatcher {
	if forID != nil {
		s := session{c: c}
		if d := s.dispatcherFor(&protocol.Response{For: forID}); d != nil {
			return d
		}
		return c.disp
	}
	if c.id == "" {
		if m := c.routes.Load(); m != nil && len(*m) == 1 {
			for _, x := range *m {
				return x.disp
			}
		}
	}
	return c.disp
}

// Unregister gives the id back to the service and stops holding it: once
// it returns, the service refuses events to it (their senders get
// "Target machine not connected"), events for it still on their way are
// dropped, and its handlers are not called again (but one that is running
// finishes; Unregister may be called from a handler). Requests for it
// that wait for its handlers are answered with an error. While the client
// reconnects it just forgets the id, which the next connection does not
// register. Calling it again returns nil.
func (x *Identity) Unregister(ctx context.Context) error {
	c := x.c
	if x.gone.Load() != nil {
		return nil
	}
	if err := c.acquire(ctx, true); err != nil {
		return err
	}
	defer c.release()
	c.mu.Lock()
	s := c.cur
	c.mu.Unlock()
	var err error
	if s != nil && x.gone.Load() == nil {
		seq := c.seq.Add(1)
		_, err = s.call(ctx, seq, protocol.AppendMachineRequest(nil, protocol.Unregister, seq, x.id), false)
		if errors.Is(err, ErrNotConnected) {
			err = nil // the id went with the connection
		}
	}
	c.forget(x, errUnregistered)
	return err
}

// ID returns the identity's machine id.
func (x *Identity) ID() string { return x.id }

// Client returns the client whose connection holds the identity.
func (x *Identity) Client() *Client { return x.c }

// Done is closed when the identity is no longer held (Unregister, or a
// refusal when the client registered it again after reconnecting), or the
// client closed.
func (x *Identity) Done() <-chan struct{} {
	x.c.mu.Lock()
	defer x.c.mu.Unlock()
	return x.done
}

// Err returns why the identity is no longer held, nil while it is (or
// when only its client closed: see the client's Err).
func (x *Identity) Err() error {
	if p := x.gone.Load(); p != nil {
		return *p
	}
	return nil
}

// OnEvent adds h for the identity's events named name ("*" for every
// event), as Client.OnEvent does for the client's. The returned function
// removes it.
func (x *Identity) OnEvent(name string, h Handler) (remove func()) {
	remove = x.disp.add(name, h)
	x.disp.handlerAdded()
	return remove
}

// HandleRequest sets the handler for the identity's requests named name
// ("*" for any without a handler of its own), as Client.HandleRequest
// does for the client's; nil removes it.
func (x *Identity) HandleRequest(name string, h RequestHandler) {
	x.disp.handle(name, h)
}

// WaitForEvent returns the identity's next event named name ("*" for any)
// that arrives after the call, or ctx's error, or the reason it is no
// longer held.
func (x *Identity) WaitForEvent(ctx context.Context, name string) (Event, error) {
	if ev, ok := x.disp.wait(ctx, name, x.Done()); ok {
		return ev, nil
	}
	if ctx.Err() != nil {
		return Event{}, ctx.Err()
	}
	if err := x.Err(); err != nil {
		return Event{}, err
	}
	return Event{}, x.c.Err()
}

// Dropped returns how many of the identity's events were dropped because
// its handlers did not keep up (see WithPendingLimits).
func (x *Identity) Dropped() uint64 { return x.disp.dropped.Load() }

// SendEvent sends an event from the identity's id, as Client.SendEvent.
func (x *Identity) SendEvent(ctx context.Context, target, name string, payload any, opts ...SendOption) error {
	if err := x.Err(); err != nil {
		return err
	}
	_, err := x.c.send(ctx, x.id, target, name, payload, sendAck, opts)
	return err
}

// PostEvent sends an event from the identity's id without waiting for its
// acknowledgement, as Client.PostEvent.
func (x *Identity) PostEvent(ctx context.Context, target, name string, payload any, opts ...SendOption) error {
	if err := x.Err(); err != nil {
		return err
	}
	_, err := x.c.send(ctx, x.id, target, name, payload, sendPost, opts)
	return err
}

// Request sends a request from the identity's id and returns its reply,
// as Client.Request.
func (x *Identity) Request(ctx context.Context, target, name string, payload any, opts ...SendOption) (Event, error) {
	if err := x.Err(); err != nil {
		return Event{}, err
	}
	data, err := x.c.send(ctx, x.id, target, name, payload, sendReq, opts)
	if err != nil {
		return Event{}, err
	}
	return Event{Target: x.id, Name: name, Payload: data}, nil
}

// SetState records state next to the identity's id in the service's
// registry, as Client.SetState does for the client's.
func (x *Identity) SetState(ctx context.Context, state string) error {
	if err := x.Err(); err != nil {
		return err
	}
	return x.c.setState(ctx, x, state)
}

// JoinGroup makes the identity a member of group, as Client.JoinGroup
// does for the client's id. The service counts the memberships of all the
// ids of a connection against its MaxGroupsPerConnection.
func (x *Identity) JoinGroup(ctx context.Context, group string) error {
	if err := x.Err(); err != nil {
		return err
	}
	return x.c.joinGroup(ctx, x, group)
}

// LeaveGroup ends the identity's membership of group.
func (x *Identity) LeaveGroup(ctx context.Context, group string) error {
	if err := x.Err(); err != nil {
		return err
	}
	return x.c.leaveGroup(ctx, x, group)
}
