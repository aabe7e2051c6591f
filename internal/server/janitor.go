package server

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// janitor expires requests whose replies are overdue, closes connections
// whose writer has been blocked for WriteTimeout and asks readers that
// read nothing since its last tick to park, once a second (or four times
// per RequestTimeout or WriteTimeout, if shorter), until Shutdown.
func (s *Server) janitor() {
	defer s.handlers.Done()
	every := max(min(time.Second, s.cfg.RequestTimeout/4, s.cfg.WriteTimeout/4), time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var conns []*conn
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.mu.Lock()
			for c := range s.conns {
				conns = append(conns, c)
			}
			s.mu.Unlock()
			for _, c := range conns {
				c.expirePending(now)
				if c.q.Blocked(now) > s.cfg.WriteTimeout {
					c.writeStuck()
				}
				c.idle()
			}
			clear(conns)
			conns = conns[:0]
		}
	}
}

// logLimiter keeps a warning that a client can provoke from flooding the
// log: each kind is logged at most once per interval for each peer (a
// uid, a certificate, a remote address; so one noisy user cannot hide
// another's first refusal), and the next line says how many were
// suppressed in between. It remembers at most maxWarnKeys peers; past
// that, peers it does not know share one key.
type logLimiter struct {
	mu     sync.Mutex
	keys   map[warnKey]*limitedKey
	pruned time.Time // when keys was last pruned of expired entries
}

type warnKey struct {
	kind string
	who  string
}

// maxWarnKeys bounds the logLimiter's memory: remote addresses are many.
const maxWarnKeys = 4096

type limitedKey struct {
	last       time.Time
	suppressed int
}

const warnInterval = 10 * time.Second

func (l *logLimiter) warn(log *slog.Logger, kind, who string, msg string, args ...any) {
	l.log(log, slog.LevelWarn, kind, who, msg, args...)
}

// log logs at level, limited as warn is.
func (l *logLimiter) log(log *slog.Logger, level slog.Level, kind, who string, msg string, args ...any) {
	key := warnKey{kind, who}
	now := time.Now()
	l.mu.Lock()
	if l.keys == nil {
		l.keys = make(map[warnKey]*limitedKey)
	}
	k := l.keys[key]
	if k == nil && len(l.keys) >= maxWarnKeys && now.Sub(l.pruned) >= time.Second {
		l.pruned = now
		for wk, v := range l.keys {
			if now.Sub(v.last) >= warnInterval {
				delete(l.keys, wk)
			}
		}
	}
	if k == nil && len(l.keys) >= maxWarnKeys {
		key.who = "" // shared by the peers it cannot tell apart now
		k = l.keys[key]
	}
	if k == nil {
		k = &limitedKey{}
		l.keys[key] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < warnInterval {
		k.suppressed++
		l.mu.Unlock()
		return
	}
	n := k.suppressed
	k.last, k.suppressed = now, 0
	l.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	log.Log(context.Background(), level, msg, args...)
}

// idle asks c's reader to park if it read nothing since the janitor's
// last tick: the read deadline passes, the reader's read returns and it
// parks (readLoop). A reader still busy with what it read before parks
// at its next read, or goes on at once if input is waiting.
func (c *conn) idle() {
	if !c.mayPark.Load() {
		return
	}
	in := c.ctr.bytesIn.Load()
	if in == c.idleIn && c.slot.Running() && c.parkAsk.CompareAndSwap(false, true) {
		c.setReadDeadline(time.Unix(1, 0))
	}
	c.idleIn = in
}
