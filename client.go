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
// What waits for the handlers is bounded (WithPendingLimits): beyond it
// events are dropped, counted (Dropped) and reported as a slow consumer.
//
// # Lifecycle
//
// A client has one Status, changed in one place (under one lock) and
// reported to WithStatusHandler:
//
//	from          to            when
//	Connecting    Connected     Dial registered and subscribed on a live connection
//	Connecting    Closed        Dial failed (its error says why)
//	Connected     Reconnecting  the connection was lost (reconnection is on)
//	Connected     Draining      Drain
//	Connected     Closed        Close, or the connection was lost (reconnection off)
//	Reconnecting  Connected     a new connection registered, subscribed, and joined
//	                            the groups and installed the watches again
//	Reconnecting  Closed        Close or Drain
//	Draining      Closed        Drain finished (or its context ended), Close, or the loss
//
// A connection that is lost during the handshake is never made the
// client's: the attempt fails (Dial returns an error; a reconnection tries
// again). Each call belongs to the connection it was written on and fails
// with ErrNotConnected if that one is lost before the answer; calls made
// while Reconnecting fail with ErrNotConnected (or wait, with
// WithWaitForReconnect); once Closed, everything fails with ErrClosed.
//
// # Whom it talks to
//
// On every connect and reconnect the client asks the kernel which user
// serves the socket (SO_PEERCRED) and refuses any but root and its own
// user (WithServerUID, STATEBUS_SERVER_UID) with an *UntrustedServerError:
// the default socket lives in world-writable /tmp, where anyone could bind
// it first. Linux, macOS and FreeBSD check; Windows does not.
//
// # Several ids on one connection
//
// Register adds a further machine id to the client's connection, as an
// Identity with handlers, groups and a state of its own, which sends as
// its id: one connection (one of the service's MaxConnections) serves up
// to the service's MaxIdsPerConnection ids (64 by default). A
// reconnection registers them all again, in order. See docs/client.md.
//
// # Remote services
//
// WithURL("tls://host:9556") reaches a statebusd on another host over
// mutual TLS (or $STATEBUS_URL): the client checks the server's
// certificate against its CA and presents its own (WithTLSFiles,
// WithTLSConfig, or $STATEBUS_TLS_CA, $STATEBUS_TLS_CLIENT_CERT and
// $STATEBUS_TLS_CLIENT_KEY), by which the service knows it. Everything
// else is as over the socket. See docs/remote.md.
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
	// Sequence is the event's number in the durable mailbox of the id it
	// was delivered to (WithDurable, IdentityDurable); 0 for other events.
	Sequence uint64 `json:"-"`
	durGen   uint64 // the durable generation it was received in
	// TraceParent and TraceState are the W3C trace context the sender
	// attached (WithTracerProvider), "" when none; see TraceContext.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
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
// it registers and subscribes again, joins its groups and installs its
// watches again, and keeps its handlers.
type Client struct {
	id     string
	path   string // where it connects, for messages: the socket path or the URL
	target target
	opt    options
	seq    atomic.Uint64
	disp   *dispatcher
	sess   atomic.Pointer[session] // the session calls use; set by setStatus only

	ctx    context.Context // ends when the client is Closed
	cancel context.CancelFunc
	wg     sync.WaitGroup // the reconnect loop

	// sem serializes the setting up of groups and watches on the service:
	// JoinGroup, LeaveGroup, Watch and a watch's stop against the
	// handshake of a new connection and Drain.
	sem chan struct{}

	mu      sync.Mutex
	status  Status
	cur     *session      // the session of Connected and Draining
	ready   chan struct{} // closed and replaced when Connecting or Reconnecting ends
	closing chan struct{} // closed on Draining or Closed
	done    chan struct{} // closed on Closed
	stopped chan struct{} // closed when Closed and the client's goroutines but the dispatcher are done
	err     error         // why the client is Closed
	groups  []string      // the groups to be a member of
	watches []*watchSpec  // the watches to have installed
	state   string        // the state to have in the registry (SetState)
	idents  []*Identity   // the further ids to hold (Register), in order

	// routes maps the ids in idents to them, for the reader; nil when
	// there are none. Replaced, never changed, under mu.
	routes atomic.Pointer[map[string]*Identity]
}

