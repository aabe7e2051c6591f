package statebus

import (
	"bytes"
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// dispatcher runs handlers on one goroutine, in arrival order, off the
// read loop: a handler that sends and waits for its acknowledgement never
// blocks the reading of that acknowledgement.
type dispatcher struct {
	handlers atomic.Pointer[map[string][]*Handler]
	hmu      sync.Mutex // serializes handler changes

	wmu      sync.Mutex
	waiters  map[string][]chan Event
	nwaiters atomic.Int32

	mu     sync.Mutex
	queue  []item
	wake   chan struct{}
	closed bool

	requests atomic.Pointer[map[string]RequestHandler]
	watches  atomic.Pointer[map[uint64]Handler]
	reply    func(token uint64, payload []byte, errText string)

	onError func(error)
	onState func(StateChange)
	done    chan struct{}
	gid     atomic.Uint64 // the dispatch goroutine's id, to tell a Close from a handler
}

// item is one thing to dispatch: an event, an error that belongs to no
// call, or a change of connection state.
type item struct {
	ev    Event
	err   error
	state *StateChange
	// replyTo and deadline are set for a request event.
	replyTo  uint64
	deadline time.Time
	// watch is set for a copy sent by a watch filter.
	watch uint64
}

// RequestHandler answers a request event. Its result is marshalled with
// encoding/json as the reply's payload; an error becomes the caller's
// error. ctx carries the caller's deadline.
type RequestHandler func(ctx context.Context, e Event) (any, error)

func newDispatcher(o *options) *dispatcher {
	d := &dispatcher{
		waiters: make(map[string][]chan Event),
		wake:    make(chan struct{}, 1),
		onError: o.errorHandler,
		onState: o.stateHandler,
		done:    make(chan struct{}),
	}
	d.handlers.Store(&map[string][]*Handler{})
	d.requests.Store(&map[string]RequestHandler{})
	d.watches.Store(&map[uint64]Handler{})
	go d.loop()
	return d
}

func (d *dispatcher) add(name string, h Handler) (remove func()) {
	hp := &h
	d.update(func(m map[string][]*Handler) {
		m[name] = append(m[name][:len(m[name]):len(m[name])], hp)
	})
	return func() {
		d.update(func(m map[string][]*Handler) {
			var hs []*Handler
			for _, x := range m[name] {
				if x != hp {
					hs = append(hs, x)
				}
			}
			m[name] = hs
		})
	}
}

// update changes a copy of the handler map: dispatch reads it without a
// lock.
func (d *dispatcher) update(f func(map[string][]*Handler)) {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	old := *d.handlers.Load()
	m := make(map[string][]*Handler, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	f(m)
	d.handlers.Store(&m)
}

// wait returns the next event named name, or ok false when ctx ends or
// stop closes first.
func (d *dispatcher) wait(ctx context.Context, name string, stop <-chan struct{}) (Event, bool) {
	ch := make(chan Event, 1)
	d.wmu.Lock()
	d.waiters[name] = append(d.waiters[name], ch)
	d.nwaiters.Add(1)
	d.wmu.Unlock()
	select {
	case ev := <-ch:
		return ev, true
	case <-ctx.Done():
	case <-stop:
	}
	d.wmu.Lock()
	ws := d.waiters[name]
	for i, w := range ws {
		if w == ch {
			d.waiters[name] = append(ws[:i:i], ws[i+1:]...)
			d.nwaiters.Add(-1)
			break
		}
	}
	d.wmu.Unlock()
	select {
	case ev := <-ch: // arrived while we gave up
		return ev, true
	default:
		return Event{}, false
	}
}

func (d *dispatcher) enqueue(it item) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	wasEmpty := len(d.queue) == 0
	d.queue = append(d.queue, it)
	d.mu.Unlock()
	if wasEmpty {
		select {
		case d.wake <- struct{}{}:
		default:
		}
	}
}

// close stops the loop. With discard, what is queued is dropped; else it
// is dispatched first.
func (d *dispatcher) close(discard bool) {
	d.mu.Lock()
	if discard {
		clear(d.queue)
		d.queue = d.queue[:0]
	}
	d.closed = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) loop() {
	defer close(d.done)
	d.gid.Store(goid())
	var spare []item
	for {
		d.mu.Lock()
		for len(d.queue) == 0 {
			if d.closed {
				d.mu.Unlock()
				return
			}
			d.mu.Unlock()
			<-d.wake
			d.mu.Lock()
		}
		batch := d.queue
		d.queue = spare[:0]
		d.mu.Unlock()
		for i := range batch {
			d.dispatch(&batch[i])
		}
		clear(batch)
		spare = batch[:0]
	}
}

func (d *dispatcher) dispatch(it *item) {
	switch {
	case it.state != nil:
		if d.onState != nil {
			d.onState(*it.state)
		}
		return
	case it.err != nil:
		if d.onError != nil {
			d.onError(it.err)
		}
		return
	case it.replyTo != 0:
		d.answer(it)
		return
	case it.watch != 0:
		if h := (*d.watches.Load())[it.watch]; h != nil {
			h(it.ev)
		}
		return
	}
	hm := *d.handlers.Load()
	for _, h := range hm[it.ev.Name] {
		(*h)(it.ev)
	}
	for _, h := range hm["*"] {
		(*h)(it.ev)
	}
	if d.nwaiters.Load() == 0 {
		return
	}
	d.wmu.Lock()
	for _, name := range [2]string{it.ev.Name, "*"} {
		ws := d.waiters[name]
		if len(ws) == 0 {
			continue
		}
		delete(d.waiters, name)
		d.nwaiters.Add(-int32(len(ws)))
		for _, w := range ws {
			w <- it.ev
		}
	}
	d.wmu.Unlock()
}

// handle sets (h != nil) or removes the request handler for name.
func (d *dispatcher) handle(name string, h RequestHandler) {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	old := *d.requests.Load()
	m := make(map[string]RequestHandler, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if h == nil {
		delete(m, name)
	} else {
		m[name] = h
	}
	d.requests.Store(&m)
}

// answer runs the request handler for a request event and replies. Work
// whose caller has already given up is skipped.
func (d *dispatcher) answer(it *item) {
	hm := *d.requests.Load()
	h := hm[it.ev.Name]
	if h == nil {
		h = hm["*"]
	}
	if h == nil {
		d.reply(it.replyTo, nil, "No handler for request "+it.ev.Name)
		return
	}
	ctx := context.Background()
	if !it.deadline.IsZero() {
		if time.Now().After(it.deadline) {
			d.reply(it.replyTo, nil, "Request expired before it was handled")
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, it.deadline)
		defer cancel()
	}
	v, err := h(ctx, it.ev)
	if err != nil {
		d.reply(it.replyTo, nil, err.Error())
		return
	}
	p, err := encodePayload(v)
	if err != nil {
		d.reply(it.replyTo, nil, err.Error())
		return
	}
	d.reply(it.replyTo, p, "")
}

// setWatch maps a watch id to its handler (nil removes it).
func (d *dispatcher) setWatch(id uint64, h Handler) {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	old := *d.watches.Load()
	m := make(map[uint64]Handler, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	if h == nil {
		delete(m, id)
	} else {
		m[id] = h
	}
	d.watches.Store(&m)
}

// goid returns the calling goroutine's id, read from its stack header
// ("goroutine 17 [running]:"). Only Close uses it, to know whether it runs
// in a handler, where waiting for the handlers to finish would never end.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	n, _ := strconv.ParseUint(string(b), 10, 64)
	return n
}
