package outq

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

func appendLine(t *testing.T, q *Queue[int], line string, rec int) error {
	t.Helper()
	b, err := q.Begin(len(line), 50*time.Millisecond, nil)
	if err != nil {
		return err
	}
	q.CommitRec(append(b, line...), rec)
	return nil
}

// gate is a writer that blocks until opened.
type gate struct {
	mu   sync.Mutex
	open chan struct{}
	buf  bytes.Buffer
	err  error
}

func (g *gate) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return 0, g.err
	}
	return g.buf.Write(p)
}

func TestWriteAndAcknowledge(t *testing.T) {
	q := New[int](0)
	var mu sync.Mutex
	var written []int
	q.Written = func(r []int) { mu.Lock(); written = append(written, r...); mu.Unlock() }
	g := &gate{open: make(chan struct{})}
	close(g.open)
	done := make(chan error)
	go func() { done <- q.Run(g) }()
	for i := range 100 {
		if err := appendLine(t, q, "line\n", i); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if g.buf.Len() != 500 || len(written) != 100 || written[99] != 99 {
		t.Fatalf("wrote %d bytes, acknowledged %d", g.buf.Len(), len(written))
	}
	if _, err := q.BeginNoWait(); err != ErrClosed {
		t.Fatalf("append after close: %v", err)
	}
}

func inflight(q *Queue[int]) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inflight
}

// fullBehindBlockedWriter runs q's writer into a gate that stays shut:
// a 9-byte line is in flight and 10 more fill a queue of Limit 10.
func fullBehindBlockedWriter(t *testing.T, q *Queue[int]) (*gate, chan error) {
	t.Helper()
	g := &gate{open: make(chan struct{})}
	done := make(chan error)
	go func() { done <- q.Run(g) }()
	if err := appendLine(t, q, "12345678\n", 1); err != nil {
		t.Fatal(err)
	}
	waitInflight(t, q, 9)
	if err := appendLine(t, q, "123456789\n", 2); err != nil {
		t.Fatal(err)
	}
	return g, done
}

// waitInflight waits until the writer has taken a batch of n bytes.
func waitInflight(t *testing.T, q *Queue[int], n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); inflight(q) != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the writer never took a batch of %d bytes", n)
		}
	}
}

// A peer that provokes responses and never reads: lines that do not wait
// for Limit still count against HardLimit, and the line that would pass it
// closes the queue, fails every record and reports the overflow once.
func TestHardLimit(t *testing.T) {
	q := New[int](10)
	q.HardLimit = 100
	var failed []int
	var cause error
	overflows, held := 0, 0
	q.Failed = func(r []int, err error) { failed, cause = append(failed, r...), err }
	q.Overflow = func(n int) { overflows++; held = n }
	if err := appendLine(t, q, "event\n", 7); err != nil { // no writer: stays queued
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		b, err := q.BeginNoWait()
		if err != nil {
			if err != ErrClosed || i != 11 {
				t.Fatalf("after %d acks: %v", i, err)
			}
			break
		}
		q.Commit(append(b, "ack-line\n"...)) // 9 bytes: the 11th passes 100
	}
	if overflows != 1 || held != 6+11*9 || q.Len() != 0 {
		t.Fatalf("overflows %d, held %d, len %d", overflows, held, q.Len())
	}
	if len(failed) != 1 || failed[0] != 7 || cause != ErrOverflow {
		t.Fatalf("failed %v (%v)", failed, cause)
	}
	if err := q.Run(&bytes.Buffer{}); err != nil {
		t.Fatalf("Run on an overflowed queue: %v", err)
	}
}