// Dial connects to the service, checks that it is served by a trusted
// user, registers id and subscribes it, and returns once that was
// confirmed. It fails if the service cannot be reached within the dial
// timeout (5 s by default) or refuses the id.
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
	if o.err != nil {
		return nil, o.err
	}
	t, err := o.resolveTarget(protocol.PipePath(o.pipeName))
	if err != nil {
		return nil, err
	}
	c := &Client{
		id:      id,
		path:    t.name,
		target:  t,
		opt:     o,
		sem:     make(chan struct{}, 1),
		status:  Connecting,
		ready:   make(chan struct{}),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.disp = newDispatcher(c, id)
	c.disp.onErr = o.errorHandler
	if o.durable && id != "" {
		c.disp.dur = &durMailbox{id: id, manualAck: o.manualAck}
	}
	for _, install := range o.handlers {
		install(c)
	}
	if err := c.establish(ctx, 0); err != nil {
		c.closeWith(err, false)
		var de *DialError
		var ue *UntrustedServerError
		if errors.As(err, &de) || errors.As(err, &ue) || errors.Is(err, ErrUntrustedServer) || errors.Is(err, ErrNotConnected) || errors.Is(err, ErrClosed) {
			return nil, err // already names the path and the cause
		}
		return nil, fmt.Errorf("statebus: cannot register %q at %s: %w", id, c.path, err)
	}
	return c, nil
}

// Connect connects to the service without a machine id of its own: the
// client holds only the ids it registers (Register), each an Identity,
// and reconnects as one made by Dial does, registering them all again.
// Having no id, it cannot send, set a state or join a group itself: its
// identities do. A connection that holds no id at all is still served
// (the client tells the service it is not a stray connection).
// Package orchestrator hosts its machines on clients made so.
func Connect(ctx context.Context, opts ...Option) (*Client, error) {
	return dial(ctx, "", append(slices.Clip(opts), func(o *options) { o.holder = true }))
}

// errNoID is the error of a call that needs the client's own id on a
// client made by Connect.
var errNoID = errors.New("statebus: this client has no machine id of its own (it was made by Connect): act through one of its identities (Register)")

// ID returns the machine id the client is registered as ("" for one made
// by Connect).
func (c *Client) ID() string { return c.id }

// Dropped returns how many events were dropped because the client's
// handlers did not keep up (see WithPendingLimits).
func (c *Client) Dropped() uint64 { return c.disp.dropped.Load() }

// Pending returns the events, and their payload bytes, received and not
// yet handled: queued, or with a handler running.
func (c *Client) Pending() (events, bytes int) { return c.disp.pending() }

// OnEvent adds h for events named name ("*" for every event). Several
// handlers for one name run in the order they were added. Handlers are
// kept across reconnects. The returned function removes h.
func (c *Client) OnEvent(name string, h Handler) (remove func()) {
	remove = c.disp.add(name, h)
	c.disp.handlerAdded()
	return remove
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
	return Event{}, c.Err()
}

// HandleRequest sets the handler that answers request events named name
// ("*" for any name without a handler of its own); nil removes it. The
// handler runs on the dispatch goroutine, in order with event handlers.
// Requests with no handler are answered with an error at once.
func (c *Client) HandleRequest(name string, h RequestHandler) {
	c.disp.handle(name, h)
}

// session returns the session to call on: the live one, or, while
// reconnecting, an error or (WithWaitForReconnect) the next one, up to
// ctx's end.
func (c *Client) session(ctx context.Context) (*session, error) {
	if s := c.sess.Load(); s != nil {
		return s, nil // the common case, without a lock
	}
	for {
		c.mu.Lock()
		s, status, ready, err := c.sess.Load(), c.status, c.ready, c.err
		c.mu.Unlock()
		switch {
		case s != nil:
			return s, nil
		case status == Closed:
			return nil, err
		case !c.opt.waitReconnect:
			return nil, fmt.Errorf("%w: reconnecting to %s", ErrNotConnected, c.path)
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: still reconnecting to %s: %w", ErrNotConnected, c.path, ctx.Err())
		}
	}
}

// acquire takes c.sem, waiting up to ctx's end. A user's wait (user true)
// also ends when the client starts draining or closes.
func (c *Client) acquire(ctx context.Context, user bool) error {
	closing := c.closing
	if !user {
		closing = nil
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-closing:
		return c.closedErr()
	}
	if user {
		select {
		case <-closing: // both were ready, and select chose sem
			c.release()
			return c.closedErr()
		default:
		}
	}
	return nil
}

