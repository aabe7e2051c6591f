package federation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

func newEpoch() string { return nuid.Next() }

// subject is where daemon node receives: one subject per daemon, so that
// what one daemon sends another arrives in the order it was sent.
func (n *Node) subject(node string) string { return n.prefix + ".d." + node }

// Inbound budget: what NATS buffers for this daemon's subject before it
// drops messages as a slow consumer (their senders then get errors when
// their answers do not come).
const (
	inboundMsgs  = 1 << 16
	inboundBytes = 64 << 20
)

func (n *Node) subscribe() error {
	sub, err := n.nc.Subscribe(n.subject(n.cfg.Node), n.receive)
	if err != nil {
		return err
	}
	sub.SetPendingLimits(inboundMsgs, inboundBytes)
	n.inbox = sub
	return n.nc.Flush()
}

func (n *Node) receive(nm *nats.Msg) {
	n.Metrics.Received.Add(1)
	n.Metrics.RecvBytes.Add(uint64(len(nm.Data)))
	var m Msg
	if err := m.Decode(nm.Data); err != nil {
		n.log.Warn("federation: undecodable message", "err", err, "subject", nm.Subject)
		return
	}
	switch m.Kind {
	case KindAck, KindError, KindCount, KindReply:
		n.flight.answer(&m, &n.Metrics)
		return
	}
	if h := n.handle.Load(); h != nil {
		(*h)(&m)
	}
}

// Done receives the answer to a message sent with Send; lost is not ""
// when no answer will come, and says why.
type Done func(answer *Msg, lost string)

// ErrTooMany: MaxInFlight answers are already awaited.
var ErrTooMany = errors.New("federation: too many cross-daemon messages waiting for answers")

// Send sends m to daemon node. With done, the answer (or its absence by
// timeout, or node's departure) is passed to done exactly once.
func (n *Node) Send(node string, m *Msg, done Done, timeout time.Duration) error {
	m.From = n.cfg.Node
	if done != nil {
		seq, err := n.flight.add(node, time.Now().Add(timeout), done, n.cfg.MaxInFlight)
		if err != nil {
			return err
		}
		m.Seq = seq
	}
	if err := n.publish(node, m); err != nil {
		if done != nil && n.flight.take(m.Seq) == nil {
			return nil // answered meanwhile (failAll)
		}
		return err
	}
	return nil
}

// Answer sends the answer to message seq from daemon node.
func (n *Node) Answer(node string, a *Msg) {
	a.From = n.cfg.Node
	n.publish(node, a)
}

func (n *Node) publish(node string, m *Msg) error {
	b := m.Append(make([]byte, 0, headerLen+16+len(m.From)+len(m.Target)+len(m.Source)+len(m.Text)+len(m.Payload)))
	if err := n.nc.Publish(n.subject(node), b); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	n.Metrics.Sent.Add(1)
	n.Metrics.SentBytes.Add(uint64(len(b)))
	return nil
}

// InFlight returns how many messages wait for answers from other daemons.
func (n *Node) InFlight() int {
	n.flight.mu.Lock()
	defer n.flight.mu.Unlock()
	return len(n.flight.wait)
}

// AckTimeout returns the configured acknowledgement timeout.
func (n *Node) AckTimeout() time.Duration { return n.cfg.AckTimeout }

// janitor answers, with their absence, the messages whose time is up.
func (n *Node) janitor() {
	defer n.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.done:
			return
		case now := <-t.C:
			n.Metrics.TimedOut.Add(uint64(n.flight.expire(now)))
		}
	}
}

// waiter is a message waiting for its answer.
type waiter struct {
	node     string
	deadline time.Time
	done     Done
}

// inflight is the table of messages waiting for answers. Whoever takes a
// waiter out of it (the answer, the janitor, a daemon's departure) is the
// one that calls its Done.
type inflight struct {
	mu   sync.Mutex
	seq  uint64
	wait map[uint64]*waiter
}

func (f *inflight) init() { f.wait = map[uint64]*waiter{} }

func (f *inflight) add(node string, deadline time.Time, done Done, limit int) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.wait) >= limit {
		return 0, ErrTooMany
	}
	f.seq++
	f.wait[f.seq] = &waiter{node: node, deadline: deadline, done: done}
	return f.seq, nil
}

func (f *inflight) take(seq uint64) *waiter {
	f.mu.Lock()
	w := f.wait[seq]
	delete(f.wait, seq)
	f.mu.Unlock()
	return w
}