func TestLimitAndFailure(t *testing.T) {
	q := New[int](10)
	var failed []int
	var cause error
	q.Failed = func(r []int, err error) { failed, cause = append(failed, r...), err }
	g := &gate{open: make(chan struct{}), err: io.ErrClosedPipe}
	done := make(chan error)
	go func() { done <- q.Run(g) }()
	// The first line is taken by the (blocked) writer; the next fills the
	// queue to its limit; one more waits, then is refused as full.
	appendLine(t, q, "12345678\n", 1)
	waitInflight(t, q, 9)
	if err := appendLine(t, q, "123456789\n", 2); err != nil {
		t.Fatal(err)
	}
	cancel := make(chan struct{})
	close(cancel)
	if _, err := q.Begin(5, 0, cancel); err != ErrCanceled {
		t.Fatalf("canceled wait: %v", err)
	}
	if err := appendLine(t, q, "x\n", 3); err != ErrFull {
		t.Fatalf("over the limit: %v, want ErrFull", err)
	}
	// Stalled: refused at once, without waiting again.
	start := time.Now()
	if _, err := q.Begin(5, time.Hour, nil); err != ErrFull || time.Since(start) > time.Second {
		t.Fatalf("stalled queue: %v after %v", err, time.Since(start))
	}
	close(g.open) // the write fails: both records fail
	if err := <-done; !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Run: %v", err)
	}
	if len(failed) != 2 || cause != io.ErrClosedPipe {
		t.Fatalf("failed %v (%v)", failed, cause)
	}
	if _, err := q.Begin(1, 0, nil); err != ErrClosed {
		t.Fatalf("after failure: %v", err)
	}
}

// A producer waiting for room is woken when the writer, done with its
// write, takes what is queued.
func TestWaiterWokenWhenWriteCompletes(t *testing.T) {
	q := New[int](10)
	g, done := fullBehindBlockedWriter(t, q)
	got := make(chan error)
	go func() {
		b, err := q.Begin(5, time.Hour, nil) // 10 + 5 > 10: waits
		if err == nil {
			q.Commit(append(b, "abcd\n"...))
		}
		got <- err
	}()
	close(g.open)
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting producer was not woken")
	}
	q.Close()
	if err := <-done; err != nil || g.buf.String() != "12345678\n123456789\nabcd\n" {
		t.Fatalf("Run: %v, wrote %q", err, g.buf.String())
	}
}

// BeginFanout waits for a writer that is writing, and gives up at once on
// one blocked in a write for StuckAfter.
func TestBeginFanout(t *testing.T) {
	q := New[int](10)
	q.StuckAfter = 20 * time.Millisecond
	g, done := fullBehindBlockedWriter(t, q)
	// The writer is now blocked; within StuckAfter a fan-out copy waits,
	// and the wait ends with ErrFull as soon as the writer counts as
	// stuck, long before the hour.
	start := time.Now()
	if _, err := q.BeginFanout(Normal, 5, time.Hour, nil); err != ErrFull {
		t.Fatalf("stuck writer: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("waited %v for a stuck writer", d)
	}
	// Stuck now: refused without waiting at all.
	if _, err := q.BeginFanout(Normal, 5, time.Hour, nil); err != ErrFull {
		t.Fatalf("stalled: %v", err)
	}
	// A writer that moved again is waited for.
	close(g.open)
	for deadline := time.Now().Add(10 * time.Second); q.BytesWritten() != 19; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writes never completed")
		}
	}
	b, err := q.BeginFanout(Normal, 5, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	q.Commit(append(b, "abcd\n"...))
	q.Close()
	if err := <-done; err != nil || g.buf.String() != "12345678\n123456789\nabcd\n" {
		t.Fatalf("Run: %v, wrote %q", err, g.buf.String())
	}
}

// An idle queue gives back what a burst grew: after the burst, the buffer
// the writer hands back to producers is a small one again.
func TestIdleShrinks(t *testing.T) {
	defer func(d time.Duration) { idleAfter = d }(idleAfter)
	idleAfter = 10 * time.Millisecond
	q := New[int](0)
	var w bytes.Buffer
	done := make(chan error)
	for range 1000 { // 1 MB queued before the writer runs
		b, _ := q.BeginNoWait()
		q.Commit(append(b, strings.Repeat("x", 999)+"\n"...))
	}
	go func() { done <- q.Run(&w) }()
	written := func(n uint64) {
		for deadline := time.Now().Add(10 * time.Second); q.BytesWritten() != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("wrote %d of %d bytes", q.BytesWritten(), n)
			}
		}
	}
	written(1000 * 1000)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		q.mu.Lock()
		n := q.shrinks
		q.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the idle writer never gave its buffers back")
		}
	}
	b, _ := q.BeginNoWait()
	q.Commit(append(b, "small\n"...)) // the writer takes it and hands producers its spare
	written(1000*1000 + 6)
	q.mu.Lock()
	c := cap(q.lanes[Normal].buf)
	q.mu.Unlock()
	if c > keepBuf {
		t.Fatalf("after the burst the lane keeps a %d-byte buffer", c)
	}
	q.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
