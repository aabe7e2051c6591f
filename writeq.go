package statebus

import (
	"errors"
	"io"
	"sync"
)

var (
	errQueueClosed = errors.New("statebus: connection closing")
	errCanceled    = errors.New("statebus: wait canceled")
)

// writeQueue is a session's outbound queue: callers append whole lines to
// one buffer under a mutex, one writer goroutine swaps it for its spare
// and writes everything queued in one system call, so flushing happens
// when the queue runs empty, never once per line under load.
type writeQueue struct {
	mu     sync.Mutex
	buf    []byte
	start  int // len(buf) at begin
	limit  int // queued bytes beyond which begin waits; 0: none
	closed bool
	space  chan struct{} // closed when the writer takes a batch; nil unless someone waits
	wake   chan struct{} // 1 slot: the writer has work
}

func newWriteQueue(limit int) *writeQueue {
	return &writeQueue{limit: limit, wake: make(chan struct{}, 1)}
}

// begin locks the queue for appending a line of about n bytes and returns
// the buffer to append to; the caller then calls commit with the result,
// or abandon, without blocking in between. While more than limit bytes
// are queued it waits for the writer (one line is always accepted into an
// empty queue) or until cancel closes.
func (q *writeQueue) begin(n int, cancel <-chan struct{}) ([]byte, error) {
	q.mu.Lock()
	for !q.closed && q.limit > 0 && len(q.buf) > 0 && len(q.buf)+n > q.limit {
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-cancel:
			return nil, errCanceled
		}
		q.mu.Lock()
	}
	return q.begun()
}

// beginNoWait is begin without the limit: for replies, written by the
// reader, which must never wait for the writer.
func (q *writeQueue) beginNoWait() ([]byte, error) {
	q.mu.Lock()
	return q.begun()
}

func (q *writeQueue) begun() ([]byte, error) {
	if q.closed {
		q.mu.Unlock()
		return nil, errQueueClosed
	}
	q.start = len(q.buf)
	return q.buf, nil
}

// commit keeps the appended buffer and wakes the writer if it may be idle.
func (q *writeQueue) commit(b []byte) {
	wasEmpty := q.start == 0
	q.buf = b
	q.mu.Unlock()
	if wasEmpty {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// abandon unlocks the queue after begin without keeping anything.
func (q *writeQueue) abandon() { q.mu.Unlock() }

// close stops new lines; the writer writes what is queued and returns.
func (q *writeQueue) close() {
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

// run writes what is queued until the queue is closed and empty, or a
// write fails.
func (q *writeQueue) run(w io.Writer) error {
	var spare []byte
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
		batch := q.buf
		q.buf = spare[:0]
		if q.space != nil {
			close(q.space)
			q.space = nil
		}
		q.mu.Unlock()
		if _, err := w.Write(batch); err != nil {
			q.close()
			return err
		}
		if cap(batch) > keepBuf(q.limit) {
			batch = nil // a burst's buffer goes back to the garbage collector
		}
		spare = batch[:0]
	}
}

// keepBuf is the largest buffer the writer keeps for reuse: twice the
// limit, which a busy queue fills again and again (allocating it anew for
// every batch would cost more than the copying), else 8 MiB.
func keepBuf(limit int) int {
	if limit <= 0 {
		return 8 << 20
	}
	return 2 * limit
}
