package durable

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// deadLetter is one event in the dead letters.
type deadLetter struct {
	mailbox string
	seq     uint64
	reason  string
	at      int64 // unix ns
	bytes   int
	jsSeq   uint64
}

// DeadLetter is one event that was not processed: refused MaxDeliveries
// times, or unacknowledged past its mailbox's MaxAge.
type DeadLetter struct {
	MachineID string `json:"MachineId"`
	Sequence  uint64
	Reason    string
	At        time.Time
	Bytes     int
	// Event is the event as its sender wrote it.
	Event []byte `json:"-"`
}

// deadLetterLocked queues mb's event seq for the dead letters; the
// committer reads it and writes it with the next round.
func (s *Store[T]) deadLetterLocked(mb *Mailbox[T], seq uint64, reason string) {
	j := deadJob{seq: seq, reason: reason}
	if mb.tail.data != nil && mb.tail.first <= seq && seq <= mb.tail.last() {
		j.event = record(mb.tail.data, seq-mb.tail.first)
	} else if i := mb.find(seq); i < len(mb.batches) && mb.batches[i].first <= seq {
		j.batchSeq, j.batchFirst = mb.batches[i].jsSeq, mb.batches[i].first
	} else {
		return // no longer stored
	}
	mb.deadPend = append(mb.deadPend, j)
	s.ctr.DeadLettered.Add(1)
	s.markDirtyLocked(mb)
}

// prepareDead reads the events of the round's dead letters that are not
// in memory.
func (s *Store[T]) prepareDead(writes []write[T]) {
	for i := range writes {
		w := &writes[i]
		for j := range w.dead {
			d := &w.dead[j]
			if d.event != nil {
				continue
			}
			data, err := s.readMsg(d.batchSeq)
			if err != nil {
				s.log.Warn("durable store: cannot read a refused event for the dead letters", "mailbox", w.mb.id, "seq", d.seq, "err", err)
				continue
			}
			d.event = record(data, d.seq-d.batchFirst)
		}
		k := 0
		for _, d := range w.dead {
			if d.event != nil {
				w.dead[k] = d
				k++
			}
		}
		w.dead = w.dead[:k]
	}
}

// addDeadLocked indexes a stored dead letter; past MaxDeadLetters the
// oldest is deleted.
func (s *Store[T]) addDeadLocked(d deadLetter) {
	s.dead = append(s.dead, d)
	for len(s.dead) > s.cfg.MaxDeadLetters {
		old := s.dead[0]
		s.dead = s.dead[1:]
		s.ctr.DeadDropped.Add(1)
		s.log.Warn("durable store: dead letters full (DurableMaxDeadLetters); deleted the oldest",
			"mailbox", old.mailbox, "seq", old.seq, "limit", s.cfg.MaxDeadLetters)
		go s.deleteMsg(old.jsSeq)
	}
}

func (s *Store[T]) deleteMsg(jsSeq uint64) {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	if err := s.data.DeleteMsg(ctx, jsSeq); err != nil && s.ctx.Err() == nil {
		s.log.Warn("durable store: cannot delete a message", "seq", jsSeq, "err", err)
	}
}

func (s *Store[T]) readMsg(jsSeq uint64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	m, err := s.data.GetMsg(ctx, jsSeq)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

// record returns the i-th event of encoded records (nil if none).
func record(body []byte, i uint64) []byte {
	off := 0
	for k := uint64(0); off < len(body); k++ {
		l, m := binary.Uvarint(body[off:])
		if m <= 0 || off+m+int(l) > len(body) {
			return nil
		}
		if k == i {
			return body[off+m : off+m+int(l)]
		}
		off += m + int(l)
	}
	return nil
}

// DeadLetters lists up to limit dead letters, oldest first, of mailbox
// id ("" for all), with their events.
func (s *Store[T]) DeadLetters(id string, limit int) (list []DeadLetter, total int, err error) {
	s.mu.Lock()
	var sel []deadLetter
	for _, d := range s.dead {
		if id == "" || d.mailbox == id {
			total++
			if len(sel) < limit {
				sel = append(sel, d)
			}
		}
	}
	s.mu.Unlock()
	for _, d := range sel {
		ev, err := s.readMsg(d.jsSeq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			s.forgetDead(d.jsSeq) // re-driven or deleted by another daemon
			total--
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		list = append(list, DeadLetter{MachineID: d.mailbox, Sequence: d.seq, Reason: d.reason,
			At: time.Unix(0, d.at).UTC(), Bytes: d.bytes, Event: ev})
	}
	return list, total, nil
}

// Redrive appends mailbox id's dead letters (only seq when not 0) to the
// mailbox again, as new events, and removes each from the dead letters
// once its copy is stored (a copy that could not be stored leaves it
// there). It returns how many it moved, and the first error.
func (s *Store[T]) Redrive(id string, seq uint64, tag T) (int, error) {
	mb := s.Lookup([]byte(id))
	if mb == nil {
		return 0, ErrNoMailbox
	}
	s.mu.Lock()
	var sel []deadLetter
	for _, d := range s.dead {
		if d.mailbox == id && (seq == 0 || d.seq == seq) {
			sel = append(sel, d)
		}
	}
	s.mu.Unlock()
	type copied struct {
		jsSeq uint64
		done  chan error
	}
	var copies []copied
	var err error
	for _, d := range sel {
		ev, rerr := s.readMsg(d.jsSeq)
		if errors.Is(rerr, jetstream.ErrMsgNotFound) {
			s.forgetDead(d.jsSeq) // re-driven or deleted by another daemon
			continue
		}
		if rerr != nil {
			err = rerr
			break
		}
		done := make(chan error, 1)
		if aerr := s.appendEvent(mb, ev, tag, nil, done); aerr != nil {
			err = aerr
			break
		}
		copies = append(copies, copied{d.jsSeq, done})
	}
	n := 0
	for _, c := range copies {
		var cerr error
		select {
		case cerr = <-c.done:
		case <-s.stop:
			cerr = ErrClosed
		}
		if cerr != nil {
			err = cmp.Or(err, cerr)
			continue // still a dead letter
		}
		s.forgetDead(c.jsSeq)
		s.deleteMsg(c.jsSeq)
		n++
	}
	return n, err
}

// forgetDead removes the dead letter stored at jsSeq from the index.
func (s *Store[T]) forgetDead(jsSeq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.dead {
		if s.dead[i].jsSeq == jsSeq {
			s.dead = append(s.dead[:i], s.dead[i+1:]...)
			return
		}
	}
}
