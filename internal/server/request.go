package server

import (
	"strconv"
	"time"

	"github.com/statebus/statebus/internal/federation"
	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/protocol"
)

// pendingRequest is a request delivered to a connection that has not
// replied yet. It lives in the target connection's map, so a reply (read
// on that connection) finds it. Whoever takes it out of the map (the
// reply, the target's end, the janitor at its deadline, or a failed
// delivery) is its one owner and the only one that answers the caller.
type pendingRequest struct {
	caller   *conn         // nil for a request from another daemon
	remote   *remoteOrigin // that daemon
	id       reqID
	target   string
	deadline time.Time
	timeout  time.Duration
}

// request routes a request event to its one target and remembers who
// waits for the reply. A missing target fails at once.
func (c *conn) request(r *protocol.Request) error {
	ev := &r.Event
	if len(ev.Target) == 1 && ev.Target[0] == '*' {
		return protocol.Required("TargetMachineId (one machine, not \"*\", for a request)")
	}
	route, ok := c.srv.routes.Lookup(ev.Target)
	if !ok {
		if c.srv.fed != nil {
			if node, ok := c.routeRemote(ev.Target); ok {
				return c.requestRemote(node, string(ev.Target), r)
			}
		}
		return protocol.ErrNoResponder.New(string(ev.Target) + " is not connected")
	}
	return c.requestTo(route, r, true)
}

// requestTo delivers request r to one route and records it as pending
// there. Without wait a full queue fails at once. It returns nil without
// answering when the pending entry was already answered by another owner.
func (c *conn) requestTo(route router.Route[*conn], r *protocol.Request, wait bool) error {
	s := c.srv
	if max := s.cfg.MaxPendingRequests; c.requestsOut() >= max {
		return limitErr(max, "requests waiting for replies on this connection (MaxPendingRequests); wait for some to finish")
	}
	target := route.Owner
	token := s.nextToken.Add(1)
	timeout := s.cfg.RequestTimeout
	var sent time.Time // the deadline the target is told: the caller's own
	if r.TimeoutMs > 0 {
		timeout = min(timeout, time.Duration(r.TimeoutMs)*time.Millisecond)
	}
	now := time.Now()
	if r.TimeoutMs > 0 {
		sent = now.Add(timeout)
	}
	p := &pendingRequest{caller: c, id: reqIDOf(r), target: route.ID, deadline: now.Add(timeout), timeout: timeout}
	c.outMu.Lock() // listed first: a reply may come as soon as it is pending
	if c.out == nil {
		c.out = make(map[uint64]*conn)
	}
	c.out[token] = target
	c.outMu.Unlock()
	if !target.addPending(token, p) {
		c.forget(token)
		return protocol.ErrNoResponder.New(route.ID + " disconnected")
	}
	if err := c.deliverOpt(target, route.ID, r, modeUnicast, token, sent, wait); err != nil {
		if target.takePending(token) == nil {
			return nil // the target's end (or the janitor) took it and answered
		}
		return err
	}
	return nil
}

// addPending records a request for c to answer; false once c has ended.
func (c *conn) addPending(token uint64, p *pendingRequest) bool {
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	if c.pending == nil {
		select {
		case <-c.ended:
			return false
		default:
		}
		c.pending = make(map[uint64]*pendingRequest)
	}
	c.pending[token] = p
	if c.nextExpiry.IsZero() || p.deadline.Before(c.nextExpiry) {
		c.nextExpiry = p.deadline
	}
	return true
}

// requestsOut returns how many of c's requests wait for replies.
func (c *conn) requestsOut() int {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return len(c.out) + int(c.remoteOut.Load())
}

// forget drops a request of c's from its list: it was answered, expired
// or failed.
func (c *conn) forget(token uint64) {
	c.outMu.Lock()
	delete(c.out, token)
	c.outMu.Unlock()
}

// forgetRequests runs when c ends: its requests still waiting are taken
// out of their targets, which will never be able to answer them. Nobody
// is answered: the caller is gone.
func (c *conn) forgetRequests() {
	c.outMu.Lock()
	out := c.out
	c.out = nil
	c.outMu.Unlock()
	for token, target := range out {
		target.takePending(token)
	}
}

