package statebus

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// dispatcher runs handlers on one goroutine, in arrival order, off the
// read loop: a handler that sends and waits for its acknowledgement never
// blocks the reading of that acknowledgement.
//
// Its queue is bounded (WithPendingLimits): events and errors from the
// service count against the limits from the moment the reader queues them
// until their handlers have returned. Past a limit the reader drops what
// arrives (a request is answered with an error at once), counts it, and
// queues one *SlowConsumerError report at most once a second. Control
// items (status changes, Drain's barriers, those reports) do not count:
// there are at most a handful of them at a time.
type dispatcher struct {
	c        *Client
	id       string      // the machine id whose events it runs: the client's, or an Identity's
	dur      *durMailbox // its durable mailbox (WithDurable, IdentityDurable); nil if none. Set before the first item.
	discard  atomic.Bool // closed with discard: what is left of a batch is dropped too
	onErr    func(error) // where errors go; nil: nowhere. Set before the first item.
	handlers atomic.Pointer[map[string][]*Handler]
	requests atomic.Pointer[map[string]RequestHandler]
	hmu      sync.Mutex // serializes handler changes

	wmu      sync.Mutex
	waiters  map[string][]chan Event
	nwaiters atomic.Int32

	mu           sync.Mutex
	queue        []item
	msgs, bytes  int // pending: queued, or in a batch whose handlers have not all returned
	maxMsgs      int
	maxBytes     int
	closed       bool
	reportQueued bool      // a slow-consumer report is in the queue
	lastReport   time.Time // when the last one was handed to the error handler
	reported     uint64    // drops counted in reports so far
	dropped      atomic.Uint64

	wake chan struct{}
	done chan struct{}
}

// item is one thing to dispatch: an event, an error that belongs to no
// call, or a control item.
type item struct {
	ev  Event
	err error
	// watch is set for a copy sent by a watch filter.
	watch *watchSpec
	// req is set for a request event.
	req *request
	// ctl is set for a control item, which the limits do not count.
	ctl *control
}

// request is what answering a request event needs: the session it came
// on (the token is that connection's) and the caller's deadline.
type request struct {
	s        *session
	replyTo  uint64
	deadline time.Time
}

// control is a status change, a barrier (closed when the dispatcher gets
// to it) or a slow-consumer report.
type control struct {
	status  *StatusChange
	barrier chan struct{}
	slow    bool
}

// RequestHandler answers a request event. Its result is marshalled with
// encoding/json as the reply's payload; an error becomes the caller's
// error (a *ResponderError there). ctx carries the caller's deadline.
type RequestHandler func(ctx context.Context, e Event) (any, error)

func newDispatcher(c *Client, id string) *dispatcher {
	d := &dispatcher{
		c:        c,
		id:       id,
		waiters:  make(map[string][]chan Event),
		maxMsgs:  c.opt.pendingMsgs,
		maxBytes: c.opt.pendingBytes,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	d.handlers.Store(&map[string][]*Handler{})
	d.requests.Store(&map[string]RequestHandler{})
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

// enqueue queues an event or an error for dispatch, or drops it when a
// pending limit is reached (one event is always taken into an empty
// queue, however large). It reports whether it dropped it for a limit
// (after Close it drops everything silently).
func (d *dispatcher) enqueue(it item) (dropped bool) {
	n := len(it.ev.Payload)
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false
	}
	if d.msgs > 0 && (d.maxMsgs > 0 && d.msgs >= d.maxMsgs || d.maxBytes > 0 && d.bytes+n > d.maxBytes) {
		d.dropped.Add(1)
		wake := false
		if !d.reportQueued && time.Since(d.lastReport) >= time.Second {
			d.reportQueued = true
			wake = d.push(item{ctl: &control{slow: true}})
		}
		d.mu.Unlock()
		if wake {
			d.wakeLoop()
		}
		return true
	}
	d.msgs++
	d.bytes += n
	wake := d.push(it)
	d.mu.Unlock()
	if wake {
		d.wakeLoop()
	}
	return false
}

// enqueueCtl queues a control item, outside the limits.
func (d *dispatcher) enqueueCtl(ctl *control) bool {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false
	}
	wake := d.push(item{ctl: ctl})
	d.mu.Unlock()
	if wake {
		d.wakeLoop()
	}
	return true
}

// push appends it to the queue (d.mu held) and reports whether the loop
// may be idle: then the caller wakes it, once it has let go of d.mu.
func (d *dispatcher) push(it item) (wake bool) {
	d.queue = append(d.queue, it)
	return len(d.queue) == 1
}

