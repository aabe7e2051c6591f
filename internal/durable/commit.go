package durable

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// write is one mailbox's share of a round.
type write[T any] struct {
	mb        *Mailbox[T]
	body      []byte
	tags      []T
	wait      []waiter
	n         int
	first     uint64
	taken     int // pending bytes it frees
	state     []byte
	dead      []deadJob
	fut       jetstream.PubAckFuture
	stFut     jetstream.PubAckFuture
	deadFut   []jetstream.PubAckFuture
	jsSeq     uint64 // where the events were stored
	expJs     uint64 // Shared: where the mailbox's last write is
	deadTaken int
	stateOK   bool
	conflict  bool // Shared: another daemon wrote to the mailbox first
	err       error
}

// deadJob is an event on its way to the dead letters: seq of the write
// at batchSeq (first event batchFirst), or event when already read.
type deadJob struct {
	seq        uint64
	reason     string
	batchSeq   uint64
	batchFirst uint64
	event      []byte
	jsSeq      uint64 // where the dead letter was stored; 0: not stored
}

// committer runs the rounds: it takes what every mailbox appended since
// the last round, writes it (one message per mailbox, each flushed to
// stable storage under SyncAlways before its acknowledgement), then
// reports the outcome. Appends made while a round is written wait for
// the next: that is the group commit.
func (s *Store[T]) committer() {
	defer s.wg.Done()
	var results []Stored[T]
	for {
		<-s.work
		s.mu.Lock()
		list := s.dirty
		s.dirty = nil
		closed := s.closed
		writes := make([]write[T], 0, len(list))
		for _, mb := range list {
			mb.inDirty = false
			w := write[T]{mb: mb}
			s.takeLocked(mb, &w)
			if closed {
				w.err, w.state, w.dead = ErrClosed, nil, nil
			}
			writes = append(writes, w)
		}
		s.mu.Unlock()

		if !closed {
			s.prepareDead(writes)
			s.publish(writes)
		}

		s.mu.Lock()
		results = results[:0]
		freed, conflicts := 0, false
		var purges []purge
		for i := range writes {
			w := &writes[i]
			if w.conflict {
				s.requeueLocked(w)
				conflicts = true
			}
			freed += w.taken
			if w.n > 0 && !w.conflict {
				results = append(results, Stored[T]{Mailbox: w.mb.id, First: w.first, Tags: w.tags, Err: w.err})
				for _, x := range w.wait {
					x.done <- w.err
				}
			}
			if p, ok := s.applyLocked(w); ok {
				purges = append(purges, p)
			}
		}
		s.pendBytes -= freed
		if freed > 0 && !s.closed {
			close(s.room)
			s.room = make(chan struct{})
		}
		s.mu.Unlock()
		if len(results) > 0 && s.onStored != nil {
			s.onStored(results)
		}
		s.ctr.Rounds.Add(1)
		s.purge(purges)
		if closed {
			return
		}
		if conflicts {
			s.awaitFollowers()
		}
	}
}

// takeLocked moves up to MaxBatchBytes of mb's pending events, its state
// and its dead letters into w.
func (s *Store[T]) takeLocked(mb *Mailbox[T], w *write[T]) {
	if mb.stateDirt {
		mb.stateDirt = false
		w.state = mb.stateJSON()
	}
	w.dead, mb.deadPend = mb.deadPend, nil
	w.deadTaken = len(w.dead)
	mb.deadOut += w.deadTaken
	if mb.pendN == 0 {
		return
	}
	body, n := mb.pend, mb.pendN
	if len(body) > s.cfg.MaxBatchBytes {
		// Split at the last record boundary within MaxBatchBytes (at
		// least one record).
		off, k := 0, 0
		for off < len(body) {
			l, m := binary.Uvarint(body[off:])
			end := off + m + int(l)
			if k > 0 && end > s.cfg.MaxBatchBytes {
				break
			}
			off, k = end, k+1
		}
		body, n = body[:off:off], k
		rest := append([]byte(nil), mb.pend[off:]...)
		mb.pend = rest
		w.tags = append([]T(nil), mb.pendTags[:n]...)
		mb.pendTags = append(mb.pendTags[:0:0], mb.pendTags[n:]...)
		if len(mb.pendWait) > 0 {
			var rest []waiter
			for _, x := range mb.pendWait {
				if x.i < n {
					w.wait = append(w.wait, x)
				} else {
					rest = append(rest, waiter{x.i - n, x.done})
				}
			}
			mb.pendWait = rest
		}
		mb.pendN -= n
		s.markDirtyLocked(mb)
	} else {
		w.tags, w.wait = mb.pendTags, mb.pendWait
		mb.pend, mb.pendTags, mb.pendN, mb.pendWait = nil, nil, 0, nil
	}
	w.body, w.n = body, n
	mb.flyN, mb.flyBytes = n, int64(len(body))
	w.first = mb.last + 1
	w.expJs = mb.lastJs
	// Append counted each record as its event plus MaxVarintLen32.
	w.taken = recordsPayload(body) + n*binary.MaxVarintLen32
}

