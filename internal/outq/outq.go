// Package outq is a connection's outbound queue: many goroutines append
// whole lines, one writer goroutine owns the socket and writes what is
// queued in as few system calls as it can (up to 64 KiB each), so
// flushing happens when the queue runs empty, never once per line under
// load.
//
// With Start the queue runs its writer itself, only while it is needed:
// the first line queued starts it, and once it has had nothing to write
// for idleAfter it gives back its buffers and exits, so an idle
// connection holds neither a writer goroutine nor write buffers.
//
// Each priority has a lane of two byte buffers: producers append to one
// under a mutex while the writer writes the other, High lanes first.
// Appending copies the line and allocates nothing once the buffers have
// grown. Each line may carry a
// record of type R; after a write the writer hands the records of the
// lines that reached the socket to Written and of those that did not to
// Failed, which is how the service acknowledges delivery only once an
// event was really written.
package outq

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Begin.
var (
	// ErrOverflow: a line would have taken the queue past HardLimit; the
	// queue is closed and its records failed.
	ErrOverflow = errors.New("outq: queue over its hard limit")
	// ErrClosed: the queue is closed (its connection is gone or going).
	ErrClosed = errors.New("outq: queue closed")
	// ErrFull: the queue stayed over its limit for the whole wait.
	ErrFull = errors.New("outq: queue full")
	// ErrCanceled: the caller's cancel channel closed while waiting.
	ErrCanceled = errors.New("outq: wait canceled")
)

type rec[R any] struct {
	end int // offset just past the line in its lane's buffer
	r   R
}

// Priority orders lines: queued High lines are written before queued
// Normal ones, Normal before Low. Lines of one priority keep their order.
type Priority uint8

// The priorities, highest first.
const (
	High Priority = iota
	Normal
	Low
	numLanes
)

type lane[R any] struct {
	buf  []byte
	recs []rec[R]
}

// writer is what Run writes to: a connection.
type writer interface {
	Write(p []byte) (int, error)
}

// Queue is the outbound queue of one connection.
type Queue[R any] struct {
	// Limit bounds the queued bytes (not counting the batch being
	// written, which HardLimit counts). A producer whose line does not fit waits for the writer;
	// one line is always accepted into an empty queue, however long.
	// Zero means no limit.
	Limit int
	// MaxLines bounds the queued lines that carry records (events), as
	// Limit bounds bytes. Zero means no limit.
	MaxLines int
	// HardLimit bounds every byte the queue holds: queued lines of every
	// kind, including those that do not wait for Limit (acknowledgements,
	// errors, replies), plus the batch being written. A line that would
	// take the queue past it closes the queue instead: its lines are
	// dropped, its records failed with ErrOverflow, and Overflow is
	// called. Zero means no hard limit.
	HardLimit int
	// StuckAfter is how long the writer may be blocked in one write
	// before BeginFanout counts the connection as stuck (its peer is not
	// reading) and stops waiting for it. Zero: never stuck.
	StuckAfter time.Duration
	// RecordBytes is what each queued record counts against Limit and
	// HardLimit besides its line: the bookkeeping the caller keeps with it.
	RecordBytes int
	// Overflow, when set, is called once (without the queue's lock) when a
	// line hit HardLimit, with the bytes the queue held.
	Overflow func(held int)
	// Written, when set, gets the records of lines that were written.
	Written func([]R)
	// Failed, when set, gets the records of lines that will never be
	// written, with the reason.
	Failed func([]R, error)
	// Stopped, when set, is called by a writer Start runs when a write
	// failed: the queue is closed then, and its records failed.
	Stopped func(error)

	mu        sync.Mutex
	lanes     [numLanes]lane[R]
	size      int      // queued bytes, all lanes
	inflight  int      // bytes of the batch Run is writing
	nrecs     int      // queued records, all lanes
	cur       Priority // the lane between Begin and Commit
	startLen  int      // its length at Begin
	startSize int      // q.size at Begin
	closed    bool
	overflow  int           // held bytes when a line hit HardLimit; 0 if none did
	shrinks   int           // times an idle writer gave back grown buffers
	cause     error         // why the queue was closed early (Abort, overflow); nil otherwise
	stalled   bool          // a wait timed out and the writer has not moved since
	space     chan struct{} // closed when the writer takes a batch; nil unless someone waits
	wake      chan struct{} // 1 slot: the writer has work
	high      atomic.Bool   // the High lane has lines (read by the writer between chunks)
	written   atomic.Uint64 // bytes written by Run
	writing   atomic.Int64  // when Run's current write began (unix ns); 0 between writes

	// The writer's life (q.mu): with Start, a writer runs while out is
	// set and running is true, which it is whenever lines are queued.
	out     writer
	running bool
	writers sync.WaitGroup // the writer Start runs, for Wait
	werr    error          // the write error that stopped it
	// The idle check: idleT fires idleAfter after the writer last became
	// active (armed); if the writer took no batch since (active), idle
	// tells it to give back its buffers (and, with Start, to exit).
	idleT  *time.Timer
	armed  bool
	active bool
	idle   bool
}

