package statebus

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/statebus/statebus/protocol"
)

// Filter selects events for Watch by glob patterns ("*" any run of
// characters, "?" any one); an empty pattern matches anything.
type Filter struct {
	EventName string
	Source    string // SourceMachineId
	Target    string // TargetMachineId
}

// watchSpec is an installed watch, kept to install again after a
// reconnect.
type watchSpec struct {
	filter Filter
	h      Handler
	id     uint64 // the service's id on the current connection
}

// Watch asks the service for a copy of every event that matches f,
// whoever it is addressed to, and calls h with each (like D-Bus match
// rules; monitoring tools use it). Watching others' traffic is a
// privilege the service's access rules may deny. Copies a watcher is too
// slow to take are dropped, never the watched traffic. The returned stop
// removes the watch.
func (c *Client) Watch(ctx context.Context, f Filter, h Handler) (stop func() error, err error) {
	s, err := c.session(ctx)
	if err != nil {
		return nil, err
	}
	ws := &watchSpec{filter: f, h: h}
	if err := c.install(ctx, s, ws); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.watches = append(c.watches, ws)
	c.mu.Unlock()
	return func() error {
		c.mu.Lock()
		c.watches = slices.DeleteFunc(c.watches, func(x *watchSpec) bool { return x == ws })
		id := ws.id
		c.mu.Unlock()
		c.disp.setWatch(id, nil)
		s, err := c.session(context.Background())
		if err != nil {
			return err
		}
		seq := c.seq.Add(1)
		_, err = c.call(context.Background(), s, seq, fmt.Appendf(nil, `{"Type":106,"Id":%d,"Payload":{"WatchId":%d}}`+"\n", seq, id), false)
		return err
	}, nil
}

// install sends the Watch request for ws on s and maps its new id.
func (c *Client) install(ctx context.Context, s *session, ws *watchSpec) error {
	seq := c.seq.Add(1)
	line := fmt.Appendf(nil, `{"Type":105,"Id":%d,"Payload":{"EventName":`, seq)
	line = protocol.AppendString(line, ws.filter.EventName)
	line = append(line, `,"SourceMachineId":`...)
	line = protocol.AppendString(line, ws.filter.Source)
	line = append(line, `,"TargetMachineId":`...)
	line = protocol.AppendString(line, ws.filter.Target)
	line = append(line, "}}\n"...)
	data, err := c.call(ctx, s, seq, line, true)
	if err != nil {
		return err
	}
	var resp struct{ WatchId uint64 }
	if err := json.Unmarshal(data, &resp); err != nil || resp.WatchId == 0 {
		return fmt.Errorf("statebus: the service's Watch response %q has no WatchId", data)
	}
	c.mu.Lock()
	old := ws.id
	ws.id = resp.WatchId
	c.mu.Unlock()
	if old != 0 {
		c.disp.setWatch(old, nil)
	}
	c.disp.setWatch(ws.id, ws.h)
	return nil
}

// rewatch installs the client's watches again on a new session.
func (c *Client) rewatch(ctx context.Context, s *session) error {
	c.mu.Lock()
	watches := slices.Clone(c.watches)
	c.mu.Unlock()
	for _, ws := range watches {
		if err := c.install(ctx, s, ws); err != nil {
			return err
		}
	}
	return nil
}
