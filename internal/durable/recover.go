package durable

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// recover rebuilds the mailboxes from the store: their states, then the
// headers of every stored write and dead letter. The file store has
// already checked each record's checksum and truncated a torn tail. It
// returns the last stream sequences it read (the followers of a shared
// store go on from there).
func (s *Store[T]) recover() (from followFrom, err error) {
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Minute)
	defer cancel()
	states := map[string]stateRecord{}
	from.state, err = s.scan(ctx, s.state, false, func(m jetstream.Msg, _ *jetstream.MsgMetadata) {
		var st stateRecord
		if json.Unmarshal(m.Data(), &st) == nil && st.ID != "" {
			states[st.ID] = st
		}
	})
	if err != nil {
		return from, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, st := range states {
		mb := s.newMailboxLocked(id, st.Owner)
		mb.acked = st.Acked
	}
	byTok := map[string]*Mailbox[T]{}
	for _, mb := range *s.boxes.Load() {
		byTok[mb.tok] = mb
	}
	var lost int
	from.data, err = s.scan(ctx, s.data, true, func(m jetstream.Msg, md *jetstream.MsgMetadata) {
		tok, dead, ok := s.subjectToken(m.Subject())
		if !ok {
			return
		}
		mb := byTok[tok]
		if mb == nil && s.cfg.Shared != nil {
			// Declared by another daemon after the states were read.
			if mb = s.mailboxOfTokenLocked(tok); mb != nil {
				byTok[tok] = mb
			}
		}
		if mb == nil {
			lost++ // its state record is gone: nothing to deliver it to
			return
		}
		h := m.Headers()
		if dead {
			seq, _ := strconv.ParseUint(h.Get(hdrSeq), 10, 64)
			size, _ := strconv.Atoi(h.Get("Nats-Msg-Size"))
			s.dead = append(s.dead, deadLetter{mailbox: mb.id, seq: seq, reason: h.Get(hdrReason),
				at: md.Timestamp.UnixNano(), bytes: size, jsSeq: md.Sequence.Stream})
			return
		}
		first, err1 := strconv.ParseUint(h.Get(hdrFirst), 10, 64)
		n, err2 := strconv.ParseUint(h.Get(hdrCount), 10, 32)
		if err1 != nil || err2 != nil || n == 0 || first <= mb.last {
			lost++
			return
		}
		size, _ := strconv.ParseInt(h.Get(hdrBytes), 10, 64)
		b := batch{first: first, n: uint32(n), bytes: size, at: md.Timestamp.UnixNano(), jsSeq: md.Sequence.Stream}
		if len(mb.batches) == 0 {
			mb.first = first
		}
		mb.batches = append(mb.batches, b)
		mb.last = b.last()
		mb.lastJs = b.jsSeq
		mb.count += int64(n)
		mb.bytes += b.bytes
	})
	if err != nil {
		return from, err
	}
	for _, mb := range *s.boxes.Load() {
		if len(mb.batches) == 0 {
			mb.first = mb.acked + 1
			mb.last = mb.acked
		}
		if mb.acked > mb.last {
			mb.acked = mb.last // the tail that was acknowledged is gone
		}
		mb.next = mb.acked + 1
		for mb.ackedIdx < len(mb.batches) && mb.batches[mb.ackedIdx].last() <= mb.acked {
			b := &mb.batches[mb.ackedIdx]
			mb.ackedBytes += b.bytes
			mb.ackedCount += int64(b.n)
			mb.ackedIdx++
		}
	}
	if len(s.dead) > s.cfg.MaxDeadLetters {
		s.dead = s.dead[len(s.dead)-s.cfg.MaxDeadLetters:]
	}
	s.log.Info("durable store opened", "dir", s.cfg.Dir, "shared", s.cfg.Shared != nil, "mailboxes", len(*s.boxes.Load()),
		"dead_letters", len(s.dead), "sync", s.cfg.Sync, "unattributed_writes", lost)
	return from, nil
}

// subjectToken returns the mailbox token of an event stream subject and
// whether it is a dead letter's.
func (s *Store[T]) subjectToken(subj string) (tok string, dead, ok bool) {
	switch {
	case strings.HasPrefix(subj, s.n.events):
		return subj[len(s.n.events):], false, true
	case strings.HasPrefix(subj, s.n.dead):
		return subj[len(s.n.dead):], true, true
	}
	return "", false, false
}

// scan reads every message of st in order (only headers with
// headersOnly) with an ordered consumer, and returns the last stream
// sequence it got to: every message up to it was read (or deleted).
func (s *Store[T]) scan(ctx context.Context, st jetstream.Stream, headersOnly bool, f func(jetstream.Msg, *jetstream.MsgMetadata)) (uint64, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("durable: cannot read the store: %w", err)
	}
	if info.State.Msgs == 0 {
		return info.State.LastSeq, nil
	}
	last, want := info.State.LastSeq, info.State.Msgs
	seen, at := uint64(0), uint64(0)
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: headersOnly})
	if err != nil {
		return 0, fmt.Errorf("durable: cannot read the store: %w", err)
	}
	// Stop at the last sequence or once the stream's message count was
	// read: after a torn tail was cut, the state may still name a last
	// sequence that is gone (sequences are not reused).
	stalled := time.Now()
	for {
		b, err := c.Fetch(1000, jetstream.FetchMaxWait(100*time.Millisecond))
		if err != nil {
			return 0, fmt.Errorf("durable: cannot read the store: %w", err)
		}
		got, done := 0, false
		for m := range b.Messages() { // to the end, so the fetch ends
			got++
			md, err := m.Metadata()
			if err != nil || done {
				continue
			}
			f(m, md)
			seen++
			at = md.Sequence.Stream
			done = at >= last || seen >= want
		}
		if done {
			return at, nil
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return 0, fmt.Errorf("durable: cannot read the store: %w", err)
		}
		if got > 0 {
			stalled = time.Now()
		} else if time.Since(stalled) > 30*time.Second {
			return 0, fmt.Errorf("durable: reading the store %s stalled after %d of %d messages", st.CachedInfo().Config.Name, seen, want)
		}
	}
}

// janitor applies MaxAge once a second: unacknowledged events older than
// it go to the dead letters, acknowledged ones are deleted.
func (s *Store[T]) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		var purges []purge
		for _, mb := range *s.boxes.Load() {
			if s.cfg.Shared == nil || mb.sub != nil {
				// Shared: only the daemon delivering a mailbox moves
				// its old events to the dead letters, once.
				s.expireLocked(mb)
			}
			if p, ok := s.evictLocked(mb, true); ok {
				purges = append(purges, p)
			}
		}
		s.mu.Unlock()
		s.purge(purges)
		s.heal()
	}
}

func (s *Store[T]) expireLocked(mb *Mailbox[T]) {
	cut := time.Now().Add(-mb.ret.MaxAge).UnixNano()
	for mb.ackedIdx < len(mb.batches) && mb.batches[mb.ackedIdx].at < cut {
		b := mb.batches[mb.ackedIdx]
		for seq := max(mb.acked+1, b.first); seq <= b.last(); seq++ {
			s.deadLetterLocked(mb, seq, "not processed within DurableMaxAge ("+mb.ret.MaxAge.String()+")")
		}
		s.ackLocked(mb, b.last())
		mb.gen++
		mb.rewound = true
		mb.poke()
	}
}
