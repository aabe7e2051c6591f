package statebus

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/statebus/statebus/protocol"
)

// WithDurable declares the client's machine id durable (the service must
// have durable mailboxes on, and the user's access rule must allow it):
// the service stores every event sent to the id, delivers what was
// stored while the client was away when it (re)connects, in order, and
// hands an event over again until it is acknowledged. Each such event
// carries its mailbox Sequence. The client acknowledges an event after
// its handlers returned (WithManualAck: when Ack is called), drops
// events it already handled (a redelivery after a reconnect), and
// refuses one with Refuse. See docs/durability.md.
func WithDurable() Option {
	return func(o *options) { o.durable = true }
}

// WithManualAck leaves the acknowledgement of durable events to Ack:
// for handlers that hand work on and finish it later.
func WithManualAck() Option {
	return func(o *options) { o.durable, o.manualAck = true, true }
}

// durState is the client's position in its durable mailbox. It outlives
// sessions: what was handled before a reconnect is not handled again.
type durState struct {
	mu        sync.Mutex
	received  uint64 // highest sequence queued for the handlers
	processed uint64 // highest sequence whose handlers returned
	done      uint64 // highest sequence to acknowledge: processed, or Ack's
	acked     uint64 // highest sequence acknowledged on the current session
	awaiting  bool   // a refusal was sent: drop deliveries until the rewound one
	refused   uint64 // refused by Refuse during its handler: not acknowledged
	gen       uint64 // changes with each refusal or rewind: queued events of an older gen are stale
	held      uint64 // the first event that found no handler: asked for again once one is added
}

// accept decides whether a delivered durable event is handled: not when
// it was received already (a redelivery after a reconnect), nor while
// a refusal's redelivery is awaited. For a redelivery of what is done
// but not acknowledged on this session it returns the sequence to
// acknowledge again.
func (d *durState) accept(seq uint64, rewound bool) (ok bool, reack uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.awaiting {
		if !rewound || d.held != 0 {
			return false, 0
		}
		d.awaiting = false
		d.received = seq - 1
	}
	if seq <= d.received {
		if d.done > d.acked && seq <= d.done {
			d.acked = d.done
			return false, d.done
		}
		return false, 0
	}
	d.received = seq
	return true, 0
}

// newSession starts a new session's view: the service hands over again
// from its last acknowledged sequence, without a rewound mark.
func (d *durState) newSession() {
	d.mu.Lock()
	d.awaiting = false
	d.acked = 0
	d.received = d.processed
	d.held = 0
	d.gen++
	d.mu.Unlock()
}

// stamp returns the generation a just-accepted event belongs to.
func (d *durState) stamp() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gen
}

// durMailbox is the client's side of one durable mailbox: the client's
// own id (WithDurable) or an Identity's (IdentityDurable). It belongs to
// the id's dispatcher, which runs its events and acknowledges them.
type durMailbox struct {
	id        string
	manualAck bool
	st        durState
	ackDue    atomic.Bool // the dispatcher has an acknowledgement to write
}

// runnable reports whether the dispatcher may run ev's handlers: not
// when it is stale (queued before a refusal, a rewind or a new session:
// it comes again), and not when no handler takes it: then it, and what
// follows, wait until OnEvent adds one (it is asked for again then).
func (d *dispatcher) runnable(ev *Event, handled bool) bool {
	st := &d.dur.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if ev.durGen != st.gen {
		return false
	}
	if !handled {
		st.gen++
		st.awaiting = true
		st.received = ev.Sequence - 1
		st.held = ev.Sequence
		return false
	}
	return true
}

// handlerAdded asks for the held events again, now that a handler may
// take them.
func (d *dispatcher) handlerAdded() {
	if d.dur == nil {
		return
	}
	st := &d.dur.st
	st.mu.Lock()
	seq := st.held
	st.held = 0
	st.mu.Unlock()
	if seq != 0 {
		d.writeRewind(seq)
	}
}

// handled records that seq's handlers returned; unless it was refused
// (or acknowledgements are manual) it is acknowledged with the batch.
func (d *dispatcher) handled(seq uint64) {
	st := &d.dur.st
	st.mu.Lock()
	if seq > st.processed {
		st.processed = seq
	}
	if st.refused == seq || d.dur.manualAck {
		st.mu.Unlock()
		return
	}
	st.done = max(st.done, seq)
	st.mu.Unlock()
	d.dur.ackDue.Store(true)
}

