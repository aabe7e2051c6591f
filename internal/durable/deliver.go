package durable

import (
	"encoding/binary"
	"time"
)

// Attach makes sub the subscriber of mb: stored events are handed to it
// from the first unacknowledged one, in order, then new ones as they are
// stored, by a pump goroutine, until Detach (or another Attach).
func (s *Store[T]) Attach(mb *Mailbox[T], sub Subscriber) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	mb.detachLocked()
	mb.sub = sub
	mb.next = max(mb.acked+1, mb.first)
	mb.gen++
	mb.rewound = false
	mb.wake = make(chan struct{}, 1) // the old pump keeps the old one
	s.wg.Add(1)
	go s.pump(mb, sub, mb.wake)
	return nil
}

// Detach stops handing mb's events to sub; events handed over but not
// acknowledged go to the next subscriber.
func (s *Store[T]) Detach(mb *Mailbox[T], sub Subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mb.sub == sub {
		mb.detachLocked()
	}
}

func (mb *Mailbox[T]) detachLocked() {
	if mb.sub != nil {
		mb.sub = nil
		mb.gen++
		mb.poke()
	}
}

func (mb *Mailbox[T]) poke() {
	select {
	case mb.wake <- struct{}{}:
	default:
	}
}

// retryDelay is how long the pump waits after a subscriber could not take
// an event (its queue stayed full) before it tries again.
const retryDelay = 50 * time.Millisecond

// pump hands mb's events to sub in order. It reads a write from memory
// when it is the latest, else from the store, and checks between events
// whether the subscriber changed or its position was moved (Refuse).
func (s *Store[T]) pump(mb *Mailbox[T], sub Subscriber, wake chan struct{}) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		if mb.sub != sub {
			s.mu.Unlock()
			return
		}
		if mb.next > mb.last {
			s.mu.Unlock()
			<-wake
			continue
		}
		next, gen := mb.next, mb.gen
		if next < mb.first {
			next = mb.first // expired meanwhile
		}
		var b batch
		if t := mb.tail; t.data != nil && t.first <= next && next <= t.last() {
			b = t
		} else if i := mb.find(next); i < len(mb.batches) {
			b = mb.batches[i]
		} else {
			mb.next = mb.last + 1
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()
		data, stopped := b.data, false
		if data == nil {
			var err error
			if data, err = s.readMsg(b.jsSeq); err != nil {
				s.log.Warn("durable store: cannot read stored events", "mailbox", mb.id, "seq", next, "err", err)
				if !s.sleep(wake, retryDelay) {
					return
				}
				continue
			}
		}
		records(data, b.first, next, func(seq uint64, ev []byte) bool {
			s.mu.Lock()
			if mb.sub != sub || mb.gen != gen {
				s.mu.Unlock()
				return false
			}
			rewound := mb.rewound
			mb.rewound = false
			s.mu.Unlock()
			if err := sub.Deliver(mb.id, seq, ev, rewound); err != nil {
				s.mu.Lock()
				if mb.gen == gen && rewound {
					mb.rewound = true
				}
				s.mu.Unlock()
				stopped = !s.sleep(wake, retryDelay)
				return false
			}
			s.ctr.Delivered.Add(1)
			s.mu.Lock()
			if mb.gen == gen && mb.next <= seq {
				mb.next = seq + 1
			}
			s.mu.Unlock()
			return true
		})
		if stopped {
			return
		}
	}
}

// sleep waits d, or less when the mailbox is poked; false when the
// store is closing.
func (s *Store[T]) sleep(wake chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-wake:
	case <-s.stop:
		return false
	}
	return true
}

// StoredEvent is one event read back from a mailbox.
type StoredEvent struct {
	Sequence uint64
	StoredAt time.Time
	Event    []byte
}

// Read returns mb's stored events from sequence from (or, when since is
// not zero, stored at or after since), at most limit of them and about
// maxBytes of event bytes (at least one), and the sequence to read next.
func (s *Store[T]) Read(mb *Mailbox[T], from uint64, since time.Time, limit, maxBytes int) ([]StoredEvent, uint64, error) {
	s.mu.Lock()
	from = max(from, mb.first)
	i := mb.find(from)
	if !since.IsZero() {
		ns := since.UnixNano()
		for i < len(mb.batches) && mb.batches[i].at < ns {
			i++
		}
		if i < len(mb.batches) {
			from = max(from, mb.batches[i].first)
		}
	}
	bs := append([]batch(nil), mb.batches[i:]...)
	tail := mb.tail
	next := mb.last + 1
	s.mu.Unlock()
	var out []StoredEvent
	size := 0
	for _, b := range bs {
		data := b.data
		if tail.data != nil && tail.jsSeq == b.jsSeq {
			data = tail.data
		}
		if data == nil {
			var err error
			if data, err = s.readMsg(b.jsSeq); err != nil {
				return nil, 0, err
			}
		}
		full := records(data, b.first, from, func(seq uint64, ev []byte) bool {
			if len(out) >= limit || (len(out) > 0 && size+len(ev) > maxBytes) {
				next = seq
				return false
			}
			out = append(out, StoredEvent{Sequence: seq, StoredAt: time.Unix(0, b.at).UTC(), Event: ev})
			size += len(ev)
			return true
		})
		if !full {
			return out, next, nil
		}
	}
	return out, next, nil
}

// records calls f for each event of a write (encoded records, the first
// numbered first) from sequence from on, until f returns false; it
// reports whether it got to the end.
func records(data []byte, first, from uint64, f func(seq uint64, ev []byte) bool) bool {
	seq, off := first, 0
	for off < len(data) {
		l, m := binary.Uvarint(data[off:])
		if m <= 0 || off+m+int(l) > len(data) {
			return true
		}
		ev := data[off+m : off+m+int(l)]
		off += m + int(l)
		if seq >= from && !f(seq, ev) {
			return false
		}
		seq++
	}
	return true
}
