package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/statebus/statebus/internal/access"
	"github.com/statebus/statebus/internal/lines"
	"github.com/statebus/statebus/internal/outq"
	"github.com/statebus/statebus/internal/park"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/protocol"
)

var bom = []byte{0xEF, 0xBB, 0xBF}

// conn is one client connection: a reader (run) that parses and executes
// requests, and a writer (the queue's Run) that owns the socket's write
// side. While the connection is idle neither has a goroutine: the writer
// exits when it has nothing to write (outq.Start), and the reader parks
// (internal/park) until its socket has input or the connection stops.
type conn struct {
	srv *Server
	id  uint64
	nc  net.Conn
	q   *outq.Queue[delivery]

	pid, uid, gid int            // from the kernel; -1 when unknown
	sid           string         // on Windows, the pipe client's user SID; "" when unknown
	cert          *access.CertID // a TLS peer's verified certificate; nil for others
	addr          string         // a TCP peer's address; "" on the Unix socket
	connectedAt   time.Time
	rule          *access.Rule // nil: unrestricted
	ctr           counters
	sample        uint8 // counts events for latency sampling (reader only)

	// The connection's one stop path: stop closes quit once and shuts the
	// socket's read side, so the reader returns (a parked reader is
	// resumed); end then cleans up.
	quit     chan struct{}
	stopOnce sync.Once
	stopMu   sync.Mutex // orders stop against the reader's deadline changes

	// Parking (internal/park): the janitor asks a reader that read nothing
	// since its last tick to park (parkAsk, and a read deadline in the
	// past); the reader's goroutine then returns, and slot.Resume runs it
	// again when its socket has input or the connection stops.
	slot    park.Slot
	raw     syscall.RawConn // the socket, for the Parker; nil: never parks
	mayPark atomic.Bool     // set by the reader once the handshake is done, if raw is set
	parkAsk atomic.Bool     // the janitor asked the reader to park
	idleIn  uint64          // bytesIn at the janitor's last tick (janitor)

	// Requests this connection must answer (it is their target).
	ended      chan struct{} // closed when the connection ends (reqMu)
	reqMu      sync.Mutex
	pending    map[uint64]*pendingRequest
	nextExpiry time.Time // earliest deadline in pending (reqMu)
	// Requests this connection sent (it is their caller) that wait for
	// replies: token -> target, against MaxPendingRequests. When the
	// caller ends, serve takes them out of their targets, so a caller that
	// comes and goes leaves nothing behind.
	outMu sync.Mutex
	out   map[uint64]*conn
	// remoteOut counts its requests waiting for replies from other
	// daemons (federation), also against MaxPendingRequests.
	remoteOut atomic.Int64
	// multi is set once the connection holds a second id, before that id
	// is routable: from then on every delivery to it says which of its ids
	// it is for ("For"). Senders read it; it is never cleared.
	multi atomic.Bool
	// compact is set once the client negotiated the compact framing
	// (frame.go): deliveries to it are frames from then on. Never cleared.
	compact atomic.Bool

	// Owned by the reader goroutine (the one running now, while parked
	// none).
	lr           *lines.Reader  // kept while parked: it may hold part of a line
	*scratch                    // nil while parked
	greeted      bool           // the handshake is done: it registered or asked a question
	warnedDenied bool           // a refused action was logged at Warn
	stamped      bool           // activity was recorded since the last read
	fresh        bool           // a read happened since the queue was last checked
	ids          []string       // machine ids this connection holds
	idSet        map[string]int // index of ids, once there are idSetMin
	memberships  int            // group memberships of ids
	watchIDs     []uint64       // its watch filters
	durSubs      []*durSub      // durable mailboxes it receives
	framed       bool           // frames are read (the compact framing was negotiated)
	readAt       time.Time      // when the current read happened, once touch ran for it
	reqSeq       uint64         // counts the requests executed

	tapSeq uint32       // counts events for the tap's sampling (reader)
	traced *tracedRoute // the sampled event being routed (reader; trace.go); nil for others
}

// scratch is what the reader uses only while it runs: the request being
// executed and buffers reused from one request to the next. A reader that
// parks drops it, and takes a new one when it resumes: an idle
// connection does not hold it.
type scratch struct {
	req     protocol.Request
	sent    protocol.Event            // a redirected frame's event as sent (Target nil: none)
	evObj   []byte                    // a frame's event object for JSON readers (eventJSON)
	frame   []byte                    // the delivery frame of request frameOf, for its every plain target
	frameOf uint64                    // 0: none (reqSeq starts at 1)
	targets []router.Route[*conn]     // for broadcast
	watched []*router.Watch[*conn]    // for watch copies
	copies  []string                  // for routing rules
	tailed  []*router.Watch[TailSink] // for the tap's tail
}

// delivery is the record queued with each event line. When the line has
// been written the sender gets its acknowledgement; when it cannot be, the
// sender gets an error. Nothing per record is allocated for the common
// numeric request id.
type delivery struct {
	sender    *conn
	target    string // the target's id as the registry holds it
	id        reqID
	broadcast bool  // acknowledged when queued; only failures are reported
	noAck     bool  // the sender asked for no acknowledgement
	request   bool  // a request: its failure is reported by the pending request
	quiet     bool  // a routing rule's copy: its failure is only counted
	queuedAt  int64 // unix nanoseconds, for sampled events; else 0
	// remote is the daemon waiting for the outcome of an event another
	// daemon sent here (sender is then nil); see federation.go.
	remote *remoteOrigin
	// trace is a sampled event's statebus.deliver span (trace.go), ended
	// by written or failed; nil for untraced events.
	trace *deliverSpan
}