// flushAck acknowledges what the handlers processed, once per batch of
// events: the service keeps only the highest.
func (d *dispatcher) flushAck() {
	if d.dur == nil || !d.dur.ackDue.Load() || !d.dur.ackDue.CompareAndSwap(true, false) {
		return
	}
	st := &d.dur.st
	st.mu.Lock()
	seq := st.done
	if seq <= st.acked {
		st.mu.Unlock()
		return
	}
	st.acked = seq
	st.mu.Unlock()
	d.writeAck(seq, "", false)
}

// writeAck writes an Ack line for the dispatcher's id on the live
// session, if any; a lost one is made good by the redelivery after the
// reconnect, which the client drops.
func (d *dispatcher) writeAck(seq uint64, refuse string, refused bool) error {
	c := d.c
	s := c.sess.Load()
	if s == nil {
		return fmt.Errorf("%w: reconnecting to %s", ErrNotConnected, c.path)
	}
	b, err := s.q.beginNoWait()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotConnected, err)
	}
	if refused && refuse == "" {
		refuse = "refused"
	}
	s.q.commit(protocol.AppendAckRequest(b, d.id, seq, refuse))
	return nil
}

// writeRewind asks the service for seq and every later event of the
// dispatcher's id again.
func (d *dispatcher) writeRewind(seq uint64) {
	if s := d.c.sess.Load(); s != nil {
		if b, err := s.q.beginNoWait(); err == nil {
			s.q.commit(protocol.AppendRewindRequest(b, d.id, seq))
		}
	}
}

// rewind asks the service for seq and every later event again: the
// handlers' queue was full (WithPendingLimits), so seq was dropped.
func (d *dispatcher) rewind(seq uint64) {
	st := &d.dur.st
	st.mu.Lock()
	if st.awaiting {
		st.mu.Unlock()
		return // a rewind is on its way already
	}
	st.awaiting = true
	st.received = seq - 1
	st.gen++
	st.mu.Unlock()
	d.writeRewind(seq)
}

// ack acknowledges every durable event of the dispatcher's id up to seq.
func (d *dispatcher) ack(seq uint64) error {
	if st := d.durState(); st != nil {
		st.mu.Lock()
		st.done = max(st.done, seq)
		st.acked = max(st.acked, seq)
		st.mu.Unlock()
	}
	return d.writeAck(seq, "", false)
}

// refuse refuses durable event seq of the dispatcher's id.
func (d *dispatcher) refuse(seq uint64, reason string) error {
	if st := d.durState(); st != nil {
		st.mu.Lock()
		st.refused = seq
		st.awaiting = true
		st.received = seq - 1
		st.gen++
		st.mu.Unlock()
	}
	return d.writeAck(seq, reason, true)
}

func (d *dispatcher) durState() *durState {
	if d.dur == nil {
		return nil
	}
	return &d.dur.st
}

// Ack acknowledges every durable event up to seq (Event.Sequence): the
// service will not hand them over again. With WithDurable alone the
// client does this itself after the handlers return.
func (c *Client) Ack(seq uint64) error { return c.disp.ack(seq) }

// Refuse tells the service that durable event seq could not be processed:
// it is handed over again, with every later one, and after the service's
// DurableMaxDeliveries refusals it goes to the dead letters instead.
// Called from the event's handler, it also keeps the client from
// acknowledging it.
func (c *Client) Refuse(seq uint64, reason string) error { return c.disp.refuse(seq, reason) }

// IdentityDurable declares the identity's id durable, as WithDurable
// does the client's: its events are stored while it is away, delivered
// in order with their Sequence, acknowledged after its handlers return
// (IdentityManualAck: by Identity.Ack), and what comes again after a
// reconnect is dropped. See docs/durability.md.
func IdentityDurable() IdentityOption {
	return func(x *Identity) { x.disp.dur = &durMailbox{id: x.id} }
}

// IdentityManualAck is IdentityDurable with the acknowledgements left to
// Identity.Ack, as WithManualAck.
func IdentityManualAck() IdentityOption {
	return func(x *Identity) { x.disp.dur = &durMailbox{id: x.id, manualAck: true} }
}

