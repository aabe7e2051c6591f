package server

import (
	"sync/atomic"
	"time"

	"github.com/statebus/statebus/internal/router"
	"github.com/statebus/statebus/protocol"
)

// A Tap lets an in-process observer (the dashboard) see routed events
// without a connection of its own. Routing pays for it only while one is
// installed (SetTap): with none, an event costs one atomic load more. While
// installed, each sender's reader hands it one accepted event in every
// Every of that connection (Sample, for traffic rates), and every accepted
// event that one of Tail's filters matches (Offer, for a live tail). Both
// run on the sender's reader goroutine, so they must be quick and never
// block; neither sees the payload.
type Tap struct {
	// Sample receives a sampled event; weight is how many events it
	// stands for (the sampling period when it was taken).
	Sample func(name, source, target []byte, weight uint32)
	// Tail holds the live tail's filters, with the glob semantics of the
	// Watch request. Its owners receive their matches.
	Tail *router.Watches[TailSink]

	every atomic.Uint32 // a power of two
}

// TailSink receives the events its tail filter matches.
type TailSink interface {
	Offer(name, source, target []byte, size int)
}

// SetEvery sets the sampling period (rounded down to a power of two, at
// least 1): 1 samples every event.
func (t *Tap) SetEvery(n uint32) {
	p := uint32(1)
	for p <= n/2 {
		p *= 2
	}
	t.every.Store(p)
}

// Every returns the sampling period.
func (t *Tap) Every() uint32 { return max(t.every.Load(), 1) }

// SetTap installs t in place of any other tap.
func (s *Server) SetTap(t *Tap) { s.tap.Store(t) }

// RemoveTap removes t if it is installed, and reports whether it was.
func (s *Server) RemoveTap(t *Tap) bool { return s.tap.CompareAndSwap(t, nil) }

// Tapped reports whether a tap is installed.
func (s *Server) Tapped() bool { return s.tap.Load() != nil }

// tapped hands an accepted event to the tap t.
func (c *conn) tapped(t *Tap, r *protocol.Request) {
	ev := &r.Event
	c.tapSeq++
	if every := t.Every(); c.tapSeq&(every-1) == 0 && t.Sample != nil {
		t.Sample(ev.Name, ev.Source, ev.Target, every)
	}
	if t.Tail != nil {
		c.tailed = t.Tail.Match(c.tailed[:0], ev.Name, ev.Source, ev.Target)
		size := len(r.Payload)
		if r.Framed {
			size = len(ev.Payload)
		}
		for _, w := range c.tailed {
			w.Owner.Offer(ev.Name, ev.Source, ev.Target, size)
		}
		clear(c.tailed)
	}
}

// ConnStat is one connection's traffic and backlog, for the dashboard.
type ConnStat struct {
	// ID is the connection's id (MachineInfo.ConnectionID).
	ID uint64
	// Received counts the events it sent; Delivered those written to it.
	Received, Delivered uint64
	// QueuedBytes is what waits in its outbound queue.
	QueuedBytes int
	// Blocked is how long its writer has been in its current write: a
	// peer that stopped reading blocks it (0 between writes).
	Blocked time.Duration
}

// ConnStats returns every connection's counters and backlog, in no
// particular order.
func (s *Server) ConnStats() []ConnStat {
	now := time.Now()
	s.mu.Lock()
	out := make([]ConnStat, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, ConnStat{ID: c.id, Received: c.ctr.received.Load(), Delivered: c.ctr.delivered.Load(),
			QueuedBytes: c.q.Len(), Blocked: c.q.Blocked(now)})
	}
	s.mu.Unlock()
	return out
}