// recordsPayload returns the event bytes of encoded records.
func recordsPayload(body []byte) int {
	total := 0
	for off := 0; off < len(body); {
		l, m := binary.Uvarint(body[off:])
		if m <= 0 {
			break
		}
		total += int(l)
		off += m + int(l)
	}
	return total
}

// publish writes the round: every message is sent before any
// acknowledgement is awaited, so the engine works on them back to back.
func (s *Store[T]) publish(writes []write[T]) {
	ctx, cancel := context.WithTimeout(s.ctx, engineTimeout)
	defer cancel()
	for i := range writes {
		w := &writes[i]
		if w.n > 0 {
			m := nats.NewMsg(s.n.events + w.mb.tok)
			if s.cfg.Shared != nil {
				m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.expJs, 10))
			}
			m.Header.Set(hdrFirst, strconv.FormatUint(w.first, 10))
			m.Header.Set(hdrCount, strconv.Itoa(w.n))
			m.Header.Set(hdrBytes, strconv.Itoa(recordsPayload(w.body)))
			m.Data = w.body
			w.fut, w.err = s.js.PublishMsgAsync(m)
		}
		for _, d := range w.dead {
			m := nats.NewMsg(s.n.dead + w.mb.tok)
			m.Header.Set(hdrSeq, strconv.FormatUint(d.seq, 10))
			m.Header.Set(hdrReason, headerSafe(d.reason))
			m.Data = d.event
			f, err := s.js.PublishMsgAsync(m)
			if err != nil {
				f = nil
			}
			w.deadFut = append(w.deadFut, f)
		}
		if w.state != nil {
			f, err := s.js.PublishAsync(s.n.stateP+w.mb.tok, w.state)
			if err == nil {
				w.stFut = f
			}
		}
	}
	wait := func(f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
		if f == nil {
			return nil, errors.New("not sent")
		}
		select {
		case a := <-f.Ok():
			return a, nil
		case err := <-f.Err():
			return nil, err
		case <-ctx.Done():
			return nil, errNoAnswer
		}
	}
	for i := range writes {
		w := &writes[i]
		if w.fut != nil {
			if a, err := wait(w.fut); err != nil {
				w.err = err
			} else {
				w.jsSeq = a.Sequence
			}
		}
		if w.err != nil && w.n > 0 && s.conflicted(w) {
			w.conflict, w.err = true, nil
		}
		if w.err != nil && w.n > 0 {
			w.err = s.failed(w.err)
			s.ctr.Failed.Add(uint64(w.n))
			s.log.Warn("durable store: write failed", "mailbox", w.mb.id, "events", w.n, "err", w.err)
		}
		for j, f := range w.deadFut {
			a, err := wait(f)
			if err != nil {
				s.log.Warn("durable store: dead letter not written", "mailbox", w.mb.id, "seq", w.dead[j].seq, "err", err)
				continue
			}
			w.dead[j].jsSeq = a.Sequence
		}
		if w.stFut != nil {
			_, err := wait(w.stFut)
			w.stateOK = err == nil
		}
	}
}

// engineTimeout bounds the wait for the engine's answer to a write.
const engineTimeout = 10 * time.Second

var errNoAnswer = errors.New("the storage engine did not answer within " + engineTimeout.String())

// failed turns a failed write into the error senders see. JetStream
// stops writing to a stream after a write error (a full disk): it no
// longer answers. Then the store is broken, and every later append fails
// at once with the same error, until the disk has room again (heal) or
// statebusd restarts.
func (s *Store[T]) failed(err error) error {
	var se *StoreError
	if errors.As(err, &se) {
		return err
	}
	if s.cfg.Shared != nil {
		// A cluster that did not answer may be electing a leader: the
		// next write may succeed, and this one may have been stored.
		if errors.Is(err, errNoAnswer) {
			err = errors.New("the federation's JetStream did not answer within " + engineTimeout.String())
		}
		return &StoreError{Err: err, Cluster: true}
	}
	if !errors.Is(err, errNoAnswer) {
		return &StoreError{Err: err}
	}
	if free, ok := freeBytes(s.cfg.Dir); ok && free < uint64(s.cfg.MaxBatchBytes)+1<<20 {
		err = fmt.Errorf("the disk holding %s is full: %d bytes free", s.cfg.Dir, free)
	}
	se = &StoreError{Err: err, Restart: true}
	s.mu.Lock()
	if s.broken == nil {
		s.broken = se
		s.log.Error("durable store: the storage engine stopped storing; no durable event is accepted until the disk has room again", "dir", s.cfg.Dir, "err", err)
	}
	s.mu.Unlock()
	return se
}