func (c *Client) release() { <-c.sem }

// closedErr is the error of a call made while Draining or Closed.
func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return fmt.Errorf("%w: draining", ErrClosed)
}

// JoinGroup makes the client a member of group: events sent to "@group"
// go to one member each, round-robin, and "@group:*" reaches all members.
// The membership is recorded before the service is asked, and kept across
// reconnects: while the client reconnects, JoinGroup records it and
// returns nil, and the new connection joins. A refusal by the service is
// returned and not recorded. If ctx ends before the answer, the
// membership stays recorded (the service may have made it): LeaveGroup
// undoes it.
func (c *Client) JoinGroup(ctx context.Context, group string) error {
	return c.joinGroup(ctx, nil, group)
}

// LeaveGroup ends the client's membership of group.
func (c *Client) LeaveGroup(ctx context.Context, group string) error {
	return c.leaveGroup(ctx, nil, group)
}

// idOf returns the machine id of x, the client's own for nil.
func (c *Client) idOf(x *Identity) string {
	if x == nil {
		return c.id
	}
	return x.id
}

// dispOf returns the dispatcher of x, the client's for nil.
func (c *Client) dispOf(x *Identity) *dispatcher {
	if x == nil {
		return c.disp
	}
	return x.disp
}

// groupsOf returns the recorded groups of x (the client's for nil); c.mu
// is held.
func (c *Client) groupsOf(x *Identity) *[]string {
	if x == nil {
		return &c.groups
	}
	return &x.groups
}

func (c *Client) joinGroup(ctx context.Context, x *Identity, group string) error {
	if c.idOf(x) == "" {
		return errNoID
	}
	if err := c.acquire(ctx, true); err != nil {
		return err
	}
	defer c.release()
	c.mu.Lock()
	s := c.cur
	gs := c.groupsOf(x)
	added := !slices.Contains(*gs, group)
	if added {
		*gs = append(*gs, group)
	}
	c.mu.Unlock()
	if s == nil {
		return nil // reconnecting: the handshake joins
	}
	err := s.groupCall(ctx, protocol.JoinGroup, group, c.idOf(x))
	switch {
	case errors.Is(err, ErrNotConnected):
		return nil // the connection was lost: the next one joins
	case refused(err) && added:
		c.forgetGroup(x, group)
	}
	return err
}

func (c *Client) leaveGroup(ctx context.Context, x *Identity, group string) error {
	if err := c.acquire(ctx, true); err != nil {
		return err
	}
	defer c.release()
	c.forgetGroup(x, group)
	c.mu.Lock()
	s := c.cur
	c.mu.Unlock()
	if s == nil {
		return nil // reconnecting: the new connection will not join
	}
	err := s.groupCall(ctx, protocol.LeaveGroup, group, c.idOf(x))
	if errors.Is(err, ErrNotConnected) {
		return nil
	}
	return err
}

func (c *Client) forgetGroup(x *Identity, group string) {
	c.mu.Lock()
	gs := c.groupsOf(x)
	*gs = slices.DeleteFunc(*gs, func(g string) bool { return g == group })
	c.mu.Unlock()
}

// Close closes the client at once: it writes what is queued (for at most
// a second), closes the connection and stops reconnecting. It does not
// wait for the service to answer anything: the service frees the
// client's machine ids when it reads the end of the connection, and a
// registration of one of them that arrives before that waits for it, so
// the id is free for another connection when Close returns. (On a named
// pipe, which does not let the service see that, Close unregisters the
// id and waits for the answer.) Events not yet handled are dropped; Close does not wait
// for a handler that is running, so it may be called from one. Calls in
// progress fail with ErrClosed. It is safe to call more than once; every
// call returns once the connection is closed. For a graceful stop, use
// Drain.
func (c *Client) Close() error {
	c.closeWith(ErrClosed, true)
	return nil
}

