package durable

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Shared keeps the store's mailboxes in a NATS cluster's JetStream (a
// federation's, package federation) so that every daemon of the
// federation reaches every mailbox:
//
//   - every daemon appends to a mailbox with its group commit as on one
//     daemon; each write names the mailbox's last write it knows of
//     (Nats-Expected-Last-Subject-Sequence), so that JetStream refuses it
//     when another daemon wrote first: then the write waits until this
//     daemon has read the other one and goes again with the next
//     sequences. Sequences stay gapless and in the order JetStream
//     stored the writes;
//   - every daemon follows both streams (ordered consumers) and applies
//     what the others wrote: writes, dead letters, declarations and
//     acknowledged positions, so its mailboxes are the same as theirs a
//     moment later;
//   - only the daemon holding a mailbox's id (the federation lets one
//     hold it) attaches a subscriber, delivers, takes acknowledgements
//     and moves unprocessed old events to the dead letters.
//
// The streams have Replicas copies; an event is acknowledged when
// JetStream acknowledged its write, that is when a quorum of the
// replicas stored it.
type Shared struct {
	// Conn is the connection to the cluster; the store does not close it.
	Conn *nats.Conn
	// Replicas is how many nodes keep each stream.
	Replicas int
	// Name is the federation's name: it names the streams and prefixes
	// the subjects, so that several federations can share a cluster.
	Name string
}

// followFrom is where the followers start: after the last sequences
// recover read.
type followFrom struct{ data, state uint64 }

// followers are a shared store's consumers of what other daemons write.
type followers struct {
	applied     chan struct{} // 1-slot: a write of another daemon was applied
	data, state jetstream.ConsumeContext
}

// conflictTimeout bounds how long a write may keep losing to other
// daemons' writes to the same mailbox before its senders get an error.
const conflictTimeout = engineTimeout

// startFollowing starts applying what is written to the streams after
// from (by this daemon too: what it applied already is skipped).
func (s *Store[T]) startFollowing(from followFrom) error {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	errs := jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if s.ctx.Err() == nil {
			s.log.Debug("durable store: following the shared streams", "err", err)
		}
	})
	dc, err := s.data.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from.data + 1})
	if err != nil {
		return errors.New("durable: cannot follow the shared stream " + s.n.data + ": " + err.Error())
	}
	sc, err := s.state.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from.state + 1})
	if err != nil {
		return errors.New("durable: cannot follow the shared stream " + s.n.state + ": " + err.Error())
	}
	if s.follow.state, err = sc.Consume(s.applyState, errs); err != nil {
		return errors.New("durable: cannot follow the shared stream " + s.n.state + ": " + err.Error())
	}
	if s.follow.data, err = dc.Consume(s.applyData, errs,
		jetstream.PullMaxBytes(max(16<<20, 2*(s.cfg.MaxBatchBytes+1<<20)))); err != nil {
		s.stopFollowing()
		return errors.New("durable: cannot follow the shared stream " + s.n.data + ": " + err.Error())
	}
	return nil
}

// stopFollowing stops the followers and waits for their callbacks.
func (s *Store[T]) stopFollowing() {
	for _, cc := range []jetstream.ConsumeContext{s.follow.data, s.follow.state} {
		if cc != nil {
			cc.Stop()
			<-cc.Closed()
		}
	}
}

// applyData applies one message of the event stream: a write or a dead
// letter, unless this daemon applied it already.
func (s *Store[T]) applyData(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	tok, dead, ok := s.subjectToken(m.Subject())
	if !ok {
		return
	}
	h := m.Headers()
	js := md.Sequence.Stream
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	mb := s.mailboxOfTokenLocked(tok)
	if mb == nil {
		s.mu.Unlock()
		return
	}
	if dead {
		if !s.hasDeadLocked(js) {
			seq, _ := strconv.ParseUint(h.Get(hdrSeq), 10, 64)
			s.addDeadLocked(deadLetter{mailbox: mb.id, seq: seq, reason: h.Get(hdrReason),
				at: md.Timestamp.UnixNano(), bytes: len(m.Data()), jsSeq: js})
		}
		s.mu.Unlock()
		return
	}
	first, err1 := strconv.ParseUint(h.Get(hdrFirst), 10, 64)
	n, err2 := strconv.ParseUint(h.Get(hdrCount), 10, 32)
	size, _ := strconv.ParseInt(h.Get(hdrBytes), 10, 64)
	if err1 != nil || err2 != nil || n == 0 || js <= mb.lastJs || first <= mb.last {
		s.mu.Unlock()
		return // applied already (or not a write of ours)
	}
	if first != mb.last+1 {
		s.log.Warn("durable store: a mailbox's writes have a gap", "mailbox", mb.id, "expected", mb.last+1, "got", first)
	}
	p, purgeIt := s.addBatchLocked(mb, batch{first: first, n: uint32(n), bytes: size, at: md.Timestamp.UnixNano(), jsSeq: js}, m.Data())
	if mb.ackHint > mb.acked {
		s.advanceAckLocked(mb, mb.ackHint)
	}
	s.mu.Unlock()
	select {
	case s.follow.applied <- struct{}{}:
	default:
	}
	if purgeIt {
		s.purge([]purge{p})
	}
}

