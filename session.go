package statebus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statebus/statebus/internal/lines"
	"github.com/statebus/statebus/protocol"
)

// maxLine bounds a line read from the service. The service bounds what it
// accepts far below this; it only protects against a rogue peer.
const maxLine = 64 << 20

// session is one connection to the service. A Client outlives its
// sessions when it reconnects. The calls written on a session belong to
// it: when it ends they fail with the reason.
type session struct {
	c          *Client
	nc         net.Conn
	q          *writeQueue
	readerDone chan struct{}
	writerDone chan struct{}
	writeErr   atomic.Pointer[error] // why the writer stopped, if it failed
	intern     map[string]string     // reader goroutine only
	recent     [4]string             // the last strings str returned (reader only)
	next       uint8
	maxMessage atomic.Int64 // longest line to write; lowered when the service refuses a shorter one
	// compact is set once the service accepted the compact framing at
	// Register: events and replies are written as frames from then on.
	compact atomic.Bool

	mu      sync.Mutex // guards the calls
	pending map[uint64]pendingCall
	cause   error         // why the session ended; set once, then no call is taken
	idle    chan struct{} // closed when pending runs empty; nil unless Drain waits

	wmu     sync.Mutex
	watches map[uint64]*watchSpec // the service's watch ids on this connection

	endOnce      sync.Once
	over         bool        // guarded by c.mu: ended, never to be published
	unregistered atomic.Bool // the id was given back (Drain)
}

// pendingCall is a call waiting for its response.
type pendingCall struct {
	ch chan response
	// data: copy the response's Data for the caller.
	data bool
	// size is the length of the call's line, to fail it when the service
	// refuses lines longer than it without saying which.
	size int
	// ws: the call installs this watch; the reader maps its id before it
	// reads the next line, so no copy is missed.
	ws *watchSpec
}

type response struct {
	data []byte
	err  error
}

var chanPool = sync.Pool{New: func() any { return make(chan response, 1) }}

// connect dials the service, checks who serves it and starts a session's
// loops.
func (c *Client) connect(ctx context.Context) (*session, error) {
	nc, err := c.dialServer(ctx)
	if err != nil {
		return nil, err
	}
	s := &session{
		c:          c,
		nc:         nc,
		q:          newWriteQueue(c.opt.maxQueue),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
		intern:     make(map[string]string),
		pending:    make(map[uint64]pendingCall),
	}
	s.maxMessage.Store(int64(c.opt.maxMessage))
	go s.writeLoop()
	go s.readLoop()
	return s, nil
}

// establish connects, registers, sets up the client's groups and watches
// and publishes the new session, all within one dial timeout. Closing the
// client cancels it. attempt is 0 for Dial.
func (c *Client) establish(ctx context.Context, attempt int) error {
	ctx, cancel := context.WithTimeout(ctx, c.opt.dialTimeout)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	s, err := c.connect(ctx)
	if err != nil {
		return err
	}
	if err := s.handshake(ctx, attempt); err != nil {
		s.end(err)
		s.wait()
		return err
	}
	return nil
}

