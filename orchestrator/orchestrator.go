// Package orchestrator hosts state machines (package statechart) in a
// process and addresses them by id anywhere on the bus.
//
// It owns three things: machine hosting (each machine registered here is
// started, fed and stopped by the orchestrator, and registered on the bus
// under its id, on a bus connection it shares with up to 63 other machines
// of this process); mailboxes (every event to
// a machine, whatever sent it, waits in that machine's mailbox and is
// processed one at a time, in arrival order); and addressing (Send and Post
// deliver to a machine of this process directly and to any other through the
// bus, with the same call, so moving a machine to another process changes no
// code).
//
//	o := orchestrator.New(orchestrator.WithBus())
//	defer o.Close()
//	o.Register(ctx, "pong", pongDef)
//	res, err := o.Send(ctx, "ping", "pong", "PING", nil) // res.NewState == "#pong.ponging"
//
// Actions send through the orchestrator: a machine's Scope.Send,
// SendSelf and SendAfter (XStateNet's RequestSend, RequestSelfSend and
// delayed send) are delivered once the transition that made them has
// completed, as posts from that machine. An action must not call the
// orchestrator's Send: it runs in its machine's mailbox loop, which would
// then wait for itself (or for a machine that waits for it).
//
// # Send and Post
//
// Send waits for the target machine to process the event and returns
// XStateNet's EventResult: its new state, or why it failed. To a machine of
// this process it is a call into its mailbox; to any other it is a request
// on the bus (statebus.Client.Request), answered by the orchestrator that
// hosts the target. Its deadline is ctx's, or WithSendTimeout's (5 s) when
// ctx has none. Post queues the event and returns; to another process it is
// a statebus PostEvent, whose refusals reach WithErrorHandler.
//
// Errors: Send returns a non-nil error exactly when EventResult.Success is
// false, and EventResult.Error is that error's text. The bus's errors are
// the client's (*protocol.Error, with the text on the wire: a target no
// process hosts is "No responder: ID is not connected", which matches
// statebus.ErrNoResponder); the orchestrator's own match ErrClosed,
// ErrMailboxFull, ErrMachineStopped or ErrEventFailed with errors.Is,
// whichever process's orchestrator made them.
//
// # Mailboxes
//
// A mailbox holds at most WithMailboxSize events (default 1024) from
// others, and as many more of the machine's own (its self-sends, after
// timers and services' results). When it is full:
//
//   - Send waits for room up to its deadline (the caller waits for the
//     result anyway);
//   - Post fails at once with ErrMailboxFull (it never blocks);
//   - an action's send to a machine of this process is not delivered, and
//     the error (ErrMailboxFull) goes to WithErrorHandler: a machine never
//     waits for another's mailbox, so two machines that fill each other's
//     cannot deadlock;
//   - an event or request from the bus waits for room (up to the request's
//     deadline), holding up that machine's bus identity (not the other
//     machines on its connection): further events for it wait in its
//     pending queue, whose limit (statebus.WithPendingLimits, per machine)
//     then drops them and reports a *statebus.SlowConsumerError;
//   - the machine's own events beyond their share are dropped and reported.
//
// # State on the bus
//
// After a machine's state changes, the orchestrator records it in the
// service's registry (statebus.Client.SetState), where `statebus machines`
// and /machines show it. It sends the latest state when the previous one is
// acknowledged, so a busy machine costs one line per round trip, not one per
// transition. A state longer than statebus.MaxStateBytes is cut at a region
// boundary and ends in "…".
//
// # Lifecycle
//
// Close is the one stop path: it stops every mailbox (a Send waiting on one
// fails with ErrClosed), every machine (timers and services are cancelled),
// every bus connection (the ids are unregistered) and the state reporter,
// and returns when their goroutines are done.
//
// # Bus connections
//
// With WithBus the machines share connections: each connection is a
// statebus client without an id of its own (statebus.Connect) that holds
// up to WithMachinesPerConnection machine ids (64, the service's default
// MaxIdsPerConnection), each a statebus.Identity with its own handlers,
// state and sends. The orchestrator opens another connection when every
// one is full, and closes one when its last machine leaves. So hosting
// machines costs the service one connection per 64 (against its
// MaxConnections and MaxConnectionsPerUid), not one per machine. Each
// machine's events and requests reach only its mailbox, on a dispatch
// goroutine of its own: a machine whose mailbox is full holds up only its
// own events, never the others' on the connection.
package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/statebus/statebus"
	"github.com/statebus/statebus/protocol"
	"github.com/statebus/statebus/statechart"
)

// Option configures an Orchestrator.
type Option func(*config)

type config struct {
	bus          bool
	busOpts      []statebus.Option
	perConn      int
	durable      bool // WithDurableMachines
	mailbox      int
	sendTimeout  time.Duration
	errorHandler func(error)

	tracerProvider trace.TracerProvider // WithTracerProvider; nil: no tracing
	tracer         trace.Tracer
}

