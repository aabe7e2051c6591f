package server

import (
	"slices"
	"strconv"

	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/protocol"
)

// watch installs or removes a filter (Watch and Unwatch). Watching others'
// traffic is a privilege: a uid with an access rule needs "Watch": true.
func (c *conn) watch(r *protocol.Request) error {
	var w protocol.WatchPayload
	if err := protocol.DecodeWatch(r.Payload, &w); err != nil {
		return err
	}
	if r.Type == protocol.Unwatch {
		if !c.srv.watches.Remove(c, w.WatchID) {
			return protocol.ErrNoWatch.New(strconv.FormatUint(w.WatchID, 10))
		}
		c.watchIDs = slices.DeleteFunc(c.watchIDs, func(id uint64) bool { return id == w.WatchID })
		if c.srv.fed != nil {
			c.srv.fed.RemoveWatch(w.WatchID)
		}
		c.reply(nil, r.ID)
		return nil
	}
	if err := c.rule.MayWatch(); err != nil {
		c.denied(err)
		return err
	}
	s := &c.srv.cfg
	if len(c.watchIDs) >= s.MaxWatchesPerConnection {
		return limitErr(s.MaxWatchesPerConnection, "watches per connection (MaxWatchesPerConnection); remove one with Unwatch first")
	}
	if max(len(w.EventName), len(w.Source), len(w.Target)) > s.MaxPatternBytes {
		return protocol.ErrLimit.New("a watch pattern is at most " + strconv.Itoa(s.MaxPatternBytes) + " bytes (MaxPatternBytes)")
	}
	id := c.srv.nextWatch.Add(1)
	c.watchIDs = append(c.watchIDs, id)
	f := router.Filter{EventName: w.EventName, Source: w.Source, Target: w.Target}
	c.srv.watches.Add(&router.Watch[*conn]{ID: id, Owner: c, Filter: f})
	if c.srv.fed != nil {
		c.srv.fed.AddWatch(id, f.EventName, f.Source, f.Target)
	}
	c.reply(append(strconv.AppendUint([]byte(`{"WatchId":`), id, 10), '}'), r.ID)
	return nil
}

// copyToWatchers sends a copy of a routed event to every matching watch.
// A watcher whose queue is full misses the copy (counted as
// watch_dropped): a slow monitor never slows the traffic it watches.
func (c *conn) copyToWatchers(r *protocol.Request) {
	ev := &r.Event
	c.watched = c.srv.watches.Match(c.watched[:0], ev.Name, ev.Source, ev.Target)
	if len(c.watched) > 0 {
		c.eventJSON(r)
	}
	for _, w := range c.watched {
		b, err := w.Owner.q.TryBegin(outqPriority(r), len(r.Payload)+protocol.DeliveryOverhead+32)
		if err != nil {
			c.srv.ctr.watchDropped.Add(1)
			continue
		}
		w.Owner.q.Commit(protocol.AppendWatchCopy(b, r.Payload, w.ID))
		c.srv.ctr.watchCopies.Add(1)
	}
	clear(c.watched)
}
