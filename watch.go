package statebus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/statebus/statebus/protocol"
)

// Filter selects events for Watch by glob patterns ("*" any run of
// characters, "?" any one); an empty pattern matches anything.
type Filter struct {
	EventName string
	Source    string // SourceMachineId
	Target    string // TargetMachineId
}

// watchSpec is a watch the client wants, installed again on each new
// connection.
type watchSpec struct {
	filter  Filter
	h       Handler
	stopped atomic.Bool // stop was called: h is not called again
	// sess and id: where it is installed now; guarded by c.sem.
	sess *session
	id   uint64
}

// Watch asks the service for a copy of every event that matches f,
// whoever it is addressed to, and calls h with each (like D-Bus match
// rules; monitoring tools use it). Watching others' traffic is a
// privilege the service's access rules may deny. Copies a watcher is too
// slow to take are dropped, never the watched traffic.
//
// The watch is recorded before the service is asked and installed again
// on every new connection; while the client reconnects, Watch records it
// and returns. The returned stop removes the watch; after it returns h is
// not called again. stop waits for the service's answer at most the dial
// timeout.
func (c *Client) Watch(ctx context.Context, f Filter, h Handler) (stop func() error, err error) {
	if err := c.acquire(ctx, true); err != nil {
		return nil, err
	}
	defer c.release()
	ws := &watchSpec{filter: f, h: h}
	c.mu.Lock()
	c.watches = append(c.watches, ws)
	s := c.cur
	c.mu.Unlock()
	stop = func() error { return c.stopWatch(ws) }
	if s == nil {
		return stop, nil // reconnecting: the handshake installs it
	}
	err = s.install(ctx, ws)
	switch {
	case err == nil, errors.Is(err, ErrNotConnected):
		return stop, nil // installed, or the next connection installs it
	}
	ws.stopped.Store(true)
	c.forgetWatch(ws)
	return nil, err
}

// install sends the Watch request for ws on s. The reader maps the new id
// to ws as it reads the answer.
func (s *session) install(ctx context.Context, ws *watchSpec) error {
	seq := s.c.seq.Add(1)
	line := fmt.Appendf(nil, `{"Type":%d,"Id":%d,"Payload":{"EventName":`, int(protocol.Watch), seq)
	line = protocol.AppendString(line, ws.filter.EventName)
	line = append(line, `,"SourceMachineId":`...)
	line = protocol.AppendString(line, ws.filter.Source)
	line = append(line, `,"TargetMachineId":`...)
	line = protocol.AppendString(line, ws.filter.Target)
	line = append(line, "}}\n"...)
	data, err := s.callWith(ctx, seq, line, pendingCall{data: true, size: len(line), ws: ws})
	if err != nil {
		return err
	}
	id, ok := parseUint(protocol.Field(data, "WatchId"))
	if !ok || id == 0 {
		return fmt.Errorf("statebus: the service's Watch response %q has no WatchId", data)
	}
	ws.sess, ws.id = s, id
	return nil
}

// stopWatch is a watch's stop function.
func (c *Client) stopWatch(ws *watchSpec) error {
	if ws.stopped.Swap(true) {
		return nil
	}
	c.forgetWatch(ws)
	ctx, cancel := context.WithTimeout(context.Background(), c.opt.dialTimeout)
	defer cancel()
	if err := c.acquire(ctx, true); err != nil {
		if errors.Is(err, ErrClosed) {
			return nil // Drain removes it, Close ends the connection
		}
		return fmt.Errorf("statebus: stopping a watch: %w (its handler is not called again)", err)
	}
	defer c.release()
	return c.unwatch(ctx, ws)
}

// unwatch removes ws from the connection it is installed on, if that is
// still the client's; c.sem is held.
func (c *Client) unwatch(ctx context.Context, ws *watchSpec) error {
	s, id := ws.sess, ws.id
	if s == nil {
		return nil
	}
	ws.sess, ws.id = nil, 0
	s.removeWatch(id)
	if c.sess.Load() != s {
		return nil // that connection is gone, and the watch with it
	}
	seq := c.seq.Add(1)
	_, err := s.call(ctx, seq, fmt.Appendf(nil, `{"Type":%d,"Id":%d,"Payload":{"WatchId":%d}}`+"\n", int(protocol.Unwatch), seq, id), false)
	if errors.Is(err, ErrNotConnected) {
		return nil
	}
	return err
}

func (c *Client) forgetWatch(ws *watchSpec) {
	c.mu.Lock()
	c.watches = slices.DeleteFunc(c.watches, func(x *watchSpec) bool { return x == ws })
	c.mu.Unlock()
}

// watch returns the watch a copy with the service's watch id belongs to,
// nil if it was stopped.
func (s *session) watch(id uint64) *watchSpec {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.watches[id]
}

func (s *session) addWatch(id uint64, ws *watchSpec) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.watches == nil {
		s.watches = make(map[uint64]*watchSpec)
	}
	s.watches[id] = ws
}

func (s *session) removeWatch(id uint64) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	delete(s.watches, id)
}
