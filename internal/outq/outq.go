// Package outq is a connection's outbound queue: many goroutines append
// whole lines, one writer goroutine owns the socket and writes everything
// queued in one system call, so flushing happens when the queue runs
// empty, never once per line under load.
//
// The queue is two byte buffers: producers append to one under a mutex
// while the writer writes the other. Appending copies the line and
// allocates nothing once the buffers have grown. Each line may carry a
// record of type R; after a write the writer hands the records of the
// lines that reached the socket to Written and of those that did not to
// Failed, which is how the service acknowledges delivery only once an
// event was really written.
package outq

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by Begin.
var (
	// ErrClosed: the queue is closed (its connection is gone or going).
	ErrClosed = errors.New("outq: queue closed")
	// ErrFull: the queue stayed over its limit for the whole wait.
	ErrFull = errors.New("outq: queue full")
	// ErrCanceled: the caller's cancel channel closed while waiting.
	ErrCanceled = errors.New("outq: wait canceled")
)

type rec[R any] struct {
	end int // offset just past the line in its batch
	r   R
}

// Queue is the outbound queue of one connection.
type Queue[R any] struct {
	// Limit bounds the queued bytes (not counting the batch being
	// written). A producer whose line does not fit waits for the writer;
	// one line is always accepted into an empty queue, however long.
	// Zero means no limit.
	Limit int
	// MaxLines bounds the queued lines that carry records (events), as
	// Limit bounds bytes. Zero means no limit.
	MaxLines int
	// Written, when set, gets the records of lines that were written.
	Written func([]R)
	// Failed, when set, gets the records of lines that will never be
	// written, with the reason.
	Failed func([]R, error)

	mu       sync.Mutex
	buf      []byte
	recs     []rec[R]
	closed   bool
	stalled  bool          // a wait timed out and the writer has not moved since
	space    chan struct{} // closed when the writer takes a batch; nil unless someone waits
	wake     chan struct{} // 1 slot: the writer has work
	startLen int           // len(buf) at Begin
	written  atomic.Uint64 // bytes written by Run
}

// BytesWritten returns how many bytes Run has written.
func (q *Queue[R]) BytesWritten() uint64 { return q.written.Load() }

// New returns an empty queue with the given byte limit.
func New[R any](limit int) *Queue[R] {
	return &Queue[R]{Limit: limit, wake: make(chan struct{}, 1)}
}

// full reports whether n more bytes would exceed a limit. An empty queue
// always takes one line, however long.
func (q *Queue[R]) full(n int) bool {
	if len(q.buf) == 0 || q.closed {
		return false
	}
	return q.Limit > 0 && len(q.buf)+n > q.Limit || q.MaxLines > 0 && len(q.recs) >= q.MaxLines
}

// Begin locks the queue for appending n bytes and returns the buffer to
// append to. The caller must append and then call Commit or CommitRec with
// the result, and must not block in between. When the queue is over its
// limit Begin waits up to wait (forever when wait is 0) or until cancel is
// closed. Once a wait has timed out, later calls fail at once with ErrFull
// until the writer makes progress: a stuck reader costs each sender one
// timeout, not one per line.
func (q *Queue[R]) Begin(n int, wait time.Duration, cancel <-chan struct{}) ([]byte, error) {
	q.mu.Lock()
	if q.full(n) {
		if q.stalled {
			q.mu.Unlock()
			return nil, ErrFull
		}
		if err := q.waitSpace(n, wait, cancel); err != nil {
			return nil, err
		}
	}
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	q.startLen = len(q.buf)
	return q.buf, nil
}

// TryBegin is Begin that never waits: a full queue fails at once with
// ErrFull. A group uses it to pass over a member that is not keeping up.
func (q *Queue[R]) TryBegin(n int) ([]byte, error) {
	q.mu.Lock()
	if q.full(n) {
		q.mu.Unlock()
		return nil, ErrFull
	}
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	q.startLen = len(q.buf)
	return q.buf, nil
}

// BeginNoWait is Begin without the limit: for short lines that must not
// wait, such as acknowledgements and errors, whose number is bounded by the
// events that passed a limit elsewhere.
func (q *Queue[R]) BeginNoWait() ([]byte, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, ErrClosed
	}
	q.startLen = len(q.buf)
	return q.buf, nil
}

// waitSpace is called with q.mu held and returns with it held on success
// and released on error.
func (q *Queue[R]) waitSpace(n int, wait time.Duration, cancel <-chan struct{}) error {
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for q.full(n) {
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
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
	q.buf = b
	q.unlock()
}

// CommitRec is Commit for a line that carries a record.
func (q *Queue[R]) CommitRec(b []byte, r R) {
	q.buf = b
	q.recs = append(q.recs, rec[R]{end: len(b), r: r})
	q.unlock()
}

// Abandon unlocks the queue after Begin without appending.
func (q *Queue[R]) Abandon() { q.mu.Unlock() }

func (q *Queue[R]) unlock() {
	wasEmpty := q.startLen == 0
	q.mu.Unlock()
	if wasEmpty {
		select {
		case q.wake <- struct{}{}:
		default:
		}
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
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Len returns the number of queued bytes.
func (q *Queue[R]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf)
}

// Run is the writer loop: it writes each batch to w in one Write until the
// queue is closed and empty, or a write fails. It returns the write error,
// after failing every record that will not be written.
func (q *Queue[R]) Run(w io.Writer) error {
	var spare []byte
	var spareRecs []rec[R]
	var done []R
	for {
		q.mu.Lock()
		for len(q.buf) == 0 {
			if q.closed {
				q.mu.Unlock()
				return nil
			}
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		batch, recs := q.buf, q.recs
		q.buf, q.recs = spare[:0], spareRecs[:0]
		q.stalled = false
		if q.space != nil {
			close(q.space)
			q.space = nil
		}
		q.mu.Unlock()

		n, err := w.Write(batch)
		q.written.Add(uint64(n))
		i := 0
		if q.Written != nil {
			for i < len(recs) && recs[i].end <= n {
				done = append(done, recs[i].r)
				i++
			}
			if len(done) > 0 {
				q.Written(done)
				clear(done)
				done = done[:0]
			}
		}
		if err != nil {
			q.fail(recs[i:], err)
			return err
		}
		spare, spareRecs = batch[:0], clear0(recs)
	}
}

// fail closes the queue after a write error and fails every record that
// was not written.
func (q *Queue[R]) fail(unwritten []rec[R], err error) {
	q.mu.Lock()
	q.closed = true
	rest := q.recs
	q.buf, q.recs = nil, nil
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	q.mu.Unlock()
	if q.Failed == nil {
		return
	}
	failed := make([]R, 0, len(unwritten)+len(rest))
	for _, r := range unwritten {
		failed = append(failed, r.r)
	}
	for _, r := range rest {
		failed = append(failed, r.r)
	}
	if len(failed) > 0 {
		q.Failed(failed, err)
	}
}

func clear0[T any](s []T) []T {
	clear(s)
	return s[:0]
}