// WithBus registers each machine on the bus, under its id, on bus
// connections shared by up to WithMachinesPerConnection machines, made
// with opts (statebus.WithPipeName, ...), so that other processes can
// reach it and the machines can reach theirs. Without it the orchestrator
// is local: a target it does not host is not connected.
func WithBus(opts ...statebus.Option) Option {
	return func(c *config) { c.bus, c.busOpts = true, opts }
}

// WithDurableMachines declares every machine's id on the bus durable
// (WithBus; the service must have durable mailboxes on, and the user's
// access rule must allow it: docs/durability.md): events sent to a
// machine while it is not registered (this process stopped, or restarts)
// are stored and handed to it, in order, when a machine of that id is
// registered again, and each event from the bus is acknowledged only
// once the machine processed it (its transition ran), so that what was
// in its mailbox when the process died comes again.
func WithDurableMachines() Option {
	return func(c *config) { c.durable = true }
}

// WithMailboxSize sets how many events from others a machine's mailbox
// holds (default 1024); see "Mailboxes" for what happens beyond it.
func WithMailboxSize(n int) Option {
	return func(c *config) { c.mailbox = max(n, 1) }
}

// WithSendTimeout sets how long a Send waits when its context has no
// deadline (default 5 s, XStateNet's DefaultTimeoutMs).
func WithSendTimeout(d time.Duration) Option {
	return func(c *config) { c.sendTimeout = d }
}

// WithErrorHandler receives the errors no call returns: a machine's send
// from an action that could not be delivered, a refused Post or state
// report from the bus, a machine's own event dropped from a full mailbox.
// It may be called from any goroutine; it must not block for long. The
// default drops them.
func WithErrorHandler(h func(error)) Option {
	return func(c *config) { c.errorHandler = h }
}

// The orchestrator's errors. Those an orchestrator in another process
// made match them too.
var (
	// ErrClosed: the orchestrator was closed, or the machine unregistered,
	// before the event was processed.
	ErrClosed = errors.New("orchestrator: closed")
	// ErrMailboxFull: the target's mailbox holds as many events as it may
	// (WithMailboxSize).
	ErrMailboxFull = errors.New("orchestrator: mailbox full")
	// ErrMachineStopped: the target takes no more events: it reached its
	// final state, or was stopped.
	ErrMachineStopped = errors.New("orchestrator: machine stopped")
	// ErrEventFailed: the target processed the event, but an action
	// failed (the machine went on, in EventResult.NewState).
	ErrEventFailed = errors.New("orchestrator: event failed")
)

var errFull = ErrMailboxFull // the mailbox's own refusal, made specific by its caller

// Orchestrator hosts machines and delivers events to them by id. It is safe
// for concurrent use.
type Orchestrator struct {
	cfg config

	ctx    context.Context // ends on Close: bus calls made for machines
	cancel context.CancelFunc

	mu       sync.RWMutex
	machines map[string]*hosted
	closed   bool

	report chan struct{} // 1 slot: some machine's state is to be reported
	wg     sync.WaitGroup

	bmu         sync.Mutex
	conns       []*busConn // the bus connections (bmu)
	connsClosed bool       // Close closed them; no more open (bmu)
}

// hosted is one machine and what serves it.
type hosted struct {
	id     string
	m      *statechart.Machine
	mb     *mailbox
	ident  *statebus.Identity // its id on the bus; nil without WithBus
	conn   *busConn           // the connection that holds ident
	done   chan struct{}      // closed when the mailbox loop has stopped
	ctx    context.Context    // ends when the machine stops: its bus calls
	cancel context.CancelFunc

	dirty    atomic.Bool // the state changed since it was reported
	reported string      // the reporter's: the state the registry has
}

// New returns an orchestrator with no machines.
func New(opts ...Option) *Orchestrator {
	cfg := config{mailbox: 1024, sendTimeout: 5 * time.Second, perConn: DefaultMachinesPerConnection}
	for _, f := range opts {
		f(&cfg)
	}
	cfg.busTracing()
	o := &Orchestrator{cfg: cfg, machines: make(map[string]*hosted), report: make(chan struct{}, 1)}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	if cfg.bus {
		o.wg.Add(1)
		go o.reportLoop()
	}
	return o
}