// handshake registers and subscribes the client's id on s, joins its
// groups and installs its watches, and makes s the client's session. The
// groups and watches are read and set up holding c.sem, so no JoinGroup or
// Watch can slip in between. A group or watch the service refuses now is
// reported and forgotten; any other error fails the handshake.
func (s *session) handshake(ctx context.Context, attempt int) error {
	c := s.c
	if c.id != "" {
		if dm := c.disp.dur; dm != nil {
			dm.st.newSession()
		}
		if _, err := s.registerID(ctx, c.id, c.disp.dur != nil); err != nil {
			return err
		}
	}
	if err := c.acquire(ctx, false); err != nil {
		return err
	}
	defer c.release()
	c.mu.Lock()
	groups := append([]string(nil), c.groups...)
	watches := append([]*watchSpec(nil), c.watches...)
	state := c.state
	idents := make([]identSetup, len(c.idents))
	for i, x := range c.idents {
		idents[i] = identSetup{x, slices.Clone(x.groups), x.state}
	}
	c.mu.Unlock()
	if c.id == "" && c.opt.holder && len(idents) == 0 {
		// No id to register: a question tells the service this is no
		// stray connection, which it would hang up on.
		seq := c.seq.Add(1)
		if _, err := s.call(ctx, seq, fmt.Appendf(nil, `{"Type":%d,"Id":%d}`+"\n", int(protocol.Health), seq), false); err != nil {
			return err
		}
	}
	for _, is := range idents {
		if dm := is.x.disp.dur; dm != nil {
			dm.st.newSession()
		}
		if _, err := s.registerID(ctx, is.x.id, is.x.disp.dur != nil); err != nil {
			if !refused(err) {
				return err
			}
			c.forget(is.x, fmt.Errorf("statebus: registering %q again after reconnecting: %w; it is no longer held", is.x.id, err))
			c.disp.enqueue(item{err: is.x.Err()})
		}
	}
	if err := s.setUp(ctx, nil, groups, state); err != nil {
		return err
	}
	for _, is := range idents {
		if is.x.Err() != nil {
			continue
		}
		if err := s.setUp(ctx, is.x, is.groups, is.state); err != nil {
			return err
		}
	}
	for _, ws := range watches {
		if err := s.install(ctx, ws); err != nil {
			if !refused(err) {
				return err
			}
			c.forgetWatch(ws)
			c.disp.enqueue(item{err: fmt.Errorf("statebus: installing watch %+v again after reconnecting: %w", ws.filter, err)})
		}
	}
	c.mu.Lock()
	ok := c.setStatus(Connected, s, nil, attempt)
	closed := c.status == Closed
	c.mu.Unlock()
	switch {
	case ok:
		return nil
	case closed:
		return ErrClosed
	}
	if cause := s.endCause(); cause != nil {
		return cause // lost after the last ack, before it was published
	}
	return fmt.Errorf("%w: connection to %s lost during the handshake", ErrNotConnected, c.path)
}

// identSetup is what a handshake sets up for an identity.
type identSetup struct {
	x      *Identity
	groups []string
	state  string
}

// setUp sets the state of x (the client's own id for nil) and joins its
// groups again on a new connection. What the service refuses now is
// reported and forgotten; any other error fails the handshake.
func (s *session) setUp(ctx context.Context, x *Identity, groups []string, state string) error {
	c := s.c
	id := c.idOf(x)
	if state != "" {
		seq := c.seq.Add(1)
		if _, err := s.call(ctx, seq, protocol.AppendSetState(nil, seq, id, state), false); err != nil {
			if !refused(err) {
				return err
			}
			c.dispOf(x).enqueue(item{err: fmt.Errorf("statebus: setting the state of %q again after reconnecting: %w", id, err)})
		}
	}
	for _, g := range groups {
		if err := s.groupCall(ctx, protocol.JoinGroup, g, id); err != nil {
			if !refused(err) {
				return err
			}
			c.forgetGroup(x, g)
			c.dispOf(x).enqueue(item{err: fmt.Errorf("statebus: joining group %q as %q again after reconnecting: %w", g, id, err)})
		}
	}
	return nil
}

// refused reports whether err is the service's answer (it refused), as
// opposed to a lost connection or an expired context.
func refused(err error) bool {
	var pe *protocol.Error
	return errors.As(err, &pe)
}

func (s *session) groupCall(ctx context.Context, t protocol.MessageType, group, id string) error {
	seq := s.c.seq.Add(1)
	_, err := s.call(ctx, seq, appendGroup(nil, t, seq, group, id), false)
	return err
}

func appendGroup(b []byte, t protocol.MessageType, seq uint64, group, id string) []byte {
	b = fmt.Appendf(b, `{"Type":%d,`, int(t))
	if seq != 0 {
		b = fmt.Appendf(b, `"Id":%d,`, seq)
	}
	b = append(b, `"Payload":{"Group":`...)
	b = protocol.AppendString(b, group)
	b = append(b, `,"MachineId":`...)
	b = protocol.AppendString(b, id)
	return append(b, "}}\n"...)
}

// expect records a call before its line is written; it fails once the
// session has ended.
func (s *session) expect(seq uint64, pc pendingCall) (chan response, error) {
	pc.ch = chanPool.Get().(chan response)
	s.mu.Lock()
	if s.cause != nil {
		err := s.cause
		s.mu.Unlock()
		chanPool.Put(pc.ch)
		return nil, err
	}
	s.pending[seq] = pc
	s.mu.Unlock()
	return pc.ch, nil
}