// reqID is a request's optional "Id", kept without allocating when it is a
// plain number.
type reqID struct {
	num   uint64
	raw   []byte // a copy, for ids that are not plain numbers
	set   bool
	frame bool // the request came as a frame: its answers may be frames
}

// reqIDOf returns r's Id as the service keeps it.
func reqIDOf(r *protocol.Request) reqID {
	if r.Framed {
		return reqID{num: r.NumID, set: r.NumID != 0, frame: true}
	}
	return makeReqID(r.ID)
}

func makeReqID(raw []byte) reqID {
	if raw == nil {
		return reqID{}
	}
	if raw[0] != '"' && raw[0] != '-' && len(raw) <= 19 {
		if n, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
			return reqID{num: n, set: true}
		}
	}
	return reqID{raw: bytes.Clone(raw), set: true}
}

// appendTo returns the id as JSON, using buf's storage for numbers.
func (r reqID) bytes(buf []byte) []byte {
	if !r.set {
		return nil
	}
	if r.raw != nil {
		return r.raw
	}
	return strconv.AppendUint(buf[:0], r.num, 10)
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{
		srv:         s,
		id:          s.nextConn.Add(1),
		nc:          nc,
		q:           outq.New[delivery](s.cfg.MaxQueueBytes),
		connectedAt: time.Now(),
		ended:       make(chan struct{}),
		quit:        make(chan struct{}),
	}
	c.q.MaxLines = s.cfg.MaxQueueEvents
	c.q.HardLimit = s.cfg.MaxConnectionBytes
	c.q.RecordBytes = RecordBytes
	c.q.StuckAfter = stuckAfter
	c.pid, c.uid, c.gid = peerCred(nc)
	c.sid = peerSID(c.pid)
	c.q.Written = c.written
	c.q.Failed = c.failed
	c.q.Overflow = c.overflow
	c.q.Stopped = c.writeFailed
	c.q.Start(nc) // a writer runs while there is something to write
	c.slot.Resume = c.run
	if s.parker != nil {
		switch nc := nc.(type) {
		case *net.UnixConn, *net.TCPConn: // not TLS or a pipe: a socket lines reads raw
			c.raw, _ = nc.(syscall.Conn).SyscallConn()
		}
	}
	return c
}

// RecordBytes is what the bookkeeping of one queued event counts against
// its target's MaxQueueBytes and MaxConnectionBytes, besides its line: the
// delivery record, with a request Id of up to maxRequestIDBytes.
const RecordBytes = 128

// overflow runs when a line would have taken c's queue past
// MaxConnectionBytes: c is not reading what it is sent, so it is closed as
// a slow consumer rather than let it grow the service.
func (c *conn) overflow(held int) {
	c.srv.ctr.slowClosed.Add(1)
	c.srv.warns.warn(c.srv.log, "slow_consumer", c.warnKey(), "closing slow consumer: it does not read what it is sent",
		c.logArgs("conn", c.id, "held_bytes", held, "limit", c.srv.cfg.MaxConnectionBytes)...)
	c.abort()
}

// start runs a new connection's reader on the calling goroutine (run).
func (c *conn) start() {
	c.srv.log.Debug("connected", c.logArgs("conn", c.id)...)
	c.run()
}

// errParked is readLoop's return when the reader parked: its goroutine
// ends, and the connection goes on.
var errParked = errors.New("parked")

// run runs the reader until it parks, returning with the connection still
// open (the Parker calls run again on a new goroutine: slot.Resume), or
// until the connection ends, which run then cleans up (end): whichever
// goroutine runs the reader last does, once.
func (c *conn) run() {
	if err := c.readLoop(); err != errParked {
		c.end(err)
	}
}

// end runs once the client went away or the server stopped: it drops the
// connection's machine ids at once, lets the writer finish, closes the
// socket and takes the connection out of the server. The writer is the
// queue's goroutine, started by the first line queued and gone while the
// connection is idle (outq.Start).
func (c *conn) end(err error) {
	s := c.srv
	c.stop()
	c.lr.Release()

	s.routes.Drop(c, c.ids)
	if s.fed != nil {
		s.releaseIDs(c.ids)
	}
	c.detachDurable("")
	s.watches.RemoveAll(c, c.watchIDs)
	if s.fed != nil {
		for _, id := range c.watchIDs {
			s.fed.RemoveWatch(id)
		}
	}
	c.failPending()
	c.forgetRequests()
	c.q.Close()
	// Give the writer a bounded time to write what is queued.
	c.nc.SetWriteDeadline(time.Now().Add(s.cfg.ShutdownTimeout))
	c.q.Wait()
	c.nc.Close()
	s.log.Debug("disconnected", "conn", c.id, "machines", c.ids, "reason", err)
	s.ended(c)
}

// stop is the one way to end the connection: it runs once, and makes the
// reader return (its read side is shut; where that is not possible, its
// read deadline passes, and the reader may no longer change it; a parked
// reader is resumed and may no longer park). end then drops the
// connection's state and lets the writer drain.
func (c *conn) stop() {
	c.stopOnce.Do(func() {
		c.stopMu.Lock()
		close(c.quit)
		c.stopMu.Unlock()
		if cr, ok := c.nc.(interface{ CloseRead() error }); !ok || cr.CloseRead() != nil {
			c.nc.SetReadDeadline(time.Unix(1, 0))
		}
		// The socket is still open: a close may take it out of the
		// Parker's set before its hang-up is seen there.
		c.srv.parker.Stop(&c.slot)
	})
}

