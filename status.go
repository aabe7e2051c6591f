package statebus

import (
	"fmt"
)

// Status is where a client is in its life; see the package documentation
// for the transitions.
type Status int

// The statuses.
const (
	// Connecting: Dial is connecting and registering.
	Connecting Status = iota
	// Connected: registered and subscribed on a live connection.
	Connected
	// Reconnecting: the connection was lost; the client dials again with
	// backoff. Calls fail with ErrNotConnected (or wait, with
	// WithWaitForReconnect).
	Reconnecting
	// Draining: Drain runs: the client leaves its groups, stops its
	// watches, unregisters and lets its handlers finish, then closes.
	Draining
	// Closed: for good. Calls fail with ErrClosed; Err says why.
	Closed
)

var statusNames = [...]string{"connecting", "connected", "reconnecting", "draining", "closed"}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// StatusChange reports a change of the client's Status.
type StatusChange struct {
	From, To Status
	// Err is why: the connection's loss (to Reconnecting or Closed), or
	// what closed the client.
	Err error
	// Attempt is how many attempts a reconnection took (Reconnecting to
	// Connected).
	Attempt int
}

// transitions lists the changes setStatus allows.
var transitions = [...][5]bool{
	Connecting:   {Connected: true, Closed: true},
	Connected:    {Reconnecting: true, Draining: true, Closed: true},
	Reconnecting: {Connected: true, Closed: true},
	Draining:     {Closed: true},
	Closed:       {},
}

// setStatus is the one place that changes the client's status, and with
// it the session calls use; c.mu is held. It reports whether the change
// was made, and refuses one the table above does not allow, the
// publication of a session that has already ended (s.over), and the
// consequences of a session's end (s not nil) when s is no longer the
// client's session. s is, for Connected, the session to publish; for the
// other statuses, the session whose end causes the change (nil when Close
// or Drain do).
//
// Its effects: the session (c.cur, and c.sess for calls, kept while
// Draining so handlers can finish), c.ready (closed when a wait for a
// connection is over), the reconnect loop (started on Reconnecting), and
// on Closed: c.err, c.done, the end of c.ctx (stopping a reconnection in
// progress) and of the dispatcher. The handler given with
// WithStatusHandler hears of each change.
func (c *Client) setStatus(to Status, s *session, cause error, attempt int) bool {
	from := c.status
	if !transitions[from][to] {
		return false
	}
	if to == Connected {
		if s == nil || s.over {
			return false
		}
	} else if s != nil && s != c.cur {
		return false
	}
	c.status = to
	switch to {
	case Connected:
		c.cur = s
		c.sess.Store(s)
	case Draining:
	default:
		c.cur = nil
		c.sess.Store(nil)
	}
	if from == Connecting || from == Reconnecting {
		close(c.ready)
		c.ready = make(chan struct{})
	}
	if to == Draining || to == Closed {
		c.stopping()
	}
	c.disp.enqueueCtl(&control{status: &StatusChange{From: from, To: to, Err: cause, Attempt: attempt}})
	switch to {
	case Reconnecting:
		c.wg.Add(1) // under c.mu: once Closed, nobody adds
		go c.reconnectLoop()
	case Closed:
		c.err = cause
		close(c.done)
		c.cancel()
		c.disp.close(s == nil) // Close and Drain drop what is queued; a loss lets it run
		for _, x := range c.idents {
			x.disp.close(s == nil)
			x.end()
		}
	}
	return true
}

// stopping closes c.closing once: waiters for c.sem give up.
func (c *Client) stopping() {
	select {
	case <-c.closing:
	default:
		close(c.closing)
	}
}

// Status returns the client's status.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Connected reports whether the status is Connected: the client has a
// live, registered connection and is not draining.
func (c *Client) Connected() bool { return c.Status() == Connected }

// Err returns why the client closed, or nil while it is not Closed.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the client is Closed.
func (c *Client) Done() <-chan struct{} { return c.done }