// applyState applies a mailbox's state written by any daemon: the
// declaration, and the acknowledged position (which only grows).
func (s *Store[T]) applyState(m jetstream.Msg) {
	var st stateRecord
	if json.Unmarshal(m.Data(), &st) != nil || st.ID == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	mb := (*s.boxes.Load())[st.ID]
	if mb == nil {
		mb = s.newMailboxLocked(st.ID, st.Owner)
	} else if mb.owner < 0 && st.Owner >= 0 {
		mb.owner = st.Owner // first seen through its events
		s.perUID[st.Owner]++
	}
	mb.ackHint = max(mb.ackHint, st.Acked)
	if s.advanceAckLocked(mb, st.Acked) {
		mb.poke()
	}
}

// mailboxOfTokenLocked returns the mailbox of a subject token, making it
// when another daemon declared it and its state was not read yet.
func (s *Store[T]) mailboxOfTokenLocked(tok string) *Mailbox[T] {
	id, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(id) == 0 {
		return nil
	}
	if mb := (*s.boxes.Load())[string(id)]; mb != nil {
		return mb
	}
	return s.newMailboxLocked(string(id), -1)
}

// sharedState reads id's state as stored, or nil.
func (s *Store[T]) sharedState(id string) *stateRecord {
	ctx, cancel := context.WithTimeout(s.ctx, engineTimeout)
	defer cancel()
	m, err := s.state.GetLastMsgForSubject(ctx, s.n.stateP+token(id))
	if err != nil {
		return nil
	}
	var st stateRecord
	if json.Unmarshal(m.Data, &st) != nil || st.ID != id {
		return nil
	}
	return &st
}

// conflicted reports whether w failed because another daemon wrote to
// its mailbox first.
func (s *Store[T]) conflicted(w *write[T]) bool {
	if s.cfg.Shared == nil {
		return false
	}
	var je jetstream.JetStreamError
	if !errors.As(w.err, &je) || je.APIError() == nil {
		return false
	}
	c := je.APIError().ErrorCode
	return c == jetstream.JSErrCodeStreamWrongLastSequence || c == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// requeueLocked puts the events of a write that another daemon's write
// came before back at the head of its mailbox's pending events: the next
// round numbers them after that write. Past conflictTimeout they fail.
func (s *Store[T]) requeueLocked(w *write[T]) {
	mb := w.mb
	mb.flyN, mb.flyBytes = 0, 0
	now := time.Now()
	if mb.conflicts == 0 {
		mb.conflict0 = now
	}
	mb.conflicts++
	s.ctr.Conflicts.Add(1)
	if s.closed || now.Sub(mb.conflict0) > conflictTimeout {
		w.conflict = false
		w.err = &StoreError{Err: errors.New("other daemons kept writing to mailbox " + mb.id + " first for " + conflictTimeout.String()), Cluster: true}
		if s.closed {
			w.err = ErrClosed
		}
		mb.conflicts = 0
		s.ctr.Failed.Add(uint64(w.n))
		return
	}
	mb.pend = append(w.body[:len(w.body):len(w.body)], mb.pend...)
	mb.pendTags = append(w.tags[:len(w.tags):len(w.tags)], mb.pendTags...)
	for i := range mb.pendWait {
		mb.pendWait[i].i += w.n
	}
	mb.pendWait = append(w.wait[:len(w.wait):len(w.wait)], mb.pendWait...)
	mb.pendN += w.n
	w.taken = 0 // still pending
	s.markDirtyLocked(mb)
}

// awaitFollowers waits a little for the followers to apply another
// daemon's write after a conflict, so that the next round does not
// conflict again at once.
func (s *Store[T]) awaitFollowers() {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-s.follow.applied:
	case <-t.C:
	case <-s.stop:
	}
}

// hasDeadLocked reports whether the dead letter stored at jsSeq is
// indexed already.
func (s *Store[T]) hasDeadLocked(jsSeq uint64) bool {
	for i := len(s.dead) - 1; i >= 0; i-- {
		if s.dead[i].jsSeq == jsSeq {
			return true
		}
	}
	return false
}