// closeWith moves the client to Closed with cause and ends its session;
// unregister asks the service to free the id first.
func (c *Client) closeWith(cause error, unregister bool) {
	c.mu.Lock()
	s := c.cur
	first := c.setStatus(Closed, nil, cause, 0)
	c.mu.Unlock()
	if !first {
		<-c.stopped
		return
	}
	if s != nil && unregister && !closeFrees(s.nc) && (c.id != "" || c.opt.holder) && !s.unregistered.Load() {
		c.mu.Lock()
		ids := make([]string, 0, len(c.idents)+1)
		for _, x := range c.idents {
			ids = append(ids, x.id)
		}
		c.mu.Unlock()
		if c.id != "" {
			ids = append(ids, c.id)
		}
		for i, id := range ids {
			if i < len(ids)-1 {
				// The service answers in order: the answer to the last
				// comes once these are free too.
				s.post(protocol.AppendMachineRequest(nil, protocol.Unregister, 0, id))
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(c.opt.dialTimeout, time.Second))
			seq := c.seq.Add(1)
			s.call(ctx, seq, protocol.AppendMachineRequest(nil, protocol.Unregister, seq, id), false)
			cancel()
		}
	}
	if s != nil {
		s.shutdown(ErrClosed)
	}
	c.finish(nil)
}

// finish waits for the client's goroutines (but the dispatcher, which
// may be running a handler) and marks the client stopped.
func (c *Client) finish(s *session) {
	if s != nil {
		s.wait()
	}
	c.wg.Wait()
	close(c.stopped)
}

// Drain stops the client gracefully: it leaves its groups and stops its
// watches, lets the handlers run every event received so far (they may
// still send), unregisters its machine id (from then on the service
// refuses events to it, and its handlers can no longer send as it), lets
// the handlers run what arrived meanwhile, waits for calls in progress,
// and closes. If ctx ends first, it closes at once and returns ctx's
// error. While the client reconnects it just closes; while another Drain
// runs it waits for that one (up to ctx's end).
//
// Drain waits for the handlers, so a handler must not call it (it would
// wait until ctx ends): run it on a goroutine of its own.
func (c *Client) Drain(ctx context.Context) error {
	c.mu.Lock()
	s := c.cur
	ok := c.setStatus(Draining, nil, nil, 0)
	status := c.status
	c.mu.Unlock()
	if !ok {
		switch status {
		case Closed:
			<-c.stopped
		case Draining: // another Drain runs
			select {
			case <-c.stopped:
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			c.closeWith(ErrClosed, true)
		}
		return nil
	}
	err := c.drain(ctx, s)
	c.closeWith(ErrClosed, true)
	if err != nil {
		return fmt.Errorf("statebus: drain stopped early, the client closed at once: %w", err)
	}
	return nil
}

func (c *Client) drain(ctx context.Context, s *session) error {
	if err := c.acquire(ctx, false); err != nil {
		return err
	}
	defer c.release()
	c.mu.Lock()
	groups := slices.Clone(c.groups)
	watches := slices.Clone(c.watches)
	idents := slices.Clone(c.idents)
	igroups := make([][]string, len(idents))
	for i, x := range idents {
		igroups[i] = slices.Clone(x.groups)
	}
	c.mu.Unlock()
	for _, g := range groups {
		if err := s.groupCall(ctx, protocol.LeaveGroup, g, c.id); err != nil && !refused(err) {
			return err
		}
	}
	for i, x := range idents {
		for _, g := range igroups[i] {
			if err := s.groupCall(ctx, protocol.LeaveGroup, g, x.id); err != nil && !refused(err) {
				return err
			}
		}
	}
	for _, ws := range watches {
		if err := c.unwatch(ctx, ws); err != nil && !refused(err) {
			return err
		}
	}
	if err := c.barriers(ctx, idents); err != nil {
		return err
	}
	if c.id != "" || c.opt.holder {
		for _, x := range idents {
			seq := c.seq.Add(1)
			if _, err := s.call(ctx, seq, protocol.AppendMachineRequest(nil, protocol.Unregister, seq, x.id), false); err != nil {
				return err
			}
		}
		if c.id != "" {
			seq := c.seq.Add(1)
			if _, err := s.call(ctx, seq, protocol.AppendMachineRequest(nil, protocol.Unregister, seq, c.id), false); err != nil {
				return err
			}
		}
		s.unregistered.Store(true)
		if err := c.barriers(ctx, idents); err != nil {
			return err
		}
	}
	return s.waitIdle(ctx)
}

// barriers waits until the client's handlers and those of idents have run
// everything queued before the call.
func (c *Client) barriers(ctx context.Context, idents []*Identity) error {
	if err := c.disp.barrier(ctx); err != nil {
		return err
	}
	for _, x := range idents {
		if err := x.disp.barrier(ctx); err != nil && err != ErrClosed {
			return err
		}
	}
	return nil
}
