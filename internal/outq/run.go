package outq

import (
	"bytes"
	"time"
)

// maxChunk bounds one write. Between chunks the writer looks for High
// lines, so one of them waits behind at most this much of a Normal batch
// (plus what the socket already holds).
const maxChunk = 64 << 10

// keepBuf is the largest buffer a lane keeps once a writer that Run runs
// is idle. A larger one, grown by a burst, is reused while traffic goes on
// (growing a new one for each batch would cost an allocation per line) and
// goes back to the garbage collector after idleAfter without traffic. A
// writer that Start runs gives back every buffer then.
const keepBuf = 256 << 10

// Run is the writer loop: it writes what is queued, High lines first, in
// writes of at most maxChunk bytes, until the queue is closed and empty or
// a write fails. It returns the write error, after failing every record
// that will not be written. Use Run or Start, not both.
func (q *Queue[R]) Run(w writer) error {
	return q.loop(w, false)
}

// Start makes the queue run its writer, to w, only while there is
// something to write: a line queued into an empty queue starts it, and
// after idleAfter with nothing to write it gives back its buffers and
// exits. A write error closes the queue and is passed to Stopped. After
// Close or Abort, Wait waits for the writer.
func (q *Queue[R]) Start(w writer) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.out = w
	if q.size > 0 && !q.running {
		q.running = true
		q.writers.Add(1)
		go q.serve()
	}
}

// Wait waits until the writer Start runs has finished, once the queue is
// closed, and returns the write error that stopped it, if any.
func (q *Queue[R]) Wait() error {
	q.writers.Wait()
	return q.werr
}

// serve runs the writer for Start.
func (q *Queue[R]) serve() {
	defer q.writers.Done()
	if err := q.loop(q.out, true); err != nil {
		q.werr = err
		if q.Stopped != nil {
			q.Stopped(err)
		}
	}
}

// loop writes until the queue is closed and empty or a write fails; with
// exit, also once it had nothing to write for idleAfter.
func (q *Queue[R]) loop(w writer, exit bool) error {
	var spare [numLanes]lane[R]
	var done []R
	q.mu.Lock()
	q.idleT = time.AfterFunc(time.Hour, q.idleCheck)
	q.idleT.Stop()
	q.armed, q.idle = false, false
	q.mu.Unlock()
	for {
		q.mu.Lock()
		for q.size == 0 {
			if q.closed {
				q.retire()
				q.mu.Unlock()
				return nil
			}
			if q.idle {
				q.idle = false
				if exit {
					// Nothing to write for idleAfter: give everything back.
					q.shrinks++
					for p := range q.lanes {
						q.lanes[p] = lane[R]{}
					}
					q.retire()
					q.mu.Unlock()
					return nil
				}
				q.shrinkIdle(&spare)
			}
			q.mu.Unlock()
			<-q.wake
			q.mu.Lock()
		}
		q.active, q.idle = true, false
		if !q.armed {
			q.armed = true
			q.idleT.Reset(idleAfter)
		}
		p := High
		for len(q.lanes[p].buf) == 0 {
			p++
		}
		batch := q.take(p, spare[p])
		q.mu.Unlock()

		unwritten, err := q.write(w, p, batch, &done)
		q.mu.Lock() // the whole batch (it was all that lane had) is done
		q.inflight = 0
		q.wakeWaiters()
		q.mu.Unlock()
		if err != nil {
			q.fail(unwritten, err)
			q.mu.Lock()
			q.retire()
			q.mu.Unlock()
			return err
		}
		spare[p] = lane[R]{buf: batch.buf[:0], recs: clear0(batch.recs)}
	}
}

// retire ends the writer's part in the queue as it returns, in the same
// critical section as its decision to: from then on a line queued starts
// a new writer; q.mu is held.
func (q *Queue[R]) retire() {
	q.idleT.Stop()
	q.idleT = nil
	q.running = false
}

// idleCheck runs idleAfter after the writer became active: if it has
// written nothing since, it is told it is idle, else checked again later.
func (q *Queue[R]) idleCheck() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.idleT == nil || !q.armed {
		return // the writer is gone or was not waiting for this
	}
	if q.active || q.size > 0 || q.inflight > 0 {
		q.active = false
		q.idleT.Reset(idleAfter)
		return
	}
	q.armed = false
	q.idle = true
	q.wakeWriter()
}

