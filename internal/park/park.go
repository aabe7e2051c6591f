// Package park owns the parking of idle connections' readers, so that an
// idle connection has no goroutine of its own. A parked reader's
// goroutine has returned; one goroutine per Parker waits for every parked
// socket at once (epoll on Linux) and, when one becomes readable or its
// peer hangs up, resumes that connection's reader in a new goroutine
// (Slot.Resume). Each connection's state is explicit (Slot): running or
// parked, plus whether it was stopped, changed only by compare and swap,
// so that a wakeup and a stop never both resume a reader and never lose
// one.
//
// On other platforms a Parker is never made (New fails) and nothing
// parks: Park on a nil Parker reports false.
package park

import (
	"sync"
	"sync/atomic"
)

// A Slot's state: running or parked, with stopped or'ed in once Stop ran.
const (
	running uint32 = 0 // a goroutine runs the reader
	parked  uint32 = 1 // no goroutine: the Parker waits for the socket
	stopped uint32 = 2 // Stop ran: the reader must not park again
)

// Slot is one connection's parking state. Its zero value is a running
// reader that was not stopped; set Resume before parking it.
type Slot struct {
	st  atomic.Uint32
	key uint64 // its key in the Parker while parked (the Parker's lock)
	// Resume starts the reader again; it is called on a new goroutine of
	// its own, after a wakeup or after Stop took the slot out of the
	// Parker, and runs the reader from then on.
	Resume func()
}

// Parked reports whether the slot is parked: no goroutine runs its reader.
func (s *Slot) Parked() bool { return s.st.Load() == parked }

// Running reports whether a goroutine runs the slot's reader and it was
// not stopped: the one state from which it may park.
func (s *Slot) Running() bool { return s.st.Load() == running }

// table is the part of a Parker every platform shares: the parked slots
// by key, and their count.
type table struct {
	mu   sync.Mutex
	keys map[uint64]*Slot
	next uint64
	n    atomic.Int64
}

// Stop marks the slot stopped, so that it never parks again, and, if it
// is parked, takes it out of p and resumes its reader (which then sees
// its connection stopping). It is safe to call more than once, from any
// goroutine, and with a nil Parker.
func (p *Parker) Stop(s *Slot) {
	for {
		old := s.st.Load()
		if old&stopped != 0 {
			return
		}
		if s.st.CompareAndSwap(old, old|stopped) {
			if old == parked {
				p.unpark(s)
			}
			return
		}
	}
}

// wake resumes a slot whose socket became ready, if it is still parked
// (Stop may have taken it first).
func (p *Parker) wake(s *Slot) {
	if s.st.CompareAndSwap(parked, running) {
		p.unpark(s)
	}
}

// unpark forgets a slot that just left the parked state (the caller's
// compare and swap) and resumes its reader.
func (p *Parker) unpark(s *Slot) {
	p.forget(s)
	p.n.Add(-1)
	go s.Resume()
}

// add gives s a new key, under which its events find it.
func (t *table) add(s *Slot) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.keys == nil {
		t.keys = make(map[uint64]*Slot)
	}
	t.next++
	s.key = t.next
	t.keys[s.key] = s
	return s.key
}

// forget takes s out of the keys: an event still on its way for it
// finds nothing.
func (t *table) forget(s *Slot) {
	t.mu.Lock()
	if t.keys[s.key] == s {
		delete(t.keys, s.key)
	}
	t.mu.Unlock()
}

// Len returns how many connections are parked now.
func (p *Parker) Len() int {
	if p == nil {
		return 0
	}
	return int(p.n.Load())
}