// BytesWritten returns how many bytes Run has written.
func (q *Queue[R]) BytesWritten() uint64 { return q.written.Load() }

// New returns an empty queue with the given byte limit.
func New[R any](limit int) *Queue[R] {
	return &Queue[R]{Limit: limit, wake: make(chan struct{}, 1)}
}

// full reports whether n more bytes would exceed a limit. The batch being
// written does not count toward Limit, so that producers fill the next
// batch while the writer writes one; it counts toward HardLimit. An empty
// queue always takes one line, however long.
func (q *Queue[R]) full(n int) bool {
	if q.size == 0 || q.closed {
		return false
	}
	return q.Limit > 0 && q.size+n > q.Limit || q.MaxLines > 0 && q.nrecs >= q.MaxLines
}

// Begin locks the queue for appending n bytes of Normal priority and
// returns the buffer to append to. The caller must append and then call
// Commit or CommitRec with the result, and must not block in between.
// When the queue is over its limit Begin waits up to wait (forever when
// wait is 0) or until cancel is closed. Once a wait has timed out, later
// calls fail at once with ErrFull until the writer makes progress: a stuck
// reader costs each sender one timeout, not one per line.
func (q *Queue[R]) Begin(n int, wait time.Duration, cancel <-chan struct{}) ([]byte, error) {
	return q.BeginPri(Normal, n, wait, cancel)
}

// BeginPri is Begin for a line of priority p.
func (q *Queue[R]) BeginPri(p Priority, n int, wait time.Duration, cancel <-chan struct{}) ([]byte, error) {
	q.mu.Lock()
	if q.full(n) {
		if q.stalled {
			q.mu.Unlock()
			return nil, ErrFull
		}
		if err := q.waitSpace(n, wait, cancel, false); err != nil {
			return nil, err
		}
	}
	return q.begin(p)
}

// BeginFanout is BeginPri for one copy of a fanned-out line (a broadcast,
// a group's every member): it waits for room only while the writer keeps
// writing, so a peer that is behind slows the sender down, but one that
// stopped reading (a write blocked for StuckAfter) fails at once with
// ErrFull and costs the sender nothing.
func (q *Queue[R]) BeginFanout(p Priority, n int, wait time.Duration, cancel <-chan struct{}) ([]byte, error) {
	q.mu.Lock()
	if q.full(n) {
		if q.stalled || q.stuck() {
			q.stalled = true
			q.mu.Unlock()
			return nil, ErrFull
		}
		if err := q.waitSpace(n, wait, cancel, true); err != nil {
			return nil, err
		}
	}
	return q.begin(p)
}

// Blocked returns how long the writer has been in its current write at
// now (0 between writes, or without StuckAfter, which turns the clock on).
func (q *Queue[R]) Blocked(now time.Time) time.Duration {
	at := q.writing.Load()
	if at == 0 {
		return 0
	}
	return time.Duration(now.UnixNano() - at)
}

// stuck reports whether the writer has been blocked in one write for
// StuckAfter.
func (q *Queue[R]) stuck() bool {
	at := q.writing.Load()
	return q.StuckAfter > 0 && at != 0 && time.Now().UnixNano()-at > int64(q.StuckAfter)
}

// WaitDrain waits until the queue is under its limits again, up to wait
// or until cancel is closed. A connection's reader calls it before reading
// more requests, so that a peer that does not read its responses stops
// being served instead of making them pile up. ErrFull: the queue did
// not drain in time.
func (q *Queue[R]) WaitDrain(wait time.Duration, cancel <-chan struct{}) error {
	q.mu.Lock()
	if !q.full(0) {
		q.mu.Unlock()
		return nil
	}
	if err := q.waitSpace(0, wait, cancel, false); err != nil {
		return err
	}
	q.mu.Unlock()
	return nil
}

// TryBegin is Begin that never waits: a full queue fails at once with
// ErrFull. A group uses it to pass over a member that is not keeping up.
func (q *Queue[R]) TryBegin(p Priority, n int) ([]byte, error) {
	q.mu.Lock()
	if q.full(n) {
		q.mu.Unlock()
		return nil, ErrFull
	}
	return q.begin(p)
}

// BeginNoWait is Begin without Limit: for short lines that must not wait,
// such as acknowledgements, errors and replies. They still count against
// HardLimit, so a peer that provokes them and never reads is cut off.
func (q *Queue[R]) BeginNoWait() ([]byte, error) {
	q.mu.Lock()
	return q.begin(Normal)
}