// takePending removes a pending request and makes the caller its owner;
// nil when someone else took it first.
func (c *conn) takePending(token uint64) *pendingRequest {
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	p := c.pending[token]
	if p != nil {
		delete(c.pending, token)
		p.forget(token)
	}
	return p
}

// failPending tells the caller of every request c did not answer that it
// never will. It runs when c ends.
func (c *conn) failPending() {
	c.reqMu.Lock()
	pending := c.pending
	c.pending = nil
	close(c.ended)
	c.reqMu.Unlock()
	for token, p := range pending {
		p.forget(token)
		p.answerError(protocol.ErrNoResponder.New(p.target + " disconnected before replying").Text)
	}
}

// expirePending answers the callers of requests whose deadline has
// passed: "No responder: ID did not reply within T". The janitor calls it.
func (c *conn) expirePending(now time.Time) {
	c.reqMu.Lock()
	if c.nextExpiry.IsZero() || now.Before(c.nextExpiry) {
		c.reqMu.Unlock()
		return
	}
	var expired []*pendingRequest
	c.nextExpiry = time.Time{}
	for token, p := range c.pending {
		if !now.Before(p.deadline) {
			delete(c.pending, token)
			p.forget(token)
			expired = append(expired, p)
		} else if c.nextExpiry.IsZero() || p.deadline.Before(c.nextExpiry) {
			c.nextExpiry = p.deadline
		}
	}
	c.reqMu.Unlock()
	for _, p := range expired {
		p.answerError(protocol.ErrNoResponder.New(p.target + " did not reply within " + p.timeout.String()).Text)
	}
}

// answerError sends the caller the error response for its request.
func (p *pendingRequest) answerError(text string) {
	if p.remote != nil {
		p.remote.srv.answer(p.remote, federation.KindError, text, nil)
		return
	}
	var idb [20]byte
	p.caller.sendLine(func(b []byte) []byte { return appendError(b, text, p.id, idb[:]) })
}

// replyTo routes a Reply to the caller of the request it answers, as the
// response to the caller's request id. A responder's error is sent as
// "Responder error: TEXT", so that it can never pass for the service's own.
func (c *conn) replyTo(r *protocol.Request) error {
	var rp protocol.ReplyPayload
	if err := protocol.DecodeReply(r.Payload, &rp); err != nil {
		return err
	}
	if err := c.answer(&rp); err != nil {
		return err
	}
	if r.ID != nil {
		c.reply(nil, r.ID)
	}
	return nil
}

// replyFrame routes a Reply frame as replyTo routes a line. Nothing
// acknowledges it.
func (c *conn) replyFrame(body []byte) error {
	var rp protocol.ReplyPayload
	if err := protocol.DecodeReplyFrame(body, &rp, &c.evObj); err != nil {
		return err
	}
	return c.answer(&rp)
}

// answer sends the caller of the request rp answers its reply.
func (c *conn) answer(rp *protocol.ReplyPayload) error {
	p := c.takePending(rp.ReplyTo)
	if p == nil {
		return protocol.ErrNoRequest.New(strconv.FormatUint(rp.ReplyTo, 10))
	}
	if rp.Error != "" {
		p.answerError(protocol.ErrResponder.New(rp.Error).Text)
	} else if p.remote != nil {
		c.srv.answer(p.remote, federation.KindReply, "", rp.Payload)
	} else {
		var idb [20]byte
		p.caller.sendLine(func(b []byte) []byte { return appendResult(b, rp.Payload, p.id, idb[:]) })
	}
	return nil
}

// forget drops the request from its caller's list (a local caller).
func (p *pendingRequest) forget(token uint64) {
	if p.caller != nil {
		p.caller.forget(token)
	}
}

// sendLine queues a line built by build on c, if c is still open.
func (c *conn) sendLine(build func([]byte) []byte) {
	b, err := c.q.BeginNoWait()
	if err != nil {
		return
	}
	c.q.Commit(build(b))
}