// forget drops a call whose caller gave up; ch goes back to the pool only
// when no response can still be sent to it.
func (s *session) forget(seq uint64, ch chan response) {
	s.mu.Lock()
	_, ok := s.pending[seq]
	delete(s.pending, seq)
	s.checkIdle()
	s.mu.Unlock()
	if ok {
		chanPool.Put(ch)
	}
}

// checkIdle releases Drain's wait once no call is pending; s.mu is held.
func (s *session) checkIdle() {
	if s.idle != nil && len(s.pending) == 0 {
		close(s.idle)
		s.idle = nil
	}
}

// waitIdle waits until no call is pending on s, or ctx ends.
func (s *session) waitIdle(ctx context.Context) error {
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call writes a line that carries seq and waits for its response,
// returning a copy of its Data when data is true.
func (s *session) call(ctx context.Context, seq uint64, line []byte, data bool) ([]byte, error) {
	return s.callWith(ctx, seq, line, pendingCall{data: data, size: len(line)})
}

func (s *session) callWith(ctx context.Context, seq uint64, line []byte, pc pendingCall) ([]byte, error) {
	b, err := s.q.begin(len(line), ctx.Done())
	if err != nil {
		return nil, s.writeFailed(ctx, err)
	}
	ch, err := s.expect(seq, pc)
	if err != nil {
		s.q.abandon()
		return nil, err
	}
	s.q.commit(append(b, line...))
	return s.await(ctx, seq, ch)
}

// writeFailed is the error of a call whose line could not be queued.
func (s *session) writeFailed(ctx context.Context, err error) error {
	if err == errCanceled {
		return ctx.Err()
	}
	if cause := s.endCause(); cause != nil {
		return cause
	}
	return fmt.Errorf("%w: the connection to %s is closing", ErrNotConnected, s.c.path)
}

func (s *session) await(ctx context.Context, seq uint64, ch chan response) ([]byte, error) {
	select {
	case r := <-ch:
		chanPool.Put(ch)
		return r.data, r.err
	case <-ctx.Done():
		s.forget(seq, ch)
		return nil, ctx.Err()
	}
}

// endCause returns why s ended, nil while it lives.
func (s *session) endCause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

// reply writes a Reply to a request s delivered. A reply longer than the
// service takes becomes an error reply. A lost connection loses it: the
// service tells the caller that no reply will come.
func (s *session) reply(token uint64, payload []byte, errText string) {
	if max := s.maxMessage.Load(); int64(len(payload)+len(errText)+64) > max {
		errText = fmt.Sprintf("%v: the reply is %d bytes, over the %d-byte message limit", ErrTooLarge, len(payload), max)
		payload = nil
	}
	b, err := s.q.beginNoWait()
	if err != nil {
		return
	}
	if s.compact.Load() {
		s.q.commit(protocol.AppendReplyFrame(b, token, payload, errText))
		return
	}
	s.q.commit(protocol.AppendReply(b, token, payload, errText))
}

func (s *session) writeLoop() {
	err := s.q.run(s.nc)
	if err != nil {
		// The reader ends the session: it may still have the line that
		// says why the service hung up ("Too many connections ..."). It
		// gets a second to read it.
		s.writeErr.Store(&err)
		s.nc.SetReadDeadline(time.Now().Add(time.Second))
	}
	close(s.writerDone)
}

func (s *session) readLoop() {
	defer close(s.readerDone)
	c := s.c
	lr := lines.NewReader(s.nc, maxLine, nil)
	if c.opt.framing == FramingCompact {
		lr.FrameBelow = protocol.FrameBelow
	}
	var r protocol.Response
	var forBuf []byte
	var last string // the last error the service sent outside any call
	for {
		typ, line, err := lr.NextMsg()
		if err == lines.ErrTooLong {
			continue
		}
		if err != nil {
			if werr := s.writeErr.Load(); werr != nil && errors.Is(err, os.ErrDeadlineExceeded) {
				err = fmt.Errorf("writing: %v", *werr)
			}
			if last != "" {
				err = fmt.Errorf("%v; the service said: %w", err, hangupError(last))
			}
			s.end(fmt.Errorf("%w: connection to %s lost: %w", ErrNotConnected, c.path, err))
			return
		}
		if typ != 0 {
			if protocol.DecodeFrame(typ, line, &r) != nil {
				continue
			}
			if r.ForID != nil {
				forBuf = protocol.AppendString(forBuf[:0], string(r.ForID))
				r.For = forBuf
			}
			if r.NumID != 0 {
				s.complete(&r)
				continue
			}
		} else if protocol.DecodeResponse(line, &r) != nil {
			continue
		}
		if r.ID != nil {
			s.complete(&r)
			continue
		}
		if !r.Success {
			last = r.Error
			s.uncalledError(r.Error, r.For)
			continue
		}
		if !r.IsEvent {
			continue // an acknowledgement of a PostEvent
		}
		d := c.disp
		if r.For != nil || c.routes.Load() != nil {
			d = s.dispatcherFor(&r)
		}
		// A durable mailbox's event for an id declared durable by this
		// client (WithDurable, IdentityDurable).
		durable := r.Sequence != 0 && d != nil && d.dur != nil
		if durable {
			if ok, reack := d.dur.st.accept(r.Sequence, r.Rewound); !ok {
				if reack != 0 {
					d.writeAck(reack, "", false)
				}
				continue // handled already, or before a refusal's redelivery
			}
		}
		it := item{ev: s.makeEvent(&r.Event)}
		if r.Time != 0 {
			it.ev.Timestamp = time.Unix(0, r.Time).UTC()
		}
		if durable {
			it.ev.Sequence, it.ev.durGen = r.Sequence, d.dur.st.stamp()
		}
		switch {
		case r.ReplyTo != 0:
			it.req = &request{s: s, replyTo: r.ReplyTo}
			if r.Deadline != nil {
				it.req.deadline, _ = protocol.ParseTimeBytes(r.Deadline[1 : len(r.Deadline)-1])
			} else if r.DeadlineNs != 0 {
				it.req.deadline = time.Unix(0, r.DeadlineNs)
			}
		case r.Watch != 0:
			if it.watch = s.watch(r.Watch); it.watch == nil {
				continue // stopped
			}
		}
		if it.watch != nil {
			d = c.disp // a watch is the client's, whatever it copies
		}
		if d == nil {
			if it.req != nil { // for an id this client no longer holds
				s.reply(r.ReplyTo, nil, "No handler for request "+it.ev.Name+": "+string(r.For)+" is no longer registered on this connection")
			}
			continue
		}
		dropped := d.enqueue(it)
		if dropped && it.ev.Sequence != 0 {
			d.rewind(it.ev.Sequence) // the service hands it over again
			continue
		}
		if dropped && it.req != nil {
			s.reply(r.ReplyTo, nil, fmt.Sprintf("Request dropped: %s's handlers are not keeping up (pending limits %d events, %d bytes)",
				d.id, c.opt.pendingMsgs, c.opt.pendingBytes))
		}
	}
}

// uncalledError handles an error the service sent without an Id. Lines
// too long for the service are refused so, the call that wrote one is
// failed here (every pending call with a line over the limit), and later
// lines are checked against the service's limit before they are written.
func (s *session) uncalledError(text string, forID []byte) {
	err := protocol.ParseError(text)
	if errors.Is(err, protocol.ErrTooLarge) {
		digits := strings.TrimSuffix(strings.TrimPrefix(text, protocol.ErrTooLarge.Prefix), " bytes")
		if limit, perr := strconv.Atoi(digits); perr == nil && limit > 0 {
			if int64(limit) < s.maxMessage.Load() {
				s.maxMessage.Store(int64(limit))
			}
			var failed []chan response
			s.mu.Lock()
			for seq, pc := range s.pending {
				if pc.size-1 > limit {
					failed = append(failed, pc.ch)
					delete(s.pending, seq)
				}
			}
			s.checkIdle()
			s.mu.Unlock()
			for _, ch := range failed {
				ch <- response{err: err}
			}
			if len(failed) > 0 {
				return
			}
		}
	}
	s.c.errorDispatcher(forID).enqueue(item{err: err})
}

// complete hands a response to the call waiting for it.
func (s *session) complete(r *protocol.Response) {
	seq, ok := r.NumID, r.NumID != 0
	if !r.Framed {
		seq, ok = parseUint(r.ID)
	}
	var pc pendingCall
	if ok {
		s.mu.Lock()
		pc, ok = s.pending[seq]
		delete(s.pending, seq)
		s.checkIdle()
		s.mu.Unlock()
	}
	var err error
	if !r.Success {
		err = callError(r.Error)
	}
	if !ok {
		if err != nil {
			s.c.disp.enqueue(item{err: err}) // its caller gave up
		}
		return
	}
	resp := response{err: err}
	switch {
	case pc.data && r.Framed && r.AckTarget != nil:
		// SendEventAck's Data, as the line would have carried it.
		resp.data = protocol.AppendAckData(nil, r.AckTarget, r.Recipients)
	case pc.data && r.Data != nil:
		resp.data = bytes.Clone(r.Data)
	}
	if pc.ws != nil && err == nil {
		if id, ok := parseUint(protocol.Field(r.Data, "WatchId")); ok && id != 0 {
			s.addWatch(id, pc.ws)
		}
	}
	pc.ch <- resp
}

// parseUint parses a request id without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

func (s *session) makeEvent(ev *protocol.Event) Event {
	e := Event{
		Source: s.str(ev.Source),
		Target: s.str(ev.Target),
		Name:   s.str(ev.Name),
	}
	if ev.Payload != nil {
		e.Payload = bytes.Clone(ev.Payload)
	}
	if len(ev.Timestamp) > 2 && ev.Timestamp[0] == '"' {
		e.Timestamp, _ = protocol.ParseTimeBytes(ev.Timestamp[1 : len(ev.Timestamp)-1])
	}
	if ev.TraceParent != nil {
		e.TraceParent, e.TraceState = string(ev.TraceParent), string(ev.TraceState)
	}
	return e
}

// str returns b as a string, reusing an earlier copy: ids and event names
// repeat, so most events allocate nothing for them.
func (s *session) str(b []byte) string {
	for _, v := range s.recent {
		if v == string(b) {
			return v // the ids and names of the last events: no hashing
		}
	}
	v := s.lookup(b)
	s.recent[s.next%uint8(len(s.recent))] = v
	s.next++
	return v
}

// lookup is str through the intern map.
func (s *session) lookup(b []byte) string {
	if v, ok := s.intern[string(b)]; ok {
		return v
	}
	v := string(b)
	if len(s.intern) >= 4096 {
		clear(s.intern)
	}
	s.intern[v] = v
	return v
}

// end ends the session once: calls waiting on it fail with cause, the
// connection closes, and if it was the client's session the client
// reconnects, or closes when it does not reconnect.
func (s *session) end(cause error) {
	s.endOnce.Do(func() {
		s.mu.Lock()
		s.cause = cause
		pending := s.pending
		s.pending = nil
		if s.idle != nil {
			close(s.idle)
			s.idle = nil
		}
		s.mu.Unlock()
		for _, pc := range pending {
			pc.ch <- response{err: cause}
		}
		s.q.close()
		s.nc.Close()
		c := s.c
		c.mu.Lock()
		s.over = true
		if c.status == Connected && c.opt.reconnect && (c.id != "" || c.opt.holder) {
			c.setStatus(Reconnecting, s, cause, 0)
		} else if c.setStatus(Closed, s, closedByLoss(cause), 0) {
			go c.finish(s)
		}
		c.mu.Unlock()
	})
}

// closedByLoss is Err of a client closed by the loss of its connection:
// it matches ErrClosed (and not ErrNotConnected: it will not come back).
func closedByLoss(cause error) error {
	return fmt.Errorf("%w: %s", ErrClosed, strings.TrimPrefix(cause.Error(), ErrNotConnected.Error()+": "))
}

// shutdown writes what is queued (for at most a second), then ends the
// session and waits for its loops.
func (s *session) shutdown(cause error) {
	s.q.close()
	s.nc.SetWriteDeadline(time.Now().Add(time.Second))
	<-s.writerDone
	s.end(cause)
	s.wait()
}

// wait waits for the session's loops to finish.
func (s *session) wait() {
	<-s.readerDone
	<-s.writerDone
}

// reconnectLoop dials until a session is established again, with
// exponential backoff and full jitter, until the client is closed.
func (c *Client) reconnectLoop() {
	defer c.wg.Done()
	delay := c.opt.backoffMin
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(time.Duration(rand.Int64N(int64(delay) + 1)))
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, c.opt.backoffMax)
		err := c.establish(c.ctx, attempt)
		if err == nil || c.ctx.Err() != nil {
			return
		}
		var de *DialError
		if !errors.As(err, &de) {
			// It connected, but was refused: an untrusted server, an id
			// someone else took meanwhile. Say so; keep trying.
			c.disp.enqueue(item{err: fmt.Errorf("statebus: reconnecting to %s (attempt %d): %w", c.path, attempt, err)})
		}
	}
}
