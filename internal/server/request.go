package server

import (
	"strconv"
	"time"

	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/protocol"
)

// pendingRequest is a request delivered to a connection that has not
// replied yet. It lives in the target connection's map, so a reply (read
// on that connection) finds it, and the connection's end fails it.
type pendingRequest struct {
	caller   *conn
	id       reqID
	target   string
	deadline time.Time // zero: none
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
		return protocol.ErrNoResponder.New(string(ev.Target) + " is not connected")
	}
	return c.requestTo(route, r, true)
}

// requestTo delivers request r to one route and records it as pending
// there. Without wait a full queue fails at once.
func (c *conn) requestTo(route router.Route[*conn], r *protocol.Request, wait bool) error {
	target := route.Owner
	token := c.srv.nextToken.Add(1)
	var deadline time.Time
	if r.TimeoutMs > 0 {
		deadline = time.Now().Add(time.Duration(r.TimeoutMs) * time.Millisecond)
	}
	if !target.addPending(token, &pendingRequest{caller: c, id: makeReqID(r.ID), target: route.ID, deadline: deadline}) {
		return protocol.ErrNoResponder.New(route.ID + " disconnected")
	}
	if err := c.deliverOpt(target, route.ID, r, modeUnicast, token, deadline, wait); err != nil {
		target.takePending(token)
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
	if len(c.pending) >= 256 && time.Since(c.lastSweep) > time.Second {
		// Forget requests whose callers stopped waiting long ago.
		now := time.Now()
		c.lastSweep = now
		for t, p := range c.pending {
			if !p.deadline.IsZero() && now.Sub(p.deadline) > time.Second {
				delete(c.pending, t)
			}
		}
	}
	c.pending[token] = p
	return true
}

func (c *conn) takePending(token uint64) *pendingRequest {
	c.reqMu.Lock()
	defer c.reqMu.Unlock()
	p := c.pending[token]
	delete(c.pending, token)
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
	var idb [20]byte
	for _, p := range pending {
		text := protocol.ErrNoResponder.New(p.target + " disconnected before replying").Text
		p.caller.sendLine(func(b []byte) []byte { return protocol.AppendError(b, text, p.id.bytes(idb[:])) })
	}
}

// replyTo routes a Reply to the caller of the request it answers, as the
// response to the caller's request id.
func (c *conn) replyTo(r *protocol.Request) error {
	var rp protocol.ReplyPayload
	if err := protocol.DecodeReply(r.Payload, &rp); err != nil {
		return err
	}
	p := c.takePending(rp.ReplyTo)
	if p == nil {
		return protocol.ErrNoRequest.New(strconv.FormatUint(rp.ReplyTo, 10))
	}
	var idb [20]byte
	id := p.id.bytes(idb[:])
	if rp.Error != "" {
		p.caller.sendLine(func(b []byte) []byte { return protocol.AppendError(b, rp.Error, id) })
	} else {
		p.caller.sendLine(func(b []byte) []byte { return protocol.AppendOK(b, rp.Payload, id) })
	}
	if r.ID != nil {
		c.reply(nil, r.ID)
	}
	return nil
}

// sendLine queues a line built by build on c, if c is still open.
func (c *conn) sendLine(build func([]byte) []byte) {
	b, err := c.q.BeginNoWait()
	if err != nil {
		return
	}
	c.q.Commit(build(b))
}