// begin finishes a Begin with q.mu held: it unlocks on error.
func (q *Queue[R]) begin(p Priority) ([]byte, error) {
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	q.cur, q.startLen, q.startSize = p, len(q.lanes[p].buf), q.size
	return q.lanes[p].buf, nil
}

// waitSpace is called with q.mu held and returns with it held on success
// and released on error. With unlessStuck it gives up (ErrFull) once the
// writer is stuck, checking every StuckAfter.
func (q *Queue[R]) waitSpace(n int, wait time.Duration, cancel <-chan struct{}, unlessStuck bool) error {
	var timeout, recheck <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	if unlessStuck && q.StuckAfter > 0 {
		t := time.NewTicker(q.StuckAfter)
		defer t.Stop()
		recheck = t.C
	}
	for q.full(n) {
		if unlessStuck && q.stuck() {
			q.stalled = true
			q.mu.Unlock()
			return ErrFull
		}
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-recheck:
		case <-timeout:
			q.mu.Lock()
			q.stalled = true
			q.mu.Unlock()
			return ErrFull
		case <-cancel:
			return ErrCanceled
		}
		q.mu.Lock()
	}
	return nil
}

// Commit stores the appended buffer, unlocks the queue and wakes the
// writer if it may be idle.
func (q *Queue[R]) Commit(b []byte) {
	if q.store(b) {
		q.unlock()
		return
	}
	q.overflowed(nil)
}

// CommitRec is Commit for a line that carries a record.
func (q *Queue[R]) CommitRec(b []byte, r R) {
	q.startLen -= q.RecordBytes // counted as if appended
	if q.store(b) {
		l := &q.lanes[q.cur]
		l.recs = append(l.recs, rec[R]{end: len(b), r: r})
		q.nrecs++
		q.unlock()
		return
	}
	q.overflowed([]R{r})
}

// store keeps the appended line, or reports false (with q.mu still held)
// when it would take the queue past HardLimit.
func (q *Queue[R]) store(b []byte) bool {
	n := len(b) - q.startLen
	if q.HardLimit > 0 && q.size+q.inflight+n > q.HardLimit {
		q.overflow = q.size + q.inflight + n
		return false
	}
	q.lanes[q.cur].buf = b
	q.size += n
	if q.cur == High && n > 0 {
		q.high.Store(true)
	}
	return true
}

// overflowed closes the queue after a line hit HardLimit (q.mu is held),
// drops what it holds, fails its records (and extra, the record of the
// line that did not fit) and calls Overflow.
func (q *Queue[R]) overflowed(extra []R) {
	held := q.overflow
	q.cause = ErrOverflow
	failed := q.closeLocked(extra)
	q.mu.Unlock()
	q.wakeWriter()
	if q.Failed != nil && len(failed) > 0 {
		q.Failed(failed, ErrOverflow)
	}
	if q.Overflow != nil {
		q.Overflow(held)
	}
}

// closeLocked closes the queue, drops every queued line and returns the
// records that will not be written, after extra; q.mu is held.
func (q *Queue[R]) closeLocked(extra []R) []R {
	q.closed = true
	failed := extra
	for p := range q.lanes {
		for _, r := range q.lanes[p].recs {
			failed = append(failed, r.r)
		}
		q.lanes[p] = lane[R]{}
	}
	q.size, q.nrecs = 0, 0
	q.high.Store(false)
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	return failed
}

// Abandon unlocks the queue after Begin without appending.
func (q *Queue[R]) Abandon() { q.mu.Unlock() }

func (q *Queue[R]) unlock() {
	wasEmpty := q.startSize == 0
	start := wasEmpty && q.out != nil && !q.running && q.size > 0
	if start {
		q.running = true
		q.writers.Add(1)
	}
	q.mu.Unlock()
	if start {
		go q.serve()
	} else if wasEmpty {
		q.wakeWriter()
	}
}

func (q *Queue[R]) wakeWriter() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Abort closes the queue at once: queued lines are dropped and their
// records failed with cause, and so are those of the batch being written
// when its write fails (the caller closes the connection to make it
// fail).
func (q *Queue[R]) Abort(cause error) {
	q.mu.Lock()
	if q.cause == nil {
		q.cause = cause
	}
	failed := q.closeLocked(nil)
	q.mu.Unlock()
	q.wakeWriter()
	if q.Failed != nil && len(failed) > 0 {
		q.Failed(failed, cause)
	}
}

// Close stops new lines; the writer writes what is queued and then Run
// returns.
func (q *Queue[R]) Close() {
	q.mu.Lock()
	q.closed = true
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	q.mu.Unlock()
	q.wakeWriter()
}

// Len returns the bytes the queue holds: queued lines and the batch being
// written.
func (q *Queue[R]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.size + q.inflight
}