// abort is stop without the drain: the socket closes, so a write blocked
// on a peer that does not read fails at once.
func (c *conn) abort() {
	c.stop()
	c.nc.Close()
}

// writeFailed runs when a write to c failed: the queue is closed, and the
// reader must stop too.
func (c *conn) writeFailed(error) { c.abort() }

// writeStuck closes c after one write to it stayed blocked for
// WriteTimeout: its peer stopped reading, and the events queued for it
// would otherwise wait for ever, their senders with them. They fail with
// "... was closed as a slow consumer before the event was written".
func (c *conn) writeStuck() {
	c.srv.ctr.slowClosed.Add(1)
	c.srv.warns.warn(c.srv.log, "slow_consumer", c.warnKey(), "closing slow consumer: a write to it was blocked for WriteTimeout",
		c.logArgs("conn", c.id, "held_bytes", c.q.Len(), "for", c.srv.cfg.WriteTimeout)...)
	c.q.Abort(outq.ErrOverflow)
	c.abort()
}

// notReading closes c after its responses stayed over MaxQueueBytes for
// SlowConsumerTimeout while it kept writing: it is not reading them.
func (c *conn) notReading() {
	c.srv.ctr.slowClosed.Add(1)
	c.srv.warns.warn(c.srv.log, "slow_consumer", c.warnKey(), "closing slow consumer: it does not read what it is sent",
		c.logArgs("conn", c.id, "held_bytes", c.q.Len(), "for", c.srv.cfg.SlowConsumerTimeout)...)
	c.abort()
}

// setReadDeadline changes the read deadline unless the connection is
// stopping: the reader can never undo stop.
func (c *conn) setReadDeadline(t time.Time) {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	select {
	case <-c.quit:
	default:
		c.nc.SetReadDeadline(t)
	}
}

// stopping reports whether stop has run.
func (c *conn) stopping() bool {
	select {
	case <-c.quit:
		return true
	default:
		return false
	}
}