// answer passes an answer to its waiter, if it still waits and the answer
// comes from the daemon it was sent to.
func (f *inflight) answer(m *Msg, mt *Metrics) {
	f.mu.Lock()
	w := f.wait[m.Seq]
	if w == nil || w.node != m.From {
		f.mu.Unlock()
		return
	}
	delete(f.wait, m.Seq)
	f.mu.Unlock()
	if m.Kind == KindError {
		mt.Failed.Add(1)
	} else {
		mt.Acked.Add(1)
	}
	w.done(m, "")
}

// expire ends the waits whose deadline passed.
func (f *inflight) expire(now time.Time) int {
	var out []*waiter
	f.mu.Lock()
	for seq, w := range f.wait {
		if now.After(w.deadline) {
			out = append(out, w)
			delete(f.wait, seq)
		}
	}
	f.mu.Unlock()
	for _, w := range out {
		w.done(nil, "no answer from daemon "+w.node+" in time")
	}
	return len(out)
}

// failAll ends the waits for node ("" for every node).
func (f *inflight) failAll(node, why string) {
	var out []*waiter
	f.mu.Lock()
	for seq, w := range f.wait {
		if node == "" || w.node == node {
			out = append(out, w)
			delete(f.wait, seq)
		}
	}
	f.mu.Unlock()
	for _, w := range out {
		w.done(nil, why)
	}
}

// Find is Lookup that, when the directory cannot tell (a record written a
// moment ago, or a holder whose renewals the watch has not shown lately),
// asks the buckets: the id's record, then its holder's lease.
//
// Those reads are bounded, so that a client sending to ids nobody holds
// cannot turn each send into NATS traffic: an id found held nowhere is
// not asked about again for MissTTL (at most MaxMisses ids are
// remembered), and the daemon asks at most LookupRate times a second
// (bursts of as many). Beyond that the directory's answer stands.
func (n *Node) Find(id string) (node string, ok bool) {
	if node, ok = n.Lookup(id); ok {
		return node, true
	}
	if !n.misses.allow(id, time.Now()) {
		n.Metrics.LookupsSkipped.Add(1)
		return "", false
	}
	n.Metrics.Lookups.Add(1)
	// Seconds, not less: right after a partition heals or a JetStream
	// leader changes, reads of the buckets take a while, and a shorter
	// wait would answer "not connected" for an id that is held.
	ctx, cancel := context.WithTimeout(context.Background(), FindTimeout)
	defer cancel()
	e, err := n.ids.Get(ctx, idKey(id))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			n.misses.add(id, time.Now())
		}
		return "", false
	}
	var r record
	if json.Unmarshal(e.Value(), &r) != nil || r.Node == n.cfg.Node {
		return "", false
	}
	alive, err := n.alive(ctx, r.Node, r.Epoch)
	if err == nil && !alive {
		n.misses.add(id, time.Now())
	}
	return r.Node, err == nil && alive
}

// Bounds on Find's reads of the buckets.
const (
	FindTimeout = 3 * time.Second
	MissTTL     = time.Second
	MaxMisses   = 4096
	LookupRate  = 200
)

// misses bounds Find's bucket reads: the ids recently found held nowhere,
// and a token bucket of reads.
type misses struct {
	mu     sync.Mutex
	until  map[string]time.Time
	tokens float64
	last   time.Time
}

// allow reports whether Find may read the buckets about id now.
func (m *misses) allow(id string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.until[id]; ok {
		if now.Before(t) {
			return false
		}
		delete(m.until, id)
	}
	if m.last.IsZero() {
		m.tokens = LookupRate
	} else {
		m.tokens = min(LookupRate, m.tokens+now.Sub(m.last).Seconds()*LookupRate)
	}
	m.last = now
	if m.tokens < 1 {
		return false
	}
	m.tokens--
	return true
}

// add remembers that id is held nowhere, for MissTTL.
func (m *misses) add(id string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.until == nil {
		m.until = map[string]time.Time{}
	}
	if len(m.until) >= MaxMisses {
		for k, t := range m.until {
			if !now.Before(t) {
				delete(m.until, k)
			}
		}
		if len(m.until) >= MaxMisses {
			return // the token bucket still bounds the reads
		}
	}
	m.until[id] = now.Add(MissTTL)
}

// forget drops id from the misses: the directory saw it claimed.
func (m *misses) forget(id string) {
	m.mu.Lock()
	delete(m.until, id)
	m.mu.Unlock()
}

// ConnectedURL returns the NATS server this daemon is connected to.
func (n *Node) ConnectedURL() string { return n.nc.ConnectedUrl() }
