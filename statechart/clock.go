package statechart

import (
	"sort"
	"sync"
	"time"
)

// Clock is what after transitions and delayed sends wait on. Tests replace
// the real clock with a ManualClock.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (or, for a ManualClock, in
	// the goroutine that advances it) once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the call if it has not happened; it reports whether
	// it did.
	Stop() bool
}

type realClock struct{}

// RealClock returns the clock of package time.
func RealClock() Clock { return realClock{} }

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// ManualClock is a clock that moves only when told to: Advance fires the
// timers that fall due, in time order (then in the order they were made),
// in the caller's goroutine.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	seq    uint64
	timers []*manualTimer
}

const maxSameInstant = 10000

type manualTimer struct {
	c   *ManualClock
	at  time.Time
	seq uint64
	f   func()
}

// NewManualClock returns a ManualClock reading start.
func NewManualClock(start time.Time) *ManualClock { return &ManualClock{now: start} }

// Now returns the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f at Now()+d.
func (c *ManualClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &manualTimer{c: c, at: c.now.Add(d), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Stop cancels the timer.
func (t *manualTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Pending returns how many timers have not fired or been stopped.
func (c *ManualClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Advance moves the clock forward by d, firing each timer that falls due at
// its own time. Timers that the fired functions make are fired too when
// they fall due within d. So that a zero-delay loop (an after: {0: ...}
// that re-enters its own state) cannot hang a test, Advance fires at most
// 10,000 timers at one instant and leaves the rest pending.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	same := 0
	for {
		c.mu.Lock()
		sort.SliceStable(c.timers, func(i, j int) bool {
			a, b := c.timers[i], c.timers[j]
			if !a.at.Equal(b.at) {
				return a.at.Before(b.at)
			}
			return a.seq < b.seq
		})
		if len(c.timers) == 0 || c.timers[0].at.After(end) {
			c.now = end
			c.mu.Unlock()
			return
		}
		t := c.timers[0]
		if t.at.After(c.now) {
			c.now = t.at
			same = 0
		}
		if same++; same > maxSameInstant {
			c.mu.Unlock()
			return
		}
		c.timers = c.timers[1:]
		c.mu.Unlock()
		t.f()
	}
}
