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
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"statebus/internal/lines"
	"statebus/internal/outq"
	"statebus/protocol"
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

// maxLine bounds a line read from the service. The service bounds what it
// accepts far below this; it only protects against a rogue peer.
const maxLine = 64 << 20

// Client is a connection to the bus under one machine id.
type Client struct {
	id   string
	path string
	opt  options
	nc   *net.UnixConn
	q    *outq.Queue[struct{}]
	seq  atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]pendingCall
	err     error // why the client stopped, once it has

	handlers atomic.Pointer[map[string][]*Handler]
	hmu      sync.Mutex // serializes handler changes

	wmu      sync.Mutex
	waiters  map[string][]chan Event
	nwaiters atomic.Int32

	emu     sync.Mutex
	evq     []item
	evWake  chan struct{}
	evClose bool

	stopOnce     sync.Once
	done         chan struct{}
	readerDone   chan struct{}
	writerDone   chan struct{}
	dispatchDone chan struct{}
	inHandler    atomic.Bool
	intern       map[string]string // reader goroutine only
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

type item struct {
	ev  Event
	err error
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

// dial connects, and registers and subscribes id unless it is empty.
func dial(ctx context.Context, id string, opts []Option) (*Client, error) {
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	path := protocol.PipePath(o.pipeName)
	ctx, cancel := context.WithTimeout(ctx, o.dialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, &DialError{Path: path, Err: err}
	}
	c := &Client{
		id:           id,
		path:         path,
		opt:          o,
		nc:           nc.(*net.UnixConn),
		q:            outq.New[struct{}](o.maxQueue),
		pending:      make(map[uint64]pendingCall),
		waiters:      make(map[string][]chan Event),
		evWake:       make(chan struct{}, 1),
		done:         make(chan struct{}),
		readerDone:   make(chan struct{}),
		writerDone:   make(chan struct{}),
		dispatchDone: make(chan struct{}),
		intern:       make(map[string]string),
	}
	c.handlers.Store(&map[string][]*Handler{})
	go c.writeLoop()
	go c.readLoop()
	go c.dispatchLoop()

	if id == "" {
		return c, nil // a tool's connection: no machine id
	}
	seq := c.seq.Add(1)
	_, err = c.call(ctx, seq, protocol.AppendRegister(nil, seq, id, o.processName, os.Getpid(), time.Now()), false)
	if err == nil {
		seq = c.seq.Add(1)
		_, err = c.call(ctx, seq, protocol.AppendMachineRequest(nil, protocol.Subscribe, seq, id), false)
	}
	if err != nil {
		c.Close()
		if errors.Is(err, ErrNotConnected) {
			return nil, err // already names the path and the cause
		}
		return nil, fmt.Errorf("statebus: cannot register %q at %s: %w", id, path, err)
	}
	return c, nil
}

// ID returns the machine id the client is registered as.
func (c *Client) ID() string { return c.id }

// Done is closed when the client stops: Close, or the connection's loss.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped, or nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// OnEvent adds h for events named name ("*" for every event). Several
// handlers for one name run in the order they were added. The returned
// function removes h.
func (c *Client) OnEvent(name string, h Handler) (remove func()) {
	hp := &h
	c.hmu.Lock()
	defer c.hmu.Unlock()
	old := *c.handlers.Load()
	m := make(map[string][]*Handler, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[name] = append(m[name][:len(m[name]):len(m[name])], hp)
	c.handlers.Store(&m)
	return func() {
		c.hmu.Lock()
		defer c.hmu.Unlock()
		old := *c.handlers.Load()
		m := make(map[string][]*Handler, len(old))
		for k, v := range old {
			m[k] = v
		}
		var hs []*Handler
		for _, x := range m[name] {
			if x != hp {
				hs = append(hs, x)
			}
		}
		m[name] = hs
		c.handlers.Store(&m)
	}
}

// WaitForEvent returns the next event named name ("*" for any) that
// arrives after the call, or ctx's error. To wait for a reply to something
// you send, call it on another goroutine first, or use OnEvent.
func (c *Client) WaitForEvent(ctx context.Context, name string) (Event, error) {
	ch := make(chan Event, 1)
	c.wmu.Lock()
	c.waiters[name] = append(c.waiters[name], ch)
	c.nwaiters.Add(1)
	c.wmu.Unlock()
	select {
	case ev := <-ch:
		return ev, nil
	case <-ctx.Done():
	case <-c.done:
	}
	c.wmu.Lock()
	ws := c.waiters[name]
	for i, w := range ws {
		if w == ch {
			c.waiters[name] = append(ws[:i:i], ws[i+1:]...)
			c.nwaiters.Add(-1)
			break
		}
	}
	c.wmu.Unlock()
	select {
	case ev := <-ch: // arrived while we gave up
		return ev, nil
	default:
	}
	if ctx.Err() != nil {
		return Event{}, ctx.Err()
	}
	return Event{}, c.notConnected()
}

// SendEvent sends an event to target ("*" for every other subscribed
// machine) and waits for the service's acknowledgement that it was written
// to the target's connection. payload is marshalled with encoding/json; a
// json.RawMessage is sent as is. Errors the service reports wrap the
// protocol kinds (errors.Is(err, ErrTargetNotConnected)).
func (c *Client) SendEvent(ctx context.Context, target, name string, payload any) error {
	p, err := encodePayload(payload)
	if err != nil {
		return err
	}
	seq := c.seq.Add(1)
	ch := c.expect(seq, false)
	if err := c.sendEvent(ctx, seq, target, name, p); err != nil {
		c.forget(seq, ch)
		return err
	}
	_, err = c.wait(ctx, seq, ch)
	return err
}

// PostEvent sends an event without waiting for its acknowledgement: it
// returns once the event is queued for writing. Refusals by the service
// go to the handler given with WithErrorHandler.
func (c *Client) PostEvent(ctx context.Context, target, name string, payload any) error {
	p, err := encodePayload(payload)
	if err != nil {
		return err
	}
	return c.sendEvent(ctx, 0, target, name, p)
}

func (c *Client) sendEvent(ctx context.Context, seq uint64, target, name string, p []byte) error {
	size := len(p) + len(target) + len(name) + len(c.id) + 160
	b, err := c.q.Begin(size, 0, ctx.Done())
	if err != nil {
		if err == outq.ErrCanceled {
			return ctx.Err()
		}
		return c.notConnected()
	}
	c.q.Commit(protocol.AppendSendEvent(b, seq, c.id, target, name, p, time.Now()))
	return nil
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

// call writes a request line that carries seq and waits for its response,
// returning a copy of its Data when data is true.
func (c *Client) call(ctx context.Context, seq uint64, line []byte, data bool) ([]byte, error) {
	ch := c.expect(seq, data)
	b, err := c.q.Begin(len(line), 0, ctx.Done())
	if err != nil {
		c.forget(seq, ch)
		if err == outq.ErrCanceled {
			return nil, ctx.Err()
		}
		return nil, c.notConnected()
	}
	c.q.Commit(append(b, line...))
	return c.wait(ctx, seq, ch)
}

func (c *Client) expect(seq uint64, data bool) chan response {
	ch := chanPool.Get().(chan response)
	c.mu.Lock()
	if c.err != nil {
		ch <- response{err: c.err}
	} else {
		c.pending[seq] = pendingCall{ch, data}
	}
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

func (c *Client) writeLoop() {
	err := c.q.Run(c.nc)
	close(c.writerDone) // before stop, which may be waiting for it
	if err != nil {
		c.stop(fmt.Errorf("%w: writing to %s: %v", ErrNotConnected, c.path, err), false)
	}
}

func (c *Client) readLoop() {
	defer close(c.readerDone)
	lr := lines.NewReader(c.nc, maxLine, nil)
	var r protocol.Response
	var ev protocol.Event
	var last string // the last error the service sent outside any call
	for {
		line, err := lr.Next()
		if err == lines.ErrTooLong {
			continue
		}
		if err != nil {
			if last != "" {
				err = fmt.Errorf("%v; the service said: %s", err, last)
			}
			c.stop(fmt.Errorf("%w: connection to %s lost: %v", ErrNotConnected, c.path, err), false)
			return
		}
		if protocol.DecodeResponse(line, &r) != nil {
			continue
		}
		if r.ID != nil {
			c.complete(&r)
			continue
		}
		if !r.Success {
			last = r.Error
			c.enqueue(item{err: protocol.ParseError(r.Error)})
			continue
		}
		if r.Data == nil || protocol.DecodeEvent(r.Data, &ev) != nil {
			continue // an acknowledgement of a PostEvent
		}
		c.enqueue(item{ev: c.makeEvent(&ev)})
	}
}

// complete hands a response to the call waiting for it.
func (c *Client) complete(r *protocol.Response) {
	var err error
	if !r.Success {
		err = protocol.ParseError(r.Error)
	}
	seq, perr := strconv.ParseUint(string(r.ID), 10, 64)
	c.mu.Lock()
	pc, ok := c.pending[seq]
	delete(c.pending, seq)
	c.mu.Unlock()
	switch {
	case ok && perr == nil:
		resp := response{err: err}
		if pc.data && r.Data != nil {
			resp.data = bytes.Clone(r.Data)
		}
		pc.ch <- resp
	case err != nil:
		c.enqueue(item{err: err})
	}
}

func (c *Client) makeEvent(ev *protocol.Event) Event {
	e := Event{
		Source: c.str(ev.Source),
		Target: c.str(ev.Target),
		Name:   c.str(ev.Name),
	}
	if ev.Payload != nil {
		e.Payload = bytes.Clone(ev.Payload)
	}
	if len(ev.Timestamp) > 2 && ev.Timestamp[0] == '"' {
		e.Timestamp, _ = protocol.ParseTime(string(ev.Timestamp[1 : len(ev.Timestamp)-1]))
	}
	return e
}

// str returns b as a string, reusing an earlier copy: ids and event names
// repeat, so most events allocate nothing for them.
func (c *Client) str(b []byte) string {
	if s, ok := c.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(c.intern) >= 4096 {
		clear(c.intern)
	}
	c.intern[s] = s
	return s
}

func (c *Client) enqueue(it item) {
	c.emu.Lock()
	wasEmpty := len(c.evq) == 0
	c.evq = append(c.evq, it)
	c.emu.Unlock()
	if wasEmpty {
		select {
		case c.evWake <- struct{}{}:
		default:
		}
	}
}

func (c *Client) dispatchLoop() {
	defer close(c.dispatchDone)
	var spare []item
	for {
		c.emu.Lock()
		for len(c.evq) == 0 {
			if c.evClose {
				c.emu.Unlock()
				return
			}
			c.emu.Unlock()
			<-c.evWake
			c.emu.Lock()
		}
		batch := c.evq
		c.evq = spare[:0]
		c.emu.Unlock()
		for i := range batch {
			c.dispatch(&batch[i])
		}
		clear(batch)
		spare = batch[:0]
	}
}

func (c *Client) dispatch(it *item) {
	c.inHandler.Store(true)
	defer c.inHandler.Store(false)
	if it.err != nil {
		if h := c.opt.errorHandler; h != nil {
			h(it.err)
		}
		return
	}
	hm := *c.handlers.Load()
	for _, h := range hm[it.ev.Name] {
		(*h)(it.ev)
	}
	for _, h := range hm["*"] {
		(*h)(it.ev)
	}
	if c.nwaiters.Load() == 0 {
		return
	}
	c.wmu.Lock()
	for _, name := range [2]string{it.ev.Name, "*"} {
		ws := c.waiters[name]
		if len(ws) == 0 {
			continue
		}
		delete(c.waiters, name)
		c.nwaiters.Add(-int32(len(ws)))
		for _, w := range ws {
			w <- it.ev
		}
	}
	c.wmu.Unlock()
}

// stop ends the client once: cause is what pending and later calls
// return. byUser is true for Close, which discards undelivered events;
// a lost connection delivers them and then reports cause.
func (c *Client) stop(cause error, byUser bool) {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		c.err = cause
		for seq, pc := range c.pending {
			pc.ch <- response{err: cause}
			delete(c.pending, seq)
		}
		c.mu.Unlock()
		close(c.done)
		if byUser {
			// Write what is queued, briefly, then hang up.
			c.q.Close()
			c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			<-c.writerDone
		} else {
			c.q.Close()
		}
		c.nc.Close()

		c.emu.Lock()
		if byUser {
			clear(c.evq)
			c.evq = c.evq[:0]
		} else {
			c.evq = append(c.evq, item{err: cause})
		}
		c.evClose = true
		c.emu.Unlock()
		select {
		case c.evWake <- struct{}{}:
		default:
		}
	})
}

// Close flushes what is queued, closes the connection (the service drops
// the client's machine ids at once) and waits for the client's goroutines.
// It is safe to call more than once and from a handler; from a handler, or
// while a handler runs, it does not wait for that handler to return.
func (c *Client) Close() error {
	c.stop(fmt.Errorf("%w: client closed", ErrNotConnected), true)
	<-c.readerDone
	<-c.writerDone
	if !c.inHandler.Load() {
		<-c.dispatchDone
	}
	return nil
}