// Register makes a machine of def under id, hosts it and starts it. The
// orchestrator builds the machine (rather than taking one) because it owns
// its dispatcher and event queue: opts may set anything else (WithClock,
// WithContext, ...). With WithBus it first registers id on the bus, which
// fails if another connection holds it. The machine is started in its
// mailbox, before any event sent to it; Register returns Start's error.
func (o *Orchestrator) Register(ctx context.Context, id string, def *statechart.Definition, opts ...statechart.Option) error {
	if err := protocol.ValidateID([]byte(id)); err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	if o.lookup(id) != nil {
		return fmt.Errorf("orchestrator: %s is already registered here", id)
	}
	h := &hosted{id: id, mb: newMailbox(o.cfg.mailbox), done: make(chan struct{})}
	h.ctx, h.cancel = context.WithCancel(o.ctx)
	opts = append(slices.Clip(opts),
		statechart.WithMachineID(id),
		statechart.WithDispatcher(statechart.DispatcherFunc(func(_ string, out statechart.Outgoing) { o.dispatch(h, out) })),
		statechart.WithEventQueue(func(ev statechart.Event) { o.postOwn(h, ev) }))
	h.m = def.New(opts...)
	// The start is the mailbox's first item: whatever arrives from the bus
	// once the id is registered waits behind it.
	h.mb.put(ctx, item{ev: statechart.Event{Name: startEvent}, own: true}, false)
	if o.cfg.bus {
		if err := o.attach(ctx, h); err != nil {
			h.cancel()
			return err
		}
	}
	o.mu.Lock()
	var err error
	switch {
	case o.closed:
		err = ErrClosed
	case o.machines[id] != nil:
		err = fmt.Errorf("orchestrator: %s is already registered here", id)
	}
	if err != nil {
		o.mu.Unlock()
		h.cancel()
		o.detach(h)
		return err
	}
	o.machines[id] = h
	started := make(chan error, 1)
	o.wg.Add(1)
	go o.loop(h, started)
	o.mu.Unlock()
	if err := <-started; err != nil {
		o.remove(h)
		o.stop(h, true)
		return fmt.Errorf("orchestrator: starting %s: %w", id, err)
	}
	return nil
}

// startEvent marks the mailbox's first item: start the machine.
const startEvent = "\x00start"

// loop is h's mailbox loop: it starts the machine, then hands it each
// event in turn.
func (o *Orchestrator) loop(h *hosted, started chan<- error) {
	defer o.wg.Done()
	defer close(h.done)
	defer func() {
		if started != nil {
			started <- ErrClosed // closed before the start was taken
		}
	}()
	for {
		it, ok := h.mb.take()
		if !ok {
			return
		}
		if started != nil {
			started <- h.m.Start() // the first item
			started = nil
			o.noteState(h)
			continue
		}
		res, err := o.process(h, &it)
		if res.Changed {
			o.noteState(h)
		}
		if it.seq != 0 {
			h.ident.Ack(it.seq) // processed: not handed over again
		}
		if it.reply != nil {
			it.reply <- h.result(it.id, err)
		}
	}
}

// Unregister stops the machine id, takes it off the bus and forgets it.
// Events waiting in its mailbox are dropped; Sends waiting for them fail
// with ErrClosed.
func (o *Orchestrator) Unregister(id string) error {
	o.mu.RLock()
	h := o.machines[id]
	o.mu.RUnlock()
	if h == nil {
		return fmt.Errorf("orchestrator: %s is not registered here", id)
	}
	o.remove(h)
	o.stop(h, true)
	return nil
}

// remove forgets h, if it is still the machine of its id.
func (o *Orchestrator) remove(h *hosted) {
	o.mu.Lock()
	if o.machines[h.id] == h {
		delete(o.machines, h.id)
	}
	o.mu.Unlock()
}

// stop closes h's mailbox (failing the Sends waiting in it), lets the
// event being processed finish (its sends are delivered; after a second
// its bus calls are cancelled), stops the machine and, with detach, takes
// its id off the bus (Close closes the connections instead).
func (o *Orchestrator) stop(h *hosted, detach bool) {
	for _, it := range h.mb.close() {
		if it.reply != nil {
			it.reply <- failed(it.id, ErrClosed)
		}
	}
	grace := time.AfterFunc(time.Second, h.cancel)
	<-h.done
	grace.Stop()
	h.cancel()
	h.m.Stop()
	if detach {
		o.detach(h)
	}
}

// Close stops every machine, mailbox and bus client and waits for their
// goroutines: events waiting in mailboxes are dropped (Sends waiting for
// them fail with ErrClosed), the events being processed finish. Later
// calls return nil at once.
func (o *Orchestrator) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	hs := slices.Collect(maps.Values(o.machines))
	clear(o.machines)
	o.mu.Unlock()
	var wg sync.WaitGroup
	for _, h := range hs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.stop(h, false)
		}()
	}
	wg.Wait()
	o.closeConns()
	o.cancel()
	o.wg.Wait()
	return nil
}

// lookup returns the machine id hosted here, or nil.
func (o *Orchestrator) lookup(id string) *hosted {
	o.mu.RLock()
	h := o.machines[id]
	o.mu.RUnlock()
	return h
}

// Machine returns the machine hosted here as id, or nil, to read it:
// State, Context, Matches, Snapshot, Subscribe. Send to it through the
// orchestrator, never with its own Send, or events bypass its mailbox.
func (o *Orchestrator) Machine(id string) *statechart.Machine {
	if h := o.lookup(id); h != nil {
		return h.m
	}
	return nil
}

// Machines returns the ids of the machines hosted here, sorted.
func (o *Orchestrator) Machines() []string {
	o.mu.RLock()
	ids := slices.Collect(maps.Keys(o.machines))
	o.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

// fail hands err to the error handler.
func (o *Orchestrator) fail(err error) {
	if h := o.cfg.errorHandler; h != nil {
		h(err)
	}
}
