package statebus

import (
	"context"
	"errors"
	"fmt"

	"github.com/statebus/statebus/protocol"
)

// MaxStateBytes is the longest state SetState takes.
const MaxStateBytes = protocol.MaxStateBytes

// SetState records state next to the client's machine id in the service's
// registry (a statebus extension): Machines, `statebus machines` and the
// monitoring endpoint's /machines show it as State. An empty state clears
// it. It waits for the service's answer. The registry forgets it when the
// id is unregistered or the connection is lost; the client sets the
// latest state again on every new connection, as it joins its groups
// again: while the client reconnects, SetState records the state and
// returns nil, and the new connection sets it. A state longer than
// MaxStateBytes, or with control or invisible characters, is refused.
func (c *Client) SetState(ctx context.Context, state string) error {
	return c.setState(ctx, nil, state)
}

// setState sets the state of x, the client's own id's for nil.
func (c *Client) setState(ctx context.Context, x *Identity, state string) error {
	if len(state) > MaxStateBytes {
		return fmt.Errorf("statebus: a state is at most %d bytes, %q is %d", MaxStateBytes, state[:32]+"...", len(state))
	}
	if c.idOf(x) == "" {
		return errNoID
	}
	c.mu.Lock()
	s := c.cur
	prev := c.record(x, s != nil, state)
	c.mu.Unlock()
	if s == nil {
		// Not connected: record it holding c.sem, so that no handshake is
		// between reading the states and publishing its session.
		if err := c.acquire(ctx, true); err != nil {
			return err
		}
		c.mu.Lock()
		s = c.cur
		prev = c.record(x, true, state)
		c.mu.Unlock()
		c.release()
		if s == nil {
			return nil // reconnecting: the new connection sets it
		}
	}
	seq := c.seq.Add(1)
	_, err := s.call(ctx, seq, protocol.AppendSetState(nil, seq, c.idOf(x), state), false)
	switch {
	case errors.Is(err, ErrNotConnected):
		return nil // the connection was lost: the next one sets it
	case refused(err):
		c.mu.Lock()
		if c.record(x, false, "") == state {
			c.record(x, true, prev) // not recorded: the service keeps the one before
		}
		c.mu.Unlock()
	}
	return err
}

// record returns the recorded state of x (the client's for nil) and, with
// set, replaces it with state; c.mu is held.
func (c *Client) record(x *Identity, set bool, state string) (prev string) {
	p := &c.state
	if x != nil {
		p = &x.state
	}
	prev = *p
	if set {
		*p = state
	}
	return prev
}