// keepRecs is the most records a lane's slices keep for reuse while the
// queue is idle.
const keepRecs = 4096

// idleAfter is how long a writer must have had nothing to write before
// it gives back the buffers a burst grew (Run) or all of them and exits
// (Start). Shorter would restart writers between the events of a slow
// stream; longer would keep an idle connection's writer for nothing.
var idleAfter = 100 * time.Millisecond

// shrinkIdle gives back the buffers a burst grew, now that nothing is
// queued: an idle connection holds at most keepBuf bytes per buffer, not
// the size of its largest burst; q.mu is held.
func (q *Queue[R]) shrinkIdle(spare *[numLanes]lane[R]) {
	q.shrinks++
	for p := range q.lanes {
		for _, l := range []*lane[R]{&spare[p], &q.lanes[p]} {
			if cap(l.buf) > keepBuf {
				l.buf = nil
			}
			if cap(l.recs) > keepRecs {
				l.recs = nil
			}
		}
	}
}

// take removes lane p's lines for writing, leaving empty buffers in their
// place; q.mu is held.
func (q *Queue[R]) take(p Priority, empty lane[R]) lane[R] {
	batch := q.lanes[p]
	q.lanes[p] = lane[R]{buf: empty.buf[:0], recs: empty.recs[:0]}
	n := len(batch.buf) + len(batch.recs)*q.RecordBytes
	q.size -= n
	q.inflight += n
	q.nrecs -= len(batch.recs)
	if p == High {
		q.high.Store(false)
	}
	q.wakeWaiters()
	return batch
}

// wakeWaiters tells producers waiting for room that the writer moved: it
// took a batch, or finished writing one; q.mu is held.
func (q *Queue[R]) wakeWaiters() {
	q.stalled = false
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
}

// write writes a batch of lane p in chunks, writing any High lines that
// arrive meanwhile first. On error it returns the records not written.
func (q *Queue[R]) write(w writer, p Priority, batch lane[R], done *[]R) ([]rec[R], error) {
	buf, recs := batch.buf, batch.recs
	i := 0
	for off := 0; off < len(buf); {
		if p != High && q.high.Load() {
			q.mu.Lock()
			hb := q.take(High, lane[R]{})
			q.mu.Unlock()
			rest, err := q.write(w, High, hb, done)
			q.mu.Lock()
			q.inflight -= len(hb.buf) + len(hb.recs)*q.RecordBytes
			q.wakeWaiters()
			q.mu.Unlock()
			if err != nil {
				return append(rest, recs[i:]...), err
			}
		}
		end := len(buf)
		if off+maxChunk < end {
			// Cut after a whole line: every line ends in '\n'.
			end = off + maxChunk
			if j := bytes.IndexByte(buf[end-1:], '\n'); j >= 0 {
				end += j
			} else {
				end = len(buf)
			}
		}
		if q.StuckAfter > 0 {
			q.writing.Store(time.Now().UnixNano()) // one clock read per chunk, not per line
		}
		n, err := w.Write(buf[off:end])
		q.writing.Store(0)
		q.written.Add(uint64(n))
		for i < len(recs) && recs[i].end <= off+n {
			*done = append(*done, recs[i].r)
			i++
		}
		if len(*done) > 0 {
			if q.Written != nil {
				q.Written(*done)
			}
			clear(*done)
			*done = (*done)[:0]
		}
		if err != nil {
			return recs[i:], err
		}
		off = end
	}
	return nil, nil
}

// fail closes the queue after a write error and fails every record that
// was not written: those of the failed batch and everything queued.
func (q *Queue[R]) fail(unwritten []rec[R], err error) {
	failed := make([]R, 0, len(unwritten))
	for _, r := range unwritten {
		failed = append(failed, r.r)
	}
	q.mu.Lock()
	failed = q.closeLocked(failed)
	if q.cause != nil {
		err = q.cause // the write failed because the queue was aborted
	}
	q.mu.Unlock()
	if q.Failed != nil && len(failed) > 0 {
		q.Failed(failed, err)
	}
}

func clear0[T any](s []T) []T {
	clear(s)
	return s[:0]
}
