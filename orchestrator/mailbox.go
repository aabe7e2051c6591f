package orchestrator

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/trace"

	"github.com/statebus/statebus/statechart"
)

// item is one event waiting in a mailbox. reply is nil for a post; a
// send's result goes there once the machine has processed it.
type item struct {
	ev    statechart.Event
	reply chan EventResult
	id    string // the EventId, for a send
	own   bool   // the machine's own event
	seq   uint64 // its sequence in the machine's durable mailbox (WithDurableMachines); 0 if none

	parent trace.SpanContext // the sender's span, when tracing; else zero
}

// mailbox is one machine's queue of events: every event to the machine,
// from this process, another one, or the machine itself, goes through it,
// and its loop hands them to the machine one at a time, in order.
//
// It holds at most limit events from others. The machine's own events
// (self-sends, after timers, its services' results) may take another
// limit, so that a full mailbox never makes a machine lose its own timer;
// past that they are refused too. What a full mailbox means for each kind
// of sender is said in one place: the package documentation, "Mailboxes".
type mailbox struct {
	limit int

	mu     sync.Mutex
	q      []item // q[head:] waits
	head   int
	own    int           // how many of them are the machine's own
	closed bool          // no more events; the loop stops
	room   chan struct{} // closed when an item leaves; nil unless someone waits
	wake   chan struct{} // 1 slot: the loop may have work
}

// keepItems bounds the queue's spare room an idle mailbox keeps, and how
// far it lets the taken part grow before it moves the rest down.
const keepItems = 1024

func newMailbox(limit int) *mailbox {
	return &mailbox{limit: limit, wake: make(chan struct{}, 1)}
}

// put queues it. own marks the machine's own events. With wait, a full
// mailbox is waited on up to ctx's end (a send, or an event from the bus:
// the sender is slowed down); without, it fails at once with
// errMailboxFull (a post, or another machine's send from an action).
func (mb *mailbox) put(ctx context.Context, it item, wait bool) error {
	own := it.own
	for {
		mb.mu.Lock()
		if mb.closed {
			mb.mu.Unlock()
			return ErrClosed
		}
		n := len(mb.q) - mb.head
		if own && mb.own < mb.limit || !own && n-mb.own < mb.limit {
			mb.q = append(mb.q, it)
			if own {
				mb.own++
			}
			mb.mu.Unlock()
			select {
			case mb.wake <- struct{}{}:
			default:
			}
			return nil
		}
		if !wait {
			mb.mu.Unlock()
			return errFull
		}
		if mb.room == nil {
			mb.room = make(chan struct{})
		}
		room := mb.room
		mb.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take returns the next event, or ok false once the mailbox is closed.
// It blocks while the mailbox is empty. The event leaves the mailbox's
// count only here, once the machine is about to process it.
func (mb *mailbox) take() (it item, ok bool) {
	for {
		mb.mu.Lock()
		if mb.closed {
			mb.mu.Unlock()
			return item{}, false
		}
		if mb.head < len(mb.q) {
			it = mb.q[mb.head]
			mb.q[mb.head] = item{}
			switch mb.head++; {
			case mb.head == len(mb.q) && cap(mb.q) > keepItems:
				mb.q, mb.head = nil, 0 // a burst's queue goes back to the garbage collector
			case mb.head == len(mb.q):
				mb.q, mb.head = mb.q[:0], 0
			case mb.head >= keepItems && 2*mb.head >= len(mb.q):
				n := copy(mb.q, mb.q[mb.head:]) // never emptied under load: move the rest down
				clear(mb.q[n:])
				mb.q, mb.head = mb.q[:n], 0
			}
			if it.own {
				mb.own--
			}
			if mb.room != nil {
				close(mb.room)
				mb.room = nil
			}
			mb.mu.Unlock()
			return it, true
		}
		mb.mu.Unlock()
		<-mb.wake
	}
}

// close stops the mailbox: later puts fail with ErrClosed, waiting ones
// too, and the loop stops. It returns the events that were waiting.
func (mb *mailbox) close() []item {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if mb.closed {
		return nil
	}
	mb.closed = true
	left := mb.q[mb.head:]
	mb.q = nil
	if mb.room != nil {
		close(mb.room)
		mb.room = nil
	}
	select {
	case mb.wake <- struct{}{}:
	default:
	}
	return left
}