// purge is a mailbox's events to delete: every message on subject below
// jsSeq.
type purge struct {
	subject string
	below   uint64
}

// applyLocked records a written round in its mailbox and applies the
// count and bytes retention; it returns what to delete.
func (s *Store[T]) applyLocked(w *write[T]) (purge, bool) {
	mb := w.mb
	if w.n > 0 && !w.conflict {
		mb.flyN, mb.flyBytes = 0, 0
	}
	if w.state != nil && !w.stateOK && !s.closed {
		mb.stateDirt = true // written again with the next round
		s.markDirtyLocked(mb)
	}
	now := time.Now().UnixNano()
	mb.deadOut -= w.deadTaken
	for _, d := range w.dead {
		if d.jsSeq != 0 && (s.cfg.Shared == nil || !s.hasDeadLocked(d.jsSeq)) {
			s.addDeadLocked(deadLetter{mailbox: mb.id, seq: d.seq, reason: d.reason, at: now, bytes: len(d.event), jsSeq: d.jsSeq})
		}
	}
	if w.n == 0 || w.err != nil || w.conflict {
		return purge{}, false
	}
	mb.conflicts = 0
	s.ctr.Stored.Add(uint64(w.n))
	if w.jsSeq <= mb.lastJs {
		return purge{}, false // the followers applied it first
	}
	b := batch{first: w.first, n: uint32(w.n), bytes: int64(recordsPayload(w.body)), at: now, jsSeq: w.jsSeq}
	return s.addBatchLocked(mb, b, w.body)
}

// addBatchLocked records a stored write of mb (data: its records) and
// hands it to the pump; it returns what the retention deletes.
func (s *Store[T]) addBatchLocked(mb *Mailbox[T], b batch, data []byte) (purge, bool) {
	if len(mb.batches) == 0 && mb.count == 0 {
		mb.first = b.first
	}
	mb.batches = append(mb.batches, b)
	mb.last = b.last()
	mb.lastJs = b.jsSeq
	mb.count += int64(b.n)
	mb.bytes += b.bytes
	b.data = data
	mb.tail = b
	mb.poke()
	return s.evictLocked(mb, false)
}

// evictLocked drops mb's oldest acknowledged writes while it is over its
// event or byte limit (or, with aged, older than MaxAge), and returns the
// deletion to make.
func (s *Store[T]) evictLocked(mb *Mailbox[T], aged bool) (purge, bool) {
	if len(mb.deadPend) > 0 || mb.deadOut > 0 {
		return purge{}, false // their events are still to be read
	}
	var below uint64
	cut := time.Now().Add(-mb.ret.MaxAge).UnixNano()
	i, keep := 0, mb.ackedIdx
	if s.cfg.Shared != nil {
		// The newest write stays: the next append names it as the
		// mailbox's last (Nats-Expected-Last-Subject-Sequence).
		keep = min(keep, len(mb.batches)-1)
	}
	for ; i < keep; i++ {
		b := &mb.batches[i]
		if mb.count <= mb.ret.MaxEvents && mb.bytes <= mb.ret.MaxBytes && !(aged && b.at < cut) {
			break
		}
		mb.count -= int64(b.n)
		mb.bytes -= b.bytes
		mb.ackedCount -= int64(b.n)
		mb.ackedBytes -= b.bytes
		mb.first = b.last() + 1
		below = b.jsSeq + 1
	}
	if i == 0 {
		return purge{}, false
	}
	mb.batches = append(mb.batches[:0:0], mb.batches[i:]...)
	mb.ackedIdx -= i
	return purge{subject: s.n.events + mb.tok, below: below}, true
}

func (s *Store[T]) purge(ps []purge) {
	for _, p := range ps {
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		err := s.data.Purge(ctx, jetstream.WithPurgeSubject(p.subject), jetstream.WithPurgeSequence(p.below))
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("durable store: cannot delete expired events", "subject", p.subject, "err", err)
		}
	}
}

// headerSafe makes a reason fit a header value: one line, at most 256
// bytes.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 256 {
		s = strings.ToValidUTF8(s[:256], "")
	}
	return s
}
