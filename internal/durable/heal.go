package durable

import (
	"context"
	"errors"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// healing is what the store needs to store again after its engine
// stopped (a full disk) without a restart of statebusd.
type healing struct {
	cfg    natsserver.JetStreamConfig // the engine's JetStream, as it started
	gaveUp bool                       // the store no longer matches the index: restart
}

// heal runs on the janitor's tick (every second) while the store is
// broken. Once the disk has
// room again it starts the engine's JetStream anew (nats-server shut it
// down after the write error; starting it recovers the file store as at
// a start, cutting a torn tail) and checks that every mailbox's last
// stored write is the one the index names and that a write is stored:
// then writes failed whole and the store stores again. Otherwise (a write whose outcome was lost was
// stored after all) it gives up, and only a restart of statebusd, which
// rebuilds the index, makes it store again.
func (s *Store[T]) heal() {
	s.mu.Lock()
	broken := s.broken != nil && !s.healing.gaveUp && !s.closed
	s.mu.Unlock()
	if !broken || s.ns == nil {
		return
	}
	if free, ok := freeBytes(s.cfg.Dir); !ok || free < uint64(s.cfg.MaxBatchBytes)+2<<20 {
		return // still full
	}
	// A stream that had a write error stores nothing more (nats-server
	// may also have shut JetStream down): start JetStream anew, which
	// reopens the streams from disk.
	if s.ns.JetStreamEnabled() {
		s.ns.ShutdownJetStream()
	}
	cfg := s.healing.cfg
	if err := s.ns.EnableJetStream(&cfg); err != nil {
		s.log.Debug("durable store: cannot start the storage engine again yet", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, engineTimeout)
	defer cancel()
	if _, err := s.data.Info(ctx); err != nil {
		s.log.Debug("durable store: the storage engine is not ready yet", "err", err)
		return
	}
	for _, mb := range *s.boxes.Load() {
		s.mu.Lock()
		lastJs, empty := mb.lastJs, len(mb.batches) == 0
		s.mu.Unlock()
		m, err := s.data.GetLastMsgForSubject(ctx, s.n.events+mb.tok)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound) && empty:
		case err == nil && m.Sequence == lastJs:
		case err != nil && !errors.Is(err, jetstream.ErrMsgNotFound):
			s.log.Debug("durable store: the storage engine is not ready yet", "err", err)
			return
		default:
			s.mu.Lock()
			s.healing.gaveUp = true
			s.mu.Unlock()
			s.log.Error("durable store: the disk has room again, but the store holds a write the index does not know of; restart statebusd to store durable events again",
				"dir", s.cfg.Dir, "mailbox", mb.id)
			return
		}
	}
	// A write must work too (the probe's subject is no mailbox's).
	if _, err := s.js.Publish(ctx, s.n.dataAll[:len(s.n.dataAll)-1]+"probe", nil); err != nil {
		s.log.Debug("durable store: the storage engine does not store yet", "err", err)
		return
	}
	s.mu.Lock()
	s.broken = nil
	for _, mb := range *s.boxes.Load() {
		if mb.stateDirt || len(mb.deadPend) > 0 {
			s.markDirtyLocked(mb)
		}
		mb.poke() // a pump that failed to read goes on
	}
	s.mu.Unlock()
	s.log.Warn("durable store: the disk has room again; storing durable events again", "dir", s.cfg.Dir)
}