// readLoop reads and executes requests until the connection ends or the
// reader parks (errParked). Its first call sets up the reader and the
// handshake's deadline; a call after a park goes on where it stopped.
func (c *conn) readLoop() error {
	s := c.srv
	if c.lr == nil {
		c.lr = lines.NewReader(c.nc, s.cfg.MaxMessageBytes, func(n int) {
			c.stamped = false
			c.fresh = true
			c.ctr.bytesIn.Add(uint64(n))
		})
		c.setReadDeadline(c.connectedAt.Add(s.cfg.HandshakeTimeout))
	}
	if c.scratch == nil {
		c.scratch = new(scratch)
	}
	lr := c.lr
	for {
		typ, line, err := lr.NextMsg()
		if err != nil && c.parkAsk.Load() && errors.Is(err, os.ErrDeadlineExceeded) && !c.stopping() {
			// The janitor saw it idle. What lr holds of a partial line
			// stays in lr.
			c.setReadDeadline(time.Time{})
			c.parkAsk.Store(false)
			sc := c.scratch
			c.scratch = nil
			if s.parker.Park(&c.slot, c.raw) {
				return errParked
			}
			c.scratch = sc
			continue
		}
		if err != nil && !c.greeted && errors.Is(err, os.ErrDeadlineExceeded) && !c.stopping() {
			c.replyError(protocol.ErrHandshake.New("no Register within "+s.cfg.HandshakeTimeout.String()), nil)
			s.log.Info("handshake timeout", c.logArgs("conn", c.id)...)
			return err
		}
		if err == lines.ErrTooLong {
			c.req.Framed, c.req.NumID = typ != 0, 0 // the answer's form; its Id is not known
			c.replyError(protocol.TooLarge(s.cfg.MaxMessageBytes), nil)
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if c.fresh {
			// Once per read: a peer whose responses pile up is not
			// served more requests until it reads them.
			c.fresh = false
			if err := c.q.WaitDrain(s.cfg.SlowConsumerTimeout, c.quit); err == outq.ErrFull {
				c.notReading()
				return err
			}
		}
		if c.stopping() {
			return nil // what was read before the stop is not executed
		}
		if typ != 0 {
			c.handleFrame(typ, line)
			c.dropScratch()
			continue
		}
		line = bytes.TrimPrefix(line, bom)
		if len(bytes.TrimSpace(line)) == 0 {
			continue // blank lines are ignored, as keep-alives
		}
		c.handle(line)
		if c.framed && lr.FrameBelow == 0 {
			lr.FrameBelow = protocol.FrameBelow
		}
		if !c.greeted && (len(c.ids) > 0 || c.req.Type == protocol.Health || c.req.Type == protocol.Machines) {
			c.greeted = true
			c.setReadDeadline(time.Time{})
			c.mayPark.Store(c.raw != nil)
		}
	}
}

// touch records activity for the health status, at most once per read:
// one clock read serves every line that arrived together. Health and
// Machines questions are not activity.
func (c *conn) touch() {
	if !c.stamped {
		c.stamped = true
		c.readAt = time.Now()
		c.srv.lastActivity.Store(c.readAt.UnixNano())
	}
}

// handle executes one request line.
func (c *conn) handle(line []byte) {
	r := &c.req
	if err := protocol.DecodeRequest(line, r); err != nil {
		if len(r.ID) > maxRequestIDBytes {
			r.ID = nil
		}
		c.replyError(err, r.ID)
		return
	}
	if len(r.ID) > maxRequestIDBytes {
		c.replyError(errLongID, nil)
		return
	}
	if r.Type != protocol.Health && r.Type != protocol.Machines {
		c.touch()
	}
	c.execute(r)
}

// execute runs a decoded request, line or frame, and answers its error.
func (c *conn) execute(r *protocol.Request) {
	c.reqSeq++
	c.sent.Target = nil
	var err error
	switch r.Type {
	case protocol.SendEvent:
		c.ctr.received.Add(1)
		err = c.sendEvent(r)
	case protocol.Register:
		err = c.register(r)
	case protocol.Subscribe:
		err = c.subscribe(r)
	case protocol.Unregister:
		err = c.unregister(r)
	case protocol.Health, protocol.Machines:
		err = c.admin(r)
	case protocol.Reply:
		err = c.replyTo(r)
	case protocol.JoinGroup, protocol.LeaveGroup:
		err = c.joinLeave(r)
	case protocol.Watch, protocol.Unwatch:
		err = c.watch(r)
	case protocol.SetState:
		err = c.setState(r)
	case protocol.Ack:
		err = c.ack(r)
	case protocol.Replay:
		err = c.replay(r)
	case protocol.DeadLetters:
		err = c.deadLetters(r)
	}
	if err != nil {
		if r.Type == protocol.SendEvent && r.ID == nil && c.multi.Load() {
			if id := c.held(r.Event.Source); id != "" {
				// Which of its ids sent it: a refused post has no Id
				// to say.
				c.replyErrorFor(err, id)
				return
			}
		}
		c.replyError(err, r.ID)
	}
}

func (c *conn) info(id string) router.Info {
	return router.Info{
		MachineID: id, RegisteredAt: time.Now(),
		Conn: c.id, ConnectedAt: c.connectedAt, PeerPID: c.pid, PeerUID: c.uid, PeerGID: c.gid,
		PeerCert: c.certName(), PeerAddr: c.addr, PeerSID: c.sid,
	}
}

func (c *conn) register(r *protocol.Request) error {
	var reg protocol.Registration
	if err := protocol.DecodeRegistration(r.Payload, &reg); err != nil {
		return err
	}
	if len(reg.ProcessName) > protocol.MaxIDBytes {
		return errLongProcessName // the registry keeps it, for as long as the id lives
	}
	if reg.Durable {
		if err := c.mayDeclareDurable(string(reg.MachineID)); err != nil {
			return err
		}
	}
	id := c.held(reg.MachineID)
	if id == "" {
		id = string(reg.MachineID)
		if err := c.mayHold(id); err != nil {
			return err
		}
		c.noteSecond()
		c.awaitLeaving(id)
		if c.srv.fed != nil {
			if err := c.claim(id, reg.ProcessName, time.Time{}); err != nil {
				return err
			}
		}
	}
	info := c.info(id)
	info.ProcessName, info.ProcessID = reg.ProcessName, reg.ProcessID
	if err := c.srv.routes.Register(c, info); err != nil {
		return err
	}
	c.hold(id)
	if reg.Durable {
		if err := c.declareDurable(id); err != nil {
			c.undoRegister(id)
			return err
		}
	}
	c.srv.log.Debug("registered", "machine", id, "conn", c.id, "pid", c.pid)
	data := protocol.AppendMachineTime(nil, reg.MachineID, "RegisteredAt", info.RegisteredAt)
	if reg.Framing == protocol.Framing && !c.srv.cfg.NoCompactFraming {
		// From the next read on, frames are read too; deliveries to c may
		// be frames from now on (its id is routable already): the client
		// asked, so it reads both.
		c.framed = true
		c.compact.Store(true)
		data = protocol.AppendFraming(data, protocol.Framing)
	}
	c.reply(data, r.ID)
	return nil
}

func (c *conn) subscribe(r *protocol.Request) error {
	b, err := protocol.MachineIDPayload(r.Payload)
	if err != nil {
		return err
	}
	now := time.Now()
	id := c.held(b)
	if id == "" {
		id = string(b)
		if err := c.mayHold(id); err != nil {
			return err
		}
		c.noteSecond()
		c.awaitLeaving(id)
		if c.srv.fed != nil {
			if err := c.claim(id, "", now); err != nil {
				return err
			}
		}
	} else if c.srv.fed != nil {
		if err := c.srv.fed.MarkSubscribed(context.Background(), id, now); err != nil {
			return c.claimErr(id, err)
		}
	}
	if _, err := c.srv.routes.Subscribe(c, c.info(id), now); err != nil {
		return err
	}
	c.hold(id)
	// The answer first: a durable mailbox's stored events, which Attach
	// starts handing over from another goroutine, come after it.
	c.reply(protocol.AppendMachineTime(nil, b, "SubscribedAt", now), r.ID)
	c.attachDurable(id)
	c.srv.log.Debug("subscribed", "machine", id, "conn", c.id)
	return nil
}

func (c *conn) unregister(r *protocol.Request) error {
	b, err := protocol.MachineIDPayload(r.Payload)
	if err != nil {
		return err
	}
	left, err := c.srv.routes.Unregister(c, string(b))
	if err != nil {
		return err
	}
	c.memberships -= left
	if c.srv.fed != nil && c.held(b) != "" {
		c.srv.fed.Release(string(b))
	}
	c.detachDurable(string(b))
	c.release(string(b))
	c.reply(nil, r.ID)
	return nil
}

// leavingWait bounds how long a registration waits for the connection
// that holds its id to end once that connection's client has hung up
// (awaitLeaving).
const leavingWait = 2 * time.Second

// awaitLeaving waits, for at most leavingWait, for the connection that
// holds id to end when its client has already hung up. A client's Close
// does not wait for the service to free its ids: it closes the socket,
// and the id's connection ends once its reader has executed what the
// client sent before and read the end. A registration of the id that
// arrives meanwhile (the same program starting again) must not find it in
// use. A holder whose client is still there is not waited for: the
// registration fails at once with "Machine id already in use". Only
// Linux can tell a hung-up peer without reading (hungUp).
func (c *conn) awaitLeaving(id string) {
	o, ok := c.srv.routes.Holder(id)
	if !ok || o == c || !hungUp(o.nc) {
		return
	}
	t := time.NewTimer(leavingWait)
	defer t.Stop()
	select {
	case <-o.ended:
	case <-c.quit:
	case <-t.C:
	}
}

// mayHold checks a new id for this connection: the access rules, the
// reservations of ids for users, and MaxIDsPerConnection.
func (c *conn) mayHold(id string) error {
	err := c.rule.MayRegister(id)
	if err == nil {
		err = c.srv.access.Load().MayHold(c.peer(), id)
	}
	if err != nil {
		c.denied(err)
		return err
	}
	if max := c.srv.cfg.MaxIDsPerConnection; len(c.ids) >= max {
		return limitErr(max, "machine ids per connection (MaxIdsPerConnection); unregister one first")
	}
	return nil
}

// noteSecond marks c as holding several ids when it is about to take a
// new one next to another, before the new one is routable (the router's
// lock orders this store before any sender's lookup of it).
func (c *conn) noteSecond() {
	if len(c.ids) > 0 && !c.multi.Load() {
		c.multi.Store(true)
	}
}

// addressed adds "For" to the delivery line at the end of b when multi
// (the target's multi, read once per line): which of its ids it is for.
func addressed(b []byte, multi bool, tid string) []byte {
	if !multi {
		return b
	}
	return protocol.AppendFor(b, tid)
}

// forBytes is what "For" adds to a line for tid.
func forBytes(multi bool, tid string) int {
	if !multi {
		return 0
	}
	return len(tid) + 16
}

// maxRequestIDBytes bounds a request's "Id", which the service keeps with
// every event in flight.
const maxRequestIDBytes = 64

var (
	errLongProcessName = protocol.ErrLimit.New("a ProcessName is at most " + strconv.Itoa(protocol.MaxIDBytes) + " bytes")
	errLongEventName   = protocol.ErrLimit.New("an EventName is at most " + strconv.Itoa(protocol.MaxIDBytes) + " bytes")
)

var errLongID = protocol.ErrLimit.New("a request Id is at most " + strconv.Itoa(maxRequestIDBytes) + " bytes")

// limitErr returns the error for a per-connection limit of n things.
func limitErr(n int, what string) error {
	return protocol.ErrLimit.New(strconv.Itoa(n) + " " + what)
}

// denied logs a refused action with the peer's credentials: the first of a
// connection at Warn (rate-limited across connections), the rest at Debug,
// so that clients repeating a refused action cannot flood the log (the
// refusals are counted anyway).
func (c *conn) denied(err error) {
	if !c.warnedDenied {
		c.warnedDenied = true
		c.srv.warns.warn(c.srv.log, "denied", c.warnKey(), "denied", c.logArgs("reason", err, "conn", c.id)...)
		return
	}
	c.srv.log.Log(context.Background(), slog.LevelDebug, "denied", c.logArgs("reason", err, "conn", c.id)...)
}

// outqPriority maps a request's priority onto the queue's lanes.
func outqPriority(r *protocol.Request) outq.Priority { return outq.Priority(r.Priority) }

// held returns the id as this connection holds it, or "". Most
// connections hold one id or a few; past idSetMin a map finds it.
func (c *conn) held(id []byte) string {
	if c.idSet != nil {
		if i, ok := c.idSet[string(id)]; ok {
			return c.ids[i]
		}
		return ""
	}
	for _, h := range c.ids {
		if h == string(id) {
			return h
		}
	}
	return ""
}

const idSetMin = 8

func (c *conn) hold(id string) {
	if c.held([]byte(id)) != "" {
		return
	}
	c.ids = append(c.ids, id)
	if c.idSet == nil && len(c.ids) >= idSetMin {
		c.idSet = make(map[string]int, len(c.ids))
		for i, h := range c.ids {
			c.idSet[h] = i
		}
	} else if c.idSet != nil {
		c.idSet[id] = len(c.ids) - 1
	}
}

// release forgets an id the connection no longer holds.
func (c *conn) release(id string) {
	i := slices.Index(c.ids, id)
	if c.idSet != nil {
		var ok bool
		if i, ok = c.idSet[id]; !ok {
			return
		}
		delete(c.idSet, id)
	}
	if i < 0 {
		return
	}
	last := len(c.ids) - 1
	c.ids[i] = c.ids[last]
	c.ids = c.ids[:last]
	if c.idSet != nil && i < last {
		c.idSet[c.ids[i]] = i
	}
}

// sendEvent routes one event. The event object is forwarded byte for byte;
// only its three names are read.
func (c *conn) sendEvent(r *protocol.Request) error {
	ev := &r.Event
	if err := r.EventErr(); err != nil {
		return err
	}
	if len(ev.Name) > protocol.MaxIDBytes {
		return errLongEventName // watch filters match it: keep that cheap
	}
	if c.held(ev.Source) == "" {
		return protocol.ErrNotOwner.New(string(ev.Source))
	}
	if c.rule != nil {
		if err := c.rule.MaySend(string(ev.Target)); err != nil {
			c.denied(err)
			return err
		}
	}
	if rs := c.srv.rules.Load(); rs != nil {
		d := rs.Apply(ev.Name, ev.Source, ev.Target, c.copies)
		c.copies = d.Copies
		if d.Dropped {
			return protocol.ErrDropped.New(d.Reason)
		}
		for _, to := range d.Copies {
			c.ruleCopy(r, to)
		}
		if d.Redirect != "" {
			// The envelope keeps the target as sent, as a line's bytes
			// do: in frames, and in the lines built from a frame.
			c.eventJSON(r)
			c.sent = *ev
			ev.Target = []byte(d.Redirect) // routed there; the event's bytes stay as sent
		}
	}
	if c.srv.cfg.Tracer != nil && len(ev.TraceParent) != 0 {
		return c.routeTraced(r)
	}
	return c.routeAndCopy(r)
}

// routeAndCopy routes an accepted event and, once routed, copies it to
// watchers, the tap and other daemons' watchers.
func (c *conn) routeAndCopy(r *protocol.Request) error {
	err := c.route(r)
	if err == nil {
		c.copyToWatchers(r)
		if t := c.srv.tap.Load(); t != nil {
			c.tapped(t, r)
		}
		if c.srv.fed != nil {
			c.watchRemote(r)
		}
	}
	return err
}

// ruleCopy sends a routing rule's copy of an event to a machine or one
// member of a group. The sender is not told about copies; failures are
// counted.
func (c *conn) ruleCopy(r *protocol.Request, to string) {
	var err error
	if g, _, ok := protocol.GroupTarget([]byte(to)); ok {
		if members, first := c.srv.routes.Members(g); len(members) > 0 {
			m := members[first]
			err = c.deliver(m.Owner, m.ID, r, modeCopy)
		} else if c.srv.fed == nil || !c.ruleCopyRemote(r, to) {
			err = protocol.ErrTargetNotConnected.New(to)
		}
	} else if route, ok := c.srv.routes.Lookup([]byte(to)); ok {
		err = c.deliver(route.Owner, route.ID, r, modeCopy)
	} else if c.srv.fed == nil || !c.ruleCopyRemote(r, to) {
		err = protocol.ErrTargetNotConnected.New(to)
	}
	if err != nil {
		c.srv.ctr.copiesFailed.Add(1)
	}
}

// route delivers an accepted event to its target, group or everyone.
func (c *conn) route(r *protocol.Request) error {
	ev := &r.Event
	if g, all, ok := protocol.GroupTarget(ev.Target); ok {
		return c.toGroup(r, g, all)
	}
	if r.IsRequest {
		return c.request(r)
	}
	if len(ev.Target) == 1 && ev.Target[0] == '*' {
		return c.broadcast(r)
	}
	if c.srv.dur != nil {
		mb, err := c.srv.durableMailbox(ev.Target)
		if err != nil {
			return durErr(err)
		}
		if mb != nil {
			return c.store(mb, r)
		}
	}
	route, ok := c.srv.routes.Lookup(ev.Target)
	if !ok {
		if c.srv.fed != nil {
			if node, ok := c.routeRemote(ev.Target); ok {
				return c.toRemote(node, string(ev.Target), r)
			}
		}
		return protocol.ErrTargetNotConnected.New(string(ev.Target))
	}
	return c.deliver(route.Owner, route.ID, r, modeUnicast)
}

// deliveryMode says how an event line's outcome is reported.
type deliveryMode uint8

const (
	modeUnicast   deliveryMode = iota // acknowledged once written
	modeBroadcast                     // acknowledged by the caller when queued; failures reported
	modeCopy                          // a routing rule's copy: nothing reported to the sender
)

// deliver queues the event line on target. A unicast waits for room up
// to SlowConsumerTimeout. Fan-out (broadcast, a group's every member, a
// rule's copy) waits at most stuckAfter, and only for a target that is
// reading: one whose writer has been blocked for stuckAfter misses the
// event at once, counted, so a peer that stopped reading never holds up
// the others, and one that reads slowly on purpose costs a sender at most
// stuckAfter per batch it writes.
func (c *conn) deliver(target *conn, tid string, r *protocol.Request, mode deliveryMode) error {
	return c.deliverOpt(target, tid, r, mode, 0, noDeadline, true)
}

// stuckAfter is how long a connection's writer may be blocked in one
// write before fan-out stops waiting for it: a reading peer takes 64 KiB
// in far less.
const stuckAfter = 500 * time.Millisecond

var noDeadline time.Time

// deliverOpt is deliver with options. For a request (token not 0) the
// line carries the token to reply with and the deadline, and no
// acknowledgement follows: the reply is the response. Without wait a full
// queue fails at once.
func (c *conn) deliverOpt(target *conn, tid string, r *protocol.Request, mode deliveryMode, token uint64, deadline time.Time, wait bool) error {
	s := c.srv
	multi := target.multi.Load()
	compact := target.compact.Load()
	var n int
	if compact {
		ev := &r.Event
		n = len(ev.Source) + len(ev.Target) + len(ev.Name) + len(ev.Payload) + len(ev.TraceParent) + len(ev.TraceState) +
			protocol.EventFrameOverhead + RecordBytes + forBytes(multi, tid)
	} else {
		n = len(c.eventJSON(r)) + protocol.DeliveryOverhead + 64 + RecordBytes + forBytes(multi, tid)
	}
	var ds *deliverSpan
	if c.traced != nil {
		ds = c.traced.startDeliver(tid, mode, token != 0)
	}
	var b []byte
	var err error
	pri := outqPriority(r)
	switch {
	case !wait:
		b, err = target.q.TryBegin(pri, n)
	case mode == modeUnicast:
		b, err = target.q.BeginPri(pri, n, s.cfg.SlowConsumerTimeout, s.done)
	default:
		b, err = target.q.BeginFanout(pri, n, min(s.cfg.SlowConsumerTimeout, stuckAfter), s.done)
	}
	switch err {
	case nil:
	case outq.ErrFull:
		err = protocol.ErrSlowConsumer.New(tid)
	case outq.ErrCanceled:
		err = protocol.ErrShuttingDown.New("")
	default:
		err = protocol.ErrTargetNotConnected.New(tid)
	}
	if err != nil {
		ds.refused(err)
		return err
	}
	d := delivery{sender: c, target: tid, id: reqIDOf(r), broadcast: mode != modeUnicast, noAck: r.NoAck, quiet: mode == modeCopy, trace: ds}
	switch {
	case compact && token == 0 && !multi:
		// The same frame for every such target of this event: built once
		// (a broadcast to fifty copies it fifty times).
		if c.frameOf != c.reqSeq {
			f := protocol.EventFrame{Timestamp: c.eventTime(r)}
			c.frame = protocol.AppendEventFrame(c.frame[:0], c.envelope(r), &f)
			c.frameOf = c.reqSeq
		}
		b = append(b, c.frame...)
	case compact:
		f := protocol.EventFrame{Timestamp: c.eventTime(r), ReplyTo: token}
		if token != 0 && !deadline.IsZero() {
			f.Deadline = deadline.UnixNano()
		}
		if multi {
			f.For = tid
		}
		b = protocol.AppendEventFrame(b, c.envelope(r), &f)
	case token != 0:
		b = addressed(protocol.AppendRequestDelivery(b, r.Payload, token, deadline), multi, tid)
	default:
		b = addressed(protocol.AppendDelivery(b, r.Payload), multi, tid)
	}
	if token != 0 {
		d.noAck, d.request = true, true
	}
	if c.sample++; c.sample%64 == 0 && s.cfg.OnRouteLatency != nil {
		d.queuedAt = time.Now().UnixNano()
	}
	target.q.CommitRec(b, d)
	return nil
}

// broadcast queues the event on every subscribed machine but the sender
// and acknowledges at once with the number of recipients.
func (c *conn) broadcast(r *protocol.Request) error {
	c.targets = c.srv.routes.AppendSubscribed(c.targets[:0], r.Event.Source)
	n := 0
	for _, t := range c.targets {
		if err := c.deliver(t.Owner, t.ID, r, modeBroadcast); err == nil {
			n++
		} else {
			c.srv.countRefusal(err, 1)
		}
	}
	clear(c.targets)
	if c.srv.fed != nil {
		c.broadcastRemote(r, []byte(protocol.Broadcast), n)
		return nil
	}
	if r.NoAck {
		return nil
	}
	b, err := c.q.BeginNoWait()
	if err != nil {
		return nil
	}
	c.q.Commit(appendAck(b, protocol.Broadcast, n, reqIDOf(r)))
	return nil
}

// written runs on a target's writer after its lines reached the socket:
// each sender gets its acknowledgements, appended in one go per sender.
func (c *conn) written(recs []delivery) {
	c.ctr.delivered.Add(uint64(len(recs)))
	if c.srv.cfg.Tracer != nil {
		endDelivered(recs)
	}
	if observe := c.srv.cfg.OnRouteLatency; observe != nil {
		var now int64
		for i := range recs {
			if at := recs[i].queuedAt; at != 0 {
				if now == 0 {
					now = time.Now().UnixNano()
				}
				observe(time.Duration(now - at))
			}
		}
	}
	for i := 0; i < len(recs); {
		sender := recs[i].sender
		if sender == nil { // from another daemon, or a remote broadcast
			c.srv.remoteWritten(&recs[i])
			i++
			continue
		}
		b, err := sender.q.BeginNoWait()
		for ; i < len(recs) && recs[i].sender == sender; i++ {
			if err == nil && !recs[i].broadcast && !recs[i].noAck {
				b = appendAck(b, recs[i].target, -1, recs[i].id)
			}
		}
		if err == nil {
			sender.q.Commit(b)
		}
	}
}

// failed runs when queued lines can no longer be written to c: every
// sender learns which events were not delivered.
func (c *conn) failed(recs []delivery, cause error) {
	c.srv.countRefusal(protocol.ErrDeliveryFailed, uint64(len(recs)))
	why := " disconnected before the event was written"
	if cause == outq.ErrOverflow {
		why = " was closed as a slow consumer before the event was written"
	}
	if c.srv.cfg.Tracer != nil {
		endUndelivered(recs, cause, why)
	}
	var idb [20]byte
	for _, d := range recs {
		if d.sender == nil {
			c.srv.remoteFailed(&d, why)
			continue
		}
		if d.request || d.quiet || d.broadcast {
			// failPending tells a request's caller; a copy's sender never
			// asked for it; a fanned-out event was acknowledged with its
			// recipients already, and a peer that makes itself fail must
			// not flood its senders with one line per copy.
			continue
		}
		b, err := d.sender.q.BeginNoWait()
		if err != nil {
			continue
		}
		text := protocol.ErrDeliveryFailed.New(d.target + why).Text
		d.sender.q.Commit(appendError(b, text, d.id, idb[:]))
	}
	c.srv.log.Debug("undelivered events", "conn", c.id, "count", len(recs), "err", cause)
}

// reply queues a successful response.
func (c *conn) reply(data, id []byte) {
	b, err := c.q.BeginNoWait()
	if err != nil {
		return
	}
	c.q.Commit(protocol.AppendOK(b, data, id))
}

// replyErrorFor queues the refusal of an event without an Id sent as
// source, on a connection that holds several ids: "For" names it.
func (c *conn) replyErrorFor(err error, source string) {
	c.srv.countRefusal(err, 1)
	b, qerr := c.q.BeginNoWait()
	if qerr != nil {
		return
	}
	if c.req.Framed {
		c.q.Commit(protocol.AppendErrorFrame(b, 0, protocol.Wire(err).Text, source))
		return
	}
	c.q.Commit(protocol.AppendFor(protocol.AppendError(b, protocol.Wire(err).Text, nil), source))
}

// replyError queues the error response to the request being read (c.req,
// whose form, line or frame, the answer takes).
func (c *conn) replyError(err error, id []byte) {
	c.srv.countRefusal(err, 1)
	b, qerr := c.q.BeginNoWait()
	if qerr != nil {
		return
	}
	if c.req.Framed {
		c.q.Commit(protocol.AppendErrorFrame(b, c.req.NumID, protocol.Wire(err).Text, ""))
		return
	}
	c.q.Commit(protocol.AppendError(b, protocol.Wire(err).Text, id))
}

// appendAck appends the acknowledgement of an event with id: a frame for
// a frame, else a line.
func appendAck(b []byte, target string, recipients int, id reqID) []byte {
	if id.frame {
		if !id.set {
			return b
		}
		return protocol.AppendAckFrame(b, id.num, target, recipients)
	}
	var idb [20]byte
	return protocol.AppendAck(b, []byte(target), recipients, id.bytes(idb[:]))
}

// appendError appends an error response to the request with id: a frame
// for a frame, else a line. idb is scratch for a numeric id.
func appendError(b []byte, text string, id reqID, idb []byte) []byte {
	if id.frame {
		return protocol.AppendErrorFrame(b, id.num, text, "")
	}
	return protocol.AppendError(b, text, id.bytes(idb))
}

// appendResult appends the successful response to the request with id,
// whose Data is data.
func appendResult(b []byte, data []byte, id reqID, idb []byte) []byte {
	if id.frame {
		return protocol.AppendResultFrame(b, id.num, data)
	}
	return protocol.AppendOK(b, data, id.bytes(idb))
}

// keepScratch is the largest scratch buffer (a frame's event object, a
// fan-out's frame) a connection keeps between requests: one that sent a
// large event once does not hold its size while idle.
const keepScratch = 32 << 10

func (c *conn) dropScratch() {
	if cap(c.frame) > keepScratch {
		c.frame, c.frameOf = nil, 0
	}
	if cap(c.evObj) > keepScratch {
		c.evObj = nil
	}
}

// eventJSON returns the event object of r as a JSON reader gets it: the
// bytes the sender wrote, for a line; for a frame, the object built from
// its fields once (then kept in r.Payload until the next request),
// stamped with the time of the read that brought it.
func (c *conn) eventJSON(r *protocol.Request) []byte {
	if r.Payload == nil && r.Framed {
		c.evObj = protocol.AppendEventObject(c.evObj[:0], &r.Event, c.readAt)
		r.Payload = c.evObj
	}
	return r.Payload
}

// envelope is the event whose fields a frame to a compact receiver
// carries: r's as its sender sent it, whatever a routing rule redirected.
func (c *conn) envelope(r *protocol.Request) *protocol.Event {
	if c.sent.Target != nil {
		return &c.sent
	}
	return &r.Event
}

// eventTime is r's timestamp for a frame, in unix nanoseconds: the
// sender's Timestamp for a line (0 when absent or unreadable), the read's
// time for a frame.
func (c *conn) eventTime(r *protocol.Request) int64 {
	if r.Framed {
		return c.readAt.UnixNano()
	}
	if ts := r.Event.Timestamp; len(ts) > 2 && ts[0] == '"' {
		if t, err := protocol.ParseTimeBytes(ts[1 : len(ts)-1]); err == nil {
			return t.UnixNano()
		}
	}
	return 0
}

// handleFrame executes one frame (the compact framing).
func (c *conn) handleFrame(typ byte, body []byte) {
	r := &c.req
	switch typ {
	case protocol.FrameSend:
		if err := protocol.DecodeSendFrame(body, r); err != nil {
			c.replyError(err, nil)
			return
		}
		c.touch()
		c.execute(r)
	case protocol.FrameReply:
		*r = protocol.Request{Type: protocol.Reply, Framed: true}
		c.touch()
		if err := c.replyFrame(body); err != nil {
			c.replyError(err, nil)
		}
	default:
		*r = protocol.Request{Framed: true}
		c.replyError(protocol.ErrMalformedFrame.New("frame type "+strconv.Itoa(int(typ))+" is not one a client sends (SendEvent 1, Reply 2)"), nil)
	}
}