// Ack acknowledges every durable event of the identity up to seq, as
// Client.Ack does the client's.
func (x *Identity) Ack(seq uint64) error { return x.disp.ack(seq) }

// Refuse refuses the identity's durable event seq, as Client.Refuse.
func (x *Identity) Refuse(seq uint64, reason string) error { return x.disp.refuse(seq, reason) }

// StoredEvent is an event read back from a durable mailbox.
type StoredEvent struct {
	Sequence uint64
	StoredAt time.Time
	Event    Event
}

// ReplayOptions select what Replay reads: from a sequence, or what was
// stored since a time, at most Limit events (the service answers at most
// 1000 at a time).
type ReplayOptions struct {
	FromSequence uint64
	Since        time.Time
	Limit        int
}

// Replay reads the events durable mailbox id still holds (processed or
// not), in order, and returns the sequence to read on from. The holder
// of id and unrestricted users may read it.
func (c *Client) Replay(ctx context.Context, id string, o ReplayOptions) ([]StoredEvent, uint64, error) {
	s, err := c.session(ctx)
	if err != nil {
		return nil, 0, err
	}
	seq := c.seq.Add(1)
	data, err := s.call(ctx, seq, protocol.AppendReplay(nil, seq, id, o.FromSequence, o.Since, o.Limit), true)
	if err != nil {
		return nil, 0, err
	}
	var r struct {
		Events []struct {
			Sequence uint64
			StoredAt time.Time
			Event    Event
		}
		Next uint64
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, 0, fmt.Errorf("statebus: unreadable Replay answer: %w", err)
	}
	out := make([]StoredEvent, len(r.Events))
	for i, e := range r.Events {
		out[i] = StoredEvent{Sequence: e.Sequence, StoredAt: e.StoredAt, Event: e.Event}
	}
	return out, r.Next, nil
}

// DeadLetter is an event a durable mailbox gave up on: refused too often,
// or not processed within its retention.
type DeadLetter struct {
	MachineID string `json:"MachineId"`
	Sequence  uint64
	Reason    string
	At        time.Time
	Bytes     int
	Event     Event
}

// DeadLetters lists the dead letters of id ("" for every mailbox, for
// unrestricted users), oldest first, at most 100, and how many there are.
func (c *Client) DeadLetters(ctx context.Context, id string) ([]DeadLetter, int, error) {
	list, total, _, err := c.deadLetters(ctx, id, false, 0)
	return list, total, err
}

// Redrive stores id's dead letters (only seq when not 0) in its mailbox
// again, as new events, and returns how many.
func (c *Client) Redrive(ctx context.Context, id string, seq uint64) (int, error) {
	_, _, n, err := c.deadLetters(ctx, id, true, seq)
	return n, err
}

func (c *Client) deadLetters(ctx context.Context, id string, redrive bool, which uint64) ([]DeadLetter, int, int, error) {
	s, err := c.session(ctx)
	if err != nil {
		return nil, 0, 0, err
	}
	seq := c.seq.Add(1)
	data, err := s.call(ctx, seq, protocol.AppendDeadLetters(nil, seq, id, redrive, which), true)
	if err != nil {
		return nil, 0, 0, err
	}
	var r struct {
		DeadLetters []DeadLetter
		Total       int
		Redriven    int
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, 0, 0, fmt.Errorf("statebus: unreadable DeadLetters answer: %w", err)
	}
	return r.DeadLetters, r.Total, r.Redriven, nil
}

// ReplayMailbox is Replay on a connection of its own that registers no
// machine id (for tools such as `statebus replay`).
func ReplayMailbox(ctx context.Context, id string, o ReplayOptions, opts ...Option) ([]StoredEvent, uint64, error) {
	c, err := dial(ctx, "", opts)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	return c.Replay(ctx, id, o)
}

// ListDeadLetters is DeadLetters on a connection of its own.
func ListDeadLetters(ctx context.Context, id string, opts ...Option) ([]DeadLetter, int, error) {
	c, err := dial(ctx, "", opts)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	return c.DeadLetters(ctx, id)
}

// RedriveDeadLetters is Redrive on a connection of its own.
func RedriveDeadLetters(ctx context.Context, id string, seq uint64, opts ...Option) (int, error) {
	c, err := dial(ctx, "", opts)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.Redrive(ctx, id, seq)
}