func (d *dispatcher) wakeLoop() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// barrier returns once the dispatcher has run everything queued before
// the call, or ctx ended, or the dispatcher was closed.
func (d *dispatcher) barrier(ctx context.Context) error {
	ch := make(chan struct{})
	if !d.enqueueCtl(&control{barrier: ch}) {
		return ErrClosed
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close stops the loop once it has run what is queued. With discard,
// queued events and errors are dropped first (control items stay, and
// barriers are released).
func (d *dispatcher) close(discard bool) {
	var reqs []*request
	d.mu.Lock()
	if discard {
		d.discard.Store(true)
		kept := d.queue[:0]
		for _, it := range d.queue {
			if it.ctl != nil {
				kept = append(kept, it)
			} else if it.req != nil {
				reqs = append(reqs, it.req)
			}
		}
		clear(d.queue[len(kept):])
		d.queue = kept
	}
	d.closed = true
	d.mu.Unlock()
	d.wakeLoop()
	for _, rq := range reqs {
		rq.s.reply(rq.replyTo, nil, "No responder: "+d.id+" stopped before handling the request")
	}
}

// Pending counts that the loop has finished with are given back in
// groups of this many, to take the lock once per group and not per event.
const releaseEvery = 64

// keepItems is the largest queue the loop keeps for reuse (about 2 MiB):
// a busy client reuses it batch after batch instead of growing a new one,
// and an idle one holds no more after a burst.
const keepItems = 1 << 14

func (d *dispatcher) loop() {
	defer close(d.done)
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
		var msgs, bytes int
		for i := range batch {
			it := &batch[i]
			if it.ctl == nil {
				msgs++
				bytes += len(it.ev.Payload)
			}
			d.dispatch(it)
			*it = item{} // what ran is not held until the batch ends
			if msgs == releaseEvery {
				d.release(msgs, bytes)
				d.flushAck()
				msgs, bytes = 0, 0
			}
		}
		d.release(msgs, bytes)
		d.flushAck()
		if cap(batch) > keepItems {
			batch = nil // a burst's queue goes back to the garbage collector
		}
		spare = batch[:0]
	}
}

func (d *dispatcher) release(msgs, bytes int) {
	if msgs == 0 {
		return
	}
	d.mu.Lock()
	d.msgs -= msgs
	d.bytes -= bytes
	d.mu.Unlock()
}

func (d *dispatcher) dispatch(it *item) {
	switch {
	case it.ctl != nil:
		d.control(it.ctl)
		return
	case d.discard.Load(): // closed: what was left of the batch is dropped
		if it.req != nil {
			it.req.s.reply(it.req.replyTo, nil, "No responder: "+d.id+" stopped before handling the request")
		}
		return
	case it.err != nil:
		if d.onErr != nil {
			d.onErr(it.err)
		}
		return
	case it.req != nil:
		d.answer(it)
		return
	case it.watch != nil:
		if !it.watch.stopped.Load() {
			it.watch.h(it.ev)
		}
		return
	}
	if d.c.opt.tracer != nil && it.ev.TraceParent != "" {
		_, span := d.handlerSpan(context.Background(), &it.ev, false)
		defer span.End()
	}
	hm := *d.handlers.Load()
	if it.ev.Sequence != 0 && !d.runnable(&it.ev, len(hm[it.ev.Name])+len(hm["*"]) > 0) {
		return // a durable event that comes again
	}
	for _, h := range hm[it.ev.Name] {
		(*h)(it.ev)
	}
	for _, h := range hm["*"] {
		(*h)(it.ev)
	}
	if it.ev.Sequence != 0 {
		d.handled(it.ev.Sequence)
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

func (d *dispatcher) control(ctl *control) {
	switch {
	case ctl.barrier != nil:
		close(ctl.barrier)
	case ctl.status != nil:
		if h := d.c.opt.statusHandler; h != nil {
			h(*ctl.status)
		}
	case ctl.slow:
		d.mu.Lock()
		d.reportQueued = false
		d.lastReport = time.Now()
		total := d.dropped.Load()
		err := &SlowConsumerError{ID: d.id, Dropped: total - d.reported, Total: total, MaxEvents: d.maxMsgs, MaxBytes: d.maxBytes}
		d.reported = total
		d.mu.Unlock()
		if d.onErr != nil {
			d.onErr(err)
		}
	}
}

// pending returns the events and bytes waiting for handlers.
func (d *dispatcher) pending() (msgs, bytes int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.msgs, d.bytes
}

// answer runs the request handler for a request event and replies on the
// session the request came on. Work whose caller has already given up is
// skipped.
func (d *dispatcher) answer(it *item) {
	rq := it.req
	hm := *d.requests.Load()
	h := hm[it.ev.Name]
	if h == nil {
		h = hm["*"]
	}
	if h == nil {
		rq.s.reply(rq.replyTo, nil, "No handler for request "+it.ev.Name)
		return
	}
	ctx := context.Background()
	if !rq.deadline.IsZero() {
		if time.Now().After(rq.deadline) {
			rq.s.reply(rq.replyTo, nil, "Request expired before it was handled")
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, rq.deadline)
		defer cancel()
	}
	if d.c.opt.tracer != nil && it.ev.TraceParent != "" {
		var span trace.Span
		ctx, span = d.handlerSpan(ctx, &it.ev, true)
		defer span.End()
	}
	v, err := h(ctx, it.ev)
	if err != nil {
		if span := trace.SpanFromContext(ctx); span.IsRecording() {
			span.SetStatus(codes.Error, err.Error())
		}
		rq.s.reply(rq.replyTo, nil, err.Error())
		return
	}
	p, err := encodePayload(v)
	if err != nil {
		rq.s.reply(rq.replyTo, nil, err.Error())
		return
	}
	rq.s.reply(rq.replyTo, p, "")
}
